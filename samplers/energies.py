"""Energy functions E(x) = -log p(x) + const for Boltzmann-type targets, batched and differentiable.

Conventions: inputs are flat ``(N, dim)`` tensors (particle systems store ``n_particles * spatial_dim`` coordinates
per row, see :mod:`equivariant.geometry`), outputs are ``(N,)``. An optional ``context`` of shape ``(N, context_dim)``
is row-aligned with ``x``; this is how a conditional target such as DQS's -Q(s, a)/T is expressed.
Definitions follow the iDEM reference code (jarridrb/DEM: ``dem/energies/gmm_energy.py``,
``multi_double_well_energy.py``, ``lennardjones_energy.py``), which is also what reproduces the reference data.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from equivariant.geometry import as_particles, pairwise_distances, remove_com

BOLTZMANN_DIR_ENV = "DIFFUSION_BASELINES_BOLTZMANN_DIR"


def boltzmann_data_dir() -> Path:
    """Folder of the reference ``.npy`` files: ``$DIFFUSION_BASELINES_BOLTZMANN_DIR`` if set, else the project's
    ``shared/data/boltzmann`` next to the repository (``<repo>/../shared/data/boltzmann``)."""
    override = os.environ.get(BOLTZMANN_DIR_ENV)
    if override:
        return Path(override).expanduser()
    return Path(__file__).resolve().parents[1].parent / "shared" / "data" / "boltzmann"


class Energy(torch.nn.Module):
    """Base class: validates shapes, then delegates to :meth:`_energy`.

    Subclasses set ``reference_files`` (split name -> file name in :func:`boltzmann_data_dir`) when reference samples
    exist for them.
    """

    reference_files: ClassVar[dict[str, str]] = {}

    def __init__(self, dim: int, n_particles: int = 1, spatial_dim: int | None = None, context_dim: int = 0) -> None:
        super().__init__()
        spatial_dim = dim if spatial_dim is None else spatial_dim
        if n_particles * spatial_dim != dim:
            raise ValueError(f"dim={dim} must equal n_particles * spatial_dim = {n_particles} * {spatial_dim}")
        self.dim = dim
        self.n_particles = n_particles
        self.spatial_dim = spatial_dim
        self.context_dim = context_dim

    @property
    def is_particle_system(self) -> bool:
        """True for point clouds (several particles), whose samples live in the zero-centre-of-mass subspace."""
        return self.n_particles > 1

    def _energy(self, x: Tensor, context: Tensor | None) -> Tensor:
        raise NotImplementedError

    def energy(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """E(x) for ``x`` of shape (N, dim) (and ``context`` (N, context_dim) if conditional) -> (N,)."""
        self._check_inputs(x, context)
        return self._energy(x, context)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return self.energy(x, context)

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Unnormalised log-density -E(x) (normalised where the subclass says so)."""
        return -self.energy(x, context)

    def _check_inputs(self, x: Tensor, context: Tensor | None) -> None:
        name = type(self).__name__
        if x.ndim != 2 or x.shape[-1] != self.dim:
            raise ValueError(f"{name} expects x of shape (N, {self.dim}), got {tuple(x.shape)}")
        if self.context_dim == 0:
            if context is not None:
                raise ValueError(f"{name} is unconditional but got a context of shape {tuple(context.shape)}")
            return
        if context is None:
            raise ValueError(f"{name} needs a context of shape (N, {self.context_dim})")
        if context.shape != (x.shape[0], self.context_dim):
            raise ValueError(
                f"{name} expects context of shape ({x.shape[0]}, {self.context_dim}) row-aligned with x, "
                f"got {tuple(context.shape)}"
            )

    def reference_samples(self, split: str = "val") -> Tensor:
        """Reference (MCMC) samples from the shared data folder, float32; particle systems are COM-centred."""
        if split not in self.reference_files:
            available = sorted(self.reference_files) or "none"
            raise ValueError(f"{type(self).__name__} has no reference split {split!r}; available: {available}")
        path = boltzmann_data_dir() / self.reference_files[split]
        if not path.is_file():
            raise FileNotFoundError(
                f"reference samples not found at {path}; set the environment variable {BOLTZMANN_DIR_ENV} "
                f"to the folder holding {self.reference_files[split]}"
            )
        samples = torch.from_numpy(np.load(path)).float()
        if samples.ndim != 2 or samples.shape[1] != self.dim:
            raise ValueError(f"{path} holds shape {tuple(samples.shape)}, expected (N, {self.dim})")
        if self.is_particle_system:
            samples = remove_com(samples, self.n_particles, self.spatial_dim)
        return samples


