"""Reinforcement-learning algorithms with the Stable-Baselines3 API, and the registry `train.py` reads."""

from agents.dqs import DQS
from agents.merlin import GCSL, WGCSL, Merlin
from agents.registry import ALGOS, AlgoSpec, get_algo, register_algo

__all__ = ["ALGOS", "DQS", "GCSL", "WGCSL", "AlgoSpec", "Merlin", "get_algo", "register_algo"]
