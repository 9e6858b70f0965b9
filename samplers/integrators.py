"""Reverse-time samplers and the probability-flow log-likelihood for a learned or estimated score.

``score_fn(x, t, context)`` receives ``x`` (N, D), ``t`` of shape (N,) and an optional row-aligned context, and returns
an estimate of grad_x log p_t(x). Forward SDE: dx = f(x, t) dt + g(t) dW (see :mod:`samplers.schedules`).

These functions do not switch off autograd; wrap calls in ``torch.no_grad()`` when sampling from a network.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from samplers.schedules import NoiseSchedule

ScoreFn = Callable[[Tensor, Tensor, Tensor | None], Tensor]
Projection = Callable[[Tensor], Tensor]


def make_time_grid(
    n_steps: int,
    t_start: float = 1.0,
    t_end: float = 0.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """``n_steps + 1`` equally spaced times from ``t_start`` to ``t_end`` (both included)."""
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    return torch.linspace(t_start, t_end, n_steps + 1, device=device, dtype=dtype)


def _check_state(x: Tensor, context: Tensor | None) -> None:
    if x.ndim != 2:
        raise ValueError(f"x must have shape (N, D), got {tuple(x.shape)}")
    if context is not None and context.shape[0] != x.shape[0]:
        raise ValueError(f"context must be row-aligned with x ({x.shape[0]} rows), got {tuple(context.shape)}")


def euler_maruyama(
    score_fn: ScoreFn,
    x: Tensor,
    schedule: NoiseSchedule,
    n_steps: int,
    context: Tensor | None = None,
    t_start: float = 1.0,
    t_end: float = 0.0,
    diffusion_scale: float = 1.0,
    projection: Projection | None = None,
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
    denoise_last_step: bool = False,
) -> Tensor:
    """Integrate the reverse SDE dx = [f - g^2 s] dt + eta g dW_bar from ``t_start`` down to ``t_end``.

    Each step evaluates f, g and the score at the step's upper time t_n (iDEM/DQS): with dt = t_n - t_{n+1} > 0,
    x <- x - [f(x, t_n) - g(t_n)^2 s(x, t_n)] dt + eta g(t_n) sqrt(dt) eps. eta = ``diffusion_scale``; eta != 1
    keeps the drift, so it is a biased (colder for eta < 1) sampler, exactly as in iDEM (jarridrb/DEM ``sde_integration.py``).

    The reference code also adds noise in the final step (t = dt -> 0); that is the default here. With
    ``denoise_last_step=True`` the final step is drift only, returning the mean of the last transition.
    ``projection`` (e.g. zero-COM) is applied after every step.

    :return: Final states (N, D), or with ``return_trajectory`` all states (n_steps + 1, N, D) starting with ``x``.
    """
    _check_state(x, context)
    if not t_start > t_end:
        raise ValueError(f"the reverse SDE runs backwards in time: need t_start > t_end, got {t_start} and {t_end}")
    times = make_time_grid(n_steps, t_start, t_end, device=x.device, dtype=x.dtype)
    trajectory = [x]
    for i in range(n_steps):
        t = times[i].expand(x.shape[0])
        dt = times[i] - times[i + 1]
        g = schedule.g(t).unsqueeze(-1)
        x = x - (schedule.drift(x, t) - g**2 * score_fn(x, t, context)) * dt
        if diffusion_scale != 0.0 and not (denoise_last_step and i == n_steps - 1):
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x + diffusion_scale * g * dt.sqrt() * noise
        if projection is not None:
            x = projection(x)
        if return_trajectory:
            trajectory.append(x)
    return torch.stack(trajectory) if return_trajectory else x


def _pf_velocity(score_fn: ScoreFn, schedule: NoiseSchedule, x: Tensor, t: Tensor, context: Tensor | None) -> Tensor:
    """Probability-flow ODE velocity dx/dt = f(x, t) - g(t)^2 s(x, t) / 2."""
    return schedule.drift(x, t) - 0.5 * schedule.g(t).unsqueeze(-1) ** 2 * score_fn(x, t, context)


def probability_flow_ode(
    score_fn: ScoreFn,
    x: Tensor,
    schedule: NoiseSchedule,
    n_steps: int,
    context: Tensor | None = None,
    t_start: float = 1.0,
    t_end: float = 0.0,
    method: Literal["euler", "heun"] = "heun",
    projection: Projection | None = None,
) -> Tensor:
    """Integrate the deterministic probability-flow ODE from ``t_start`` to ``t_end`` (either direction).

    ``heun`` is the explicit trapezoidal rule (2 score evaluations per step, second order); ``projection`` is applied
    after every step.
    """
    _check_state(x, context)
    if method not in ("euler", "heun"):
        raise ValueError(f"method must be 'euler' or 'heun', got {method!r}")
    times = make_time_grid(n_steps, t_start, t_end, device=x.device, dtype=x.dtype)
    n = x.shape[0]
    for i in range(n_steps):
        t0, t1 = times[i].expand(n), times[i + 1].expand(n)
        dt = times[i + 1] - times[i]
        v0 = _pf_velocity(score_fn, schedule, x, t0, context)
        x_next = x + dt * v0
        if method == "heun":
            x_next = x + 0.5 * dt * (v0 + _pf_velocity(score_fn, schedule, x_next, t1, context))
        x = x_next if projection is None else projection(x_next)
    return x


def _velocity_and_divergence(
    score_fn: ScoreFn,
    schedule: NoiseSchedule,
    x: Tensor,
    t: Tensor,
    context: Tensor | None,
    probes: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """PF-ODE velocity and its divergence: exact (one backward pass per dimension) or Hutchinson (``probes``)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        v = _pf_velocity(score_fn, schedule, x, t, context)
        if probes is None:
            rows = [torch.autograd.grad(v[:, d].sum(), x, retain_graph=True)[0][:, d] for d in range(x.shape[1])]
            div = torch.stack(rows, dim=1).sum(1)
        else:
            n_probes = probes.shape[0]
            div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
            for j in range(n_probes):
                (vjp,) = torch.autograd.grad(v, x, grad_outputs=probes[j], retain_graph=j < n_probes - 1)
                div = div + (vjp * probes[j]).sum(1) / n_probes
    return v.detach(), div.detach()


