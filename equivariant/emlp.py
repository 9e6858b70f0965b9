"""Equivariant linear layers from a null-space basis (the EMLP idea of Finzi, Welling & Wilson 2021), without JAX.

A representation says how each named group generator acts on ℝ^dim: a discrete generator g by a matrix ρ(g), a
Lie-algebra generator A by dρ(A). Generators are identified by name ("SO(2):rotation", "S(5):cycle") and act
trivially (identity, resp. zero) on a piece that does not name them. Hence sums and tensor products of pieces of
different groups describe the product group: ``symmetric(n) * so2()`` is S_n × SO(2) on ℝ^{n×2} (n particles,
2-D vectors, particle-major), while pieces of one group combine as usual (``so3() * so3()``: rank-2 tensors).

W: ρ_in → ρ_out is equivariant iff, with row-major vec,

    (ρ_out(g) ⊗ ρ_in(g)^{−T} − I) vec(W) = 0,        (dρ_out(A) ⊗ I − I ⊗ dρ_in(A)ᵀ) vec(W) = 0,

and a bias b iff (ρ_out(g) − I) b = 0, dρ_out(A) b = 0 (the same with ρ_in the trivial 1-dim representation).

A ``Representation`` is a direct sum of ``RepBlock`` pieces, and Hom(⊕ S_i, ⊕ T_j) = ⊕ Hom(S_i, T_j): the null space
is computed once per distinct (input block, output block) pair by SVD and cached, however many copies there are.
Layers keep these small bases as buffers plus the positions of their entries in W, never a dense (d_out·d_in, k)
matrix, so hidden representations with many copies stay cheap. Limits: the SVD of one block pair may hold at most
``MAX_SVD_ENTRIES`` numbers, and ``equivariant_basis`` materialises at most
``MAX_DENSE_BASIS_ENTRIES`` numbers; both raise a ValueError that says what to change.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from numpy.typing import ArrayLike
from scipy.linalg import expm
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torch import Tensor, nn

NULL_SPACE_TOL = 1e-8
"""Singular values below NULL_SPACE_TOL·max(1, σ_max) count as zero. Constraints are built from exact generators with
O(1) entries: null directions sit near 1e-14 and real ones above ~1e-3 (e.g. 2 sin(π/n) for n-cycles, n ≤ 1000)."""
MAX_SVD_ENTRIES = 2**24
"""Largest (d_out_block·d_in_block)·k₀ matrix handed to the SVD, k₀ the number of permutation orbits of W's entries
(k₀ = d_out_block·d_in_block without permutation generators): 128 MB, up to about a minute on one core."""
MAX_DENSE_BASIS_ENTRIES = 2**24
"""Largest (d_out·d_in)·k that ``equivariant_basis`` materialises (128 MB in float64)."""

NonlinearityMode = Literal["gated", "norm"]
Generators = tuple[tuple[str, np.ndarray], ...]


@dataclass(frozen=True, eq=False)
class RepBlock:
    """One summand of a representation: the action of named generators on ℝ^dim, plus how to gate it.

    Gating structure (for ``GatedNonlinearity``): the coordinates form contiguous units of ``unit_dim`` that the
    group permutes among themselves, acting inside each unit. ``gate`` is the representation of one gate value per
    unit (how the group permutes the units); ``gate is None`` means the block is a permutation representation
    (trivial included), on which pointwise nonlinearities are already equivariant.
    Equality and hashing use the matrices and gating structure, not the display name.
    """

    name: str
    dim: int
    discrete: Generators = field(repr=False)
    lie: Generators = field(repr=False)
    unit_dim: int = 1
    gate: RepBlock | None = None

    @functools.cached_property
    def _key(self) -> tuple:
        gate_key = None if self.gate is None else self.gate._key
        matrices = tuple((name, m.tobytes()) for name, m in self.discrete + self.lie)
        return (self.dim, self.unit_dim, gate_key, len(self.discrete), matrices)

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RepBlock) and self._key == other._key

    def matrix(self, generator: str) -> np.ndarray:
        """ρ(g) for a discrete generator name (identity if this block does not mention it)."""
        return dict(self.discrete).get(generator, np.eye(self.dim))

    def algebra(self, generator: str) -> np.ndarray:
        """dρ(A) for a Lie-algebra generator name (zero if this block does not mention it)."""
        return dict(self.lie).get(generator, np.zeros((self.dim, self.dim)))


@dataclass(frozen=True)
class Representation:
    """A direct sum of ``RepBlock`` pieces. ``a + b``: direct sum; ``k * a``: k copies; ``a * b``: tensor product."""

    blocks: tuple[RepBlock, ...]

    def __post_init__(self) -> None:
        if not self.blocks or not all(isinstance(b, RepBlock) for b in self.blocks):
            raise ValueError("a Representation needs at least one RepBlock; build them with symmetric(), so2(), ...")

    @property
    def dim(self) -> int:
        return sum(block.dim for block in self.blocks)

    @property
    def generators(self) -> tuple[list[str], list[str]]:
        """Sorted names of the discrete and of the Lie-algebra generators acting on some block."""
        discrete = {name for block in self.blocks for name, _ in block.discrete}
        lie = {name for block in self.blocks for name, _ in block.lie}
        return sorted(discrete), sorted(lie)

    def __add__(self, other: Representation) -> Representation:
        if not isinstance(other, Representation):
            return NotImplemented
        return Representation(self.blocks + other.blocks)

    def __mul__(self, other: int | Representation) -> Representation:
        if isinstance(other, Representation):
            right = other.blocks[0] if len(other.blocks) == 1 else _merge_blocks(other.blocks)
            # (A ⊕ B) ⊗ C = A ⊗ C ⊕ B ⊗ C keeps the row-major layout; a sum on the right is merged into one block.
            return Representation(tuple(_tensor_blocks(block, right) for block in self.blocks))
        if isinstance(other, int) and not isinstance(other, bool):
            if other < 1:
                raise ValueError(f"a multiplicity must be a positive integer, got {other}")
            return Representation(self.blocks * other)
        return NotImplemented

    __rmul__ = __mul__

    def __repr__(self) -> str:
        parts, previous, count = [], None, 0
        for block in (*self.blocks, None):
            if block is not None and previous is not None and block.name == previous.name:
                count += 1
                continue
            if previous is not None:
                parts.append(previous.name if count == 1 else f"{count}×{previous.name}")
            previous, count = block, 1
        return " ⊕ ".join(parts)

    def group_element(self, word: Sequence[str] = (), algebra: Mapping[str, float] | None = None) -> np.ndarray:
        """ρ(g) for g = g_{word[0]}···g_{word[-1]}·exp(Σ_A c_A A), with ``algebra`` = {generator name: c_A}."""
        algebra = dict(algebra or {})
        discrete_names, lie_names = self.generators
        unknown = [n for n in word if n not in discrete_names] + [n for n in algebra if n not in lie_names]
        if unknown:
            raise ValueError(f"unknown generators {unknown}; discrete: {discrete_names}, Lie algebra: {lie_names}")
        blocks = []
        for block in self.blocks:
            element = np.eye(block.dim)
            for name in word:
                element = element @ block.matrix(name)
            generator = sum((c * block.algebra(name) for name, c in algebra.items()), np.zeros((block.dim, block.dim)))
            blocks.append(element @ expm(generator))
        return _block_diag(blocks)


def trivial(n: int = 1) -> Representation:
    """n scalars, invariant under every group."""
    return _check_positive(n, "n") * Representation((_TRIVIAL,))


def symmetric(n: int) -> Representation:
    """S_n permuting the coordinates of ℝⁿ, generated by the transposition (0 1) and the n-cycle."""
    _check_positive(n, "n")
    generators = {}
    if n >= 2:
        generators[f"S({n}):transposition"] = _permutation_matrix([1, 0, *range(2, n)])
    if n >= 3:
        generators[f"S({n}):cycle"] = _permutation_matrix([*range(1, n), 0])
    return _single(f"S({n})", n, generators, {}, unit_dim=1, gate=None)


def cyclic(n: int) -> Representation:
    """C_n shifting the coordinates of ℝⁿ cyclically (the regular representation)."""
    _check_positive(n, "n")
    generators = {f"C({n}):shift": _permutation_matrix([*range(1, n), 0])} if n >= 2 else {}
    return _single(f"C({n})", n, generators, {}, unit_dim=1, gate=None)


def dihedral(n: int) -> Representation:
    """D_n, the symmetries of the regular n-gon, on ℝ²: rotation by 2π/n and the reflection (x, y) ↦ (x, −y)."""
    _check_positive(n, "n")
    c, s = np.cos(2 * np.pi / n), np.sin(2 * np.pi / n)
    generators = {f"D({n}):rotation": np.array([[c, -s], [s, c]]), f"D({n}):reflection": np.diag([1.0, -1.0])}
    return _single(f"D({n})", 2, generators, {}, unit_dim=2, gate=_TRIVIAL)


def so2() -> Representation:
    """SO(2) rotating ℝ² (Lie algebra generated by J = [[0, −1], [1, 0]])."""
    return _single("SO(2)", 2, {}, {"SO(2):rotation": _J}, unit_dim=2, gate=_TRIVIAL)


def o2() -> Representation:
    """O(2) on ℝ²: rotations plus the reflection (x, y) ↦ (x, −y)."""
    generators = {"O(2):reflection": np.diag([1.0, -1.0])}
    return _single("O(2)", 2, generators, {"O(2):rotation": _J}, unit_dim=2, gate=_TRIVIAL)


def so3() -> Representation:
    """SO(3) rotating ℝ³ (Lie algebra generated by L_i with (L_i)_jk = −ε_ijk)."""
    return _single("SO(3)", 3, {}, {f"SO(3):L{axis}": m for axis, m in zip("xyz", _rotation_generators())}, 3, _TRIVIAL)


def o3() -> Representation:
    """O(3) on ℝ³: rotations plus the inversion x ↦ −x."""
    lie = {f"O(3):L{axis}": m for axis, m in zip("xyz", _rotation_generators())}
    return _single("O(3)", 3, {"O(3):inversion": -np.eye(3)}, lie, unit_dim=3, gate=_TRIVIAL)


def from_generators(
    name: str, dim: int, discrete: Mapping[str, ArrayLike] | None = None, lie: Mapping[str, ArrayLike] | None = None
) -> Representation:
    """A representation given by its generator matrices; generator names identify the group (shared names = same group).

    Permutation matrices alone make a permutation representation (pointwise nonlinearities allowed); anything else is
    gated as one unit by an invariant scalar.
    """
    discrete, lie = dict(discrete or {}), dict(lie or {})
    is_permutation = not any(np.any(np.asarray(m, dtype=float)) for m in lie.values()) and all(
        _is_permutation(np.asarray(m, dtype=float)) for m in discrete.values()
    )
    if is_permutation:
        return _single(name, dim, discrete, lie, unit_dim=1, gate=None)
    return _single(name, dim, discrete, lie, unit_dim=dim, gate=_TRIVIAL)


@functools.cache
def equivariant_basis(rep_in: Representation, rep_out: Representation) -> np.ndarray:
    """Orthonormal basis Q (d_out·d_in, k) of the equivariant maps: vec(W) = Q θ (row-major). Cached, read-only.

    Columns are ordered by (block-type pair, output copy, input copy, basis vector), the order of
    ``EquivariantLinear``'s parameters, so ``weight().reshape(-1) == Q @ cat(θ.reshape(-1))``.
    """
    _check_representation(rep_in, "rep_in")
    _check_representation(rep_out, "rep_out")
    layout = _layout(rep_in, rep_out)
    n_rows = rep_in.dim * rep_out.dim
    n_cols = sum(pair.flat_index.shape[0] * pair.flat_index.shape[1] * pair.basis.shape[1] for pair in layout)
    if n_rows * n_cols > MAX_DENSE_BASIS_ENTRIES:
        raise ValueError(
            f"the dense basis {rep_in!r} → {rep_out!r} would hold {n_rows}×{n_cols} numbers, more than "
            f"MAX_DENSE_BASIS_ENTRIES={MAX_DENSE_BASIS_ENTRIES}; EquivariantLinear does not need it (it stores per-block "
            "bases), so use the layer, or raise equivariant.emlp.MAX_DENSE_BASIS_ENTRIES"
        )
    basis = np.zeros((n_rows, n_cols))
    column = 0
    for pair in layout:
        m_out, m_in, d_out, d_in = pair.flat_index.shape
        k = pair.basis.shape[1]
        columns = column + np.arange(m_out * m_in * k).reshape(m_out, m_in, 1, 1, k)
        basis[pair.flat_index[..., None], columns] = pair.basis.reshape(1, 1, d_out, d_in, k)
        column += m_out * m_in * k
    basis.setflags(write=False)
    return basis


def bias_basis(rep: Representation) -> np.ndarray:
    """Orthonormal basis (d, k) of the invariant vectors (equivariant biases) of ``rep``. Cached, read-only."""
    return equivariant_basis(trivial(), rep)


class EquivariantLinear(nn.Module):
    """y = W x + b with W and b equivariant: W = reshape(Q θ), b in the invariant basis; Q held as buffers.

    Parameters are one tensor θ (m_out, m_in, k) per (output block type, input block type) with m copies of each.
    Initialisation: θ ~ N(0, σ_T²) with σ_T² = d_T / Σ_S m_S k_TS per output block type T, which makes each output
    coordinate's variance 1 on average for unit-variance, uncorrelated inputs; the bias starts at zero.
    """

    def __init__(self, rep_in: Representation, rep_out: Representation, bias: bool = True) -> None:
        super().__init__()
        _check_representation(rep_in, "rep_in")
        _check_representation(rep_out, "rep_out")
        self.rep_in, self.rep_out = rep_in, rep_out
        layout = _layout(rep_in, rep_out)
        fan_in: dict[RepBlock, float] = {}
        for pair in layout:
            fan_in[pair.block_out] = fan_in.get(pair.block_out, 0.0) + pair.flat_index.shape[1] * pair.basis.shape[1]
        stds = [float(np.sqrt(pair.block_out.dim / fan_in[pair.block_out])) for pair in layout]
        self.weight_pairs = nn.ModuleList(_PairWeights(pair, std) for pair, std in zip(layout, stds))
        self.register_buffer("weight_index", _concat_index(layout), persistent=False)
        bias_layout = _layout(trivial(), rep_out) if bias else ()
        self.bias_pairs = nn.ModuleList(_PairWeights(pair, 0.0) for pair in bias_layout)
        self.register_buffer("bias_index", _concat_index(bias_layout), persistent=False)

    def weight(self) -> Tensor:
        """The equivariant (d_out, d_in) weight matrix."""
        flat = _assemble(self.weight_pairs, self.weight_index, self.rep_out.dim * self.rep_in.dim)
        return flat.reshape(self.rep_out.dim, self.rep_in.dim)

    def bias(self) -> Tensor:
        """The invariant (d_out,) bias (zeros without bias or without invariant vectors)."""
        return _assemble(self.bias_pairs, self.bias_index, self.rep_out.dim)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.rep_in, "EquivariantLinear")
        return nn.functional.linear(x, self.weight().to(x.dtype), self.bias().to(x.dtype))


class GatedNonlinearity(nn.Module):
    """Equivariant nonlinearity on ``rep``.

    Permutation blocks (scalars included) get ``activation`` pointwise. In "gated" mode every unit u of another
    block is multiplied by sigmoid(gate_u): the input is ``input_rep = rep ⊕ gates``, with one extra gate value per
    unit transforming like the units are permuted (one invariant scalar for a plain vector block), so the product
    stays equivariant. Gates are linear in the previous layer's input, so they vary only if that input has invariant
    or permutation channels (a linear map cannot make invariants out of rotating vectors). In "norm" mode each unit
    v becomes v·sigmoid(‖v‖ + b), with one learnable b per block; it needs orthogonal block actions.
    """

    def __init__(self, rep: Representation, mode: NonlinearityMode = "gated", activation: type[nn.Module] = nn.SiLU) -> None:
        super().__init__()
        _check_representation(rep, "rep")
        if mode not in ("gated", "norm"):
            raise ValueError(f"mode must be 'gated' or 'norm', got {mode!r}")
        self.rep, self.mode = rep, mode
        gated_blocks = [block for block in rep.blocks if block.gate is not None]
        if mode == "norm":
            for block in gated_blocks:
                _check_orthogonal(block)
        gates = Representation(tuple(block.gate for block in gated_blocks)) if gated_blocks and mode == "gated" else None
        self.input_rep = rep if gates is None else rep + gates
        self.activation = activation()

        offsets = np.cumsum([0, *(block.dim for block in rep.blocks)])
        pointwise, gated, gate_index, unit_index, unit_block = [], [], [], [], []
        n_units = 0
        for block, offset in zip(rep.blocks, offsets):
            coords = np.arange(offset, offset + block.dim)
            if block.gate is None:
                pointwise.append(coords)
                continue
            units = (coords - offset) // block.unit_dim
            gated.append(coords)
            gate_index.append(rep.dim + n_units + units)  # gate blocks are laid out in the order of the gated blocks
            unit_index.append(n_units + units)
            unit_block.append(np.full(block.gate.dim, len(unit_block)))
            n_units += block.gate.dim
        order = np.concatenate([*pointwise, *gated]).astype(np.int64)
        self.n_units = n_units
        self.register_buffer("pointwise_index", _index(pointwise), persistent=False)
        self.register_buffer("gated_index", _index(gated), persistent=False)
        self.register_buffer("gate_index", _index(gate_index), persistent=False)
        self.register_buffer("unit_index", _index(unit_index), persistent=False)
        self.register_buffer("unit_block", _index(unit_block), persistent=False)
        self.register_buffer("inverse_order", torch.from_numpy(np.argsort(order)), persistent=False)
        self.norm_bias = nn.Parameter(torch.zeros(len(unit_block))) if mode == "norm" else None

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.input_rep, "GatedNonlinearity")
        vectors = x[..., self.gated_index]
        if self.mode == "gated":
            scale = torch.sigmoid(x[..., self.gate_index])
        else:
            squares = vectors.new_zeros(*vectors.shape[:-1], self.n_units).index_add_(-1, self.unit_index, vectors.square())
            scale = torch.sigmoid(torch.sqrt(squares + 1e-12) + self.norm_bias[self.unit_block])[..., self.unit_index]
        out = torch.cat([self.activation(x[..., self.pointwise_index]), vectors * scale], dim=-1)
        return out[..., self.inverse_order]


class EMLP(nn.Module):
    """Equivariant MLP: EquivariantLinear → GatedNonlinearity per hidden representation, then EquivariantLinear.

    Works on (..., rep_in.dim) batches. Example, 10 particles in 2-D with a charge each, S_10 × SO(2):
    ``EMLP(symmetric(10) * so2() + symmetric(10), symmetric(10) * so2(), [8 * (symmetric(10) * so2()) + 8 * symmetric(10)])``.
    """

    def __init__(
        self,
        rep_in: Representation,
        rep_out: Representation,
        hidden_reps: Sequence[Representation],
        nonlinearity: NonlinearityMode = "gated",
        activation: type[nn.Module] = nn.SiLU,
    ) -> None:
        super().__init__()
        _check_representation(rep_in, "rep_in")
        self.rep_in, self.rep_out = rep_in, rep_out
        layers: list[nn.Module] = []
        previous = rep_in
        for hidden in hidden_reps:
            gate = GatedNonlinearity(hidden, nonlinearity, activation)
            layers += [EquivariantLinear(previous, gate.input_rep), gate]
            previous = hidden
        layers.append(EquivariantLinear(previous, rep_out))
        for layer in layers:
            if isinstance(layer, EquivariantLinear) and not layer.weight_pairs:
                raise ValueError(
                    f"no nonzero equivariant linear map {layer.rep_in!r} → {layer.rep_out!r}: the layer would ignore its "
                    "input; add channels that can reach the output (e.g. scalars or the output's own blocks)"
                )
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.rep_in, "EMLP")
        return self.layers(x)


@dataclass(frozen=True, eq=False)
class _PairLayout:
    """One (input block type → output block type) pair of a layer: its basis and where its entries sit in vec(W)."""

    block_out: RepBlock
    basis: np.ndarray  # (d_out_block·d_in_block, k), orthonormal columns
    flat_index: np.ndarray  # (m_out, m_in, d_out_block, d_in_block): row-major positions in vec(W)


class _PairWeights(nn.Module):
    """θ (m_out, m_in, k) for one block-type pair; ``values()`` gives the W entries at the pair's ``flat_index``."""

    def __init__(self, layout: _PairLayout, std: float) -> None:
        super().__init__()
        m_out, m_in = layout.flat_index.shape[:2]
        self.register_buffer("basis", torch.tensor(layout.basis, dtype=torch.get_default_dtype()))
        self.theta = nn.Parameter(torch.randn(m_out, m_in, layout.basis.shape[1]) * std)

    def values(self) -> Tensor:
        return torch.einsum("pqk,xk->pqx", self.theta, self.basis).reshape(-1)


