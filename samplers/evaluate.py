"""Evaluate a sampler run: ``python -m samplers.evaluate RUN_DIR [--reference PATH] [--n-samples N] [--energy NAME]``.

Reads ``RUN_DIR/samples.npy`` ((N, dim), or (N, n_particles, spatial_dim)) and, if present, ``RUN_DIR/config.yaml``
whose ``env`` key names the energy target (DW4, LJ13, GMM40, …; see :func:`samplers.energies.make_energy`).
Computes :func:`samplers.metrics.sampler_metrics` against the reference, prints a table and writes
``RUN_DIR/metrics.json`` (metric values plus the target and reference used).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import tyro
from torch import Tensor

from core.cli import run_cli
from core.run import read_run_config
from samplers.energies import make_energy
from samplers.metrics import sampler_metrics


class Target(Protocol):
    """What evaluation needs from an energy target (satisfied by :class:`samplers.energies.Energy`)."""

    n_particles: int
    spatial_dim: int

    def energy(self, x: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class EvaluateConfig:
    """Compare a run's samples with reference samples of its target."""

    run_dir: tyro.conf.Positional[Path]
    """Run directory holding samples.npy and optionally config.yaml (its `env` key names the target)."""
    reference: Path | None = None
    """Reference samples (.npy of shape (M, dim)); default: the target's reference split, or exact samples (GMM40)."""
    n_samples: int = 1000
    """Rows drawn without replacement from each of samples and reference (all rows if fewer). OT cost grows as N·M."""
    energy: str | None = None
    """Energy target name (e.g. DW4, LJ13, GMM40); overrides `env` in config.yaml."""
    split: str = "val"
    """Reference split of the target used when --reference is not given."""
    aligned_samples: int = 200
    """Rows of each set used for the symmetry-aligned W2 of particle systems (it needs one alignment per pair)."""
    seed: int = 0
    """Seed for subsampling and for drawing exact reference samples."""


def _load_samples(path: Path, what: str) -> np.ndarray:
    """Load an (N, dim) array, flattening (N, n_particles, spatial_dim) point clouds."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    array = np.load(path)
    if array.ndim == 3:
        array = array.reshape(array.shape[0], -1)
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(f"{what} {path} must hold a non-empty (N, dim) array, got shape {array.shape}")
    return array


def _target_name(config: EvaluateConfig) -> str | None:
    """The --energy flag, else ``env`` from RUN_DIR/config.yaml, else None."""
    if config.energy is not None:
        return config.energy
    try:
        return read_run_config(config.run_dir).get("env")
    except ValueError as error:
        raise ValueError(f"{error}: pass --energy NAME instead") from None


def _reference(config: EvaluateConfig, target: Target | None) -> tuple[np.ndarray, str]:
    """Reference samples and a description of where they came from."""
    if config.reference is not None:
        return _load_samples(config.reference, "reference"), str(config.reference)
    if target is None:
        raise ValueError("no reference: pass --reference PATH, or name a target with --energy or `env` in config.yaml")
    if config.split in getattr(target, "reference_files", {}):
        return target.reference_samples(config.split).numpy(), f"{type(target).__name__} split {config.split!r}"
    if hasattr(target, "sample"):
        generator = torch.Generator().manual_seed(config.seed)
        return target.sample(config.n_samples, generator=generator).numpy(), f"{type(target).__name__} exact samples"
    raise ValueError(f"{type(target).__name__} has no reference split {config.split!r} and no exact sampler; pass --reference")


def evaluate_run(config: EvaluateConfig, target: Target | None = None) -> dict[str, float | str | None]:
    """Compute, print and save the metrics of ``config.run_dir``; ``target`` overrides the named energy (tests, custom)."""
    if config.n_samples < 1:
        raise ValueError(f"n_samples must be positive, got {config.n_samples}")
    samples = _load_samples(config.run_dir / "samples.npy", "samples")
    name = _target_name(config)
    if target is None and name is not None:
        target = make_energy(name)
    n_particles, spatial_dim = (1, None) if target is None else (target.n_particles, target.spatial_dim)
    if target is not None and samples.shape[1] != n_particles * spatial_dim:
        raise ValueError(
            f"samples have dimension {samples.shape[1]}, but the target has {n_particles} particles × {spatial_dim} "
            f"coordinates = {n_particles * spatial_dim}"
        )
    reference, reference_desc = _reference(config, target)
    if reference.shape[1] != samples.shape[1]:
        raise ValueError(f"reference dimension {reference.shape[1]} does not match samples dimension {samples.shape[1]}")
    rng = np.random.default_rng(config.seed)
    samples = samples[rng.permutation(samples.shape[0])[: config.n_samples]]
    reference = reference[rng.permutation(reference.shape[0])[: config.n_samples]]
    metrics = sampler_metrics(
        samples,
        reference,
        energy_fn=None if target is None else target.energy,
        n_particles=n_particles,
        spatial_dim=spatial_dim,
        aligned_samples=config.aligned_samples,
    )
    label = name if name is not None or target is None else type(target).__name__
    width = max(map(len, metrics))
    print(f"{config.run_dir}  (target {label}; reference {reference_desc})")
    for key, value in metrics.items():
        print(f"  {key:<{width}}  {value:.6g}")
    result: dict[str, float | str | None] = {**metrics, "target": label, "reference": reference_desc}
    (config.run_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, float | str | None]:
    """Parse the command line (``argv``, default sys.argv) and evaluate; errors are one line (`core.cli.run_cli`)."""
    return run_cli(lambda: evaluate_run(tyro.cli(EvaluateConfig, args=argv)))


if __name__ == "__main__":
    main()
