"""The learner's view of the unknown target set S of a pair: a family of possible target sets with a prior π(S), and
the variational posterior q(S | x, x̃) restricted to that family.

ILCM (Brehmer, de Haan, Lippe & Cohen, NeurIPS 2022, arXiv 2203.16437, App. C; reference
``ws_crl/causal/interventions.py``, ``HeuristicInterventionEncoder``) scores the atomic family {∅, {0}, …, {n−1}}
with change log-odds ℓ_i = α + β|Δ_i| + γΔ_i² of Δ = μ(x̃) − μ(x), the encoder means, and ℓ_∅ = 0. Here a target
set scores the sum of its latents' log-odds, score(S) = Σ_{i∈S} ℓ_i, and q(S) is the softmax of the scores over the
family: a mean-field Bernoulli over latents conditioned on S lying in the family, normalised exactly. On the atomic
family this is the reference's encoder.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from causal.pairs import TargetSet, family_masks


class TargetFamily(nn.Module):
    """The possible target sets: ``masks`` (K, n) float, row k marking the latents of ``family[k]``, and
    ``log_prior`` (K,), log π(S) (uniform unless ``prior`` gives unnormalised weights)."""

    def __init__(self, family: Sequence[TargetSet], num_latents: int, prior: Sequence[float] | None = None) -> None:
        super().__init__()
        self.family = tuple(tuple(target) for target in family)
        if not self.family:
            raise ValueError("the family of target sets is empty")
        if len(set(self.family)) != len(self.family):
            raise ValueError(f"the family {self.family} lists a target set twice")
        for target in self.family:
            if list(target) != sorted(set(target)) or any(not 0 <= i < num_latents for i in target):
                raise ValueError(f"target set {target} is not a sorted tuple of distinct latent indices in "
                                 f"0..{num_latents - 1}")  # fmt: skip
        weights = torch.ones(len(self.family)) if prior is None else torch.as_tensor(prior, dtype=torch.float32)
        if weights.shape != (len(self.family),) or not bool(torch.all(weights > 0)):
            raise ValueError(f"prior must hold {len(self.family)} positive weights, got {prior}")
        self.register_buffer("masks", torch.from_numpy(family_masks(self.family, num_latents)).float())
        self.register_buffer("log_prior", torch.log(weights / weights.sum()))

    @classmethod
    def atomic(cls, num_latents: int) -> TargetFamily:
        """ILCM's family: no intervention or one latent, uniformly."""
        return cls([(), *((i,) for i in range(num_latents))], num_latents)

    def __len__(self) -> int:
        return len(self.family)


class TargetPosterior(nn.Module):
    """q(S | x, x̃) over a `TargetFamily` from the change of the encoder means, with learnable α, β, γ (initially −3,
    15, 15 as the reference)."""

    def __init__(self, family: TargetFamily) -> None:
        super().__init__()
        self.family = family
        self.alpha = nn.Parameter(torch.tensor(-3.0))
        self.beta = nn.Parameter(torch.tensor(15.0))
        self.gamma = nn.Parameter(torch.tensor(15.0))

    def change_logits(self, delta: Tensor) -> Tensor:
        """(B, n) mean changes Δ -> (B, n) log-odds ℓ_i that latent i was a target."""
        return self.alpha + self.beta * delta.abs() + self.gamma * delta**2

    def forward(self, delta: Tensor, floor: float = 0.0) -> Tensor:
        """(B, n) mean changes -> (B, K) probabilities q(S) of the family's sets. ``floor`` > 0 mixes in that much
        mass per set and renormalises, (q + floor) / (1 + K·floor), as the reference's offset (0.025 early in training,
        1e-4 late) that keeps log q(S) finite."""
        if not 0.0 <= floor < math.inf:
            raise ValueError(f"floor must be a finite number >= 0, got {floor}")
        probs = torch.softmax(self.change_logits(delta) @ self.family.masks.T, dim=1)
        return (probs + floor) / (1.0 + len(self.family) * floor)
