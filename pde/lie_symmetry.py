"""Lie point symmetries of PDEs as a loss for physics-informed networks (Akhound-Sadegh et al., NeurIPS 2023).

A point-symmetry generator v = Σ_i ξ_i(z, u) ∂_{z_i} + φ(z, u) ∂_u on the independent variables z = (x, t) and the
field u has the characteristic Q = φ − Σ_i ξ_i ∂_i u. v is a symmetry of the PDE Δ[u] = 0 iff the linearisation of Δ
at a solution, applied to Q, vanishes: D_Δ[u](Q) = d/dε Δ[u + εQ] |_{ε=0} = 0 (Olver, *Applications of Lie Groups to
Differential Equations*, ch. 2 and 5: pr v_Q(Δ) = D_Δ(Q)). Here D_Δ is computed by forward-mode AD in ε of the PDE's
own residual function, so any PDE written as a residual works without hand-derived prolongations, and the loss
Σ_v w_v mean_z D_Δ[u_θ](Q_v)(z)² is differentiable in the network's parameters (the derivatives of u_θ are
torch.func transforms of the network, composed with ordinary autograd).

What the loss adds: for a point symmetry, infinitesimal invariance gives pr v(Δ) = λ_v Δ for a function λ_v of z
(Olver, Thm 2.31, for the equations here), and pr v_Q = pr v − Σ_i ξ_i D_i, so for *any* u, not only solutions,
D_Δ[u](Q_v) = λ_v Δ[u] − Σ_i ξ_v,i D_i Δ[u]. The symmetry loss is therefore a residual loss on Δ and its gradient
with the weights λ_v and ξ_v: zero wherever the network already satisfies the PDE to first order, and silent about
solutions from initial conditions the network is not trained on. Both forms are available (``form``): "evolutionary"
(D_Δ[u](Q_v), as GPS_PINO, arXiv 2502.00373) and "classical" (pr⁽ⁿ⁾v(Δ)[u] = λ_v Δ[u], the criterion the paper
states), the latter a residual loss reweighted by λ_v².

For speed the network is differentiated once per point: D_Δ[u](Q)(c) reads only the derivatives of u at c up to one
order above the PDE's (`jet_indices`), so it is evaluated exactly on the Taylor polynomial of that jet
(`taylor_field`), for all generators in one forward-mode Jacobian in (ε_v)_v, instead of nesting the PDE's derivatives
of the network inside the ε-derivative of every generator.

Fields are functions of one point, ``f(z) -> scalar`` with z of shape (d,) (e.g. ``point_field(network)``); every
function here is vectorised over a batch of points (N, d) with ``torch.func.vmap``. The interface is written for any
number of independent variables; the PDEs in `pde.equations` are 1+1-D scalar equations up to third order.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import grad, jacfwd, jacrev, jvp, vmap

#: A scalar field of one point z (shape (d,)).
Field = Callable[[Tensor], Tensor]
#: A coefficient of a generator: a function of the point z (d,) and the field value u (scalar), returning a scalar.
Coefficient = Callable[[Tensor, Tensor], Tensor]
#: Partial derivatives of a field at a point by multi-index: (n_1, ..., n_d) -> ∂_1^{n_1} ... ∂_d^{n_d} u.
Jet = Mapping[tuple[int, ...], Tensor]
#: Which form of the symmetry condition a loss penalises (`symmetry_residuals_at`).
SymmetryForm = Literal["evolutionary", "classical"]


def zero(z: Tensor, u: Tensor) -> Tensor:
    """The zero coefficient."""
    return torch.zeros_like(u)


@dataclass(frozen=True)
class Generator:
    """A point-symmetry generator v = Σ_i ξ_i ∂_{z_i} + φ ∂_u; ``xi`` holds one coefficient per independent variable."""

    name: str
    xi: tuple[Coefficient, ...]
    phi: Coefficient

    def components(self, w: Tensor) -> Tensor:
        """(ξ_1, ..., ξ_d, φ) at w = (z, u), shape (d + 1,): the vector field on the space of (z, u)."""
        z, u = w[:-1], w[-1]
        return torch.stack([*(coefficient(z, u) for coefficient in self.xi), self.phi(z, u)])


@dataclass(frozen=True)
class PDE:
    """A PDE Δ[u] = 0 given by its residual, with the multi-indices of the derivatives it reads and its symmetries.

    ``residual(jet, z)`` returns Δ at the point z from the jet of u there (``jet[(0, 0)]`` = u, ``jet[(1, 0)]`` = u_x,
    ``jet[(0, 1)]`` = u_t, ``jet[(2, 0)]`` = u_xx, ... for z = (x, t)).
    """

    name: str
    derivatives: tuple[tuple[int, ...], ...]
    residual: Callable[[Jet, Tensor], Tensor]
    generators: dict[str, Generator] = field(default_factory=dict)
    source: str = ""


def point_field(network: nn.Module) -> Field:
    """The scalar field z -> network(z[None])[0, 0] of a network mapping (N, d) points to (N, 1) values."""
    return lambda z: network(z.unsqueeze(0)).reshape(())


def derivative(f: Field, index: tuple[int, ...]) -> Field:
    """The field ∂^index f (``index[i]`` derivatives along z_i), by nested forward mode (torch.func.jvp along the unit
    vectors): for third-order jets about twice as fast as nested reverse mode on one CPU thread."""
    for variable, count in enumerate(index):
        for _ in range(count):
            f = _partial(f, variable)
    return f


def _partial(f: Field, variable: int) -> Field:
    def partial(z: Tensor) -> Tensor:
        direction = torch.zeros_like(z)
        direction[variable] = 1
        return jvp(f, (z,), (direction,))[1]

    return partial


def point_jet(f: Callable[[Tensor], Tensor], indices: Iterable[tuple[int, ...]]) -> Callable[[Tensor], Jet]:
    """The function z -> {index: ∂^index f(z)} for each multi-index, at one point."""
    partials = {index: derivative(f, index) for index in indices}
    return lambda z: {index: g(z) for index, g in partials.items()}


def pde_residual_at(pde: PDE, f: Field) -> Field:
    """The field z -> Δ[f](z)."""
    values = point_jet(f, pde.derivatives)
    return lambda z: pde.residual(values(z), z)


def residual_gradient_at(pde: PDE, f: Field) -> Callable[[Tensor], Tensor]:
    """The field z -> (D_1Δ[f](z), ..., D_dΔ[f](z)), the total derivatives of the PDE residual, shape (d,)."""
    residual = pde_residual_at(pde, f)
    return lambda z: torch.stack([_partial(residual, variable)(z) for variable in range(len(z))])


def characteristics(generators: Sequence[Generator], f: Field) -> Callable[[Tensor], Tensor]:
    """The field z -> (Q_v(z))_v, shape (G,), with Q_v = φ_v(z, f) − Σ_i ξ_v,i(z, f) ∂_i f (∇f taken once for all)."""
    gradient = grad(f)

    def q(z: Tensor) -> Tensor:
        u, du = f(z), gradient(z)
        return torch.stack([
            generator.phi(z, u) - sum(xi(z, u) * du[i] for i, xi in enumerate(generator.xi)) for generator in generators
        ])  # fmt: skip

    return q


def symmetry_residuals_at(
    pde: PDE, generators: Sequence[Generator], f: Field, form: SymmetryForm = "evolutionary"
) -> Callable[[Tensor], Tensor]:
    """The field z -> (r_v(z))_v, shape (G,), of the symmetry condition in one of its two forms:

    - ``"evolutionary"``: r_v = D_Δ[f](Q_v) = ∂/∂ε_v Δ[f + Σ_w ε_w Q_w](z) at ε = 0 (pr v_Q(Δ), the form GPS_PINO uses,
      arXiv 2502.00373), all G directional derivatives in one forward-mode Jacobian;
    - ``"classical"``: r_v = pr⁽ⁿ⁾v(Δ)[f] = D_Δ[f](Q_v) + Σ_i ξ_v,i D_iΔ[f] (Olver, Thm 2.31 and eq. 5.4), the criterion
      Akhound-Sadegh et al. (NeurIPS 2023, §3) state; for the equations here it equals λ_v·Δ[f] on any function.
    """
    q = characteristics(generators, f)
    residual_gradient = residual_gradient_at(pde, f)

    def at(z: Tensor) -> Tensor:
        def perturbed(eps: Tensor) -> Tensor:
            # an elementwise product, not q @ eps: under torch.func (torch 2.13) a Python float times a coordinate can
            # give a double tangent, which addmv refuses and elementwise ops promote
            return pde_residual_at(pde, lambda y: f(y) + (q(y) * eps).sum())(z)

        evolutionary = jacfwd(perturbed)(torch.zeros(len(generators), dtype=z.dtype, device=z.device))
        if form == "evolutionary":
            return evolutionary
        u, gradient = f(z), residual_gradient(z)
        transport = torch.stack([sum(xi(z, u) * gradient[i] for i, xi in enumerate(v.xi)) for v in generators])
        return evolutionary + transport

    return at


def jet_indices(pde: PDE) -> tuple[tuple[int, ...], ...]:
    """The multi-indices of u's partial derivatives that D_Δ[u](Q) reads, lowest order first: Q contains ∇u, so the
    PDE's derivatives raised by one along each variable, and everything below them (the chain rule through ξ(z, u)
    and φ(z, u) reads every lower derivative)."""
    raised = {tuple(n + (i == j) for j, n in enumerate(index)) for index in pde.derivatives for i in range(len(index))}
    below = {low for high in raised for low in itertools.product(*(range(n + 1) for n in high))}
    return tuple(sorted(below, key=lambda index: (sum(index), index[::-1])))


def jet(f: Callable[[Tensor], Tensor], indices: Iterable[tuple[int, ...]], points: Tensor) -> dict[tuple[int, ...], Tensor]:
    """∂^index f at every row of ``points`` (N, d) for each multi-index: (N, *shape of f's value) each. ``f`` may be
    vector-valued (e.g. a DeepONet trunk, whose jet then serves every branch code)."""
    return vmap(point_jet(f, indices))(points)


def taylor_field(values: Jet, center: Tensor) -> Field:
    """The polynomial Σ_α values[α] (z − c)^α / α! about c = ``center``: its partial derivatives at c are ``values``.
    D_Δ[u](Q) at c reads only the derivatives of u in `jet_indices`, so evaluating it on this polynomial is exact and
    replaces the nested derivatives of a network by those of a few monomials, for every generator at once."""
    coefficients = {index: value / math.prod(math.factorial(n) for n in index) for index, value in values.items()}

    def polynomial(z: Tensor) -> Tensor:
        offset = z - center
        total = torch.zeros_like(coefficients[(0,) * len(center)])
        for index, coefficient in coefficients.items():
            term = coefficient
            for variable, power in enumerate(index):
                for _ in range(power):
                    term = term * offset[variable]
            total = total + term
        return total

    return polynomial


def pde_residual_of_jet(pde: PDE, jets: Jet, points: Tensor) -> Tensor:
    """Δ[u] at every row of ``points`` (N, d) from the jet of u there (`jet` at ``pde.derivatives``), shape (N,)."""
    return vmap(pde.residual)(jets, points)


def pde_residual(pde: PDE, f: Field, points: Tensor) -> Tensor:
    """Δ[f] at every row of ``points`` (N, d), shape (N,)."""
    return pde_residual_of_jet(pde, jet(f, pde.derivatives, points), points)


def symmetry_residuals_of_jet(
    pde: PDE, generators: Sequence[Generator], jets: Jet, points: Tensor, form: SymmetryForm = "evolutionary"
) -> Tensor:
    """The symmetry residuals (`symmetry_residuals_at`, in ``form``) at every row of ``points`` (N, d) for every
    generator, from the jet of u there (`jet` at `jet_indices`: both forms read derivatives up to one order above the
    PDE's): shape (N, G)."""
    return vmap(lambda values, z: symmetry_residuals_at(pde, generators, taylor_field(values, z), form)(z))(jets, points)


def symmetry_residual(pde: PDE, generator: Generator, f: Field, points: Tensor, form: SymmetryForm = "evolutionary") -> Tensor:
    """The symmetry residual of v at every row of ``points`` (N, d), shape (N,): zero on a solution when v is a
    symmetry, in either form."""
    return symmetry_residuals_of_jet(pde, [generator], jet(f, jet_indices(pde), points), points, form)[:, 0]


def residual_gradient_of_jet(pde: PDE, jets: Jet, points: Tensor) -> Tensor:
    """∇_z Δ[u] at every row of ``points`` (N, d) from the jet of u there (`jet` at `jet_indices`), shape (N, d): what
    the gradient-enhanced PINN (gPINN, Yu et al., 2022, arXiv 2111.02801) adds to the loss, squared. By the chain
    rule D_iΔ = Σ_α ∂Δ/∂u_α u_(α+e_i) + ∂Δ/∂z_i, one JVP of the residual function per variable."""

    def total_derivative(values: Jet, z: Tensor, raised: Jet, unit: Tensor) -> Tensor:
        return jvp(pde.residual, (values, z), (raised, unit))[1]

    values = {index: jets[index] for index in pde.derivatives}
    units = torch.eye(points.shape[1], dtype=points.dtype, device=points.device)
    gradient = []
    for variable, unit in enumerate(units):
        raised = {index: jets[tuple(n + (i == variable) for i, n in enumerate(index))] for index in pde.derivatives}
        gradient.append(vmap(total_derivative)(values, points, raised, unit.expand_as(points)))
    return torch.stack(gradient, dim=1)


def symmetry_multipliers(pde: PDE, generators: Sequence[Generator], points: Tensor) -> Tensor:
    """λ_v at every row of ``points`` (N, d) for every generator, shape (N, G), with pr⁽ⁿ⁾v(Δ)[u] = λ_v Δ[u] for every
    u (Olver, Thm 2.31). Read off a probe instead of dividing the classical residual of a network by its Δ (which is
    near zero where the network nearly solves the PDE): u = t − t₀ about each point, whose jet there is u_t = 1 and
    zero otherwise, so Δ[probe] is the coefficient of u_t (1 for the evolution equations here) and λ_v = pr v(Δ) /
    Δ on it. Exact where λ_v depends on the point only, as for every generator in `pde.equations` (tested against
    the classical residual of a network); a PDE whose residual ignores u_t is refused."""
    time = tuple(int(i == points.shape[1] - 1) for i in range(points.shape[1]))
    ones = torch.ones(len(points), dtype=points.dtype, device=points.device)
    zeros = torch.zeros_like(ones)
    probe = {index: ones if index == time else zeros for index in jet_indices(pde)}
    classical = symmetry_residuals_of_jet(pde, generators, probe, points, "classical")
    residual = pde_residual_of_jet(pde, {index: probe[index] for index in pde.derivatives}, points)
    if not bool(residual.abs().min() > 0):
        raise ValueError(f"{pde.name}: symmetry_multipliers needs a residual with a u_t term (an evolution equation)")
    return classical / residual[:, None]


def symmetry_loss_of_jet(
    pde: PDE, jets: Jet, points: Tensor, weights: Mapping[str, float] | None = None, generators: list[str] | None = None,
    form: SymmetryForm = "evolutionary",
) -> Tensor:  # fmt: skip
    """Σ_v w_v mean_z r_v(z)² over the PDE's generators (all, or ``generators``), ``weights`` per generator name
    (default 1), r_v in ``form`` (`symmetry_residuals_at`), from the jet of u at ``points`` (`jet` at
    `jet_indices`)."""
    chosen, generator_weights = weighted_generators(pde, weights, generators)
    residuals = symmetry_residuals_of_jet(pde, chosen, jets, points, form)
    return residuals.square().mean(0) @ residuals.new_tensor(generator_weights)


def weighted_generators(
    pde: PDE, weights: Mapping[str, float] | None, generators: list[str] | None
) -> tuple[list[Generator], list[float]]:
    """The PDE's generators (all, or those named in ``generators``) and their weights (``weights`` by name, default
    1); unknown names are refused."""
    names = generators if generators is not None else list(pde.generators)
    if not names:
        raise ValueError(f"{pde.name} declares no symmetry generators")
    unknown = sorted(set(names) - set(pde.generators)) + sorted(set(weights or {}) - set(pde.generators))
    if unknown:
        raise ValueError(f"{pde.name} has no generator {unknown}; it has {sorted(pde.generators)}")
    return [pde.generators[name] for name in names], [(weights or {}).get(name, 1.0) for name in names]


def classical_weight(
    pde: PDE, points: Tensor, weights: Mapping[str, float] | None = None, generators: list[str] | None = None
) -> Tensor:
    """Σ_v w_v λ_v(z)² at every row of ``points`` (N, d), shape (N,): the classical symmetry loss is this weight on
    the squared PDE residual, Σ_v w_v (pr v(Δ)[u])² = Σ_v w_v λ_v² Δ[u]² (`symmetry_multipliers`), generators and
    weights chosen as in `symmetry_loss_of_jet`."""
    chosen, generator_weights = weighted_generators(pde, weights, generators)
    multipliers = symmetry_multipliers(pde, chosen, points)
    return multipliers.square() @ multipliers.new_tensor(generator_weights)


def symmetry_loss(
    pde: PDE, f: Field, points: Tensor, weights: Mapping[str, float] | None = None, generators: list[str] | None = None,
    form: SymmetryForm = "evolutionary",
) -> Tensor:  # fmt: skip
    """`symmetry_loss_of_jet` of the field ``f``: its derivatives are taken once, for all generators."""
    return symmetry_loss_of_jet(pde, jet(f, jet_indices(pde), points), points, weights, generators, form)


def lie_bracket(v: Generator, w: Generator, points: Tensor) -> Tensor:
    """The components of [v, w] = Σ_j (v^j ∂_j w − w^j ∂_j v) at points (N, d + 1) of (z, u) space, shape (N, d + 1)."""

    def bracket(p: Tensor) -> Tensor:
        return jacrev(w.components)(p) @ v.components(p) - jacrev(v.components)(p) @ w.components(p)

    return vmap(bracket)(points)


__all__ = [
    "PDE", "Coefficient", "Field", "Generator", "Jet", "SymmetryForm", "characteristics", "classical_weight", "derivative",
    "jet", "jet_indices", "lie_bracket", "pde_residual", "pde_residual_of_jet", "point_field", "residual_gradient_at",
    "residual_gradient_of_jet", "symmetry_loss", "symmetry_loss_of_jet", "symmetry_multipliers", "symmetry_residual",
    "symmetry_residuals_at", "symmetry_residuals_of_jet", "taylor_field", "weighted_generators", "zero",
]  # fmt: skip