def _assemble(pairs: nn.ModuleList, index: Tensor, size: int) -> Tensor:
    """Flat tensor of ``size`` with every pair's values at its positions (zeros elsewhere)."""
    if not pairs:
        return torch.zeros(size, device=index.device)
    values = torch.cat([pair.values() for pair in pairs])
    return values.new_zeros(size).index_put((index,), values)


def _concat_index(layout: Sequence[_PairLayout]) -> Tensor:
    return _index([pair.flat_index.reshape(-1) for pair in layout])


def _index(parts: Sequence[np.ndarray]) -> Tensor:
    return torch.from_numpy(np.concatenate(parts).astype(np.int64)) if parts else torch.zeros(0, dtype=torch.long)


def _blocks_by_type(rep: Representation) -> dict[RepBlock, list[int]]:
    """Offsets of the copies of each distinct block, in order of first appearance."""
    offsets: dict[RepBlock, list[int]] = {}
    position = 0
    for block in rep.blocks:
        offsets.setdefault(block, []).append(position)
        position += block.dim
    return offsets


@functools.cache
def _layout(rep_in: Representation, rep_out: Representation) -> tuple[_PairLayout, ...]:
    layout = []
    for block_out, out_offsets in _blocks_by_type(rep_out).items():
        for block_in, in_offsets in _blocks_by_type(rep_in).items():
            basis = _block_pair_basis(block_in, block_out)
            if basis.shape[1] == 0:
                continue
            rows = np.array(out_offsets)[:, None, None, None] + np.arange(block_out.dim)[None, None, :, None]
            cols = np.array(in_offsets)[None, :, None, None] + np.arange(block_in.dim)[None, None, None, :]
            layout.append(_PairLayout(block_out, basis, rows * rep_in.dim + cols))
    return tuple(layout)


