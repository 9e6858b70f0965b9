"""crystals.diffusion: schedules, the lattice DDPM, the wrapped normal on the torus and categorical D3PM, each checked
against an independent computation (finite differences, quadrature, Monte Carlo, explicit matrix products, Bayes)."""

import math

import pytest
import torch
from torch.nn import functional as F

from crystals.diffusion import (
    CategoricalD3PM,
    CrystalDiffusionConfig,
    DiffusionSchedules,
    GaussianDDPM,
    LossWeights,
    WrappedNormalDiffusion,
    absorbing_prior,
    absorbing_x0_logits,
    max_sigma,
    wrapped_normal_log_density,
    wrapped_normal_score,
    wrapped_normal_score_norm,
)

F64 = torch.float64


@pytest.fixture(scope="module")
def schedules() -> DiffusionSchedules:
    return DiffusionSchedules()


@pytest.fixture(scope="module")
def short() -> DiffusionSchedules:
    """100 steps: the same curves on a coarser grid, for whole reverse chains."""
    return DiffusionSchedules(CrystalDiffusionConfig(timesteps=100))


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _steps(t: int) -> torch.Tensor:
    return torch.tensor(t)


# Schedules


def test_schedules_are_monotone_with_the_reference_endpoints(schedules):
    T = schedules.timesteps
    betas, alpha_bar, sigmas, norms = schedules.betas, schedules.alphas_cumprod, schedules.sigmas, schedules.score_norms
    assert T == 1000 and betas.shape == alpha_bar.shape == sigmas.shape == norms.shape == (T + 1,)
    assert betas[0] == 0 and alpha_bar[0] == 1 and sigmas[0] == 0 and norms[0] == 1 and schedules.posterior_std[1] == 0
    assert betas[1] == pytest.approx(1e-4) and betas[T] == pytest.approx(0.9999)
    assert (betas[1:].diff() >= 0).all() and (alpha_bar.diff() < 0).all() and alpha_bar[T] < 1e-9
    torch.testing.assert_close(alpha_bar, torch.cumprod(1 - betas, 0))
    t = 400  # unclipped: ᾱ_t/ᾱ_{t−1} is the cosine ratio (Nichol & Dhariwal 2021, eq. 17)
    cosine = [math.cos((s / T + 0.008) / 1.008 * math.pi / 2) ** 2 for s in (t - 1, t)]
    assert 1 - betas[t].item() == pytest.approx(cosine[1] / cosine[0], rel=1e-12)
    assert sigmas[1] == pytest.approx(0.005) and sigmas[T] == pytest.approx(0.5)
    ratios = sigmas[2:] / sigmas[1:-1]
    torch.testing.assert_close(ratios, torch.full_like(ratios, 100 ** (1 / (T - 1))))
    assert (norms[1:].diff() < 0).all()
    timesteps = schedules.sample_timesteps(5000, _generator())
    assert timesteps.dtype == torch.long and timesteps.min() == 1 and timesteps.max() == T


@pytest.mark.parametrize(
    ("field", "value"),
    [("timesteps", 0), ("beta_max", 1.0), ("sigma_begin", 0.6), ("sigma_end", 2.0), ("wrapped_images", 1.5)],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field.split("_")[0]):
        CrystalDiffusionConfig(**{field: value})


# Wrapped normal


@pytest.mark.parametrize("sigma", [0.005, 0.05, 0.3, 1.0])
def test_wrapped_normal_score_is_the_derivative_of_its_log_density_and_periodic(sigma):
    d = torch.linspace(-1.6, 1.6, 401, dtype=F64)
    h = 1e-6 * sigma
    finite_difference = (wrapped_normal_log_density(d + h, sigma) - wrapped_normal_log_density(d - h, sigma)) / (2 * h)
    score = wrapped_normal_score(d, sigma)
    torch.testing.assert_close(score, finite_difference, rtol=1e-6, atol=1e-6 / sigma)
    for shift in (1.0, -3.0):
        torch.testing.assert_close(wrapped_normal_score(d + shift, sigma), score, rtol=1e-9, atol=1e-7 / sigma**2)
        torch.testing.assert_close(wrapped_normal_log_density(d + shift, sigma), wrapped_normal_log_density(d, sigma))
    inside = (d.abs() > 1e-3) & (d.abs() < 0.5)  # the density falls with |d| on [0, ½]
    assert torch.equal(score[inside].sign(), -d[inside].sign()), "the score points back to 0"


