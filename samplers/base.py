"""The base class of the library's samplers, as SB3's `BaseAlgorithm` is for its agents.

`BaseSampler` owns what every sampler shares: hyperparameters as a frozen dataclass over per-target presets, seeding,
the ``learn`` loop with logging and a progress bar, evaluation against reference samples with a best checkpoint,
periodic checkpoints, sampling in chunks from the (EMA) network, and save/load with the RNG states, so that a resumed
run continues bit for bit. A subclass builds its networks in ``__init__`` and implements `train_step` (one gradient
step) and `_sample_chunk` (samples from a given network), plus `_state` / `_load_state` for what it adds to a
checkpoint. Checkpoints hold tensors and plain Python values only and load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import abc
import copy
import math
import pickle
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np
import torch
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.utils import get_device
from torch import Tensor, nn
from tqdm.auto import tqdm

from core.io import atomic_write
from samplers.energies import Energy, make_energy
from samplers.metrics import sampler_metrics

SelfSampler = TypeVar("SelfSampler", bound="BaseSampler")
Preset = Literal["auto", "cpu", "reference"]


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every global generator's state as tensors and plain values (loadable with ``weights_only=True``)."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(cached_gaussian)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators saved by `rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def ema_with_warmup(decay: float) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """EMA update with the decay min(decay, (1 + k)/(10 + k)) after k updates (TensorFlow's ``num_updates`` rule).

    A fixed decay of 0.999 keeps 0.999^k of the random initialisation, still 20 % after 1,600 steps, which ruined
    the samples of short (CPU-budget) runs; the warm-up averages over about the last k/9 steps early on.
    """

    def average(averaged: Tensor, current: Tensor, num_averaged: Tensor) -> Tensor:
        beta = ((1 + num_averaged) / (10 + num_averaged)).clamp(max=decay).to(averaged.dtype)
        return averaged + (1 - beta) * (current - averaged)

    return average


def make_ema(network: nn.Module, decay: float | None, warmup: bool = False) -> torch.optim.swa_utils.AveragedModel | None:
    """An exponential moving average of ``network``'s weights (None when ``decay`` is None): a fixed ``decay``, or
    with ``warmup`` the `ema_with_warmup` rule. Its first update copies the weights."""
    if decay is None:
        return None
    if warmup:
        return torch.optim.swa_utils.AveragedModel(network, avg_fn=ema_with_warmup(decay))
    return torch.optim.swa_utils.AveragedModel(network, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay))


class BaseSampler(abc.ABC):
    """A diffusion sampler of a target energy, with an SB3-like interface: ``learn``, ``sample``, ``evaluate``,
    ``save``/``load``, ``set_logger``.

    :param target: A registered energy name (GMM40, DW4, LJ13, LJ55) or an `Energy`
    :param seed: Seeds torch, numpy and random; None leaves them alone
    :param device: "auto", "cpu", "cuda", ...
    :param preset: "reference" (the paper's settings, `presets`), "cpu" (with `cpu_overrides`, minutes instead of
        hours on a CPU) or "auto": "cpu" on a CPU device, else "reference"
    :param hyperparams: Fields of the subclass's `config_class` overriding the preset
    """

    #: Frozen dataclass of the hyperparameters; it has the fields ``eval_freq``, ``eval_samples``, ``log_interval``,
    #: ``integration_steps``
    #: and ``ema_decay`` (and ``data_scale``, the scale of the network's coordinates).
    config_class: ClassVar[type]
    #: Per-target values of `config_class` (the reference settings); other targets use its defaults.
    presets: ClassVar[dict[str, Any]] = {}
    #: Per-target changes to `presets` on a CPU (where the reference settings take hours); the caller's
    #: hyperparameters still win. ``self.preset`` says which applied: "cpu" or "reference".
    cpu_overrides: ClassVar[dict[str, dict[str, Any]]] = {}
    #: The trained network and the moving average of it that samples (None: the network samples).
    network: nn.Module
    ema: torch.optim.swa_utils.AveragedModel | None
    optimizer: torch.optim.Optimizer

    def __init__(
        self, target: str | Energy, seed: int | None = None, device: str | torch.device = "auto", preset: Preset = "auto",
        **hyperparams: Any,
    ) -> None:  # fmt: skip
        self.target_name = target if isinstance(target, str) else type(target).__name__
        energy = make_energy(target) if isinstance(target, str) else target
        self._check_target(energy)
        unknown = set(hyperparams) - {f.name for f in fields(self.config_class)}
        if unknown:
            raise ValueError(
                f"unknown {self.display_name} hyperparameters {sorted(unknown)}; see "
                f"{self.config_class.__module__}.{self.config_class.__name__}"
            )
        self.device = get_device(device)
        if preset not in ("auto", "cpu", "reference"):
            raise ValueError(f"preset must be 'auto', 'cpu' or 'reference', got {preset!r}")
        base = self.presets.get(self.target_name, self.config_class())
        on_cpu = preset == "cpu" or (preset == "auto" and self.device.type == "cpu")
        cpu = self.cpu_overrides.get(self.target_name, {}) if on_cpu else {}
        self.preset = "cpu" if cpu else "reference"
        self.config = replace(base, **{**cpu, **hyperparams})
        self.seed = seed
        if seed is not None:
            seed_everything(seed)
        self.target = energy.to(self.device)
        self.num_timesteps = 0
        self.energy_evaluations = 0
        self.best_metrics: dict[str, float] = {}
        self._reference_missing = False
        self._latest_evaluation: tuple[int, Tensor, dict[str, float]] | None = None
        self._logger = Logger(folder=None, output_formats=[])

    # --- what a subclass implements -------------------------------------------------------------------------------

    @property
    def display_name(self) -> str:
        """The sampler's name in messages and on the progress bar."""
        return type(self).__name__

    @property
    def selection_metric(self) -> str:
        """The evaluation metric whose lowest value selects ``best.pt``."""
        return "energy_w2"

    def _check_target(self, energy: Energy) -> None:  # noqa: B027 (an optional hook)
        """Raise a ValueError if this sampler cannot model ``energy``."""

    @abc.abstractmethod
    def train_step(self) -> dict[str, float]:
        """One gradient step; returns the statistics logged under ``train/``. Must raise on a non-finite loss."""

    @abc.abstractmethod
    def _sample_chunk(self, network: nn.Module, n: int, generator: torch.Generator | None) -> Tensor:
        """``n`` samples in network coordinates from ``network`` (the trained network or its EMA)."""

    def _state(self) -> dict[str, Any]:
        """The subclass's part of a checkpoint (tensors and plain values)."""
        return {}

    def _load_state(self, state: dict[str, Any]) -> None:  # noqa: B027 (an optional hook)
        """Restore what `_state` saved."""

    def _before_learn(self) -> None:  # noqa: B027 (an optional hook)
        """Called at the start of every ``learn`` call."""

    def _after_step(self, step: int, stats: dict[str, float]) -> None:  # noqa: B027 (an optional hook)
        """Called after every gradient step, before logging."""

    def _log_extras(self) -> dict[str, float]:
        """More values logged with the training statistics (full keys, e.g. ``train/buffer_size``)."""
        return {}

    # --- the shared machinery -------------------------------------------------------------------------------------

    def set_logger(self, logger: Logger) -> None:
        """Use an SB3 logger (e.g. ``stable_baselines3.common.logger.configure(run_dir, ["tensorboard"])``)."""
        self._logger = logger

    @property
    def logger(self) -> Logger:
        return self._logger

    def _finite_or_raise(self, loss: Tensor, hint: str) -> None:
        """Stop with a clear error when a loss is NaN or infinite (``hint``: the likely cause and the fix)."""
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{self.display_name} loss is {loss.item()} at step {self.num_timesteps}: {hint}")

    @torch.no_grad()
    def sample(
        self, n: int, use_ema: bool = True, batch_size: int = 4096, seed: int | None = None, progress_bar: bool = False,
    ) -> Tensor:  # fmt: skip
        """Draw ``n`` samples in the target's own coordinates, ``batch_size`` at a time. ``seed`` uses a private
        generator (the global RNG is left alone); None draws from the global RNG. ``progress_bar`` counts the
        network evaluations of the sampler (``integration_steps`` per chunk): sampling is a sampler's longest
        silent phase."""
        network = self.ema.module if (use_ema and self.ema is not None) else self.network
        generator = None if seed is None else torch.Generator(self.device).manual_seed(seed)
        sizes = [min(batch_size, n - start) for start in range(0, n, batch_size)]
        bar = tqdm(total=len(sizes) * self.config.integration_steps, desc=f"sampling {n}", unit="step",
                   disable=not progress_bar, leave=False)  # fmt: skip
        hook = network.register_forward_hook(lambda *_: bar.update(1))
        network.eval()
        try:
            chunks = [self._sample_chunk(network, size, generator) for size in sizes]
        finally:
            network.train()
            hook.remove()
            bar.close()
        return torch.cat(chunks) * self.config.data_scale

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

    def evaluate(
        self, samples: Tensor | None = None, reference: Tensor | None = None, progress_bar: bool = False
    ) -> dict[str, float]:
        """`samplers.metrics.sampler_metrics` of ``samples`` (default: ``eval_samples`` fresh ones, drawn with
        ``progress_bar``) against ``reference`` (default: as many `reference_samples`)."""
        if samples is None:
            samples = self.sample(self.config.eval_samples, progress_bar=progress_bar)
        samples = samples.cpu().double()
        reference = self.reference_samples(len(samples)) if reference is None else reference
        energy = copy.deepcopy(self.target).cpu().double()  # float64 energies, as the reference statistics
        return sampler_metrics(
            samples, reference.double(), energy_fn=energy.energy, n_particles=energy.n_particles,
            spatial_dim=energy.spatial_dim,
        )  # fmt: skip

    def latest_evaluation(self, n: int) -> tuple[Tensor, dict[str, float]] | None:
        """The samples (CPU) and metrics of the periodic evaluation made at the current step, if it drew ``n``
        samples; else None. The end of `learn` evaluates, so a final evaluation of as many samples need not sample
        again (the same network, the same reference rows)."""
        latest = self._latest_evaluation
        if latest is None or latest[0] != self.num_timesteps or len(latest[1]) != n:
            return None
        return latest[1], latest[2]

    def _evaluate_and_log(self, step: int, checkpoint_dir: str | Path | None, progress_bar: bool) -> None:
        """Evaluate, log ``eval/*`` and keep ``best.pt`` by the lowest `selection_metric`. Without reference samples
        on this machine, evaluation is switched off with one warning and training goes on."""
        samples = self.sample(self.config.eval_samples, progress_bar=progress_bar).cpu()
        try:
            metrics = self.evaluate(samples=samples)
        except FileNotFoundError as error:
            self._reference_missing = True
            warnings.warn(f"{type(self).__name__} evaluation disabled: {error}", stacklevel=3)
            return
        self._latest_evaluation = (step, samples, metrics)
        for key, value in metrics.items():
            self.logger.record(f"eval/{key}", value)
        self.logger.dump(step)
        metric = self.selection_metric
        if metric in metrics and metrics[metric] < self.best_metrics.get(metric, math.inf):
            self.best_metrics = {**metrics, "step": float(step)}
            if checkpoint_dir is not None:
                self.save(Path(checkpoint_dir) / "best.pt")

    def learn(
        self: SelfSampler, total_timesteps: int, progress_bar: bool = False, reset_num_timesteps: bool = True,
        checkpoint_dir: str | Path | None = None, checkpoint_freq: int = 0, time_limit_s: float | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> SelfSampler:  # fmt: skip
        """Run ``total_timesteps`` gradient steps, or fewer if ``time_limit_s`` seconds have passed or ``stop()`` is
        true (both checked before every step, so the state is never left mid-step: train.py's Ctrl-C sets it).

        Logs ``train/*`` (the step's statistics and ``train/learning_rate``) and ``time/fps`` every ``log_interval``
        steps, and ``eval/*`` every ``eval_freq`` steps. With ``checkpoint_dir``, ``checkpoint_freq`` > 0 writes
        ``iter_<steps>.pt`` periodically, and every evaluation that improves `selection_metric` writes ``best.pt``.
        """
        cfg = self.config
        if reset_num_timesteps:
            self.num_timesteps = 0
        self._before_learn()
        end = self.num_timesteps + total_timesteps
        start_time, start_step = time.perf_counter(), self.num_timesteps
        bar = tqdm(total=total_timesteps, disable=not progress_bar, desc=self.display_name)
        while self.num_timesteps < end:
            if time_limit_s is not None and time.perf_counter() - start_time >= time_limit_s:
                break
            if stop is not None and stop():
                break
            stats = self.train_step()
            bar.update(1)
            step = self.num_timesteps
            self._after_step(step, stats)
            if step % cfg.log_interval == 0 or step == end:
                for key, value in stats.items():
                    self.logger.record(f"train/{key}", value)
                self.logger.record("train/learning_rate", self.optimizer.param_groups[0]["lr"])
                self.logger.record("time/fps", (step - start_step) / max(time.perf_counter() - start_time, 1e-9))
                for key, value in self._log_extras().items():
                    self.logger.record(key, value)
                self.logger.dump(step)
            if cfg.eval_freq and not self._reference_missing and (step % cfg.eval_freq == 0 or step == end):
                self._evaluate_and_log(step, checkpoint_dir, progress_bar)
            if checkpoint_dir is not None and checkpoint_freq and step % checkpoint_freq == 0:
                self.save(Path(checkpoint_dir) / f"iter_{step}.pt")
        bar.close()
        return self

    def save(self, path: str | Path) -> Path:
        """Atomically write everything needed to resume: config, networks, optimiser, counters, RNG states."""
        state = {
            "target": self.target_name,
            "config": asdict(self.config),
            "seed": self.seed,
            "network": self.network.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "num_timesteps": self.num_timesteps,
            "energy_evaluations": self.energy_evaluations,
            "best_metrics": self.best_metrics,
            "preset": self.preset,
            "rng": rng_state(),
            **self._state(),
        }
        return atomic_write(path, lambda tmp: torch.save(state, tmp))

    @classmethod
    def _from_checkpoint(
        cls: type[SelfSampler], state: dict[str, Any], target: Energy | None, device: str | torch.device
    ) -> SelfSampler:
        """A fresh sampler with the checkpoint's target and configuration (before its weights are restored)."""
        return cls(target if target is not None else state["target"], seed=None, device=device, **state["config"])

    @classmethod
    def load(
        cls: type[SelfSampler], path: str | Path, target: Energy | None = None, device: str | torch.device = "auto"
    ) -> SelfSampler:
        """Restore a saved sampler (pass ``target`` if it was built from an unregistered Energy object). Only
        tensors and plain values are read (``weights_only=True``): a file that holds anything else is refused."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise ValueError(
                f"{cls.__name__} cannot load {path}: it holds objects other than tensors and plain values, which are "
                "never unpickled (a checkpoint of an older version, or not a checkpoint)"
            ) from None
        model = cls._from_checkpoint(state, target, device)
        model.network.load_state_dict(state["network"])
        if model.ema is not None and state["ema"] is not None:
            model.ema.load_state_dict(state["ema"])
        model.optimizer.load_state_dict(state["optimizer"])
        model._load_state(state)
        model.num_timesteps = state["num_timesteps"]
        model.energy_evaluations = state["energy_evaluations"]
        model.best_metrics = state["best_metrics"]
        model.preset = state.get("preset", model.preset)
        model.seed = state["seed"]
        set_rng_state(state["rng"])
        return model
