"""Sampler metrics (samplers.metrics) and the evaluation CLI (samplers.evaluate)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

import samplers.metrics as metrics_module
from equivariant.geometry import pairwise_distances, remove_com
from samplers.evaluate import EvaluateConfig, evaluate_run, main
from samplers.metrics import (
    aligned_cost_matrix,
    dist_tv,
    dist_w2,
    dist_w2_squared,
    energy_w2,
    energy_w2_squared,
    gmm_w2,
    sampler_metrics,
    x_w2_aligned,
    x_w2_unaligned,
)

DATA_DIR = Path(
    os.environ.get("DIFFUSION_BASELINES_BOLTZMANN_DIR", Path(__file__).resolve().parents[2] / "shared/data/boltzmann")
)


def load_reference(name: str, n_particles: int, spatial_dim: int) -> Tensor:
    """A reference file from the shared data folder, COM-centred (DW-4 is stored with an offset); skip if absent."""
    path = DATA_DIR / name
    if not path.is_file():
        pytest.skip(f"reference data {path} not available")
    return remove_com(torch.from_numpy(np.load(path)).double(), n_particles, spatial_dim)


def dw4_energy(x: Tensor) -> Tensor:
    """DW-4 energy (as jarridrb/DEM), local so that these tests do not depend on samplers.energies."""
    u = pairwise_distances(x, 4, 2) - 4.0
    return (0.9 * u**4 - 4.0 * u**2).sum(-1)


def rigid_copy(x: Tensor, n: int, d: int, seed: int, det: float = -1.0) -> Tensor:
    """Each configuration moved by one random orthogonal map (given determinant), permutation and translation."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    if torch.linalg.det(q).sign() != det:
        q[:, 0] = -q[:, 0]
    perm = torch.randperm(n, generator=gen)
    shift = 5.0 * torch.randn(x.shape[0], 1, d, generator=gen, dtype=torch.float64)
    return (x.reshape(-1, n, d)[:, perm] @ q.T + shift).reshape(x.shape)


def test_identical_sets_give_zero() -> None:
    x = torch.randn(40, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert x_w2_unaligned(x, x) < 1e-6
    assert x_w2_aligned(x, x, 3, 2) < 1e-6
    assert energy_w2(x[:, 0], x[:, 0]) == 0.0
    assert dist_w2(x, x, 3, 2) == 0.0
    assert dist_tv(x, x, 3, 2) == 0.0


def test_gaussian_shift_w2_and_input_types() -> None:
    gen = torch.Generator().manual_seed(1)
    m = torch.tensor([3.0, 4.0], dtype=torch.float64)
    x = torch.randn(600, 2, generator=gen, dtype=torch.float64)
    y = torch.randn(600, 2, generator=gen, dtype=torch.float64) + m
    w = x_w2_unaligned(x, y)
    assert abs(w - 5.0) < 0.2
    assert gmm_w2(x.numpy(), y.float()) == pytest.approx(w, rel=1e-5)
    e = energy_w2(x[:, 0], x[:, 1] + 2.0)
    assert abs(e - 2.0) < 0.15
    assert energy_w2(x[:, 0], x[:, 1] + 2.0) ** 2 == pytest.approx(energy_w2_squared(x[:, 0], x[:, 1] + 2.0))


def test_aligned_w2_removes_symmetries_dw4_exact() -> None:
    x = load_reference("dw4_val.npy", 4, 2)[:60]
    y = rigid_copy(x, 4, 2, seed=2)
    assert x_w2_aligned(x, y, 4, 2) < 1e-6
    assert x_w2_unaligned(x, y) > 1.0


def test_aligned_w2_removes_symmetries_lj13_heuristic_and_chirality() -> None:
    x = load_reference("lj13_val.npy", 13, 3)[:12]
    mirrored = rigid_copy(x, 13, 3, seed=3, det=-1.0)
    assert x_w2_aligned(x, mirrored, 13, 3) < 1e-6
    assert x_w2_unaligned(x, mirrored) > 1.0
    # Proper rotations only: mirror images of chiral clusters can no longer be superimposed.
    assert x_w2_aligned(x, mirrored, 13, 3, reflections=False) > 0.1
    assert x_w2_aligned(x, rigid_copy(x, 13, 3, seed=4, det=1.0), 13, 3, reflections=False) < 1e-6


def test_heuristic_alignment_upper_bounds_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    data = load_reference("dw4_val.npy", 4, 2)
    x, y = data[:40], data[5000:5040]
    exact = aligned_cost_matrix(x, y, 4, 2)
    monkeypatch.setattr(metrics_module, "MAX_EXACT_PARTICLES", 0)
    heuristic = aligned_cost_matrix(x, y, 4, 2)
    with_starts = aligned_cost_matrix(x, y, 4, 2, random_starts=8)
    assert (heuristic >= exact - 1e-9).all()
    assert (with_starts <= heuristic + 1e-9).all()
    assert ((heuristic - exact).abs() < 1e-6).double().mean() > 0.8
    assert (exact <= torch.cdist(remove_com(x, 4, 2), remove_com(y, 4, 2)).square() + 1e-9).all()


def test_dist_metrics() -> None:
    x = load_reference("dw4_val.npy", 4, 2)[:300]
    far = 10.0 * x  # every distance beyond the reference histogram's range
    assert dist_tv(far, x, 4, 2) == pytest.approx(1.0)
    tv = dist_tv(x[:150], x[150:], 4, 2, bins=50)
    assert 0.0 <= tv < 0.2
    assert dist_w2(x[:150], x[150:], 4, 2) ** 2 == pytest.approx(dist_w2_squared(x[:150], x[150:], 4, 2))


def test_dw4_reference_vs_reference_and_vs_noise() -> None:
    train = load_reference("dw4_train.npy", 4, 2)[:500]
    val = load_reference("dw4_val.npy", 4, 2)[:500]
    noise = remove_com(val.std() * torch.randn(500, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64), 4, 2)
    good = sampler_metrics(train, val, dw4_energy, n_particles=4, spatial_dim=2)
    bad = sampler_metrics(noise, val, dw4_energy, n_particles=4, spatial_dim=2)
    # Measured: train vs val (500 each) x_w2_unaligned 2.17, x_w2_aligned 0.40, dist_w2 0.031, dist_tv 0.115,
    # energy_w2 0.207; Gaussian noise of the same scale: 2.71, 1.85, 1.09, 0.60, 174.
    assert good["n_samples"] == 500 and good["n_aligned_samples"] == 200
    assert good["x_w2_aligned"] < 0.6 < 1.2 < bad["x_w2_aligned"]
    assert good["dist_w2"] < 0.1 < 0.5 < bad["dist_w2"]
    assert good["dist_tv"] < 0.2 < 0.4 < bad["dist_tv"]
    assert good["energy_w2"] < 0.5 < 10.0 < bad["energy_w2"]
    assert good["energy_w2"] ** 2 == pytest.approx(good["energy_w2_squared"])
    assert abs(good["energy_mean_reference"] - (-22.47)) < 0.3


def test_non_particle_metrics_and_validation() -> None:
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(6))
    out = sampler_metrics(x, x + 1.0)
    assert set(out) == {"n_samples", "n_reference", "x_w2_unaligned"}
    assert out["x_w2_unaligned"] == pytest.approx(math.sqrt(2.0), rel=1e-5)
    with pytest.raises(ValueError, match="same dimension"):
        x_w2_unaligned(x, torch.randn(5, 3))
    with pytest.raises(ValueError, match="non-finite"):
        x_w2_unaligned(torch.full((3, 2), math.nan), x)
    with pytest.raises(ValueError, match="non-empty"):
        energy_w2(torch.zeros(0), torch.zeros(3))
    with pytest.raises(ValueError, match="2-D"):
        gmm_w2(torch.randn(4, 3), torch.randn(4, 3))
    with pytest.raises(ValueError, match="n_particles"):
        sampler_metrics(torch.randn(4, 9), torch.randn(4, 9), n_particles=4)


