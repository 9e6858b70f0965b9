"""E(n)-equivariant graph network (Satorras et al. 2021) in plain torch, and iDEM's time-conditioned EGNN score.

Equations (vgsatorras/egnn ``models/egnn_clean/egnn_clean.py``), for edges (i, j) of a graph with node features h
and coordinates x:

    m_ij = φ_e(h_i, h_j, ‖x_i − x_j‖², a_ij)            [· σ(Linear(m_ij)) with attention]
    x_i ← x_i + AGG_j (x_i − x_j) / (‖x_i − x_j‖ + c) · φ_x(m_ij)   [division only if normalize; φ_x tanh-bounded]
    h_i ← h_i + φ_h(h_i, AGG_j m_ij)                     [residual]

Graphs are batched with equal size: x (B, n, d), h (B, n, f). One edge list (2, E) is shared by the whole batch and
stored as a buffer; gathers index the node axis and ``index_add_`` aggregates, so nothing loops over nodes or edges.
The first layer of φ_e is split into per-node products gathered per edge (`EGNNLayer._edge_messages`).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from core.networks import SinusoidalEmbedding, check_score_inputs
from equivariant.geometry import as_particles, remove_com

Aggregation = Literal["sum", "mean"]


def fully_connected_edges(n_nodes: int, device: torch.device | str | None = None) -> Tensor:
    """All ordered pairs (i, j) with i ≠ j as a (2, n(n−1)) index tensor, row-major in i (the edge order of ``a_ij``)."""
    if n_nodes < 2:
        raise ValueError(f"a graph needs at least 2 nodes, got {n_nodes}")
    adjacency = ~torch.eye(n_nodes, dtype=torch.bool, device=device)
    return adjacency.nonzero().T.contiguous()


def mlp(in_dim: int, hidden_dim: int, out_dim: int, act: type[nn.Module], final_act: bool) -> nn.Sequential:
    """Two-layer MLP ``Linear → act → Linear [→ act]``, the building block of every EGNN sub-network."""
    layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim), act(), nn.Linear(hidden_dim, out_dim)]
    if final_act:
        layers.append(act())
    return nn.Sequential(*layers)


def coordinate_head(hidden_dim: int, out_dim: int, act: type[nn.Module]) -> nn.Sequential:
    """``Linear → act → Linear`` mapping messages to coordinate weights; the bias-free last layer starts near zero
    (xavier gain 0.001, as EGNN), so a fresh layer barely moves coordinates."""
    last = nn.Linear(hidden_dim, out_dim, bias=False)
    nn.init.xavier_uniform_(last.weight, gain=0.001)
    return nn.Sequential(nn.Linear(hidden_dim, hidden_dim), act(), last)


class EGNNLayer(nn.Module):
    """One E(n)-equivariant message-passing layer on hidden features of width ``hidden_dim``.

    :param hidden_dim: Width of h and of the messages
    :param edge_attr_dim: Width of the per-edge invariant attribute a_ij (0 = none)
    :param act: Activation class used in every MLP
    :param residual: h ← h + φ_h(·) instead of h ← φ_h(·)
    :param attention: Gate each message by σ(Linear(m_ij))
    :param normalize: Use (x_i − x_j) / (‖x_i − x_j‖ + norm_constant) instead of the raw difference. norm_constant 1 is
        iDEM's soft normalisation; a tiny one gives unit vectors (egnn_clean's ``normalize=True``).
    :param tanh: Bound φ_x to coords_range · tanh(·), limiting each coordinate step
    :param coords_range: The bound used with tanh
    :param aggregation: "sum" or "mean" over neighbours, for both the coordinate update and the message sum
    """

    def __init__(
        self,
        hidden_dim: int,
        edge_attr_dim: int = 0,
        act: type[nn.Module] = nn.SiLU,
        residual: bool = True,
        attention: bool = True,
        normalize: bool = False,
        norm_constant: float = 1.0,
        tanh: bool = True,
        coords_range: float = 1.0,
        aggregation: Aggregation = "sum",
    ) -> None:
        super().__init__()
        if aggregation not in ("sum", "mean"):
            raise ValueError(f"aggregation must be 'sum' or 'mean', got {aggregation!r}")
        self.edge_attr_dim = edge_attr_dim
        self.residual = residual
        self.normalize = normalize
        self.norm_constant = float(norm_constant)
        self.tanh = tanh
        self.coords_range = float(coords_range)
        self.aggregation = aggregation
        self.edge_mlp = mlp(2 * hidden_dim + 1 + edge_attr_dim, hidden_dim, hidden_dim, act, final_act=True)
        self.att_mlp = nn.Sequential(nn.Linear(hidden_dim, 1), nn.Sigmoid()) if attention else None
        self.node_mlp = mlp(2 * hidden_dim, hidden_dim, hidden_dim, act, final_act=False)
        self.coord_mlp = coordinate_head(hidden_dim, 1, act)

    def _aggregate(self, values: Tensor, row: Tensor, n_nodes: int) -> Tensor:
        """Sum (or average) per-edge ``values`` (B, E, k) onto their receiving node ``row``: (B, n, k)."""
        out = values.new_zeros(values.shape[0], n_nodes, values.shape[-1]).index_add_(1, row, values)
        if self.aggregation == "mean":
            out = out / torch.bincount(row, minlength=n_nodes).clamp(min=1).to(values.dtype).unsqueeze(-1)
        return out

    def _edge_messages(self, h: Tensor, row: Tensor, col: Tensor, edge_scalars: Tensor) -> Tensor:
        """φ_e(h_i, h_j, [‖x_i − x_j‖², a_ij]) for every edge: (B, E, hidden).

        The first Linear of φ_e acts on concat(h_i, h_j, s_ij) = W_a h_i + W_b h_j + W_s s_ij + b. W_a h and W_b h are
        computed once per node (n rows instead of n(n−1)) and gathered per edge; only the few scalar columns W_s run
        per edge. Same parameters (slices of the one weight) and same result as the concatenated form, up to rounding.
        """
        first = self.edge_mlp[0]
        width = h.shape[-1]
        weight = first.weight
        term_i = F.linear(h, weight[:, :width], first.bias)
        term_j = F.linear(h, weight[:, width : 2 * width])
        hidden = term_i[:, row] + term_j[:, col] + F.linear(edge_scalars, weight[:, 2 * width :])
        for module in list(self.edge_mlp)[1:]:  # the rest of φ_e (slicing the Sequential would build a module per call)
            hidden = module(hidden)
        return hidden

    def forward(self, h: Tensor, x: Tensor, edges: Tensor, edge_attr: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Update ``h`` (B, n, hidden) and ``x`` (B, n, d) along ``edges`` (2, E); ``edge_attr`` is (B, E, edge_attr_dim)."""
        row, col = edges
        if self.edge_attr_dim == 0:
            if edge_attr is not None:
                raise ValueError("this layer has edge_attr_dim=0 but received an edge_attr")
        elif edge_attr is None or edge_attr.shape != (x.shape[0], row.shape[0], self.edge_attr_dim):
            got = None if edge_attr is None else tuple(edge_attr.shape)
            raise ValueError(f"edge_attr must have shape ({x.shape[0]}, {row.shape[0]}, {self.edge_attr_dim}), got {got}")
        diff = x[:, row] - x[:, col]
        radial = diff.square().sum(-1, keepdim=True)
        messages = self._edge_messages(h, row, col, radial if edge_attr is None else torch.cat([radial, edge_attr], dim=-1))
        if self.att_mlp is not None:
            messages = messages * self.att_mlp(messages)
        if self.normalize:
            diff = diff / (torch.sqrt(radial + 1e-8) + self.norm_constant)
        weights = self.coord_mlp(messages)
        if self.tanh:
            weights = torch.tanh(weights) * self.coords_range
        n_nodes = x.shape[1]
        x = x + self._aggregate(diff * weights, row, n_nodes)
        update = self.node_mlp(torch.cat([h, self._aggregate(messages, row, n_nodes)], dim=-1))
        h = h + update if self.residual else update
        return h, x