@pytest.mark.parametrize("sigma", [0.005, 0.05, 0.5, 1.0])
def test_wrapped_normal_density_integrates_to_one(sigma):
    grid = (torch.arange(40000, dtype=F64) + 0.5) / 40000  # midpoints of [0, 1): spectrally accurate, periodic
    assert wrapped_normal_log_density(grid, sigma).exp().mean().item() == pytest.approx(1.0, abs=1e-10)


def test_wrapped_normal_is_stable_far_from_the_mean_in_float32():
    sigma, d = 0.005, torch.tensor([0.2, 0.45, -0.45])  # the reference's raw exponentials underflow to 0/0 here
    score = wrapped_normal_score(d, sigma)
    assert score.dtype == torch.float32 and torch.isfinite(score).all()
    torch.testing.assert_close(score, -d / sigma**2)
    assert torch.isfinite(wrapped_normal_log_density(d, sigma)).all()


def test_score_norm_quadrature_matches_monte_carlo_and_its_small_sigma_limit(schedules):
    sigmas = torch.tensor([0.005, 0.05, 0.2, 0.35, 0.5], dtype=F64)
    quadrature = wrapped_normal_score_norm(sigmas)
    samples = (sigmas * torch.randn(100_000, 5, generator=_generator(), dtype=F64)) % 1.0
    monte_carlo = (wrapped_normal_score(samples, sigmas) ** 2).mean(0)  # DiffCSP's estimator, 10x the samples
    torch.testing.assert_close(quadrature, monte_carlo, rtol=0.03, atol=0.0)
    assert quadrature[0].item() == pytest.approx(1 / 0.005**2, rel=1e-9), "no image matters at σ = 0.005: λ = 1/σ²"
    picked = torch.tensor([1, 250, 999])
    torch.testing.assert_close(schedules.score_norms[picked], wrapped_normal_score_norm(schedules.sigmas[picked]))
    with pytest.raises(ValueError, match="sigma must lie"):
        wrapped_normal_score_norm(torch.tensor([max_sigma(10) * 1.01]))


# Coordinates


def test_coordinate_target_has_unit_second_moment(schedules):
    coords = WrappedNormalDiffusion(schedules)
    t = torch.tensor([1, 300, 700, 1000]).repeat_interleave(20_000)
    noise = torch.randn(t.shape[0], 3, generator=_generator(), dtype=F64)
    x0 = torch.rand(t.shape[0], 3, generator=_generator(1), dtype=F64)
    x_t = coords.noised(x0, t, noise)
    assert ((x_t >= 0) & (x_t < 1)).all()
    target = coords.target(t, noise)
    torch.testing.assert_close((target**2).reshape(4, -1).mean(1), torch.ones(4, dtype=F64), rtol=0.03, atol=0.0)
    assert coords.loss(target, t, noise).item() == 0.0


def _exact_score(schedules: DiffusionSchedules, x: torch.Tensor, x0: torch.Tensor, t: int, images: int = 10) -> torch.Tensor:
    """ŝ = ∇ log N_w(x − x₀; σ_t)/√λ_t, the perfect network for data concentrated at x₀."""
    return wrapped_normal_score(x - x0, schedules.sigmas[t], images) / schedules.score_norms[t].sqrt()


def test_predictor_chain_with_the_exact_score_returns_to_the_data(short):
    coords = WrappedNormalDiffusion(short)
    x0 = torch.tensor([[0.1, 0.5, 0.97]], dtype=F64)
    x = torch.rand(2000, 3, generator=_generator(), dtype=F64)
    generator = _generator(1)
    for t in range(short.timesteps, 0, -1):
        x = coords.predictor_step(x, _exact_score(short, x, x0, t), _steps(t), generator)
    assert ((x >= 0) & (x < 1)).all()
    distance = (x - x0 + 0.5) % 1.0 - 0.5
    assert distance.abs().max() < 1e-3, "σ_0 = 0: the last step lands on the data"


