"""The observation map g: latents z (N, n) → observations x (N, 16), invertible on its image, with its inverse.

* `invertible_mlp`: z zero-padded to ``dim`` coordinates, then three layers h ← leaky_relu(W h) with slope 0.2 and
  random ``dim`` × ``dim`` weights — the invertible MLP of Hyvärinen & Morioka's PCL mixing as reimplemented in
  multiview-CRL (Yao et al., ICLR 2024; reference CausalLearningAI/multiview-crl
  `invertible_network_utils.py::construct_invertible_mlp`): entries uniform on [-1, 1], columns scaled to unit norm, and
  a draw whose condition number exceeds `MAX_CONDITION` rejected and redrawn. That code takes the 25th percentile of a
  pool of random draws as its bound; for 16 × 16 matrices the percentile is about 28 (5th: 16, median: 48), so the
  fixed bound 25 keeps about a fifth of the draws. Each layer's Jacobian then has condition number at most
  25 / 0.2 = 125, and all three together at most 125³. The weights are scaled by the gain sqrt(2 / (1 + 0.2²)) so
  that a layer roughly keeps the mean square of its input (scaling leaves the condition number as it is).
* `rotation`: z zero-padded, then a uniformly random rotation of SO(dim) — ILCM's linear control (Brehmer et al.,
  NeurIPS 2022, arXiv 2203.16437; reference `ws_crl/encoder.py::SONEncoder`, there square).

Both scale the padded latents by sqrt(dim / n), so that x has coordinates of about the scale of z; both are computed
in float64, and `Mixing.inverse` recovers z from x (the padding coordinates it drops are ~0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.stats import special_ortho_group

MixingKind = Literal["mlp", "rotation"]
OBSERVATION_DIM = 16
MAX_CONDITION = 25.0
LEAKY_SLOPE = 0.2
NUM_LAYERS = 3
LEAKY_GAIN = float(np.sqrt(2.0 / (1.0 + LEAKY_SLOPE**2)))


@dataclass(frozen=True, eq=False)
class Mixing:
    """x = g(z): zero-pad z to ``dim`` and scale it by sqrt(dim / n), then for each weight W: h ← W h, followed by
    leaky ReLU when ``leaky``."""

    num_latents: int
    weights: tuple[np.ndarray, ...]
    leaky: bool

    @property
    def dim(self) -> int:
        return self.weights[0].shape[0]

    @property
    def input_gain(self) -> float:
        return float(np.sqrt(self.dim / self.num_latents))

    def __call__(self, z: np.ndarray) -> np.ndarray:
        hidden = np.zeros((len(z), self.dim))
        hidden[:, : self.num_latents] = self.input_gain * np.asarray(z)
        for weight in self.weights:
            hidden = hidden @ weight.T
            if self.leaky:
                hidden = np.where(hidden > 0, hidden, LEAKY_SLOPE * hidden)
        return hidden

    def inverse(self, x: np.ndarray) -> np.ndarray:
        """z from x = g(z): undo each layer in reverse order, then drop the padding coordinates."""
        hidden = np.asarray(x, dtype=np.float64)
        for weight in reversed(self.weights):
            if self.leaky:
                hidden = np.where(hidden > 0, hidden, hidden / LEAKY_SLOPE)
            hidden = np.linalg.solve(weight, hidden.T).T
        return hidden[:, : self.num_latents] / self.input_gain

    def condition_numbers(self) -> list[float]:
        return [float(np.linalg.cond(weight)) for weight in self.weights]


def well_conditioned_matrix(dim: int, rng: np.random.Generator, max_condition: float = MAX_CONDITION,
                            max_tries: int = 10_000) -> np.ndarray:  # fmt: skip
    """A ``dim`` × ``dim`` matrix with entries uniform on [-1, 1] and unit-norm columns, redrawn until its condition
    number is at most ``max_condition``."""
    for _ in range(max_tries):
        matrix = rng.uniform(-1.0, 1.0, (dim, dim))
        matrix /= np.linalg.norm(matrix, axis=0, keepdims=True)
        if np.linalg.cond(matrix) <= max_condition:
            return matrix
    raise ValueError(f"no {dim}x{dim} draw in {max_tries} had condition number <= {max_condition}; raise the bound")


def invertible_mlp(num_latents: int, rng: np.random.Generator, dim: int = OBSERVATION_DIM) -> Mixing:
    """Three leaky-ReLU(0.2) layers with well-conditioned random weights (module docstring)."""
    _check_dims(num_latents, dim)
    weights = tuple(LEAKY_GAIN * well_conditioned_matrix(dim, rng) for _ in range(NUM_LAYERS))
    return Mixing(num_latents, weights, leaky=True)


def rotation(num_latents: int, rng: np.random.Generator, dim: int = OBSERVATION_DIM) -> Mixing:
    """A uniformly random rotation of SO(dim) applied to the zero-padded latents."""
    _check_dims(num_latents, dim)
    return Mixing(num_latents, (special_ortho_group.rvs(dim, random_state=rng),), leaky=False)


def make_mixing(kind: MixingKind, num_latents: int, rng: np.random.Generator, dim: int = OBSERVATION_DIM) -> Mixing:
    builders = {"mlp": invertible_mlp, "rotation": rotation}
    if kind not in builders:
        raise ValueError(f"mixing must be one of {', '.join(builders)}, got {kind!r}")
    return builders[kind](num_latents, rng, dim)


def _check_dims(num_latents: int, dim: int) -> None:
    if not 1 <= num_latents <= dim:
        raise ValueError(f"cannot pad {num_latents} latents into {dim} observed dimensions")
