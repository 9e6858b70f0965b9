"""Monte-Carlo estimators of the noised score grad log p_t(x_t) of an unnormalised target p ∝ exp(-E).

For the kernel x_t | x_0 ~ N(alpha x_0, sigma^2 I), as a function of x_0 the kernel is proportional to
N(x_0; x_t / alpha, sigma^2 / alpha^2 I), hence

    p_t(x_t) ∝ E_{y ~ N(x_t / alpha, sigma^2 / alpha^2 I)} [exp(-E(y))].

Both estimators draw K proposals y_k = (x_t + sigma eps_k) / alpha per row and self-normalise w = softmax_k(-E(y_k)):

* :func:`mc_score_estimate` (iDEM, jarridrb/DEM ``dem/models/components/score_estimator.py``): differentiate the
  log-mean-exp, S = sum_k w_k (-grad E(y_k)) / alpha.
* :func:`softmax_score_estimate` (QNE/Tweedie, the QNE target of MaxEntDP, diffusionyes/MaxEntDP): differentiate the
  kernel instead, S = (alpha sum_k w_k y_k - x_t) / sigma^2; forward passes only.

For VE schedules (alpha = 1, sigma^2 = h) these are exactly the iDEM and QNE formulas.

Particle systems: the noise eps is projected to zero centre of mass. iDEM draws full-space noise, but its energies are
translation invariant, so the COM part of eps changes neither E(y) nor grad E(y): the MC estimator has the same
distribution either way, while the Tweedie estimator loses pure-noise COM components (lower variance, mean-free
target). Both estimators are computed on detached inputs and return detached tensors.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torch.special import log_ndtr, ndtr, ndtri

from equivariant.geometry import as_particles, remove_com
from samplers.energies import energy_and_grad
from samplers.schedules import NoiseSchedule

EnergyFn = Callable[[Tensor, Tensor | None], Tensor]


def clip_norm(v: Tensor, max_norm: float, n_particles: int = 1, spatial_dim: int | None = None) -> Tensor:
    """Rescale each row (each particle's vector when ``n_particles > 1``) to Euclidean norm at most ``max_norm``."""
    spatial_dim = v.shape[-1] // n_particles if spatial_dim is None else spatial_dim
    parts = as_particles(v, n_particles, spatial_dim)
    norms = parts.norm(dim=-1, keepdim=True)
    scale = (max_norm / norms.clamp(min=torch.finfo(v.dtype).tiny)).clamp(max=1.0)
    return (parts * scale).reshape(v.shape)


def _particle_layout(energy: EnergyFn, dim: int, n_particles: int | None, spatial_dim: int | None) -> tuple[int, int]:
    """Resolve (n_particles, spatial_dim): explicit values win, else the energy's attributes, else one particle."""
    if n_particles is None:
        n_particles = getattr(energy, "n_particles", 1)
        default_spatial = getattr(energy, "spatial_dim", dim // n_particles)
    else:
        default_spatial = dim // n_particles
    spatial_dim = default_spatial if spatial_dim is None else spatial_dim
    if n_particles * spatial_dim != dim:
        raise ValueError(f"x has {dim} coordinates, not n_particles * spatial_dim = {n_particles} * {spatial_dim}")
    return n_particles, spatial_dim


def _prepare(
    x_t: Tensor, t: Tensor | float, schedule: NoiseSchedule, context: Tensor | None, num_samples: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Validate inputs; return (x_t detached, alpha (N, 1, 1), sigma (N, 1, 1)) in x_t's dtype/device."""
    if x_t.ndim != 2:
        raise ValueError(f"x_t must have shape (N, dim), got {tuple(x_t.shape)}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    n = x_t.shape[0]
    t = torch.as_tensor(t, dtype=x_t.dtype, device=x_t.device)
    if t.numel() not in (1, n):
        raise ValueError(f"t must be a scalar or have shape ({n},), got {tuple(t.shape)}")
    t = t.reshape(-1).expand(n)
    if context is not None and context.shape[0] != n:
        raise ValueError(f"context must be row-aligned with x_t ({n} rows), got {tuple(context.shape)}")
    return x_t.detach(), schedule.alpha(t).view(n, 1, 1), schedule.sigma(t).view(n, 1, 1)


def _standard_noise(
    shape: tuple[int, int, int], like: Tensor, n_particles: int, spatial_dim: int, generator: torch.Generator | None
) -> Tensor:
    eps = torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)
    return remove_com(eps, n_particles, spatial_dim) if n_particles > 1 else eps


def _repeat_context(context: Tensor | None, k: int) -> Tensor | None:
    """Row-align a (N, C) context with the flattened (N * K, dim) proposal batch."""
    return None if context is None else context.repeat_interleave(k, dim=0)


def _mc_score(
    energy: EnergyFn,
    x_t: Tensor,
    alpha: Tensor,
    sigma: Tensor,
    k: int,
    context: Tensor | None,
    layout: tuple[int, int],
    generator: torch.Generator | None,
    chunk_size: int | None,
) -> Tensor:
    n, dim = x_t.shape
    eps = _standard_noise((n, k, dim), x_t, *layout, generator)
    y = (x_t.unsqueeze(1) + sigma * eps) / alpha
    e, grad = energy_and_grad(energy, y.reshape(n * k, dim), _repeat_context(context, k), chunk_size)
    w = torch.softmax(-e.view(n, k), dim=1).unsqueeze(-1)
    # Zero-weight proposals (E = +inf or overflow) may carry inf/nan gradients; they must not contribute.
    contrib = torch.where(w > 0, w * -grad.view(n, k, dim), torch.zeros((), dtype=grad.dtype, device=grad.device))
    return contrib.sum(1) / alpha.view(n, 1)


def mc_score_estimate(
    energy: EnergyFn,
    x_t: Tensor,
    t: Tensor | float,
    schedule: NoiseSchedule,
    num_samples: int,
    context: Tensor | None = None,
    max_norm: float | None = None,
    n_particles: int | None = None,
    spatial_dim: int | None = None,
    richardson: bool = False,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """iDEM's target S_K(x_t, t) = grad_x log mean_k exp(-E(y_k)), y_k = (x_t + sigma eps_k) / alpha.

    :param energy: ``energy(x, context) -> (M,)`` on a flat (M, dim) batch, e.g. an :class:`~samplers.energies.Energy`.
    :param x_t: Noised points (N, dim)
    :param t: Diffusion times, a scalar or (N,)
    :param num_samples: K proposals per row; cost N*K energy+gradient evaluations (1.5x with ``richardson``)
    :param context: (N, context_dim) conditioning, repeated row-aligned over the K proposals
    :param max_norm: Clip the target's norm (per particle for particle systems), as iDEM's ``max_score_norm``
    :param n_particles: Particles of the layout; ``None`` takes the energy's attribute (1 particle otherwise)
    :param spatial_dim: Coordinates per particle; ``None`` takes the energy's attribute
    :param richardson: Return 2 S_K - S_{K/2} from independent draws (bias reduction, off in iDEM's configs)
    :param chunk_size: At most this many energy evaluations per autograd call

    :return: Detached (N, dim) target, also correct under ``torch.no_grad()``.
    """
    x_t, alpha, sigma = _prepare(x_t, t, schedule, context, num_samples)
    layout = _particle_layout(energy, x_t.shape[1], n_particles, spatial_dim)
    score = _mc_score(energy, x_t, alpha, sigma, num_samples, context, layout, generator, chunk_size)
    if richardson:
        if num_samples < 2:
            raise ValueError("richardson needs num_samples >= 2")
        half = _mc_score(energy, x_t, alpha, sigma, num_samples // 2, context, layout, generator, chunk_size)
        score = 2.0 * score - half
    return score if max_norm is None else clip_norm(score, max_norm, *layout)


def _mirrored(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(flip, lo, hi) in float64: each interval [a, b] of N(0, 1), mirrored where ``flip`` so that it lies mostly below
    0, where ndtr and log_ndtr keep relative precision."""
    a64, b64 = a.double(), b.double()
    flip = (a64 + b64) > 0
    return flip, torch.where(flip, -b64, a64), torch.where(flip, -a64, b64)


def _truncated_standard_normal(a: Tensor, b: Tensor, generator: torch.Generator | None) -> Tensor:
    """Sample N(0, 1) truncated to [a, b] elementwise by inverse CDF (float64 internally).

    Each coordinate is mirrored so its interval lies mostly below 0, where ndtr keeps relative precision; if both
    CDF values still underflow, the sample sits on the end nearest to 0 (the limit of the truncated law).
    """
    flip, lo, hi = _mirrored(a, b)
    cdf_lo, cdf_hi = ndtr(lo), ndtr(hi)
    u = torch.rand(lo.shape, generator=generator, device=lo.device, dtype=lo.dtype)
    z = torch.where(cdf_hi > cdf_lo, ndtri(cdf_lo + u * (cdf_hi - cdf_lo)), hi)
    z = torch.minimum(torch.maximum(z, lo), hi)
    return torch.where(flip, -z, z).to(a.dtype)


def _log_box_mass(a: Tensor, b: Tensor) -> Tensor:
    """log prod_i (Phi(b_i) - Phi(a_i)) per row of (N, dim) bounds a < b of N(0, 1), on the `_mirrored` intervals."""
    _, lo, hi = _mirrored(a, b)
    log_hi = log_ndtr(hi)
    return (log_hi + torch.log1p(-torch.exp(log_ndtr(lo) - log_hi))).sum(-1).to(a.dtype)


def _chunked_energy(energy: EnergyFn, x: Tensor, context: Tensor | None, chunk_size: int | None) -> Tensor:
    step = x.shape[0] if chunk_size is None else max(int(chunk_size), 1)
    chunks = [energy(x[i : i + step], None if context is None else context[i : i + step]) for i in range(0, len(x), step)]
    return torch.cat(chunks)


def softmax_score_estimate(
    energy: EnergyFn,
    x_t: Tensor,
    t: Tensor | float,
    schedule: NoiseSchedule,
    num_samples: int,
    context: Tensor | None = None,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
    bounds: tuple[float, float] | None = None,
    n_particles: int | None = None,
    spatial_dim: int | None = None,
    proposal_samples: Tensor | None = None,
    proposal_log_prob: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """Gradient-free posterior-mean (Tweedie) target S = (alpha sum_k w_k y_k - x_t) / sigma^2, w = softmax(-E(y)).

    Proposals y_k ~ N(x_t / alpha, sigma^2 / alpha^2 I); with ``bounds=(lo, hi)`` they are truncated to the box. The
    truncation normaliser depends on x_t only and cancels in the self-normalised weights, so S is then the noised
    score of the target restricted to the box. Needs only forward passes of the energy; the variance
    grows like 1/sigma^2 at small t (sigma(t) must be > 0). ``bounds`` cannot be combined with a particle system
    (mean-free noise).

    With ``proposal_samples`` (N, J, dim), J more proposals per row drawn from a density q (``proposal_log_prob``:
    (N, K, dim) -> (N, K) at any points) join the ``num_samples`` kernel proposals k. All K + J are weighted as draws
    from the deterministic mixture m = (K k + J q) / (K + J) (the balance heuristic of multiple importance sampling,
    Veach & Guibas 1995): w ∝ exp(-E(y)) N(x_t; alpha y, sigma^2 I) / m(y), which estimates the same posterior mean
    and no longer depends on the kernel reaching the target's mass at large sigma (docs/dqs.md §4.16).

    :return: Detached (N, dim) target.
    """
    x_t, alpha, sigma = _prepare(x_t, t, schedule, context, num_samples)
    n, dim = x_t.shape
    layout = _particle_layout(energy, dim, n_particles, spatial_dim)
    if bounds is not None and layout[0] > 1:
        raise ValueError("bounds (a box truncation) is incompatible with zero-COM particle noise")
    # Work with standardised offsets z = (alpha y - x_t) / sigma: S = sum_k w_k z_k / sigma avoids the cancellation
    # in alpha y - x_t at small sigma.
    with torch.no_grad():
        if bounds is None:
            z = _standard_noise((n, num_samples, dim), x_t, *layout, generator)
        else:
            lo, hi = bounds
            if not lo < hi:
                raise ValueError(f"bounds must satisfy lo < hi, got {bounds}")
            # y = x_t / alpha + (sigma / alpha) z lies in [lo, hi] iff z lies in [(alpha lo - x_t) / sigma, ...].
            a = (alpha.view(n, 1) * lo - x_t) / sigma.view(n, 1)
            b = (alpha.view(n, 1) * hi - x_t) / sigma.view(n, 1)
            z = _truncated_standard_normal(
                a.unsqueeze(1).expand(n, num_samples, dim), b.unsqueeze(1).expand(n, num_samples, dim), generator
            )
        y = (x_t.unsqueeze(1) + sigma * z) / alpha
        if bounds is not None:
            y = y.clamp(*bounds)
        if proposal_samples is None:
            e = _chunked_energy(energy, y.reshape(n * num_samples, dim), _repeat_context(context, num_samples), chunk_size)
            log_w = -e.view(n, num_samples)
        else:
            if proposal_log_prob is None or proposal_samples.ndim != 3 or proposal_samples.shape[::2] != (n, dim):
                raise ValueError(f"proposal_samples must have shape ({n}, J, {dim}) and come with proposal_log_prob")
            if layout[0] > 1:
                raise ValueError("proposal samples are incompatible with zero-COM particle noise")
            y = torch.cat([y, proposal_samples.detach().to(y)], dim=1)
            z = (alpha * y - x_t.unsqueeze(1)) / sigma
            total = y.shape[1]
            e = _chunked_energy(energy, y.reshape(n * total, dim), _repeat_context(context, total), chunk_size)
            half_square = 0.5 * z.square().sum(-1)  # -log N(x_t; alpha y, sigma^2 I) up to a per-row constant
            # log k(y): the kernel's density in y, N(y; x_t / alpha, sigma^2 / alpha^2 I) over its mass on the box.
            log_kernel = -half_square - dim * torch.log(sigma.view(n, 1) / alpha.view(n, 1))
            log_kernel = log_kernel - 0.5 * dim * math.log(2.0 * math.pi)
            if bounds is not None:
                log_kernel = log_kernel - _log_box_mass(a, b).unsqueeze(1)
            log_mixture = torch.logaddexp(
                log_kernel + math.log(num_samples / total),
                proposal_log_prob(y).detach() + math.log((total - num_samples) / total),
            )
            log_w = -e.view(n, total) - half_square - log_mixture
            if bounds is not None:  # the target is restricted to the box: proposals outside it weigh nothing
                log_w = log_w.masked_fill(((y < bounds[0]) | (y > bounds[1])).any(-1), -math.inf)
        w = torch.softmax(log_w, dim=1).unsqueeze(-1)
        return (w * z).sum(1) / sigma.view(n, 1)
