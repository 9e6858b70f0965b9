"""Infinitesimal equivariance of a solution operator under the point symmetries of its PDE: symmetry information that
reaches initial conditions outside the training set (beyond Akhound-Sadegh et al., NeurIPS 2023, arXiv 2311.04293,
whose loss, §3.2, acts on each training initial condition's own solution).

The flow of a symmetry generator v = ξ∂x + τ∂t + φ∂u maps solutions to solutions, to first order u ↦ u + εQ_v[u] with
the characteristic Q_v[u] = φ − ξu_x − τu_t. At t = 0 it moves the initial condition by

    Q⁰_v[u₀] = φ(x, 0, u₀) − ξ(x, 0, u₀) u₀′ − τ(x, 0, u₀) F[u₀],   F[u₀] = u_t at t = 0, read from the PDE,

so the exact solution operator G (u₀ ↦ u) satisfies DG(u₀)[Q⁰_v] = Q_v[G(u₀)] at every (x, t). The loss compares
the two sides for a network G_θ: the left one is a single forward-mode JVP in the initial condition, the right one
reads G_θ(u₀) and its first derivatives in (x, t). Each generator's term is normalised by mean(Q⁰_v²), so that
generators of different scales weigh alike. A linear PDE has one more relation, superposition: DG(u₀)[w₀] = G(w₀)
(`SUPERPOSITION`, with w₀ another initial condition of the batch).

Only generators whose flow keeps a periodic domain and the law of its initial conditions apply (heat: ∂x, ∂t, u∂u and
superposition; Burgers: ∂x, ∂t and the Galilean boost t∂x + ∂u; each problem lists them); x-derivatives of u₀ are
spectral on the equispaced sensors of one period. The finite transformations of `pde.problems` used as data
augmentation are the integrated counterpart of the same relations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.func import jvp, vmap

from pde.lie_symmetry import PDE, Generator

#: A solution operator: initial conditions at the sensors (B, m) and points (B, n, 2) of (x, t) -> u there, (B, n).
Operator = Callable[[Tensor, Tensor], Tensor]
#: The name of the superposition relation of a linear PDE among the equivariance generators.
SUPERPOSITION = "superposition"
#: Floor of the per-generator normaliser mean(Q⁰²), against a batch of initial conditions a generator leaves fixed.
NORMALISER_FLOOR = 1e-12


def spectral_derivative(values: Tensor, length: float, order: int) -> Tensor:
    """∂_x^order of samples (..., m) of a periodic function on the equispaced grid of [0, length), by FFT. The Nyquist
    mode is dropped from odd orders, whose derivative of it is not a real grid function."""
    m = values.shape[-1]
    k = 2 * torch.pi * torch.fft.rfftfreq(m, d=length / m, dtype=values.dtype, device=values.device)
    factor = (1j * k) ** order
    if order % 2 and m % 2 == 0:
        factor[-1] = 0
    return torch.fft.irfft(torch.fft.rfft(values) * factor, n=m)


def initial_time_derivative(pde: PDE, u0: Tensor, sensors: Tensor, length: float) -> Tensor:
    """F[u₀] = u_t at t = 0 from Δ = 0 at the sensors, (B, m), for an evolution equation (Δ affine in u_t, no mixed
    derivatives): F = −Δ(u_t = 0) / (Δ(u_t = 1) − Δ(u_t = 0)), the x-derivatives of u₀ spectral."""
    time = (0, 1)
    if time not in pde.derivatives or any(index[1] and index != time for index in pde.derivatives):
        raise ValueError(f"{pde.name} is not an evolution equation u_t = F[u] (its derivatives: {pde.derivatives})")
    spatial = {index: spectral_derivative(u0, length, index[0]).reshape(-1) for index in pde.derivatives if index != time}
    z = torch.stack([sensors.expand_as(u0), torch.zeros_like(u0)], dim=-1).reshape(-1, 2)
    zeros = torch.zeros(z.shape[0], dtype=u0.dtype, device=u0.device)
    at_rest = vmap(pde.residual)(spatial | {time: zeros}, z)
    slope = vmap(pde.residual)(spatial | {time: zeros + 1}, z) - at_rest
    return (-at_rest / slope).reshape(u0.shape)


def initial_perturbations(pde: PDE, generators: Sequence[Generator], u0: Tensor, sensors: Tensor, length: float) -> Tensor:
    """Q⁰_v = φ − ξ u₀′ − τ F[u₀] at (sensor, t = 0, u₀) for every generator: (G, B, m)."""
    du0 = spectral_derivative(u0, length, 1)
    f0 = initial_time_derivative(pde, u0, sensors, length)
    w = torch.stack([sensors.expand_as(u0), torch.zeros_like(u0), u0], dim=-1).reshape(-1, 3)
    perturbations = []
    for generator in generators:
        xi, tau, phi = vmap(generator.components)(w).reshape(*u0.shape, 3).unbind(-1)
        perturbations.append(phi - xi * du0 - tau * f0)
    return torch.stack(perturbations)


def output_characteristics(operator: Operator, generators: Sequence[Generator], u0: Tensor, points: Tensor) -> Tensor:
    """Q_v[G(u₀)] = φ − ξu_x − τu_t at ``points`` (B, n, 2) for every generator, (G, B, n); u_x and u_t are JVPs of
    the operator along the points' coordinates (each output reads only its own point)."""
    field = lambda p: operator(u0, p)  # noqa: E731
    u = field(points)
    units = torch.eye(2, dtype=points.dtype, device=points.device)
    slopes = [jvp(field, (points,), (unit.expand_as(points),))[1] for unit in units]
    w = torch.stack([points[..., 0], points[..., 1], u], dim=-1).reshape(-1, 3)
    characteristics = []
    for generator in generators:
        xi, tau, phi = vmap(generator.components)(w).reshape(*u.shape, 3).unbind(-1)
        characteristics.append(phi - xi * slopes[0] - tau * slopes[1])
    return torch.stack(characteristics)


