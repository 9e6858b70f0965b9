"""The base of every model trained by gradient steps on a named target (a sampler of an energy, a PDE solver), as
SB3's `BaseAlgorithm` is for agents.

`Trainer` owns what they share: hyperparameters as a frozen dataclass over per-target presets (with CPU overrides),
seeding, the ``learn`` loop (logging, a progress bar, a stop flag, a time limit, periodic evaluation that keeps the best
checkpoint, periodic checkpoints) and save/load with the RNG states, so that a resumed run continues bit for bit.
Checkpoints hold tensors and plain Python values only and load with ``torch.load(weights_only=True)``. A subclass builds
its networks in ``__init__`` (``network`` and ``optimizer`` are what a checkpoint restores) and implements
`train_step`; `_evaluation` is its periodic evaluation, `_state` / `_load_state` what it adds to a checkpoint.
"""

from __future__ import annotations

import abc
import math
import pickle
import random
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np
import torch
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.utils import get_device
from torch import nn
from tqdm.auto import tqdm

from core.config import config_keys, reject_unknown_keys
from core.interrupts import Interrupts
from core.io import atomic_write

SelfTrainer = TypeVar("SelfTrainer", bound="Trainer")
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


class Trainer(abc.ABC):
    """A model trained by gradient steps on a named target, with an SB3-like interface: ``learn``, ``save``/``load``,
    ``set_logger``, ``num_timesteps``, ``best_metrics``.

    :param target_name: The target's registered name (what a checkpoint records to rebuild it)
    :param seed: Seeds torch, numpy and random; None leaves them alone
    :param device: "auto", "cpu", "cuda", ...
    :param preset: "reference" (`presets`), "cpu" (with `cpu_overrides`, minutes instead of hours on a CPU) or
        "auto": "cpu" on a CPU device, else "reference"
    :param hyperparams: Fields of `config_class` overriding the preset
    """

    #: Frozen dataclass of the hyperparameters; it has the fields ``eval_freq`` and ``log_interval``.
    config_class: ClassVar[type]
    #: Per-target values of `config_class` (the reference settings); other targets use its defaults.
    presets: ClassVar[dict[str, Any]] = {}
    #: Per-target changes to `presets` on a CPU; the caller's hyperparameters still win. ``self.preset`` says which
    #: applied: "cpu" or "reference".
    cpu_overrides: ClassVar[dict[str, dict[str, Any]]] = {}
    #: Whether the last step of ``learn`` evaluates even when ``eval_freq`` is 0 (an evaluation cheap enough to
    #: always have).
    evaluates_at_end: ClassVar[bool] = False
    #: What a checkpoint restores (built by the subclass's ``__init__``).
    network: nn.Module
    optimizer: torch.optim.Optimizer

    def __init__(
        self, target_name: str, seed: int | None, device: str | torch.device, preset: Preset, hyperparams: dict[str, Any]
    ) -> None:  # fmt: skip
        self.target_name = target_name
        knobs = self.config_class
        reject_unknown_keys(sorted(hyperparams), config_keys(knobs), self.display_name, "hyperparameters",
                            f"its knobs are the fields of {knobs.__module__}.{knobs.__name__}.")  # fmt: skip
        if preset not in ("auto", "cpu", "reference"):
            raise ValueError(f"preset must be 'auto', 'cpu' or 'reference', got {preset!r}")
        self.device = get_device(device)
        base = self.presets.get(target_name, self.config_class())
        on_cpu = preset == "cpu" or (preset == "auto" and self.device.type == "cpu")
        cpu = self.cpu_overrides.get(target_name, {}) if on_cpu else {}
        self.preset = "cpu" if cpu else "reference"
        self.config = replace(base, **{**cpu, **hyperparams})
        self.seed = seed
        if seed is not None:
            seed_everything(seed)
        self.num_timesteps = 0
        self.best_metrics: dict[str, float] = {}
        self._evaluation_off = False
        self._logger = Logger(folder=None, output_formats=[])

    # --- what a subclass implements -------------------------------------------------------------------------------

    @property
    def display_name(self) -> str:
        """The model's name in messages and on the progress bar."""
        return type(self).__name__

    @property
    @abc.abstractmethod
    def selection_metric(self) -> str:
        """The evaluation metric whose lowest value is the best (``best_metrics``, ``best.pt``)."""

    @abc.abstractmethod
    def train_step(self) -> dict[str, float]:
        """One gradient step that advances ``num_timesteps``; returns the statistics logged under ``train/``. Must
        raise on a non-finite loss."""

    @abc.abstractmethod
    def _evaluation(self, step: int, progress_bar: bool) -> dict[str, float] | None:
        """The periodic evaluation's metrics, or None when it cannot run on this machine (then it is switched off for
        the rest of training)."""

    def _state(self) -> dict[str, Any]:
        """The subclass's part of a checkpoint (tensors and plain values)."""
        return {}

    def _load_state(self, state: dict[str, Any]) -> None:  # noqa: B027 (an optional hook)
        """Restore what `_state` saved."""

    def _before_learn(self, end: int) -> None:  # noqa: B027 (an optional hook)
        """Called at the start of every ``learn`` call, with the step count it will stop at (a model whose schedule
        spans the run reads its length here)."""

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

    def _finite_or_raise(self, loss: torch.Tensor, hint: str) -> None:
        """Stop with a clear error when a loss is NaN or infinite (``hint``: the likely cause and the fix)."""
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{self.display_name} loss is {loss.item()} at step {self.num_timesteps}: {hint}")

    def _evaluate_and_log(self, step: int, checkpoint_dir: str | Path | None, progress_bar: bool) -> None:
        """Evaluate, log ``eval/*`` and keep the best metrics (and ``best.pt`` in ``checkpoint_dir``) by the lowest
        `selection_metric`."""
        metrics = self._evaluation(step, progress_bar)
        if metrics is None:
            self._evaluation_off = True
            return
        for key, value in metrics.items():
            self.logger.record(f"eval/{key}", value)
        self.logger.dump(step)
        metric = self.selection_metric
        if metric in metrics and metrics[metric] < self.best_metrics.get(metric, math.inf):
            self.best_metrics = {**metrics, "step": float(step)}
            if checkpoint_dir is not None:
                self.save(Path(checkpoint_dir) / "best.pt")

    def _evaluates_at(self, step: int, end: int) -> bool:
        if self._evaluation_off:
            return False
        eval_freq = self.config.eval_freq
        periodic = bool(eval_freq) and (step % eval_freq == 0 or step == end)
        return periodic or (self.evaluates_at_end and step == end)

    def learn(
        self: SelfTrainer, total_timesteps: int, progress_bar: bool = False, reset_num_timesteps: bool = True,
        checkpoint_dir: str | Path | None = None, checkpoint_freq: int = 0, time_limit_s: float | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> SelfTrainer:  # fmt: skip
        """Run ``total_timesteps`` gradient steps, or fewer if ``time_limit_s`` seconds have passed or ``stop()`` is
        true (both checked before every step, so the state is never left mid-step: train.py's Ctrl-C sets it).
        Without ``stop``, a Ctrl-C (or SIGTERM) in the main thread also ends the loop at the next step boundary and is
        then raised as KeyboardInterrupt, so a model saved after it resumes exactly; a second one interrupts at once.

        Logs ``train/*`` (the step's statistics and ``train/learning_rate``) and ``time/fps`` every ``log_interval``
        steps, and ``eval/*`` every ``eval_freq`` steps and at the last one. With ``checkpoint_dir``,
        ``checkpoint_freq`` > 0 writes ``iter_<steps>.pt`` periodically, and every evaluation that improves
        `selection_metric` writes ``best.pt``.
        """
        if stop is not None:
            return self._learn(total_timesteps, progress_bar, reset_num_timesteps, checkpoint_dir, checkpoint_freq,
                               time_limit_s, stop)  # fmt: skip
        interrupts = Interrupts()
        with interrupts.installed(), interrupts.abortable(on_first=False):
            self._learn(total_timesteps, progress_bar, reset_num_timesteps, checkpoint_dir, checkpoint_freq, time_limit_s,
                        interrupts.stop.is_set)  # fmt: skip
        if interrupts.stop.is_set():
            raise KeyboardInterrupt(f"signal {interrupts.signal}: stopped after step {self.num_timesteps}")
        return self

    def _learn(
        self: SelfTrainer, total_timesteps: int, progress_bar: bool, reset_num_timesteps: bool,
        checkpoint_dir: str | Path | None, checkpoint_freq: int, time_limit_s: float | None, stop: Callable[[], bool],
    ) -> SelfTrainer:  # fmt: skip
        cfg = self.config
        if reset_num_timesteps:
            self.num_timesteps = 0
        end = self.num_timesteps + total_timesteps
        self._before_learn(end)
        start_time, start_step = time.perf_counter(), self.num_timesteps
        bar = tqdm(total=total_timesteps, disable=not progress_bar, desc=self.display_name)
        while self.num_timesteps < end:
            if time_limit_s is not None and time.perf_counter() - start_time >= time_limit_s:
                break
            if stop():
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
            if self._evaluates_at(step, end):
                self._evaluate_and_log(step, checkpoint_dir, progress_bar)
            if checkpoint_dir is not None and checkpoint_freq and step % checkpoint_freq == 0:
                self.save(Path(checkpoint_dir) / f"iter_{step}.pt")
        bar.close()
        return self

    def save(self, path: str | Path) -> Path:
        """Atomically write everything needed to resume: config, network, optimiser, counters, RNG states."""
        state = {
            "algorithm": type(self).__name__,
            "target": self.target_name,
            "config": asdict(self.config),
            "seed": self.seed,
            "network": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "num_timesteps": self.num_timesteps,
            "best_metrics": self.best_metrics,
            "preset": self.preset,
            "rng": rng_state(),
            **self._state(),
        }
        return atomic_write(path, lambda tmp: torch.save(state, tmp))

    @classmethod
    def _from_checkpoint(
        cls: type[SelfTrainer], state: dict[str, Any], target: Any | None, device: str | torch.device
    ) -> SelfTrainer:
        """A fresh model with the checkpoint's target (or ``target``, an object in its place) and configuration,
        before its weights are restored."""
        return cls(target if target is not None else state["target"], seed=None, device=device, **state["config"])

    @classmethod
    def load(
        cls: type[SelfTrainer], path: str | Path, target: Any | None = None, device: str | torch.device = "auto"
    ) -> SelfTrainer:
        """Restore a saved model (pass ``target`` if it was built from an unregistered target object). Only tensors
        and plain values are read (``weights_only=True``): a file that holds anything else is refused."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise ValueError(
                f"{cls.__name__} cannot load {path}: it holds objects other than tensors and plain values, which are "
                "never unpickled (a checkpoint of an older version, or not a checkpoint)"
            ) from None
        except (RuntimeError, OSError, EOFError) as error:
            detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ValueError(
                f"{cls.__name__} cannot load {path}: truncated, or not a .pt checkpoint ({detail}); pass a checkpoint "
                f"{cls.__name__} saved"
            ) from None
        saved_by = state.get("algorithm", cls.__name__) if isinstance(state, dict) else None
        missing = [key for key in ("target", "config", "network", "optimizer", "rng") if key not in (state or {})]
        if saved_by != cls.__name__ or missing:
            what = f"a {saved_by} checkpoint" if saved_by not in (None, cls.__name__) else f"missing {missing}"
            raise ValueError(f"{cls.__name__} cannot load {path}: {what}; pass a checkpoint {cls.__name__} saved")
        model = cls._from_checkpoint(state, target, device)
        model.network.load_state_dict(state["network"])
        model.optimizer.load_state_dict(state["optimizer"])
        model._load_state(state)
        model.num_timesteps = state["num_timesteps"]
        model.best_metrics = state["best_metrics"]
        model.preset = state["preset"]
        model.seed = state["seed"]
        set_rng_state(state["rng"])
        return model