class MockDW4:
    """Stands in for samplers.energies.DW4Energy so the CLI test runs without that module."""

    n_particles, spatial_dim = 4, 2

    def energy(self, x: Tensor) -> Tensor:
        return dw4_energy(x)


def _write_run(tmp_path: Path, rows: int = 200) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    np.save(run_dir / "samples.npy", load_reference("dw4_train.npy", 4, 2)[:rows].float().numpy())
    return run_dir


def test_evaluate_with_injected_target(tmp_path: Path) -> None:
    run_dir = _write_run(tmp_path)
    reference = tmp_path / "ref.npy"
    np.save(reference, load_reference("dw4_val.npy", 4, 2)[:300].numpy())
    config = EvaluateConfig(run_dir=run_dir, reference=reference, n_samples=150, aligned_samples=50)
    result = evaluate_run(config, target=MockDW4())
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved == result
    assert saved["n_samples"] == 150 and saved["target"] == "MockDW4"
    assert saved["dist_tv"] < 0.3 and saved["energy_w2"] < 1.0


@pytest.mark.skipif(importlib.util.find_spec("samplers.energies") is None, reason="samplers.energies not written yet")
def test_evaluate_cli_with_real_energy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = _write_run(tmp_path)
    (run_dir / "config.yaml").write_text("env: DW4\n")
    result = main([str(run_dir), "--n-samples", "150", "--aligned-samples", "50"])
    assert result["target"] == "DW4" and result["n_reference"] == 150
    assert "x_w2_aligned" in capsys.readouterr().out
    assert json.loads((run_dir / "metrics.json").read_text())["energy_w2"] < 1.0
    with pytest.raises(SystemExit, match="error: samples have dimension 8, but the target has 13 particles"):
        main([str(run_dir), "--energy", "LJ13"])  # the CLI entry: one line, no traceback


def test_evaluate_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"samples\.npy"):
        evaluate_run(EvaluateConfig(run_dir=tmp_path))
    np.save(tmp_path / "samples.npy", np.zeros((10, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="no reference"):
        evaluate_run(EvaluateConfig(run_dir=tmp_path))
    np.save(tmp_path / "ref.npy", np.zeros((10, 6), dtype=np.float32))
    with pytest.raises(ValueError, match="does not match"):
        evaluate_run(EvaluateConfig(run_dir=tmp_path, reference=tmp_path / "ref.npy"))
