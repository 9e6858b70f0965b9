"""Lie point symmetries: on exact solutions the PDE residual and every generator's symmetry residual vanish, a
non-solution or a non-symmetry does not, the brackets close, and the symmetry loss trains a network."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pde.equations import burgers, burgers_shock, heat, heat_kernel, kdv, kdv_soliton
from pde.lie_symmetry import (
    Generator,
    classical_weight,
    jet,
    jet_indices,
    lie_bracket,
    pde_residual,
    pde_residual_at,
    point_field,
    residual_gradient_at,
    residual_gradient_of_jet,
    symmetry_loss,
    symmetry_residual,
    symmetry_residuals_at,
)

CASES = [
    ("heat", heat(nu=0.7), heat_kernel(nu=0.7), (-2.0, 2.0), (0.3, 2.0)),
    ("burgers", burgers(nu=0.1), burgers_shock(nu=0.1, k=1.5), (-2.0, 2.0), (0.0, 1.0)),
    ("kdv", kdv(), kdv_soliton(c=1.3), (-4.0, 4.0), (-1.0, 1.0)),
]


def points(
    x_range: tuple[float, float], t_range: tuple[float, float], n: int = 64, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Uniform collocation points; double precision by default, so exact solutions give residuals at rounding level."""
    unit = torch.rand(n, 2, generator=torch.Generator().manual_seed(0), dtype=dtype)
    low = torch.tensor([x_range[0], t_range[0]], dtype=dtype)
    high = torch.tensor([x_range[1], t_range[1]], dtype=dtype)
    return low + (high - low) * unit


@pytest.mark.parametrize(("name", "pde", "solution", "x_range", "t_range"), CASES, ids=[c[0] for c in CASES])
def test_exact_solutions_zero_every_residual(name, pde, solution, x_range, t_range):
    z = points(x_range, t_range)
    assert pde_residual(pde, solution, z).abs().max() < 1e-10
    for generator in pde.generators.values():
        residual = symmetry_residual(pde, generator, solution, z)
        assert residual.abs().max() < 1e-9, generator.name


@pytest.mark.parametrize(("name", "pde", "solution", "x_range", "t_range"), CASES, ids=[c[0] for c in CASES])
def test_a_non_solution_gives_non_zero_residuals(name, pde, solution, x_range, t_range):
    z = points(x_range, t_range)
    wrong = lambda p: solution(p) * (1 + 0.3 * torch.sin(p[0]))  # noqa: E731
    assert pde_residual(pde, wrong, z).abs().max() > 1e-3
    assert max(symmetry_residual(pde, g, wrong, z).abs().max() for g in pde.generators.values()) > 1e-3


@pytest.mark.parametrize(("name", "pde", "solution", "x_range", "t_range"), CASES, ids=[c[0] for c in CASES])
def test_the_taylor_jet_residual_equals_the_definition_on_a_network(name, pde, solution, x_range, t_range):
    # symmetry_residual evaluates D_Δ[u](Q) on the Taylor polynomial of u's jet at each point; the definition
    # differentiates the network itself. On a generic network (not a solution) they must agree to rounding.
    torch.manual_seed(0)
    network = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1)).double()
    f, z = point_field(network), points(x_range, t_range, 16)
    generators = list(pde.generators.values())
    direct = torch.func.vmap(symmetry_residuals_at(pde, generators, f))(z)
    assert direct.abs().max() > 1e-3
    by_jet = torch.stack([symmetry_residual(pde, g, f, z) for g in generators], dim=1)
    torch.testing.assert_close(by_jet, direct, rtol=1e-10, atol=1e-12)
    assert max(sum(index) for index in jet_indices(pde)) == max(sum(index) for index in pde.derivatives) + 1


def test_a_generator_outside_the_algebra_breaks_the_condition_on_a_solution():
    z = points((-4.0, 4.0), (-1.0, 1.0))
    projective = burgers().generators["projective"]  # a Burgers symmetry, not a KdV one (residual -t u_xxx)
    assert symmetry_residual(kdv(), projective, kdv_soliton(c=1.3), z).abs().max() > 1e-2
    wrong_scaling = Generator("x∂x + t∂t", (lambda p, u: p[0] * torch.ones_like(u), lambda p, u: p[1] * torch.ones_like(u)),
                              lambda p, u: torch.zeros_like(u))  # fmt: skip
    assert symmetry_residual(heat(0.7), wrong_scaling, heat_kernel(0.7), points((-2, 2), (0.3, 2))).abs().max() > 1e-2


