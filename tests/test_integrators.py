import math

import pytest
import torch

from equivariant.geometry import as_particles, remove_com
from samplers.integrators import (
    ddim_coefficients,
    euler_maruyama,
    log_likelihood,
    make_time_grid,
    probability_flow_ode,
    probability_flow_sample,
)
from samplers.schedules import CosineVPSchedule, GeometricVESchedule, NoiseSchedule

MU = torch.tensor([1.0, -2.0])
S = 0.5
SCHEDULES = [GeometricVESchedule(0.01, 5.0), CosineVPSchedule()]


def gaussian_score(schedule: NoiseSchedule, mu: torch.Tensor, s: float):
    """Exact noised score of N(mu, s^2 I)."""

    def score(x: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        alpha, h = schedule.alpha(t)[:, None], schedule.h(t)[:, None]
        return -(x - alpha * mu.to(x)) / (alpha**2 * s**2 + h)

    return score


def exact_marginal_at_one(schedule: NoiseSchedule, n: int, g: torch.Generator) -> torch.Tensor:
    one = torch.ones(())
    std = (schedule.alpha(one) ** 2 * S**2 + schedule.h(one)).sqrt()
    return schedule.alpha(one) * MU + std * torch.randn(n, 2, generator=g)


def test_time_grid() -> None:
    grid = make_time_grid(4, 1.0, 0.0)
    torch.testing.assert_close(grid, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    with pytest.raises(ValueError):
        make_time_grid(0)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=["VE", "VP"])
def test_euler_maruyama_recovers_gaussian(schedule: NoiseSchedule) -> None:
    g = torch.Generator().manual_seed(0)
    x1 = schedule.sample_prior(4000, 2, generator=g)
    x0 = euler_maruyama(gaussian_score(schedule, MU, S), x1, schedule, 200, generator=g)
    torch.testing.assert_close(x0.mean(0), MU, atol=0.05, rtol=0)
    torch.testing.assert_close(x0.var(0), torch.full((2,), S**2), atol=0.025, rtol=0)


def test_euler_maruyama_options() -> None:
    schedule = GeometricVESchedule(0.01, 5.0)
    score = gaussian_score(schedule, MU, S)
    x1 = schedule.sample_prior(500, 2, generator=torch.Generator().manual_seed(1))
    traj = euler_maruyama(score, x1, schedule, 10, generator=torch.Generator().manual_seed(2), return_trajectory=True)
    assert traj.shape == (11, 500, 2) and torch.equal(traj[0], x1)
    final = euler_maruyama(score, x1, schedule, 10, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(traj[-1], final)
    # eta = 0 is deterministic; denoise_last_step changes only the final noise.
    cold = euler_maruyama(score, x1, schedule, 10, diffusion_scale=0.0)
    torch.testing.assert_close(cold, euler_maruyama(score, x1, schedule, 10, diffusion_scale=0.0))
    denoised = euler_maruyama(score, x1, schedule, 10, generator=torch.Generator().manual_seed(2), denoise_last_step=True)
    last_noise_std = (schedule.g(torch.tensor(0.1)) * math.sqrt(0.1)).item()
    assert (denoised - final).std().item() == pytest.approx(last_noise_std, rel=0.1)
    with pytest.raises(ValueError, match="t_start > t_end"):
        euler_maruyama(score, x1, schedule, 10, t_start=0.0, t_end=1.0)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=["VE", "VP"])
@pytest.mark.parametrize("method", ["euler", "heun"])
def test_probability_flow_recovers_gaussian(schedule: NoiseSchedule, method: str) -> None:
    g = torch.Generator().manual_seed(3)
    x1 = exact_marginal_at_one(schedule, 4000, g)
    n_steps = {"euler": 400, "heun": 100}[method]  # first vs second order
    x0 = probability_flow_ode(gaussian_score(schedule, MU, S), x1, schedule, n_steps, method=method)
    torch.testing.assert_close(x0.mean(0), MU, atol=0.05, rtol=0)
    torch.testing.assert_close(x0.var(0), torch.full((2,), S**2), atol=0.03, rtol=0)
    # The flow is invertible: integrating back to t = 1 returns the starting points.
    if method == "heun":
        back = probability_flow_ode(gaussian_score(schedule, MU, S), x0, schedule, 100, t_start=0.0, t_end=1.0)
        torch.testing.assert_close(back, x1, atol=0.05, rtol=0.01)


def test_projection_keeps_com_zero() -> None:
    n_particles, spatial_dim = 4, 2
    schedule = GeometricVESchedule(0.01, 3.0)
    project = lambda v: remove_com(v, n_particles, spatial_dim)  # noqa: E731
    score = lambda x, t, c: -x / (1.0 + schedule.h(t)[:, None])  # noqa: E731
    x1 = project(schedule.sample_prior(100, 8, generator=torch.Generator().manual_seed(4)))
    for x0 in (
        euler_maruyama(score, x1, schedule, 20, projection=project),
        probability_flow_ode(score, x1 + 1.0, schedule, 20, projection=project),
    ):
        assert as_particles(x0, n_particles, spatial_dim).mean(-2).abs().max() < 1e-5


@pytest.mark.parametrize("schedule", [GeometricVESchedule(0.01, 20.0), CosineVPSchedule()], ids=["VE", "VP"])
@pytest.mark.parametrize("divergence", ["exact", "hutchinson"])
def test_log_likelihood_of_gaussian(schedule: NoiseSchedule, divergence: str) -> None:
    """Data N(0, s^2 I): the PF-ODE log-likelihood equals the analytic log-density (sign and value).

    s != 1 so that the VP flow is not trivially the identity (N(0, I) is its stationary law)."""
    s, dim = 0.6, 3
    g = torch.Generator().manual_seed(5)
    x0 = s * torch.randn(64, dim, generator=g, dtype=torch.float64)
    zero = torch.zeros(dim, dtype=torch.float64)
    ll = log_likelihood(gaussian_score(schedule, zero, s), x0, schedule, 200, divergence=divergence, generator=g)
    analytic = -0.5 * (x0**2).sum(1) / s**2 - 0.5 * dim * math.log(2 * math.pi * s**2)
    torch.testing.assert_close(ll, analytic, atol=0.02, rtol=0)


def test_hutchinson_is_unbiased_for_correlated_score() -> None:
    """Non-diagonal Jacobian (Rademacher probes are not exact): the Hutchinson estimate is noisy but unbiased."""
    schedule = GeometricVESchedule(0.05, 10.0)
    cov = torch.tensor([[1.0, 0.6], [0.6, 0.8]], dtype=torch.float64)

    def score(x: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        noised = cov + schedule.h(t)[:, None, None] * torch.eye(2, dtype=x.dtype)
        return -torch.linalg.solve(noised, x.unsqueeze(-1)).squeeze(-1)

    x0 = torch.randn(256, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    exact = log_likelihood(score, x0, schedule, 100)
    analytic = torch.distributions.MultivariateNormal(torch.zeros(2, dtype=torch.float64), cov).log_prob(x0)
    torch.testing.assert_close(exact, analytic, atol=0.05, rtol=0)
    g = torch.Generator().manual_seed(7)
    hutch = log_likelihood(score, x0, schedule, 100, divergence="hutchinson", n_hutchinson=16, generator=g)
    error = hutch - exact
    assert error.abs().mean() > 0.05, "Rademacher probes cannot be exact for a non-diagonal Jacobian"
    assert error.abs().mean() < 0.4 and error.mean().abs() < 0.05


def test_log_likelihood_validates() -> None:
    schedule = GeometricVESchedule(0.01, 2.0)
    score = gaussian_score(schedule, MU, S)
    with pytest.raises(ValueError, match="divergence"):
        log_likelihood(score, torch.zeros(2, 2), schedule, 2, divergence="jacobian")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        log_likelihood(score, torch.zeros(2), schedule, 2)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=["VE", "VP"])
def test_probability_flow_sample_density_is_exact_for_the_discrete_sampler(schedule: NoiseSchedule) -> None:
    """With the exact Gaussian score each DDIM step is affine, so the sampler's law is a Gaussian known in closed
    form: the returned log-density must equal its density at every sample (not only on average)."""
    n_steps, n = 20, 4000
    score = gaussian_score(schedule, MU, S)
    prior = schedule.sample_prior(n, 2, generator=torch.Generator().manual_seed(0))
    samples, log_density = probability_flow_sample(score, prior, schedule, n_steps)
    # Propagate mean and std through the affine DDIM steps x <- x_scale x - eps_scale sigma score(x).
    times = make_time_grid(n_steps, 1.0, 0.0)
    x_scales, eps_scales = ddim_coefficients(schedule, times)
    mean, std = torch.zeros(2), torch.full((2,), schedule.prior_std)
    for i in range(n_steps):

        def step(x: torch.Tensor, i: int = i) -> torch.Tensor:
            t = times[i : i + 1]
            return x_scales[i] * x - eps_scales[i] * schedule.sigma(t)[:, None] * score(x, t, None)

        slope = (step(torch.ones(1, 2)) - step(torch.zeros(1, 2)))[0]
        mean, std = step(mean[None])[0], std * slope.abs()
    exact = torch.distributions.Normal(mean, std).log_prob(samples).sum(1)
    torch.testing.assert_close(log_density, exact, atol=1e-4, rtol=1e-5)
    # And at 20 steps the sampler's entropy is within 0.1 nats per dimension of the target's (measured: 0.07-0.08).
    target_entropy = 2 * (0.5 * math.log(2 * math.pi * math.e * S**2))
    assert abs(-log_density.mean().item() - target_entropy) < 2 * 0.1


def test_probability_flow_sample_jacobian_of_a_coupled_velocity() -> None:
    """A score that mixes coordinates (a full, non-diagonal Jacobian): the density matches the linear map's."""
    matrix = torch.tensor([[1.0, 0.6, 0.0], [0.6, 2.0, -0.3], [0.0, -0.3, 0.5]])
    schedule = GeometricVESchedule(0.01, 1.0)

    def score(x: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        return -x @ matrix

    prior = schedule.sample_prior(5, 3, generator=torch.Generator().manual_seed(1))
    samples, log_density = probability_flow_sample(score, prior, schedule, 4)
    times = make_time_grid(4, 1.0, 0.0)
    _, eps_scales = ddim_coefficients(schedule, times)  # VE: x_scale = 1
    maps = [torch.eye(3) + eps_scales[i] * schedule.sigma(times[i]) * matrix for i in range(4)]
    total = torch.linalg.multi_dot(maps[::-1])
    torch.testing.assert_close(samples, prior @ total.T, atol=1e-5, rtol=1e-5)
    prior_log = torch.distributions.Normal(0.0, schedule.prior_std).log_prob(prior).sum(1)
    torch.testing.assert_close(log_density, prior_log - torch.linalg.slogdet(total).logabsdet, atol=1e-5, rtol=1e-5)
