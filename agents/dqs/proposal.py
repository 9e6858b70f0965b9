"""The learned proposal q_phi(a|s) of DQS's estimators: a tanh-Gaussian with an exact density on the action box,
trained with SAC's actor loss at alpha = T, so that it sits near the mass of exp(Q/T) (docs/dqs.md §4.16).

It is not the policy: the diffusion model acts. It only proposes actions where exp(Q/T) is large, for the
importance-sampled soft value (the IWAE bound of Burda et al. 2016, arXiv 1509.00519, eq. 7: SAC's own backup at one
sample) and for part of the score target's proposals; a defensive uniform component (Hesterberg 1995) keeps every
estimate's weights bounded where q_phi has no mass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch as th
from stable_baselines3.common.type_aliases import PyTorchObs
from stable_baselines3.sac.policies import Actor
from torch import Tensor
from torch.nn import functional as F

#: Largest |a| at which the density of a given action is evaluated: atanh stays finite for actions on the box's faces
#: (clipped samples, uniform draws), where the exact density is 0 or infinite.
MAX_ABS_ACTION = 1.0 - 1e-6


def tanh_log_abs_det_jacobian(latent: Tensor) -> Tensor:
    """log |det d tanh(u)/du| = sum_i log(1 - tanh(u_i)^2) over the last axis, in the overflow-free form
    2 (log 2 - u - softplus(-2u))."""
    return (2.0 * (math.log(2.0) - latent - F.softplus(-2.0 * latent))).sum(-1)


def latin_hypercube(n: int, m: int, dim: int, device: th.device) -> Tensor:
    """``n`` independent Latin-hypercube sets of ``m`` points in [0, 1]^dim, shape (n * m, dim).

    Each point is marginally uniform (so importance-sampling estimates stay unbiased), and in every dimension the
    ``m`` points of a set fall into ``m`` different strata, which lowers the variance of the soft-value estimate.
    """
    strata = th.rand(n, dim, m, device=device).argsort(dim=2)
    points = (strata + th.rand(n, dim, m, device=device)) / m
    return points.transpose(1, 2).reshape(n * m, dim)


@dataclass(frozen=True)
class TanhGaussian:
    """a = tanh(u), u ~ N(mean, exp(log_std)^2) per row: ``mean`` and ``log_std`` (n, d); samples and densities
    (n, k, d) -> (n, k) for k actions per row."""

    mean: Tensor
    log_std: Tensor

    def _log_prob_latent(self, latent: Tensor) -> Tensor:
        z = (latent - self.mean.unsqueeze(1)) / self.log_std.exp().unsqueeze(1)
        normal = -0.5 * z.square() - self.log_std.unsqueeze(1) - 0.5 * math.log(2.0 * math.pi)
        return normal.sum(-1) - tanh_log_abs_det_jacobian(latent)

    def rsample(self, k: int) -> tuple[Tensor, Tensor]:
        """k reparameterised samples per row, (n, k, d), and their log-densities (n, k)."""
        noise = th.randn(self.mean.shape[0], k, self.mean.shape[1], device=self.mean.device, dtype=self.mean.dtype)
        latent = self.mean.unsqueeze(1) + self.log_std.exp().unsqueeze(1) * noise
        return th.tanh(latent), self._log_prob_latent(latent)

    def log_prob(self, actions: Tensor) -> Tensor:
        """Log-density of given actions in [-1, 1]^d, (n, k, d) -> (n, k)."""
        return self._log_prob_latent(th.atanh(actions.clamp(-MAX_ABS_ACTION, MAX_ABS_ACTION)))


def with_uniform(log_q: Tensor, uniform_fraction: float, dim: int) -> Tensor:
    """log of the defensive mixture (1 - eps) q + eps U([-1, 1]^dim) from log q, eps = ``uniform_fraction``."""
    if uniform_fraction == 0.0:
        return log_q
    log_uniform = math.log(uniform_fraction) - dim * math.log(2.0)
    return th.logaddexp(log_q + math.log1p(-uniform_fraction), th.full_like(log_q, log_uniform))


def box_log_partition(log_weights: Tensor, dim: int) -> Tensor:
    """log ∫_[-1, 1]^dim exp(w(a)) da from ``log_weights`` w(a_i) at n uniform actions (last axis):
    logsumexp_i w(a_i) − log n + dim · log 2, the box's volume being 2^dim."""
    return th.logsumexp(log_weights, dim=-1) - math.log(log_weights.shape[-1]) + dim * math.log(2.0)


def importance_log_partition(log_weights: Tensor, log_proposal: Tensor) -> Tensor:
    """log ∫ exp(w(a)) da ≈ logsumexp_i (w(a_i) − log q(a_i)) − log n from n draws a_i of q (last axis): the log of an
    unbiased importance-sampling estimate, biased low by Jensen's inequality by less as q approaches exp(w) / Z (it
    is exact, for any n, when q ∝ exp(w); Burda et al. 2016, eq. 7 and Theorem 1)."""
    return th.logsumexp(log_weights - log_proposal, dim=-1) - math.log(log_weights.shape[-1])


def backup_actions(n: int, m: int, dim: int, device: th.device, proposal: TanhGaussian | None = None,
                   n_uniform: int = 0) -> tuple[Tensor, Tensor]:  # fmt: skip
    """``m`` actions per state for the soft value, (n, m, dim), with their log proposal densities (n, m).

    Without ``proposal``: a Latin hypercube on the box per state (density 2^-dim). With it: m − ``n_uniform`` draws of
    the proposal, then ``n_uniform`` Latin-hypercube actions, all weighted by the deterministic mixture
    ((m − n_uniform) q + n_uniform U) / m (the balance heuristic of Veach & Guibas 1995, unbiased for fixed counts).
    """
    n_box = m if proposal is None else n_uniform
    uniform = (latin_hypercube(n, n_box, dim, device) * 2.0 - 1.0).view(n, n_box, dim)
    if proposal is None:
        return uniform, th.full((n, m), -dim * math.log(2.0), device=device)
    drawn, log_q_drawn = proposal.rsample(m - n_uniform)
    log_q = th.cat([log_q_drawn, proposal.log_prob(uniform)], dim=1)
    return th.cat([drawn, uniform], dim=1), with_uniform(log_q, n_uniform / m, dim)


class ProposalNetwork(Actor):
    """SB3's SAC actor (an MLP to the mean and the clamped log-std of a tanh-Gaussian), used as a conditional
    density: `distribution` gives the `TanhGaussian` of each state."""

    def distribution(self, obs: PyTorchObs) -> TanhGaussian:
        mean, log_std, _ = self.get_action_dist_params(obs)
        return TanhGaussian(mean, log_std)
