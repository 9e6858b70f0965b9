"""Default hyperparameters per algorithm and environment (zoo style), and the CLI override parser.

Lookup order, later entries winning: the algorithm's ``"default"``, every glob pattern matching the env id (in the
order written), the exact env id, then ``--hyperparams KEY VALUE`` from the command line. Keys are constructor
arguments of the algorithm, plus the run keys in `RUN_KEYS`.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import fnmatch
import inspect
from typing import Any

from stable_baselines3 import HerReplayBuffer
from stable_baselines3.common.utils import LinearSchedule

#: Keys that configure the run rather than the algorithm's constructor.
RUN_KEYS: dict[str, str] = {
    "policy": "policy name or class passed as the first constructor argument",
    "n_timesteps": "default training budget when -n is not given",
    "n_envs": "default number of parallel environments when --n-envs is not given",
    "env_kwargs": "keyword arguments for gym.make",
}

_HER_GOAL_TASKS: dict[str, Any] = {
    "policy": "MultiInputPolicy",
    "replay_buffer_class": HerReplayBuffer,
    "replay_buffer_kwargs": {"n_sampled_goal": 4, "goal_selection_strategy": "future"},
}
_OFF_POLICY_DEFAULT: dict[str, Any] = {"policy": "MlpPolicy", "n_timesteps": 100_000, "learning_starts": 1_000}
_ON_POLICY_DEFAULT: dict[str, Any] = {"policy": "MlpPolicy", "n_timesteps": 200_000}
_OFF_POLICY_ENVS: dict[str, dict[str, Any]] = {
    "Fetch*": _HER_GOAL_TASKS,
    "PointMaze_*": _HER_GOAL_TASKS,
    "AntMaze_*": _HER_GOAL_TASKS,
    # Sized so the README quickstart finishes in about ten minutes on 2 CPU cores.
    "HalfCheetah-v5": {"n_timesteps": 50_000, "learning_starts": 5_000},
    "Hopper-v5": {"n_timesteps": 50_000, "learning_starts": 5_000},
    "Pendulum-v1": {"n_timesteps": 20_000, "learning_rate": 1e-3},
}

HYPERPARAMS: dict[str, dict[str, dict[str, Any]]] = {
    "sac": {"default": _OFF_POLICY_DEFAULT, **_OFF_POLICY_ENVS},
    "td3": {"default": _OFF_POLICY_DEFAULT, **_OFF_POLICY_ENVS},
    "ddpg": {"default": _OFF_POLICY_DEFAULT, **_OFF_POLICY_ENVS},
    "tqc": {"default": _OFF_POLICY_DEFAULT, **_OFF_POLICY_ENVS},
    "crossq": {"default": _OFF_POLICY_DEFAULT, **_OFF_POLICY_ENVS},
    "ppo": {"default": _ON_POLICY_DEFAULT, "Pendulum-v1": {"n_envs": 4, "n_steps": 1024, "gae_lambda": 0.95}},
    "a2c": {"default": _ON_POLICY_DEFAULT},
    # DQS: the mode (improved by default) sets everything else. MuJoCo temperatures are MaxEntDP's (spec dqs §12);
    # MultiGoal needs T ~ 10 to visit all goals (docs/dqs.md); GMMNav trains with mask 0 (gamma = 0) at T = 1.
    "dqs": {
        "default": {"policy": "MlpPolicy", "n_timesteps": 100_000},
        "HalfCheetah-v5": {"n_timesteps": 50_000, "learning_starts": 5_000, "temperature": 0.2},
        "Hopper-v5": {"n_timesteps": 50_000, "learning_starts": 5_000, "temperature": 0.05},
        "Pendulum-v1": {"n_timesteps": 20_000, "learning_rate": 1e-3},
        "MultiGoal-v0": {"n_timesteps": 20_000, "temperature": 10.0},
        "GMMNav-v0": {"n_timesteps": 50_000, "gamma": 0.0, "temperature": 1.0},
    },
    # Samplers: per-target settings are the presets in samplers/idem.py; the budget counts gradient steps.
    "idem": {"default": {"n_timesteps": 10_000}},
}


def default_hyperparams(algo: str, env_id: str) -> dict[str, Any]:
    """Merge the table entries that apply to ``algo`` on ``env_id`` (a fresh dict; the table is not modified)."""
    table = HYPERPARAMS.get(algo, {})
    merged: dict[str, Any] = dict(table.get("default", {}))
    for key, values in table.items():
        if key != "default" and key != env_id and fnmatch.fnmatchcase(env_id, key):
            merged.update(values)
    merged.update(table.get(env_id, {}))
    return merged


def parse_value(text: str) -> Any:
    """Parse a CLI value: Python literals (``3e-4``, ``[256, 256]``, ``{'net_arch': [64]}``, ``None``), ``lin_X`` for
    a learning rate decaying linearly from X to 0, anything else as a string."""
    if text.startswith("lin_"):
        return LinearSchedule(float(text[4:]), 0.0, 1.0)
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def constructor_keys(algo_class: type) -> set[str]:
    """Keyword arguments accepted by an algorithm's constructor, minus the ones `train.py` sets itself. Algorithms
    configured by a dataclass (``config_class``) accept its fields."""
    config_class = getattr(algo_class, "config_class", None)
    if config_class is not None:
        return {f.name for f in dataclasses.fields(config_class)}
    params = inspect.signature(algo_class.__init__).parameters
    return {name for name in params if name not in {"self", "env", "seed", "device", "tensorboard_log", "_init_setup_model"}}


def apply_overrides(base: dict[str, Any], overrides: dict[str, str], algo_class: type) -> dict[str, Any]:
    """Return ``base`` updated with parsed CLI overrides, rejecting keys the algorithm does not accept."""
    allowed = constructor_keys(algo_class) | set(RUN_KEYS)
    unknown = [key for key in overrides if key not in allowed]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, allowed, n=3, cutoff=0.5)
            hints.append(f"{key!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
        raise ValueError(
            f"Unknown hyperparameter {'; '.join(hints)} for {algo_class.__name__}. Accepted: {', '.join(sorted(allowed))}."
        )
    return {**base, **{key: parse_value(value) for key, value in overrides.items()}}
