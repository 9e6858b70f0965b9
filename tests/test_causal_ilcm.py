"""The learner of causal/ (causal/flows.py, causal/interventions.py, causal/ilcm.py): solution functions that invert
with exact log-derivatives and whose conditioners ignore their own noise, q(S) normalised exactly over a family, the
loss equal to a term-by-term computation, the ELBO equal in expectation to its closed form on a linear-Gaussian toy
(and below log p there), finite gradients in every phase, and a short training that learns the target sets."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal, Normal

from causal.flows import SolutionFunctions
from causal.ilcm import ILCM, ILCMConfig, Phase, recipe_phase
from causal.interventions import TargetFamily, TargetPosterior

torch.set_num_threads(1)


# --- solution functions ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("context", ["others", "ordered", "none"])
def test_solution_functions_invert_with_exact_log_derivative(context: str) -> None:
    torch.manual_seed(0)
    solutions = SolutionFunctions(3, context, hidden_units=8, init_scale=1.5).double()
    for parameter in solutions.parameters():  # away from the near-constant initialisation
        parameter.data += 0.3 * torch.randn_like(parameter)
    noise, context_noise = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    latents, log_det = solutions(noise, context_noise)
    back, inverse_log_det = solutions.noise(latents, context_noise)
    torch.testing.assert_close(back, noise)
    torch.testing.assert_close(inverse_log_det, -log_det)
    for row in range(5):
        jacobian = torch.autograd.functional.jacobian(lambda e, row=row: solutions(e, context_noise[row : row + 1])[0],
                                                      noise[row : row + 1])[0, :, 0, :]  # fmt: skip
        torch.testing.assert_close(jacobian, torch.diag(torch.diagonal(jacobian)))  # elementwise in ε
        torch.testing.assert_close(torch.log(torch.diagonal(jacobian).abs()), log_det[row])
    step = 1e-6 * torch.eye(3, dtype=torch.float64)
    for i in range(3):
        difference = (solutions(noise + step[i], context_noise)[0] - solutions(noise - step[i], context_noise)[0])[:, i]
        torch.testing.assert_close(torch.log((difference / 2e-6).abs()), log_det[:, i], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("context", ["others", "ordered", "none"])
def test_conditioner_of_latent_i_reads_its_context_only(context: str) -> None:
    torch.manual_seed(1)
    conditioner = SolutionFunctions(4, context, hidden_units=8).double().conditioner
    jacobian = torch.autograd.functional.jacobian(conditioner, torch.randn(1, 4, dtype=torch.float64))[0, :, :, 0, :]
    for i, j in itertools.product(range(4), range(4)):  # jacobian[i, p, j] = ∂ (parameter p of latent i) / ∂ ε_j
        reads = i != j and (context == "others" or (context == "ordered" and j < i))
        assert bool(jacobian[i, :, j].abs().sum() > 0) == reads


# --- the family and q(S) --------------------------------------------------------------------------------------------


def test_posterior_is_normalised_exactly_over_the_family() -> None:
    torch.manual_seed(2)
    family = TargetFamily([(), (0,), (1, 2), (0, 1, 2), (2,)], 3, prior=[1, 2, 3, 4, 5])
    posterior = TargetPosterior(family)
    with torch.no_grad():
        posterior.alpha.fill_(-1.3), posterior.beta.fill_(0.7), posterior.gamma.fill_(2.1)
    delta = torch.randn(6, 3)
    logits = -1.3 + 0.7 * delta.abs() + 2.1 * delta**2
    scores = torch.stack([logits[:, list(target)].sum(1) for target in family.family], dim=1)  # enumerate the sets
    expected = torch.exp(scores) / torch.exp(scores).sum(1, keepdim=True)
    torch.testing.assert_close(posterior(delta), expected)
    torch.testing.assert_close(posterior(delta, floor=0.02), (expected + 0.02) / (1 + 5 * 0.02))
    torch.testing.assert_close(posterior(delta, floor=0.02).sum(1), torch.ones(6))
    torch.testing.assert_close(family.log_prior.exp(), torch.tensor([1, 2, 3, 4, 5]) / 15.0)


def test_atomic_family_is_ilcms_intervention_encoder() -> None:
    family = TargetFamily.atomic(3)
    assert family.family == ((), (0,), (1,), (2,)) and len(family) == 4
    posterior = TargetPosterior(family)
    delta = torch.randn(5, 3)
    logits = torch.cat([torch.zeros(5, 1), -3.0 + 15.0 * delta.abs() + 15.0 * delta**2], dim=1)
    torch.testing.assert_close(posterior(delta), torch.softmax(logits, dim=1))


@pytest.mark.parametrize(
    ("family", "prior"),
    [([], None), ([(0,), (0,)], None), ([(1, 0)], None), ([(0, 3)], None), ([(), (0,)], [1.0]), ([(), (0,)], [1, 0])],
)
def test_family_rejects_bad_sets(family: list[tuple[int, ...]], prior: list[float] | None) -> None:
    with pytest.raises(ValueError):
        TargetFamily(family, 3, prior)


# --- the loss, term by term -----------------------------------------------------------------------------------------


def test_loss_equals_a_direct_computation_on_the_atomic_family() -> None:
    torch.manual_seed(3)
    n, batch, dim_x = 2, 4, 3
    family = TargetFamily.atomic(n)
    model = ILCM(dim_x, family, ILCMConfig(hidden_units=8, encoder_init_std=0.3)).double()
    x, x_tilde = torch.randn(batch, dim_x, dtype=torch.float64), torch.randn(batch, dim_x, dtype=torch.float64)
    phase = Phase(beta=0.7, beta_targets=0.5, consistency=0.3, latent_norm=0.2, marginal_kl=0.9, posterior_floor=0.01)
    torch.manual_seed(4)
    loss, _ = model.loss(x, x_tilde, phase)

    torch.manual_seed(4)  # the same draws in the same order: the plain samples, then λ and the projected samples
    single_draws = torch.randn(2 * batch, n, dtype=torch.float64)
    lam = torch.rand(3, batch, n, dtype=torch.float64)
    draws = torch.randn(2, 3, batch, n, dtype=torch.float64)
    with torch.no_grad():
        (mean1, std1), (mean2, std2) = model.encoder(x), model.encoder(x_tilde)
        noise = torch.cat([mean1, mean2]) + torch.cat([std1, std2]) * single_draws
        error = ((model.decoder(noise) - torch.cat([x, x_tilde])) ** 2).sum(1)
        norm = (noise**2).sum(1)
        delta = mean2 - mean1
        logits = torch.cat([torch.zeros(batch, 1), -3.0 + 15.0 * delta.abs() + 15.0 * delta**2], dim=1)
        q = (torch.softmax(logits, dim=1) + 0.01) / 1.03
        standard, decoded = Normal(0.0, 1.0), lambda e: Normal(model.decoder(e), 0.1)
        total = 0.0
        for b in range(batch):
            pair = 0.0
            for k, target in enumerate(family.family):
                e, e_tilde, log_q = torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64), 0.0
                for i in range(n):
                    if i in target:
                        m1, s1, m2, s2 = mean1[b, i], std1[b, i], mean2[b, i], std2[b, i]
                    else:
                        m1 = m2 = lam[k, b, i] * mean1[b, i] + (1 - lam[k, b, i]) * mean2[b, i]
                        s1 = s2 = lam[k, b, i] * std1[b, i] + (1 - lam[k, b, i]) * std2[b, i]
                    e[i] = m1 + s1 * draws[0, k, b, i]
                    e_tilde[i] = m2 + s2 * draws[1, k, b, i] if i in target else e[i]
                    log_q += Normal(m1, s1).log_prob(e[i]) + (Normal(m2, s2).log_prob(e_tilde[i]) if i in target else 0)
                log_likelihood = decoded(e).log_prob(x[b]).sum() + decoded(e_tilde).log_prob(x_tilde[b]).sum()
                intervened = 0.0
                for i in target:
                    shift, raw_scale = model.solutions.conditioner(e.unsqueeze(0))[0, i]
                    scale = 0.2 + torch.exp(raw_scale)
                    intervened += standard.log_prob((e_tilde[i] - shift) / scale) - torch.log(scale)
                kl_noise = log_q - standard.log_prob(e).sum() - intervened
                pair += q[b, k] * (-log_likelihood + 0.7 * kl_noise + 0.5 * (torch.log(q[b, k]) - math.log(1 / 3)))
            total += pair + 0.3 * (error[b] + error[b + batch]) + 0.2 * (norm[b] + norm[b + batch])
        marginal = q.mean(0)
        expected = total / batch + 0.9 * (marginal * torch.log(3 * marginal)).sum()
    torch.testing.assert_close(loss.detach(), expected)


def test_pretraining_and_beta_vae_losses_are_the_single_observation_beta_vae() -> None:
    torch.manual_seed(5)
    x, x_tilde = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    for kind, phase, beta in [("ilcm", Phase(pretrain=True, pretrain_beta=0.01), 0.01), ("betavae", Phase(beta=0.4), 0.4)]:
        model = ILCM(3, TargetFamily.atomic(2), ILCMConfig(model=kind, hidden_units=8, encoder_init_std=0.3)).double()
        torch.manual_seed(6)
        loss, _ = model.loss(x, x_tilde, phase)
        torch.manual_seed(6)
        with torch.no_grad():
            observations = torch.cat([x, x_tilde])
            mean, std = model.encoder(observations)
            noise = mean + std * torch.randn(12, 2, dtype=torch.float64)
            reconstruction = model.decoder(noise)
            log_likelihood = Normal(reconstruction, 0.1).log_prob(observations).sum(1)
            kl = (Normal(mean, std).log_prob(noise) - Normal(0.0, 1.0).log_prob(noise)).sum(1)
            penalty = 0.01 * ((reconstruction - observations) ** 2).sum(1)
            expected = 2 * (-log_likelihood + beta * kl + penalty).mean()  # per pair: the sum over x and x̃
        torch.testing.assert_close(loss.detach(), expected)


# --- the ELBO on a linear-Gaussian toy with a closed form -----------------------------------------------------------

A, C, SIGMA, SCALE = 1.2, 0.3, 0.5, 1.5  # x = A ε + C + SIGMA·noise; intervened ε̃ = SCALE · z̃


def _kl(mean1: torch.Tensor, var1: torch.Tensor, mean2: torch.Tensor, var2: torch.Tensor) -> torch.Tensor:
    return 0.5 * (torch.log(var2 / var1) + (var1 + (mean1 - mean2) ** 2) / var2 - 1)


def _linear_toy_model() -> ILCM:
    """One latent, one observed dimension; every network set by hand to an affine map (ReLU units kept positive by a
    bias of 100), the encoder to the exact posterior of ε given one observation, the solution function to z̃ = ε̃/SCALE."""
    config = ILCMConfig(hidden_units=2, hidden_layers=1, decoder_std=SIGMA, solution_init_scale=SCALE)
    model = ILCM(1, TargetFamily.atomic(1), config).double()
    weight = A / (A**2 + SIGMA**2)
    with torch.no_grad():
        for layer in (model.encoder.body[0][0], model.decoder[0]):
            layer.weight.copy_(torch.tensor([[1.0], [0.0]])), layer.bias.copy_(torch.tensor([100.0, 0.0]))
        model.encoder.mean_head.weight.copy_(torch.tensor([[weight, 0.0]]))
        model.encoder.mean_head.bias.fill_(-(100.0 + C) * weight)
        model.encoder.std_head.weight.zero_()
        model.encoder.std_head.bias.fill_(math.log(math.expm1(math.sqrt(SIGMA**2 / (A**2 + SIGMA**2)) - 1e-4)))
        model.decoder[2].weight.copy_(torch.tensor([[A, 0.0]])), model.decoder[2].bias.fill_(C - 100.0 * A)
        model.solutions.conditioner.weights[-1].zero_()
        model.solutions.conditioner.biases[-1].copy_(torch.tensor([[0.0, math.log(SCALE - 0.2)]]))
    return model


def _expected_elbos(model: ILCM, x: torch.Tensor, x_tilde: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed forms of E[ELBO_S] + log π(S) for S = ∅, {0} (K, B), and log p(x, x̃) (B,)."""
    with torch.no_grad():
        (mean1, std), (mean2, _) = model.encoder(x), model.encoder(x_tilde)
    mean1, mean2, var = mean1[:, 0], mean2[:, 0], std[:, 0] ** 2
    x, x_tilde, log_half = x[:, 0], x_tilde[:, 0], math.log(0.5)

    def single(value: torch.Tensor, prior_var: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """log p(x) and the exact posterior of ε given x, under prior N(0, prior_var)."""
        post_var = torch.tensor(1 / (1 / prior_var + A**2 / SIGMA**2), dtype=torch.float64)
        marginal = Normal(C, math.sqrt(A**2 * prior_var + SIGMA**2)).log_prob(value)
        return marginal, post_var * A * (value - C) / SIGMA**2, post_var

    # S = {0}: ε and ε̃ independent a priori; q(ε | x) is exact, q(ε̃ | x̃) assumes the prior N(0, 1), not N(0, SCALE²).
    log_p1, _, _ = single(x, 1.0)
    log_p2, post_mean, post_var = single(x_tilde, SCALE**2)
    changed = log_half + log_p1 + log_p2 - _kl(mean2, var, post_mean, post_var)
    log_joint_changed = log_half + log_p1 + log_p2
    # S = ∅: ε̃ = ε; q is N(m_λ, var) with m_λ = λ μ(x) + (1 − λ) μ(x̃), λ ~ U(0, 1), against the joint posterior.
    covariance = torch.tensor([[A**2 + SIGMA**2, A**2], [A**2, A**2 + SIGMA**2]], dtype=torch.float64)
    log_joint_same = log_half + MultivariateNormal(torch.full((2,), C, dtype=torch.float64), covariance).log_prob(
        torch.stack([x, x_tilde], dim=1)
    )
    joint_var = 1 / (1 + 2 * A**2 / SIGMA**2)
    joint_mean = joint_var * A * (x - C + x_tilde - C) / SIGMA**2
    offset, spread = mean2 - joint_mean, mean1 - mean2
    squared = offset**2 + offset * spread + spread**2 / 3  # E_λ[(m_λ − joint mean)²]
    same = log_joint_same - 0.5 * (math.log(joint_var) - torch.log(var) + (var + squared) / joint_var - 1)
    return torch.stack([same, changed]), torch.logsumexp(torch.stack([log_joint_same, log_joint_changed]), dim=0)


def test_elbo_matches_its_closed_form_and_bounds_log_p_on_a_linear_gaussian_toy() -> None:
    torch.manual_seed(7)
    model = _linear_toy_model()
    x = torch.tensor([[0.5], [0.2], [1.1], [-0.4]], dtype=torch.float64)
    x_tilde = torch.tensor([[0.52], [-1.7], [2.6], [-0.35]], dtype=torch.float64)
    expected, log_p = _expected_elbos(model, x, x_tilde)
    with torch.no_grad():
        q = model.infer_targets(x, x_tilde)
    soft = (q.T * expected).sum(0) - torch.special.xlogy(q, q).sum(1)
    assert torch.all(soft <= log_p) and torch.all(expected <= log_p)
    repeats = 20_000
    for targets, closed_form in [(None, soft), (0, expected[0]), (1, expected[1])]:
        chosen = None if targets is None else torch.full((4 * repeats,), targets)
        with torch.no_grad():
            samples = model.elbo(x.repeat(repeats, 1), x_tilde.repeat(repeats, 1), chosen).reshape(repeats, 4)
        error = samples.std(0) / math.sqrt(repeats)
        assert torch.all((samples.mean(0) - closed_form).abs() <= 4 * error + 1e-9), (samples.mean(0), closed_form)
        assert torch.all(samples.mean(0) <= log_p + 4 * error)


# --- gradients, phases, the API of the metrics ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ilcm", "dvae", "betavae"])
def test_gradients_are_finite_in_every_phase(kind: str) -> None:
    torch.manual_seed(8)
    model = ILCM(5, TargetFamily([(), (0,), (1, 2), (0, 1, 2)], 3), ILCMConfig(model=kind, hidden_units=16))
    x, x_tilde = torch.randn(16, 5), torch.randn(16, 5)
    oracle = torch.randint(0, 4, (16,))
    for progress, targets in [(0.0, None), (0.15, None), (0.4, None), (0.8, None), (0.4, oracle)]:
        model.zero_grad()
        loss, stats = model.loss(x, x_tilde, recipe_phase(progress), targets)
        loss.backward()
        assert math.isfinite(loss.item()) and stats["loss"] == pytest.approx(loss.item())
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert all(bool(torch.isfinite(g).all()) for g in grads)
        assert model.encoder.mean_head.weight.grad.abs().sum() > 0
    latents = model.encode(x)
    assert latents.shape == (16, 3)
    if kind == "betavae":
        torch.testing.assert_close(latents, model.encoder(x)[0])
        with pytest.raises(ValueError, match="no posterior"):
            model.infer_targets(x, x_tilde)
    else:
        torch.testing.assert_close(model.infer_targets(x, x_tilde).sum(1), torch.ones(16))


def test_recipe_phase_follows_the_reference_epochs() -> None:
    start, ramp, middle, late = (recipe_phase(epoch / 90) for epoch in (0, 15, 45, 75))
    assert start.pretrain and start.beta == 0 and start.posterior_floor == pytest.approx(0.025)
    assert not ramp.pretrain and ramp.beta == pytest.approx(0.5) and ramp.latent_norm == pytest.approx(0.005)
    assert ramp.posterior_floor == pytest.approx(math.sqrt(0.025 * 1e-4)) and not ramp.model_interventions
    assert middle.model_interventions and not middle.argmax_targets and middle.beta == 1 and middle.latent_norm == 0
    assert late.argmax_targets and late.posterior_floor == pytest.approx(1e-4)
    with pytest.raises(ValueError):
        recipe_phase(1.5)
    with pytest.raises(ValueError):
        Phase(beta=-1.0)
    with pytest.raises(ValueError):
        ILCMConfig(model="vae")  # type: ignore[arg-type]


# --- a short training -----------------------------------------------------------------------------------------------


def _chain_pairs(n_pairs: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """z_0 = ε_0, z_1 = (0.8 z_0 + ε_1) / 1.28, a perfect intervention on (), (0,) or (1,) with a fresh N(0, 1) value,
    and x = R z with a rotation R."""
    noise, fresh = rng.standard_normal((n_pairs, 2)), rng.standard_normal((n_pairs, 2))
    targets = rng.integers(0, 3, n_pairs)
    z = np.stack([noise[:, 0], (0.8 * noise[:, 0] + noise[:, 1]) / 1.28], axis=1)
    z0_tilde = np.where(targets == 1, fresh[:, 0], z[:, 0])
    z1_tilde = np.where(targets == 2, fresh[:, 1], (0.8 * z0_tilde + noise[:, 1]) / 1.28)
    rotation = np.array([[math.cos(0.6), -math.sin(0.6)], [math.sin(0.6), math.cos(0.6)]])
    observe = lambda latents: torch.tensor(latents @ rotation.T, dtype=torch.float32)  # noqa: E731
    return observe(z), observe(np.stack([z0_tilde, z1_tilde], axis=1)), torch.tensor(targets)


def test_short_training_raises_the_elbo_and_infers_the_target_sets() -> None:
    torch.manual_seed(9)
    rng = np.random.default_rng(9)
    (x, x_tilde, _), (x_val, x_tilde_val, targets_val) = _chain_pairs(4000, rng), _chain_pairs(1000, rng)
    model = ILCM(2, TargetFamily([(), (0,), (1,)], 2), ILCMConfig(hidden_units=32))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def validation_elbo() -> float:
        with torch.no_grad():
            return model.elbo(x_val, x_tilde_val).mean().item()

    start, steps = validation_elbo(), 600
    for step in range(steps):
        rows = torch.randint(0, len(x), (64,))
        loss, _ = model.loss(x[rows], x_tilde[rows], recipe_phase(step / steps))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
    assert validation_elbo() > start + 50.0
    with torch.no_grad():
        predicted = model.infer_targets(x_val, x_tilde_val).argmax(dim=1)
    swapped = torch.tensor([0, 2, 1])[predicted]  # the learned latents may come in either order
    accuracy = max((predicted == targets_val).float().mean().item(), (swapped == targets_val).float().mean().item())
    assert accuracy > 0.75  # chance: about 1/3


# --- the context of intervened latents ------------------------------------------------------------------------------


def _chain_solution_model(context: str, weight: float) -> ILCM:
    """Two latents, z0 = ε0 and z1 = ε1 + weight·ε0 (the linear chain z0 → z1 = weight·z0 + ε1 in its noise encoding),
    the solution functions set by hand (ReLU units kept positive by a bias of 100)."""
    config = ILCMConfig(context=context, hidden_units=2, hidden_layers=1, solution_init_scale=1.5)  # type: ignore[arg-type]
    model = ILCM(3, TargetFamily([(), (1,), (0, 1)], 2), config).double()
    conditioner = model.solutions.conditioner
    with torch.no_grad():
        for parameter in conditioner.parameters():
            parameter.zero_()
        conditioner.weights[0][1, 0, 0] = 1.0  # latent 1's hidden unit reads ε0 + 100
        conditioner.biases[0][1, 0] = 100.0
        conditioner.weights[1][1, 0, 0] = -weight  # shift m1 = −weight·ε0
        conditioner.biases[1][1, 0] = 100.0 * weight
        conditioner.biases[1][:, 1] = math.log(1.0 - model.config.solution_min_scale)  # scale 1
    return model


@pytest.mark.parametrize("context", ["ordered", "others"])
def test_intervened_prior_is_the_true_density_only_with_the_ordered_context(context: str) -> None:
    """S = {z0, z1} on the chain z0 → z1: z̃ ~ N(0, I) fresh, so the encoding ε̃ = (z̃0, z̃1 − w z̃0) has the density
    N(ε̃0) N(ε̃1 + w ε̃0), which reads the fresh ε̃0. The ordered context solves in ε̃ and gets it exactly; the reference's
    context (every other noise, solved in the pre-intervention ε) cannot. For S = {z1} both are exact."""
    weight, rng = 1.7, torch.Generator().manual_seed(10)
    model = _chain_solution_model(context, weight)
    noise, fresh = (torch.randn(500, 2, generator=rng, dtype=torch.float64) for _ in range(2))
    standard = Normal(0.0, 1.0)
    joint = torch.stack([fresh[:, 0], fresh[:, 1] - weight * fresh[:, 0]], dim=1)
    single = torch.stack([noise[:, 0], fresh[:, 1] - weight * noise[:, 0]], dim=1)
    with torch.no_grad():
        for noise_tilde, mask, true in [(joint, [1.0, 1.0], standard.log_prob(fresh).sum(1)),
                                        (single, [0.0, 1.0], standard.log_prob(fresh[:, 1]))]:  # fmt: skip
            sets = torch.tensor(mask, dtype=torch.float64).expand(500, 2)
            value = model.intervened_log_prob(noise, noise_tilde, sets)
            if context == "ordered" or mask[0] == 0.0:
                torch.testing.assert_close(value, true)
            else:
                assert (value - true).abs().mean() > 0.5


def test_ordered_intervened_prior_is_a_normalised_density_of_a_joint_intervention() -> None:
    """∫∫ p(ε̃0, ε̃1 | ε) dε̃ = 1 on a grid, for random ordered solution functions and S = {z0, z1} (the same functions
    with every other noise as context, solved in ε̃, integrate to 1.79 here: no density)."""
    torch.manual_seed(11)
    model = ILCM(3, TargetFamily([(), (0, 1)], 2), ILCMConfig(hidden_units=8, solution_init_scale=1.0)).double()
    for parameter in model.solutions.parameters():
        parameter.data += torch.randn_like(parameter)
    axis = torch.linspace(-25.0, 25.0, 1001, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    noise = torch.tensor([[0.4, -1.1]], dtype=torch.float64).expand_as(grid)
    with torch.no_grad():
        density = model.intervened_log_prob(noise, grid, torch.ones_like(grid)).exp()
    assert float(density.sum() * (axis[1] - axis[0]) ** 2) == pytest.approx(1.0, abs=1e-3)
