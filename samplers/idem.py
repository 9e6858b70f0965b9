"""iDEM: Iterated Denoising Energy Matching (Akhound-Sadegh et al., ICML 2024), a diffusion sampler trained from an
energy alone.

Inner loop: regress the network score s_θ(x_t, t) onto the Monte-Carlo target of
:func:`~samplers.estimators.mc_score_estimate` at points x_t = α(t) x₀ + σ(t) ε, with x₀ from a replay buffer of the
sampler's own samples (pDEM: from the prior). Outer loop: integrate the reverse SDE with the network score and push
the new samples into the buffer. Defaults follow the reference configs (spec ``idem.md`` §2–§4) per target.

The unit of ``learn(total_timesteps)`` is one gradient step, as in d3rlpy's offline ``fit``.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.utils import get_device
from torch import Tensor, nn
from tqdm.auto import tqdm

from core.io import atomic_write
from equivariant.egnn import EGNNScore
from equivariant.geometry import remove_com
from samplers.energies import Energy, energy_and_grad, make_energy
from samplers.estimators import clip_norm, mc_score_estimate
from samplers.integrators import euler_maruyama
from samplers.metrics import sampler_metrics
from samplers.networks import TimeMLPScore
from samplers.schedules import GeometricVESchedule
from samplers.training import evaluate_and_log, rng_state, seed_everything, set_rng_state


@dataclass(frozen=True)
class IDEMConfig:
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


#: Reference settings per benchmark target (spec idem §2, §3; GMM-40 in normalised coordinates).
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


class IDEM:
    """iDEM sampler with an SB3-like interface: ``IDEM("DW4").learn(10_000)``, ``sample``, ``save``/``load``.

    Args:
        target: a registered energy name (GMM40, DW4, LJ13, LJ55) or an :class:`~samplers.energies.Energy`.
        seed: seeds torch, numpy and random; None leaves them alone.
        device: "auto", "cpu", "cuda", ...
        **hyperparams: fields of :class:`IDEMConfig` overriding the target's preset.
    """

    config_class: ClassVar[type] = IDEMConfig

    def __init__(self, target: str | Energy, seed: int | None = None, device: str | torch.device = "auto", **hyperparams: Any):
        self.target_name = target if isinstance(target, str) else type(target).__name__
        energy = make_energy(target) if isinstance(target, str) else target
        base = IDEM_PRESETS.get(self.target_name, IDEMConfig())
        unknown = set(hyperparams) - {f.name for f in fields(IDEMConfig)}
        if unknown:
            raise ValueError(f"unknown iDEM hyperparameters {sorted(unknown)}; see samplers.idem.IDEMConfig")
        self.config = replace(base, **hyperparams)
        self.seed = seed
        if seed is not None:
            seed_everything(seed)
        self.device = get_device(device)
        self.target = energy.to(self.device)
        self.energy = (ScaledEnergy(energy, self.config.data_scale) if self.config.data_scale != 1.0 else energy).to(
            self.device
        )
        self.is_particle_system = energy.is_particle_system
        self.schedule = GeometricVESchedule(self.config.sigma_min, self.config.sigma_max)
        self.policy = self._build_network().to(self.device)
        self.ema = (
            torch.optim.swa_utils.AveragedModel(
                self.policy, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(self.config.ema_decay)
            )
            if self.config.ema_decay is not None
            else None
        )
        self.optimizer = torch.optim.Adam(
            self.policy.parameters(), lr=self.config.learning_rate, weight_decay=self.config.weight_decay
        )
        self.lr_scheduler = (
            torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, factor=0.1, patience=self.config.lr_plateau_patience)
            if self.config.lr_plateau_patience is not None
            else None
        )
        self.buffer = SampleBuffer(self.config.buffer_size, energy.dim, self.device)
        self.num_timesteps = 0
        self.energy_evaluations = 0
        self.best_metrics: dict[str, float] = {}
        self._refresh_losses: list[float] = []
        self._reference_missing = False
        self._logger = Logger(folder=None, output_formats=[])

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

    def _prior(self, n: int) -> Tensor:
        return self._project(self.schedule.sample_prior(n, self.energy.dim, device=self.device))

    def _mc_target(self, x_t: Tensor, t: Tensor) -> Tensor:
        cfg = self.config
        self.energy_evaluations += len(x_t) * cfg.num_mc_samples * (3 if cfg.richardson else 2) // 2
        return mc_score_estimate(
            self.energy, x_t, t, self.schedule, cfg.num_mc_samples, max_norm=cfg.max_score_norm,
            richardson=cfg.richardson, chunk_size=cfg.chunk_size,
        )  # fmt: skip

    def set_logger(self, logger: Logger) -> None:
        """Use an SB3 logger (e.g. ``stable_baselines3.common.logger.configure(run_dir, ["tensorboard"])``)."""
        self._logger = logger

    @property
    def logger(self) -> Logger:
        return self._logger

    # ----------------------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, use_ema: bool = True, batch_size: int = 4096) -> Tensor:
        """Draw ``n`` samples in the target's own coordinates by integrating the reverse SDE with the network score."""
        network = self.ema.module if (use_ema and self.ema is not None) else self.policy
        network.eval()
        chunks = [self._sample_network(network, min(batch_size, n - start)) for start in range(0, n, batch_size)]
        network.train()
        return torch.cat(chunks) * self.config.data_scale

    def _sample_network(self, network: nn.Module, n: int) -> Tensor:
        cfg = self.config
        x = euler_maruyama(
            network, self._prior(n), self.schedule, cfg.integration_steps, diffusion_scale=cfg.diffusion_scale,
            projection=self._project if self.is_particle_system else None,
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
        x_t = self._project(self.schedule.alpha(t)[:, None] * x0 + self.schedule.sigma(t)[:, None] * torch.randn_like(x0))
        target = self._mc_target(x_t, t)
        prediction = self.policy(x_t, t)
        weight = self.schedule.h(t) + 1e-3 if cfg.loss_weighting == "h" else torch.ones_like(t)
        loss = (weight * (prediction - target).pow(2).mean(-1)).mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"iDEM loss is {loss.item()} at step {self.num_timesteps}: the MC target or the network diverged. "
                "Try a smaller learning_rate, a max_score_norm, or more num_mc_samples."
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.grad_clip or math.inf)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update_parameters(self.policy)
        self.num_timesteps += 1
        return {"loss": loss.item(), "target_norm": target.norm(dim=-1).mean().item(), "grad_norm": grad_norm.item()}

    def _refresh_buffer(self) -> None:
        """End of an inner loop: new samples into the buffer, and the plateau scheduler steps on the mean loss."""
        if self.config.use_buffer:
            network = self.ema.module if self.ema is not None else self.policy
            with torch.no_grad():
                self.buffer.add(self._sample_network(network, self.config.samples_per_refresh))
        if self.lr_scheduler is not None and self._refresh_losses:
            self.lr_scheduler.step(float(np.mean(self._refresh_losses)))
        self._refresh_losses = []

    def evaluate(self, samples: Tensor | None = None, reference: Tensor | None = None) -> dict[str, float]:
        """Metrics of ``samples`` (default: ``eval_samples`` fresh ones) against ``reference`` (default: as many rows
        of the target's val split, or exact draws where the target can sample)."""
        samples = (self.sample(self.config.eval_samples) if samples is None else samples).cpu().double()
        reference = self.reference_samples(len(samples)) if reference is None else reference
        energy = copy.deepcopy(self.target).cpu().double()  # float64 energies, as the reference statistics
        return sampler_metrics(
            samples, reference.double(), energy_fn=energy.energy, n_particles=energy.n_particles,
            spatial_dim=energy.spatial_dim,
        )  # fmt: skip

    def reference_samples(self, n: int, seed: int = 12345) -> Tensor:
        """``n`` reference samples on the CPU: exact draws where the target can sample, else ``n`` random rows of its
        val split (an error if it has fewer). ``seed`` fixes the draw, so repeated evaluations compare alike."""
        target = copy.deepcopy(self.target).cpu()
        generator = torch.Generator().manual_seed(seed)
        if hasattr(target, "sample"):
            return target.sample(n, generator=generator)
        data = target.reference_samples("val")
        if len(data) < n:
            raise ValueError(f"{self.target_name} val split has {len(data)} rows, fewer than the {n} requested")
        return data[torch.randperm(len(data), generator=generator)[:n]]

    def learn(
        self, total_timesteps: int, progress_bar: bool = False, reset_num_timesteps: bool = True,
        checkpoint_dir: str | Path | None = None, checkpoint_freq: int = 0,
    ) -> IDEM:  # fmt: skip
        """Run ``total_timesteps`` gradient steps, refreshing the buffer every ``inner_steps``.

        Logs ``train/loss``, ``train/target_norm``, ``train/learning_rate``, ``time/fps`` (gradient steps/s),
        ``time/energy_evaluations`` and, every ``eval_freq`` steps, ``eval/*`` metrics. With ``checkpoint_dir``,
        ``checkpoint_freq`` > 0 writes ``iter_<steps>.pt`` periodically and ``best.pt`` on the best ``eval/energy_w2``
        (``eval/x_w2_unaligned`` for non-particle targets).
        """
        cfg = self.config
        if reset_num_timesteps:
            self.num_timesteps = 0
        if self.buffer.size == 0:
            self.buffer.add(self._initial_samples())
        end = self.num_timesteps + total_timesteps
        start_time, start_step = time.perf_counter(), self.num_timesteps
        bar = tqdm(total=total_timesteps, disable=not progress_bar, desc="iDEM")
        while self.num_timesteps < end:
            stats = self.train_step()
            self._refresh_losses.append(stats["loss"])
            bar.update(1)
            step = self.num_timesteps
            if step % cfg.inner_steps == 0:
                self._refresh_buffer()
            if step % cfg.log_interval == 0 or step == end:
                fps = (step - start_step) / max(time.perf_counter() - start_time, 1e-9)
                for key, value in stats.items():
                    self.logger.record(f"train/{key}", value)
                self.logger.record("train/learning_rate", self.optimizer.param_groups[0]["lr"])
                self.logger.record("train/buffer_size", self.buffer.size)
                self.logger.record("time/fps", fps)
                self.logger.record("time/energy_evaluations", self.energy_evaluations)
                self.logger.dump(step)
            if cfg.eval_freq and not self._reference_missing and (step % cfg.eval_freq == 0 or step == end):
                evaluate_and_log(self, step, checkpoint_dir, "energy_w2" if self.is_particle_system else "x_w2_unaligned")
            if checkpoint_dir is not None and checkpoint_freq and step % checkpoint_freq == 0:
                self.save(Path(checkpoint_dir) / f"iter_{step}.pt")
        bar.close()
        return self

    # ----------------------------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Atomically write everything needed to resume: config, networks, optimiser, buffer, counters, RNG states."""
        state = {
            "target": self.target_name,
            "config": asdict(self.config),
            "seed": self.seed,
            "policy": self.policy.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": None if self.lr_scheduler is None else self.lr_scheduler.state_dict(),
            "buffer": {"data": self.buffer.data, "size": self.buffer.size, "pointer": self.buffer.pointer},
            "num_timesteps": self.num_timesteps,
            "energy_evaluations": self.energy_evaluations,
            "best_metrics": self.best_metrics,
            "rng": rng_state(),
        }
        return atomic_write(path, lambda tmp: torch.save(state, tmp))

    @classmethod
    def load(cls, path: str | Path, target: Energy | None = None, device: str | torch.device = "auto") -> IDEM:
        """Restore a saved sampler (pass ``target`` if it was built from an unregistered Energy object)."""
        state = torch.load(path, map_location="cpu", weights_only=False)
        model = cls(target if target is not None else state["target"], seed=None, device=device, **state["config"])
        model.policy.load_state_dict(state["policy"])
        if model.ema is not None and state["ema"] is not None:
            model.ema.load_state_dict(state["ema"])
        model.optimizer.load_state_dict(state["optimizer"])
        if model.lr_scheduler is not None and state["lr_scheduler"] is not None:
            model.lr_scheduler.load_state_dict(state["lr_scheduler"])
        buffer = state["buffer"]
        model.buffer.data = buffer["data"].to(model.device)
        model.buffer.size, model.buffer.pointer = buffer["size"], buffer["pointer"]
        model.num_timesteps = state["num_timesteps"]
        model.energy_evaluations = state["energy_evaluations"]
        model.best_metrics = state["best_metrics"]
        model.seed = state["seed"]
        set_rng_state(state["rng"])
        return model


__all__ = ["IDEM", "IDEM_PRESETS", "IDEMConfig", "SampleBuffer", "ScaledEnergy"]
