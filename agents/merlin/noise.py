"""Merlin's noise models (vineetjain96/merlin): which synthetic trajectories to add to the dataset, and their disk cache.

* ``reverse_play`` (Merlin): no synthetic data, the dataset trajectories themselves are the "forward diffusion".
* ``reverse_model`` (Merlin-P): backward rollouts of a learned reverse model, `agents.merlin.reverse_model`.
* ``stitching`` (Merlin-NP): nearest-neighbour stitched walks, `agents.merlin.stitching`.

Generated data is cached as ``.npz`` under the cache folder (the ``cache_dir`` argument, else
``$DIFFUSION_BASELINES_CACHE/merlin``, else ``~/.cache/diffusion-baselines/merlin``), named after the dataset id and
noise model and keyed by a hash of the settings, the seed, the number of trajectories and the dataset's content.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces

from agents.merlin.reverse_model import ReverseModelConfig, generate_reverse_model_data
from agents.merlin.stitching import StitchingConfig, generate_stitched_data
from core.config import config_keys, reject_unknown_keys
from core.io import atomic_write
from envs.goal_dataset import GoalDataset

NOISE_CONFIGS: dict[str, type | None] = {
    "reverse_play": None,
    "reverse_model": ReverseModelConfig,
    "stitching": StitchingConfig,
}
NoiseConfig = ReverseModelConfig | StitchingConfig
_ARRAYS = ("observations", "achieved_goals", "desired_goals", "actions", "lengths")


def make_noise_config(noise_model: str, noise_kwargs: dict[str, Any] | None = None) -> NoiseConfig | None:
    """The settings of ``noise_model`` (None for reverse play), with ``noise_kwargs`` overriding the defaults."""
    if noise_model not in NOISE_CONFIGS:
        close = difflib.get_close_matches(noise_model, NOISE_CONFIGS, n=1, cutoff=0.3)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown noise_model {noise_model!r}.{hint} Choose one of {', '.join(NOISE_CONFIGS)}.")
    config_class = NOISE_CONFIGS[noise_model]
    noise_kwargs = noise_kwargs or {}
    if config_class is None:
        if noise_kwargs:
            raise ValueError(f"noise_model 'reverse_play' takes no noise_kwargs, got {sorted(noise_kwargs)}.")
        return None
    fields = config_keys(config_class)
    reject_unknown_keys(sorted(noise_kwargs), fields, f"noise_model {noise_model!r}", "noise_kwargs",
                        f"accepted: {', '.join(sorted(fields))}.")  # fmt: skip
    config = config_class(**noise_kwargs)
    if config.rollout_length is not None and config.rollout_length < 1:
        raise ValueError(f"noise_kwargs['rollout_length'] must be at least 1 (or None), got {config.rollout_length}.")
    return config


def resolve_cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    """The folder of cached synthetic data (see the module docstring)."""
    if cache_dir is not None:
        return Path(cache_dir)
    root = os.environ.get("DIFFUSION_BASELINES_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "diffusion-baselines") / "merlin"


def cache_path(cache_dir: Path, dataset: GoalDataset, noise_model: str, config: NoiseConfig, n: int, seed: int) -> Path:
    """Cache file of one generation run: readable name, content- and settings-dependent hash."""
    digest = hashlib.sha256(json.dumps([noise_model, dataclasses.asdict(config), n, seed]).encode())
    for name in _ARRAYS:
        digest.update(np.ascontiguousarray(getattr(dataset, name)).tobytes())
    label = re.sub(r"[^A-Za-z0-9._-]+", "_", dataset.dataset_id or "in-memory")
    return cache_dir / f"{label}-{noise_model}-{digest.hexdigest()[:16]}.npz"


def balanced_episodes(n_episodes: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` episode indices in random order, each episode used floor(n / E) or ceil(n / E) times."""
    rounds = -(-n // n_episodes)
    return np.concatenate([rng.permutation(n_episodes) for _ in range(rounds)])[:n]


def synthesize(
    dataset: GoalDataset,
    noise_model: str,
    config: NoiseConfig,
    n_trajectories: int,
    action_space: spaces.Box,
    seed: int,
    device: th.device,
    cache_dir: Path,
) -> tuple[GoalDataset, dict[str, float]]:
    """Synthetic trajectories of ``noise_model`` started from ``n_trajectories`` dataset final states (loaded from the
    cache when present), and the generator's statistics."""
    path = cache_path(cache_dir, dataset, noise_model, config, n_trajectories, seed)
    if path.is_file():
        with np.load(path) as data:
            arrays = {name: data[name] for name in _ARRAYS}
            stats = {key[len("stat_") :]: float(data[key]) for key in data.files if key.startswith("stat_")}
        return GoalDataset(**arrays, dataset_id=dataset.dataset_id, env_id=dataset.env_id), stats
    starts = balanced_episodes(dataset.n_episodes, n_trajectories, np.random.default_rng(seed))
    if isinstance(config, ReverseModelConfig):
        synthetic, stats = generate_reverse_model_data(dataset, action_space, config, starts, seed, device)
    else:
        synthetic, stats = generate_stitched_data(dataset, config, starts, seed, device)
    arrays = {name: getattr(synthetic, name) for name in _ARRAYS}
    atomic_write(path, lambda tmp: np.savez(tmp, **arrays, **{f"stat_{k}": v for k, v in stats.items()}))
    return synthetic, stats
