"""Noise schedules of the forward SDE dx = f(x, t) dt + g(t) dW on t in [0, 1].

Every schedule describes the Gaussian perturbation kernel x_t | x_0 ~ N(alpha(t) x_0, sigma(t)^2 I) together with
the SDE that generates it, so estimators (which need alpha, sigma) and integrators (which need f, g) stay
consistent with each other.
"""

from __future__ import annotations

import abc
import math

import torch
from torch import Tensor

#: Offset of the score-matching loss weight lambda(t) = h(t) + 1e-3 (`NoiseSchedule.score_loss_weight`).
SCORE_LOSS_WEIGHT_OFFSET = 1e-3


class NoiseSchedule(abc.ABC):
    """Forward SDE coefficients and the marginal kernel they induce; ``t`` may be a tensor of any shape."""

    #: f(x, t) = 0 for every x and t (variance-exploding), so integrators may skip the drift term.
    drift_free: bool = False

    @abc.abstractmethod
    def g(self, t: Tensor) -> Tensor:
        """Diffusion coefficient g(t)."""

    @abc.abstractmethod
    def alpha(self, t: Tensor) -> Tensor:
        """Mean scale of x_t | x_0."""

    @abc.abstractmethod
    def sigma(self, t: Tensor) -> Tensor:
        """Standard deviation of x_t | x_0."""

    @abc.abstractmethod
    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """Forward drift f(x, t) for ``x`` of shape (N, D) and ``t`` of shape (N,)."""

    @property
    @abc.abstractmethod
    def prior_std(self) -> float:
        """Standard deviation of the isotropic Gaussian prior the reverse process starts from at t = 1."""

    def h(self, t: Tensor) -> Tensor:
        """Marginal variance sigma(t)^2 (iDEM's notation)."""
        return self.sigma(t) ** 2

    def noised(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """The forward perturbation x_t = alpha(t) x_0 + sigma(t) eps of rows ``x0`` (N, D) at times ``t`` (N,)."""
        return self.alpha(t)[:, None] * x0 + self.sigma(t)[:, None] * noise

    def score_from_noise(self, noise: Tensor, t: Tensor) -> Tensor:
        """The score -eps / sigma(t) of x_t | x_0 given a (predicted) noise ``eps`` (N, D) at times ``t`` (N,)."""
        return -noise / self.sigma(t)[:, None]

    def score_loss_weight(self, t: Tensor) -> Tensor:
        """Weight lambda(t) = h(t) + 1e-3 of a score-matching regression, as ``BasicLambdaWeighter`` in the iDEM and
        DQS reference code (src/components/lambda_weighter.py): h(t) |s - S|^2 keeps every time on one scale, and
        the offset keeps the smallest times from vanishing."""
        return self.h(t) + SCORE_LOSS_WEIGHT_OFFSET

    def sample_prior(
        self,
        n: int,
        dim: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """Draw ``n`` samples of N(0, prior_std^2 I) in ``dim`` dimensions."""
        return torch.randn(n, dim, generator=generator, device=device, dtype=dtype) * self.prior_std


class GeometricVESchedule(NoiseSchedule):
    """iDEM/DQS geometric variance-exploding schedule (``GeometricNoiseSchedule`` of jarridrb/DEM
    ``dem/models/components/noise_schedules.py``).

    With r = sigma_max / sigma_min: g(t) = sigma_min r^t sqrt(2 ln r) and h(t) = sigma_min^2 (r^{2t} - 1), so
    h(0) = 0 and the prior std is sqrt(sigma_max^2 - sigma_min^2). sigma_min sets the rate g(0), not a noise floor.
    """

    drift_free = True

    def __init__(self, sigma_min: float, sigma_max: float) -> None:
        if not 0.0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def g(self, t: Tensor) -> Tensor:
        return self.sigma_min * torch.exp(t * self._log_ratio) * math.sqrt(2.0 * self._log_ratio)

    def h(self, t: Tensor) -> Tensor:
        # expm1 keeps h accurate near t = 0, where r^{2t} - 1 would cancel.
        return self.sigma_min**2 * torch.expm1(2.0 * self._log_ratio * t)

    def sigma(self, t: Tensor) -> Tensor:
        return self.h(t).sqrt()

    def alpha(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return torch.zeros_like(x)

    @property
    def prior_std(self) -> float:
        return math.sqrt(self.sigma_max**2 - self.sigma_min**2)

    def __repr__(self) -> str:
        return f"GeometricVESchedule(sigma_min={self.sigma_min}, sigma_max={self.sigma_max})"


class CosineVPSchedule(NoiseSchedule):
    """Variance-preserving SDE with the cosine alpha-bar of Nichol & Dhariwal (2021).

    abar(t) = cos^2(pi/2 (t + s)/(1 + s)) / cos^2(pi/2 s/(1 + s)), beta(t) = -d log abar / dt, drift -beta x / 2,
    g = sqrt(beta), alpha = sqrt(abar), sigma = sqrt(1 - abar).

    beta diverges at t = 1, so it is capped at ``max_beta``: past the time t_c where the cosine beta reaches the cap,
    log abar continues linearly with slope -max_beta. abar is defined by integrating the capped beta, so the kernel
    and the SDE stay exactly consistent (d sigma^2/dt = beta (1 - sigma^2)) and abar(1) stays positive.
    """

    def __init__(self, s: float = 0.008, max_beta: float = 20.0) -> None:
        if s <= 0.0 or max_beta <= 0.0:
            raise ValueError(f"need s > 0 and max_beta > 0, got s={s}, max_beta={max_beta}")
        self.s = float(s)
        self.max_beta = float(max_beta)
        self._rate = 0.5 * math.pi / (1.0 + self.s)
        # beta(t) = 2 rate tan(rate (t + s)) reaches max_beta at t_c (clipped to [0, 1]).
        t_c = math.atan(self.max_beta / (2.0 * self._rate)) / self._rate - self.s
        self._t_cap = min(max(t_c, 0.0), 1.0)
        self._log_cos_0 = math.log(math.cos(self._rate * self.s))

    def _cosine_log_abar(self, t: Tensor) -> Tensor:
        return 2.0 * (torch.log(torch.cos(self._rate * (t + self.s))) - self._log_cos_0)

    def log_alpha_bar(self, t: Tensor) -> Tensor:
        """log abar(t) with the capped-beta continuation after t_c."""
        t_cap = torch.full_like(t, self._t_cap)
        # Clamp at 0: rounding can push log abar(0) slightly positive, which would make h(0) negative.
        before = self._cosine_log_abar(torch.minimum(t, t_cap)).clamp(max=0.0)
        return before - self.max_beta * (t - t_cap).clamp(min=0.0)

    def beta(self, t: Tensor) -> Tensor:
        """beta(t) = -d log abar / dt, capped at ``max_beta``."""
        cosine_beta = 2.0 * self._rate * torch.tan(self._rate * (t.clamp(max=self._t_cap) + self.s))
        return cosine_beta.clamp(max=self.max_beta)

    def g(self, t: Tensor) -> Tensor:
        return self.beta(t).sqrt()

    def alpha(self, t: Tensor) -> Tensor:
        return torch.exp(0.5 * self.log_alpha_bar(t))

    def sigma(self, t: Tensor) -> Tensor:
        return self.h(t).sqrt()

    def h(self, t: Tensor) -> Tensor:
        return -torch.expm1(self.log_alpha_bar(t))

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return -0.5 * self.beta(t).unsqueeze(-1) * x

    @property
    def prior_std(self) -> float:
        return 1.0

    def __repr__(self) -> str:
        return f"CosineVPSchedule(s={self.s}, max_beta={self.max_beta})"
