"""1+1-D PDEs with their Lie point symmetry algebras (z = (x, t)), and exact solutions to test them on.

Generators are from Olver, *Applications of Lie Groups to Differential Equations* (2nd ed., 1993): the heat equation
(Example 2.41, with t rescaled by ν), KdV (Example 2.44); viscous Burgers from Ibragimov (ed.), *CRC Handbook of Lie
Group Analysis of Differential Equations*, vol. 1 (1994). The tests check that each one's symmetry residual vanishes
on exact solutions and that their Lie brackets close with the constants in the docstrings.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pde.lie_symmetry import PDE, Generator, Jet, zero

X, T = (1, 0), (0, 1)


def _x(z: Tensor, u: Tensor) -> Tensor:
    return z[0] * torch.ones_like(u)


def _t(z: Tensor, u: Tensor) -> Tensor:
    return z[1] * torch.ones_like(u)


def _one(z: Tensor, u: Tensor) -> Tensor:
    return torch.ones_like(u)


def heat(nu: float = 1.0) -> PDE:
    """u_t = ν u_xx. Generators (Olver Ex. 2.41 with t -> νt): v1 = ∂x, v2 = ∂t, v3 = u∂u, v4 = x∂x + 2t∂t,
    v5 = 2νt∂x − xu∂u (Galilean boost), v6 = 4νtx∂x + 4νt²∂t − (x² + 2νt)u∂u (projective); and α∂u for any
    solution α (linearity), not listed. Brackets: [v1, v5] = −v3, [v2, v5] = 2ν v1, [v4, v1] = −v1, [v4, v2] = −2 v2,
    [v4, v5] = v5, [v2, v6] = 4ν v4 − 2ν v3, [v1, v6] = 2 v5."""

    def residual(jet: Jet, z: Tensor) -> Tensor:
        return jet[T] - nu * jet[(2, 0)]

    generators = {
        "translation_x": Generator("translation_x", (_one, zero), zero),
        "translation_t": Generator("translation_t", (zero, _one), zero),
        "scaling_u": Generator("scaling_u", (zero, zero), lambda z, u: u),
        "scaling": Generator("scaling", (_x, lambda z, u: 2 * _t(z, u)), zero),
        "galilean": Generator("galilean", (lambda z, u: 2 * nu * _t(z, u), zero), lambda z, u: -z[0] * u),
        "projective": Generator(
            "projective",
            (lambda z, u: 4 * nu * z[1] * z[0] * torch.ones_like(u), lambda z, u: 4 * nu * z[1] ** 2 * torch.ones_like(u)),
            lambda z, u: -(z[0] ** 2 + 2 * nu * z[1]) * u,
        ),
    }
    return PDE(f"heat(nu={nu})", ((0, 0), T, (2, 0)), residual, generators, "Olver (1993), Example 2.41")


def burgers(nu: float = 0.01) -> PDE:
    """u_t + u u_x = ν u_xx. Generators (Ibragimov, CRC Handbook vol. 1): ∂x, ∂t, t∂x + ∂u (Galilean),
    x∂x + 2t∂t − u∂u (scaling), tx∂x + t²∂t + (x − tu)∂u (projective)."""

    def residual(jet: Jet, z: Tensor) -> Tensor:
        return jet[T] + jet[(0, 0)] * jet[X] - nu * jet[(2, 0)]

    generators = {
        "translation_x": Generator("translation_x", (_one, zero), zero),
        "translation_t": Generator("translation_t", (zero, _one), zero),
        "galilean": Generator("galilean", (_t, zero), _one),
        "scaling": Generator("scaling", (_x, lambda z, u: 2 * _t(z, u)), lambda z, u: -u),
        "projective": Generator(
            "projective",
            (lambda z, u: z[1] * z[0] * torch.ones_like(u), lambda z, u: z[1] ** 2 * torch.ones_like(u)),
            lambda z, u: z[0] - z[1] * u,
        ),
    }
    return PDE(f"burgers(nu={nu})", ((0, 0), X, T, (2, 0)), residual, generators, "Ibragimov (1994), vol. 1")


def kdv() -> PDE:
    """u_t + u u_x + u_xxx = 0. Generators (Olver Ex. 2.44): ∂x, ∂t, t∂x + ∂u (Galilean), x∂x + 3t∂t − 2u∂u."""

    def residual(jet: Jet, z: Tensor) -> Tensor:
        return jet[T] + jet[(0, 0)] * jet[X] + jet[(3, 0)]

    generators = {
        "translation_x": Generator("translation_x", (_one, zero), zero),
        "translation_t": Generator("translation_t", (zero, _one), zero),
        "galilean": Generator("galilean", (_t, zero), _one),
        "scaling": Generator("scaling", (_x, lambda z, u: 3 * _t(z, u)), lambda z, u: -2 * u),
    }
    return PDE("kdv", ((0, 0), X, T, (3, 0)), residual, generators, "Olver (1993), Example 2.44")


# --- exact solutions (functions of one point z = (x, t)) -------------------------------------------------------------


def heat_kernel(nu: float = 1.0):
    """u = (4πνt)^(-1/2) exp(−x²/(4νt)), t > 0: the fundamental solution of the heat equation."""
    return lambda z: torch.exp(-(z[0] ** 2) / (4 * nu * z[1])) / torch.sqrt(4 * math.pi * nu * z[1])


def burgers_shock(nu: float = 0.01, k: float = 1.0):
    """u = 2νk e / (1 + e), e = exp(−kx + νk²t): Cole–Hopf u = −2ν φ_x/φ of the heat solution φ = 1 + e."""

    def u(z: Tensor) -> Tensor:
        e = torch.exp(-k * z[0] + nu * k**2 * z[1])
        return 2 * nu * k * e / (1 + e)

    return u


def kdv_soliton(c: float = 1.0):
    """u = 3c sech²(√c (x − ct)/2)."""
    return lambda z: 3 * c / torch.cosh(math.sqrt(c) * (z[0] - c * z[1]) / 2) ** 2


__all__ = ["burgers", "burgers_shock", "heat", "heat_kernel", "kdv", "kdv_soliton"]