@pytest.mark.parametrize(("name", "pde", "solution", "x_range", "t_range"), CASES, ids=[c[0] for c in CASES])
def test_the_symmetry_residual_is_the_pde_residual_and_its_gradient(name, pde, solution, x_range, t_range):
    # Infinitesimal invariance (Olver, Thm 2.31) with pr v_Q = pr v − Σ ξ_i D_i: for any u, not only solutions,
    # D_Δ[u](Q_v) = λ_v Δ[u] − Σ_i ξ_v,i D_i Δ[u] with λ_v a function of z alone. So λ_v, read off three different
    # non-solutions, must agree; this is why the symmetry loss is a weighted gradient-enhanced residual loss.
    z = points(x_range, t_range, 16)
    fields = [
        lambda p: torch.sin(1.3 * p[0] + 0.4 * p[1]) * torch.exp(-0.2 * p[1]) + 0.3 * p[0] ** 2 * p[1],
        lambda p: torch.tanh(p[0] - 0.5 * p[1]) + 0.1 * p[0] ** 3 + torch.cos(p[1]),
        lambda p: torch.exp(-(p[0] ** 2)) * (1 + p[1]) - 0.2 * p[0] * p[1] ** 2,
    ]
    for generator in pde.generators.values():
        multipliers = []
        for f in fields:
            delta = pde_residual_at(pde, f)
            u = torch.func.vmap(f)(z)
            xi = torch.stack([torch.func.vmap(c)(z, u) for c in generator.xi], dim=1)
            total = symmetry_residual(pde, generator, f, z) + (xi * torch.func.vmap(torch.func.grad(delta))(z)).sum(1)
            multipliers.append(total / torch.func.vmap(delta)(z))
        for other in multipliers[1:]:
            torch.testing.assert_close(other, multipliers[0], rtol=1e-9, atol=1e-9, msg=generator.name)


def test_heat_brackets_close_with_the_documented_constants():
    nu = 0.7
    v = heat(nu).generators
    w = torch.randn(32, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def combination(**coefficients: float) -> torch.Tensor:
        return sum(c * torch.func.vmap(v[name].components)(w) for name, c in coefficients.items())

    expected = {
        ("translation_x", "galilean"): combination(scaling_u=-1.0),
        ("translation_t", "galilean"): combination(translation_x=2 * nu),
        ("scaling", "translation_x"): combination(translation_x=-1.0),
        ("scaling", "translation_t"): combination(translation_t=-2.0),
        ("scaling", "galilean"): combination(galilean=1.0),
        ("translation_t", "projective"): combination(scaling=4 * nu, scaling_u=-2 * nu),
        ("translation_x", "projective"): combination(galilean=2.0),
    }
    for (a, b), value in expected.items():
        torch.testing.assert_close(lie_bracket(v[a], v[b], w), value, msg=f"[{a}, {b}]")


def test_the_symmetry_loss_has_gradients_and_a_tiny_pinn_on_the_heat_equation_improves():
    torch.manual_seed(0)
    nu = 0.5
    pde, exact = heat(nu), heat_kernel(nu)
    network = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1))
    f = point_field(network)
    interior = points((-2.0, 2.0), (0.5, 1.5), 64, torch.float32)
    symmetry_loss(pde, f, interior[:16], weights={"galilean": 2.0}).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in network.parameters())
    # Data: the exact solution on the initial slice t = 0.5 and on the boundaries x = ±2; physics: the residual (the
    # symmetry loss's effect on the error is the benchmark's question, not this test's).
    x, t = torch.linspace(-2, 2, 41), torch.linspace(0.5, 1.5, 21)
    initial = torch.stack([x, torch.full_like(x, 0.5)], dim=1)
    sides = [torch.stack([torch.full_like(t, side), t], dim=1) for side in (-2.0, 2.0)]
    data_points = torch.cat([initial, *sides])
    targets = torch.func.vmap(exact)(data_points)
    test = points((-2.0, 2.0), (0.5, 1.5), 256, torch.float32)

    def error() -> float:
        with torch.no_grad():
            return float(
                (network(test).squeeze(1) - torch.func.vmap(exact)(test)).norm() / torch.func.vmap(exact)(test).norm()
            )

    before = error()
    optimizer = torch.optim.Adam(network.parameters(), lr=3e-3)
    for _ in range(150):
        optimizer.zero_grad()
        data = (network(data_points).squeeze(1) - targets).square().mean()
        physics = pde_residual(pde, f, interior).square().mean()
        (data + physics).backward()
        optimizer.step()
    assert error() < 0.5 * before, (before, error())


def test_unknown_generator_names_are_refused():
    with pytest.raises(ValueError, match="has no generator"):
        symmetry_loss(heat(), heat_kernel(), points((-1, 1), (0.5, 1)), weights={"rotation": 1.0})


