import math

import numpy as np
import pytest
import torch

from equivariant.geometry import as_particles
from samplers.energies import (
    BOLTZMANN_DIR_ENV,
    ENERGIES,
    DoubleWellEnergy,
    DW4Energy,
    FunctionEnergy,
    GaussianEnergy,
    GaussianMixtureEnergy,
    GMM40Energy,
    LennardJonesEnergy,
    LJ13Energy,
    LJ55Energy,
    boltzmann_data_dir,
    energy_and_grad,
    make_energy,
)

needs_data = pytest.mark.skipif(
    not (boltzmann_data_dir() / "dw4_val.npy").is_file(), reason="Boltzmann reference data not available"
)


def _random_rotation(spatial_dim: int, generator: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(spatial_dim, spatial_dim, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


@needs_data
@pytest.mark.parametrize(
    ("name", "split", "mean", "std", "minimum"),
    [("DW4", "val", -22.47, 1.90, -25.75), ("DW4", "train", -22.48, 1.91, -25.75), ("LJ13", "val", -43.00, 7.10, -69.82)],
)
def test_reference_statistics(name: str, split: str, mean: float, std: float, minimum: float) -> None:
    energy = make_energy(name)
    x = energy.reference_samples(split)
    com = as_particles(x, energy.n_particles, energy.spatial_dim).mean(-2)
    assert com.abs().max() < 1e-4, "reference samples must be centred on load"
    e = energy(x.double())
    assert e.dtype == torch.float64
    assert e.mean().item() == pytest.approx(mean, abs=0.01)
    assert e.std().item() == pytest.approx(std, abs=0.01)
    assert e.min().item() == pytest.approx(minimum, abs=0.01)


@needs_data
def test_dw4_raw_file_is_not_centred_and_centring_matters() -> None:
    raw = torch.from_numpy(np.load(boltzmann_data_dir() / "dw4_val.npy")).double()
    assert as_particles(raw, 4, 2).mean(-2).abs().max() > 10  # the raw reference files carry COM offsets up to ~16
    # DW is translation invariant, so the offsets do not change the energy; the centred samples are what metrics use.
    energy = DW4Energy()
    torch.testing.assert_close(energy(raw), energy(energy.reference_samples("val").double()), atol=1e-4, rtol=1e-5)


@needs_data
def test_unique_pair_lj_does_not_match_reference() -> None:
    x = LJ13Energy().reference_samples("val").double()
    unique = LennardJonesEnergy(13, pair_convention="unique")(x)
    assert abs(unique.mean().item() - (-43.00)) > 5


def test_lj_conventions_relation() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 13 * 3, generator=g, dtype=torch.float64) * 1.5
    ordered = LennardJonesEnergy(13)(x)
    unique = LennardJonesEnergy(13, pair_convention="unique")(x)
    no_osc = LennardJonesEnergy(13, oscillator_scale=0.0)(x)
    osc = ordered - no_osc
    torch.testing.assert_close(ordered - osc, 2 * (unique - osc))
    # Two particles at distance r_m = 1: each ordered pair contributes 1 - 2 = -1; oscillator 0.5 * 2 * 0.5^2.
    pair = torch.tensor([[0.0, 0.0, 0.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    assert LennardJonesEnergy(2)(pair).item() == pytest.approx(-2.0 + 0.25)
    with pytest.raises(ValueError, match="pair_convention"):
        LennardJonesEnergy(13, pair_convention="both")  # type: ignore[arg-type]


def test_double_well_formula() -> None:
    # Two particles at distance d: E = 0.9 (d - 4)^4 - 4 (d - 4)^2.
    d = torch.tensor([2.0, 4.0, 5.5], dtype=torch.float64)
    x = torch.stack([torch.zeros_like(d), torch.zeros_like(d), d, torch.zeros_like(d)], dim=1)
    expected = 0.9 * (d - 4) ** 4 - 4 * (d - 4) ** 2
    torch.testing.assert_close(DoubleWellEnergy(n_particles=2)(x), expected)


@pytest.mark.parametrize("energy", [DW4Energy(), LJ13Energy()], ids=["DW4", "LJ13"])
def test_particle_energies_are_invariant(energy: DoubleWellEnergy | LennardJonesEnergy) -> None:
    g = torch.Generator().manual_seed(1)
    n, d = energy.n_particles, energy.spatial_dim
    x = torch.randn(16, energy.dim, generator=g, dtype=torch.float64) * 2.0
    e = energy(x)
    pts = as_particles(x, n, d)
    rotated = (pts @ _random_rotation(d, g).T).reshape(x.shape)
    translated = (pts + torch.randn(16, 1, d, generator=g, dtype=torch.float64) * 5).reshape(x.shape)
    permuted = pts[:, torch.randperm(n, generator=g)].reshape(x.shape)
    for transformed in (rotated, translated, permuted):
        torch.testing.assert_close(energy(transformed), e)


def test_gmm40_means_and_rng_isolation() -> None:
    torch.manual_seed(123)
    state = torch.get_rng_state()
    gmm = GMM40Energy()
    assert torch.equal(torch.get_rng_state(), state), "GMM40 must not touch the global RNG"
    expected = torch.tensor([[-0.2995, 21.4577], [-32.9218, -29.4376], [-15.4062, 10.7263]])
    torch.testing.assert_close(gmm.means[:3], expected, atol=5e-5, rtol=0)
    assert gmm.means.shape == (40, 2) and gmm.means.abs().max() <= 40
    torch.testing.assert_close(gmm.stds, torch.full((40, 2), math.log1p(math.e)))
    assert gmm.dim == 2 and not gmm.is_particle_system


def test_gmm40_floored_log_prob_and_finite_energy() -> None:
    gmm = GMM40Energy()
    far = torch.tensor([[1000.0, 1000.0], [gmm.means[0, 0].item(), gmm.means[0, 1].item()]])
    floored = gmm.floored_log_prob(far)
    assert floored[0] == -math.inf and torch.isfinite(floored[1])
    e, grad = energy_and_grad(gmm, far)
    assert torch.isfinite(e).all() and torch.isfinite(grad).all()


def test_gaussian_mixture_density_and_sampling() -> None:
    means = torch.tensor([[-3.0, 0.0], [2.0, 1.0]], dtype=torch.float64)
    stds = torch.tensor([0.5, 1.0], dtype=torch.float64)
    weights = torch.tensor([0.25, 0.75], dtype=torch.float64)
    mix = GaussianMixtureEnergy(means, stds, weights)
    # Normalised: integrate exp(log_prob) on a grid.
    axis = torch.linspace(-8, 8, 401, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    mass = mix.log_prob(grid).exp().sum() * (axis[1] - axis[0]) ** 2
    assert mass.item() == pytest.approx(1.0, abs=1e-4)
    x = mix.sample(40000, generator=torch.Generator().manual_seed(0))
    expected_mean = (weights[:, None] * means).sum(0)
    torch.testing.assert_close(x.mean(0).double(), expected_mean, atol=0.03, rtol=0)
    assert (x[:, 0] < -0.5).double().mean().item() == pytest.approx(0.25, abs=0.01)


def test_gaussian_energy_is_normalised_log_density() -> None:
    energy = GaussianEnergy([1.0, -2.0, 0.5], std=0.7)
    x = torch.randn(5, 3)
    reference = torch.distributions.Normal(energy.mean, 0.7).log_prob(x).sum(-1)
    torch.testing.assert_close(energy.log_prob(x), reference)
    assert energy.sample(3).shape == (3, 3)


def test_function_energy_with_context() -> None:
    energy = FunctionEnergy(lambda x, c: ((x - c[:, :2]) ** 2).sum(-1) * c[:, 2], dim=2, context_dim=3)
    x = torch.randn(4, 2)
    c = torch.randn(4, 3)
    torch.testing.assert_close(energy(x, c), ((x - c[:, :2]) ** 2).sum(-1) * c[:, 2])
    with pytest.raises(ValueError, match="needs a context"):
        energy(x)
    with pytest.raises(ValueError, match=r"context of shape \(4, 3\)"):
        energy(x, c[:3])
    bad = FunctionEnergy(lambda x, c: x, dim=2)
    with pytest.raises(ValueError, match="must return shape"):
        bad(x)


def test_bad_shapes_raise_helpful_errors() -> None:
    with pytest.raises(ValueError, match=r"expects x of shape \(N, 8\), got \(3, 6\)"):
        DW4Energy()(torch.randn(3, 6))
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        GMM40Energy()(torch.randn(2))
    with pytest.raises(ValueError, match="unconditional"):
        GMM40Energy()(torch.randn(3, 2), torch.randn(3, 1))
    with pytest.raises(ValueError, match="n_particles"):
        FunctionEnergy(lambda x, c: x.sum(-1), dim=7, n_particles=2, spatial_dim=3)


def test_registry() -> None:
    assert set(ENERGIES) == {"GMM40", "DW4", "LJ13", "LJ55"}
    lj55 = make_energy("LJ55")
    assert isinstance(lj55, LJ55Energy) and lj55.dim == 165 and lj55.is_particle_system
    with pytest.raises(ValueError, match="Did you mean 'LJ13'"):
        make_energy("LJ-13x")
    with pytest.raises(ValueError, match="Did you mean 'GMM40'"):
        make_energy("gmm40")
    with pytest.raises(ValueError, match="no reference split"):
        lj55.reference_samples("val")


def test_missing_data_dir_message(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv(BOLTZMANN_DIR_ENV, str(tmp_path))
    assert boltzmann_data_dir() == tmp_path
    with pytest.raises(FileNotFoundError, match=BOLTZMANN_DIR_ENV):
        DW4Energy().reference_samples("val")


def test_energy_and_grad_chunks_and_no_grad() -> None:
    net = torch.nn.Linear(2, 1)
    energy = FunctionEnergy(lambda x, c: net(x).squeeze(-1) ** 2, dim=2)
    x = torch.randn(10, 2)
    with torch.no_grad():
        e_full, g_full = energy_and_grad(energy, x)
        e_chunk, g_chunk = energy_and_grad(energy, x, chunk_size=3)
    torch.testing.assert_close(e_full, e_chunk)
    torch.testing.assert_close(g_full, g_chunk)
    expected = 2 * net(x).detach() * net.weight.detach()
    torch.testing.assert_close(g_full, expected)
    assert net.weight.grad is None and not g_full.requires_grad
