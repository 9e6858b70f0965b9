"""Canonical diffusion: invariant sampling, canonicalizer invariance, degenerate inputs, training, save/load, the
frozen ablation, the CLI, and the Boltzmann training data (MALA cache for LJ-13)."""

import functools
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from torch import Tensor, nn

from equivariant.canonicalization import random_orthogonal
from equivariant.geometry import as_particles, pairwise_distances, remove_com
from samplers import boltzmann_data
from samplers.base import ema_with_warmup
from samplers.boltzmann_data import MALARecipe, mala_record, mala_training_samples, training_samples
from samplers.canonical import CanonicalDiffusion
from samplers.energies import DoubleWellEnergy, LennardJonesEnergy, boltzmann_data_dir
from samplers.networks import ParticleTransformer
from samplers.schedules import NoiseSchedule

ROOT = Path(__file__).resolve().parents[1]
needs_data = pytest.mark.skipif(
    not (boltzmann_data_dir() / "dw4_train.npy").is_file(), reason="Boltzmann reference data not available"
)
TINY = dict(transformer_dim=16, transformer_layers=1, n_heads=2, egnn_dim=16, egnn_layers=1, time_embed_dim=8,
            canonicalizer_dim=8, canonicalizer_layers=1, batch_size=32, integration_steps=5, eval_freq=0)  # fmt: skip
SYSTEMS = {2: lambda: DoubleWellEnergy(4, 2), 3: lambda: LennardJonesEnergy(4, 3)}


def random_configurations(n: int, n_particles: int, spatial_dim: int, seed: int = 0) -> Tensor:
    """Generic (asymmetric) configurations with distinct particle radii, as a stand-in for training data."""
    gen = torch.Generator().manual_seed(seed)
    return remove_com(torch.randn(n, n_particles * spatial_dim, generator=gen) * 1.5, n_particles, spatial_dim)


@functools.cache
def canonical_model(spatial_dim: int) -> CanonicalDiffusion:
    """A canonical-mode model whose canonicalizer computes in float64."""
    model = make_model(spatial_dim)
    model.canonicalizer.double()
    return model


def make_model(spatial_dim: int = 2, **overrides) -> CanonicalDiffusion:
    data = random_configurations(256, 4, spatial_dim)
    return CanonicalDiffusion(SYSTEMS[spatial_dim](), data=data, seed=0, **{**TINY, **overrides})


class FixedPoseDenoiser(nn.Module):
    """The exact ε of a point mass at one configuration c: ε̂ = (z − α c)/σ. Its samples are c itself, so any
    rotation or permutation invariance of the sampler's output must come from the final random symmetry."""

    def __init__(self, pose: Tensor, schedule: NoiseSchedule) -> None:
        super().__init__()
        self.pose, self.schedule = pose, schedule

    def forward(self, z: Tensor, t: Tensor) -> Tensor:
        return (z - self.schedule.alpha(t)[:, None] * self.pose) / self.schedule.sigma(t)[:, None]


