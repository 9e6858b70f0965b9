import pytest
import torch

from equivariant.geometry import as_particles
from samplers.energies import DW4Energy, FunctionEnergy, GaussianEnergy
from samplers.estimators import clip_norm, mc_score_estimate, softmax_score_estimate
from samplers.schedules import CosineVPSchedule, GeometricVESchedule, NoiseSchedule

MU = torch.tensor([1.0, -2.0], dtype=torch.float64)
S = 0.7
ESTIMATORS = [mc_score_estimate, softmax_score_estimate]


def _exact_score(x: torch.Tensor, t: torch.Tensor, schedule: NoiseSchedule, mu: torch.Tensor, s: float) -> torch.Tensor:
    """Noised score of N(mu, s^2 I) under x_t = alpha x_0 + sigma eps."""
    alpha, h = schedule.alpha(t)[:, None], schedule.h(t)[:, None]
    return -(x - alpha * mu) / (alpha**2 * s**2 + h)


def _relative_error(estimate: torch.Tensor, exact: torch.Tensor) -> float:
    return ((estimate - exact).norm(dim=1).mean() / exact.norm(dim=1).mean()).item()


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize(("schedule", "t"), [(GeometricVESchedule(0.01, 3.0), 0.6), (CosineVPSchedule(), 0.2)])
def test_estimators_converge_to_gaussian_noised_score(estimator, schedule: NoiseSchedule, t: float) -> None:
    g = torch.Generator().manual_seed(0)
    energy = GaussianEnergy(MU, S)
    x = torch.randn(200, 2, generator=g, dtype=torch.float64) * 2
    tt = torch.full((200,), t, dtype=torch.float64)
    exact = _exact_score(x, tt, schedule, MU, S)
    errors = [_relative_error(estimator(energy, x, tt, schedule, k, generator=g), exact) for k in (10, 10000)]
    assert errors[1] < 0.12
    assert errors[1] < errors[0] / 4


def test_mc_estimator_ve_matches_spec_formula_at_small_noise() -> None:
    # At tiny h the estimate collapses to -grad E(x_t), whatever K.
    energy = GaussianEnergy(MU, S)
    x = torch.randn(5, 2, dtype=torch.float64)
    score = mc_score_estimate(energy, x, 1e-3, GeometricVESchedule(1e-5, 3.0), 4)
    torch.testing.assert_close(score, -(x - MU) / S**2, rtol=1e-4, atol=1e-4)


