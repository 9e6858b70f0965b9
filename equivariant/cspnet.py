"""CSPNet: the periodic E(3)-invariant message-passing denoiser of crystal diffusion, in plain torch.

DiffCSP (Jiao et al., NeurIPS 2023, arXiv 2309.04475, §4.3; `jiaor17/DiffCSP` ``diffcsp/pl_modules/cspnet.py``) and
SymmCD (Levy et al., ICLR 2025, arXiv 2502.03638; `sibasmarak/SymmCD` ``symmcd/pl_modules/cspnet.py``). A crystal is
per-atom features a_i, fractional coordinates f_i and a lattice L (B, 3, 3) whose rows are the lattice vectors. Every
layer works on layer-normalised features ĥ = LN(h) and keeps the residual stream h un-normalised:

    m_ij = φ_m(ĥ_i, ĥ_j, vec(L Lᵀ), ψ(f_j − f_i))   for every ordered pair of atoms of one crystal, i = j included
    h_i ← h_i + φ_h(ĥ_i, mean_j m_ij)
    ψ(d) = [sin 2πk d_c, cos 2πk d_c]  for k = 1..K and each axis c: 6K features, 1-periodic in every d_c

φ_m and φ_h are two-layer SiLU MLPs that end in SiLU. The heads read LN(h): a per-atom fractional-coordinate score
Lin(h → 3, no bias), per-atom type logits, a per-crystal lattice output Lin(mean_i h_i → lattice_out_dim, no bias) and,
optionally, per-atom site-symmetry logits (SymmCD's low-rank rows × classes product).

Symmetries, by construction:

- rotations and reflections of space, L → L Qᵀ with f unchanged: L Lᵀ is unchanged, so every output is invariant,
  except the 3×3 lattice output M(h)·L (DiffCSP), which turns into M(h)·L·Qᵀ: the lattice noise lives in L's frame;
- origin shifts f → f + t and periodic images f → f + n, n ∈ ℤ³: only differences f_j − f_i enter, through ψ;
- permutations of a crystal's atoms: the graph is complete, messages are averaged and the lattice head pools by mean.

SymmCD adds ψ(f_i) of the absolute coordinate to the input (``absolute_coordinates``); that breaks origin-shift
invariance on purpose, since a space group's standard setting fixes the origin.

Where this differs from the reference code:

- ψ uses k = 1..K; the reference's ``arange(K)`` starts at k = 0, whose pair (sin 0, cos 0) = (0, 1) is constant.
  Same feature count (768 at K = 128).
- The first Linear of φ_m is evaluated by parts (per receiver, sender, crystal and edge) and summed per edge: the same
  map as on the concatenated input, with the node and lattice terms computed once per node or crystal.
- SymmCD feeds the raw lattice parameters k to φ_m; here φ_m always reads L Lᵀ, which for SymmCD's symmetric
  L = exp(Σ k_i B_i) equals exp(2 Σ k_i B_i), a one-to-one function of k.
- SymmCD embeds its site-symmetry input per row (Lin(13 → 4), then 60 → latent); here extra node features enter the
  input projection directly, as one unconstrained linear map.
- The time embedding and the space-group condition MLP (SymmCD's ``build_mlp``: Linear, ReLU, LayerNorm per hidden
  layer) live here instead of in the diffusion module.

Batches are PyG-style and flat: N atoms of all crystals stacked, ``batch`` (N,) gives each atom's crystal (in any
order). Gathers index the atom axis and ``index_add_`` aggregates, so nothing loops over atoms, edges or crystals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from core.config import CheckedConfig
from core.networks import SinusoidalEmbedding
from equivariant.egnn import mlp
from equivariant.emnn import per_mesh_mean

LATTICE_MATRIX_DIM = 9  # lattice_out_dim that returns DiffCSP's (B, 3, 3) lattice noise M(h)·L


@dataclass(frozen=True)
class CSPNetConfig(CheckedConfig):
    """Sizes of a :class:`CSPNet`. The defaults are the CPU benchmark's small network; `diffcsp` and `symmcd` give the
    published ones (``dataclasses.replace`` changes single fields)."""

    type_dim: int = 100  # width of the per-atom type input and of the type logits (DiffCSP: 100 elements, SymmCD: 94)
    hidden_dim: int = 128  # width of node features and messages
    n_layers: int = 4  # message-passing layers
    n_frequencies: int = 32  # K of the Fourier features ψ: 6K features per edge
    time_dim: int = 64  # width of the sinusoidal embedding of the diffusion time
    lattice_out_dim: int = LATTICE_MATRIX_DIM  # 9: DiffCSP's (B, 3, 3) M(h)·L; else an invariant (B, lattice_out_dim)
    condition_dim: int = 0  # per-crystal condition (SymmCD's space-group vector: 397); 0 = none
    condition_hidden_dim: int = 128  # hidden width of the condition MLP
    condition_embed_dim: int = 128  # output width of the condition MLP (SymmCD: 512)
    node_feature_dim: int = 0  # extra per-atom input (SymmCD's site-symmetry one-hot: 15 × 13 = 195); 0 = none
    absolute_coordinates: bool = False  # add ψ(f_i) of the absolute coordinate to the input (SymmCD; not shift-invariant)
    site_symmetry_rows: int = 0  # rows of the site-symmetry logits (SymmCD: 15 directions); 0 = no site-symmetry head
    site_symmetry_classes: int = 13  # classes per row (SymmCD: 13 point symmetries)
    site_symmetry_rank: int = 8  # rank of the logits, rows × rank times rank × classes (SymmCD: 8); 0 = a full Linear

    def __post_init__(self) -> None:
        super().__post_init__()
        positive = ("type_dim", "hidden_dim", "n_layers", "n_frequencies", "lattice_out_dim", "condition_hidden_dim",
                    "condition_embed_dim", "site_symmetry_classes")  # fmt: skip
        non_negative = ("condition_dim", "node_feature_dim", "site_symmetry_rows", "site_symmetry_rank")
        for name in positive + non_negative:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (1 if name in positive else 0):
                bound = "a positive" if name in positive else "a non-negative"
                raise ValueError(f"{name} must be {bound} integer, got {value!r}")
        if self.time_dim < 4 or self.time_dim % 2:
            raise ValueError(f"time_dim must be even and at least 4, got {self.time_dim}")

    @classmethod
    def diffcsp(cls) -> CSPNetConfig:
        """DiffCSP's generation network (``conf/model/decoder/cspnet.yaml`` with ``diffusion_w_type.yaml``)."""
        return cls(type_dim=100, hidden_dim=512, n_layers=6, n_frequencies=128, time_dim=256)

    @classmethod
    def symmcd(cls) -> CSPNetConfig:
        """SymmCD's mp_20 network (``conf/model/decoder/cspnet.yaml`` with ``discrete_diffusion_w_site_symm.yaml``):
        6 lattice parameters k, the 397-dimensional space-group condition, site symmetry in and out."""
        return cls(
            type_dim=94,
            hidden_dim=1024,
            n_layers=8,
            n_frequencies=128,
            time_dim=10,
            lattice_out_dim=6,
            condition_dim=397,
            condition_hidden_dim=128,
            condition_embed_dim=512,
            node_feature_dim=15 * 13,
            absolute_coordinates=True,
            site_symmetry_rows=15,
            site_symmetry_classes=13,
            site_symmetry_rank=8,
        )