def test_corrector_samples_the_wrapped_normal_at_its_level(short):
    coords = WrappedNormalDiffusion(short)
    t, step_lr = 50, 2.5e-6  # γ = step_lr (σ_t/σ_1)² = 0.1 σ_t²
    sigma = short.sigmas[t].item()
    x0 = torch.tensor([[0.02, 0.5, 0.99]], dtype=F64)
    x = x0.repeat(4000, 1)
    generator = _generator()
    for _ in range(100):  # the deviation contracts by 1 − γ/σ² = 0.9 per step
        x = coords.corrector_step(x, _exact_score(short, x, x0, t, images=2), _steps(t), step_lr, generator)
    variance = (((x - x0 + 0.5) % 1.0 - 0.5) ** 2).mean().item()
    assert variance == pytest.approx(sigma**2 / (1 - 0.1 / 2), rel=0.05), "unadjusted Langevin's stationary variance"
    at_one = [coords.corrector_step(x[:3], x[:3], _steps(1), step_lr, _generator(seed)) for seed in (0, 1)]
    torch.testing.assert_close(at_one[0], at_one[1], msg="no corrector noise at t = 1, as DiffCSP")


# Lattice DDPM

MASK = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 1, 0, 1, 1, 1], [0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 1]], dtype=F64)
OFFSET = torch.zeros(4, 6, dtype=F64).index_put_((torch.tensor(2), torch.tensor(0)), torch.tensor(-math.log(3) / 4, dtype=F64))


def test_lattice_forward_process_at_T_is_standard_normal_on_free_entries_and_exact_on_masked_ones(schedules):
    lattice = GaussianDDPM(schedules)
    mask, offset = MASK.repeat(5000, 1), OFFSET.repeat(5000, 1)
    k0 = torch.full_like(mask, 3.0)
    k_T = lattice.noised(k0, torch.full((k0.shape[0],), 1000), torch.randn(k0.shape, generator=_generator(), dtype=F64),
                         mask, offset)  # fmt: skip
    free = mask.bool()
    assert torch.equal(k_T[~free], offset[~free])
    assert abs(k_T[free].mean().item()) < 0.02 and k_T[free].std().item() == pytest.approx(1.0, abs=0.02)