@functools.cache
def _block_pair_basis(block_in: RepBlock, block_out: RepBlock) -> np.ndarray:
    """Orthonormal basis of Hom(block_in, block_out), one generator at a time, without forming Kronecker products.

    Generators acting by permutation matrices on both blocks permute the entries of W, so their joint invariants are
    the indicators of the orbits (connected components of the entry graph): no SVD, and usually a large reduction
    (S_n on pairs of particles has 2 orbits). Every other generator restricts the current basis B through its
    constraint C applied as matrix products on W (never as a Kronecker matrix): B ← B·null(C B) by SVD.
    """
    d_in, d_out = block_in.dim, block_out.dim
    discrete = sorted({name for name, _ in block_in.discrete + block_out.discrete})
    lie = sorted({name for name, _ in block_in.lie + block_out.lie})
    permutations = [g for g in discrete if _is_permutation(block_in.matrix(g)) and _is_permutation(block_out.matrix(g))]
    n_orbits, orbit = _entry_orbits(block_in, block_out, permutations)
    if d_out * d_in * n_orbits > MAX_SVD_ENTRIES:
        raise ValueError(
            f"the block pair {block_in.name} → {block_out.name} ({d_out}×{d_in} weights) leaves a {d_out * d_in}×"
            f"{n_orbits} system after the permutation orbits, above MAX_SVD_ENTRIES={MAX_SVD_ENTRIES} for the dense "
            "SVD; build the representation as a direct sum of smaller blocks (k * rep, not one large tensor product), "
            "or raise equivariant.emlp.MAX_SVD_ENTRIES"
        )
    basis = np.zeros((d_out * d_in, n_orbits))
    basis[np.arange(d_out * d_in), orbit] = 1.0 / np.sqrt(np.bincount(orbit)[orbit])
    # (left, right, group): group generators constrain ρ_out W ρ_in⁻¹ − W, Lie-algebra ones dρ_out W − W dρ_in
    constraints = [(block_out.matrix(g), np.linalg.inv(block_in.matrix(g)), True) for g in discrete if g not in permutations]
    constraints += [(block_out.algebra(a), block_in.algebra(a), False) for a in lie]
    for left, right, group in constraints:
        if basis.shape[1] == 0:
            break
        w = basis.reshape(d_out, d_in, -1)
        if group:
            applied = np.einsum("or,rck,cd->odk", left, w, right, optimize=True) - w
        else:
            applied = np.einsum("or,rck->ock", left, w) - np.einsum("rck,cd->rdk", w, right)
        _, singular, vt = np.linalg.svd(applied.reshape(d_out * d_in, -1), full_matrices=False)
        rank = int((singular > NULL_SPACE_TOL * max(1.0, singular[0])).sum())
        basis = basis @ vt[rank:].T
    basis.setflags(write=False)
    return basis


