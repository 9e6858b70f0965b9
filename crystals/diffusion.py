"""The diffusion processes of DiffCSP and SymmCD, as tensor math: no network, no data pipeline.

DiffCSP (Jiao et al., NeurIPS 2023, arXiv 2309.04475; `jiaor17/DiffCSP` ``diffcsp/pl_modules/diff_utils.py`` and
``diffusion_w_type.py``) and SymmCD (Levy et al., ICLR 2025, arXiv 2502.03638; `sibasmarak/SymmCD`
``symmcd/pl_modules/discrete_diffusion_w_site_symm.py``) diffuse each part of a crystal with its own process, all on
one grid of T = 1000 steps t = 1..T (index 0 is the clean data):

- `GaussianDDPM`: the lattice (DiffCSP's 3×3 L, SymmCD's 6 numbers k under a crystal-family mask m and offset b),
  k_t = m⊙(√ᾱ_t k₀ + √(1−ᾱ_t) ε) + b, ε-prediction, ancestral reverse step (Ho et al. 2020, arXiv 2006.11239, Alg. 2);
  also DiffCSP's Gaussian-diffused one-hot atom types (weight 20 in `LossWeights.diffcsp`);
- `WrappedNormalDiffusion`: fractional coordinates on the torus, x_t = (x₀ + σ_t ε) mod 1, score matching with the
  wrapped-normal score and DiffCSP's predictor-corrector sampling step (``CSPDiffusion.sample``);
- `CategoricalD3PM`: categorical variables with the x₀-parameterisation of D3PM (Austin et al., NeurIPS 2021,
  arXiv 2107.03006, §3): SymmCD's atom types and its site symmetry, 15 independent 13-class variables per atom.

One sign convention throughout: `wrapped_normal_score` returns the score ∇_d log N_w(d; σ) itself. (DiffCSP's helper
``d_log_p_wrapped_normal`` returns its negative and its sampler subtracts; the dynamics are the same.) The network's
coordinate output regresses τ = score/√λ_t and the samplers move along +√λ_t·ŝ.

The normaliser λ_t = E‖∇ log N_w‖² (per coordinate) is computed by quadrature, not by DiffCSP's 10⁴-sample Monte Carlo
(``sigma_norm``): λ(σ) = E_{ε~N(0,1)}[score(σε; σ)²] with the trapezoid rule on a uniform ε-grid over [−10, 10], which
converges exponentially for this smooth, fast-decaying integrand: λ_t is deterministic and, for σ ≤ 0.5, agrees with a
ten times finer grid to 1e-12 relative.

Where this differs from the reference code:

- The wrapped-normal density and score are evaluated as a log-sum-exp and a softmax over the images −10..10 of the
  displacement reduced to [−½, ½), in float64. The reference sums raw exponentials in the input dtype, which underflow
  to 0/0 where the nearest image lies more than ~14σ away (float32; ~39σ in float64).
- The discrete reverse step normalises in closed form (O(K) per variable) instead of forming the K×K posterior of every
  x₀; states x₀ that cannot reach z_t get zero weight, as the reference's zero-denominator guard gives.
- SymmCD's masked prior zeroes the absorbing token's probability without renormalising p̂(x₀|z_t); `absorbing_x0_logits`
  excludes it from the softmax instead.

The noise schedules of `samplers.schedules` are continuous-time SDEs on t ∈ [0, 1] and live on the same floor of the
package graph as this package, so the discrete clipped-β grid of the references is built here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

#: Half-width, in standard deviations, of the ε-grid of the λ quadrature (`wrapped_normal_score_norm`), and its
#: spacing in units of 1/max(1, σ): the integrand is smooth on the scale of a period 1/σ of the score.
SCORE_NORM_GRID_RADIUS = 10.0
SCORE_NORM_GRID_SPACING = 0.05
#: σ values per chunk of the λ quadrature, which bounds its memory to chunk × points × images float64 numbers.
SCORE_NORM_CHUNK = 64
#: The images −n..n resolve the wrapped normal to ~exp(−32) relative error while σ ≤ (n − ½)/8.
IMAGE_MARGIN_SIGMAS = 8.0


def max_sigma(images: int) -> float:
    """The largest σ that the images −images..images resolve: (images − ½)/8 standard deviations to the nearest image
    left out."""
    return (images - 0.5) / IMAGE_MARGIN_SIGMAS


@dataclass(frozen=True)
class CrystalDiffusionConfig:
    """Sizes of the processes; the defaults are DiffCSP's and SymmCD's (``conf/model/beta_scheduler/cosine.yaml``,
    ``conf/model/sigma_scheduler/wrapped.yaml``)."""

    timesteps: int = 1000  # T: steps of every process
    cosine_offset: float = 0.008  # s of the cosine ᾱ (Nichol & Dhariwal 2021, arXiv 2102.09672, eq. 17)
    beta_min: float = 1e-4  # β_t is clipped to [beta_min, beta_max]
    beta_max: float = 0.9999
    sigma_begin: float = 0.005  # σ_1 of the coordinates; σ_t is geometric from sigma_begin to sigma_end
    sigma_end: float = 0.5  # σ_T
    wrapped_images: int = 10  # the wrapped normal sums the images −n..n

    def __post_init__(self) -> None:
        for name in ("timesteps", "wrapped_images"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.cosine_offset <= 0:
            raise ValueError(f"cosine_offset must be positive, got {self.cosine_offset}")
        if not 0 < self.beta_min <= self.beta_max < 1:
            raise ValueError(f"need 0 < beta_min <= beta_max < 1, got {self.beta_min}, {self.beta_max}")
        if not 0 < self.sigma_begin < self.sigma_end <= max_sigma(self.wrapped_images):
            raise ValueError(f"need 0 < sigma_begin < sigma_end <= {max_sigma(self.wrapped_images):.3g} (wrapped_images="
                             f"{self.wrapped_images}), got {self.sigma_begin}, {self.sigma_end}")  # fmt: skip


@dataclass(frozen=True)
class LossWeights:
    """Weights of the per-process losses in the total; the defaults are SymmCD's
    (``conf/model/discrete_diffusion_w_site_symm.yaml``: cost_lattice, cost_coord, cost_type, cost_symm)."""

    lattice: float = 5.0
    coordinates: float = 1.0
    types: float = 0.1
    site_symmetry: float = 10.0

    @classmethod
    def diffcsp(cls) -> LossWeights:
        """DiffCSP's generation model (``conf/model/diffusion_w_type.yaml``): MSE on Gaussian one-hot types, weight 20."""
        return cls(lattice=1.0, coordinates=1.0, types=20.0, site_symmetry=0.0)

    def total(self, lattice: Tensor, coordinates: Tensor, types: Tensor, site_symmetry: Tensor | None = None) -> Tensor:
        """The weighted sum; ``site_symmetry`` may be left out when its weight is 0 (DiffCSP)."""
        if site_symmetry is None and self.site_symmetry != 0:
            raise ValueError(f"site_symmetry loss missing with weight {self.site_symmetry}")
        total = self.lattice * lattice + self.coordinates * coordinates + self.types * types
        return total if site_symmetry is None else total + self.site_symmetry * site_symmetry