def test_richardson_runs_and_is_consistent() -> None:
    g = torch.Generator().manual_seed(1)
    schedule = GeometricVESchedule(0.01, 3.0)
    energy = GaussianEnergy(MU, S)
    x = torch.randn(200, 2, generator=g, dtype=torch.float64)
    t = torch.full((200,), 0.5, dtype=torch.float64)
    score = mc_score_estimate(energy, x, t, schedule, 2000, richardson=True, generator=g)
    assert _relative_error(score, _exact_score(x, t, schedule, MU, S)) < 0.1
    with pytest.raises(ValueError, match="richardson"):
        mc_score_estimate(energy, x, t, schedule, 1, richardson=True)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_conditional_energy_many_contexts(estimator) -> None:
    """DQS use: E(a; s) = ||a - m(s)||^2 / (2 s^2) with a per-row mean m(s) = context; one batched call."""
    g = torch.Generator().manual_seed(2)
    n = 300
    context = torch.randn(n, 2, generator=g, dtype=torch.float64) * 3
    energy = FunctionEnergy(lambda a, c: 0.5 * ((a - c) ** 2).sum(-1) / S**2, dim=2, context_dim=2)
    schedule = GeometricVESchedule(0.01, 2.0)
    x = context + torch.randn(n, 2, generator=g, dtype=torch.float64)
    t = torch.rand(n, generator=g, dtype=torch.float64) * 0.4 + 0.5
    score = estimator(energy, x, t, schedule, 4000, context=context, generator=g)
    exact = -(x - context) / (S**2 + schedule.h(t)[:, None])
    assert _relative_error(score, exact) < 0.12


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_no_grad_chunks_and_parameters_untouched(estimator) -> None:
    net = torch.nn.Linear(2, 1, dtype=torch.float64)
    energy = FunctionEnergy(lambda x, c: net(x).squeeze(-1) ** 2 + 0.5 * (x**2).sum(-1), dim=2)
    schedule = GeometricVESchedule(0.01, 2.0)
    x = torch.randn(8, 2, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        full = estimator(energy, x, 0.4, schedule, 64, generator=torch.Generator().manual_seed(3))
        chunked = estimator(energy, x, 0.4, schedule, 64, generator=torch.Generator().manual_seed(3), chunk_size=50)
    assert torch.isfinite(full).all() and full.abs().sum() > 0
    torch.testing.assert_close(full, chunked)
    assert not full.requires_grad and net.weight.grad is None and x.grad is None


def test_clipping_is_per_particle() -> None:
    v = torch.tensor([[3.0, 4.0, 0.3, 0.4], [30.0, 40.0, 6.0, 8.0]])
    clipped = clip_norm(v, 1.0, n_particles=2, spatial_dim=2)
    expected = torch.tensor([[0.6, 0.8, 0.3, 0.4], [0.6, 0.8, 0.6, 0.8]])
    torch.testing.assert_close(clipped, expected)
    torch.testing.assert_close(clip_norm(v[:1], 1.0), v[:1] / v[:1].norm())


def test_mc_estimator_clips_particle_system_targets() -> None:
    energy = DW4Energy()
    g = torch.Generator().manual_seed(4)
    x = torch.randn(32, 8, generator=g) * 4
    raw = mc_score_estimate(energy, x, 0.3, GeometricVESchedule(1e-5, 3.0), 100, generator=g)
    clipped = mc_score_estimate(energy, x, 0.3, GeometricVESchedule(1e-5, 3.0), 100, max_norm=5.0, generator=g)
    per_particle = as_particles(clipped, 4, 2).norm(dim=-1)
    assert as_particles(raw, 4, 2).norm(dim=-1).max() > 5.0
    assert per_particle.max() <= 5.0 + 1e-4
    # Translation invariance: zero-COM noise gives mean-free targets for both estimators.
    tweedie = softmax_score_estimate(energy, x, 0.3, GeometricVESchedule(1e-5, 3.0), 100, generator=g)
    for target in (raw, tweedie):
        assert as_particles(target, 4, 2).mean(-2).abs().max() < 1e-3


def test_softmax_estimator_box_truncation() -> None:
    """With bounds, the target is the noised score of the energy restricted to the box: for a flat energy on [-1, 1]
    in 1-D, p_t = (Phi((1 - x)/sigma) - Phi((-1 - x)/sigma)) / 2 whose score is known in closed form."""
    g = torch.Generator().manual_seed(5)
    energy = FunctionEnergy(lambda a, c: torch.zeros(a.shape[0], dtype=a.dtype), dim=1)
    schedule = GeometricVESchedule(0.01, 1.0)
    x = torch.linspace(-2.0, 2.0, 41, dtype=torch.float64)[:, None]
    t = torch.full((41,), 0.6, dtype=torch.float64)
    sigma = schedule.sigma(t)[:, None]
    normal = torch.distributions.Normal(torch.zeros((), dtype=torch.float64), torch.ones((), dtype=torch.float64))
    a, b = (-1 - x) / sigma, (1 - x) / sigma
    exact = (normal.log_prob(a).exp() - normal.log_prob(b).exp()) / (sigma * (normal.cdf(b) - normal.cdf(a)))
    score = softmax_score_estimate(energy, x, t, schedule, 20000, generator=g, bounds=(-1.0, 1.0))
    torch.testing.assert_close(score, exact, atol=0.05 / sigma.min().item(), rtol=0.05)
    # Far outside the box at tiny noise the proposals pile up on the nearest edge instead of returning nan.
    far = softmax_score_estimate(energy, torch.tensor([[5.0], [-5.0]]), 0.01, schedule, 8, generator=g, bounds=(-1, 1))
    assert torch.isfinite(far).all() and far[0] < 0 < far[1]


def test_estimators_validate_inputs() -> None:
    energy = GaussianEnergy(MU, S)
    schedule = GeometricVESchedule(0.01, 2.0)
    with pytest.raises(ValueError, match=r"x_t must have shape \(N, dim\)"):
        mc_score_estimate(energy, torch.zeros(2), 0.5, schedule, 4)
    with pytest.raises(ValueError, match="t must be a scalar"):
        mc_score_estimate(energy, torch.zeros(3, 2), torch.ones(2), schedule, 4)
    with pytest.raises(ValueError, match="incompatible"):
        softmax_score_estimate(DW4Energy(), torch.zeros(3, 8), 0.5, schedule, 4, bounds=(-1.0, 1.0))


@pytest.mark.parametrize("bounds", [None, (-1.0, 1.0)])
def test_softmax_estimator_with_proposals_weights_the_mixture(bounds) -> None:
    """J proposals from a density near the target join the K kernel proposals, weighted by the balance heuristic: the
    target stays the noised score (large K + J), and at K = J = 8 its mean over draws is much closer to it than with
    16 kernel proposals, which spread over the box at large sigma and miss a sharp target (what DQS's learned proposal
    is for)."""
    g = torch.Generator().manual_seed(6)
    mu, s = torch.tensor([0.3, -0.2], dtype=torch.float64), 0.05
    energy = GaussianEnergy(mu, s)
    schedule = GeometricVESchedule(0.01, 1.0)
    x = mu + 0.8 * torch.randn(64, 2, generator=g, dtype=torch.float64)
    t = torch.full((64,), 0.8, dtype=torch.float64)
    exact = _exact_score(x, t, schedule, mu, s)
    proposal = torch.distributions.Normal(mu, 2 * s)

    def estimate(k: int, j: int, repeats: int) -> torch.Tensor:
        rows, times = x.repeat(repeats, 1), t.repeat(repeats)
        kwargs = {}
        if j:
            kwargs = {"proposal_samples": proposal.sample((len(rows), j)),
                      "proposal_log_prob": lambda y: proposal.log_prob(y).sum(-1)}  # fmt: skip
        target = softmax_score_estimate(energy, rows, times, schedule, k, generator=g, bounds=bounds, **kwargs)
        return target.view(repeats, len(x), 2).mean(0)

    torch.manual_seed(0)
    assert _relative_error(estimate(2000, 2000, 1), exact) < 0.05
    mixed, kernel_only = _relative_error(estimate(8, 8, 64), exact), _relative_error(estimate(16, 0, 64), exact)
    assert mixed < 0.05 and kernel_only > 4 * mixed, (mixed, kernel_only)


def test_softmax_estimator_proposals_outside_the_box_weigh_nothing() -> None:
    """With bounds, a proposal outside the box has no target mass: the one kernel proposal alone sets the target."""
    energy = FunctionEnergy(lambda a, c: torch.zeros(a.shape[0], dtype=a.dtype), dim=1)
    schedule = GeometricVESchedule(0.01, 1.0)
    x, far = torch.zeros(1, 1, dtype=torch.float64), torch.tensor([[[3.0], [-4.0]]], dtype=torch.float64)
    mixed = softmax_score_estimate(energy, x, 0.5, schedule, 1, generator=torch.Generator().manual_seed(0),
                                   bounds=(-1, 1), proposal_samples=far,
                                   proposal_log_prob=lambda y: torch.zeros(y.shape[:2], dtype=y.dtype))  # fmt: skip
    kernel = softmax_score_estimate(energy, x, 0.5, schedule, 1, generator=torch.Generator().manual_seed(0), bounds=(-1, 1))
    torch.testing.assert_close(mixed, kernel)
    with pytest.raises(ValueError, match="proposal_samples must have shape"):
        softmax_score_estimate(energy, torch.zeros(2, 1), 0.5, schedule, 4, proposal_samples=torch.zeros(2, 3))