def _entry_orbits(block_in: RepBlock, block_out: RepBlock, permutations: Sequence[str]) -> tuple[int, np.ndarray]:
    """Orbits of W's entries under W ↦ ρ_out(g) W ρ_in(g)⁻¹ for permutation generators g: (count, orbit of each)."""
    size = block_out.dim * block_in.dim
    entries = np.arange(size)
    row, col = np.divmod(entries, block_in.dim)
    images = []
    for g in permutations:  # P e_i = e_σ(i): entry (r, c) moves to (σ_out(r), σ_in(c))
        sigma_out, sigma_in = block_out.matrix(g).argmax(0), block_in.matrix(g).argmax(0)
        images.append(sigma_out[row] * block_in.dim + sigma_in[col])
    sources = np.tile(entries, len(images))
    targets = np.concatenate(images) if images else sources
    graph = coo_matrix((np.ones(len(sources)), (sources, targets)), shape=(size, size))
    return connected_components(graph, directed=False)


def _single(
    name: str,
    dim: int,
    discrete: Mapping[str, ArrayLike],
    lie: Mapping[str, ArrayLike],
    unit_dim: int,
    gate: RepBlock | None,
) -> Representation:
    return Representation((_make_block(name, dim, discrete, lie, unit_dim, gate),))


def _make_block(
    name: str,
    dim: int,
    discrete: Mapping[str, ArrayLike],
    lie: Mapping[str, ArrayLike],
    unit_dim: int,
    gate: RepBlock | None,
) -> RepBlock:
    _check_positive(dim, "dim")
    if (gate is None and unit_dim != 1) or (gate is not None and gate.dim * unit_dim != dim):
        raise ValueError(f"inconsistent gating structure for {name}: {dim} coordinates, units of {unit_dim}, gate {gate}")
    frozen = []
    for kind, generators in (("discrete", discrete), ("Lie-algebra", lie)):
        items = []
        for generator, matrix in sorted(generators.items()):
            matrix = np.array(matrix, dtype=np.float64)
            if matrix.shape != (dim, dim) or not np.all(np.isfinite(matrix)):
                raise ValueError(
                    f"{kind} generator {generator!r} of {name} must be a finite {dim}×{dim} matrix, got shape {matrix.shape}"
                )
            if kind == "discrete" and abs(np.linalg.det(matrix)) < 1e-12:
                raise ValueError(f"discrete generator {generator!r} of {name} is singular; ρ(g) must be invertible")
            matrix.setflags(write=False)
            items.append((generator, matrix))
        frozen.append(tuple(items))
    return RepBlock(name, dim, frozen[0], frozen[1], unit_dim, gate)