class CSPNetOutput(NamedTuple):
    """What :class:`CSPNet` predicts for a flat batch of N atoms in B crystals."""

    lattice: Tensor  # (B, 3, 3) M(h)·L if lattice_out_dim = 9 (rotates with L), else (B, lattice_out_dim) invariant
    coordinates: Tensor  # (N, 3) score on the fractional coordinates
    types: Tensor  # (N, type_dim) type logits
    site_symmetry: Tensor | None  # (N, rows, classes) site-symmetry logits, None without that head


class CrystalGraph(NamedTuple):
    """Complete graph of every crystal of a flat batch and its invariant edge inputs, shared by all layers."""

    edges: Tensor  # (2, E) pairs (i, j) of one crystal, i = j included; messages from j are averaged on i
    edge_crystal: Tensor  # (E,) crystal of every edge
    atom_counts: Tensor  # (N, 1) atoms in each atom's crystal, the number of messages it averages
    lattice_gram: Tensor  # (B, 9) L Lᵀ flattened: the lattice up to rotations and reflections
    fourier: Tensor  # (E, 6K) ψ(f_j − f_i)


def crystal_edges(batch: Tensor, num_crystals: int) -> Tensor:
    """All ordered pairs (i, j) of atoms of one crystal, self-pairs included (DiffCSP's ``fc`` edges): (2, Σ n_b²).

    Edges are grouped by receiver i; ``batch`` (N,) need not be sorted.
    """
    counts = torch.bincount(batch, minlength=num_crystals)
    by_crystal = torch.argsort(batch, stable=True)  # atoms of crystal 0 first, then crystal 1, ...
    crystal_start = counts.cumsum(0) - counts  # where each crystal's atoms begin in by_crystal
    partners = counts[batch]
    receiver = torch.repeat_interleave(torch.arange(batch.shape[0], device=batch.device), partners)
    rank_in_crystal = torch.arange(receiver.shape[0], device=batch.device) - (partners.cumsum(0) - partners)[receiver]
    sender = by_crystal[crystal_start[batch[receiver]] + rank_in_crystal]
    return torch.stack([receiver, sender])