def log_likelihood(
    score_fn: ScoreFn,
    x0: Tensor,
    schedule: NoiseSchedule,
    n_steps: int,
    context: Tensor | None = None,
    divergence: Literal["exact", "hutchinson"] = "exact",
    n_hutchinson: int = 1,
    generator: torch.Generator | None = None,
    method: Literal["euler", "heun"] = "heun",
    prior_dim: int | None = None,
) -> Tensor:
    """log p_0(x0) of the probability-flow model, shape (N,).

    Integrates dx/dt = v = f - g^2 s / 2 forward from t = 0 to 1 together with d log p_t(x_t)/dt = -div v, so
    log p_0(x0) = log N(x1; 0, prior_std^2) + int_0^1 div v dt. The prior mismatch (the true p_1 is not exactly the
    prior) is part of the model, as in score-SDE likelihoods.

    ``divergence="hutchinson"`` uses ``n_hutchinson`` Rademacher probes drawn once and kept fixed along the path
    (unbiased). Particle systems: pass ``prior_dim = (n_particles - 1) * spatial_dim`` for the mean-free prior, whose
    density lives on the zero-COM subspace; the score must then be mean-free and translation invariant (e.g. an EGNN)
    so that the full-space divergence equals the subspace one, and x0 must be centred.
    """
    _check_state(x0, context)
    if divergence not in ("exact", "hutchinson"):
        raise ValueError(f"divergence must be 'exact' or 'hutchinson', got {divergence!r}")
    if method not in ("euler", "heun"):
        raise ValueError(f"method must be 'euler' or 'heun', got {method!r}")
    n, dim = x0.shape
    probes = None
    if divergence == "hutchinson":
        if n_hutchinson < 1:
            raise ValueError(f"n_hutchinson must be >= 1, got {n_hutchinson}")
        bits = torch.randint(0, 2, (n_hutchinson, n, dim), generator=generator, device=x0.device)
        probes = bits.to(x0.dtype) * 2 - 1
    times = make_time_grid(n_steps, 0.0, 1.0, device=x0.device, dtype=x0.dtype)
    x = x0.detach()
    integral = torch.zeros(n, dtype=x0.dtype, device=x0.device)
    for i in range(n_steps):
        dt = times[i + 1] - times[i]
        v0, div0 = _velocity_and_divergence(score_fn, schedule, x, times[i].expand(n), context, probes)
        if method == "heun":
            v1, div1 = _velocity_and_divergence(score_fn, schedule, x + dt * v0, times[i + 1].expand(n), context, probes)
        else:
            v1, div1 = v0, div0
        x, integral = x + 0.5 * dt * (v0 + v1), integral + 0.5 * dt * (div0 + div1)
    d = dim if prior_dim is None else prior_dim
    var = schedule.prior_std**2
    log_prior = -0.5 * x.pow(2).sum(1) / var - 0.5 * d * math.log(2 * math.pi * var)
    return log_prior + integral