@pytest.mark.parametrize("spatial_dim", [2, 3])
def test_sampled_density_is_rotation_and_permutation_invariant(spatial_dim: int) -> None:
    model = make_model(spatial_dim, ema_decay=None, integration_steps=200)
    pose = random_configurations(1, 4, spatial_dim, seed=1) / model.config.data_scale
    model.network = FixedPoseDenoiser(pose, model.schedule)
    samples = model.sample(3000, seed=0)
    particles = as_particles(samples, 4, spatial_dim)
    # invariant statistics are those of the pose: every sample is a rigid, relabelled copy of it (up to the
    # discretisation error of 200 Euler-Maruyama steps, a few hundredths here)
    expected = pairwise_distances(pose * model.config.data_scale, 4, spatial_dim).sort(-1).values
    torch.testing.assert_close(pairwise_distances(samples, 4, spatial_dim).sort(-1).values, expected.expand(3000, -1),
                               atol=0.1, rtol=0)  # fmt: skip
    # rotation: isotropic covariance of a particle's position, and its first coordinate distributed as after a fixed
    # further rotation (two-sample KS); permutation: particles 0 and 1 have the same radius distribution
    covariance = particles[:, 0].T.cov()
    scale = covariance.trace() / spatial_dim
    torch.testing.assert_close(covariance / scale, torch.eye(spatial_dim), atol=0.12, rtol=0)
    rotated = particles @ random_orthogonal(1, spatial_dim, proper=True, generator=torch.Generator().manual_seed(5))[0].T
    assert stats.ks_2samp(particles[:1500, 0, 0].numpy(), rotated[1500:, 0, 0].numpy()).pvalue > 1e-3
    radii = particles.norm(dim=-1)
    assert stats.ks_2samp(radii[:, 0].numpy(), radii[:, 1].numpy()).pvalue > 1e-3
    pose_radii = as_particles(pose * model.config.data_scale, 4, spatial_dim).norm(dim=-1)  # (1, 4), distinct
    label = (radii[:, :1] - pose_radii).abs().argmin(dim=1)  # which pose particle landed in slot 0
    assert (torch.bincount(label, minlength=4) - 750).abs().max() < 120  # uniform: 750 ± 5 standard deviations


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), spatial_dim=st.sampled_from([2, 3]))
def test_canonical_pose_is_invariant_under_rotations_and_equivariant_under_permutations(seed: int, spatial_dim: int) -> None:
    # float64: in float32 Gram-Schmidt on nearly parallel pooled vectors amplifies rounding to ~1e-4 (the frame's
    # conditioning, tested in test_canonicalization); here the exactness of the construction is what is checked
    model = canonical_model(spatial_dim)
    x = random_configurations(16, 4, spatial_dim, seed=seed).double() / model.config.data_scale
    gen = torch.Generator().manual_seed(seed)
    rotation = random_orthogonal(16, spatial_dim, proper=True, generator=gen, dtype=torch.float64)
    order = torch.rand(16, 4, generator=gen).argsort(dim=1)
    moved = as_particles(x, 4, spatial_dim) @ rotation.mT
    moved = moved.gather(1, order.unsqueeze(-1).expand_as(moved)).reshape(x.shape)
    with torch.no_grad():
        pose, degenerate = model.training_pose(x)
        moved_pose, _ = model.training_pose(moved)
    assert not degenerate.any()
    expected = as_particles(pose, 4, spatial_dim).gather(1, order.unsqueeze(-1).expand(-1, -1, spatial_dim))
    torch.testing.assert_close(as_particles(moved_pose, 4, spatial_dim), expected, atol=1e-10, rtol=0)


