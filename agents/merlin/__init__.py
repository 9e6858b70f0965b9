"""Merlin (goal-conditioned RL as reversed diffusion) and the GCSL/WGCSL baselines, offline on `GoalDataset`s."""

from agents.merlin.baselines import GCSL, WGCSL
from agents.merlin.evaluation import GoalEvalCallback, evaluate_goal_policy
from agents.merlin.merlin import Merlin
from agents.merlin.noise import NOISE_CONFIGS
from agents.merlin.policies import GoalGaussianPolicy, MultiInputPolicy
from agents.merlin.reverse_model import ReverseModelConfig
from agents.merlin.stitching import StitchingConfig

__all__ = [
    "GCSL",
    "NOISE_CONFIGS",
    "WGCSL",
    "GoalEvalCallback",
    "GoalGaussianPolicy",
    "Merlin",
    "MultiInputPolicy",
    "ReverseModelConfig",
    "StitchingConfig",
    "evaluate_goal_policy",
]