def test_the_pinn_fits_the_heat_kernel_with_and_without_the_symmetry_loss():
    from pde.networks import PINN, PINNConfig

    nu = 0.5
    exact = heat_kernel(nu)
    x, t = torch.linspace(-2, 2, 41), torch.linspace(0.5, 1.5, 21)
    data = torch.cat([torch.stack([x, torch.full_like(x, 0.5)], 1),
                      *(torch.stack([torch.full_like(t, s), t], 1) for s in (-2.0, 2.0))])  # fmt: skip
    values = torch.func.vmap(exact)(data)
    collocation = points((-2.0, 2.0), (0.5, 1.5), 64, torch.float32)
    test = points((-2.0, 2.0), (0.5, 1.5), 256, torch.float32)
    truth = torch.func.vmap(exact)(test)
    for weight in (0.0, 0.1):
        config = PINNConfig(hidden_dim=32, n_layers=2, learning_rate=3e-3, symmetry_weight=weight, symmetry_points=8,
                            generators=("galilean", "scaling"))  # fmt: skip
        pinn = PINN(heat(nu), config, seed=0)
        before = pinn.relative_l2_error(test, truth)
        history = pinn.fit(data, values, collocation, steps=60)
        assert ("symmetry" in history[-1]) == (weight > 0)
        assert pinn.relative_l2_error(test, truth) < 0.6 * before


def test_the_classical_form_is_lambda_times_the_residual_on_a_non_solution():
    """pr v(Δ)[u] = λ_v Δ[u] on any u (Olver, Thm 2.31), with λ_v of Akhound-Sadegh et al. (NeurIPS 2023) for our
    generators; the evolutionary form differs from it by ξ_v·∇Δ[u]."""
    nu_heat, nu_burgers = 0.7, 0.05
    lambdas = {
        "heat": (heat(nu_heat), {"translation_x": lambda x, t: 0 * x, "translation_t": lambda x, t: 0 * x,
                                 "scaling_u": lambda x, t: 1 + 0 * x, "scaling": lambda x, t: -2 + 0 * x,
                                 "galilean": lambda x, t: -x, "projective": lambda x, t: -(x**2 + 10 * nu_heat * t)}),
        "burgers": (burgers(nu_burgers), {"translation_x": lambda x, t: 0 * x, "translation_t": lambda x, t: 0 * x,
                                          "galilean": lambda x, t: 0 * x, "scaling": lambda x, t: -3 + 0 * x,
                                          "projective": lambda x, t: -3 * t}),
    }  # fmt: skip

    def not_a_solution(z):
        return torch.sin(1.3 * z[0]) * torch.exp(-0.4 * z[1]) + z[0] ** 2 * z[1] + 0.3 * z[0] ** 3

    points = torch.rand(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) + torch.tensor(
        [-0.5, 0.2], dtype=torch.float64
    )
    x, t = points[:, 0], points[:, 1]
    for pde, expected in lambdas.values():
        residual = pde_residual(pde, not_a_solution, points)
        assert residual.abs().min() > 1e-3  # a real non-solution
        for name, generator in pde.generators.items():
            classical = symmetry_residual(pde, generator, not_a_solution, points, form="classical")
            torch.testing.assert_close(classical, expected[name](x, t) * residual, rtol=1e-9, atol=1e-9)
            evolutionary = symmetry_residual(pde, generator, not_a_solution, points)
            if name not in ("scaling_u",):  # generators with ξ = 0 give the same value in both forms
                assert not torch.allclose(evolutionary, classical)


@pytest.mark.parametrize(("name", "pde", "solution", "x_range", "t_range"), CASES, ids=[c[0] for c in CASES])
def test_the_controls_are_the_classical_loss_and_the_residual_gradient_on_a_network(name, pde, solution, x_range,
                                                                                     t_range):  # fmt: skip
    # The reweighting control: (Σ_v λ_v²) Δ², with λ_v read off a probe, equals the classical loss Σ_v (pr v(Δ))² of
    # a generic network (λ_v depends on the point only). The gPINN term by the chain rule equals ∇Δ taken directly.
    torch.manual_seed(1)
    network = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1)).double()
    f, z = point_field(network), points(x_range, t_range, 16)
    classical = torch.stack([symmetry_residual(pde, g, f, z, form="classical") for g in pde.generators.values()], 1)
    reweighted = classical_weight(pde, z) * pde_residual(pde, f, z).square()
    assert classical.abs().max() > 1e-3
    torch.testing.assert_close(reweighted, classical.square().sum(1), rtol=1e-9, atol=1e-12)
    direct = torch.func.vmap(residual_gradient_at(pde, f))(z)
    torch.testing.assert_close(residual_gradient_of_jet(pde, jet(f, jet_indices(pde), z), z), direct, rtol=1e-10,
                               atol=1e-12)  # fmt: skip