def ddim_coefficients(schedule: NoiseSchedule, times: Tensor) -> tuple[Tensor, Tensor]:
    """Per step of the grid ``times``: (x_scale, eps_scale) of the DDIM step x' = x_scale x + eps_scale eps_hat.

    DDIM (Song et al., 2021, eq. 12 with sigma = 0) moves x_t to x_t' along the PF-ODE as
    x' = alpha' (x - sigma eps_hat) / alpha + sigma' eps_hat, eps_hat = -sigma score: exact for a constant eps_hat
    (an exponential integrator), where Euler in t overshoots on geometric schedules. With VE (alpha = 1) it is
    x' = x + (sigma' - sigma) eps_hat.
    """
    alpha, sigma = schedule.alpha(times), schedule.sigma(times)
    x_scale = alpha[1:] / alpha[:-1]
    return x_scale, sigma[1:] - sigma[:-1] * x_scale


def probability_flow_sample(
    score_fn: ScoreFn,
    prior: Tensor,
    schedule: NoiseSchedule,
    n_steps: int,
    context: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """DDIM samples of the PF-ODE from ``prior`` draws of N(0, prior_std^2 I), and the exact log-density of their law.

    Each step x <- x_scale x - eps_scale sigma score(x, t) (`ddim_coefficients`) is a map with Jacobian
    x_scale I - eps_scale sigma d score/dx, so by the change of variables the samples' log-density is
    log N(x_1; 0, prior_std^2 I) - sum_steps log|det J_step|. This is exact for the discretised sampler itself (no
    error from integrating div v). The full Jacobian costs one forward and one backward pass on D copies of the
    batch (copy k carries output k's gradient), cheap for the action spaces of RL (D <= ~20). The score is
    evaluated only at each step's upper time t >= 1/n. Returns (samples (N, D), log-density (N,)).
    """
    _check_state(prior, context)
    n, dim = prior.shape
    times = make_time_grid(n_steps, 1.0, 0.0, device=prior.device, dtype=prior.dtype)
    x_scales, eps_scales = ddim_coefficients(schedule, times)
    score_scales = -eps_scales * schedule.sigma(times[:-1])
    var = schedule.prior_std**2
    x = prior.detach()
    log_density = -0.5 * x.pow(2).sum(1) / var - 0.5 * dim * math.log(2 * math.pi * var)
    eye = torch.eye(dim, device=prior.device, dtype=prior.dtype)
    copies_context = None if context is None else context.repeat(dim, 1)
    for i in range(n_steps):
        with torch.enable_grad():
            copies = x.detach().repeat(dim, 1).requires_grad_(True)
            score = score_fn(copies, times[i].expand(n * dim), copies_context).view(dim, n, dim)
            (grads,) = torch.autograd.grad(score.diagonal(dim1=0, dim2=2).sum(), copies)
        jacobian = grads.view(dim, n, dim).transpose(0, 1)  # (N, D_out, D_in): row k from copy k
        log_density = log_density - torch.linalg.slogdet(x_scales[i] * eye + score_scales[i] * jacobian).logabsdet
        x = x_scales[i] * x + score_scales[i] * score[0].detach()
    return x, log_density.detach()