def cosine_betas(timesteps: int, offset: float, beta_min: float, beta_max: float) -> Tensor:
    """β_1..β_T (float64) of the cosine ᾱ(t) = cos²(π/2 (t/T + s)/(1 + s)) / cos²(π/2 s/(1 + s)), clipped
    (Nichol & Dhariwal 2021, arXiv 2102.09672, eq. 17; DiffCSP ``cosine_beta_schedule``)."""
    steps = torch.linspace(0.0, 1.0, timesteps + 1, dtype=torch.float64)
    alpha_bar = torch.cos((steps + offset) / (1 + offset) * math.pi / 2) ** 2
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(beta_min, beta_max)


def _image_logits(d: Tensor, sigma: Tensor | float, images: int) -> tuple[Tensor, Tensor, Tensor]:
    """float64 (u, −u²/2σ², σ) over the images u = d' + n, n = −images..images, of d reduced to d' ∈ [−½, ½)."""
    d64 = d.to(torch.float64)
    sigma64 = torch.as_tensor(sigma, dtype=torch.float64, device=d.device)
    if (sigma64 <= 0).any():
        raise ValueError("sigma must be positive")
    shifts = torch.arange(-images, images + 1, dtype=torch.float64, device=d.device)
    reduced = d64 - torch.round(d64)  # exactly periodic; keeps the images symmetric about the displacement
    u = reduced.unsqueeze(-1) + shifts
    sigma64 = sigma64.unsqueeze(-1)
    return u, -(u**2) / (2 * sigma64**2), sigma64.squeeze(-1)