def check_crystal_batch(frac_coords: Tensor, lattices: Tensor, batch: Tensor) -> None:
    """Raise ``ValueError`` unless ``frac_coords`` is (N, 3), ``lattices`` (B, 3, 3) and ``batch`` an (N,) int64 index
    of crystals in [0, B) that gives every crystal an atom."""
    if frac_coords.ndim != 2 or frac_coords.shape[1] != 3:
        raise ValueError(f"frac_coords must have shape (N, 3), got {tuple(frac_coords.shape)}")
    if lattices.ndim != 3 or lattices.shape[1:] != (3, 3):
        raise ValueError(f"lattices must have shape (B, 3, 3), got {tuple(lattices.shape)}")
    n_atoms, num_crystals = frac_coords.shape[0], lattices.shape[0]
    if batch.shape != (n_atoms,) or batch.dtype != torch.long:
        raise ValueError(f"batch must be a ({n_atoms},) int64 tensor of crystal indices, got {batch.dtype} "
                         f"{tuple(batch.shape)}")  # fmt: skip
    if n_atoms and (batch.min() < 0 or batch.max() >= num_crystals):
        raise ValueError(f"batch indexes crystals outside [0, {num_crystals}) for {num_crystals} lattices")
    empty = (torch.bincount(batch, minlength=num_crystals) == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"crystals {empty} have no atoms in batch: every lattice needs at least one atom")


class PeriodicFourierFeatures(nn.Module):
    """ψ(d) = [sin 2πk d_c, cos 2πk d_c] for k = 1..K and each of the 3 axes: (..., 3) → (..., 6K), 1-periodic."""

    def __init__(self, n_frequencies: int) -> None:
        super().__init__()
        self.dim = 6 * n_frequencies
        angular = 2 * math.pi * torch.arange(1, n_frequencies + 1, dtype=torch.float64)
        self.register_buffer("angular", angular, persistent=False)

    def forward(self, d: Tensor) -> Tensor:
        angles = ((d % 1.0).unsqueeze(-1) * self.angular.to(d.dtype)).flatten(-2)  # wrapping first keeps angles small
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


