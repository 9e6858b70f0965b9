"""The learner: an implicit latent causal model (ILCM; Brehmer, de Haan, Lippe & Cohen, "Weakly supervised causal
representation learning", NeurIPS 2022, arXiv 2203.16437, App. C; reference ``ws_crl/lcm/ilcm.py``) whose posterior over
the unknown target set ranges over a given family of target sets instead of {∅, {0}, …, {n−1}}, with its baselines.

Generative model of a pair: noises ε ~ N(0, I_n); a target set S ~ π over the family; ε̃_i = ε_i off S, and on S
ε̃_i = s_i(z̃_i; context) with z̃_i ~ N(0, 1), the solution functions of `causal.flows` (their context: below);
x = dec(ε) + noise and x̃ = dec(ε̃) + noise with a Gaussian decoder of fixed std. Inference: a Gaussian encoder q(ε | x) and
`causal.interventions.TargetPosterior` for q(S | x, x̃). The ELBO of a pair (App. C of the paper;
reference ``forward``, ``_project_and_sample``, ``_compute_elbo_terms``) sums over the family, weighted by q(S):
the non-intervened components of both posteriors are replaced by a λ-mix of their means and stds (λ ~ U(0, 1)), ε and
ε̃_S are sampled from them, ε̃ = S ⊙ ε̃ + (1 − S) ⊙ ε, and

    ELBO_S = log p(x | ε) + log p(x̃ | ε̃) + log N(ε; 0, I) + Σ_{i∈S} [log N(z̃_i; 0, 1) + log|∂z̃_i/∂ε̃_i|]
             − log q(ε, ε̃_S) + log π(S) − log q(S).

Context of the intervened solution functions (`ILCMConfig.context`). The encoding ε̃ of x̃ is the noise vector that the
observational solution functions map to z̃, z̃ = s⁻¹(ε̃; ε̃) (the decoder reads x̃ so). Under a perfect intervention on
S, z̃_S is fresh and independent of ε, and for i ∈ S the true ε̃_i = s_i(z̃_i; ε̃_An(i)) reads the ancestors'
*post*-intervention noises, which differ from ε for ancestors inside S. The prior of ε̃_S given ε̃_{V∖S} = ε_{V∖S} is
therefore the change of variables ε̃_S ↦ z̃_S with z̃_i = s_i⁻¹(ε̃_i; ε̃), Σ_{i∈S} [log N(z̃_i) + log|∂z̃_i/∂ε̃_i|],
which is a normalised density exactly when that map is triangular: when the context is acyclic. Brehmer et al. (App. C)
need no choice: for atomic S, ε̃_−i = ε_−i and the two contexts coincide. Hence "ordered" (the default: latent i reads
ε_<i, a fixed-order model; the family's masks pin the latents' indices, so with the registered tasks, whose latents are
indexed in topological order, it is told the causal order) solves z̃_S in the context of ε̃ and contains the true model
for every family; "others" (the reference: every other noise) keeps the reference's pre-intervention context ε, since a
cyclic context solved at ε̃ is no density. It is exact for atomic targets but cannot represent a target set holding a
latent and an ancestor (chain z1 → z2 with S = {z1, z2}: the true z̃_2 = s_2⁻¹(ε̃_2; ε̃_1) reads the fresh ε̃_1, not
ε_1); `ILCM.intervened_log_prob` is the term. The price of "ordered": the encoder must also find a topological order of
the latents, and in a learned order that is not one the true model is again out of reach (seen once: chain z1 → z2 → z3
with targets {z2}, {z2, z3}, where a run ordered z3 before z2 and leaked ε3 into its z2;
`benchmarks.causal_abstraction` compares both contexts).

The training loss is −log-likelihood + β·KL_ε + β_S·KL_S plus the reference's regularisers (``ws_crl/training.py``):
0.01 × a consistency MSE of plain reconstructions, a ‖ε‖² penalty early in training, and KL(batch-mean q ‖ π) in place
of the reference's −entropy of the batch-mean q (equal up to a constant for a uniform π). `Phase` holds the switches of
the reference recipe (β-VAE pretraining, β ramp, when the intervened-prior terms start, argmax targets) so that a
trainer schedules them by step (`recipe_phase`).

Models (``ILCMConfig.model``): "ilcm"; "dvae", the same with solution functions that read no context; "betavae", a
β-VAE on single observations with prior N(0, I) (the reference's ``UnstructuredPrior``).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from causal.flows import SolutionFunctions
from causal.interventions import TargetFamily, TargetPosterior
from core.config import CheckedConfig, require_non_negative, require_positive

LOG_2PI = math.log(2 * math.pi)


def gaussian_log_prob(value: Tensor, mean: Tensor | float, std: Tensor | float) -> Tensor:
    """Elementwise log N(value; mean, std²)."""
    std = torch.as_tensor(std, dtype=value.dtype)
    return -0.5 * ((value - mean) / std) ** 2 - torch.log(std) - 0.5 * LOG_2PI


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers of the given sizes with ReLU between them."""
    layers: list[nn.Module] = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