def wrapped_normal_log_density(d: Tensor, sigma: Tensor | float, images: int = 10) -> Tensor:
    """log N_w(d; σ) = log Σ_n N(d + n; 0, σ²) on the unit circle, for ``d`` and ``sigma`` broadcastable; accurate
    while σ ≤ `max_sigma` (images)."""
    _, logits, sigma64 = _image_logits(d, sigma, images)
    log_density = torch.logsumexp(logits, dim=-1) - torch.log(math.sqrt(2 * math.pi) * sigma64)
    return log_density.to(d.dtype)


def wrapped_normal_score(d: Tensor, sigma: Tensor | float, images: int = 10) -> Tensor:
    """The score ∇_d log N_w(d; σ) = −Σ_n w_n (d + n)/σ², w = softmax_n(−(d + n)²/2σ²): the score itself, not its
    negative (DiffCSP's ``d_log_p_wrapped_normal`` returns −score)."""
    u, logits, sigma64 = _image_logits(d, sigma, images)
    return (-(torch.softmax(logits, dim=-1) * u).sum(-1) / sigma64**2).to(d.dtype)


def wrapped_normal_score_norm(sigma: Tensor, images: int = 10) -> Tensor:
    """λ(σ) = E_{d~N_w(σ)}[score(d; σ)²] per coordinate, by quadrature: E_{ε~N(0,1)}[score(σε; σ)²] with the
    trapezoid rule on a uniform ε-grid (the score is 1-periodic, so d = σε unwrapped has the same law of scores).

    Replaces DiffCSP's Monte Carlo ``sigma_norm`` (10⁴ samples, ~1.4 % noise): deterministic, and for σ ≤ 0.5 equal
    to a ten times finer grid's value to 1e-12 relative. σ must lie in (0, `max_sigma` (images)].
    """
    sigma64 = sigma.to(torch.float64).reshape(-1, 1)
    if sigma64.numel() and not 0 < sigma64.min() <= sigma64.max() <= max_sigma(images):
        raise ValueError(f"sigma must lie in (0, {max_sigma(images):.3g}] for {images} images")
    spacing = SCORE_NORM_GRID_SPACING / max(1.0, sigma64.max().item() if sigma64.numel() else 1.0)
    points = 2 * math.ceil(SCORE_NORM_GRID_RADIUS / spacing) + 1
    eps = torch.linspace(-SCORE_NORM_GRID_RADIUS, SCORE_NORM_GRID_RADIUS, points, dtype=torch.float64)
    weights = torch.exp(-(eps**2) / 2)
    weights = weights / weights.sum()  # normalising absorbs the truncated tails and the trapezoid's constant
    norms = [(wrapped_normal_score(chunk * eps, chunk, images) ** 2 * weights).sum(-1)
             for chunk in sigma64.split(SCORE_NORM_CHUNK)]  # fmt: skip
    return torch.cat(norms).reshape(sigma.shape) if norms else sigma64.reshape(sigma.shape)