def test_degenerate_configurations_train_without_nan() -> None:
    square = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
    collinear = torch.tensor([[-3.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    cases = {
        2: torch.stack([square, collinear, torch.zeros(4, 2)]),
        3: torch.stack([torch.cat([square, torch.zeros(4, 1)], 1), torch.cat([collinear, torch.zeros(4, 1)], 1)]),
    }
    for spatial_dim, configurations in cases.items():
        model = make_model(spatial_dim, mode="canonical")
        x0 = configurations.reshape(len(configurations), -1)
        loss, degenerate = model.denoising_loss(x0)
        loss.backward()
        assert degenerate[0], "a regular polygon cancels the pooled vector: the frame must be flagged"
        assert torch.isfinite(loss)
        for parameter in [*model.network.parameters(), *model.canonicalizer.parameters()]:
            assert parameter.grad is None or torch.isfinite(parameter.grad).all()


def test_save_load_round_trip_gives_identical_samples_and_training(tmp_path: Path) -> None:
    straight = make_model(mode="canonical").learn(10)
    first = make_model(mode="canonical").learn(5)
    first.save(tmp_path / "model.pt")
    torch.manual_seed(123)  # the checkpoint restores the RNG, whatever happened since
    loaded = CanonicalDiffusion.load(tmp_path / "model.pt", target=DoubleWellEnergy(4, 2))
    torch.testing.assert_close(loaded.sample(64, seed=3), first.sample(64, seed=3), rtol=0, atol=0)
    loaded.learn(5, reset_num_timesteps=False)
    assert loaded.num_timesteps == 10 and loaded.config == straight.config
    for a, b in zip(straight.network.state_dict().values(), loaded.network.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(loaded.sample(64, seed=4), straight.sample(64, seed=4), rtol=0, atol=0)


def test_frozen_mode_freezes_the_canonicalizer_and_canonical_mode_trains_it_slowly() -> None:
    for mode, lr_ratio in (("frozen", None), ("canonical", 1e-2)):
        model = make_model(mode=mode)
        canonicalizer = [p.detach().clone() for p in model.canonicalizer.parameters()]
        denoiser = [p.detach().clone() for p in model.network.parameters()]
        model.learn(5)
        changed = [not torch.equal(a, b) for a, b in zip(canonicalizer, model.canonicalizer.parameters())]
        assert any(changed) == (mode == "canonical")
        assert any(not torch.equal(a, b) for a, b in zip(denoiser, model.network.parameters()))
        lr = model.config.learning_rate
        assert [group["lr"] for group in model.optimizer.param_groups] == ([lr] if lr_ratio is None else [lr, lr * lr_ratio])
    assert make_model(mode="augmented").canonicalizer is None and make_model(mode="equivariant").canonicalizer is None


def test_time_limit_stops_training_between_steps() -> None:
    model = make_model()
    began = time.perf_counter()
    model.learn(10**6, time_limit_s=0.3)
    assert 0 < model.num_timesteps < 10**6 and time.perf_counter() - began < 5.0


def test_transformer_is_permutation_equivariant_but_not_rotation_equivariant() -> None:
    torch.manual_seed(0)
    net = ParticleTransformer(5, 3, hidden_dim=16, n_layers=2, n_heads=2, time_embed_dim=8)
    nn.init.normal_(net.head[-1].weight)  # the zero-initialised head would make every check trivial
    x, t = random_configurations(8, 5, 3), torch.rand(8)
    order = torch.randperm(5)
    out = as_particles(net(x, t), 5, 3)
    permuted = net(as_particles(x, 5, 3)[:, order].reshape(8, -1), t)
    torch.testing.assert_close(as_particles(permuted, 5, 3), out[:, order], atol=1e-5, rtol=0)
    rotation = random_orthogonal(1, 3, proper=True, generator=torch.Generator().manual_seed(0))[0]
    rotated = net((as_particles(x, 5, 3) @ rotation.T).reshape(8, -1), t)
    assert (as_particles(rotated, 5, 3) - out @ rotation.T).abs().max() > 1e-3
    torch.testing.assert_close(out.mean(1), torch.zeros(8, 3), atol=1e-6, rtol=0)  # zero centre of mass


def test_ema_warms_up_before_reaching_its_decay() -> None:
    average = ema_with_warmup(0.999)
    first = average(torch.zeros(()), torch.ones(()), torch.tensor(0))
    assert first.item() == pytest.approx(0.9)  # decay (1 + 0)/(10 + 0) = 0.1
    late = average(torch.zeros(()), torch.ones(()), torch.tensor(100_000))
    assert late.item() == pytest.approx(1e-3, rel=1e-4)


@needs_data
def test_training_on_dw4_lowers_the_denoising_loss() -> None:
    model = CanonicalDiffusion("DW4", seed=0, **{**TINY, "transformer_dim": 32, "batch_size": 128, "learning_rate": 2e-3})
    gen = torch.Generator().manual_seed(0)
    x0 = model.data[torch.randint(len(model.data), (512,), generator=gen)] / model.config.data_scale
    t, noise = torch.rand(512, generator=gen), torch.randn(512, 8, generator=gen)

    def loss() -> float:
        with torch.no_grad():
            return model.denoising_loss(x0, t, noise)[0].item()

    before = loss()
    model.learn(150)
    assert loss() < 0.75 * before


def test_bad_inputs_raise_clear_errors(tmp_path: Path) -> None:
    data = random_configurations(8, 4, 2)
    with pytest.raises(ValueError, match="CanonicalDiffusion got unknown hyperparameters"):
        CanonicalDiffusion(DoubleWellEnergy(4, 2), data=data, canonicaliser_dim=3)
    with pytest.raises(ValueError, match="mode must be one of"):
        CanonicalDiffusion(DoubleWellEnergy(4, 2), data=data, mode="invariant")
    with pytest.raises(ValueError, match="2-D or 3-D particles"):
        CanonicalDiffusion("GMM40", data=torch.zeros(8, 2))
    with pytest.raises(ValueError, match=r"shape \(N, 8\)"):
        CanonicalDiffusion(DoubleWellEnergy(4, 2), data=torch.zeros(8, 9))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CanonicalDiffusion(DoubleWellEnergy(4, 2), data=tmp_path / "missing.npy")
    with pytest.raises(ValueError, match="pass data"):
        CanonicalDiffusion(DoubleWellEnergy(4, 2))


def test_missing_shared_folder_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIFFUSION_BASELINES_BOLTZMANN_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="shared Boltzmann data folder"):
        training_samples("DW4")


def test_lj13_mala_samples_are_generated_once_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIFFUSION_BASELINES_CACHE", str(tmp_path))
    recipe = MALARecipe(n_chains=3, burn_in=4, n_kept=2, thinning=3)
    samples = mala_training_samples("LJ13", recipe, verbose=False)
    assert samples.shape == (6, 39) and torch.isfinite(samples).all()
    torch.testing.assert_close(as_particles(samples, 13, 3).mean(1), torch.zeros(6, 3), atol=1e-5, rtol=0)
    record = mala_record("LJ13", recipe)
    assert record["n_samples"] == 6 and record["generation_s"] > 0 and record["energy_evaluations"] == 3 * 11
    assert list(tmp_path.glob("boltzmann/lj13_mala_*.npy"))

    def fail(*args: object) -> None:
        raise AssertionError("the cached samples must be reused")

    monkeypatch.setattr(boltzmann_data, "generate_mala_samples", fail)
    torch.testing.assert_close(mala_training_samples("LJ13", recipe), samples)


@needs_data
def test_train_py_runs_canonical_on_dw4_with_a_data_file(tmp_path: Path) -> None:
    data = tmp_path / "dw4.npy"
    np.save(data, np.load(boltzmann_data_dir() / "dw4_train.npy")[:512])
    result = subprocess.run(
        [sys.executable, "train.py", "--algo", "canonical", "--env", "DW4", "-n", "4", "--seed", "0", "--num-threads", "1",
         "--log-dir", str(tmp_path), "--no-progress", "--eval-freq", "4", "--n-samples", "64", "--hyperparams",
         "data", str(data), "mode", "augmented", "integration_steps", "5", "transformer_dim", "16", "eval_samples", "32"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "canonical").iterdir()
    samples = np.load(run_dir / "samples.npy")
    assert samples.shape == (64, 8) and np.isfinite(samples).all()
    np.testing.assert_allclose(samples.reshape(64, 4, 2).mean(1), 0.0, atol=1e-4)
    results = json.loads((run_dir / "results.json").read_text())
    assert math.isfinite(results["final_eval"]["energy_w2"]) and results["final_eval"]["n_samples"] == 64
    assert (run_dir / "checkpoints" / "best.pt").is_file() and list(run_dir.glob("events.out.tfevents.*"))
    loaded = CanonicalDiffusion.load(run_dir / "model.pt")
    assert loaded.num_timesteps == 4 and loaded.config.mode == "augmented" and len(loaded.data) == 512