def _tensor_blocks(a: RepBlock, b: RepBlock) -> RepBlock:
    """ρ_a ⊗ ρ_b: ρ(g) = ρ_a(g) ⊗ ρ_b(g), dρ(A) = dρ_a(A) ⊗ I + I ⊗ dρ_b(A), row-major index (i_a, i_b)."""
    discrete = {g: np.kron(a.matrix(g), b.matrix(g)) for g in {n for n, _ in a.discrete + b.discrete}}
    lie = {
        name: np.kron(a.algebra(name), np.eye(b.dim)) + np.kron(np.eye(a.dim), b.algebra(name))
        for name in {n for n, _ in a.lie + b.lie}
    }
    if a.gate is None and b.gate is None:  # permutation ⊗ permutation is a permutation representation
        unit_dim, gate = 1, None
    elif a.gate is None:  # units (i_a, unit of b) are contiguous and permuted by a ⊗ b.gate
        unit_dim, gate = b.unit_dim, _tensor_blocks(a, b.gate)
    elif b.dim == 1:  # a one-dimensional factor only scales a's units
        unit_dim, gate = a.unit_dim, _tensor_blocks(a.gate, b if b.gate is None else b.gate)
    else:  # interleaved units: gate the whole block by one invariant scalar
        unit_dim, gate = a.dim * b.dim, _TRIVIAL
    return _make_block(f"{a.name}⊗{b.name}", a.dim * b.dim, discrete, lie, unit_dim, gate)