def energy_and_grad(
    energy: Callable[[Tensor, Tensor | None], Tensor],
    x: Tensor,
    context: Tensor | None = None,
    chunk_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Detached ``(E(x), dE/dx)`` for a batch, computed in row chunks of at most ``chunk_size`` (bounds memory).

    Gradients are taken with respect to ``x`` only (never accumulated into the energy's parameters) and are
    available under ``torch.no_grad()``.
    """
    if x.shape[0] == 0:
        return x.new_zeros(0), torch.zeros_like(x)
    step = x.shape[0] if chunk_size is None else max(int(chunk_size), 1)
    energies, grads = [], []
    with torch.enable_grad():
        for start in range(0, x.shape[0], step):
            xc = x[start : start + step].detach().requires_grad_(True)
            cc = None if context is None else context[start : start + step]
            e = energy(xc, cc)
            (g,) = torch.autograd.grad(e.sum(), xc)
            energies.append(e.detach())
            grads.append(g)
    return torch.cat(energies), torch.cat(grads)


class GaussianEnergy(Energy):
    """Isotropic Gaussian N(mean, std^2 I), normalised so that ``log_prob`` is the exact log-density."""

    def __init__(self, mean: Tensor | Sequence[float], std: float) -> None:
        mean = torch.as_tensor(mean, dtype=torch.get_default_dtype()).reshape(-1)
        super().__init__(dim=mean.numel())
        if std <= 0:
            raise ValueError(f"std must be positive, got {std}")
        self.register_buffer("mean", mean)
        self.std = float(std)

    def _energy(self, x: Tensor, context: Tensor | None) -> Tensor:
        z = (x - self.mean.to(x)) / self.std
        return 0.5 * z.pow(2).sum(-1) + self.dim * (math.log(self.std) + 0.5 * math.log(2 * math.pi))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Exact samples, shape (n, dim)."""
        noise = torch.randn(n, self.dim, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * noise


class GaussianMixtureEnergy(Energy):
    """Mixture of axis-aligned Gaussians; ``log_prob`` is the exact normalised log-density.

    ``stds`` may be a scalar, per-component (K,) or per-dimension (K, D); ``weights`` default to equal.
    """

    def __init__(
        self,
        means: Tensor | Sequence[Sequence[float]],
        stds: Tensor | Sequence[float] | float,
        weights: Tensor | Sequence[float] | None = None,
    ) -> None:
        dtype = torch.get_default_dtype()
        means = torch.as_tensor(means, dtype=dtype)
        if means.ndim != 2:
            raise ValueError(f"means must have shape (K, D), got {tuple(means.shape)}")
        n_components, dim = means.shape
        stds = torch.as_tensor(stds, dtype=dtype)
        stds = (stds.reshape(-1, 1) if stds.ndim == 1 else stds).expand(n_components, dim).clone()
        weights = torch.ones(n_components, dtype=dtype) if weights is None else torch.as_tensor(weights, dtype=dtype)
        if weights.shape != (n_components,) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"weights must be {n_components} non-negative numbers with a positive sum")
        if (stds <= 0).any():
            raise ValueError("stds must be positive")
        super().__init__(dim=dim)
        self.register_buffer("means", means)
        self.register_buffer("stds", stds)
        self.register_buffer("log_weights", torch.log(weights / weights.sum()))

    def _energy(self, x: Tensor, context: Tensor | None) -> Tensor:
        means, stds, log_w = self.means.to(x), self.stds.to(x), self.log_weights.to(x)
        z = (x.unsqueeze(1) - means) / stds  # (N, K, D)
        log_comp = -0.5 * z.pow(2).sum(-1) - stds.log().sum(-1) - 0.5 * self.dim * math.log(2 * math.pi)
        return -torch.logsumexp(log_comp + log_w, dim=-1)

    def floored_log_prob(self, x: Tensor, floor: float = -1e4) -> Tensor:
        """fab-torch's GMM log_prob: -inf wherever the log-density is below ``floor``.

        Only for metric parity with the reference code; :meth:`energy` keeps the raw finite value so gradients and
        importance weights stay usable far from the modes.
        """
        log_p = self.log_prob(x)
        return log_p.masked_fill(log_p < floor, -math.inf)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Exact samples: component by its weight, then Gaussian noise. Shape (n, dim)."""
        device = self.means.device
        idx = torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, generator=generator, device=device, dtype=self.means.dtype)
        return self.means[idx] + self.stds[idx] * noise


class GMM40Energy(GaussianMixtureEnergy):
    """iDEM's GMM-40 in data units ([-50, 50]^2): 40 equal-weight components, per-dim std softplus(1) ~ 1.3133.

    The means are ``(rand(40, 2) - 0.5) * 2 * 40`` drawn right after seeding torch's CPU generator with 0; a local
    generator reproduces them without touching the global RNG.
    """

    def __init__(self) -> None:
        gen = torch.Generator().manual_seed(0)
        means = (torch.rand(40, 2, generator=gen) - 0.5) * 2 * 40
        super().__init__(means, stds=F.softplus(torch.tensor(1.0)).item())


class DoubleWellEnergy(Energy):
    """Multi-particle double well (bgflow / DW-4): E = sum_{i<j} a (d_ij - d0)^4 + b (d_ij - d0)^2 (unique pairs)."""

    def __init__(self, n_particles: int = 4, spatial_dim: int = 2, a: float = 0.9, b: float = -4.0, d0: float = 4.0) -> None:
        super().__init__(dim=n_particles * spatial_dim, n_particles=n_particles, spatial_dim=spatial_dim)
        self.a, self.b, self.d0 = float(a), float(b), float(d0)

    def _energy(self, x: Tensor, context: Tensor | None) -> Tensor:
        u = pairwise_distances(x, self.n_particles, self.spatial_dim) - self.d0
        return (self.a * u**4 + self.b * u**2).sum(-1)


class DW4Energy(DoubleWellEnergy):
    """DW-4: 4 particles in 2-D with the iDEM coefficients, plus its reference samples (COM removed on load)."""

    reference_files: ClassVar[dict[str, str]] = {"train": "dw4_train.npy", "val": "dw4_val.npy"}

    def __init__(self) -> None:
        super().__init__(n_particles=4, spatial_dim=2)


class LennardJonesEnergy(Energy):
    """Lennard-Jones cluster with a harmonic tether to the centre of mass (iDEM/EFM, eps = r_m = 1).

    E = c_pairs * sum_{i<j} (r_ij^-12 - 2 r_ij^-6) + oscillator_scale * 0.5 * sum_i ||x_i - x_bar||^2, where
    ``pair_convention="ordered"`` (c_pairs = 2, the sum over i != j used by iDEM and the reference data) or
    ``"unique"`` (c_pairs = 1, the textbook cluster energy). No cutoff or smoothing.
    """

    def __init__(
        self,
        n_particles: int,
        spatial_dim: int = 3,
        pair_convention: Literal["ordered", "unique"] = "ordered",
        oscillator_scale: float = 1.0,
    ) -> None:
        if pair_convention not in ("ordered", "unique"):
            raise ValueError(f"pair_convention must be 'ordered' or 'unique', got {pair_convention!r}")
        super().__init__(dim=n_particles * spatial_dim, n_particles=n_particles, spatial_dim=spatial_dim)
        self.pair_convention = pair_convention
        self.oscillator_scale = float(oscillator_scale)

    def _energy(self, x: Tensor, context: Tensor | None) -> Tensor:
        inv6 = pairwise_distances(x, self.n_particles, self.spatial_dim).pow(-6)
        pair_factor = 2.0 if self.pair_convention == "ordered" else 1.0
        lj = pair_factor * (inv6.pow(2) - 2.0 * inv6).sum(-1)
        centred = as_particles(remove_com(x, self.n_particles, self.spatial_dim), self.n_particles, self.spatial_dim)
        return lj + self.oscillator_scale * 0.5 * centred.pow(2).sum((-2, -1))


class LJ13Energy(LennardJonesEnergy):
    """LJ-13 (13 particles in 3-D, iDEM conventions) with its validation reference samples."""

    reference_files: ClassVar[dict[str, str]] = {"val": "lj13_val.npy"}

    def __init__(self) -> None:
        super().__init__(n_particles=13)


class LJ55Energy(LennardJonesEnergy):
    """LJ-55 (55 particles in 3-D, iDEM conventions); its reference files are not distributed here."""

    def __init__(self) -> None:
        super().__init__(n_particles=55)


class FunctionEnergy(Energy):
    """Wrap a callable ``fn(x, context) -> (N,)`` as an :class:`Energy`, e.g. DQS's -Q(s, a)/T with context = s.

    If ``fn`` is an ``nn.Module`` it is registered as a submodule (moves with ``.to``); the estimators only take
    gradients with respect to ``x``.
    """

    def __init__(
        self,
        fn: Callable[[Tensor, Tensor | None], Tensor],
        dim: int,
        context_dim: int = 0,
        n_particles: int = 1,
        spatial_dim: int | None = None,
    ) -> None:
        super().__init__(dim=dim, n_particles=n_particles, spatial_dim=spatial_dim, context_dim=context_dim)
        self.fn = fn

    def _energy(self, x: Tensor, context: Tensor | None) -> Tensor:
        out = self.fn(x, context)
        if out.shape != (x.shape[0],):
            raise ValueError(f"FunctionEnergy's fn must return shape ({x.shape[0]},), got {tuple(out.shape)}")
        return out


ENERGIES: dict[str, Callable[[], Energy]] = {
    "GMM40": GMM40Energy,
    "DW4": DW4Energy,
    "LJ13": LJ13Energy,
    "LJ55": LJ55Energy,
}


def make_energy(name: str) -> Energy:
    """Instantiate a registered benchmark energy by name (see ``ENERGIES``)."""
    if name in ENERGIES:
        return ENERGIES[name]()
    by_upper = {key.upper(): key for key in ENERGIES}
    close = difflib.get_close_matches(name.upper().replace("-", "").replace("_", ""), list(by_upper), n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(by_upper[c]) for c in close)}?" if close else ""
    raise ValueError(f"unknown energy {name!r}.{hint} Available: {', '.join(ENERGIES)}.")
