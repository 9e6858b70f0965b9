"""Relaxed equivariance by symmetry breaking (Kaba & Ravanbakhsh, arXiv 2312.09016).

An equivariant f satisfies G_x ⊆ G_{f(x)}: its output is at least as symmetric as its input, so it cannot, say,
pick one corner of a square. A relaxed-equivariant f only needs f(g·x) = g′·f(x) for some g′ ∈ g·G_x, which
coincides with equivariance on inputs with a trivial stabiliser. Both constructions below take a canonicalizer c
with c(g·x) ∈ g·G_x·c(x) (``equivariant.canonicalization``; conventions there: left action, column frames):

- A, :class:`CanonicalizedNetwork`: f(x) = c(x)·φ(c(x)⁻¹·x) for any network φ. Proof: c(gx) = g h c(x) with
  h ∈ G_x and c(gx)⁻¹gx = c(x)⁻¹h⁻¹x = c(x)⁻¹x, so f(gx) = g h·f(x).
- B, :class:`SymmetryBreakingInput`: f(x) = f_eq(x, c(x)·b₀) for a jointly equivariant f_eq and reference vectors
  b₀ with a trivial stabiliser. Proof: f(gx) = f_eq(ghx, gh·c(x)b₀) = gh·f(x). Drawing a Haar-random frame instead
  of c(x) is noise injection: equivariant in distribution only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from equivariant.canonicalization import Canonicalizer, Kind, invert, random_orthogonal


def _spans_space(vectors: Tensor) -> bool:
    """Whether m vectors (m, D) span ℝ^D, i.e. only the identity of O(D) fixes them all."""
    return vectors.ndim == 2 and int(torch.linalg.matrix_rank(vectors.double())) == vectors.shape[1]


class CanonicalizedNetwork(nn.Module):
    """Construction A: f(x) = c(x)·φ(c(x)⁻¹·x) for positions x (B, N, D) and any (non-equivariant) ``network`` φ.

    ``output`` says how the group acts on φ's output (see :func:`equivariant.canonicalization.invert`): "positions"
    (points, one per sample (B, D) or per particle (B, N, D): rotated, translated, un-permuted), "vectors" (the same
    without translation, e.g. forces or scores) or "invariant" (returned as computed, e.g. an energy).
    """

    def __init__(self, canonicalizer: Canonicalizer, network: nn.Module, output: Kind) -> None:
        super().__init__()
        if output not in ("positions", "vectors", "invariant"):
            raise ValueError(f"output must be 'positions', 'vectors' or 'invariant', got {output!r}")
        self.canonicalizer = canonicalizer
        self.network = network
        self.output = output

    def forward(self, x: Tensor) -> Tensor:
        g, canonical = self.canonicalizer(x)
        return invert(g, self.network(canonical), self.output)


class SymmetryBreakingInput(nn.Module):
    """Construction B: f(x) = f_eq(x, b) with b = c(x)·b₀, the reference vectors b₀ turned by the canonical frame.

    ``f_eq(x, b)`` must be jointly equivariant in positions x (B, N, D) and free vectors b (B, m, D); translations and
    permutations leave free vectors unchanged, so only the frame acts on b₀. ``reference`` b₀ (m, D) must span ℝ^D,
    so that only the identity of O(D) fixes it (trivial stabiliser); the default is the standard frame, b₀ = I.

    With ``canonicalizer=None`` the module is the noise-injection variant: b = Q·b₀ with Q Haar-random on O(D), drawn
    per sample from ``generator``. Then f(g·x) and g·f(x) have the same distribution (Q and gQ do) but differ sample by
    sample: equivariant in distribution only.
    """

    def __init__(
        self,
        f_eq: Callable[[Tensor, Tensor], Tensor],
        canonicalizer: Canonicalizer | None,
        reference: Tensor | None = None,
    ) -> None:
        super().__init__()
        if reference is not None and not _spans_space(reference):
            raise ValueError(
                f"reference must be m vectors (m, D) spanning R^D (trivial stabiliser), got shape "
                f"{tuple(reference.shape)}; use e.g. torch.eye(D)"
            )
        self.f_eq = f_eq
        self.canonicalizer = canonicalizer
        self.register_buffer("reference", reference)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        dim = x.shape[-1]
        reference = torch.eye(dim, dtype=x.dtype, device=x.device) if self.reference is None else self.reference
        if reference.shape[1] != dim:
            raise ValueError(f"reference vectors have dimension {reference.shape[1]} but x has spatial dimension {dim}")
        if self.canonicalizer is None:
            rotation = random_orthogonal(x.shape[0], dim, proper=False, generator=generator, dtype=x.dtype, device=x.device)
        else:
            rotation = self.canonicalizer.group_element(x).rotation
        return self.f_eq(x, torch.einsum("bij,mj->bmi", rotation, reference.to(x.dtype)))
