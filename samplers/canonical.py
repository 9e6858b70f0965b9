"""Symmetry-aware diffusion through learned canonicalization (Sareen et al., arXiv 2501.07773; spec canonical.md),
with the comparison models, trained from samples of a particle system (DW-4, LJ-13).

One diffusion core: a variance-preserving cosine schedule, the ε-prediction loss E‖ε̂(z_t, t) − ε‖² on
z_t = α(t) z₀ + σ(t) ε in the zero-centre-of-mass subspace, and the reverse SDE (Euler–Maruyama) of
:mod:`samplers.integrators` with the score −ε̂/σ. The four modes differ only in the denoiser and in the transform
that turns a training sample x₀ into the z₀ the denoiser learns:

============  ================================================================  ==========================
mode          z₀ (training)                                                      denoiser
============  ================================================================  ==========================
canonical     c(x₀)⁻¹·x₀: EGNN canonicalizer → SO(d) frame, trained jointly      :class:`ParticleTransformer`
              through the denoising loss only, at learning_rate × 1e-2 (§4)
frozen        the same with a randomly initialised, frozen canonicalizer         :class:`ParticleTransformer`
augmented     a Haar-random rotation of x₀                                       :class:`ParticleTransformer`
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
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import numpy as np
import torch
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.utils import get_device
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from core.io import atomic_write
from core.networks import SinusoidalEmbedding, check_score_inputs
from equivariant.canonicalization import EGNNCanonicalizer, random_orthogonal
from equivariant.egnn import EGNNScore
from equivariant.geometry import as_particles, remove_com
from samplers.boltzmann_data import centred_samples, load_samples, random_symmetry, reference_subset, training_samples
from samplers.energies import ENERGIES, Energy, make_energy
from samplers.integrators import euler_maruyama
from samplers.metrics import sampler_metrics
from samplers.schedules import CosineVPSchedule
from samplers.training import evaluate_and_log, rng_state, seed_everything, set_rng_state

Mode = Literal["canonical", "frozen", "equivariant", "augmented"]
CANONICALIZED_MODES = ("canonical", "frozen")


@dataclass(frozen=True)
class CanonicalConfig:
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
    canonicalizer_lr_ratio: float = 1e-2  # canonicalizer learning rate / learning_rate, same AdamW (spec canonical §4)
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


def ema_with_warmup(decay: float) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """EMA update with the decay min(decay, (1 + k)/(10 + k)) after k updates (TensorFlow's ``num_updates`` rule).

    A fixed decay of 0.999 keeps 0.999^k of the random initialisation, still 20 % after 1,600 steps, which ruined
    the samples of short (CPU-budget) runs; the warm-up averages over about the last k/9 steps early on.
    """

    def average(averaged: Tensor, current: Tensor, num_averaged: Tensor) -> Tensor:
        beta = ((1 + num_averaged) / (10 + num_averaged)).clamp(max=decay).to(averaged.dtype)
        return averaged + (1 - beta) * (current - averaged)

    return average


class AttentionBlock(nn.Module):
    """Pre-norm multi-head self-attention with an additive per-head logit bias, then a GELU MLP (both residual)."""

    def __init__(self, dim: int, n_heads: int) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"the width {dim} must be divisible by the number of heads {n_heads}")
        self.n_heads = n_heads
        self.attention_norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, h: Tensor, bias: Tensor) -> Tensor:
        """``h`` (B, n, dim), ``bias`` (B, heads, n, n) added to the attention logits."""
        batch, n, dim = h.shape
        q, k, v = self.qkv(self.attention_norm(h)).view(batch, n, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        h = h + self.out(attended.transpose(1, 2).reshape(batch, n, dim))
        return h + self.mlp(self.mlp_norm(h))


class ParticleTransformer(nn.Module):
    """Permutation-equivariant, not rotation-equivariant ε-network on particle coordinates (the GDM-style denoiser).

    Tokens are particles: Linear(x_i) + MLP(sinusoidal(t)), with no positional encoding, so permuting the particles
    permutes the output. Every block's attention logits get a learned per-head bias from the pair distance
    ‖x_i − x_j‖, a cheap pair feature (n² scalars through a small MLP) that EGNNs get for free. Output:
    LayerNorm → Linear (zero-initialised, so training starts from ε̂ = 0) with the centre of mass removed.
    Flat interface, as every score network here: x (N, n·d), t (N,) → (N, n·d).
    """

    def __init__(
        self, n_particles: int, spatial_dim: int, hidden_dim: int = 128, n_layers: int = 4, n_heads: int = 4,
        time_embed_dim: int = 32, distance_dim: int = 32,
    ) -> None:  # fmt: skip
        super().__init__()
        self.n_particles = n_particles
        self.spatial_dim = spatial_dim
        self.dim = n_particles * spatial_dim
        self.n_layers, self.n_heads = n_layers, n_heads
        self.embed = nn.Linear(spatial_dim, hidden_dim)
        # DDPM's convention: sinusoids of 1000 t (t in [0, 1]), i.e. of the integer step of a 1000-step chain.
        self.time_embed = nn.Sequential(
            SinusoidalEmbedding(time_embed_dim, scale=1000.0), nn.Linear(time_embed_dim, hidden_dim), nn.SiLU(),
            nn.Linear(hidden_dim, hidden_dim),
        )  # fmt: skip
        self.distance_bias = nn.Sequential(nn.Linear(1, distance_dim), nn.SiLU(), nn.Linear(distance_dim, n_layers * n_heads))
        self.blocks = nn.ModuleList(AttentionBlock(hidden_dim, n_heads) for _ in range(n_layers))
        self.head = nn.Sequential(nn.LayerNorm(hidden_dim), nn.Linear(hidden_dim, spatial_dim))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: Tensor, t: Tensor, context: Tensor | None = None) -> Tensor:
        t = check_score_inputs(x, t, context, self.dim, 0)
        positions = as_particles(x, self.n_particles, self.spatial_dim)
        h = self.embed(positions) + self.time_embed(t).unsqueeze(1)
        distances = torch.cdist(positions, positions).unsqueeze(-1)  # (B, n, n, 1)
        biases = self.distance_bias(distances).permute(0, 3, 1, 2).chunk(self.n_layers, dim=1)  # (B, heads, n, n) each
        for block, bias in zip(self.blocks, biases):
            h = block(h, bias)
        return remove_com(self.head(h).reshape(x.shape), self.n_particles, self.spatial_dim)


class CanonicalDiffusion:
    """Diffusion model of a particle system's Boltzmann samples, in one of four symmetry treatments (module docstring).

    SB3-like interface: ``CanonicalDiffusion("DW4", mode="canonical").learn(5000)``, ``sample(n)``, ``evaluate()``,
    ``save``/``load``, ``set_logger``.

    Args:
        target: a registered particle energy (DW4, LJ13, ...) or an :class:`~samplers.energies.Energy` with 2-D or
            3-D particles; used for evaluation only (the model never evaluates the energy while training).
        data: training samples, an (N, n_particles · spatial_dim) array/tensor or a path to a ``.npy``; None: the
            target's default set (:func:`samplers.boltzmann_data.training_samples`). Centred on load.
        seed: seeds torch, numpy and random; None leaves them alone.
        device: "auto", "cpu", "cuda", ...
        **hyperparams: fields of :class:`CanonicalConfig` (``mode`` among them) overriding the target's preset.
    """

    config_class: ClassVar[type] = CanonicalConfig

    def __init__(
        self, target: str | Energy, data: str | Path | np.ndarray | Tensor | None = None, seed: int | None = None,
        device: str | torch.device = "auto", **hyperparams: Any,
    ) -> None:  # fmt: skip
        self.target_name = target if isinstance(target, str) else type(target).__name__
        energy = make_energy(target) if isinstance(target, str) else target
        if not energy.is_particle_system or energy.spatial_dim not in (2, 3):
            raise ValueError(
                f"CanonicalDiffusion needs 2-D or 3-D particles (an SO(2) or SO(3) frame); {self.target_name} has "
                f"{energy.n_particles} particle(s) in {energy.spatial_dim} dimensions"
            )
        unknown = set(hyperparams) - {f.name for f in fields(CanonicalConfig)}
        if unknown:
            raise ValueError(f"unknown CanonicalDiffusion hyperparameters {sorted(unknown)}; see CanonicalConfig")
        config = replace(CANONICAL_PRESETS.get(self.target_name, CanonicalConfig()), **hyperparams)
        if config.mode not in get_args(Mode):
            raise ValueError(f"mode must be one of {', '.join(get_args(Mode))}, got {config.mode!r}")
        self.seed = seed
        if seed is not None:
            seed_everything(seed)
        self.device = get_device(device)
        self.target = energy.to(self.device)
        self.n_particles, self.spatial_dim = energy.n_particles, energy.spatial_dim
        self.data = self._training_data(data, energy).to(self.device)
        if config.data_scale is None:
            config = replace(config, data_scale=self.data.square().mean().sqrt().item())
        if not config.data_scale > 0:
            raise ValueError(f"data_scale must be positive, got {config.data_scale}")
        self.config = config
        self.schedule = CosineVPSchedule(max_beta=config.max_beta)
        self.denoiser = self._build_denoiser().to(self.device)
        self.canonicalizer = (
            EGNNCanonicalizer(self.n_particles, self.spatial_dim, hidden_dim=config.canonicalizer_dim,
                              n_layers=config.canonicalizer_layers).to(self.device)
            if config.mode in CANONICALIZED_MODES else None
        )  # fmt: skip
        if self.canonicalizer is not None and config.mode == "frozen":
            self.canonicalizer.requires_grad_(False)
        self.ema = (
            torch.optim.swa_utils.AveragedModel(self.denoiser, avg_fn=ema_with_warmup(config.ema_decay))
            if config.ema_decay is not None
            else None
        )
        groups = [{"params": list(self.denoiser.parameters()), "lr": config.learning_rate}]
        if config.mode == "canonical":
            groups.append({"params": list(self.canonicalizer.parameters()),
                           "lr": config.learning_rate * config.canonicalizer_lr_ratio})  # fmt: skip
        self.optimizer = torch.optim.AdamW(groups, lr=config.learning_rate, weight_decay=config.weight_decay)
        self.num_timesteps = 0
        self.energy_evaluations = 0  # trained from samples: the energy is only used to evaluate
        self.best_metrics: dict[str, float] = {}
        self._reference_missing = False
        self._logger = Logger(folder=None, output_formats=[])

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

    def set_logger(self, logger: Logger) -> None:
        """Use an SB3 logger (e.g. ``stable_baselines3.common.logger.configure(run_dir, ["tensorboard"])``)."""
        self._logger = logger

    @property
    def logger(self) -> Logger:
        return self._logger

    # ----------------------------------------------------------------------------------------------------------------
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
        z_t = self.schedule.alpha(t)[:, None] * z0 + self.schedule.sigma(t)[:, None] * noise
        return (self.denoiser(z_t, t) - noise).square().mean(), degenerate

    def train_step(self) -> dict[str, float]:
        """One AdamW step on a batch of training samples; returns loss, gradient norm and the degenerate-frame rate."""
        cfg = self.config
        x0 = self.data[torch.randint(len(self.data), (cfg.batch_size,), device=self.device)] / cfg.data_scale
        loss, degenerate = self.denoising_loss(x0)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"denoising loss is {loss.item()} at step {self.num_timesteps}: the networks diverged. Try a smaller "
                "learning_rate or a grad_clip."
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        parameters = [p for group in self.optimizer.param_groups for p in group["params"]]
        grad_norm = nn.utils.clip_grad_norm_(parameters, cfg.grad_clip or math.inf)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update_parameters(self.denoiser)
        self.num_timesteps += 1
        return {"loss": loss.item(), "grad_norm": grad_norm.item(), "degenerate_frac": degenerate.float().mean().item()}

    # ----------------------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, use_ema: bool = True, batch_size: int = 4096, seed: int | None = None) -> Tensor:
        """Draw ``n`` samples in the target's coordinates: integrate from the prior with the denoiser's score, then
        a random rotation and permutation per sample (module docstring). ``seed`` uses a private generator (the
        global RNG is left alone); None draws from the global RNG."""
        network = self.ema.module if (use_ema and self.ema is not None) else self.denoiser
        generator = None if seed is None else torch.Generator(self.device).manual_seed(seed)
        network.eval()
        chunks = [self._sample_batch(network, min(batch_size, n - start), generator) for start in range(0, n, batch_size)]
        network.train()
        return torch.cat(chunks) * self.config.data_scale

    def _sample_batch(self, network: nn.Module, n: int, generator: torch.Generator | None) -> Tensor:
        cfg, schedule = self.config, self.schedule
        score = lambda z, t, context: -network(z, t) / schedule.sigma(t)[:, None]  # noqa: E731
        z = self._project(schedule.sample_prior(n, self.n_particles * self.spatial_dim, generator, self.device))
        z = euler_maruyama(score, z, schedule, cfg.integration_steps, projection=self._project, generator=generator,
                           denoise_last_step=True)  # fmt: skip
        return random_symmetry(z, self.n_particles, self.spatial_dim, generator)

    # ----------------------------------------------------------------------------------------------------------------
    def evaluate(self, samples: Tensor | None = None, reference: Tensor | None = None) -> dict[str, float]:
        """:func:`~samplers.metrics.sampler_metrics` of ``samples`` (default: ``eval_samples`` fresh ones) against
        ``reference`` (default: as many rows of the target's val split)."""
        samples = (self.sample(self.config.eval_samples) if samples is None else samples).cpu().double()
        reference = self.reference_samples(len(samples)) if reference is None else reference
        energy = copy.deepcopy(self.target).cpu().double()  # float64 energies, as the reference statistics
        return sampler_metrics(samples, reference.double(), energy_fn=energy.energy, n_particles=self.n_particles,
                               spatial_dim=self.spatial_dim)  # fmt: skip

    def reference_samples(self, n: int, seed: int = 12345) -> Tensor:
        """``n`` random rows of the target's val split (CPU, centred); ``seed`` fixes the draw."""
        return reference_subset(copy.deepcopy(self.target).cpu(), n, seed)

    def learn(
        self, total_timesteps: int, progress_bar: bool = False, reset_num_timesteps: bool = True,
        checkpoint_dir: str | Path | None = None, checkpoint_freq: int = 0, time_limit_s: float | None = None,
    ) -> CanonicalDiffusion:  # fmt: skip
        """Run ``total_timesteps`` gradient steps, or fewer if ``time_limit_s`` seconds (checked before every step)
        have passed.

        Logs ``train/loss``, ``train/grad_norm``, ``train/degenerate_frac``, ``train/learning_rate``, ``time/fps``
        and, every ``eval_freq`` steps, ``eval/*``. With ``checkpoint_dir``, ``checkpoint_freq`` > 0 writes
        ``iter_<steps>.pt`` periodically, and every evaluation that improves ``eval/energy_w2`` writes ``best.pt``.
        """
        cfg = self.config
        if reset_num_timesteps:
            self.num_timesteps = 0
        end = self.num_timesteps + total_timesteps
        start_time, start_step = time.perf_counter(), self.num_timesteps
        bar = tqdm(total=total_timesteps, disable=not progress_bar, desc=f"CanonicalDiffusion[{cfg.mode}]")
        while self.num_timesteps < end:
            if time_limit_s is not None and time.perf_counter() - start_time >= time_limit_s:
                break
            stats = self.train_step()
            bar.update(1)
            step = self.num_timesteps
            if step % cfg.log_interval == 0 or step == end:
                for key, value in stats.items():
                    self.logger.record(f"train/{key}", value)
                self.logger.record("train/learning_rate", self.optimizer.param_groups[0]["lr"])
                self.logger.record("time/fps", (step - start_step) / max(time.perf_counter() - start_time, 1e-9))
                self.logger.dump(step)
            if cfg.eval_freq and not self._reference_missing and (step % cfg.eval_freq == 0 or step == end):
                evaluate_and_log(self, step, checkpoint_dir, "energy_w2")
            if checkpoint_dir is not None and checkpoint_freq and step % checkpoint_freq == 0:
                self.save(Path(checkpoint_dir) / f"iter_{step}.pt")
        bar.close()
        return self

    # ----------------------------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Atomically write everything needed to resume: config, training data, networks, optimiser, counters, RNG."""
        state = {
            "target": self.target_name,
            "config": asdict(self.config),
            "seed": self.seed,
            "data": self.data.cpu(),
            "denoiser": self.denoiser.state_dict(),
            "canonicalizer": None if self.canonicalizer is None else self.canonicalizer.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "num_timesteps": self.num_timesteps,
            "best_metrics": self.best_metrics,
            "rng": rng_state(),
        }
        return atomic_write(path, lambda tmp: torch.save(state, tmp))

    @classmethod
    def load(cls, path: str | Path, target: Energy | None = None, device: str | torch.device = "auto") -> CanonicalDiffusion:
        """Restore a saved model (pass ``target`` if it was built from an unregistered Energy object)."""
        state = torch.load(path, map_location="cpu", weights_only=False)
        model = cls(target if target is not None else state["target"], data=state["data"], device=device, **state["config"])
        model.data = state["data"].to(model.device)  # bit for bit: centring the centred rows again would round them
        model.denoiser.load_state_dict(state["denoiser"])
        if model.canonicalizer is not None:
            model.canonicalizer.load_state_dict(state["canonicalizer"])
        if model.ema is not None and state["ema"] is not None:
            model.ema.load_state_dict(state["ema"])
        model.optimizer.load_state_dict(state["optimizer"])
        model.num_timesteps = state["num_timesteps"]
        model.best_metrics = state["best_metrics"]
        model.seed = state["seed"]
        set_rng_state(state["rng"])
        return model


__all__ = ["CANONICAL_PRESETS", "AttentionBlock", "CanonicalConfig", "CanonicalDiffusion", "ParticleTransformer"]
