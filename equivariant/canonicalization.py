"""Canonicalization for particle systems: frames from equivariant vectors, sorting, and a learned EGNN canonicalizer.

A canonicalizer maps an input x to a group element c(x) with c(g·x) ∈ g·G_x·c(x) (G_x the stabiliser of x); the
canonical input c(x)⁻¹·x is then invariant, and any network applied to it can be mapped back with c(x) (Kaba et al.,
ICML 2023; Kaba & Ravanbakhsh, arXiv 2312.09016; Sareen et al., arXiv 2501.07773).

Conventions, shared by every function here and by ``equivariant.relaxed``:

- Left action on a point p ∈ ℝ^D: g·p = R p + t. Configurations x (B, N, D) store points as rows, so g acts as
  x ↦ x Rᵀ + t.
- Frames are columns: R = [u_1 … u_D] with every u_i an equivariant vector, so rotating the input by Q maps
  R ↦ Q R. The canonical input is Rᵀ(p − t) per point, i.e. rows (x − t) R, invariant because (QR)ᵀQ = Rᵀ.
  (kushasareen/canonical_generation writes R with rows u_i and x Rᵀ: the same map with R transposed.)
- Permutations: (g·x)[π_k] = R x_k + t, so slot k of the canonical configuration holds input particle π_k.

Degenerate inputs (zero, (near-)parallel or cancelling vectors) follow one rule, see :func:`on_frame`: skip to the
next candidate vector, and once none is left complete the frame with the standard axes, flagging the row.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from equivariant.egnn import EGNN

Kind = Literal["positions", "vectors", "invariant"]
Group = Literal["SO", "O"]
FrameVectors = Literal["pooled", "particles"]

SIGN_MARGIN = 64  # a sign-only column is trusted when it exceeds this many machine epsilons of its scale


def default_tol(dtype: torch.dtype) -> float:
    """Relative length below which a Gram–Schmidt residual counts as zero: √(machine epsilon) (3.5e-4 in float32)."""
    return torch.finfo(dtype).eps ** 0.5


def _pick(vectors: Tensor, index: Tensor) -> Tensor:
    """``vectors[..., index, :]`` for one index per batch element: (..., m, D), (...,) → (..., D)."""
    index = index[..., None, None].expand(*index.shape, 1, vectors.shape[-1])
    return vectors.gather(-2, index).squeeze(-2)


def _remove_component(vectors: Tensor, unit: Tensor) -> Tensor:
    """Project the rows of ``vectors`` (..., m, D) onto the orthogonal complement of ``unit`` (..., D)."""
    unit = unit.unsqueeze(-2)
    return vectors - (vectors * unit).sum(-1, keepdim=True) * unit


def _orthonormal_basis(
    candidates: Tensor, n_from_candidates: int, tol: float | None, scale: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Modified Gram–Schmidt over ordered ``candidates`` (..., m, D), completed to a full basis (..., D, D) of columns.

    Column i < ``n_from_candidates`` is the normalised residual of the first candidate whose residual (after removing
    the earlier columns) is longer than ``tol · scale`` (``scale``: (...,) per row or (..., m) per candidate). The
    last column is fixed up to sign by the others, so only its sign must beat rounding noise: it is accepted above
    ``min(tol, SIGN_MARGIN · eps) · scale``. Rows where no candidate qualifies are flagged, and from there on take the
    standard axis with the longest residual (ties: lowest index), never shorter than √((D − i)/D). Every division is
    by a length above a positive threshold, so neither values nor gradients become NaN. The acceptance test is
    detached: it selects, it is not differentiated.
    """
    dim = candidates.shape[-1]
    batch = candidates.shape[:-2]
    tol = default_tol(candidates.dtype) if tol is None else tol
    if scale is None:
        scale = torch.linalg.vector_norm(candidates.detach(), dim=-1).amax(dim=-1)
    if scale.shape == batch:
        scale = scale.unsqueeze(-1)
    elif scale.shape != candidates.shape[:-1]:
        raise ValueError(f"scale must have shape {tuple(batch)} or {tuple(candidates.shape[:-1])}, got {tuple(scale.shape)}")
    floor = torch.finfo(candidates.dtype).tiny ** 0.25  # keeps squared lengths and 1/length far from under/overflow
    sign_tol = min(tol, SIGN_MARGIN * torch.finfo(candidates.dtype).eps)
    slots = torch.arange(candidates.shape[-2], device=candidates.device)
    residuals = candidates
    axes = torch.eye(dim, dtype=candidates.dtype, device=candidates.device).expand(*batch, dim, dim)
    degenerate = torch.zeros(batch, dtype=torch.bool, device=candidates.device)
    columns = []
    for i in range(dim):
        direction = _pick(axes, torch.linalg.vector_norm(axes.detach(), dim=-1).argmax(dim=-1))
        if i < n_from_candidates:
            threshold = ((sign_tol if i == dim - 1 else tol) * scale.detach()).clamp(min=floor)
            acceptable = torch.linalg.vector_norm(residuals.detach(), dim=-1) > threshold
            found = acceptable.any(dim=-1) & ~degenerate
            first = torch.where(acceptable, slots, slots.numel() - 1).amin(dim=-1)  # first acceptable (any if none)
            direction = torch.where(found.unsqueeze(-1), _pick(residuals, first), direction)
            degenerate = ~found
        for earlier in columns:  # second orthogonalisation pass ("twice is enough") for ill-conditioned vectors
            direction = _remove_component(direction.unsqueeze(-2), earlier).squeeze(-2)
        unit = direction / torch.linalg.vector_norm(direction, dim=-1, keepdim=True)
        columns.append(unit)
        residuals = _remove_component(residuals, unit)
        axes = _remove_component(axes, unit)
    return torch.stack(columns, dim=-1), degenerate


