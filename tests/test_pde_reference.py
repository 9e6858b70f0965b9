"""Reference PDE solvers: the spectral heat solution is exact, the Burgers solver converges to Cole-Hopf."""

from __future__ import annotations

import numpy as np
import pytest

from pde.reference import burgers_cole_hopf, periodic_grid, solve_burgers, solve_heat


def test_the_heat_solution_is_the_decaying_fourier_mode():
    x, nu, times = periodic_grid(32), 0.3, np.array([0.0, 0.5, 2.0])
    u = solve_heat(np.sin(3 * x) + 0.5 * np.cos(x), nu, times)
    exact = np.exp(-9 * nu * times)[:, None] * np.sin(3 * x) + 0.5 * np.exp(-nu * times)[:, None] * np.cos(x)
    np.testing.assert_allclose(u, exact, atol=1e-12)


def test_the_burgers_solver_converges_to_cole_hopf():
    nu, times = 0.1, np.array([0.0, 0.5, 1.0])
    errors = []
    for n in (32, 64, 128):
        x = periodic_grid(n)
        u0 = np.sin(x)
        errors.append(np.abs(solve_burgers(u0, nu, times) - burgers_cole_hopf(u0, nu, times)).max())
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-7, errors
    reference = burgers_cole_hopf(np.sin(periodic_grid(128)), nu, times)
    assert np.abs(reference[-1]).max() < 1.0 and np.abs(reference[0] - np.sin(periodic_grid(128))).max() < 1e-10


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="even"):
        periodic_grid(7)
    with pytest.raises(ValueError, match="zero mean"):
        burgers_cole_hopf(np.ones(16), 0.1, np.array([0.1]))
    with pytest.raises(ValueError, match="nu must be positive"):
        solve_burgers(np.sin(periodic_grid(16)), 0.0, np.array([0.1]))
