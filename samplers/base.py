"""The base class of the library's samplers, as SB3's `BaseAlgorithm` is for its agents.

`BaseSampler` adds to `core.trainer.Trainer` (presets, seeding, the ``learn`` loop, checkpoints) what a sampler is:
a target energy, sampling in chunks from the (EMA) network, reference samples, and evaluation of samples against them
with the best checkpoint kept by the lowest ``energy_w2``. A subclass builds its networks in ``__init__`` and
implements `train_step` (one gradient step) and `_sample_chunk` (samples from a given network), plus `_state` /
`_load_state` for what it adds to a checkpoint.
"""

from __future__ import annotations

import abc
import copy
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from core.trainer import Preset, Trainer
from samplers.energies import Energy, make_energy
from samplers.metrics import sampler_metrics


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


class BaseSampler(Trainer):
    """A diffusion sampler of a target energy, with an SB3-like interface: ``learn``, ``sample``, ``evaluate``,
    ``save``/``load``, ``set_logger``.

    :param target: A registered energy name (GMM40, DW4, LJ13, LJ55) or an `Energy`
    :param seed: Seeds torch, numpy and random; None leaves them alone
    :param device: "auto", "cpu", "cuda", ...
    :param preset: "reference" (the paper's settings, `presets`), "cpu" (with `cpu_overrides`, minutes instead of
        hours on a CPU) or "auto": "cpu" on a CPU device, else "reference"
    :param hyperparams: Fields of the subclass's `config_class` overriding the preset
    """

    # Its `config_class` also has the fields ``eval_samples``, ``integration_steps``, ``ema_decay`` and
    # ``data_scale`` (the scale of the network's coordinates).

    #: The moving average of the network that samples (None: the network samples).
    ema: torch.optim.swa_utils.AveragedModel | None

    def __init__(
        self, target: str | Energy, seed: int | None = None, device: str | torch.device = "auto", preset: Preset = "auto",
        **hyperparams: Any,
    ) -> None:  # fmt: skip
        energy = make_energy(target) if isinstance(target, str) else target
        self.target_name = target if isinstance(target, str) else type(target).__name__
        self._check_target(energy)
        super().__init__(self.target_name, seed, device, preset, hyperparams)
        self.target = energy.to(self.device)
        self.energy_evaluations = 0
        self._latest_evaluation: tuple[int, Tensor, dict[str, float]] | None = None

    # --- what a subclass implements -------------------------------------------------------------------------------

    @property
    def selection_metric(self) -> str:
        """The evaluation metric whose lowest value selects ``best.pt``."""
        return "energy_w2"

    def _check_target(self, energy: Energy) -> None:
        """Raise a ValueError if this sampler cannot model ``energy``."""

    @abc.abstractmethod
    def _sample_chunk(self, network: nn.Module, n: int, generator: torch.Generator | None) -> Tensor:
        """``n`` samples in network coordinates from ``network`` (the trained network or its EMA)."""

    # --- what every sampler shares ---------------------------------------------------------------------------------

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

    def _evaluation(self, step: int, progress_bar: bool) -> dict[str, float] | None:
        """Metrics of ``eval_samples`` fresh samples (kept for `latest_evaluation`). Without reference samples on
        this machine, evaluation is switched off with one warning and training goes on."""
        samples = self.sample(self.config.eval_samples, progress_bar=progress_bar).cpu()
        try:
            metrics = self.evaluate(samples=samples)
        except FileNotFoundError as error:
            warnings.warn(f"{type(self).__name__} evaluation disabled: {error}", stacklevel=4)
            return None
        self._latest_evaluation = (step, samples, metrics)
        return metrics

    def _state(self) -> dict[str, Any]:
        return {"ema": None if self.ema is None else self.ema.state_dict(), "energy_evaluations": self.energy_evaluations}

    def _load_state(self, state: dict[str, Any]) -> None:
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        self.energy_evaluations = state["energy_evaluations"]
