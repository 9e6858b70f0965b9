"""E(3)-equivariant mesh network EMNN (Trang et al., AISTATS 2024) in plain torch, with the released code's defects fixed.

Equations (Trang et al., AISTATS 2024; `HySonLab/EquiMesh` ``egnn/nn/egnn_conv.py``), for vertex features h,
coordinates x, directed edges (i, j) with a_ij = 1/deg(i) and triangles f = (i, j, k) visited in each of their three
cyclic roles:

    m_ij    = φ_e(h_i, h_j, ‖x_i − x_j‖², a_ij),                   Δx_i^E = Σ_j (x_i − x_j) φ_x(m_ij)
    n_f     = (x_i − x_j) × (x_i − x_k),  a_f = ½‖n_f‖
    m_{f,i} = φ_f(h_i, ½(h_j + h_k), a_f),                         Δx_i^F = Σ_{f∋i} u_f φ_n(m_{f,i})
    x_i'    = x_i + Δx_i^E + Δx_i^F,      h_i' = h_i + φ_h(h_i, Σ_j m_ij, Σ_{f∋i} m_{f,i})

Fixes against `HySonLab/EquiMesh` (commit 8020362):
1. Face routing: the message of (face f, role r) is summed onto vertex ``faces[r, f]`` (role-major messages scattered
   with the role-major index ``faces.reshape(-1)``), so disconnected components never interact.
2. Reflections: u_f = n_f (``orientation="se3"``, the paper) is a pseudo-vector, Q n_f = det(Q)·(rotated normal), so
   the coordinate stream is only SE(3)-equivariant. ``orientation="o3"`` uses the oriented normal

       u_f = n_f · (n_f · v_f) / (‖n_f‖ ‖v_f‖),   v_f = c_f − x̄   (face centroid minus mesh centroid),

   i.e. n_f times the cosine between n_f and v_f, a smooth orientation pseudo-scalar. Proof of O(3)-equivariance: under
   x ↦ Qx + t (Q orthogonal), translations cancel in every difference, so n_f ↦ det(Q) Q n_f and v_f ↦ Q v_f; then
   n_f · v_f ↦ det(Q) n_f · v_f, both norms are invariant, and u_f ↦ det(Q)² Q u_f = Q u_f. On a convex surface around
   its centroid u_f ≈ the outward normal of length 2·area, the paper's n_f with a consistent orientation. u_f is 0 when
   v_f lies in the face plane. It equals ‖n_f‖/‖v_f‖ times the projection n_f n_fᵀ v_f / ‖n_f‖², so it keeps n_f's scale.
   The mesh centroid couples the components of one mesh (never different meshes of a batch).

Multi-channel variant (``EGNNmc``/``MeshEGNNmc``): coordinates X_i ∈ ℝ^{3×C}, per-channel radials/areas as invariants,
ΔX_i = Σ_j (X_i − X_j) W(m_ij) and Σ_f U_f W_f(m_{f,i}) with W ∈ ℝ^{C_in×C_out}. Every channel is a point that moves
with translations (an extra vector v_i, e.g. a vertex normal, enters as the point x_i + v_i), so differences and channel
means are translation-equivariant. Channel 0 is the position: a layer that changes the channel count starts all output
channels from it (so x' ≈ x at initialisation), and the output position is the mean of the last layer's channels.
One channel (the default) is the plain EMNN.

Batching is PyG-style and flat: N vertices of all meshes stacked, ``batch`` (N,) gives each vertex's mesh, ``edges``
(2, E) and ``faces`` (3, F) hold global vertex indices (:func:`batch_meshes` builds them). Gathers index the vertex
axis and ``index_add_`` aggregates, so nothing loops over vertices, edges or faces.
"""

from __future__ import annotations

import itertools
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from equivariant.egnn import coordinate_head, mlp

Orientation = Literal["se3", "o3"]

_EPS = 1e-12  # floor of norms that are divided by (degenerate faces, faces at the centroid): gives u_f = 0 there


