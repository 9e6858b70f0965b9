"""Reinforcement-learning algorithms with the Stable-Baselines3 API: DQS (online), Merlin, GCSL and WGCSL (offline
goal-conditioned), and the SB3 policies and extractors built on `equivariant`. `train.py` finds them through
`runner.registry`."""

from agents.dqs import DQS
from agents.merlin import GCSL, WGCSL, Merlin

__all__ = ["DQS", "GCSL", "WGCSL", "Merlin"]