class DiffusionSchedules(nn.Module):
    """The discrete schedules of every process, indexed by t = 0..T (index 0 = clean data), as float64 buffers.

    - β_t cosine and clipped, α_t = 1 − β_t, ᾱ_t = Π_{s≤t} α_s (β_0 = 0, ᾱ_0 = 1) and the ancestral posterior std
      √(β_t (1 − ᾱ_{t−1})/(1 − ᾱ_t)) (DiffCSP ``BetaScheduler``): lattice, Gaussian types and D3PM.
    - σ_t geometric from ``sigma_begin`` to ``sigma_end`` (σ_0 = 0) and λ_t = E‖score‖² (λ_0 = 1) for the coordinates
      (DiffCSP ``SigmaScheduler``; λ by quadrature, `wrapped_normal_score_norm`).

    With a ``grid`` τ_0 = 0 < τ_1 < … < τ_S = T (`strided`), the schedules are those of the sub-grid: step i has
    ᾱ_{τ_i}, σ_{τ_i} and λ_{τ_i} of the full grid and α_i = ᾱ_{τ_i}/ᾱ_{τ_{i−1}}, so every process's one-step formulas
    take the strided step τ_i → τ_{i−1} exactly (the respacing of Nichol & Dhariwal 2021, arXiv 2102.09672, §4);
    ``grid[i]`` is the full-grid time the network is conditioned on.

    Buffers are not saved with a state dict: they follow from the config.
    """

    def __init__(self, config: CrystalDiffusionConfig | None = None, grid: Tensor | None = None) -> None:
        super().__init__()
        self.config = config = config or CrystalDiffusionConfig()
        grid = torch.arange(config.timesteps + 1) if grid is None else torch.as_tensor(grid, dtype=torch.long)
        if grid.ndim != 1 or len(grid) < 2 or grid[0] != 0 or grid[-1] != config.timesteps or (grid.diff() <= 0).any():
            raise ValueError(f"grid must increase strictly from 0 to {config.timesteps}")
        self.timesteps = len(grid) - 1
        full_betas = cosine_betas(config.timesteps, config.cosine_offset, config.beta_min, config.beta_max)
        alphas_cumprod = torch.cumprod(F.pad(1 - full_betas, (1, 0), value=1.0), 0)[grid]
        alphas = alphas_cumprod / F.pad(alphas_cumprod[:-1], (1, 0), value=1.0)
        betas = 1 - alphas
        posterior_var = torch.zeros_like(betas)
        posterior_var[1:] = betas[1:] * (1 - alphas_cumprod[:-1]) / (1 - alphas_cumprod[1:])
        sigmas = torch.exp(torch.linspace(math.log(config.sigma_begin), math.log(config.sigma_end), config.timesteps,
                                          dtype=torch.float64))[grid[1:] - 1]  # fmt: skip
        score_norms = wrapped_normal_score_norm(sigmas, config.wrapped_images)
        for name, values in (("betas", betas), ("alphas", alphas), ("alphas_cumprod", alphas_cumprod),
                             ("posterior_std", posterior_var.sqrt()), ("sigmas", F.pad(sigmas, (1, 0))),
                             ("score_norms", F.pad(score_norms, (1, 0), value=1.0)), ("grid", grid)):  # fmt: skip
            self.register_buffer(name, values, persistent=False)

    def strided(self, steps: int) -> DiffusionSchedules:
        """The schedules on ``steps`` of the T steps, τ_i = round(1 + (i − 1)(T − 1)/(S − 1)) for i = 1..S (τ_1 = 1,
        τ_S = T; S = 1: τ_1 = T), on this module's device; ``steps`` = T gives the full grid."""
        timesteps = self.config.timesteps
        if not 1 <= steps <= timesteps:
            raise ValueError(f"steps must lie in [1, {timesteps}], got {steps}")
        points = torch.linspace(1, timesteps, steps, dtype=torch.float64) if steps > 1 else torch.tensor([timesteps])
        grid = F.pad(points.round().long(), (1, 0))
        return DiffusionSchedules(self.config, grid).to(self.betas.device)

    def sample_timesteps(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` steps drawn uniformly from 1..T (int64, on the buffers' device)."""
        return torch.randint(1, self.timesteps + 1, (n,), generator=generator, device=self.betas.device)

    def at(self, values: Tensor, t: Tensor, like: Tensor, previous: bool = False) -> Tensor:
        """``values[t]`` (``values[t − 1]`` if ``previous``) in ``like``'s dtype, shaped to broadcast against ``like``,
        whose leading dims are ``t``'s. ``t`` holds steps in 1..T, one per leading index of ``like`` (() for all alike).
        """
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise ValueError(f"t must be an integer tensor of steps, got {t.dtype}")
        if t.dim() > like.dim() or t.shape != like.shape[: t.dim()]:
            raise ValueError(f"t must have shape () or a prefix of {tuple(like.shape)}, got {tuple(t.shape)}")
        if t.numel() and (t.min() < 1 or t.max() > self.timesteps):
            raise ValueError(f"t must lie in [1, {self.timesteps}], got values in [{t.min()}, {t.max()}]")
        return _expand(values[t - int(previous)].to(like.dtype), like)


def _expand(per_leading: Tensor, like: Tensor) -> Tensor:
    """``per_leading`` (the leading dims of ``like``) with trailing unit dims, to broadcast against ``like``."""
    return per_leading.reshape(*per_leading.shape, *[1] * (like.dim() - per_leading.dim()))


def _standard_normal(like: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)


def constrain(x: Tensor, mask: Tensor | None, offset: Tensor | None = None) -> Tensor:
    """m⊙x + b: the crystal-family constraint of SymmCD's lattice k (``mask_ks``); the identity when ``mask`` is None."""
    if mask is None:
        if offset is not None:
            raise ValueError("offset needs a mask")
        return x
    if mask.shape != x.shape or (offset is not None and offset.shape != x.shape):
        got = None if offset is None else tuple(offset.shape)
        raise ValueError(f"mask and offset must have shape {tuple(x.shape)}, got {tuple(mask.shape)} and {got}")
    constrained = mask.to(x.dtype) * x
    return constrained if offset is None else constrained + offset.to(x.dtype)


class GaussianDDPM(nn.Module):
    """DDPM on a real vector with ε-prediction (Ho et al. 2020, arXiv 2006.11239, eqs. 4, 11, 14; Alg. 2).

    The lattice of both models: DiffCSP's (B, 3, 3) L (``diffusion_w_type.py``) and SymmCD's (B, 6) k under the
    crystal-family mask m and offset b (``discrete_diffusion_w_site_symm.py``, ``use_ks``), which is re-applied after
    every step. DiffCSP's atom types use the same process on the one-hot vector (decoded by argmax).
    """

    def __init__(self, schedules: DiffusionSchedules) -> None:
        super().__init__()
        self.schedules = schedules

    def noised(self, x0: Tensor, t: Tensor, noise: Tensor, mask: Tensor | None = None,
               offset: Tensor | None = None) -> Tensor:  # fmt: skip
        """x_t = m⊙(√ᾱ_t x₀ + √(1 − ᾱ_t) ε) + b."""
        if noise.shape != x0.shape:
            raise ValueError(f"noise must have shape {tuple(x0.shape)}, got {tuple(noise.shape)}")
        alpha_bar = self.schedules.at(self.schedules.alphas_cumprod, t, x0)
        return constrain(alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise, mask, offset)

    @staticmethod
    def loss(predicted_noise: Tensor, noise: Tensor, mask: Tensor | None = None) -> Tensor:
        """mean ‖ε̂ − m⊙ε‖² over every entry, masked ones included (their target is 0), as SymmCD's lattice loss."""
        if predicted_noise.shape != noise.shape:
            raise ValueError(f"predicted_noise must have shape {tuple(noise.shape)}, got {tuple(predicted_noise.shape)}")
        return F.mse_loss(predicted_noise, constrain(noise, mask))

    def reverse_step(self, x_t: Tensor, predicted_noise: Tensor, t: Tensor, mask: Tensor | None = None,
                     offset: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:  # fmt: skip
        """x_{t−1} = m⊙[(x_t − β_t/√(1 − ᾱ_t) ε̂)/√α_t + σ̃_t z] + b with the posterior std σ̃_t (0 at t = 1)."""
        if predicted_noise.shape != x_t.shape:
            raise ValueError(f"predicted_noise must have shape {tuple(x_t.shape)}, got {tuple(predicted_noise.shape)}")
        schedules = self.schedules
        alpha = schedules.at(schedules.alphas, t, x_t)
        alpha_bar = schedules.at(schedules.alphas_cumprod, t, x_t)
        mean = (x_t - (1 - alpha) / (1 - alpha_bar).sqrt() * predicted_noise) / alpha.sqrt()
        x = mean + schedules.at(schedules.posterior_std, t, x_t) * _standard_normal(x_t, generator)
        return constrain(x, mask, offset)


class WrappedNormalDiffusion(nn.Module):
    """Score-based diffusion of fractional coordinates on the torus [0, 1)^d (DiffCSP, arXiv 2309.04475).

    Forward x_t = (x₀ + σ_t ε) mod 1; the network regresses τ = score(σ_t ε; σ_t)/√λ_t, so its target has unit
    second moment at every t; sampling is predictor-corrector (DiffCSP ``CSPDiffusion.sample``).
    """

    def __init__(self, schedules: DiffusionSchedules) -> None:
        super().__init__()
        self.schedules = schedules

    def noised(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t = (x₀ + σ_t ε) mod 1."""
        if noise.shape != x0.shape:
            raise ValueError(f"noise must have shape {tuple(x0.shape)}, got {tuple(noise.shape)}")
        return (x0 + self.schedules.at(self.schedules.sigmas, t, x0) * noise) % 1.0

    def target(self, t: Tensor, noise: Tensor) -> Tensor:
        """τ = ∇ log N_w(σ_t ε; σ_t)/√λ_t, the score of x_t given x₀ scaled to unit second moment."""
        schedules = self.schedules
        sigma = schedules.at(schedules.sigmas, t, noise)
        score = wrapped_normal_score(sigma * noise, sigma, schedules.config.wrapped_images)
        return score / schedules.at(schedules.score_norms, t, noise).sqrt()

    def loss(self, predicted: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """mean ‖ŝ − τ‖² over every entry."""
        if predicted.shape != noise.shape:
            raise ValueError(f"predicted must have shape {tuple(noise.shape)}, got {tuple(predicted.shape)}")
        return F.mse_loss(predicted, self.target(t, noise))

    def corrector_step(self, x: Tensor, predicted: Tensor, t: Tensor, step_lr: float,
                       generator: torch.Generator | None = None) -> Tensor:  # fmt: skip
        """One Langevin step x + γ √λ_t ŝ + √(2γ) z, γ = step_lr (σ_t/σ_1)², without noise at t = 1 (as DiffCSP)."""
        if step_lr <= 0:
            raise ValueError(f"step_lr must be positive, got {step_lr}")
        schedules = self.schedules
        sigma = schedules.at(schedules.sigmas, t, x)
        step = step_lr * (sigma / schedules.config.sigma_begin) ** 2
        noise_scale = (2 * step).sqrt() * _expand((t > 1).to(x.dtype), x)
        return self._move(x, predicted, t, step, noise_scale, generator)

    def predictor_step(self, x: Tensor, predicted: Tensor, t: Tensor,
                       generator: torch.Generator | None = None) -> Tensor:  # fmt: skip
        """The reverse-SDE step from σ_t to σ_{t−1}: x + (σ_t² − σ_{t−1}²) √λ_t ŝ + √(σ_{t−1}² (σ_t² − σ_{t−1}²)/σ_t²) z."""
        schedules = self.schedules
        sigma_sq = schedules.at(schedules.sigmas, t, x) ** 2
        previous_sq = schedules.at(schedules.sigmas, t, x, previous=True) ** 2
        step = sigma_sq - previous_sq
        return self._move(x, predicted, t, step, (previous_sq * step / sigma_sq).sqrt(), generator)

    def _move(self, x: Tensor, predicted: Tensor, t: Tensor, step: Tensor, noise_scale: Tensor,
              generator: torch.Generator | None) -> Tensor:  # fmt: skip
        """(x + step √λ_t ŝ + noise_scale z) mod 1."""
        if predicted.shape != x.shape:
            raise ValueError(f"predicted must have shape {tuple(x.shape)}, got {tuple(predicted.shape)}")
        score = predicted * self.schedules.at(self.schedules.score_norms, t, x).sqrt()
        return (x + step * score + noise_scale * _standard_normal(x, generator)) % 1.0


def absorbing_prior(num_classes: int) -> Tensor:
    """The prior of D3PM's absorbing ('masked') variant over ``num_classes`` data classes plus the absorbing token,
    which comes last: (num_classes + 1,) one-hot on it (Austin et al., arXiv 2107.03006, §3.1; SymmCD
    ``DiscreteNoiseMasked``: 95 type and 14 site-symmetry classes)."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    return F.one_hot(torch.tensor(num_classes), num_classes + 1).to(torch.get_default_dtype())


def absorbing_x0_logits(x0_logits: Tensor, z_t: Tensor) -> Tensor:
    """p̂(x₀|z_t) of the absorbing variant (last class = token): x₀ is never the token, and a variable already revealed
    in z_t is its own x₀ (SymmCD ``sub_predictions``, with the token excluded from the softmax rather than zeroed
    after it). Apply to the network's logits before `CategoricalD3PM.loss` and `CategoricalD3PM.reverse_step`."""
    if z_t.shape != x0_logits.shape[:-1]:
        raise ValueError(f"z_t must have shape {tuple(x0_logits.shape[:-1])}, got {tuple(z_t.shape)}")
    token = x0_logits.shape[-1] - 1
    logits = x0_logits.clone()
    logits[..., token] = -math.inf
    revealed = torch.full_like(logits, -math.inf).scatter(-1, z_t.unsqueeze(-1), 0.0)
    return torch.where((z_t != token).unsqueeze(-1), revealed, logits)


def sample_categorical(probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One class index per row of ``probs`` (..., K) → (...,) int64."""
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])


def _toward_prior(keep: Tensor, onehot: Tensor, prior: Tensor) -> Tensor:
    """keep·onehot + (1 − keep)·prior: a row (or a column) of α I + (1 − α) 1 mᵀ."""
    return keep * onehot + (1 - keep) * prior


class CategoricalD3PM(nn.Module):
    """D3PM for categorical variables with the x₀-parameterisation (Austin et al., NeurIPS 2021, arXiv 2107.03006, §3).

    Transitions Q_t = α_t I + (1 − α_t) 1 mᵀ toward a prior m (the training marginal, as DiGress's marginal
    transitions, Vignac et al., ICLR 2023, arXiv 2209.14734; `absorbing_prior` for the masked variant), so
    Q̄_t = Q_1⋯Q_t = ᾱ_t I + (1 − ᾱ_t) 1 mᵀ and z_t ~ Cat(x₀ Q̄_t) (SymmCD ``DiscreteNoise``). α_t are the cosine
    schedule's (`DiffusionSchedules`).

    Variables are class indices of any shape (...,): SymmCD's atom types (N,) with one prior (K,), and its site
    symmetry (N, 15) with a prior per variable (N, 15, 13) gathered from the per-group, per-row marginals. ``prior``
    broadcasts against (..., K). The network predicts logits of p̂(x₀|z_t), trained by cross-entropy (not the
    variational bound, as SymmCD ``discrete_loss``); the reverse step is
    p(z_{t−1}|z_t) = Σ_{x₀} p̂(x₀|z_t) q(z_{t−1}|z_t, x₀) (SymmCD ``sample_zs_from_zt_and_pred``, as DiGress; Austin
    et al., §3.3, weight each x₀ by q(z_t|x₀) as well, which this step leaves out as the reference does).
    """

    def __init__(self, schedules: DiffusionSchedules) -> None:
        super().__init__()
        self.schedules = schedules

    def transition_matrix(self, t: int, prior: Tensor, cumulative: bool = False) -> Tensor:
        """The explicit Q_t (Q̄_t if ``cumulative``) of shape (..., K, K) for a prior (..., K); row i is q(·|i). The
        processes use its closed form; this is the definition they are checked against."""
        if not 0 <= t <= self.schedules.timesteps:
            raise ValueError(f"t must lie in [0, {self.schedules.timesteps}], got {t}")
        keep = (self.schedules.alphas_cumprod if cumulative else self.schedules.alphas)[t].to(prior.dtype)
        identity = torch.eye(prior.shape[-1], dtype=prior.dtype, device=prior.device)
        return _toward_prior(keep, identity, prior.unsqueeze(-2))

    def marginal_probs(self, x0: Tensor, t: Tensor, prior: Tensor) -> Tensor:
        """q(z_t|x₀) = x₀ Q̄_t = ᾱ_t onehot(x₀) + (1 − ᾱ_t) m, shape (..., K)."""
        onehot = self._onehot(x0, prior)
        return _toward_prior(self.schedules.at(self.schedules.alphas_cumprod, t, onehot), onehot, prior)

    def noised(self, x0: Tensor, t: Tensor, prior: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """z_t ~ Cat(x₀ Q̄_t), class indices of ``x0``'s shape."""
        return sample_categorical(self.marginal_probs(x0, t, prior), generator)

    @staticmethod
    def loss(x0_logits: Tensor, x0: Tensor) -> Tensor:
        """Cross-entropy of p̂(x₀|z_t), averaged over every variable (for site symmetry: over atoms and the 15 rows)."""
        if x0.shape != x0_logits.shape[:-1]:
            raise ValueError(f"x0 must have shape {tuple(x0_logits.shape[:-1])}, got {tuple(x0.shape)}")
        return F.cross_entropy(x0_logits.reshape(-1, x0_logits.shape[-1]), x0.reshape(-1))

    def reverse_probs(self, x0_logits: Tensor, z_t: Tensor, t: Tensor, prior: Tensor) -> Tensor:
        """p(z_{t−1}|z_t) = Σ_{x₀} p̂(x₀|z_t) q(z_{t−1}|z_t, x₀), shape (..., K).

        With z_t = j, Bayes gives q(z_{t−1} = k|z_t, x₀) = (Q_t)_{kj} (Q̄_{t−1})_{x₀k} / (Q̄_t)_{x₀j}; summing over x₀ with
        w(x₀) = p̂(x₀)/(Q̄_t)_{x₀j} leaves (Q_t)_{kj} [ᾱ_{t−1} w_k + (1 − ᾱ_{t−1}) m_k Σw], O(K) per variable. Log-space
        weights (a one-hot ``x0_logits``, −inf elsewhere, gives the posterior of that x₀) and a final normalisation keep
        it stable; x₀ with (Q̄_t)_{x₀j} = 0 cannot have produced z_t and get no weight.
        """
        if z_t.shape != x0_logits.shape[:-1] or x0_logits.shape[-1] != prior.shape[-1]:
            raise ValueError(f"need z_t of shape {tuple(x0_logits.shape[:-1])} and {prior.shape[-1]} logits per variable, "
                             f"got {tuple(z_t.shape)} and {x0_logits.shape[-1]}")  # fmt: skip
        logits = x0_logits.to(torch.float64)
        onehot = self._onehot(z_t, prior).to(torch.float64)
        prior = prior.to(torch.float64).expand_as(logits)
        prior_at_z = prior.gather(-1, z_t.unsqueeze(-1))
        schedules = self.schedules
        reached = _toward_prior(schedules.at(schedules.alphas_cumprod, t, logits), onehot, prior_at_z)  # (Q̄_t)_{x₀j}
        log_weights = torch.where(reached > 0, logits.log_softmax(-1) - reached.log(), -math.inf)
        weights = log_weights.softmax(-1)
        keep_before = schedules.at(schedules.alphas_cumprod, t, logits, previous=True)
        from_before = _toward_prior(keep_before, weights, prior)  # Σ_{x₀} w(x₀) (Q̄_{t−1})_{x₀k}, as Σ w = 1
        probs = _toward_prior(schedules.at(schedules.alphas, t, logits), onehot, prior_at_z) * from_before
        return (probs / probs.sum(-1, keepdim=True)).to(x0_logits.dtype)

    def reverse_step(self, x0_logits: Tensor, z_t: Tensor, t: Tensor, prior: Tensor,
                     generator: torch.Generator | None = None) -> Tensor:  # fmt: skip
        """z_{t−1} ~ p(z_{t−1}|z_t) (`reverse_probs`), class indices of ``z_t``'s shape."""
        return sample_categorical(self.reverse_probs(x0_logits, z_t, t, prior), generator)

    @staticmethod
    def _onehot(classes: Tensor, prior: Tensor) -> Tensor:
        """onehot(classes) in ``prior``'s dtype, after checking the classes and that ``prior`` is a distribution."""
        num_classes = prior.shape[-1]
        if classes.dtype != torch.long:
            raise ValueError(f"classes must be int64 indices, got {classes.dtype}")
        if classes.numel() and (classes.min() < 0 or classes.max() >= num_classes):
            raise ValueError(f"classes must lie in [0, {num_classes}) for a prior over {num_classes} classes")
        if (prior < 0).any() or not torch.allclose(prior.sum(-1), torch.ones((), dtype=prior.dtype), atol=1e-5):
            raise ValueError("prior must be non-negative and sum to 1 over its last dim")
        return F.one_hot(classes, num_classes).to(prior.dtype)
