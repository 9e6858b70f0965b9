"""Reference solutions of 1+1-D PDEs on periodic domains, with numpy/scipy: the ground truth of PINN experiments.

* Heat u_t = ν u_xx: exact in Fourier space, û_k(t) = û_k(0) exp(−ν k² t).
* Viscous Burgers u_t + u u_x = ν u_xx: pseudo-spectral in x (2/3-rule dealiasing of u u_x = (u²/2)_x) and an
  adaptive high-order Runge–Kutta in t (scipy's DOP853), the method of lines.
* Burgers by Cole–Hopf: u = −2ν φ_x/φ with φ_t = ν φ_xx, φ(x, 0) = exp(−∫u₀/(2ν)); exact up to the spectral accuracy
  of φ, and the check of the numerical Burgers solver.
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import solve_ivp


def periodic_grid(n: int, length: float = 2 * np.pi) -> np.ndarray:
    """``n`` equispaced points of [0, length)."""
    if n < 4 or n % 2:
        raise ValueError(f"n must be even and at least 4, got {n}")
    return np.arange(n) * (length / n)


def _wavenumbers(n: int, length: float) -> np.ndarray:
    return 2 * np.pi * np.fft.rfftfreq(n, d=length / n)


def solve_heat(u0: np.ndarray, nu: float, times: np.ndarray, length: float = 2 * np.pi) -> np.ndarray:
    """u(x, t) of u_t = ν u_xx on the periodic grid of ``u0`` (n,), at ``times`` (m,): shape (m, n)."""
    k = _wavenumbers(len(u0), length)
    spectrum = np.fft.rfft(u0)
    return np.stack([np.fft.irfft(spectrum * np.exp(-nu * k**2 * t), n=len(u0)) for t in np.asarray(times)])


def solve_burgers(
    u0: np.ndarray, nu: float, times: np.ndarray, length: float = 2 * np.pi, rtol: float = 1e-10, atol: float = 1e-12
) -> np.ndarray:
    """u(x, t) of u_t + u u_x = ν u_xx on the periodic grid of ``u0`` (n,), at ``times`` (m,), shape (m, n)."""
    if nu <= 0:
        raise ValueError(f"nu must be positive (viscous Burgers), got {nu}")
    n = len(u0)
    k = _wavenumbers(n, length)
    dealias = k < (2 / 3) * k.max()

    def rhs(_: float, u: np.ndarray) -> np.ndarray:
        spectrum = np.fft.rfft(u)
        flux = np.fft.rfft(0.5 * u**2) * dealias
        return np.fft.irfft(-1j * k * flux - nu * k**2 * spectrum, n=n)

    times = np.asarray(times, dtype=float)
    solution = solve_ivp(rhs, (0.0, float(times.max())), u0, method="DOP853", t_eval=times, rtol=rtol, atol=atol)
    if not solution.success:
        raise RuntimeError(f"the Burgers integration failed: {solution.message}")
    return solution.y.T


def burgers_cole_hopf(u0: np.ndarray, nu: float, times: np.ndarray, length: float = 2 * np.pi) -> np.ndarray:
    """Burgers' exact solution by Cole–Hopf on the periodic grid of ``u0`` (which must have zero mean, so that φ is
    periodic), at ``times``: shape (m, n)."""
    n = len(u0)
    if abs(float(np.mean(u0))) > 1e-12 * max(1.0, float(np.abs(u0).max())):
        raise ValueError("Cole-Hopf on a periodic domain needs an initial condition with zero mean")
    k = _wavenumbers(n, length)
    spectrum = np.fft.rfft(u0)
    integral_spectrum = np.zeros_like(spectrum)
    integral_spectrum[1:] = spectrum[1:] / (1j * k[1:])  # the periodic antiderivative of u0 (zero mean)
    phi0 = np.exp(-np.fft.irfft(integral_spectrum, n=n) / (2 * nu))
    phi = solve_heat(phi0, nu, times, length)
    phi_x = np.stack([np.fft.irfft(1j * k * np.fft.rfft(row), n=n) for row in phi])
    return -2 * nu * phi_x / phi


__all__ = ["burgers_cole_hopf", "periodic_grid", "solve_burgers", "solve_heat"]
