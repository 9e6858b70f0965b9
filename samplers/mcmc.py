"""Metropolis-adjusted Langevin (MALA) with many parallel chains: the matched-budget MCMC baseline of Aggarwal et al.
(ICLR 2025 blog post "Models trained with unnormalized density functions: A need for a course correction"; code
RishalAggarwal/EnergyBasedMCMC)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from equivariant.geometry import remove_com
from samplers.energies import energy_and_grad

EnergyFn = Callable[[Tensor, Tensor | None], Tensor]


@dataclass
class MCMCResult:
    """Outcome of a run.

    Attributes:
        samples: final states (n_chains, dim).
        acceptance_rate: fraction of accepted proposals over the post-adaptation steps (all steps if there are none).
        step_size: final step size, shape () for global adaptation or (n_chains,) per chain.
        n_energy_evals: energy+gradient evaluations, one per chain and per evaluated state (n_chains * (n_steps + 1)).
        trajectory: states after every ``return_every``-th step, (n_kept, n_chains, dim), or None.
    """

    samples: Tensor
    acceptance_rate: float
    step_size: Tensor
    n_energy_evals: int
    trajectory: Tensor | None = None


def _default_projection(energy: EnergyFn) -> Callable[[Tensor], Tensor] | None:
    """Zero-COM projection for particle systems (``energy.is_particle_system``), else None."""
    if not getattr(energy, "is_particle_system", False):
        return None
    n_particles, spatial_dim = energy.n_particles, energy.spatial_dim  # type: ignore[attr-defined]
    return lambda v: remove_com(v, n_particles, spatial_dim)


class _DualAveraging:
    """Nesterov dual averaging of log step size toward a target acceptance (Hoffman & Gelman 2014, Alg. 5)."""

    gamma, t0, kappa = 0.05, 10.0, 0.75

    def __init__(self, log_tau0: Tensor, target: float) -> None:
        self.mu = log_tau0 + math.log(10.0)  # shrinkage point: bias towards larger steps, as in NUTS
        self.target = target
        self.h_bar = torch.zeros_like(log_tau0)
        self.log_tau_bar = torch.zeros_like(log_tau0)
        self.m = 0

    def update(self, accept_prob: Tensor, final: bool) -> Tensor:
        """Record one acceptance probability; return the next log step size (the averaged one when ``final``)."""
        self.m += 1
        eta = 1.0 / (self.m + self.t0)
        self.h_bar = (1.0 - eta) * self.h_bar + eta * (self.target - accept_prob)
        log_tau = self.mu - math.sqrt(self.m) / self.gamma * self.h_bar
        weight = self.m**-self.kappa
        self.log_tau_bar = weight * log_tau + (1.0 - weight) * self.log_tau_bar
        return self.log_tau_bar if final else log_tau


def mala(
    energy: EnergyFn,
    x0: Tensor,
    n_steps: int,
    step_size: float = 1e-2,
    target_accept: float = 0.574,
    adapt: bool = True,
    adapt_steps: int | None = None,
    context: Tensor | None = None,
    projection: Callable[[Tensor], Tensor] | None = None,
    generator: torch.Generator | None = None,
    per_chain: bool = False,
    return_every: int | None = None,
    chunk_size: int | None = None,
) -> MCMCResult:
    """Run MALA on every row of ``x0`` (n_chains, dim) in parallel for ``n_steps`` steps.

    Proposal y = x - tau P grad E(x) + sqrt(2 tau) P xi with P = ``projection`` (a linear orthogonal projection; default
    zero-COM for particle systems, identity otherwise), accepted with the Metropolis-Hastings ratio of the projected
    Gaussian kernel, so chains started in the subspace stay there and target exp(-E) restricted to it.

    Adaptation (``adapt``): during the first ``adapt_steps`` steps (default n_steps // 2), tau follows the dual
    averaging scheme of Hoffman & Gelman (2014, NUTS, Alg. 5) on the MH acceptance probability, averaged over chains
    (global) or per chain (``per_chain``); tau is then fixed to the averaged iterate, so later steps form a valid
    Markov chain.
    """
    if x0.ndim != 2:
        raise ValueError(f"x0 must have shape (n_chains, dim), got {tuple(x0.shape)}")
    if n_steps < 0 or step_size <= 0 or not 0.0 < target_accept < 1.0:
        raise ValueError("need n_steps >= 0, step_size > 0 and 0 < target_accept < 1")
    if return_every is not None and return_every < 1:
        raise ValueError(f"return_every must be >= 1, got {return_every}")
    n_adapt = (n_steps // 2 if adapt_steps is None else adapt_steps) if adapt else 0
    if not 0 <= n_adapt <= n_steps:
        raise ValueError(f"adapt_steps must lie in [0, n_steps], got {n_adapt}")
    project = _default_projection(energy) if projection is None else projection
    n_chains = x0.shape[0]

    def evaluate(v: Tensor) -> tuple[Tensor, Tensor]:
        e, grad = energy_and_grad(energy, v, context, chunk_size)
        return e, (grad if project is None else project(grad))

    x = x0.detach() if project is None else project(x0.detach())
    e_x, grad_x = evaluate(x)
    log_tau = torch.full((n_chains,) if per_chain else (), math.log(step_size), dtype=x.dtype, device=x.device)
    dual = _DualAveraging(log_tau, target_accept)
    accepted = torch.zeros((), dtype=torch.long, device=x.device)
    kept = []
    for k in range(n_steps):
        tau_rows = log_tau.exp()  # () or (n_chains,): broadcasts against the (n_chains,) log-densities
        tau = tau_rows.unsqueeze(-1) if per_chain else tau_rows
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        if project is not None:
            noise = project(noise)
        y = x - tau * grad_x + (2 * tau).sqrt() * noise
        e_y, grad_y = evaluate(y)
        # log q(a | b) = -||a - b + tau grad E(b)||^2 / (4 tau) + const.
        log_q_fwd = -(y - x + tau * grad_x).pow(2).sum(-1) / (4 * tau_rows)
        log_q_bwd = -(x - y + tau * grad_y).pow(2).sum(-1) / (4 * tau_rows)
        log_ratio = torch.nan_to_num(e_x - e_y + log_q_bwd - log_q_fwd, nan=-torch.inf)
        accept_prob = log_ratio.clamp(max=0.0).exp()
        accept = torch.rand(n_chains, generator=generator, device=x.device, dtype=x.dtype) < accept_prob
        x = torch.where(accept.unsqueeze(-1), y, x)
        e_x = torch.where(accept, e_y, e_x)
        grad_x = torch.where(accept.unsqueeze(-1), grad_y, grad_x)
        if k < n_adapt:
            log_tau = dual.update(accept_prob if per_chain else accept_prob.mean(), final=k == n_adapt - 1)
        if k >= n_adapt or n_adapt == n_steps:
            accepted = accepted + accept.sum()
        if return_every is not None and (k + 1) % return_every == 0:
            kept.append(x)
    counted_steps = n_steps - n_adapt if n_adapt < n_steps else n_steps
    return MCMCResult(
        samples=x,
        acceptance_rate=accepted.item() / max(counted_steps * n_chains, 1),
        step_size=log_tau.exp(),
        n_energy_evals=n_chains * (n_steps + 1),
        trajectory=torch.stack(kept) if kept else None,
    )