def equivariance_residuals(
    operator: Operator, pde: PDE, names: Sequence[str], u0: Tensor, points: Tensor, sensors: Tensor, length: float
) -> Tensor:
    """Per relation in ``names`` (generators of ``pde`` and `SUPERPOSITION`): mean over the batch and ``points``
    (B, n, 2) of (DG(u₀)[Q⁰] − Q[G(u₀)])², divided by mean(Q⁰²) at the sensors; shape (len(names),). Zero for the
    exact solution operator; ``u0`` (B, m) are initial conditions at ``sensors``, equispaced over one period."""
    unknown = sorted(set(names) - set(pde.generators) - {SUPERPOSITION})
    if unknown:
        raise ValueError(f"{pde.name} has no generator {unknown}; it has {sorted(pde.generators)} (and {SUPERPOSITION!r})")
    generators = [pde.generators[name] for name in names if name != SUPERPOSITION]
    tangents = list(initial_perturbations(pde, generators, u0, sensors, length).unbind())
    targets = list(output_characteristics(operator, generators, u0, points).unbind())
    if SUPERPOSITION in names:
        others = u0.roll(1, dims=0)
        tangents.insert(names.index(SUPERPOSITION), others)
        targets.insert(names.index(SUPERPOSITION), operator(others, points))
    field = lambda initial: operator(initial, points)  # noqa: E731
    residuals = []
    for tangent, target in zip(tangents, targets, strict=True):
        change = jvp(field, (u0,), (tangent,))[1]
        residuals.append((change - target).square().mean() / tangent.square().mean().clamp_min(NORMALISER_FLOOR))
    return torch.stack(residuals)


__all__ = [
    "NORMALISER_FLOOR", "SUPERPOSITION", "Operator", "equivariance_residuals", "initial_perturbations",
    "initial_time_derivative", "output_characteristics", "spectral_derivative",
]  # fmt: skip
