"""The crystal generators: DiffCSP (Jiao et al., NeurIPS 2023, arXiv 2309.04475; reference `jiaor17/DiffCSP`
``diffcsp/pl_modules/diffusion_w_type.py``, ``scripts/generation.py``) and SymmCD (Levy et al., ICLR 2025,
arXiv 2502.03638; reference `sibasmarak/SymmCD` ``pl_modules/discrete_diffusion_w_site_symm.py``,
``scripts/generation.py``), trained by gradient steps on a registered dataset (`crystals.data`) with the library's
`core.trainer.Trainer`: ``DiffCSP("Perov5").learn(4000).sample(500)``.

Data: only the ``val`` and ``test`` splits of the CDVAE datasets exist here, so the models train on ``val`` and their
periodic evaluation is the loss on ``test`` (the first ``eval_crystals`` crystals, at fixed diffusion times with fixed
noise, so evaluations compare alike); both models see the same crystals (those `crystals.asu.decompose` splits).

- DiffCSP diffuses every atom of the Niggli cell (`crystals.batch.niggli_cells`): the 3×3 lattice by DDPM, fractional
  coordinates on the torus by score matching, atom types as a Gaussian-diffused one-hot (100 classes); loss weights
  1/1/20.
- SymmCD diffuses one representative per orbit (`crystals.batch.asymmetric_units`) conditioned on the space group:
  the lattice as the six numbers k under the group's family mask (DiffCSP++, arXiv 2402.03992, §3.2), coordinates as
  DiffCSP, atom types (94 classes) and the 15 site-symmetry rows (13 classes each) by D3PM with the training marginals
  as prior (or the absorbing token, ``prior="masked"``); loss weights 5/1/0.1/10. Sampling draws the group from its
  training frequency and the number of representatives from p(n | group), as the reference's ``SampleDataset``, and
  decodes every asymmetric unit with `crystals.decode.decode`, which fails loudly: `CrystalModel.generate` counts the
  failures with their reasons.

Both sample by DiffCSP's predictor-corrector loop (two network evaluations per step). ``sampling_steps`` below
T = 1000 takes an evenly strided sub-grid of the same schedules (`crystals.diffusion.DiffusionSchedules.strided`); the
CPU preset uses 250, a deviation from the references, which always use 1000.

Optimisation as both references (``conf/optim/default.yaml``, ``conf/train/default.yaml``): Adam 1e-3, gradients
clipped by value at 0.5, ReduceLROnPlateau (factor 0.6, patience 30) on the evaluation loss, here stepped once per
evaluation rather than per epoch.
"""

from __future__ import annotations

import abc
import time
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np
import torch
from pymatgen.core import Lattice, Structure
from torch import Tensor
from torch.nn import functional as F
from tqdm.auto import tqdm

from core.config import CheckedConfig, require_positive
from core.trainer import Preset, Trainer
from crystals.asu import SYMPREC, AsymmetricUnit
from crystals.batch import CrystalBatch, CrystalSet, asymmetric_units, niggli_cells
from crystals.data import dataset
from crystals.decode import DecodeError, decode
from crystals.diffusion import (
    CategoricalD3PM,
    CrystalDiffusionConfig,
    DiffusionSchedules,
    GaussianDDPM,
    LossWeights,
    WrappedNormalDiffusion,
    absorbing_prior,
    absorbing_x0_logits,
    constrain,
    sample_categorical,
)
from crystals.groups import space_group
from crystals.lattice import family_mask, k_to_lattice, lattice_to_k
from crystals.processed import ProcessedSplit, processed_split
from crystals.site_symmetry import DIRECTIONS, SPACE_GROUP_VECTOR_SIZE, SYMBOLS
from equivariant.cspnet import CSPNet, CSPNetConfig, CSPNetOutput

#: Seed of the evaluation's diffusion times and noise: every evaluation of every run sees the same noisy crystals.
EVAL_SEED = 12_345
#: Space-group numbers index tables of 231 rows (row 0 unused).
GROUP_ROWS = 231


