import math

import pytest
import torch

from samplers.schedules import CosineVPSchedule, GeometricVESchedule, NoiseSchedule

T = torch.linspace(0.0, 1.0, 101, dtype=torch.float64)


def _finite_difference(fn, t: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return (fn(t + eps) - fn(t - eps)) / (2 * eps)


@pytest.mark.parametrize(("sigma_min", "sigma_max"), [(1e-5, 3.0), (0.01, 2.0), (0.5, 4.0)])
def test_geometric_ve_matches_spec(sigma_min: float, sigma_max: float) -> None:
    sched = GeometricVESchedule(sigma_min, sigma_max)
    r = sigma_max / sigma_min
    assert sched.h(torch.zeros(3, dtype=torch.float64)).abs().max() == 0
    assert sched.prior_std == pytest.approx(math.sqrt(sigma_max**2 - sigma_min**2), rel=1e-12)
    assert sched.h(torch.ones((), dtype=torch.float64)).sqrt().item() == pytest.approx(sched.prior_std, rel=1e-10)
    torch.testing.assert_close(sched.g(T), sigma_min * r**T * math.sqrt(2 * math.log(r)))
    torch.testing.assert_close(sched.h(T), sigma_min**2 * (r ** (2 * T) - 1))
    torch.testing.assert_close(sched.h(T), sched.sigma(T) ** 2)
    assert torch.equal(sched.alpha(T), torch.ones_like(T))
    x = torch.randn(5, 3, dtype=torch.float64)
    assert torch.equal(sched.drift(x, torch.rand(5, dtype=torch.float64)), torch.zeros_like(x))


def test_geometric_ve_dh_dt_equals_g_squared() -> None:
    sched = GeometricVESchedule(0.01, 2.0)
    t = T[1:-1]
    torch.testing.assert_close(_finite_difference(sched.h, t), sched.g(t) ** 2, rtol=1e-6, atol=1e-9)


def test_geometric_ve_rejects_bad_range() -> None:
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        GeometricVESchedule(2.0, 1.0)


def test_schedules_accept_any_t_shape() -> None:
    t = torch.rand(2, 3, 4)
    for sched in (GeometricVESchedule(1e-3, 1.0), CosineVPSchedule()):
        for fn in (sched.g, sched.alpha, sched.sigma, sched.h):
            assert fn(t).shape == t.shape


def test_cosine_vp_marginals() -> None:
    sched = CosineVPSchedule(s=0.008)
    t = torch.tensor([0.0, 0.3, 0.7], dtype=torch.float64)
    # Before the beta cap the kernel is the plain Nichol & Dhariwal cosine schedule.
    f = torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    abar = f / f[0]
    torch.testing.assert_close(sched.alpha(t) ** 2, abar)
    torch.testing.assert_close(sched.alpha(t) ** 2 + sched.sigma(t) ** 2, torch.ones_like(t))
    assert sched.h(t[:1]).item() == pytest.approx(0.0, abs=1e-12)
    assert sched.prior_std == 1.0
    one = torch.ones((), dtype=torch.float64)
    assert 0 < sched.alpha(one).item() < 0.1, "abar(1) must be small but positive thanks to the beta cap"
    assert torch.isfinite(sched.g(T)).all() and sched.g(T).max().item() == pytest.approx(math.sqrt(sched.max_beta))


def test_cosine_vp_sde_is_consistent_with_kernel() -> None:
    sched = CosineVPSchedule()
    t = torch.cat([T[1:-1], torch.tensor([sched._t_cap - 1e-3, sched._t_cap + 1e-3], dtype=torch.float64)])
    beta = sched.g(t) ** 2
    # Variance ODE d sigma^2/dt = -beta sigma^2 + beta and mean ODE d log alpha/dt = -beta / 2.
    torch.testing.assert_close(_finite_difference(sched.h, t), beta * (1 - sched.h(t)), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(_finite_difference(lambda u: sched.alpha(u).log(), t), -0.5 * beta, rtol=1e-5, atol=1e-7)
    x = torch.randn(t.shape[0], 2, dtype=torch.float64)
    torch.testing.assert_close(sched.drift(x, t), -0.5 * beta[:, None] * x)


def test_sample_prior() -> None:
    g = torch.Generator().manual_seed(0)
    sched: NoiseSchedule = GeometricVESchedule(0.01, 5.0)
    x = sched.sample_prior(20000, 2, generator=g, dtype=torch.float64)
    assert x.shape == (20000, 2) and x.dtype == torch.float64
    assert x.std().item() == pytest.approx(sched.prior_std, rel=0.02)