def condition_mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """SymmCD's space-group MLP (``build_mlp`` with 2 layers): Linear, ReLU, LayerNorm, Linear, ReLU, LayerNorm, Linear."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.LayerNorm(hidden_dim),
        nn.Linear(hidden_dim, hidden_dim), nn.ReLU(), nn.LayerNorm(hidden_dim),
        nn.Linear(hidden_dim, out_dim),
    )  # fmt: skip


class CSPLayer(nn.Module):
    """One pre-LayerNorm CSPNet layer: h_i ← h_i + φ_h(ĥ_i, mean_j φ_m(ĥ_i, ĥ_j, vec(L Lᵀ), ψ(f_j − f_i)))."""

    def __init__(self, hidden_dim: int, fourier_dim: int) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.norm = nn.LayerNorm(hidden_dim)
        self.edge_mlp = mlp(2 * hidden_dim + 9 + fourier_dim, hidden_dim, hidden_dim, nn.SiLU, final_act=True)
        self.node_mlp = mlp(2 * hidden_dim, hidden_dim, hidden_dim, nn.SiLU, final_act=True)

    def _messages(self, normed: Tensor, graph: CrystalGraph) -> Tensor:
        """φ_m for every edge: (E, hidden). Its first Linear, W [ĥ_i, ĥ_j, g, ψ] + b, is summed from its parts: the
        atom terms W_i ĥ and W_j ĥ once per atom, the lattice term W_g g once per crystal, only W_ψ ψ per edge."""
        first, width = self.edge_mlp[0], self.hidden_dim
        weight = first.weight
        receiver, sender = graph.edges
        hidden = (
            F.linear(normed, weight[:, :width], first.bias)[receiver]
            + F.linear(normed, weight[:, width : 2 * width])[sender]
            + F.linear(graph.lattice_gram, weight[:, 2 * width : 2 * width + 9])[graph.edge_crystal]
            + F.linear(graph.fourier, weight[:, 2 * width + 9 :])
        )
        for module in list(self.edge_mlp)[1:]:  # the rest of φ_m (slicing the Sequential would build a module per call)
            hidden = module(hidden)
        return hidden

    def forward(self, h: Tensor, graph: CrystalGraph) -> Tensor:
        """Update the node features ``h`` (N, hidden)."""
        normed = self.norm(h)
        messages = self._messages(normed, graph)
        received = messages.new_zeros(h.shape).index_add_(0, graph.edges[0], messages) / graph.atom_counts
        return h + self.node_mlp(torch.cat([normed, received], dim=-1))


class SiteSymmetryHead(nn.Module):
    """Per-atom site-symmetry logits (N, rows, classes): SymmCD's low-rank product of a per-row and a per-class factor,
    (N, rows, rank) @ (N, rank, classes), or one Linear when ``rank`` is 0."""

    def __init__(self, hidden_dim: int, rows: int, classes: int, rank: int) -> None:
        super().__init__()
        self.rows, self.classes, self.rank = rows, classes, rank
        if rank:
            self.row_factor = nn.Linear(hidden_dim, rows * rank)
            self.class_factor = nn.Linear(hidden_dim, classes * rank)
        else:
            self.logits = nn.Linear(hidden_dim, rows * classes)

    def forward(self, h: Tensor) -> Tensor:
        if not self.rank:
            return self.logits(h).view(-1, self.rows, self.classes)
        row_factor = self.row_factor(h).view(-1, self.rows, self.rank)
        class_factor = self.class_factor(h).view(-1, self.classes, self.rank)
        return row_factor @ class_factor.transpose(1, 2)


class CSPNet(nn.Module):
    """The CSPNet denoiser on a flat batch of crystals (module docstring): atoms, fractional coordinates, lattices and
    diffusion times in; lattice, coordinate-score, type and site-symmetry predictions out (:class:`CSPNetOutput`)."""

    def __init__(self, config: CSPNetConfig | None = None) -> None:
        super().__init__()
        config = CSPNetConfig() if config is None else config
        self.config = config
        hidden = config.hidden_dim
        self.fourier = PeriodicFourierFeatures(config.n_frequencies)
        self.time_embedding = SinusoidalEmbedding(config.time_dim)
        self.condition_embedding = (
            condition_mlp(config.condition_dim, config.condition_hidden_dim, config.condition_embed_dim)
            if config.condition_dim
            else None
        )
        self.type_embedding = nn.Linear(config.type_dim, hidden)
        input_dim = (
            hidden
            + config.time_dim
            + (config.condition_embed_dim if config.condition_dim else 0)
            + config.node_feature_dim
            + (self.fourier.dim if config.absolute_coordinates else 0)
        )
        self.input_projection = nn.Linear(input_dim, hidden)
        self.layers = nn.ModuleList(CSPLayer(hidden, self.fourier.dim) for _ in range(config.n_layers))
        self.final_norm = nn.LayerNorm(hidden)
        self.coordinate_head = nn.Linear(hidden, 3, bias=False)
        self.lattice_head = nn.Linear(hidden, config.lattice_out_dim, bias=False)
        self.type_head = nn.Linear(hidden, config.type_dim)
        self.site_symmetry_head = (
            SiteSymmetryHead(hidden, config.site_symmetry_rows, config.site_symmetry_classes, config.site_symmetry_rank)
            if config.site_symmetry_rows
            else None
        )

    def forward(
        self,
        types: Tensor,
        frac_coords: Tensor,
        lattices: Tensor,
        batch: Tensor,
        t: Tensor,
        condition: Tensor | None = None,
        node_features: Tensor | None = None,
    ) -> CSPNetOutput:
        """``types`` (N, type_dim) one-hot or soft atom types, ``frac_coords`` (N, 3) fractional coordinates (any real:
        only f mod 1 matters), ``lattices`` (B, 3, 3) with lattice vectors as rows, ``batch`` (N,) int64 crystal of each
        atom (every crystal needs an atom), ``t`` () or (B,) diffusion times, ``condition`` (B, condition_dim) and
        ``node_features`` (N, node_feature_dim) when the config has them."""
        check_crystal_batch(frac_coords, lattices, batch)
        num_crystals = lattices.shape[0]
        t = self._check_features(types, t, condition, node_features, frac_coords.shape[0], num_crystals)
        graph = self._graph(frac_coords, lattices, batch)
        per_crystal = [self.time_embedding(t.to(lattices.dtype))]
        if self.condition_embedding is not None and condition is not None:
            per_crystal.append(self.condition_embedding(condition))
        inputs = [self.type_embedding(types), torch.cat(per_crystal, dim=-1)[batch]]
        if node_features is not None:
            inputs.append(node_features)
        if self.config.absolute_coordinates:
            inputs.append(self.fourier(frac_coords))
        h = self.input_projection(torch.cat(inputs, dim=-1))
        for layer in self.layers:
            h = layer(h, graph)
        h = self.final_norm(h)
        lattice = self.lattice_head(per_mesh_mean(h, batch, num_crystals))
        if self.config.lattice_out_dim == LATTICE_MATRIX_DIM:
            lattice = lattice.view(-1, 3, 3) @ lattices
        site_symmetry = None if self.site_symmetry_head is None else self.site_symmetry_head(h)
        return CSPNetOutput(lattice, self.coordinate_head(h), self.type_head(h), site_symmetry)

    def _graph(self, frac_coords: Tensor, lattices: Tensor, batch: Tensor) -> CrystalGraph:
        """The complete graph of every crystal with its invariant edge inputs."""
        edges = crystal_edges(batch, lattices.shape[0])
        receiver, sender = edges
        counts = torch.bincount(batch, minlength=lattices.shape[0]).to(frac_coords.dtype)
        return CrystalGraph(
            edges=edges,
            edge_crystal=batch[receiver],
            atom_counts=counts[batch].unsqueeze(-1),
            lattice_gram=(lattices @ lattices.transpose(1, 2)).flatten(1),
            fourier=self.fourier(frac_coords[sender] - frac_coords[receiver]),
        )

    def _check_features(
        self,
        types: Tensor,
        t: Tensor,
        condition: Tensor | None,
        node_features: Tensor | None,
        n_atoms: int,
        num_crystals: int,
    ) -> Tensor:
        """Raise ``ValueError`` naming the expected and received shapes of a mis-shaped per-atom or per-crystal input;
        return t as (B,)."""
        config = self.config
        if types.shape != (n_atoms, config.type_dim):
            raise ValueError(f"types must have shape ({n_atoms}, {config.type_dim}), got {tuple(types.shape)}")
        for name, value, dim, rows in (("condition", condition, config.condition_dim, num_crystals),
                                       ("node_features", node_features, config.node_feature_dim, n_atoms)):  # fmt: skip
            if dim == 0 and value is not None:
                raise ValueError(f"this network takes no {name} ({name} dim 0), got shape {tuple(value.shape)}")
            if dim and (value is None or value.shape != (rows, dim)):
                got = None if value is None else tuple(value.shape)
                raise ValueError(f"{name} must have shape ({rows}, {dim}), got {got}")
        if t.ndim == 0:
            return t.expand(num_crystals)
        if t.shape not in ((num_crystals,), (num_crystals, 1)):
            raise ValueError(f"t must have shape () or ({num_crystals},) for {num_crystals} lattices, got {tuple(t.shape)}")
        return t.reshape(num_crystals)