@dataclass(frozen=True)
class CrystalModelConfig(CheckedConfig):
    """What DiffCSP and SymmCD share. The defaults are the CPU benchmark's sizes; `DiffCSP.presets` and
    `SymmCD.presets` hold the references'."""

    hidden_dim: int = 128
    """Width of CSPNet's node features and messages (DiffCSP 512, SymmCD 1024)."""
    n_layers: int = 4
    """CSPNet message-passing layers (DiffCSP 6, SymmCD 8)."""
    n_frequencies: int = 32
    """Fourier frequencies of the edge features (both 128)."""
    time_dim: int = 64
    """Width of the sinusoidal time embedding (DiffCSP 256, SymmCD 10)."""
    batch_size: int = 128
    """Crystals per gradient step."""
    learning_rate: float = 1e-3
    """Adam's learning rate (both references)."""
    grad_clip_value: float = 0.5
    """Gradients are clipped elementwise to ±this (Lightning's gradient_clip_val with algorithm 'value')."""
    lr_decay_factor: float = 0.6
    """ReduceLROnPlateau's factor on the evaluation loss."""
    lr_patience: int = 30
    """Evaluations without improvement before the learning rate decays (the references: 30 epochs)."""
    min_learning_rate: float = 1e-4
    """Floor of the decayed learning rate (DiffCSP 1e-4, SymmCD 1e-6)."""
    lattice_weight: float = 1.0
    """Weight of the lattice loss."""
    coordinate_weight: float = 1.0
    """Weight of the coordinate score-matching loss."""
    type_weight: float = 20.0
    """Weight of the atom-type loss."""
    sampling_steps: int = 250
    """Predictor-corrector steps of sampling, an evenly strided sub-grid of the T = 1000 training steps (the
    references: 1000)."""
    step_lr: float = 1e-5
    """Langevin corrector step size γ = step_lr·(σ_t/σ_1)² (DiffCSP: perov 1e-6, carbon 1e-5, MP-20 5e-6)."""
    sample_batch_size: int = 500
    """Crystals sampled at once."""
    eval_crystals: int = 256
    """Test crystals of the periodic evaluation loss."""
    eval_freq: int = 500
    """Gradient steps between evaluations (0: only the final one)."""
    log_interval: int = 100
    """Gradient steps between logged losses."""
    symprec: float = SYMPREC
    """spglib's tolerance (Å) of the preprocessing (`crystals.processed`) and of the samples' space groups."""
    clip_denoised_lattice: bool = True
    """Before each DDPM step of the lattice in sampling, clip its x̂₀ = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t elementwise to the
    training range widened by half its width on each side (the clip_denoised of Ho et al.'s DDPM code; neither
    reference clips). The first step multiplies ε̂'s error by 1/√α_T = 100 (400 at 250 strided steps): an imprecise
    network samples cells of 10⁴ Å (DiffCSP) or overflows L = exp(Σ k_i B_i) (SymmCD). The clip binds only where x̂₀
    leaves the data's range; both models have it, so that it does not decide their comparison."""

    def __post_init__(self) -> None:
        super().__post_init__()
        positive = ("hidden_dim", "n_layers", "n_frequencies", "time_dim", "batch_size", "lr_patience",
                    "sampling_steps", "sample_batch_size", "eval_crystals", "log_interval", "learning_rate",
                    "grad_clip_value", "min_learning_rate", "step_lr", "symprec")  # fmt: skip
        require_positive(self, positive)
        if self.eval_freq < 0:
            raise ValueError(f"eval_freq must be >= 0, got {self.eval_freq}")
        if not 0 < self.lr_decay_factor < 1:
            raise ValueError(f"lr_decay_factor must lie in (0, 1), got {self.lr_decay_factor}")
        if not 1 <= self.sampling_steps <= CrystalDiffusionConfig().timesteps:
            raise ValueError(f"sampling_steps must lie in [1, 1000], got {self.sampling_steps}")
        if self.time_dim < 4 or self.time_dim % 2:
            raise ValueError(f"time_dim must be even and at least 4, got {self.time_dim}")


class Processes(NamedTuple):
    """The diffusion processes on one grid of steps (the training grid, or a strided one for sampling)."""

    schedules: DiffusionSchedules
    gaussian: GaussianDDPM
    coordinates: WrappedNormalDiffusion
    categorical: CategoricalD3PM

    @classmethod
    def of(cls, schedules: DiffusionSchedules) -> Processes:
        return cls(schedules, GaussianDDPM(schedules), WrappedNormalDiffusion(schedules), CategoricalD3PM(schedules))


#: A sampled crystal: its structure, or the reason it has none; and the space group it was sampled in (None: DiffCSP
#: samples no group).
Decoded = tuple[Structure | str, int | None]


@dataclass(frozen=True, eq=False)
class Generated:
    """Sampled crystals: those that decoded (in order) with each one's sampled space group (None for DiffCSP), the
    reason of every failure, the nodes of every sampled crystal and the seconds sampling and decoding took."""

    structures: list[Structure]
    space_groups: list[int | None]
    failures: list[str]
    nodes: list[int]
    seconds: float

    @property
    def requested(self) -> int:
        return len(self.nodes)


