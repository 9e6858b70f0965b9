"""Diffusion Q-Sampling: an SB3 off-policy algorithm whose actor samples exp(Q/T) with a diffusion model."""

from agents.dqs.dqs import DQS, MODES
from agents.dqs.policies import DiffusionPolicy, MlpPolicy, MultiInputDiffusionPolicy, MultiInputPolicy

__all__ = ["DQS", "MODES", "DiffusionPolicy", "MlpPolicy", "MultiInputDiffusionPolicy", "MultiInputPolicy"]