def _merge_blocks(blocks: Sequence[RepBlock]) -> RepBlock:
    """A direct sum as a single block (block-diagonal generators), for use as the right factor of a tensor product."""
    dims = [block.dim for block in blocks]
    discrete = {g: _block_diag([b.matrix(g) for b in blocks]) for g in {n for b in blocks for n, _ in b.discrete}}
    lie = {a: _block_diag([b.algebra(a) for b in blocks]) for a in {n for b in blocks for n, _ in b.lie}}
    permutation = all(block.gate is None for block in blocks)
    name = "(" + " ⊕ ".join(block.name for block in blocks) + ")"
    return _make_block(name, sum(dims), discrete, lie, 1 if permutation else sum(dims), None if permutation else _TRIVIAL)


def _block_diag(matrices: Sequence[np.ndarray]) -> np.ndarray:
    size = sum(m.shape[0] for m in matrices)
    out = np.zeros((size, size))
    offset = 0
    for m in matrices:
        out[offset : offset + m.shape[0], offset : offset + m.shape[0]] = m
        offset += m.shape[0]
    return out


def _permutation_matrix(images: Sequence[int]) -> np.ndarray:
    """P with P e_i = e_{images[i]}."""
    n = len(images)
    matrix = np.zeros((n, n))
    matrix[list(images), range(n)] = 1.0
    return matrix