class CrystalModel(Trainer):
    """What DiffCSP and SymmCD share: the data of a registered dataset, the training step, the evaluation loss, the
    predictor-corrector sampling loop and the checkpoint state. A subclass sets its nodes (`_crystal_set`), network
    (`_network_config`), training statistics (`_statistics`), noisy inputs and losses (`_losses`) and its sampler's
    prior, denoiser call, reverse step and decoding.

    :param target: A registered dataset name (`crystals.data.DATASETS`)
    :param seed: Seeds torch, numpy and random, and the generator of minibatches and noise; None leaves them alone
    :param device: "auto", "cpu", "cuda", ...
    :param preset: "reference" (the paper's sizes), "cpu" (the CPU benchmark's) or "auto" (by the device)
    :param hyperparams: Fields of `config_class` overriding the preset
    """

    evaluates_at_end = True  # one forward pass over eval_crystals: the final loss is always measured
    selection_metric = "loss"
    config: CrystalModelConfig

    def __init__(self, target: str, seed: int | None = None, device: str | torch.device = "auto",
                 preset: Preset = "auto", **hyperparams: Any) -> None:  # fmt: skip
        super().__init__(dataset(target).name, seed, device, preset, hyperparams)
        cfg = self.config
        self.generator = torch.Generator(self.device)
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)
        self.schedules = DiffusionSchedules().to(self.device)
        self.processes = Processes.of(self.schedules)
        self.train_set = self._crystal_set("val").to(self.device)
        self.statistics = {key: value.to(self.device) for key, value in self._statistics(self.train_set).items()}
        self.network = CSPNet(self._network_config()).to(self.device)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=cfg.learning_rate)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, factor=cfg.lr_decay_factor, patience=cfg.lr_patience, min_lr=cfg.min_learning_rate
        )
        self._eval_set: CrystalSet | None = None

    # --- what a model defines -------------------------------------------------------------------------------------

    @abc.abstractmethod
    def _crystal_set(self, split: str) -> CrystalSet:
        """The model's nodes of every crystal of a split (on the CPU)."""

    @abc.abstractmethod
    def _network_config(self) -> CSPNetConfig:
        """The denoiser's sizes."""

    @abc.abstractmethod
    def _statistics(self, train_set: CrystalSet) -> dict[str, Tensor]:
        """What sampling draws from, counted on the training crystals (saved with the model)."""

    @property
    @abc.abstractmethod
    def loss_weights(self) -> LossWeights:
        """The weights of the loss terms."""

    @abc.abstractmethod
    def _losses(self, batch: CrystalBatch, t: Tensor, generator: torch.Generator | None) -> dict[str, Tensor]:
        """Noise ``batch`` at steps ``t`` (B,), denoise it and return the loss terms (`LossWeights.total`'s keywords)."""

    @abc.abstractmethod
    def _initial_state(self, n: int, generator: torch.Generator | None) -> Any:
        """The sampler's state at t = T for ``n`` crystals: a NamedTuple with ``batch`` and ``frac_coords``."""

    @abc.abstractmethod
    def _denoise(self, state: Any, t: Tensor) -> CSPNetOutput:
        """The network on a sampler state at full-grid times ``t`` (B,)."""

    @abc.abstractmethod
    def _reverse_step(self, state: Any, output: CSPNetOutput, t: Tensor, processes: Processes,
                      generator: torch.Generator | None) -> Any:  # fmt: skip
        """The predictor's step of everything but the coordinates, from step ``t`` (B,) of ``processes``' grid."""

    @abc.abstractmethod
    def _decode(self, state: Any) -> list[Decoded]:
        """The crystals of a final state."""

    # --- training and evaluation ----------------------------------------------------------------------------------

    def train_step(self) -> dict[str, float]:
        """One Adam step on a random minibatch of training crystals at uniform diffusion steps."""
        batch = self.train_set.random_batch(self.config.batch_size, self.generator)
        t = self.schedules.sample_timesteps(len(batch.space_group), self.generator)
        terms = self._losses(batch, t, self.generator)
        loss = self.loss_weights.total(**terms)
        self._finite_or_raise(loss, "lower learning_rate or grad_clip_value")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_value_(self.network.parameters(), self.config.grad_clip_value)
        self.optimizer.step()
        self.num_timesteps += 1
        return {"loss": loss.item(), **{f"{name}_loss": term.item() for name, term in terms.items()}}

    def evaluation_set(self) -> CrystalSet:
        """The first ``eval_crystals`` crystals of the test split (loaded on first use)."""
        if self._eval_set is None:
            test = self._crystal_set("test")
            self._eval_set = test.subset(torch.arange(min(self.config.eval_crystals, len(test)))).to(self.device)
        return self._eval_set

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """The loss and its terms on the evaluation crystals, at diffusion steps evenly spread over 1..T and noise
        from a fixed seed."""
        crystals = self.evaluation_set()
        batch = crystals.batch(torch.arange(len(crystals), device=self.device))
        t = torch.linspace(1, self.schedules.timesteps, len(crystals), device=self.device).round().long()
        terms = self._losses(batch, t, torch.Generator(self.device).manual_seed(EVAL_SEED))
        return {"loss": self.loss_weights.total(**terms).item(), **{f"{k}_loss": v.item() for k, v in terms.items()}}

    def _evaluation(self, step: int, progress_bar: bool) -> dict[str, float]:
        metrics = self.evaluate()
        self.scheduler.step(metrics["loss"])
        return metrics

    # --- sampling -------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, n: int, seed: int | None = None, progress_bar: bool = False) -> Generated:
        """Sample ``n`` crystals, ``sample_batch_size`` at a time, and decode them; failures are counted with their
        reasons, never dropped silently. ``seed`` uses a private generator (the global RNG is left alone); None draws
        from the global RNG."""
        if n < 1:
            raise ValueError(f"n must be positive, got {n}")
        cfg = self.config
        generator = None if seed is None else torch.Generator(self.device).manual_seed(seed)
        processes = Processes.of(self.schedules.strided(cfg.sampling_steps))
        sizes = [min(cfg.sample_batch_size, n - start) for start in range(0, n, cfg.sample_batch_size)]
        bar = tqdm(total=len(sizes) * cfg.sampling_steps, desc=f"sampling {n}", unit="step", disable=not progress_bar,
                   leave=False)  # fmt: skip
        decoded: list[Decoded] = []
        nodes: list[int] = []
        start = time.perf_counter()
        self.network.eval()
        try:
            for size in sizes:
                state = self._sample_state(size, processes, generator, bar)
                decoded += self._decode(state)
                nodes += torch.bincount(state.batch, minlength=size).tolist()
        finally:
            self.network.train()
            bar.close()
        kept = [(crystal, group) for crystal, group in decoded if isinstance(crystal, Structure)]
        return Generated(structures=[crystal for crystal, _ in kept], space_groups=[group for _, group in kept],
                         failures=[crystal for crystal, _ in decoded if isinstance(crystal, str)], nodes=nodes,
                         seconds=time.perf_counter() - start)  # fmt: skip

    def sample(self, n: int, seed: int | None = None, progress_bar: bool = False) -> list[Structure]:
        """``n`` sampled crystals as pymatgen structures, fewer when some did not decode (then a warning says how
        many; `generate` gives the reasons)."""
        generated = self.generate(n, seed, progress_bar)
        if generated.failures:
            warnings.warn(f"{len(generated.failures)} of {n} sampled crystals did not decode (first: "
                          f"{generated.failures[0]}); generate() lists the reasons", stacklevel=2)  # fmt: skip
        return generated.structures

    def _sample_state(self, n: int, processes: Processes, generator: torch.Generator | None, bar: tqdm) -> Any:
        """DiffCSP's predictor-corrector loop from t = T to 1 on ``processes``' grid: a Langevin corrector step on
        the coordinates, then the reverse step of every variable, each after its own network evaluation."""
        state = self._initial_state(n, generator)
        coordinates = processes.coordinates
        for step in range(processes.schedules.timesteps, 0, -1):
            t = torch.full((n,), step, device=self.device)
            network_t, node_t = processes.schedules.grid[t], t[state.batch]
            output = self._denoise(state, network_t)
            state = state._replace(frac_coords=coordinates.corrector_step(
                state.frac_coords, output.coordinates, node_t, self.config.step_lr, generator))  # fmt: skip
            output = self._denoise(state, network_t)
            moved = coordinates.predictor_step(state.frac_coords, output.coordinates, node_t, generator)
            state = self._reverse_step(state._replace(frac_coords=moved), output, t, processes, generator)
            bar.update(1)
        return state

    def _lattice_noise(self, lattice: Tensor, predicted_noise: Tensor, t: Tensor, processes: Processes) -> Tensor:
        """The lattice's ε̂, or with ``clip_denoised_lattice`` the ε̂ whose x̂₀ is clipped to `lattice_range`."""
        if not self.config.clip_denoised_lattice:
            return predicted_noise
        alpha_bar = processes.schedules.at(processes.schedules.alphas_cumprod, t, lattice)
        denoised = (lattice - (1 - alpha_bar).sqrt() * predicted_noise) / alpha_bar.sqrt()
        low, high = self.statistics["lattice_low"].to(lattice), self.statistics["lattice_high"].to(lattice)
        return (lattice - alpha_bar.sqrt() * torch.clamp(denoised, low, high)) / (1 - alpha_bar).sqrt()

    # --- checkpoints ----------------------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "scheduler": self.scheduler.state_dict(),
                "statistics": {key: value.cpu() for key, value in self.statistics.items()}}  # fmt: skip

    def _load_state(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.statistics = {key: value.to(self.device) for key, value in state["statistics"].items()}

    def _processed(self, split: str) -> ProcessedSplit:
        return processed_split(self.target_name, split, self.config.symprec)


def lattice_range(lattices: Tensor) -> dict[str, Tensor]:
    """Elementwise bounds of the lattice representation (B, ...) for ``clip_denoised_lattice``: the training range
    widened by half its width on each side (an entry every crystal shares stays fixed)."""
    low, high = lattices.min(0).values, lattices.max(0).values
    return {"lattice_low": low - (high - low) / 2, "lattice_high": high + (high - low) / 2}


def _counts(values: Tensor, size: int) -> Tensor:
    """How often each of 0..size-1 occurs in ``values``, as float64."""
    return torch.bincount(values, minlength=size).to(torch.float64)


def _check_atomic_numbers(crystals: CrystalSet, classes: int, model: str) -> None:
    if int(crystals.atomic_numbers.max()) > classes:
        raise ValueError(f"{model} models elements up to Z = {classes}; the data hold Z = "
                         f"{int(crystals.atomic_numbers.max())}")  # fmt: skip


def _per_crystal(batch: Tensor, crystals: int, *values: Tensor) -> list[list[np.ndarray]]:
    """Each of ``values`` (per node, nodes in crystal order) split into its crystals' arrays."""
    ends = np.cumsum(np.bincount(batch.cpu().numpy(), minlength=crystals))[:-1]
    return [np.split(value.cpu().numpy(), ends) for value in values]


# --- DiffCSP --------------------------------------------------------------------------------------------------------

#: DiffCSP's atom types: one-hot over Z = 1..100 (``MAX_ATOMIC_NUM`` of ``diffusion_w_type.py``).
DIFFCSP_TYPES = 100


@dataclass(frozen=True)
class DiffCSPConfig(CrystalModelConfig):
    """DiffCSP's knobs: the shared ones with its loss weights (``conf/model/diffusion_w_type.yaml``: 1/1/20)."""


class DiffCSPState(NamedTuple):
    """DiffCSP's sampler state: per crystal the 3×3 lattice, per atom its coordinates and soft one-hot type."""

    batch: Tensor
    frac_coords: Tensor
    lattice: Tensor
    types: Tensor


def _diffcsp_reference(batch_size: int, step_lr: float) -> DiffCSPConfig:
    return DiffCSPConfig(hidden_dim=512, n_layers=6, n_frequencies=128, time_dim=256, batch_size=batch_size,
                         step_lr=step_lr, sampling_steps=1000)  # fmt: skip


#: The CPU benchmark's network (both models): about 0.5 M parameters.
_CPU_NETWORK = {"hidden_dim": 128, "n_layers": 4, "n_frequencies": 32, "time_dim": 64, "sampling_steps": 250}
#: The CPU benchmark's batch and corrector step per dataset (the MP datasets' are not measured).
_CPU_RUNS = {"Perov5": {"batch_size": 128, "step_lr": 1e-6}, "Carbon24": {"batch_size": 64, "step_lr": 1e-5},
             "MP20BiTernary": {"batch_size": 64, "step_lr": 5e-6}, "MPTS52": {"batch_size": 64, "step_lr": 5e-6}}  # fmt: skip


class DiffCSP(CrystalModel):
    """DiffCSP's ab initio generation model (``CSPDiffusion`` of ``diffusion_w_type.py``): every atom of the Niggli
    cell, the 3×3 lattice and Gaussian one-hot types diffused by DDPM, coordinates by the wrapped normal.
    ``DiffCSP("Carbon24").learn(2500).sample(500)``."""

    config_class: ClassVar[type] = DiffCSPConfig
    #: The reference's generation settings per dataset (``conf/data/*.yaml``, ``scripts/generation.py``); MP-style
    #: datasets take MP-20's.
    presets: ClassVar[dict[str, Any]] = {
        "Perov5": _diffcsp_reference(1024, 1e-6),
        "Carbon24": _diffcsp_reference(256, 1e-5),
        "MP20BiTernary": _diffcsp_reference(256, 5e-6),
        "MPTS52": _diffcsp_reference(256, 5e-6),
    }
    cpu_overrides: ClassVar[dict[str, dict[str, Any]]] = {name: {**_CPU_NETWORK, **run} for name, run in _CPU_RUNS.items()}
    config: DiffCSPConfig

    def _crystal_set(self, split: str) -> CrystalSet:
        crystals = niggli_cells(self._processed(split))
        _check_atomic_numbers(crystals, DIFFCSP_TYPES, "DiffCSP")
        return crystals

    def _network_config(self) -> CSPNetConfig:
        cfg = self.config
        return CSPNetConfig(type_dim=DIFFCSP_TYPES, hidden_dim=cfg.hidden_dim, n_layers=cfg.n_layers,
                            n_frequencies=cfg.n_frequencies, time_dim=cfg.time_dim)  # fmt: skip

    def _statistics(self, train_set: CrystalSet) -> dict[str, Tensor]:
        """The training distribution of atoms per cell (the reference's ``train_dist``, recomputed for our split) and
        the range of the lattice matrices (`lattice_range`)."""
        return {"atom_counts": _counts(train_set.num_nodes, int(train_set.num_nodes.max()) + 1),
                **lattice_range(train_set.lattice)}  # fmt: skip

    @property
    def loss_weights(self) -> LossWeights:
        cfg = self.config
        return LossWeights(cfg.lattice_weight, cfg.coordinate_weight, cfg.type_weight, site_symmetry=0.0)

    def _losses(self, batch: CrystalBatch, t: Tensor, generator: torch.Generator | None) -> dict[str, Tensor]:
        gaussian, coordinates = self.processes.gaussian, self.processes.coordinates
        node_t = t[batch.batch]
        types = F.one_hot(batch.atomic_numbers - 1, DIFFCSP_TYPES).to(batch.frac_coords.dtype)
        lattice_noise, coordinate_noise, type_noise = (_normal(x, generator) for x in
                                                       (batch.lattice, batch.frac_coords, types))  # fmt: skip
        output = self.network(gaussian.noised(types, node_t, type_noise),
                              coordinates.noised(batch.frac_coords, node_t, coordinate_noise),
                              gaussian.noised(batch.lattice, t, lattice_noise), batch.batch, t)  # fmt: skip
        return {"lattice": gaussian.loss(output.lattice, lattice_noise),
                "coordinates": coordinates.loss(output.coordinates, node_t, coordinate_noise),
                "types": gaussian.loss(output.types, type_noise)}  # fmt: skip

    def _initial_state(self, n: int, generator: torch.Generator | None) -> DiffCSPState:
        atoms = torch.multinomial(self.statistics["atom_counts"], n, replacement=True, generator=generator)
        batch = torch.repeat_interleave(torch.arange(n, device=self.device), atoms)
        return DiffCSPState(batch, _uniform((len(batch), 3), generator, self.device),
                            _normal(torch.empty(n, 3, 3, device=self.device), generator),
                            _normal(torch.empty(len(batch), DIFFCSP_TYPES, device=self.device), generator))  # fmt: skip

    def _denoise(self, state: DiffCSPState, t: Tensor) -> CSPNetOutput:
        return self.network(state.types, state.frac_coords, state.lattice, state.batch, t)

    def _reverse_step(self, state: DiffCSPState, output: CSPNetOutput, t: Tensor, processes: Processes,
                      generator: torch.Generator | None) -> DiffCSPState:  # fmt: skip
        gaussian = processes.gaussian
        noise = self._lattice_noise(state.lattice, output.lattice, t, processes)
        return state._replace(lattice=gaussian.reverse_step(state.lattice, noise, t, generator=generator),
                              types=gaussian.reverse_step(state.types, output.types, t[state.batch],
                                                          generator=generator))  # fmt: skip

    def _decode(self, state: DiffCSPState) -> list[Decoded]:
        """Types by argmax, the cell as sampled; a lattice that is not finite or has no volume is a failure."""
        lattices = state.lattice.double().cpu().numpy()
        numbers, coords = _per_crystal(state.batch, len(lattices), state.types.argmax(-1) + 1, state.frac_coords.double())
        return [("the lattice is not finite or has no volume" if not np.all(np.isfinite(lattice))
                 or abs(np.linalg.det(lattice)) < 1e-6 else Structure(Lattice(lattice), z.tolist(), x), None)
                for lattice, z, x in zip(lattices, numbers, coords)]  # fmt: skip


# --- SymmCD ---------------------------------------------------------------------------------------------------------

#: SymmCD's atom types: Z = 1..94 (``MAX_ATOMIC_NUM`` of ``discrete_diffusion_w_site_symm.py``).
SYMMCD_TYPES = 94
SITE_ROWS, SITE_CLASSES = len(DIRECTIONS), len(SYMBOLS)


@dataclass(frozen=True)
class SymmCDConfig(CrystalModelConfig):
    """SymmCD's knobs: the shared ones with its loss weights (``conf/model/discrete_diffusion_w_site_symm.yaml``:
    5/1/0.1/10), the space-group MLP and the site-symmetry head."""

    min_learning_rate: float = 1e-6
    """Floor of the decayed learning rate."""
    lattice_weight: float = 5.0
    """Weight of the k loss."""
    type_weight: float = 0.1
    """Weight of the atom-type cross-entropy."""
    site_symmetry_weight: float = 10.0
    """Weight of the site-symmetry cross-entropy (averaged over the 15 rows)."""
    condition_embed_dim: int = 128
    """Output width of the space-group MLP 397 → 128 → 128 → this (the reference: 512)."""
    site_symmetry_rank: int = 8
    """Rank of the site-symmetry logits, (15 × rank)(rank × 13) (the reference: 8; 0: a full Linear)."""
    prior: Literal["marginal", "masked"] = "marginal"
    """D3PM prior of types and site symmetry: "marginal" (the training marginals: types global, site symmetry per
    group and row) or "masked" (an absorbing token)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.site_symmetry_weight < 0 or self.condition_embed_dim < 1 or self.site_symmetry_rank < 0:
            raise ValueError("site_symmetry_weight and site_symmetry_rank must be >= 0, condition_embed_dim positive")


class SymmCDState(NamedTuple):
    """SymmCD's sampler state: per crystal its group and k (with the family's mask and bias), per representative its
    coordinates, type class and site-symmetry classes (15)."""

    batch: Tensor
    frac_coords: Tensor
    space_group: Tensor
    k: Tensor
    types: Tensor
    site_symmetry: Tensor


def _symmcd_reference(batch_size: int) -> SymmCDConfig:
    return SymmCDConfig(hidden_dim=1024, n_layers=8, n_frequencies=128, time_dim=10, condition_embed_dim=512,
                        batch_size=batch_size, step_lr=1e-5, sampling_steps=1000)  # fmt: skip


class SymmCD(CrystalModel):
    """SymmCD (Levy et al., ICLR 2025): the asymmetric unit of a crystal, conditioned on its space group, diffused
    with its site symmetry and decoded to the full crystal with the group's Wyckoff positions.
    ``SymmCD("Carbon24").learn(2500).sample(500)``."""

    config_class: ClassVar[type] = SymmCDConfig
    #: The reference's settings per dataset (``conf/data/*.yaml``: batch perov 1024, carbon 256, MP-20 512;
    #: ``scripts/generation.py``: step_lr 1e-5); MP-style datasets take MP-20's.
    presets: ClassVar[dict[str, Any]] = {
        "Perov5": _symmcd_reference(1024),
        "Carbon24": _symmcd_reference(256),
        "MP20BiTernary": _symmcd_reference(512),
        "MPTS52": _symmcd_reference(512),
    }
    cpu_overrides: ClassVar[dict[str, dict[str, Any]]] = {
        name: {**_CPU_NETWORK, "condition_embed_dim": 128, **run} for name, run in _CPU_RUNS.items()
    }
    config: SymmCDConfig

    def __init__(self, target: str, seed: int | None = None, device: str | torch.device = "auto",
                 preset: Preset = "auto", **hyperparams: Any) -> None:  # fmt: skip
        super().__init__(target, seed, device, preset, **hyperparams)
        mask, bias = family_mask(torch.arange(1, GROUP_ROWS))
        self._k_mask, self._k_bias = (F.pad(value, (0, 0, 1, 0)).to(self.device, torch.float32) for value in (mask, bias))
        self._group_vectors = torch.zeros(GROUP_ROWS, SPACE_GROUP_VECTOR_SIZE, device=self.device)
        self._vectors_built: set[int] = set()

    @property
    def masked(self) -> bool:
        return self.config.prior == "masked"

    def _crystal_set(self, split: str) -> CrystalSet:
        crystals = asymmetric_units(self._processed(split))
        _check_atomic_numbers(crystals, SYMMCD_TYPES, "SymmCD")
        return crystals

    def _network_config(self) -> CSPNetConfig:
        cfg, token = self.config, int(self.masked)
        return CSPNetConfig(type_dim=SYMMCD_TYPES + token, hidden_dim=cfg.hidden_dim, n_layers=cfg.n_layers,
                            n_frequencies=cfg.n_frequencies, time_dim=cfg.time_dim, lattice_out_dim=6,
                            condition_dim=SPACE_GROUP_VECTOR_SIZE + 6, condition_embed_dim=cfg.condition_embed_dim,
                            node_feature_dim=SITE_ROWS * (SITE_CLASSES + token), absolute_coordinates=True,
                            site_symmetry_rows=SITE_ROWS, site_symmetry_classes=SITE_CLASSES + token,
                            site_symmetry_rank=cfg.site_symmetry_rank)  # fmt: skip

    def _statistics(self, train_set: CrystalSet) -> dict[str, Tensor]:
        """Training frequencies of the groups and of the number of representatives per group (``SampleDataset``),
        the range of k (`lattice_range`) and the D3PM priors (`_priors_of`)."""
        groups = train_set.space_group
        node_counts = torch.zeros(GROUP_ROWS, int(train_set.num_nodes.max()) + 1, dtype=torch.float64)
        node_counts.index_put_((groups, train_set.num_nodes), torch.ones(len(groups), dtype=torch.float64),
                               accumulate=True)  # fmt: skip
        return {"group_counts": _counts(groups, GROUP_ROWS), "node_counts": node_counts,
                **lattice_range(lattice_to_k(train_set.lattice)), **self._priors_of(train_set)}  # fmt: skip

    def _priors_of(self, train_set: CrystalSet) -> dict[str, Tensor]:
        """The absorbing token's priors, or the training marginals: of types over all representatives, of site
        symmetry per group and row (a group absent from training, met only in evaluation, takes the per-row marginal
        over all groups)."""
        if self.masked:
            return {
                "type_prior": absorbing_prior(SYMMCD_TYPES).double(),
                "site_prior": absorbing_prior(SITE_CLASSES).double().expand(GROUP_ROWS, SITE_ROWS, -1).clone(),
            }
        node_groups = torch.repeat_interleave(train_set.space_group, train_set.num_nodes)
        site = torch.zeros(GROUP_ROWS, SITE_ROWS, SITE_CLASSES, dtype=torch.float64)
        rows = torch.arange(SITE_ROWS).expand(len(node_groups), -1)
        site.index_put_((node_groups[:, None].expand_as(rows), rows, train_set.site_symmetry),
                        torch.ones(rows.shape, dtype=torch.float64), accumulate=True)  # fmt: skip
        overall = site.sum(0) / site.sum((0, 2))[:, None]
        seen = site.sum((1, 2)) > 0
        site_prior = torch.where(seen[:, None, None], site / site.sum(-1, keepdim=True).clamp(min=1), overall)
        types = _counts(train_set.atomic_numbers - 1, SYMMCD_TYPES)
        return {"type_prior": types / types.sum(), "site_prior": site_prior}

    @property
    def loss_weights(self) -> LossWeights:
        cfg = self.config
        return LossWeights(cfg.lattice_weight, cfg.coordinate_weight, cfg.type_weight, cfg.site_symmetry_weight)

    def _group_inputs(self, groups: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per crystal its family's k mask and bias (B, 6) and its group's 397-number vector (B, 397), from tables
        over the 230 groups (a vector is built on the first use of its group)."""
        for number in set(groups.unique().tolist()) - self._vectors_built:
            self._group_vectors[number] = torch.tensor(space_group(number).vector, dtype=torch.float32)
            self._vectors_built.add(number)
        return self._k_mask[groups], self._k_bias[groups], self._group_vectors[groups]

    def _priors(self, groups: Tensor, batch: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """The type prior (K,) and the site-symmetry prior of every representative (N, 15, C)."""
        return self.statistics["type_prior"].to(dtype), self.statistics["site_prior"][groups][batch].to(dtype)

    def _network(self, types: Tensor, site_symmetry: Tensor, frac_coords: Tensor, k: Tensor, batch: Tensor,
                 groups: Tensor, t: Tensor) -> CSPNetOutput:  # fmt: skip
        """The denoiser on class indices: one-hot types and site-symmetry rows, the lattice L(k) = exp(Σ k_i B_i)
        (whose L Lᵀ = exp(2 Σ k_i B_i) CSPNet's messages read) and the condition [group vector, k]. The reference's
        messages read k itself; CSPNet reads L Lᵀ, so k joins the condition: the ε of k is then a linear read-out at
        high noise, where the sampler's first DDPM step amplifies its error 100-fold (400-fold at 250 strided
        steps). With the absorbing prior, p̂(x₀|z_t) never predicts the token and keeps revealed classes
        (`absorbing_x0_logits`)."""
        token = int(self.masked)
        output = self.network(F.one_hot(types, SYMMCD_TYPES + token).to(k.dtype), frac_coords, k_to_lattice(k), batch,
                              t, condition=torch.cat([self._group_inputs(groups)[2], k], dim=-1),
                              node_features=F.one_hot(site_symmetry, SITE_CLASSES + token).flatten(1).to(k.dtype))  # fmt: skip
        if not self.masked:
            return output
        return output._replace(types=absorbing_x0_logits(output.types, types),
                               site_symmetry=absorbing_x0_logits(output.site_symmetry, site_symmetry))  # fmt: skip

    def _losses(self, batch: CrystalBatch, t: Tensor, generator: torch.Generator | None) -> dict[str, Tensor]:
        processes, node_t = self.processes, t[batch.batch]
        mask, bias, _ = self._group_inputs(batch.space_group)
        k = lattice_to_k(batch.lattice).to(batch.lattice)
        k_noise, coordinate_noise = _normal(k, generator), _normal(batch.frac_coords, generator)
        type_prior, site_prior = self._priors(batch.space_group, batch.batch, k.dtype)
        types, site_symmetry = batch.atomic_numbers - 1, batch.site_symmetry
        assert site_symmetry is not None  # asymmetric units carry their labels
        output = self._network(processes.categorical.noised(types, node_t, type_prior, generator),
                               processes.categorical.noised(site_symmetry, node_t, site_prior, generator),
                               processes.coordinates.noised(batch.frac_coords, node_t, coordinate_noise),
                               processes.gaussian.noised(k, t, k_noise, mask, bias),
                               batch.batch, batch.space_group, t)  # fmt: skip
        return {"lattice": processes.gaussian.loss(output.lattice, k_noise, mask),
                "coordinates": processes.coordinates.loss(output.coordinates, node_t, coordinate_noise),
                "types": CategoricalD3PM.loss(output.types, types),
                "site_symmetry": CategoricalD3PM.loss(output.site_symmetry, site_symmetry)}  # fmt: skip

    def _initial_state(self, n: int, generator: torch.Generator | None) -> SymmCDState:
        """The group from its training frequency, the number of representatives from p(n | group), k from the masked
        normal, coordinates uniform, types and site symmetry from the priors."""
        groups = torch.multinomial(self.statistics["group_counts"], n, replacement=True, generator=generator)
        nodes = torch.multinomial(self.statistics["node_counts"][groups], 1, generator=generator).squeeze(1)
        batch = torch.repeat_interleave(torch.arange(n, device=self.device), nodes)
        mask, bias, _ = self._group_inputs(groups)
        type_prior, site_prior = self._priors(groups, batch, torch.float32)
        return SymmCDState(batch=batch, frac_coords=_uniform((len(batch), 3), generator, self.device),
                           space_group=groups,
                           k=constrain(_normal(torch.empty(n, 6, device=self.device), generator), mask, bias),
                           types=sample_categorical(type_prior.expand(len(batch), -1), generator),
                           site_symmetry=sample_categorical(site_prior, generator))  # fmt: skip

    def _denoise(self, state: SymmCDState, t: Tensor) -> CSPNetOutput:
        return self._network(state.types, state.site_symmetry, state.frac_coords, state.k, state.batch,
                             state.space_group, t)  # fmt: skip

    def _reverse_step(self, state: SymmCDState, output: CSPNetOutput, t: Tensor, processes: Processes,
                      generator: torch.Generator | None) -> SymmCDState:  # fmt: skip
        mask, bias, _ = self._group_inputs(state.space_group)
        type_prior, site_prior = self._priors(state.space_group, state.batch, torch.float32)
        node_t, categorical = t[state.batch], processes.categorical
        assert output.site_symmetry is not None
        return state._replace(
            k=processes.gaussian.reverse_step(state.k, self._lattice_noise(state.k, output.lattice, t, processes), t,
                                              mask, bias, generator),
            types=categorical.reverse_step(_diverged_as_uniform(output.types), state.types, node_t, type_prior,
                                           generator),
            site_symmetry=categorical.reverse_step(_diverged_as_uniform(output.site_symmetry), state.site_symmetry,
                                                   node_t, site_prior, generator),
        )  # fmt: skip

    def _decode(self, state: SymmCDState) -> list[Decoded]:
        """Every asymmetric unit through `crystals.decode.decode`; a `DecodeError` (or an invalid unit: a lattice
        that is not finite) becomes its reason."""
        groups = state.space_group.tolist()
        lattices = k_to_lattice(state.k.double()).cpu().numpy()
        units = zip(*_per_crystal(state.batch, len(groups), state.types + 1, state.frac_coords.double(),
                                  state.site_symmetry))  # fmt: skip
        crystals: list[Decoded] = []
        for group, lattice, unit in zip(groups, lattices, units):
            try:
                crystals.append((decode(AsymmetricUnit(group, lattice, *unit)).structure, group))
            except (DecodeError, ValueError) as error:
                crystals.append((f"{type(error).__name__}: {error}", group))
        return crystals


def _diverged_as_uniform(logits: Tensor) -> Tensor:
    """``logits`` with the rows of a diverged crystal (NaN or +inf: its k overflowed exp) set to 0, so that its batch
    samples on; that crystal's lattice is not finite, so it fails decoding and is counted."""
    diverged = (torch.isnan(logits) | (logits == torch.inf)).any(-1, keepdim=True)
    return torch.where(diverged, torch.zeros_like(logits), logits)


def _normal(like: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
    return torch.rand(shape, generator=generator, device=device)


__all__ = ["CrystalModel", "CrystalModelConfig", "DiffCSP", "DiffCSPConfig", "Generated", "SymmCD", "SymmCDConfig"]
