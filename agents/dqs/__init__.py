"""Diffusion Q-Sampling: an SB3 off-policy algorithm whose actor samples exp(Q/T) with a diffusion model."""

from agents.dqs.dqs import DQS, MODES, DQSConfig
from agents.dqs.policies import (
    CnnDiffusionPolicy,
    CnnPolicy,
    DiffusionPolicy,
    MlpPolicy,
    MultiInputDiffusionPolicy,
    MultiInputPolicy,
)

__all__ = [
    "DQS", "MODES", "CnnDiffusionPolicy", "CnnPolicy", "DQSConfig", "DiffusionPolicy", "MlpPolicy",
    "MultiInputDiffusionPolicy", "MultiInputPolicy",
]  # fmt: skip