def _check_vectors(vectors: Tensor, minimum: int, group: str) -> None:
    if vectors.ndim < 2 or not vectors.is_floating_point():
        raise ValueError(f"vectors must be a floating tensor of shape (..., m, D), got {vectors.dtype} {tuple(vectors.shape)}")
    dim, count = vectors.shape[-1], vectors.shape[-2]
    if dim < 2:
        raise ValueError(f"frames need spatial dimension D >= 2, got D = {dim}")
    if count < minimum:
        raise ValueError(f"a {group}({dim}) frame needs at least {minimum} vectors of dimension {dim}, got {count}")


def on_frame(vectors: Tensor, tol: float | None = None, scale: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """O(D) frame from m ≥ D ordered equivariant vectors (..., m, D): (R (..., D, D) with det ±1, degenerate (...,)).

    Gram–Schmidt with positive sign fixing (the QR factorisation with a positive diagonal), so R(v Qᵀ) = Q R(v) for
    every Q ∈ O(D). Degenerate rule: a vector whose residual after removing the earlier columns is not longer than
    ``tol · scale`` (``tol`` defaults to :func:`default_tol`, ``scale`` to the longest vector of the row) is skipped
    in favour of the next one; when the vectors run out the frame is completed with the standard axes and the row is
    flagged in ``degenerate`` (the fallback is deterministic but not equivariant). The last column is fixed up to
    sign by the others, so it is accepted down to ``min(tol, SIGN_MARGIN · eps) · scale``. For vectors that are sums
    which can cancel (e.g. pooled over a symmetric configuration), pass as ``scale`` (..., m) their magnitudes
    without cancellation, so cancellation noise counts as zero.
    """
    _check_vectors(vectors, vectors.shape[-1], "O")
    return _orthonormal_basis(vectors, vectors.shape[-1], tol, scale)


def son_frame(vectors: Tensor, tol: float | None = None, scale: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """SO(D) frame from m ≥ D − 1 ordered vectors (..., m, D): the first D − 1 Gram–Schmidt columns as in
    :func:`on_frame`, and the last column the unit vector orthogonal to them with det R = +1 (the cross product for
    D = 3, u_1 rotated by +90° for D = 2). Equivariant under SO(D); same degenerate rule as :func:`on_frame`.
    """
    _check_vectors(vectors, vectors.shape[-1] - 1, "SO")
    basis, degenerate = _orthonormal_basis(vectors, vectors.shape[-1] - 1, tol, scale)
    sign = torch.linalg.det(basis.detach()).sign()  # ±1: the completion axis only fixes the line of the last column
    return torch.cat([basis[..., :-1], basis[..., -1:] * sign[..., None, None]], dim=-1), degenerate


def _stack(dim: int, *vectors: Tensor) -> Tensor:
    shapes = {tuple(v.shape) for v in vectors}
    if len(shapes) != 1 or vectors[0].ndim < 1 or vectors[0].shape[-1] != dim:
        raise ValueError(f"expected vectors of one shape (..., {dim}), got shapes {[tuple(v.shape) for v in vectors]}")
    return torch.stack(vectors, dim=-2)


def so2_frame(v: Tensor, tol: float | None = None) -> tuple[Tensor, Tensor]:
    """SO(2) frame [u, u rotated by +90°] from one vector (..., 2), u = v/‖v‖; see :func:`son_frame`."""
    return son_frame(_stack(2, v), tol)


def o2_frame(v1: Tensor, v2: Tensor, tol: float | None = None) -> tuple[Tensor, Tensor]:
    """O(2) frame from two vectors (..., 2): u_2 is the side of u_1 on which v_2 lies; see :func:`on_frame`."""
    return on_frame(_stack(2, v1, v2), tol)


def so3_frame(v1: Tensor, v2: Tensor, tol: float | None = None) -> tuple[Tensor, Tensor]:
    """SO(3) frame [u_1, u_2, u_1 × u_2] from two vectors (..., 3) by Gram–Schmidt; see :func:`son_frame`."""
    return son_frame(_stack(3, v1, v2), tol)


def o3_frame(v1: Tensor, v2: Tensor, v3: Tensor, tol: float | None = None) -> tuple[Tensor, Tensor]:
    """O(3) frame from three vectors (..., 3) by Gram–Schmidt, det ±1; see :func:`on_frame`."""
    return on_frame(_stack(3, v1, v2, v3), tol)


def random_orthogonal(
    batch_size: int,
    dim: int,
    proper: bool,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Haar-random elements of SO(dim) (``proper``) or O(dim), shape (batch_size, dim, dim).

    The Gram–Schmidt frame of i.i.d. Gaussian vectors is Haar distributed because the Gaussian is O(dim)-invariant and
    the frame equivariant (the last column of an SO frame is fixed by the others).
    """
    gaussian = torch.randn(batch_size, dim, dim, generator=generator, dtype=dtype, device=device)
    return (son_frame if proper else on_frame)(gaussian)[0]


@dataclass(frozen=True)
class GroupElement:
    """g = (t, R, π) ∈ E(D) × S_N acting on configurations by (g·x)[π_k] = R x_k + t (module docstring).

    rotation: (B, D, D) orthogonal, columns the frame. translation: (B, D), None = 0. permutation: (B, N), None =
    identity. degenerate: (B,) diagnostic, True where the frame fell back to the standard axes; not part of g.
    """

    rotation: Tensor
    translation: Tensor | None = None
    permutation: Tensor | None = None
    degenerate: Tensor | None = None


def _check_action(g: GroupElement, y: Tensor, kind: Kind) -> None:
    if kind not in ("positions", "vectors", "invariant"):
        raise ValueError(f"kind must be 'positions', 'vectors' or 'invariant', got {kind!r}")
    if kind == "invariant":
        return
    batch, dim = g.rotation.shape[0], g.rotation.shape[-1]
    if y.ndim not in (2, 3) or y.shape[0] != batch or y.shape[-1] != dim:
        raise ValueError(f"{kind} must have shape ({batch}, {dim}) or ({batch}, N, {dim}), got {tuple(y.shape)}")
    if y.ndim == 3 and g.permutation is not None and y.shape[1] != g.permutation.shape[1]:
        raise ValueError(f"per-particle {kind} have {y.shape[1]} particles but the permutation has {g.permutation.shape[1]}")


def invert(g: GroupElement, y: Tensor, kind: Kind) -> Tensor:
    """Map y computed on the canonical input back to the input frame: g·y.

    ``kind``: "positions" are points (rotated, translated), "vectors" free vectors (rotated only), both either one
    per sample (B, D) or one per particle (B, N, D) (then also un-permuted); "invariant" is returned unchanged.
    """
    _check_action(g, y, kind)
    if kind == "invariant":
        return y
    single = y.ndim == 2
    out = torch.einsum("bij,bnj->bni", g.rotation, y.unsqueeze(1) if single else y)
    if kind == "positions" and g.translation is not None:
        out = out + g.translation.unsqueeze(1)
    if single:
        return out.squeeze(1)
    if g.permutation is not None:
        out = out.gather(1, g.permutation.argsort(dim=1).unsqueeze(-1).expand_as(out))
    return out


def canonicalize(g: GroupElement, y: Tensor, kind: Kind) -> Tensor:
    """The inverse action g⁻¹·y (same ``kind`` semantics as :func:`invert`): rows Rᵀ(y[π_k] − t)."""
    _check_action(g, y, kind)
    if kind == "invariant":
        return y
    if y.ndim == 3 and g.permutation is not None:
        y = y.gather(1, g.permutation.unsqueeze(-1).expand_as(y))
    if kind == "positions" and g.translation is not None:
        y = y - (g.translation if y.ndim == 2 else g.translation.unsqueeze(1))
    return torch.einsum("bji,b...j->b...i", g.rotation, y)


def sort_canonicalize(x: Tensor, key: Tensor) -> tuple[Tensor, Tensor]:
    """Permutation canonicalization: sort the N items of x (B, N, ...) by ascending ``key`` (B, N).

    Returns (π (B, N), x[π]). Ties keep the input order (stable sort), so tied items are only canonical if they are
    interchangeable (e.g. related by a symmetry of x). For particles use an invariant per-particle key, e.g. the
    distance to the centre of mass or a learned invariant scalar; π is piecewise constant, so no gradient reaches the
    key through it (the sorted values of x do carry gradients).
    """
    if x.ndim < 2 or key.shape != x.shape[:2]:
        raise ValueError(f"key must have shape (B, N) = {tuple(x.shape[:2])} of x, got key {tuple(key.shape)}")
    permutation = torch.sort(key, dim=1, stable=True).indices
    index = permutation.reshape(*permutation.shape, *([1] * (x.ndim - 2))).expand_as(x)
    return permutation, x.gather(1, index)


class Canonicalizer(nn.Module, ABC):
    """Base canonicalizer: ``group_element(x)`` returns c(x); ``forward(x)`` returns (c(x), c(x)⁻¹·x) for positions x."""

    @abstractmethod
    def group_element(self, x: Tensor) -> GroupElement:
        """c(x) for a configuration x (B, N, D), with c(g·x) ∈ g·G_x·c(x)."""

    def forward(self, x: Tensor) -> tuple[GroupElement, Tensor]:
        g = self.group_element(x)
        return g, canonicalize(g, x, "positions")


def generic_direction(dim: int) -> Tensor:
    """Unit vector ∝ (1, φ⁻¹, φ⁻², …) (φ the golden ratio): no rational relation between coordinates, so distinct
    points of a symmetric configuration do not tie in their projection on it."""
    golden = (1 + math.sqrt(5)) / 2
    direction = golden ** -torch.arange(dim, dtype=torch.float64)
    return (direction / direction.norm()).float()


class EGNNCanonicalizer(Canonicalizer):
    """Learned canonicalizer for particle systems x (B, N, D): translation by the centre of mass, an SO(D) or O(D)
    frame from an EGNN, and optionally a permutation.

    The EGNN (node feature ‖x_i − x̄‖²) yields equivariant per-particle vectors e_i = x'_i − mean(x') (its coordinate
    stream, centred) and invariant per-particle scalars (its feature head), from which the frame's candidate vectors
    are built (``frame_vectors``); k = D − 1 vectors for SO(D), D for O(D):

    - "pooled": weighted sums of the e_i with invariant weights, in Krylov form v_1 = Σ_i a_i e_i (a centred over
      particles, as Σ_i e_i = 0), v_{j+1} = C_j v_j = Σ_i b_ij ⟨e_i, v_j⟩ e_i / ρ with the learned covariance
      C_j = Σ_i b_ij e_i e_iᵀ / ρ (ρ = mean ‖e_i‖²), a, b the EGNN's invariant feature head. Plain
      weighted sums Σ_i w_ij e_i are nearly parallel at initialisation (the features vary along about one direction),
      the Krylov vectors are not. Sum pooling is equivariant (coordinate-wise max pooling is not). Exactly
      equivariant and continuous, but on a symmetric input v_1 cancels to zero (an equivariant map cannot break a
      symmetry): the row is flagged degenerate and gets the standard-axes fallback, which is not even
      relaxed-equivariant there.
    - "particles": the e_i themselves, ordered as anchor first (the lowest learned invariant score, ties by index),
      then by distance to the anchor. Gram–Schmidt skips candidates in the span of earlier ones. Equivariant on
      generic inputs; on symmetric ones the tie among equivalent particles is broken arbitrarily, which is a relaxed
      canonicalizer (c(gx) ∈ g·G_x·c(x)) when tied candidates are related by the stabiliser, as for regular polygons
      and polyhedra. The hard choice passes no gradient to the score; the frame still trains the coordinate stream.

    ``sort_particles`` adds the permutation sorting particles by their canonical coordinate along
    :func:`generic_direction`. Sorting in the canonical frame (rather than by an invariant score) makes the
    permutation consistent with the frame's tie-break on symmetric inputs, so the canonical configuration is exactly
    invariant there too.

    :param n_particles: N
    :param spatial_dim: D ≥ 2
    :param group: "SO" (rotations) or "O" (rotations and reflections)
    :param frame_vectors: "pooled" or "particles" (above)
    :param sort_particles: Also canonicalize the particle order
    :param hidden_dim: EGNN width
    :param n_layers: EGNN depth
    :param coords_range: Total tanh bound on the EGNN's coordinate steps
    :param tol: Relative degeneracy threshold of the frame (:func:`on_frame`); None = :func:`default_tol`
    """

    def __init__(
        self,
        n_particles: int,
        spatial_dim: int,
        *,
        group: Group = "SO",
        frame_vectors: FrameVectors = "pooled",
        sort_particles: bool = False,
        hidden_dim: int = 32,
        n_layers: int = 2,
        coords_range: float = 15.0,
        tol: float | None = None,
    ) -> None:
        super().__init__()
        if group not in ("SO", "O"):
            raise ValueError(f"group must be 'SO' or 'O', got {group!r}")
        if frame_vectors not in ("pooled", "particles"):
            raise ValueError(f"frame_vectors must be 'pooled' or 'particles', got {frame_vectors!r}")
        if spatial_dim < 2:
            raise ValueError(f"spatial_dim must be at least 2, got {spatial_dim}")
        self.n_particles = n_particles
        self.spatial_dim = spatial_dim
        self.group = group
        self.frame_vectors = frame_vectors
        self.sort_particles = sort_particles
        self.tol = tol
        self.n_vectors = spatial_dim - 1 if group == "SO" else spatial_dim
        head_dim = self.n_vectors if frame_vectors == "pooled" else 1
        self.egnn = EGNN(1, hidden_dim, head_dim, n_layers, n_nodes=n_particles, coords_range=coords_range)
        self.register_buffer("sort_direction", generic_direction(spatial_dim), persistent=False)

    def _pooled(self, weights: Tensor, vectors: Tensor) -> tuple[Tensor, Tensor]:
        """Krylov vectors (B, k, D) and, per vector, the size of its rounding noise (B, k), the degeneracy scale.

        The scale of v_1 = Σ_i a_i e_i = Σ_i w_i e_i (the e_i are centred) is Σ_i |w_i| ‖e_i‖, its size without
        cancellation: on a symmetric configuration the w_i agree only up to their own rounding, so the centred a_i are
        noise of the size of w, not of a (scaling by |a_i| missed this wherever the invariant features came out
        unequal in the last bits). v_{j+1} = C_j v_j inherits the noise of v_j amplified by ‖C_j‖ on top of its own,
        so a v_1 that cancelled to noise makes the whole chain degenerate.
        """
        lengths = torch.linalg.vector_norm(vectors.detach(), dim=-1)
        size = vectors.square().sum(-1).mean(dim=1).clamp(min=torch.finfo(vectors.dtype).tiny ** 0.5)  # ρ, invariant
        first = weights[..., 0] - weights[..., 0].mean(dim=1, keepdim=True)
        pooled = [torch.einsum("bn,bnd->bd", first, vectors)]
        scales = [torch.einsum("bn,bn->b", weights[..., 0].detach().abs(), lengths)]
        for j in range(1, self.n_vectors):
            covariance = torch.einsum("bn,bnd,bne->bde", weights[..., j], vectors, vectors) / size[:, None, None]
            pooled.append(torch.einsum("bde,be->bd", covariance, pooled[-1]))
            summands = weights[..., j] * torch.einsum("bnd,bd->bn", vectors, pooled[-2]) / size.unsqueeze(-1)
            own_noise = torch.einsum("bn,bn->b", summands.detach().abs(), lengths)
            scales.append(own_noise + torch.linalg.matrix_norm(covariance.detach()) * scales[-1])
        return torch.stack(pooled, dim=1), torch.stack(scales, dim=1)

    def _particles(self, score: Tensor, vectors: Tensor) -> tuple[Tensor, Tensor]:
        """Per-particle vectors ordered anchor first, then by distance to the anchor (B, N, D), and the row scale (B,)."""
        anchor = score.squeeze(-1).argmin(dim=1)
        distance = (vectors - _pick(vectors, anchor).unsqueeze(1)).detach().square().sum(-1)
        distance = distance.scatter(1, anchor.unsqueeze(1), -1.0)  # the anchor itself goes first
        order = torch.sort(distance, dim=1, stable=True).indices
        scale = torch.linalg.vector_norm(vectors.detach(), dim=-1).amax(dim=1)
        return vectors.gather(1, order.unsqueeze(-1).expand_as(vectors)), scale

    def group_element(self, x: Tensor) -> GroupElement:
        if x.ndim != 3 or x.shape[1:] != (self.n_particles, self.spatial_dim):
            raise ValueError(f"x must have shape (B, {self.n_particles}, {self.spatial_dim}), got {tuple(x.shape)}")
        centre = x.mean(dim=1)
        relative = x - centre.unsqueeze(1)
        features, moved = self.egnn(relative.square().sum(-1, keepdim=True), relative)
        vectors = moved - moved.mean(dim=1, keepdim=True)
        build = self._pooled if self.frame_vectors == "pooled" else self._particles
        candidates, scale = build(features, vectors)
        frame = son_frame if self.group == "SO" else on_frame
        rotation, degenerate = frame(candidates, self.tol, scale)
        permutation = None
        if self.sort_particles:
            rotated = relative @ rotation
            permutation, _ = sort_canonicalize(rotated, rotated @ self.sort_direction.to(x.dtype))
        return GroupElement(rotation, centre, permutation, degenerate)