def _is_permutation(matrix: np.ndarray) -> bool:
    return bool(
        matrix.ndim == 2 and np.isin(matrix, (0.0, 1.0)).all() and (matrix.sum(0) == 1).all() and (matrix.sum(1) == 1).all()
    )


def _rotation_generators() -> list[np.ndarray]:
    """L_x, L_y, L_z with (L_i)_jk = −ε_ijk, so exp(θ L_z) rotates by θ about z."""
    epsilon = np.zeros((3, 3, 3))
    for i, j, k in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
        epsilon[i, j, k], epsilon[i, k, j] = 1.0, -1.0
    return [-epsilon[i] for i in range(3)]


def _check_orthogonal(block: RepBlock) -> None:
    eye = np.eye(block.dim)
    orthogonal = all(np.allclose(m @ m.T, eye, atol=1e-9) for _, m in block.discrete)
    antisymmetric = all(np.allclose(m, -m.T, atol=1e-9) for _, m in block.lie)
    if not (orthogonal and antisymmetric):
        raise ValueError(f"the norm nonlinearity needs an orthogonal action, but {block.name} is not; use mode='gated'")


def _check_positive(n: int, name: str) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"{name} must be a positive integer, got {n!r}")
    return n


def _check_representation(rep: object, name: str) -> None:
    if not isinstance(rep, Representation):
        raise TypeError(f"{name} must be a Representation (e.g. symmetric(5) * so2()), got {type(rep).__name__}")


def _check_input(x: Tensor, rep: Representation, layer: str) -> None:
    if x.ndim == 0 or x.shape[-1] != rep.dim:
        raise ValueError(f"{layer} expects inputs (..., {rep.dim}) for {rep!r}, got shape {tuple(x.shape)}")


_J = np.array([[0.0, -1.0], [1.0, 0.0]])
_TRIVIAL = RepBlock("1", 1, (), ())