def edges_from_faces(faces: Tensor, num_nodes: int) -> Tensor:
    """Unique mesh edges in both directions as (2, E), sorted by (i, j), from triangles ``faces`` (3, F)."""
    pairs = torch.cat([faces[[0, 1]], faces[[1, 2]], faces[[2, 0]]], dim=1)
    keys = torch.unique(torch.cat([pairs[0] * num_nodes + pairs[1], pairs[1] * num_nodes + pairs[0]]))
    return torch.stack([keys // num_nodes, keys % num_nodes])


def batch_meshes(positions: list[Tensor], faces: list[Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Stack meshes into one flat batch: (pos (N, 3), edges (2, E), faces (3, F), batch (N,)) with global indices."""
    if len(positions) != len(faces) or not positions:
        raise ValueError(f"need one faces tensor per mesh and at least one mesh, got {len(positions)} and {len(faces)}")
    counts = torch.tensor([p.shape[0] for p in positions])
    offsets = (counts.cumsum(0) - counts).tolist()
    all_faces = torch.cat([f + offset for f, offset in zip(faces, offsets)], dim=1)
    pos = torch.cat(positions)
    batch = torch.repeat_interleave(torch.arange(len(positions)), counts).to(pos.device)
    return pos, edges_from_faces(all_faces, pos.shape[0]), all_faces, batch


def per_mesh_mean(values: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    """Average per-vertex ``values`` (N, ...) over each mesh: (num_graphs, ...)."""
    sums = values.new_zeros(num_graphs, *values.shape[1:]).index_add_(0, batch, values)
    counts = torch.bincount(batch, minlength=num_graphs).clamp(min=1).to(values.dtype)
    return sums / counts.reshape(-1, *([1] * (values.ndim - 1)))


def vertex_normals(pos: Tensor, faces: Tensor) -> Tensor:
    """Area-weighted unit vertex normals (N, 3). A pseudo-vector: a reflection flips it, so feed it only to "se3"."""
    i, j, k = faces
    face_normals = torch.linalg.cross(pos[i] - pos[j], pos[i] - pos[k])  # length 2·area: area weighting for free
    sums = pos.new_zeros(pos.shape).index_add_(0, faces.reshape(-1), face_normals.repeat(3, 1))
    return sums / sums.norm(dim=-1, keepdim=True).clamp_min(_EPS)


class MeshTopology(NamedTuple):
    """Connectivity of a flat mesh batch, validated once per forward and shared by all layers."""

    edges: Tensor  # (2, E) directed edges (i, j), messages aggregated on i
    inv_degree: Tensor  # (E, 1) edge attribute a_ij = 1/deg(i)
    faces: Tensor  # (3, F) triangles; row r is the vertex in role r
    batch: Tensor  # (N,) mesh index of every vertex
    num_graphs: int  # number of meshes in the batch

    @classmethod
    def build(cls, edges: Tensor, faces: Tensor, batch: Tensor | None, num_nodes: int) -> MeshTopology:
        """Check index tensors (shape, dtype, range, no edge or face across meshes) and derive a_ij and num_graphs."""
        for name, index, rows in (("edges", edges, 2), ("faces", faces, 3)):
            if index.ndim != 2 or index.shape[0] != rows or index.dtype != torch.long:
                raise ValueError(f"{name} must be a ({rows}, K) int64 tensor of vertex indices, got {index.dtype} "
                                 f"{tuple(index.shape)} (a (K, {rows}) tensor needs .T)")  # fmt: skip
            if index.numel() and (index.min() < 0 or index.max() >= num_nodes):
                raise ValueError(f"{name} index vertices outside [0, {num_nodes})")
        if batch is None:
            batch = torch.zeros(num_nodes, dtype=torch.long, device=edges.device)
        elif batch.shape != (num_nodes,) or batch.dtype != torch.long or (num_nodes and batch.min() < 0):
            raise ValueError(f"batch must be a ({num_nodes},) int64 tensor of mesh indices >= 0, got {batch.dtype} "
                             f"{tuple(batch.shape)}")  # fmt: skip
        if (batch[edges[0]] != batch[edges[1]]).any() or (batch[faces] != batch[faces[0]]).any():
            raise ValueError("an edge or face joins vertices of different meshes: offset each mesh's indices (batch_meshes)")
        degree = torch.bincount(edges[0], minlength=num_nodes).clamp(min=1)
        inv_degree = (1.0 / degree[edges[0]]).unsqueeze(-1)
        num_graphs = int(batch.max()) + 1 if num_nodes else 0
        return cls(edges, inv_degree, faces, batch, num_graphs)


def face_vectors(x: Tensor, topology: MeshTopology, orientation: Orientation) -> tuple[Tensor, Tensor]:
    """Per-face update direction u_f (F, 3, C) and area a_f (F, C) of every coordinate channel of ``x`` (N, 3, C)."""
    i, j, k = topology.faces
    normals = torch.linalg.cross(x[i] - x[j], x[i] - x[k], dim=1)
    normal_length = normals.norm(dim=1)
    if orientation == "se3":
        return normals, 0.5 * normal_length
    centroid = per_mesh_mean(x, topology.batch, topology.num_graphs)
    outward = (x[i] + x[j] + x[k]) / 3.0 - centroid[topology.batch[i]]
    cosine = (normals * outward).sum(1) / (normal_length.clamp_min(_EPS) * outward.norm(dim=1).clamp_min(_EPS))
    return normals * cosine.unsqueeze(1), 0.5 * normal_length


class EMNNLayer(nn.Module):
    """One EMNN layer: edge messages (EGNN, sum aggregation) plus face messages, on features of width ``hidden_dim``.

    :param hidden_dim: Width of h and of both message types
    :param vectors_in: Coordinate channels C_in of the input X (N, 3, C_in)
    :param vectors_out: Coordinate channels C_out of the output; if it differs from C_in every output channel starts from
        input channel 0 (the position), which keeps them translation-equivariant points.
    :param orientation: "se3" (face normal n_f, the paper) or "o3" (oriented normal, see module docstring)
    :param act: Activation class of every MLP
    """

    def __init__(
        self,
        hidden_dim: int,
        vectors_in: int = 1,
        vectors_out: int = 1,
        orientation: Orientation = "se3",
        act: type[nn.Module] = nn.SiLU,
    ) -> None:
        super().__init__()
        if orientation not in ("se3", "o3"):
            raise ValueError(f"orientation must be 'se3' or 'o3', got {orientation!r}")
        if vectors_in < 1 or vectors_out < 1:
            raise ValueError(f"vectors_in and vectors_out must be positive, got {vectors_in} and {vectors_out}")
        self.vectors_in = vectors_in
        self.vectors_out = vectors_out
        self.orientation: Orientation = orientation
        self.edge_mlp = mlp(2 * hidden_dim + vectors_in + 1, hidden_dim, hidden_dim, act, final_act=True)
        self.face_mlp = mlp(2 * hidden_dim + vectors_in, hidden_dim, hidden_dim, act, final_act=True)
        self.edge_coord_mlp = coordinate_head(hidden_dim, vectors_in * vectors_out, act)
        self.face_coord_mlp = coordinate_head(hidden_dim, vectors_in * vectors_out, act)
        self.node_mlp = mlp(3 * hidden_dim, hidden_dim, hidden_dim, act, final_act=False)

    def forward(self, h: Tensor, x: Tensor, topology: MeshTopology) -> tuple[Tensor, Tensor]:
        """Update ``h`` (N, hidden) and ``x`` (N, 3, C_in) → (N, hidden), (N, 3, C_out)."""
        n_nodes, c_in, c_out = h.shape[0], self.vectors_in, self.vectors_out
        row, col = topology.edges
        diff = x[row] - x[col]
        edge_messages = self.edge_mlp(torch.cat([h[row], h[col], diff.square().sum(1), topology.inv_degree], dim=-1))
        edge_weights = self.edge_coord_mlp(edge_messages).view(-1, c_in, c_out)
        edge_update = torch.einsum("edi,eio->edo", diff, edge_weights)

        faces = topology.faces  # role r: centre vertex faces[r], the other two faces[r+1], faces[r+2] (cyclic)
        directions, areas = face_vectors(x, topology, self.orientation)
        others = 0.5 * (h[faces.roll(-1, 0)] + h[faces.roll(-2, 0)])
        face_inputs = torch.cat([h[faces], others, areas.expand(3, -1, -1)], dim=-1)
        face_messages = self.face_mlp(face_inputs).flatten(0, 1)  # (3F, hidden), role-major
        face_weights = self.face_coord_mlp(face_messages).view(3, -1, c_in, c_out)
        face_update = torch.einsum("fdi,rfio->rfdo", directions, face_weights).flatten(0, 1)
        face_index = faces.reshape(-1)  # role-major, matching the messages: the fix of defect 1

        start = x if c_in == c_out else x[..., :1].expand(-1, -1, c_out)
        x = start + _scatter_sum(edge_update, row, n_nodes) + _scatter_sum(face_update, face_index, n_nodes)
        received = [_scatter_sum(edge_messages, row, n_nodes), _scatter_sum(face_messages, face_index, n_nodes)]
        return h + self.node_mlp(torch.cat([h, *received], dim=-1)), x


def _scatter_sum(values: Tensor, index: Tensor, n_nodes: int) -> Tensor:
    """Sum rows of ``values`` (K, ...) onto ``index`` (K,): (n_nodes, ...)."""
    return values.new_zeros(n_nodes, *values.shape[1:]).index_add_(0, index, values)


class EMNN(nn.Module):
    """Stack of :class:`EMNNLayer`: (h, x) of a flat mesh batch ↦ (h', x').

    ``h`` (N, in_node_dim) is embedded to ``hidden_dim``; output features are projected to ``out_node_dim`` (or
    returned at ``hidden_dim`` if None). With ``num_vectors`` C > 1 the layers output C coordinate channels and the
    output position is their mean; the first layer reads 1 + ``in_vectors`` channels (the position, then the extra
    vectors given to forward; EquiMesh: position plus vertex normal, ``num_vectors_in=2``).
    """

    def __init__(
        self,
        in_node_dim: int,
        hidden_dim: int,
        out_node_dim: int | None,
        n_layers: int,
        *,
        orientation: Orientation = "se3",
        num_vectors: int = 1,
        in_vectors: int = 0,
        act: type[nn.Module] = nn.SiLU,
    ) -> None:
        super().__init__()
        if n_layers < 1 or num_vectors < 1 or in_vectors < 0:
            raise ValueError(f"need n_layers >= 1, num_vectors >= 1, in_vectors >= 0; got {n_layers}, {num_vectors}, "
                             f"{in_vectors}")  # fmt: skip
        self.in_node_dim = in_node_dim
        self.in_vectors = in_vectors
        channels = [1 + in_vectors] + [num_vectors] * n_layers
        self.embedding = nn.Linear(in_node_dim, hidden_dim)
        self.layers = nn.ModuleList(
            EMNNLayer(hidden_dim, c_in, c_out, orientation, act) for c_in, c_out in itertools.pairwise(channels)
        )
        self.embedding_out = None if out_node_dim is None else nn.Linear(hidden_dim, out_node_dim)

    def forward(
        self,
        h: Tensor,
        pos: Tensor,
        edges: Tensor,
        faces: Tensor,
        batch: Tensor | None = None,
        vectors: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``h`` (N, in_node_dim), ``pos`` (N, 3), ``edges`` (2, E) in both directions, ``faces`` (3, F), ``batch`` (N,)
        (None: one mesh), ``vectors`` (N, 3, in_vectors) extra vectors → (N, out_node_dim), (N, 3). With
        ``orientation="o3"`` pass true vectors only: a pseudo-vector (e.g. `vertex_normals`) flips under reflections
        and breaks O(3) equivariance; "se3" accepts both."""
        if pos.ndim != 2 or pos.shape[1] != 3:
            raise ValueError(f"pos must have shape (N, 3), got {tuple(pos.shape)}")
        if h.shape != (pos.shape[0], self.in_node_dim):
            raise ValueError(f"h must have shape ({pos.shape[0]}, {self.in_node_dim}), got {tuple(h.shape)}")
        expected = (pos.shape[0], 3, self.in_vectors)
        if (vectors is None) != (self.in_vectors == 0) or (vectors is not None and vectors.shape != expected):
            got = None if vectors is None else tuple(vectors.shape)
            raise ValueError(f"vectors must be {expected if self.in_vectors else None} (in_vectors={self.in_vectors}), "
                             f"got {got}")  # fmt: skip
        topology = MeshTopology.build(edges, faces, batch, pos.shape[0])
        x = pos.unsqueeze(-1)
        if vectors is not None:
            x = torch.cat([x, x + vectors], dim=-1)  # extra vectors as points x_i + v_i: every channel translates
        h = self.embedding(h)
        for layer in self.layers:
            h, x = layer(h, x, topology)
        if self.embedding_out is not None:
            h = self.embedding_out(h)
        return h, x.mean(dim=-1)
