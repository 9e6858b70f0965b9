"""PDE problems for physics-informed solvers, by short name (``Heat``, ``Burgers``): the PDE with its symmetry
algebra, a periodic domain, a distribution of initial conditions, the reference solver and the finite group actions
that turn one training initial condition into others (the data-augmentation baseline).

The set-up follows Akhound-Sadegh et al. (NeurIPS 2023), Section 4: initial conditions are sums of ten sine waves
A sin(2π l x / L + φ) with A ~ U(−0.5, 0.5), l ∈ {1, 2, 3}, φ ~ U(0, 2π) on x ∈ [0, L); the heat equation with
ν = 0.01 on [0, 6) × [0, 16]. Burgers is run at ν = 0.05 on [0, 6) × [0, 2], viscous enough that the fronts stay
resolved by 256 Fourier modes and by a PINN.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pde.equations import burgers, heat
from pde.equivariance import SUPERPOSITION
from pde.lie_symmetry import PDE
from pde.reference import periodic_grid, solve_burgers, solve_heat

#: A finite symmetry transformation of initial conditions: (u0 (n, m) on the periodic grid, rng) -> transformed (n, m).
Transformation = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _translate(u0: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """exp(s ∂x) for a random whole number of grid cells s: u(x, t) -> u(x − s, t), exact on the periodic grid."""
    shifts = rng.integers(u0.shape[1], size=len(u0))
    return np.stack([np.roll(row, shift) for row, shift in zip(u0, shifts, strict=True)])


def _scale_u(u0: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """exp(a u∂u), the heat equation's linearity: u -> e^a u, a ~ U(−0.5, 0.5)."""
    return u0 * np.exp(rng.uniform(-0.5, 0.5, size=(len(u0), 1)))


def _galilean_boost(u0: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """exp(c (t∂x + ∂u)), Burgers' Galilean boost: u(x, t) -> u(x − ct, t) + c; at t = 0, u0 -> u0 + c, c ~ U(−0.5, 0.5)."""
    return u0 + rng.uniform(-0.5, 0.5, size=(len(u0), 1))


@dataclass(frozen=True)
class PDEProblem:
    """A PDE on the periodic domain [0, length) × [0, t_max] with random initial conditions and a reference solver."""

    name: str
    nu: float
    length: float
    t_max: float
    make_pde: Callable[[float], PDE]
    solver: Callable[[np.ndarray, float, np.ndarray, float], np.ndarray]
    transformations: tuple[Transformation, ...]
    periodic_generators: tuple[str, ...]
    """Relations of the equivariance loss (`pde.equivariance`): the generators whose flow keeps the periodic domain
    and the law of the initial conditions, and superposition for a linear PDE."""
    grid_points: int = 256

    @property
    def pde(self) -> PDE:
        return self.make_pde(self.nu)

    @property
    def grid(self) -> np.ndarray:
        """The periodic grid of the initial conditions and reference solutions, (grid_points,)."""
        return periodic_grid(self.grid_points, self.length)

    def initial_conditions(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` random initial conditions on `grid`, shape (n, grid_points)."""
        if n < 1:
            raise ValueError(f"the number of initial conditions must be positive, got {n}")
        amplitude = rng.uniform(-0.5, 0.5, size=(n, 10, 1))
        mode = rng.choice([1, 2, 3], size=(n, 10, 1))
        phase = rng.uniform(0, 2 * np.pi, size=(n, 10, 1))
        return (amplitude * np.sin(2 * np.pi * mode * self.grid / self.length + phase)).sum(1)

    def solve(self, u0: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Reference solutions of ``u0`` (n, grid_points) at ``times`` (k,): shape (n, k, grid_points)."""
        return np.stack([self.solver(row, self.nu, np.asarray(times, dtype=float), self.length) for row in u0])

    def augment(self, u0: np.ndarray, copies: int, rng: np.random.Generator) -> np.ndarray:
        """``u0`` followed by ``copies`` transformed copies of each row (every transformation of the problem
        composed, with random parameters): the finite group action as data augmentation, (n · (1 + copies), m)."""
        out = [u0]
        for _ in range(copies):
            transformed = u0
            for transformation in self.transformations:
                transformed = transformation(transformed, rng)
            out.append(transformed)
        return np.concatenate(out)


# Heat's scaling, Galilean and projective generators, and Burgers' scaling and projective ones, move x by amounts
# that depend on x or t, which breaks the period: they are not equivariance relations here.
PDE_PROBLEMS: dict[str, PDEProblem] = {
    "Heat": PDEProblem("Heat", 0.01, 6.0, 16.0, heat, solve_heat, (_translate, _scale_u),
                       ("translation_x", "translation_t", "scaling_u", SUPERPOSITION)),
    "Burgers": PDEProblem("Burgers", 0.05, 6.0, 2.0, burgers, solve_burgers, (_translate, _galilean_boost),
                          ("translation_x", "translation_t", "galilean")),
}  # fmt: skip


def make_pde_problem(name: str) -> PDEProblem:
    """The problem registered as ``name``; an unknown name gets the close ones."""
    if name not in PDE_PROBLEMS:
        close = difflib.get_close_matches(name, PDE_PROBLEMS, n=2)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise ValueError(f"unknown PDE problem {name!r}{hint} (known: {', '.join(PDE_PROBLEMS)})")
    return PDE_PROBLEMS[name]


__all__ = ["PDE_PROBLEMS", "PDEProblem", "Transformation", "make_pde_problem"]
