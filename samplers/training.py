"""Plumbing shared by the samplers' training loops (iDEM, canonical diffusion): reproducible RNG state for exact
resumes, and evaluation with best-checkpoint tracking."""

from __future__ import annotations

import math
import random
import warnings
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every global generator's state, saved in checkpoints so that a resumed run continues bit for bit."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators saved by `rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class EvaluatedSampler(Protocol):
    """What `evaluate_and_log` needs from a sampler."""

    logger: Any
    best_metrics: dict[str, float]
    _reference_missing: bool

    def evaluate(self) -> dict[str, float]: ...

    def save(self, path: str | Path) -> Path: ...


def evaluate_and_log(sampler: EvaluatedSampler, step: int, checkpoint_dir: str | Path | None, metric: str) -> None:
    """Evaluate against the reference samples, log ``eval/*`` and keep ``best.pt`` by the lowest ``metric``.

    Without reference samples on this machine, evaluation is switched off with one warning and training goes on.
    """
    try:
        metrics = sampler.evaluate()
    except FileNotFoundError as error:
        sampler._reference_missing = True
        warnings.warn(f"{type(sampler).__name__} evaluation disabled: {error}", stacklevel=3)
        return
    for key, value in metrics.items():
        sampler.logger.record(f"eval/{key}", value)
    sampler.logger.dump(step)
    if metric in metrics and metrics[metric] < sampler.best_metrics.get(metric, math.inf):
        sampler.best_metrics = {**metrics, "step": float(step)}
        if checkpoint_dir is not None:
            sampler.save(Path(checkpoint_dir) / "best.pt")