class EGNN(nn.Module):
    """Stack of :class:`EGNNLayer` on fully connected graphs of ``n_nodes`` nodes: (h, x) ↦ (h', x').

    ``h`` (B, n, in_node_dim) is embedded to ``hidden_dim``; the output features are projected to ``out_node_dim``, or
    returned at width ``hidden_dim`` if it is None (callers that only use coordinates skip the unused head).
    ``coords_range`` is the total tanh bound, split evenly over layers (iDEM: 15 / n_layers per layer).
    """

    def __init__(
        self,
        in_node_dim: int,
        hidden_dim: int,
        out_node_dim: int | None,
        n_layers: int,
        *,
        n_nodes: int,
        edge_attr_dim: int = 0,
        act: type[nn.Module] = nn.SiLU,
        residual: bool = True,
        attention: bool = True,
        normalize: bool = False,
        norm_constant: float = 1.0,
        tanh: bool = True,
        coords_range: float = 15.0,
        aggregation: Aggregation = "sum",
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be positive, got {n_layers}")
        self.in_node_dim = in_node_dim
        self.n_nodes = n_nodes
        self.register_buffer("edges", fully_connected_edges(n_nodes), persistent=False)
        self.embedding = nn.Linear(in_node_dim, hidden_dim)
        self.layers = nn.ModuleList(
            EGNNLayer(
                hidden_dim,
                edge_attr_dim=edge_attr_dim,
                act=act,
                residual=residual,
                attention=attention,
                normalize=normalize,
                norm_constant=norm_constant,
                tanh=tanh,
                coords_range=coords_range / n_layers,
                aggregation=aggregation,
            )
            for _ in range(n_layers)
        )
        self.embedding_out = None if out_node_dim is None else nn.Linear(hidden_dim, out_node_dim)

    def forward(self, h: Tensor, x: Tensor, edge_attr: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``h`` (B, n, in_node_dim), ``x`` (B, n, d), ``edge_attr`` (B, n(n−1), edge_attr_dim) in ``self.edges`` order."""
        if x.ndim != 3 or x.shape[1] != self.n_nodes:
            raise ValueError(f"x must have shape (B, {self.n_nodes}, d), got {tuple(x.shape)}")
        if h.shape != (*x.shape[:2], self.in_node_dim):
            raise ValueError(f"h must have shape ({x.shape[0]}, {self.n_nodes}, {self.in_node_dim}), got {tuple(h.shape)}")
        h = self.embedding(h)
        for layer in self.layers:
            h, x = layer(h, x, self.edges, edge_attr)
        if self.embedding_out is not None:
            h = self.embedding_out(h)
        return h, x


class EGNNScore(nn.Module):
    """iDEM's ``EGNN_dynamics``: an E(n)-equivariant, time-conditioned score for particle systems.

    Node feature h_i = t (plus an optional sinusoidal embedding of t and an optional per-sample ``context``, both
    broadcast to every particle); edge attribute a_ij = ‖x_i − x_j‖² of the input; output x_L − x_0 with the centre
    of mass removed, so it lives in the zero-COM subspace. Flat interface: x (N, n·d), t (N,) → (N, n·d).
    A ``context`` must itself be rotation/permutation invariant for the output to stay equivariant.
    Defaults follow iDEM (attention, tanh with total coords_range 15, soft-normalised differences, sum aggregation).
    """

    def __init__(
        self,
        n_particles: int,
        spatial_dim: int,
        hidden_dim: int = 128,
        n_layers: int = 3,
        *,
        time_embed_dim: int = 0,
        context_dim: int = 0,
        act: type[nn.Module] = nn.SiLU,
        attention: bool = True,
        normalize: bool = True,
        norm_constant: float = 1.0,
        tanh: bool = True,
        coords_range: float = 15.0,
        aggregation: Aggregation = "sum",
    ) -> None:
        super().__init__()
        self.n_particles = n_particles
        self.spatial_dim = spatial_dim
        self.dim = n_particles * spatial_dim
        self.context_dim = context_dim
        self.time_embedding = SinusoidalEmbedding(time_embed_dim) if time_embed_dim else None
        self.egnn = EGNN(
            1 + time_embed_dim + context_dim,
            hidden_dim,
            None,
            n_layers,
            n_nodes=n_particles,
            edge_attr_dim=1,
            act=act,
            attention=attention,
            normalize=normalize,
            norm_constant=norm_constant,
            tanh=tanh,
            coords_range=coords_range,
            aggregation=aggregation,
        )

    def forward(self, x: Tensor, t: Tensor, context: Tensor | None = None) -> Tensor:
        t = check_score_inputs(x, t, context, self.dim, self.context_dim)
        features = [t.unsqueeze(-1)]
        if self.time_embedding is not None:
            features.append(self.time_embedding(t))
        if context is not None:
            features.append(context.to(x.dtype))
        h = torch.cat(features, dim=-1).unsqueeze(1).expand(-1, self.n_particles, -1)
        positions = as_particles(x, self.n_particles, self.spatial_dim)
        row, col = self.egnn.edges
        edge_attr = (positions[:, row] - positions[:, col]).square().sum(-1, keepdim=True)
        _, moved = self.egnn(h, positions, edge_attr)
        return remove_com((moved - positions).reshape(x.shape), self.n_particles, self.spatial_dim)
