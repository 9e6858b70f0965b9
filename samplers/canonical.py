"""Symmetry-aware diffusion through learned canonicalization (Sareen et al., arXiv 2501.07773; code
kushasareen/canonical_generation), with the comparison models, trained from samples of a particle system (DW-4, LJ-13).

One diffusion core: a variance-preserving cosine schedule, the ε-prediction loss E‖ε̂(z_t, t) − ε‖² on
z_t = α(t) z₀ + σ(t) ε in the zero-centre-of-mass subspace, and the reverse SDE (Euler–Maruyama) of
:mod:`samplers.integrators` with the score −ε̂/σ. The four modes differ only in the denoiser and in the transform
that turns a training sample x₀ into the z₀ the denoiser learns:

============  ================================================================  ==========================
mode          z₀ (training)                                                      denoiser
============  ================================================================  ==========================
canonical     c(x₀)⁻¹·x₀: EGNN canonicalizer → SO(d) frame, trained jointly      `ParticleTransformer`
              through the denoising loss only, at learning_rate × 1e-2
frozen        the same with a randomly initialised, frozen canonicalizer         `ParticleTransformer`
augmented     a Haar-random rotation of x₀                                       `ParticleTransformer`
equivariant   x₀                                                                 EGNN (:class:`EGNNScore`)
============  ================================================================  ==========================

Sampling integrates in network coordinates (x / data_scale), then applies an independent Haar-random rotation and a
random permutation to every sample (:func:`samplers.boltzmann_data.random_symmetry`), so the sampled density is
exactly SO(d) × S_n invariant whatever the denoiser learned. Permutations are never canonicalized: the transformer is
permutation-equivariant (no positional encoding), as EDM's non-rotation-equivariant "GDM" denoiser, so the learned
density is already S_n-invariant (permutation augmentation would be an exact no-op and is not done). Translations
are removed (zero centre of mass), not canonicalized.

The unit of ``learn(total_timesteps)`` is one gradient step, as in iDEM.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor, nn

from core.config import CheckedConfig
from equivariant.canonicalization import EGNNCanonicalizer, random_orthogonal
from equivariant.egnn import EGNNScore
from equivariant.geometry import as_particles, remove_com
from samplers.base import BaseSampler, Preset, make_ema
from samplers.boltzmann_data import centred_samples, load_samples, random_symmetry, reference_subset, training_samples
from samplers.energies import ENERGIES, Energy
from samplers.integrators import euler_maruyama
from samplers.networks import ParticleTransformer
from samplers.schedules import CosineVPSchedule

Mode = Literal["canonical", "frozen", "equivariant", "augmented"]
CANONICALIZED_MODES = ("canonical", "frozen")


@dataclass(frozen=True)
class CanonicalConfig(CheckedConfig):
    """Hyperparameters of :class:`CanonicalDiffusion`; `CANONICAL_PRESETS` holds the per-target values."""

    mode: Mode = "canonical"  # canonical, frozen, augmented or equivariant (module docstring)
    data_scale: float | None = None  # network coordinates are x / data_scale; None: RMS coordinate of the training data
    max_beta: float = 20.0  # cap of the cosine schedule's β(t) near t = 1 (CosineVPSchedule; α(1)² ≈ 3e-3)
    integration_steps: int = 200  # sampler steps (t: 1 → 0); the benchmark uses the same number for every mode
    transformer_dim: int = 64  # width of the ParticleTransformer (canonical, frozen, augmented)
    transformer_layers: int = 3  # attention blocks
    n_heads: int = 4  # attention heads
    egnn_dim: int = 64  # width of the EGNN denoiser (equivariant; iDEM uses 128)
    egnn_layers: int = 3  # EGNN layers (iDEM: 3 for DW-4, 5 for LJ-13)
    time_embed_dim: int = 32  # sinusoidal time features of either denoiser
    canonicalizer_dim: int = 32  # width of the EGNN canonicalizer (canonical, frozen)
    canonicalizer_layers: int = 2  # its EGNN layers
    canonicalizer_lr_ratio: float = 1e-2  # canonicalizer learning rate / learning_rate, same AdamW (``qm9/models.py``)
    batch_size: int = 256  # training samples per gradient step (drawn uniformly with replacement)
    learning_rate: float = 1e-3  # AdamW learning rate of the denoiser
    weight_decay: float = 1e-12  # AdamW weight decay (EDM's value)
    grad_clip: float | None = 1.0  # gradient-norm clip over all trained parameters; None: off
    ema_decay: float | None = 0.999  # EMA of the denoiser's weights, used for sampling; None: off
    eval_freq: int = 1000  # gradient steps between evaluations against the val split (0: never)
    eval_samples: int = 1000  # samples drawn per evaluation (and as many reference rows)
    log_interval: int = 100  # gradient steps between logger dumps


#: Per-target settings, sized for minutes of CPU training (docs/canonical.md): width 64; on DW-4 a 2-block
#: transformer costs about as much per training step as the 3-layer EGNN, and batch 512 halved the high-energy
#: outliers of the transformer at equal time.
CANONICAL_PRESETS: dict[str, CanonicalConfig] = {
    "DW4": CanonicalConfig(transformer_layers=2, batch_size=512),
    "LJ13": CanonicalConfig(),
}


class CanonicalDiffusion(BaseSampler):
    """Diffusion model of a particle system's Boltzmann samples, in one of four symmetry treatments (module docstring).

    SB3-like interface: ``CanonicalDiffusion("DW4", mode="canonical").learn(5000)``, ``sample(n)``, ``evaluate()``,
    ``save``/``load``, ``set_logger``.

    :param target: A registered particle energy (DW4, LJ13, ...) or an `Energy` with 2-D or 3-D particles; used for
        evaluation only (the model never evaluates the energy while training)
    :param data: Training samples, an (N, n_particles · spatial_dim) array/tensor or a path to a ``.npy``; None: the
        target's default set (`samplers.boltzmann_data.training_samples`). Centred on load
    :param seed: Seeds torch, numpy and random; None leaves them alone
    :param device: "auto", "cpu", "cuda", ...
    :param preset: Accepted for the common interface; `CANONICAL_PRESETS` are already sized for a CPU
    :param hyperparams: Fields of `CanonicalConfig` (``mode`` among them) overriding the target's preset
    """

    config_class: ClassVar[type] = CanonicalConfig
    presets: ClassVar[dict[str, CanonicalConfig]] = CANONICAL_PRESETS
    config: CanonicalConfig

    def __init__(
        self, target: str | Energy, data: str | Path | np.ndarray | Tensor | None = None, seed: int | None = None,
        device: str | torch.device = "auto", preset: Preset = "auto", **hyperparams: Any,
    ) -> None:  # fmt: skip
        super().__init__(target, seed, device, preset, **hyperparams)
        config, energy = self.config, self.target
        self.n_particles, self.spatial_dim = energy.n_particles, energy.spatial_dim
        self.data = self._training_data(data, energy).to(self.device)
        if config.data_scale is None:
            config = replace(config, data_scale=self.data.square().mean().sqrt().item())
        if not config.data_scale > 0:
            raise ValueError(f"data_scale must be positive, got {config.data_scale}")
        self.config = config
        self.schedule = CosineVPSchedule(max_beta=config.max_beta)
        self.network = self._build_denoiser().to(self.device)
        self.canonicalizer = (
            EGNNCanonicalizer(self.n_particles, self.spatial_dim, hidden_dim=config.canonicalizer_dim,
                              n_layers=config.canonicalizer_layers).to(self.device)
            if config.mode in CANONICALIZED_MODES else None
        )  # fmt: skip
        if self.canonicalizer is not None and config.mode == "frozen":
            self.canonicalizer.requires_grad_(False)
        self.ema = make_ema(self.network, config.ema_decay, warmup=True)
        groups = [{"params": list(self.network.parameters()), "lr": config.learning_rate}]
        if config.mode == "canonical":
            groups.append({"params": list(self.canonicalizer.parameters()),
                           "lr": config.learning_rate * config.canonicalizer_lr_ratio})  # fmt: skip
        self.optimizer = torch.optim.AdamW(groups, lr=config.learning_rate, weight_decay=config.weight_decay)

    @property
    def display_name(self) -> str:
        return "CanonicalDiffusion"

    def _check_target(self, energy: Energy) -> None:
        if not energy.is_particle_system or energy.spatial_dim not in (2, 3):
            raise ValueError(
                f"CanonicalDiffusion needs 2-D or 3-D particles (an SO(2) or SO(3) frame); {self.target_name} has "
                f"{energy.n_particles} particle(s) in {energy.spatial_dim} dimensions"
            )

    # ----------------------------------------------------------------------------------------------------------------
    def _training_data(self, data: str | Path | np.ndarray | Tensor | None, energy: Energy) -> Tensor:
        if data is None:
            if self.target_name not in ENERGIES:
                raise ValueError(f"{self.target_name} is not a registered target with default data: pass data (an "
                                 f"(N, {energy.dim}) array or a .npy path)")  # fmt: skip
            return training_samples(self.target_name)
        if isinstance(data, (str, Path)):
            return load_samples(data, energy)
        return centred_samples(data, energy, "data")

    def _build_denoiser(self) -> nn.Module:
        cfg = self.config
        if cfg.mode == "equivariant":
            return EGNNScore(self.n_particles, self.spatial_dim, hidden_dim=cfg.egnn_dim, n_layers=cfg.egnn_layers,
                             time_embed_dim=cfg.time_embed_dim)  # fmt: skip
        return ParticleTransformer(self.n_particles, self.spatial_dim, hidden_dim=cfg.transformer_dim,
                                   n_layers=cfg.transformer_layers, n_heads=cfg.n_heads,
                                   time_embed_dim=cfg.time_embed_dim)  # fmt: skip

    def _project(self, z: Tensor) -> Tensor:
        return remove_com(z, self.n_particles, self.spatial_dim)

    def training_pose(self, x0: Tensor) -> tuple[Tensor, Tensor]:
        """The mode's z₀ for centred network-coordinate samples x0 (B, n·d), and the per-row degenerate-frame flags.

        canonical/frozen: c(x0)⁻¹·x0 (differentiable in the canonicalizer); augmented: a Haar-random rotation;
        equivariant: x0 itself. Flags are False outside the canonicalized modes.
        """
        if self.canonicalizer is not None:
            group, pose = self.canonicalizer(as_particles(x0, self.n_particles, self.spatial_dim))
            return pose.reshape(x0.shape), group.degenerate
        flags = torch.zeros(len(x0), dtype=torch.bool, device=x0.device)
        if self.config.mode == "augmented":
            rotation = random_orthogonal(len(x0), self.spatial_dim, proper=True, dtype=x0.dtype, device=x0.device)
            return (as_particles(x0, self.n_particles, self.spatial_dim) @ rotation.mT).reshape(x0.shape), flags
        return x0, flags

    def denoising_loss(self, x0: Tensor, t: Tensor | None = None, noise: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """ε-prediction loss mean‖ε̂(z_t, t) − ε‖² on centred network-coordinate samples x0 (B, n·d); returns the loss
        and the degenerate-frame flags. ``t`` (B,) defaults to U(0, 1), ``noise`` (B, n·d) to N(0, I), both
        projected to zero centre of mass; pass them fixed to compare losses."""
        z0, degenerate = self.training_pose(x0)
        t = torch.rand(len(x0), device=x0.device) if t is None else t
        noise = self._project(torch.randn_like(z0) if noise is None else noise)
        z_t = self.schedule.noised(z0, t, noise)
        return (self.network(z_t, t) - noise).square().mean(), degenerate

    def train_step(self) -> dict[str, float]:
        """One AdamW step on a batch of training samples; returns loss, gradient norm and the degenerate-frame rate."""
        cfg = self.config
        x0 = self.data[torch.randint(len(self.data), (cfg.batch_size,), device=self.device)] / cfg.data_scale
        loss, degenerate = self.denoising_loss(x0)
        self._finite_or_raise(loss, "the networks diverged. Try a smaller learning_rate or a grad_clip.")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        parameters = [p for group in self.optimizer.param_groups for p in group["params"]]
        grad_norm = nn.utils.clip_grad_norm_(parameters, cfg.grad_clip or math.inf)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update_parameters(self.network)
        self.num_timesteps += 1
        return {"loss": loss.item(), "grad_norm": grad_norm.item(), "degenerate_frac": degenerate.float().mean().item()}

    def _sample_chunk(self, network: nn.Module, n: int, generator: torch.Generator | None) -> Tensor:
        cfg, schedule = self.config, self.schedule
        score = lambda z, t, context: schedule.score_from_noise(network(z, t), t)  # noqa: E731
        z = self._project(schedule.sample_prior(n, self.n_particles * self.spatial_dim, generator, self.device))
        z = euler_maruyama(score, z, schedule, cfg.integration_steps, projection=self._project, generator=generator,
                           denoise_last_step=True)  # fmt: skip
        return random_symmetry(z, self.n_particles, self.spatial_dim, generator)

    def reference_samples(self, n: int, seed: int = 12345) -> Tensor:
        """``n`` random rows of the target's val split (CPU, centred); ``seed`` fixes the draw."""
        return reference_subset(copy.deepcopy(self.target).cpu(), n, seed)

    # ----------------------------------------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        canonicalizer = None if self.canonicalizer is None else self.canonicalizer.state_dict()
        return super()._state() | {"data": self.data.cpu(), "canonicalizer": canonicalizer}

    @classmethod
    def _from_checkpoint(cls, state: dict[str, Any], target: Energy | None, device: str | torch.device) -> CanonicalDiffusion:
        return cls(target if target is not None else state["target"], data=state["data"], device=device, **state["config"])

    def _load_state(self, state: dict[str, Any]) -> None:
        super()._load_state(state)
        self.data = state["data"].to(self.device)  # bit for bit: centring the centred rows again would round them
        if self.canonicalizer is not None:
            self.canonicalizer.load_state_dict(state["canonicalizer"])


__all__ = ["CANONICAL_PRESETS", "CanonicalConfig", "CanonicalDiffusion"]