class GaussianEncoder(nn.Module):
    """q(ε | x) = N(μ(x), diag σ²(x)), σ = min_std + softplus(·) starting near ``init_std`` (reference
    ``ws_crl/encoder/vae.py``, ``GaussianEncoder``)."""

    def __init__(self, dim_x: int, num_latents: int, hidden_units: int, hidden_layers: int, init_std: float,
                 min_std: float) -> None:  # fmt: skip
        super().__init__()
        self.min_std = min_std
        self.body = nn.Sequential(mlp([dim_x, *[hidden_units] * hidden_layers]), nn.ReLU())
        self.mean_head = nn.Linear(hidden_units, num_latents)
        self.std_head = nn.Linear(hidden_units, num_latents)
        with torch.no_grad():
            self.std_head.weight.normal_(0.0, 1e-3)
            self.std_head.bias.fill_(math.log(math.expm1(init_std - min_std)))  # softplus⁻¹

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, dim_x) -> means and stds, each (B, n)."""
        hidden = self.body(x)
        return self.mean_head(hidden), self.min_std + nn.functional.softplus(self.std_head(hidden))


@dataclass(frozen=True)
class ILCMConfig(CheckedConfig):
    """The architecture. Defaults: the reference's scaling experiment (``config/model/scaling_ilcm.yaml``), except
    that the decoder's std, learned there from 0.1, is fixed here."""

    model: Literal["ilcm", "dvae", "betavae"] = "ilcm"
    """ILCM; the dVAE baseline (solution functions without context); or a β-VAE on single observations."""
    context: Literal["ordered", "others"] = "ordered"
    """ILCM's solution functions read the noises of the latents before them ("ordered": exact for every target set)
    or every other noise ("others": the reference, exact for atomic target sets; module docstring)."""
    hidden_units: int = 64
    """Width of every MLP: encoder, decoder and the conditioners of the solution functions."""
    hidden_layers: int = 2
    """Hidden layers of every MLP."""
    encoder_init_std: float = 0.01
    """The encoder's std at initialisation."""
    encoder_min_std: float = 1e-4
    """Lower bound of the encoder's std."""
    decoder_std: float = 0.1
    """Fixed std of p(x | ε) per observed dimension."""
    solution_min_scale: float = 0.2
    """Lower bound of σ_i in z_i = (ε_i − m_i) / σ_i."""
    solution_init_scale: float = 10.0
    """σ_i at initialisation."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive(self, ("hidden_units", "hidden_layers", "encoder_min_std", "decoder_std", "solution_min_scale"))
        if not self.encoder_init_std > self.encoder_min_std:
            raise ValueError(f"encoder_init_std must exceed encoder_min_std, got {self.encoder_init_std}")
        if not self.solution_init_scale > self.solution_min_scale:
            raise ValueError(f"solution_init_scale must exceed solution_min_scale, got {self.solution_init_scale}")


@dataclass(frozen=True)
class Phase(CheckedConfig):
    """The knobs of one training step, which the reference recipe changes over training (`recipe_phase`)."""

    pretrain: bool = False
    """Train as a β-VAE on single observations with ``pretrain_beta`` (ILCM and dVAE; the β-VAE always is one)."""
    pretrain_beta: float = 1e-3
    """β of the pretraining phase."""
    beta: float = 1.0
    """Weight of KL_ε (of the β-VAE's KL outside pretraining)."""
    beta_targets: float = 1.0
    """Weight of KL(q(S) ‖ π)."""
    model_interventions: bool = True
    """Whether KL_ε includes the intervened-variable prior terms Σ_{i∈S} [log N(z̃_i) + log|∂z̃_i/∂ε̃_i|]."""
    argmax_targets: bool = False
    """Use only each pair's most probable target set (weight 1) instead of the expectation over q(S)."""
    consistency: float = 0.01
    """Weight of ‖dec(ε) − x‖² + ‖dec(ε̃) − x̃‖² with ε, ε̃ sampled from the unprojected posteriors."""
    latent_norm: float = 0.0
    """Weight of ‖ε‖² + ‖ε̃‖² of those samples."""
    marginal_kl: float = 1.0
    """Weight of KL(batch-mean q(S) ‖ π), which keeps q from collapsing onto few sets."""
    posterior_floor: float = 1e-4
    """Probability mixed into every q(S) (`TargetPosterior.forward`)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require_non_negative(
            self, ("pretrain_beta", "beta", "beta_targets", "consistency", "latent_norm", "marginal_kl", "posterior_floor")
        )


def recipe_phase(progress: float) -> Phase:
    """The reference recipe's phase at ``progress`` ∈ [0, 1] of training (``config/training/scaling.yaml``: 90
    epochs): β-VAE pretraining with β = 1e-3 for epochs 0–9; then β, β_S ramp 0 → 1 and the ‖ε‖² weight 0.01 → 0 over
    epochs 10–20 while the posterior floor decays geometrically 0.025 → 1e-4; the intervened-variable prior terms from
    epoch 30; argmax target sets from epoch 60. The reference also uses Adam 3e-4 with cosine restarts every 30 epochs
    (resetting Adam) and gradient-norm clipping at 10: the trainer's part."""
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"progress must lie in [0, 1], got {progress}")
    epoch = 90.0 * progress
    ramp = min(max((epoch - 10.0) / 10.0, 0.0), 1.0)
    return Phase(
        pretrain=epoch < 10.0, beta=ramp, beta_targets=ramp, latent_norm=0.01 * (1.0 - ramp),
        posterior_floor=math.exp((1.0 - ramp) * math.log(0.025) + ramp * math.log(1e-4)),
        model_interventions=epoch >= 30.0, argmax_targets=epoch >= 60.0,
    )  # fmt: skip


