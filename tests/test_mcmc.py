import pytest
import torch

from equivariant.geometry import as_particles
from samplers.energies import DW4Energy, FunctionEnergy, GaussianEnergy, GaussianMixtureEnergy
from samplers.mcmc import mala


def test_mala_gaussian_2d() -> None:
    g = torch.Generator().manual_seed(0)
    energy = GaussianEnergy([1.0, -1.0], std=2.0)
    result = mala(energy, torch.zeros(2000, 2), 400, step_size=0.01, generator=g)
    torch.testing.assert_close(result.samples.mean(0), torch.tensor([1.0, -1.0]), atol=0.15, rtol=0)
    torch.testing.assert_close(result.samples.var(0), torch.full((2,), 4.0), atol=0.4, rtol=0)
    assert result.acceptance_rate == pytest.approx(0.574, abs=0.05)
    assert result.step_size.shape == ()


def test_mala_bimodal_1d_mixture() -> None:
    g = torch.Generator().manual_seed(1)
    weights = torch.tensor([0.3, 0.7])
    means = torch.tensor([-1.5, 1.5])
    energy = GaussianMixtureEnergy(means[:, None], 0.7, weights)
    result = mala(energy, torch.randn(2000, 1, generator=g) * 2, 500, step_size=0.1, generator=g)
    mean = (weights * means).sum()
    var = 0.49 + (weights * means**2).sum() - mean**2
    assert result.samples.mean().item() == pytest.approx(mean.item(), abs=0.1)
    assert result.samples.var().item() == pytest.approx(var.item(), abs=0.25)
    assert (result.samples > 0).float().mean().item() == pytest.approx(0.7, abs=0.04)


@pytest.mark.parametrize("per_chain", [False, True])
@pytest.mark.parametrize("initial_step", [1e-4, 100.0])
def test_adaptation_moves_acceptance_to_target(per_chain: bool, initial_step: float) -> None:
    g = torch.Generator().manual_seed(2)
    energy = GaussianEnergy([0.0, 0.0, 0.0], std=1.0)
    x0 = torch.randn(500, 3, generator=g)
    fixed = mala(energy, x0, 50, step_size=initial_step, adapt=False, generator=g)
    adapted = mala(energy, x0, 250, step_size=initial_step, adapt_steps=200, per_chain=per_chain, generator=g)
    assert abs(fixed.acceptance_rate - 0.574) > 0.4
    assert adapted.acceptance_rate == pytest.approx(0.574, abs=0.1)
    assert adapted.step_size.shape == ((500,) if per_chain else ())


def test_energy_eval_count_trajectory_and_no_adaptation() -> None:
    calls = []

    def counted(x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        calls.append(x.shape[0])
        return 0.5 * (x**2).sum(-1)

    result = mala(counted, torch.zeros(30, 2), 10, step_size=0.5, adapt=False, return_every=5, chunk_size=7)
    assert result.n_energy_evals == 30 * 11 == sum(calls)
    assert max(calls) <= 7
    assert result.trajectory is not None and result.trajectory.shape == (2, 30, 2)
    torch.testing.assert_close(result.trajectory[-1], result.samples)
    assert result.step_size.item() == pytest.approx(0.5)
    assert mala(counted, torch.zeros(3, 2), 4, adapt=False).trajectory is None


def test_dw4_chains_stay_zero_com() -> None:
    energy = DW4Energy()
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(200, 8, generator=g) * 2 + 3.0  # off-centre start: projected onto the zero-COM subspace first
    result = mala(energy, x0, 50, step_size=1e-2, generator=g, return_every=10)
    assert result.trajectory is not None
    for x in (result.samples, *result.trajectory):
        assert as_particles(x, 4, 2).mean(-2).abs().max() < 1e-5
    assert 0.3 < result.acceptance_rate < 0.85


def test_conditional_target_with_context() -> None:
    """Many contexts at once: chain i targets N(c_i, 0.5^2)."""
    g = torch.Generator().manual_seed(4)
    context = torch.tensor([[-3.0], [0.0], [4.0]]).repeat_interleave(300, dim=0)
    energy = FunctionEnergy(lambda x, c: 0.5 * ((x - c) ** 2).sum(-1) / 0.25, dim=1, context_dim=1)
    result = mala(energy, torch.zeros(900, 1), 200, step_size=0.1, context=context, per_chain=True, generator=g)
    means = result.samples.view(3, 300).mean(1)
    torch.testing.assert_close(means, torch.tensor([-3.0, 0.0, 4.0]), atol=0.1, rtol=0)


def test_mala_validates() -> None:
    energy = GaussianEnergy([0.0], std=1.0)
    with pytest.raises(ValueError, match="n_chains, dim"):
        mala(energy, torch.zeros(5), 3)
    with pytest.raises(ValueError, match="adapt_steps"):
        mala(energy, torch.zeros(5, 1), 3, adapt_steps=10)
