"""Invariant PointNet++-style hierarchy for EMNN (HUMAN ``--hier``, `HySonLab/EquiMesh` ``egnn/utils.py``):
farthest-point sampling, radius max-pooling, kNN-interpolation unpooling, and the U-Net :class:`HierarchicalEMNN`.

Every choice (which vertices are sampled, which are neighbours, interpolation weights) depends only on distances between
input positions normalised per mesh (centred, largest radius 1), computed with ``torch.cdist``, and only invariant
features are pooled. So the hierarchy is E(3)-invariant (and scale-invariant); coordinates are updated only at full
resolution. Meshes use the flat, mesh-sorted ``batch`` layout of :mod:`equivariant.emnn`; each operation pads all
meshes into one dense (B, n_max, ·) block and treats them at once.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from equivariant.emnn import EMNN, Orientation, per_mesh_mean


def _cdist(a: Tensor, b: Tensor) -> Tensor:
    """Exact Euclidean distances: the matmul shortcut errs by ~1e-4, enough to flip neighbour sets under rotation."""
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


class DenseLayout(NamedTuple):
    """Where each vertex of a mesh-sorted flat batch sits in a padded (B, n_max) block."""

    batch: Tensor  # (N,) mesh of each vertex, non-decreasing
    slot: Tensor  # (N,) position of each vertex inside its mesh
    counts: Tensor  # (B,) vertices per mesh
    starts: Tensor  # (B,) flat index of each mesh's first vertex

    @classmethod
    def build(cls, batch: Tensor, num_graphs: int) -> DenseLayout:
        if batch.numel() > 1 and (batch[1:] < batch[:-1]).any():
            raise ValueError("batch must be sorted by mesh (all vertices of mesh 0, then mesh 1, ...), as batch_meshes does")
        counts = torch.bincount(batch, minlength=num_graphs)
        if counts.numel() != num_graphs or (counts == 0).any():
            raise ValueError(f"every one of the {num_graphs} meshes needs at least one vertex, got counts {counts.tolist()}")
        starts = counts.cumsum(0) - counts
        slot = torch.arange(batch.numel(), device=batch.device) - starts[batch]
        return cls(batch, slot, counts, starts)

    def pad(self, values: Tensor, fill: float = 0.0) -> Tensor:
        """(N, ...) → (B, n_max, ...), padding with ``fill``."""
        out = values.new_full((self.counts.numel(), int(self.counts.max()), *values.shape[1:]), fill)
        out[self.batch, self.slot] = values
        return out

    def mask(self) -> Tensor:
        """(B, n_max) True where a real vertex sits."""
        return torch.arange(int(self.counts.max()), device=self.counts.device) < self.counts.unsqueeze(1)

    def unpad(self, dense: Tensor) -> Tensor:
        """(B, n_max, ...) → (N, ...)."""
        return dense[self.batch, self.slot]


def normalized_positions(pos: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    """Centre each mesh at its centroid and scale it to largest vertex radius 1 (so the radius 0.2 is relative)."""
    centred = pos - per_mesh_mean(pos, batch, num_graphs)[batch]
    radii = centred.norm(dim=-1)
    largest = radii.new_zeros(num_graphs).scatter_reduce(0, batch, radii, "amax", include_self=False)
    return centred / largest.clamp_min(1e-12)[batch].unsqueeze(-1)


def farthest_point_sampling(pos: Tensor, batch: Tensor, ratio: float = 0.25, num_graphs: int | None = None) -> Tensor:
    """Flat indices of ⌈ratio·n_b⌉ vertices of every mesh b, mesh by mesh in sampling order.

    Deterministic start: the vertex farthest from its mesh's centroid (lowest index on ties), so for generic positions
    the sample is E(3)-invariant and permutation-equivariant (torch_cluster's ``fps`` starts at index 0 or at random).
    Each step adds the vertex farthest from those already chosen; chosen vertices are masked, so picks are distinct.
    """
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    num_graphs = int(batch.max()) + 1 if num_graphs is None else num_graphs
    layout = DenseLayout.build(batch, num_graphs)
    points, valid = layout.pad(pos), layout.mask()
    centroids = per_mesh_mean(pos, batch, num_graphs).unsqueeze(1)
    current = _cdist(points, centroids).squeeze(-1).masked_fill(~valid, -1.0).argmax(1)
    # rounding guards against ratio·n landing a hair above an integer (0.1·30 = 3.0000000000000004)
    n_samples = torch.ceil(torch.round(layout.counts.double() * ratio, decimals=9)).long()
    nearest = points.new_full(valid.shape, math.inf).masked_fill(~valid, -1.0)
    rows = torch.arange(num_graphs, device=pos.device)
    chosen = []
    for _ in range(int(n_samples.max())):  # sequential by nature; each step is vectorised over meshes and vertices
        chosen.append(current)
        nearest = torch.minimum(nearest, _cdist(points, points[rows, current].unsqueeze(1)).squeeze(-1))
        nearest[rows, current] = -1.0
        current = nearest.argmax(1)
    picks = torch.stack(chosen, dim=1)
    keep = torch.arange(picks.shape[1], device=pos.device) < n_samples.unsqueeze(1)
    return (layout.starts.unsqueeze(1) + picks)[keep]


def radius_max_pool(
    h: Tensor,
    pos: Tensor,
    batch: Tensor,
    centres: Tensor,
    radius: float = 0.2,
    max_neighbors: int = 64,
    num_graphs: int | None = None,
) -> Tensor:
    """Max of ``h`` (N, F) over the ≤ ``max_neighbors`` nearest vertices within ``radius`` of each centre: (M, F).

    ``centres`` (M,) are flat vertex indices sorted by mesh (as :func:`farthest_point_sampling` returns them); each
    centre is its own neighbour, so no pool is empty. Nearest-first (not first-by-index, as torch_cluster's ``radius``)
    keeps the choice permutation-equivariant.
    """
    num_graphs = int(batch.max()) + 1 if num_graphs is None else num_graphs
    layout, centre_layout = DenseLayout.build(batch, num_graphs), DenseLayout.build(batch[centres], num_graphs)
    distances = _cdist(centre_layout.pad(pos[centres]), layout.pad(pos)).masked_fill(~layout.mask().unsqueeze(1), math.inf)
    nearest, index = distances.topk(min(max_neighbors, distances.shape[-1]), dim=-1, largest=False)
    rows = torch.arange(num_graphs, device=h.device).view(-1, 1, 1)
    neighbours = layout.pad(h)[rows, index].masked_fill((nearest > radius).unsqueeze(-1), -math.inf)
    return centre_layout.unpad(neighbours.amax(dim=2))


def knn_interpolate(
    h: Tensor,
    pos: Tensor,
    batch: Tensor,
    target_pos: Tensor,
    target_batch: Tensor,
    k: int = 3,
    num_graphs: int | None = None,
) -> Tensor:
    """Inverse-squared-distance average of ``h`` (M, F) at the ``k`` nearest source points of each target: (N, F).

    Weights 1/max(d², 1e-16) as PyG's ``knn_interpolate``, so a target on a source point copies its features.
    """
    num_graphs = int(batch.max()) + 1 if num_graphs is None else num_graphs
    source, target = DenseLayout.build(batch, num_graphs), DenseLayout.build(target_batch, num_graphs)
    distances = _cdist(target.pad(target_pos), source.pad(pos)).masked_fill(~source.mask().unsqueeze(1), math.inf)
    nearest, index = distances.topk(min(k, distances.shape[-1]), dim=-1, largest=False)
    weights = 1.0 / nearest.square().clamp_min(1e-16)  # padded sources are at distance inf: weight 0
    rows = torch.arange(num_graphs, device=h.device).view(-1, 1, 1)
    mixed = (weights.unsqueeze(-1) * source.pad(h)[rows, index]).sum(2) / weights.sum(2, keepdim=True)
    return target.unpad(mixed)


class PointLevel(NamedTuple):
    """One resolution of the hierarchy: invariant features, normalised positions and mesh index of its points."""

    features: Tensor  # (N_l, F_l)
    pos: Tensor  # (N_l, 3), normalised input positions (only distances between them are used)
    batch: Tensor  # (N_l,), sorted by mesh


def _feature_block(in_dim: int, out_dim: int) -> nn.Sequential:
    """``Linear (no bias) → LayerNorm → ReLU``, the feature transform of the released Pooling / Unpooling."""
    return nn.Sequential(nn.Linear(in_dim, out_dim, bias=False), nn.LayerNorm(out_dim), nn.ReLU())


class Pooling(nn.Module):
    """Transform features, then max-pool them onto a farthest-point sample (ratio 0.25, radius 0.2, ≤ 64 neighbours)."""

    def __init__(self, in_dim: int, out_dim: int, ratio: float = 0.25, radius: float = 0.2, max_neighbors: int = 64) -> None:
        super().__init__()
        self.ratio = ratio
        self.radius = radius
        self.max_neighbors = max_neighbors
        self.transform = _feature_block(in_dim, out_dim)

    def forward(self, level: PointLevel, num_graphs: int) -> PointLevel:
        centres = farthest_point_sampling(level.pos, level.batch, self.ratio, num_graphs)
        pooled = radius_max_pool(
            self.transform(level.features), level.pos, level.batch, centres, self.radius, self.max_neighbors, num_graphs
        )
        return PointLevel(pooled, level.pos[centres], level.batch[centres])


class Unpooling(nn.Module):
    """kNN-interpolate coarse features (k = 3) onto the finer level, concatenate its skip features, transform."""

    def __init__(self, in_dim: int, skip_dim: int, out_dim: int, k: int = 3) -> None:
        super().__init__()
        self.k = k
        self.transform = _feature_block(in_dim + skip_dim, out_dim)

    def forward(self, coarse: PointLevel, fine: PointLevel, num_graphs: int) -> Tensor:
        up = knn_interpolate(coarse.features, coarse.pos, coarse.batch, fine.pos, fine.batch, self.k, num_graphs)
        return self.transform(torch.cat([up, fine.features], dim=-1))


class HierarchicalEMNN(nn.Module):
    """U-Net: :class:`EMNN` layers at full resolution, then invariant pooling levels and unpooling with skips.

    Returns per-vertex invariant features (N, out_node_dim) and the full-resolution EMNN's coordinates (N, 3). Level
    l ≥ 1 keeps ⌈0.25·n⌉ of the previous level's points and has width ``level_dims[l-1]`` (three levels, as HUMAN).
    """

    def __init__(
        self,
        in_node_dim: int,
        hidden_dim: int,
        out_node_dim: int,
        n_layers: int,
        *,
        level_dims: tuple[int, ...] = (32, 64, 128),
        orientation: Orientation = "se3",
        ratio: float = 0.25,
        radius: float = 0.2,
        max_neighbors: int = 64,
        k: int = 3,
        act: type[nn.Module] = nn.SiLU,
    ) -> None:
        super().__init__()
        if not level_dims:
            raise ValueError("level_dims needs at least one level (without levels use EMNN)")
        self.emnn = EMNN(in_node_dim, hidden_dim, None, n_layers, orientation=orientation, act=act)
        dims = [hidden_dim, *level_dims]
        self.pools = nn.ModuleList(Pooling(a, b, ratio, radius, max_neighbors) for a, b in itertools.pairwise(dims))
        self.unpools = nn.ModuleList(Unpooling(b, a, a, k) for a, b in itertools.pairwise(dims))  # used coarse→fine
        self.head = nn.Linear(hidden_dim, out_node_dim)

    def forward(
        self, h: Tensor, pos: Tensor, edges: Tensor, faces: Tensor, batch: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Same inputs as :meth:`EMNN.forward` (``batch`` sorted by mesh) → (N, out_node_dim), (N, 3)."""
        features, x = self.emnn(h, pos, edges, faces, batch)
        batch = torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device) if batch is None else batch
        num_graphs = int(batch.max()) + 1
        levels = [PointLevel(features, normalized_positions(pos, batch, num_graphs), batch)]
        for pool in self.pools:
            levels.append(pool(levels[-1], num_graphs))
        features = levels[-1].features
        for unpool, coarse, fine in zip(reversed(self.unpools), reversed(levels[1:]), reversed(levels[:-1])):
            features = unpool(coarse._replace(features=features), fine, num_graphs)
        return self.head(features), x
