"""Reinforcement-learning algorithms with the Stable-Baselines3 API, and the registry `train.py` reads."""

from agents.registry import ALGOS, AlgoSpec, get_algo, register_algo

__all__ = ["ALGOS", "AlgoSpec", "get_algo", "register_algo"]
