"""Gymnasium environments, name resolution, scripted experts and offline goal datasets for diffusion-baselines."""

from __future__ import annotations

import importlib
from typing import Any

from envs.experts import ExpertConfig, make_expert
from envs.goal_dataset import GoalDataset
from envs.registry import ENV_ALIASES, available_env_ids, make_env, resolve_env_id

# Imported on first use: importing envs.datasets here would make `python -m envs.datasets` warn (runpy) and load Minari.
_DATASET_FUNCTIONS = ("build_dataset", "dataset_id", "load_goal_dataset")


def __getattr__(name: str) -> Any:
    if name in _DATASET_FUNCTIONS:
        return getattr(importlib.import_module("envs.datasets"), name)
    raise AttributeError(f"module 'envs' has no attribute {name!r}")


__all__ = [
    "ENV_ALIASES",
    "ExpertConfig",
    "GoalDataset",
    "available_env_ids",
    "build_dataset",
    "dataset_id",
    "load_goal_dataset",
    "make_env",
    "make_expert",
    "resolve_env_id",
]
