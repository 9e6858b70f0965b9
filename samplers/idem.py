"""iDEM: Iterated Denoising Energy Matching (Akhound-Sadegh et al., ICML 2024), a diffusion sampler trained from an
energy alone.

Inner loop: regress the network score s_θ(x_t, t) onto the Monte-Carlo target of
:func:`~samplers.estimators.mc_score_estimate` at points x_t = α(t) x₀ + σ(t) ε, with x₀ from a replay buffer of the
sampler's own samples (pDEM: from the prior). Outer loop: integrate the reverse SDE with the network score and push
the new samples into the buffer. Defaults follow the reference configs (jarridrb/DEM
``configs/experiment/{gmm,dw4,lj13,lj55}_idem.yaml`` and ``configs/model/dem.yaml``) per target.

The unit of ``learn(total_timesteps)`` is one gradient step, as in d3rlpy's offline ``fit``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor, nn

from core.config import CheckedConfig
from equivariant.egnn import EGNNScore
from equivariant.geometry import remove_com
from samplers.base import BaseSampler, Preset, make_ema
from samplers.energies import Energy, energy_and_grad
from samplers.estimators import clip_norm, mc_score_estimate
from samplers.integrators import euler_maruyama
from samplers.networks import TimeMLPScore
from samplers.schedules import GeometricVESchedule


@dataclass(frozen=True)
class IDEMConfig(CheckedConfig):
    """Hyperparameters of iDEM; `IDEM_PRESETS` holds the reference values per target."""

    sigma_min: float = 1e-5  # geometric VE schedule: g(t) = σ_min r^t √(2 ln r), r = σ_max / σ_min
    sigma_max: float = 1.0  # prior std is √(σ_max² − σ_min²) (in network coordinates, see data_scale)
    num_mc_samples: int = 500  # K, Monte-Carlo proposals per training point (cost: batch_size × K energy+grad evals)
    max_score_norm: float | None = 70.0  # clip of the MC target (per particle for particle systems); None: no clip
    richardson: bool = False  # use 2 S_K − S_{K/2} (bias reduction; off in the reference configs)
    loss_weighting: Literal["h", "none"] = "h"  # λ(t) = h(t) + 1e-3 ("h", GMM) or 1 ("none", molecules)
    batch_size: int = 512  # training points per gradient step
    inner_steps: int = 100  # gradient steps between two buffer refreshes (the reference "epoch")
    samples_per_refresh: int = 1000  # samples generated and pushed to the buffer per refresh
    buffer_size: int = 10_000  # FIFO capacity of the sample buffer
    use_buffer: bool = True  # False: pDEM, x₀ drawn from the prior instead of the buffer
    init_samples: int = 1024  # samples in the buffer before training starts
    init_from: Literal["prior", "mc_score"] = "prior"  # initial samples: prior draws or an SDE run on the MC score
    integration_steps: int = 1000  # Euler–Maruyama steps per sampling run (t: 1 → 0)
    diffusion_scale: float = 1.0  # η on the SDE noise; < 1 is a colder, biased sampler (LJ-13 0.9, LJ-55 0.5)
    negative_time_steps: int = 0  # extra steps x ← x + dt·clip(−∇E(x)) after sampling (LJ-55: 10)
    negative_time_dt: float = 1e-4  # step size of the negative-time steps
    data_scale: float = 1.0  # the network works in x / data_scale (GMM-40: 50, so the box [−50, 50]² maps to [−1, 1]²)
    network: Literal["mlp", "egnn"] = "mlp"  # score network: TimeMLPScore or EGNNScore (particle systems)
    hidden_dim: int = 128  # network width
    n_layers: int = 3  # MLP residual blocks or EGNN layers
    learning_rate: float = 1e-3  # Adam learning rate
    weight_decay: float = 0.0  # Adam weight decay
    grad_clip: float | None = 0.5  # gradient-norm clip of the network update (Lightning's gradient_clip_val)
    lr_plateau_patience: int | None = 10  # ReduceLROnPlateau (factor 0.1) on the per-refresh mean loss; None: off
    ema_decay: float | None = None  # exponential moving average of the weights used for sampling; None: off
    chunk_size: int | None = 262_144  # at most this many energy evaluations per autograd call (bounds memory)
    eval_freq: int = 1000  # gradient steps between evaluations against the reference (0: never)
    eval_samples: int = 1000  # samples drawn per evaluation
    log_interval: int = 100  # gradient steps between logger dumps


#: Reference settings per benchmark target (jarridrb/DEM ``configs/experiment/*_idem.yaml`` and
#: ``configs/model/dem.yaml``; GMM-40 in normalised coordinates).
IDEM_PRESETS: dict[str, IDEMConfig] = {
    "GMM40": IDEMConfig(
        sigma_min=1e-5, sigma_max=1.0, num_mc_samples=500, max_score_norm=70.0, loss_weighting="h", data_scale=50.0,
        init_from="mc_score", learning_rate=5e-4, lr_plateau_patience=None, network="mlp", n_layers=3,
    ),
    "DW4": IDEMConfig(
        sigma_min=1e-5, sigma_max=3.0, num_mc_samples=1000, max_score_norm=20.0, loss_weighting="none",
        network="egnn", n_layers=3,
    ),
    "LJ13": IDEMConfig(
        sigma_min=0.01, sigma_max=2.0, num_mc_samples=1000, max_score_norm=20.0, loss_weighting="none",
        diffusion_scale=0.9, network="egnn", n_layers=5,
    ),
    "LJ55": IDEMConfig(
        sigma_min=0.5, sigma_max=4.0, num_mc_samples=100, max_score_norm=20.0, loss_weighting="none",
        diffusion_scale=0.5, batch_size=128, samples_per_refresh=128, negative_time_steps=10, network="egnn",
        n_layers=5, eval_samples=128,
    ),
}  # fmt: skip


#: The CPU preset: changes to `IDEM_PRESETS` applied when the sampler runs on a CPU (and not set by the caller). The
#: reference uses K = 500-1000 MC samples and 1000 SDE steps, which on a CPU spend hours per target on the targets
#: and the buffer refreshes; these trade them for more gradient steps (benchmarks/idem.py's CPU profile, with its
#: measurements in docs/benchmarks.md).
IDEM_CPU_OVERRIDES: dict[str, dict[str, Any]] = {
    "GMM40": {"num_mc_samples": 100, "integration_steps": 500},
    "DW4": {"num_mc_samples": 200, "integration_steps": 200, "samples_per_refresh": 500},
    "LJ13": {"num_mc_samples": 100, "batch_size": 128, "integration_steps": 100, "samples_per_refresh": 200,
             "hidden_dim": 64, "n_layers": 3},
}  # fmt: skip


class ScaledEnergy(Energy):
    """The energy seen in network coordinates z = x / scale: E_z(z) = E(scale · z) (the Jacobian is a constant)."""

    def __init__(self, energy: Energy, scale: float) -> None:
        super().__init__(energy.dim, energy.n_particles, energy.spatial_dim)
        self.base = energy
        self.scale = scale

    def _energy(self, x: Tensor, context: Tensor | None) -> Tensor:
        return self.base.energy(x * self.scale)


class SampleBuffer:
    """FIFO buffer of samples (the reference `SimpleBuffer`), sampled uniformly with replacement."""

    def __init__(self, capacity: int, dim: int, device: torch.device) -> None:
        self.data = torch.zeros(capacity, dim, device=device)
        self.size = 0
        self.pointer = 0

    def add(self, x: Tensor) -> None:
        """Append rows, overwriting the oldest once full."""
        x = x.detach().to(self.data)[-len(self.data) :]
        index = (self.pointer + torch.arange(len(x), device=self.data.device)) % len(self.data)
        self.data[index] = x
        self.pointer = int((self.pointer + len(x)) % len(self.data))
        self.size = min(self.size + len(x), len(self.data))

    def sample(self, n: int) -> Tensor:
        """``n`` rows drawn uniformly with replacement."""
        if self.size == 0:
            raise RuntimeError("the sample buffer is empty")
        return self.data[torch.randint(self.size, (n,), device=self.data.device)]


class IDEM(BaseSampler):
    """iDEM sampler with an SB3-like interface: ``IDEM("DW4").learn(10_000)``, ``sample``, ``save``/``load``.

    :param target: A registered energy name (GMM40, DW4, LJ13, LJ55) or an `Energy`
    :param seed: Seeds torch, numpy and random; None leaves them alone
    :param device: "auto", "cpu", "cuda", ...
    :param preset: "reference" (`IDEM_PRESETS`), "cpu" (with `IDEM_CPU_OVERRIDES`) or "auto" (by device)
    :param hyperparams: Fields of `IDEMConfig` overriding the preset
    """

    config_class: ClassVar[type] = IDEMConfig
    presets: ClassVar[dict[str, IDEMConfig]] = IDEM_PRESETS
    cpu_overrides: ClassVar[dict[str, dict[str, Any]]] = IDEM_CPU_OVERRIDES
    config: IDEMConfig

    def __init__(
        self, target: str | Energy, seed: int | None = None, device: str | torch.device = "auto", preset: Preset = "auto",
        **hyperparams: Any,
    ) -> None:  # fmt: skip
        super().__init__(target, seed, device, preset, **hyperparams)
        cfg, energy = self.config, self.target
        self.energy = ScaledEnergy(energy, cfg.data_scale).to(self.device) if cfg.data_scale != 1.0 else energy
        self.is_particle_system = energy.is_particle_system
        self.schedule = GeometricVESchedule(cfg.sigma_min, cfg.sigma_max)
        self.network = self._build_network().to(self.device)
        self.ema = make_ema(self.network, cfg.ema_decay)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        self.lr_scheduler = (
            torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, factor=0.1, patience=cfg.lr_plateau_patience)
            if cfg.lr_plateau_patience is not None
            else None
        )
        self.buffer = SampleBuffer(cfg.buffer_size, energy.dim, self.device)
        self._refresh_losses: list[float] = []

    @property
    def display_name(self) -> str:
        return "iDEM"

    @property
    def selection_metric(self) -> str:
        return "energy_w2" if self.is_particle_system else "x_w2_unaligned"

    # ----------------------------------------------------------------------------------------------------------------
    def _build_network(self) -> nn.Module:
        cfg, energy = self.config, self.energy
        if cfg.network == "egnn":
            if not energy.is_particle_system:
                raise ValueError(f"network='egnn' needs a particle system; {self.target_name} has one particle")
            return EGNNScore(energy.n_particles, energy.spatial_dim, hidden_dim=cfg.hidden_dim, n_layers=cfg.n_layers)
        return TimeMLPScore(energy.dim, hidden_dim=cfg.hidden_dim, n_blocks=cfg.n_layers)

    def _project(self, x: Tensor) -> Tensor:
        return remove_com(x, self.energy.n_particles, self.energy.spatial_dim) if self.is_particle_system else x

    def _prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self._project(self.schedule.sample_prior(n, self.energy.dim, generator, device=self.device))

    def _mc_target(self, x_t: Tensor, t: Tensor) -> Tensor:
        cfg = self.config
        self.energy_evaluations += len(x_t) * cfg.num_mc_samples * (3 if cfg.richardson else 2) // 2
        return mc_score_estimate(
            self.energy, x_t, t, self.schedule, cfg.num_mc_samples, max_norm=cfg.max_score_norm,
            richardson=cfg.richardson, chunk_size=cfg.chunk_size,
        )  # fmt: skip

    # ----------------------------------------------------------------------------------------------------------------
    def _sample_chunk(self, network: nn.Module, n: int, generator: torch.Generator | None) -> Tensor:
        cfg = self.config
        x = euler_maruyama(
            network, self._prior(n, generator), self.schedule, cfg.integration_steps, diffusion_scale=cfg.diffusion_scale,
            projection=self._project if self.is_particle_system else None, generator=generator,
        )  # fmt: skip
        return self._negative_time(x)

    def _negative_time(self, x: Tensor) -> Tensor:
        """LJ-55's extra gradient steps after t = 0 (clip on the full vector, as the reference)."""
        for _ in range(self.config.negative_time_steps):
            _, grad = energy_and_grad(self.energy, x)
            self.energy_evaluations += len(x)
            x = self._project(x + self.config.negative_time_dt * clip_norm(-grad, self.config.max_score_norm or math.inf))
        return x

    def _initial_samples(self) -> Tensor:
        """Fill the buffer before training: prior draws, or (GMM) an SDE run on the clipped MC score itself."""
        cfg = self.config
        if cfg.init_from == "prior":
            return self._prior(cfg.init_samples)
        score = lambda x, t, context: self._mc_target(x, t)  # noqa: E731
        with torch.no_grad():
            x = euler_maruyama(
                score, self._prior(cfg.init_samples), self.schedule, cfg.integration_steps,
                diffusion_scale=cfg.diffusion_scale, projection=self._project if self.is_particle_system else None,
            )  # fmt: skip
        return x

    # ----------------------------------------------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        """One gradient step of the energy-matching regression; returns loss and target statistics."""
        cfg = self.config
        x0 = self.buffer.sample(cfg.batch_size) if cfg.use_buffer else self._prior(cfg.batch_size)
        t = torch.rand(cfg.batch_size, device=self.device)
        x_t = self._project(self.schedule.noised(x0, t, torch.randn_like(x0)))
        target = self._mc_target(x_t, t)
        prediction = self.network(x_t, t)
        weight = self.schedule.score_loss_weight(t) if cfg.loss_weighting == "h" else torch.ones_like(t)
        loss = (weight * (prediction - target).pow(2).mean(-1)).mean()
        self._finite_or_raise(
            loss, "the MC target or the network diverged. Try a smaller learning_rate, a max_score_norm, or more "
            "num_mc_samples.",
        )  # fmt: skip
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.network.parameters(), cfg.grad_clip or math.inf)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update_parameters(self.network)
        self.num_timesteps += 1
        return {"loss": loss.item(), "target_norm": target.norm(dim=-1).mean().item(), "grad_norm": grad_norm.item()}

    def _before_learn(self, end: int) -> None:
        if self.buffer.size == 0:
            self.buffer.add(self._initial_samples())

    def _after_step(self, step: int, stats: dict[str, float]) -> None:
        """Every ``inner_steps``: new samples into the buffer, and the plateau scheduler steps on the mean loss."""
        self._refresh_losses.append(stats["loss"])
        if step % self.config.inner_steps:
            return
        if self.config.use_buffer:
            network = self.ema.module if self.ema is not None else self.network
            with torch.no_grad():
                self.buffer.add(self._sample_chunk(network, self.config.samples_per_refresh, None))
        if self.lr_scheduler is not None and self._refresh_losses:
            self.lr_scheduler.step(float(np.mean(self._refresh_losses)))
        self._refresh_losses = []

    def _log_extras(self) -> dict[str, float]:
        return {"train/buffer_size": self.buffer.size, "time/energy_evaluations": self.energy_evaluations}

    # ----------------------------------------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return super()._state() | {
            "lr_scheduler": None if self.lr_scheduler is None else self.lr_scheduler.state_dict(),
            "buffer": {"data": self.buffer.data, "size": self.buffer.size, "pointer": self.buffer.pointer},
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        super()._load_state(state)
        if self.lr_scheduler is not None and state["lr_scheduler"] is not None:
            self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        buffer = state["buffer"]
        self.buffer.data = buffer["data"].to(self.device)
        self.buffer.size, self.buffer.pointer = buffer["size"], buffer["pointer"]


__all__ = ["IDEM", "IDEM_PRESETS", "IDEMConfig", "SampleBuffer", "ScaledEnergy"]