class PairTerms(NamedTuple):
    """Per-pair (B,) pieces of the ELBO, each already averaged over q(S)."""

    log_likelihood: Tensor  # E_q[log p(x | ε) + log p(x̃ | ε̃)]
    kl_noise: Tensor  # E_q[log q(ε, ε̃_S) − log N(ε) − (intervened-prior terms, when modelled)]
    kl_targets: Tensor  # KL(q(S) ‖ π)


class SingleTerms(NamedTuple):
    """Per-pair (B,) terms of x and x̃ encoded separately with one sample each, summed over the two."""

    log_likelihood: Tensor  # log p(x | ε) + log p(x̃ | ε̃)
    kl: Tensor  # one-sample KL(q(ε | x) ‖ N(0, I)) + the same for x̃
    squared_error: Tensor  # ‖dec(ε) − x‖² + ‖dec(ε̃) − x̃‖²
    norm: Tensor  # ‖ε‖² + ‖ε̃‖²


class ILCM(nn.Module):
    """ILCM over a family of target sets, or one of its baselines (``config.model``): one module holding the encoder,
    decoder, solution functions and target posterior, so that a trainer keeps one optimiser and calls `loss` per
    batch. Random draws come from the ``generator`` of `elbo` and `loss` (torch's global one when None).

    :param dim_x: Observed dimension
    :param family: The possible target sets and their prior (for the β-VAE only its number of latents is used)
    :param config: The architecture
    """

    def __init__(self, dim_x: int, family: TargetFamily, config: ILCMConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ILCMConfig()
        self.num_latents = n = family.masks.shape[1]
        hidden = [config.hidden_units] * config.hidden_layers
        self.encoder = GaussianEncoder(dim_x, n, config.hidden_units, config.hidden_layers, config.encoder_init_std,
                                       config.encoder_min_std)  # fmt: skip
        self.decoder = mlp([n, *hidden, dim_x])
        self.structured = config.model != "betavae"
        if self.structured:
            self.solutions = SolutionFunctions(n, config.context if config.model == "ilcm" else "none", config.hidden_units,
                                               config.hidden_layers, config.solution_min_scale,
                                               config.solution_init_scale)  # fmt: skip
            self.posterior = TargetPosterior(family)

    # --- what the metrics read ------------------------------------------------------------------------------------

    def encode(self, x: Tensor) -> Tensor:
        """(B, dim_x) -> (B, n) causal latents ẑ: the encoder mean through the solution functions, z = s⁻¹(μ; μ)
        (reference ``encode_to_causal``); the β-VAE's are the means themselves."""
        mean, _ = self.encoder(x)
        return self.solutions(mean, mean)[0] if self.structured else mean

    def infer_targets(self, x: Tensor, x_tilde: Tensor, floor: float = 0.0) -> Tensor:
        """(B, K) posterior probabilities q(S | x, x̃) of the family's target sets."""
        if not self.structured:
            raise ValueError("the β-VAE has no posterior over target sets")
        return self.posterior(self.encoder(x_tilde)[0] - self.encoder(x)[0], floor)

    # --- objectives -----------------------------------------------------------------------------------------------

    def elbo(self, x: Tensor, x_tilde: Tensor, targets: Tensor | None = None, floor: float = 0.0,
             generator: torch.Generator | None = None) -> Tensor:  # fmt: skip
        """(B,) one-sample ELBO of each pair, a lower bound of log p(x, x̃) in expectation (of log p(x, x̃, S) with the
        true ``targets`` (B,) indices into the family); the β-VAE's is log p(x) + log p(x̃)'s."""
        mean, std = self.encoder(torch.cat([x, x_tilde]))
        if not self.structured:
            single = self._single_terms(torch.cat([x, x_tilde]), mean, std, generator)
            return single.log_likelihood - single.kl
        (mean1, mean2), (std1, std2) = mean.chunk(2), std.chunk(2)
        probs = self.posterior(mean2 - mean1, floor)
        terms = self._pair_terms(x, x_tilde, (mean1, std1, mean2, std2), probs, targets, True, generator)
        return terms.log_likelihood - terms.kl_noise - terms.kl_targets

    def loss(self, x: Tensor, x_tilde: Tensor, phase: Phase, targets: Tensor | None = None,
             generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:  # fmt: skip
        """The training loss of a batch of pairs (B, dim_x) in ``phase``, and its parts for logging. ``targets`` (B,)
        indices into the family make it the oracle: q(S) puts mass 1 on the true set."""
        observations = torch.cat([x, x_tilde])
        mean, std = self.encoder(observations)
        single = self._single_terms(observations, mean, std, generator)
        regularisers = phase.consistency * single.squared_error + phase.latent_norm * single.norm
        stats = {"consistency_mse": single.squared_error.mean().item(), "latent_norm": single.norm.mean().item(),
                 "encoder_std": std.mean().item()}  # fmt: skip
        if phase.pretrain or not self.structured:
            beta = phase.pretrain_beta if phase.pretrain else phase.beta
            loss = (-single.log_likelihood + beta * single.kl + regularisers).mean()
            stats.update(loss=loss.item(), log_likelihood=single.log_likelihood.mean().item(), kl=single.kl.mean().item())
            return loss, stats
        (mean1, mean2), (std1, std2) = mean.chunk(2), std.chunk(2)
        probs = self.posterior(mean2 - mean1, phase.posterior_floor)
        oracle = targets is not None
        if not oracle and phase.argmax_targets:
            targets = probs.argmax(dim=1)
        terms = self._pair_terms(x, x_tilde, (mean1, std1, mean2, std2), probs, targets, phase.model_interventions,
                                 generator)  # fmt: skip
        loss = (-terms.log_likelihood + phase.beta * terms.kl_noise + phase.beta_targets * terms.kl_targets
                + regularisers).mean()  # fmt: skip
        marginal = probs.mean(dim=0)  # soft q even with argmax targets: its log stays finite
        marginal_kl = (torch.special.xlogy(marginal, marginal) - marginal * self.posterior.family.log_prior).sum()
        if not oracle:  # the oracle's q(S) is fixed: nothing to keep from collapsing
            loss = loss + phase.marginal_kl * marginal_kl
        stats.update(loss=loss.item(), log_likelihood=terms.log_likelihood.mean().item(),
                     kl_noise=terms.kl_noise.mean().item(), kl_targets=terms.kl_targets.mean().item(),
                     marginal_kl=marginal_kl.item())  # fmt: skip
        return loss, stats

    # --- the pieces -----------------------------------------------------------------------------------------------

    def _log_likelihood(self, noise: Tensor, observations: Tensor) -> tuple[Tensor, Tensor]:
        """log p(observations | noise) and the squared reconstruction error, summed over observed dimensions."""
        reconstruction = self.decoder(noise)
        log_likelihood = gaussian_log_prob(observations, reconstruction, self.config.decoder_std).sum(-1)
        return log_likelihood, ((reconstruction - observations) ** 2).sum(-1)

    def _single_terms(self, observations: Tensor, mean: Tensor, std: Tensor,
                      generator: torch.Generator | None) -> SingleTerms:  # fmt: skip
        """`SingleTerms` of the stacked (2B, ·) observations x, x̃ and their posteriors."""
        noise = mean + std * torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        log_likelihood, squared_error = self._log_likelihood(noise, observations)
        kl = (gaussian_log_prob(noise, mean, std) - gaussian_log_prob(noise, 0.0, 1.0)).sum(-1)
        pairs = [sum(value.chunk(2)) for value in (log_likelihood, kl, squared_error, (noise**2).sum(-1))]
        return SingleTerms(*pairs)

    def _pair_terms(self, x: Tensor, x_tilde: Tensor, posteriors: tuple[Tensor, Tensor, Tensor, Tensor], probs: Tensor,
                    targets: Tensor | None, model_interventions: bool, generator: torch.Generator | None
                    ) -> PairTerms:  # fmt: skip
        """`PairTerms` averaged over q(S) = ``probs`` (B, K), or for the one set ``targets`` (B,) per pair."""
        mean1, std1, mean2, std2 = posteriors
        family = self.posterior.family
        if targets is None:  # every set of the family, weighted by q(S)
            sets = family.masks.unsqueeze(1).expand(-1, x.shape[0], -1)  # (K, B, n)
            weights = probs.T
            # Σ q log(q/π); the reference weights its log q(S) by q(S) twice (Σ q² log q).
            kl_targets = (torch.special.xlogy(probs, probs) - probs * family.log_prior).sum(dim=1)
        else:
            sets = family.masks[targets].unsqueeze(0)  # (1, B, n)
            weights = x.new_ones(1, x.shape[0])
            kl_targets = -family.log_prior[targets]
        # Off S both posteriors become one λ-mix of the two, so ε̃_i = ε_i there (reference _project_to_manifold).
        lam = torch.rand(sets.shape, generator=generator, dtype=x.dtype, device=x.device)
        mixed_mean, mixed_std = lam * mean1 + (1 - lam) * mean2, lam * std1 + (1 - lam) * std2
        mean1, std1 = sets * mean1 + (1 - sets) * mixed_mean, sets * std1 + (1 - sets) * mixed_std
        mean2, std2 = sets * mean2 + (1 - sets) * mixed_mean, sets * std2 + (1 - sets) * mixed_std
        draws = torch.randn(2, *sets.shape, generator=generator, dtype=x.dtype, device=x.device)
        noise = mean1 + std1 * draws[0]
        noise_tilde = sets * (mean2 + std2 * draws[1]) + (1 - sets) * noise
        log_posterior = (gaussian_log_prob(noise, mean1, std1).sum(-1)
                         + (sets * gaussian_log_prob(noise_tilde, mean2, std2)).sum(-1))  # fmt: skip
        log_likelihood = self._log_likelihood(noise, x)[0] + self._log_likelihood(noise_tilde, x_tilde)[0]
        kl_noise = log_posterior - gaussian_log_prob(noise, 0.0, 1.0).sum(-1)
        if model_interventions:
            kl_noise = kl_noise - self.intervened_log_prob(noise, noise_tilde, sets)
        return PairTerms((weights * log_likelihood).sum(0), (weights * kl_noise).sum(0), kl_targets)

    def intervened_log_prob(self, noise: Tensor, noise_tilde: Tensor, sets: Tensor) -> Tensor:
        """log p(ε̃_S | ε) = Σ_{i∈S} [log N(z̃_i; 0, 1) + log|∂z̃_i/∂ε̃_i|] with z̃_i = s_i⁻¹(ε̃_i; context), the context
        ε̃ for acyclic solution functions and ε for cyclic ones (module docstring); (..., n) noises and float masks
        ``sets`` of S -> (...)."""
        n = self.num_latents
        context = noise_tilde if self.solutions.acyclic else noise
        latents, log_det = self.solutions(noise_tilde.reshape(-1, n), context.reshape(-1, n))
        return (sets * (gaussian_log_prob(latents, 0.0, 1.0) + log_det).reshape(sets.shape)).sum(-1)