def test_lattice_reverse_step_samples_the_ddpm_posterior_and_keeps_the_mask(schedules):
    lattice = GaussianDDPM(schedules)
    n, t = 20_000, 250
    mask, offset = MASK.repeat(n // 4, 1), OFFSET.repeat(n // 4, 1)
    k0 = torch.randn(6, generator=_generator(), dtype=F64).expand(n, 6)
    noise = torch.randn(n, 6, generator=_generator(1), dtype=F64)
    k_t = lattice.noised(k0, torch.full((n,), t), noise)
    k_prev = lattice.reverse_step(k_t, noise, _steps(t), mask, offset, _generator(2))  # the exact ε
    assert k_prev.shape == k_t.shape and torch.equal(k_prev[~mask.bool()], offset[~mask.bool()])
    beta, alpha_bar, alpha_bar_prev = schedules.betas[t], schedules.alphas_cumprod[t], schedules.alphas_cumprod[t - 1]
    mean = (alpha_bar_prev.sqrt() * beta * k0 + (1 - beta).sqrt() * (1 - alpha_bar_prev) * k_t) / (1 - alpha_bar)
    std = (beta * (1 - alpha_bar_prev) / (1 - alpha_bar)).sqrt()  # q(k_{t−1}|k_t, k₀): Ho et al. 2020, eqs. 6-7
    residual = ((k_prev - mean) / std)[::4]  # the rows without constraints
    assert residual.mean().abs().item() < 0.03 and residual.std().item() == pytest.approx(1.0, abs=0.03)
    noised_once = lattice.noised(k0[:4], _steps(1), noise[:4])
    torch.testing.assert_close(lattice.reverse_step(noised_once, noise[:4], _steps(1)), k0[:4], msg="t = 1 is exact")
    assert lattice.loss(mask * noise, noise, mask).item() == 0.0


# Categorical D3PM


def _marginal_prior(num_classes: int, seed: int = 0) -> torch.Tensor:
    weights = torch.rand(num_classes, generator=_generator(seed), dtype=F64) + 0.05
    return weights / weights.sum()


@pytest.mark.parametrize("prior", [_marginal_prior(6), absorbing_prior(5).to(F64)], ids=["marginal", "absorbing"])
def test_transition_matrices_are_stochastic_and_compose(schedules, prior):
    d3pm = CategoricalD3PM(schedules)
    product = torch.eye(6, dtype=F64)
    for t in range(1, schedules.timesteps + 1):
        step = d3pm.transition_matrix(t, prior)
        assert (step >= 0).all()
        torch.testing.assert_close(step.sum(-1), torch.ones(6, dtype=F64))
        product = product @ step
        if t in (1, 17, 500, 1000):
            torch.testing.assert_close(d3pm.transition_matrix(t, prior, cumulative=True), product)
    x0 = torch.arange(6)
    at_T = d3pm.marginal_probs(x0, torch.full((6,), schedules.timesteps), prior)
    assert 0.5 * (at_T - prior).abs().sum(-1).max() < 1e-9, "the forward process ends at the prior"
    t = torch.tensor([1, 40, 300, 999, 1000, 7])
    expected = torch.stack([d3pm.transition_matrix(int(s), prior, cumulative=True)[i] for i, s in zip(x0, t)])
    torch.testing.assert_close(d3pm.marginal_probs(x0, t, prior), expected)


def test_forward_samples_follow_the_marginal(schedules):
    d3pm, prior = CategoricalD3PM(schedules), _marginal_prior(5)
    x0 = torch.full((40_000,), 2)
    z_t = d3pm.noised(x0, _steps(600), prior, _generator())
    frequencies = torch.bincount(z_t, minlength=5).to(F64) / z_t.numel()
    assert 0.5 * (frequencies - d3pm.marginal_probs(x0[:1], _steps(600), prior)[0]).abs().sum() < 0.01


def _bayes_posterior(d3pm: CategoricalD3PM, prior: torch.Tensor, t: int) -> torch.Tensor:
    """q(z_{t−1} = k | z_t = j, x₀ = i) as [i, j, k], by Bayes' rule on the joint of explicit matrix products."""
    before = torch.eye(prior.shape[0], dtype=F64)
    for s in range(1, t):
        before = before @ d3pm.transition_matrix(s, prior)
    joint = before[:, None, :] * d3pm.transition_matrix(t, prior).T[None, :, :]  # q(z_{t−1}=k|i) q(z_t=j|z_{t−1}=k)
    return joint / joint.sum(-1, keepdim=True)


@pytest.mark.parametrize("t", [1, 2, 37, 100])
@pytest.mark.parametrize("prior", [_marginal_prior(4, 1), absorbing_prior(3).to(F64)], ids=["marginal", "absorbing"])
def test_reverse_probs_are_bayes_posteriors_mixed_by_the_prediction(short, prior, t):
    d3pm, k = CategoricalD3PM(short), prior.shape[0]
    posterior = _bayes_posterior(d3pm, prior, t)
    reachable = torch.stack([d3pm.transition_matrix(t, prior, cumulative=True)[i] > 0 for i in range(k)])  # [i, j]
    for i in range(k):
        for j in range(k):
            if reachable[i, j]:
                x0_logits = torch.where(torch.arange(k) == i, 0.0, -math.inf).to(F64)
                probs = d3pm.reverse_probs(x0_logits, torch.tensor(j), _steps(t), prior)
                torch.testing.assert_close(probs, posterior[i, j])
    x0_logits = torch.randn(k, k, generator=_generator(), dtype=F64)  # one random prediction per z_t = j
    weights = x0_logits.softmax(-1) * reachable.T  # x₀ that cannot reach z_t carry no weight
    mixture = (weights[:, :, None] * posterior.nan_to_num().transpose(0, 1)).sum(1)
    probs = d3pm.reverse_probs(x0_logits, torch.arange(k), _steps(t), prior)
    torch.testing.assert_close(probs, mixture / mixture.sum(-1, keepdim=True))
    torch.testing.assert_close(probs.sum(-1), torch.ones(k, dtype=F64))


def test_reverse_chain_with_the_exact_prediction_ends_at_the_data(short):
    d3pm = CategoricalD3PM(short)
    n, rows, classes = 200, 15, 13  # SymmCD's site symmetry: a prior per atom and row
    prior = torch.rand(n, rows, classes, generator=_generator(), dtype=F64) + 0.01
    prior = prior / prior.sum(-1, keepdim=True)
    x0 = torch.randint(classes, (n, rows), generator=_generator(1))
    generator = _generator(2)
    z = d3pm.noised(x0, _steps(short.timesteps), prior, generator)
    exact = torch.where(F.one_hot(x0, classes).bool(), 0.0, -math.inf).to(F64)
    for t in range(short.timesteps, 0, -1):
        z = d3pm.reverse_step(exact, z, torch.full((n,), t), prior, generator)
        assert z.shape == (n, rows)
    assert torch.equal(z, x0)
    assert d3pm.loss(exact.nan_to_num(neginf=-1e4), x0).item() < 1e-6


def test_absorbing_prediction_never_names_the_token_and_keeps_revealed_variables(short):
    d3pm, prior = CategoricalD3PM(short), absorbing_prior(4)
    token = 4
    z_t = torch.tensor([token, 1, token, 3])
    network = torch.randn(4, 5, generator=_generator(), requires_grad=True)
    logits = absorbing_x0_logits(network, z_t)
    probs = logits.softmax(-1)
    assert (probs[:, token] == 0).all() and probs[1, 1] == 1 and probs[3, 3] == 1
    loss = d3pm.loss(logits, torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(network.grad).all() and (network.grad[[1, 3]] == 0).all()
    z_prev = d3pm.reverse_step(logits.detach(), z_t, _steps(60), prior, _generator())
    assert z_prev[1] == 1 and z_prev[3] == 3, "a revealed variable stays revealed"


def test_loss_weights_combine_the_reference_totals():
    ones = torch.ones(())
    assert LossWeights().total(ones, ones, ones, ones).item() == pytest.approx(5 + 1 + 0.1 + 10)
    assert LossWeights.diffcsp().total(ones, ones, ones).item() == pytest.approx(1 + 1 + 20)
    with pytest.raises(ValueError, match="site_symmetry"):
        LossWeights().total(ones, ones, ones)


def test_bad_inputs_are_rejected(schedules):
    lattice, d3pm = GaussianDDPM(schedules), CategoricalD3PM(schedules)
    k = torch.zeros(2, 6)
    cases = [
        (lambda: lattice.noised(k, torch.tensor([0, 3]), k), "t must lie in"),
        (lambda: lattice.noised(k, torch.tensor([1.0, 3.0]), k), "integer tensor"),
        (lambda: lattice.noised(k, torch.tensor([1, 2, 3]), k), "prefix"),
        (lambda: lattice.noised(k, torch.tensor([1, 2]), k, mask=torch.ones(6)), "mask and offset"),
        (lambda: lattice.noised(k, torch.tensor([1, 2]), k[:, :3]), "noise must have shape"),
        (lambda: d3pm.noised(torch.tensor([0, 5]), _steps(3), torch.full((5,), 0.2)), "classes must lie"),
        (lambda: d3pm.noised(torch.tensor([0, 1]), _steps(3), torch.full((5,), 0.3)), "prior must"),
        (lambda: d3pm.reverse_probs(torch.zeros(2, 4), torch.tensor([0, 1]), _steps(3), torch.full((5,), 0.2)), "logits"),
        (lambda: WrappedNormalDiffusion(schedules).corrector_step(k, k, _steps(3), 0.0), "step_lr"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


def test_strided_schedules_are_the_full_grid_at_its_steps(schedules):
    full = schedules.strided(schedules.timesteps)
    for name in ("betas", "alphas", "alphas_cumprod", "posterior_std", "sigmas", "score_norms"):
        torch.testing.assert_close(getattr(full, name), getattr(schedules, name), rtol=1e-12, atol=0)
    strided = schedules.strided(250)
    grid = strided.grid
    assert strided.timesteps == 250 and grid[0] == 0 and grid[1] == 1 and grid[-1] == schedules.timesteps
    torch.testing.assert_close(strided.alphas_cumprod, schedules.alphas_cumprod[grid], rtol=1e-12, atol=0)
    torch.testing.assert_close(torch.cumprod(strided.alphas, 0), strided.alphas_cumprod, rtol=1e-12, atol=0)
    torch.testing.assert_close(strided.sigmas[1:], schedules.sigmas[grid[1:]], rtol=0, atol=0)
    assert strided.posterior_std[1] == 0  # the last step is noise-free, as on the full grid
    assert schedules.strided(1).grid.tolist() == [0, schedules.timesteps]
    with pytest.raises(ValueError, match="steps"):
        schedules.strided(0)
