"""The data of weakly supervised causal representation learning: pairs (x, x̃) = (g(z), g(z̃)) observed before and
after a perfect intervention on an unknown target set S of the latents (Brehmer et al., NeurIPS 2022, arXiv
2203.16437, §2), together with the ground truth that only the metrics read.

Latents are indexed 0..n-1. A target set is a sorted tuple of latent indices; ``family`` lists the possible ones
(the empty set may be among them), and ``target_index[k]`` says which of them produced pair k.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TargetSet = tuple[int, ...]


@dataclass(frozen=True)
class Pairs:
    """``N`` pairs of observations with their latents, noises and target sets (arrays of float32 unless noted)."""

    x: np.ndarray  # (N, dim_x) observation before the intervention
    x_tilde: np.ndarray  # (N, dim_x) observation after it
    z: np.ndarray  # (N, n) causal latents before
    z_tilde: np.ndarray  # (N, n) causal latents after
    noise: np.ndarray  # (N, n) exogenous noises of z
    noise_tilde: np.ndarray  # (N, n) noises of z_tilde: fresh on the target set, shared elsewhere
    target_index: np.ndarray  # (N,) int64 index into ``family``
    family: tuple[TargetSet, ...]  # the possible target sets

    def __post_init__(self) -> None:
        n_pairs, n = self.z.shape
        for name in ("x", "x_tilde", "z", "z_tilde", "noise", "noise_tilde"):
            array = getattr(self, name)
            if array.ndim != 2 or array.shape[0] != n_pairs:
                raise ValueError(f"Pairs.{name} has shape {array.shape}; expected ({n_pairs}, ...)")
        if self.x.shape != self.x_tilde.shape:
            raise ValueError(f"Pairs.x {self.x.shape} and x_tilde {self.x_tilde.shape} differ in shape")
        for name in ("z_tilde", "noise", "noise_tilde"):
            if getattr(self, name).shape != (n_pairs, n):
                raise ValueError(f"Pairs.{name} has shape {getattr(self, name).shape}; expected {(n_pairs, n)}")
        if self.target_index.shape != (n_pairs,):
            raise ValueError(f"Pairs.target_index has shape {self.target_index.shape}; expected ({n_pairs},)")
        for target in self.family:
            if list(target) != sorted(set(target)) or any(not 0 <= i < n for i in target):
                raise ValueError(f"target set {target} is not a sorted tuple of distinct latent indices in 0..{n - 1}")
        if len(set(self.family)) != len(self.family):
            raise ValueError(f"the family {self.family} lists a target set twice")
        if n_pairs and not (self.target_index.min() >= 0 and self.target_index.max() < len(self.family)):
            raise ValueError(f"target_index must index the family's {len(self.family)} sets")

    def __len__(self) -> int:
        return self.z.shape[0]

    @property
    def num_latents(self) -> int:
        return self.z.shape[1]

    def target_masks(self) -> np.ndarray:
        """(N, n) bool: which latents each pair's target set contains."""
        return family_masks(self.family, self.num_latents)[self.target_index]

    def subset(self, rows: slice | np.ndarray) -> Pairs:
        """The pairs at ``rows`` (same family)."""
        return Pairs(self.x[rows], self.x_tilde[rows], self.z[rows], self.z_tilde[rows], self.noise[rows],
                     self.noise_tilde[rows], self.target_index[rows], self.family)  # fmt: skip


def family_masks(family: tuple[TargetSet, ...], num_latents: int) -> np.ndarray:
    """(K, n) bool: row k marks the latents of target set ``family[k]``."""
    masks = np.zeros((len(family), num_latents), dtype=bool)
    for row, target in enumerate(family):
        masks[row, list(target)] = True
    return masks
