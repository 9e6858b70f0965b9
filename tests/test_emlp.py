"""Null-space bases (dimensions, constraints, dense cross-check, caching), layer/EMLP equivariance and input checks."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.linalg import block_diag, logm

import equivariant.emlp as emlp
from equivariant.emlp import (
    EMLP,
    EquivariantLinear,
    GatedNonlinearity,
    Representation,
    bias_basis,
    cyclic,
    dihedral,
    equivariant_basis,
    from_generators,
    o2,
    o3,
    so2,
    so3,
    symmetric,
    trivial,
)

TOL = 1e-5
angles = st.floats(-2 * np.pi, 2 * np.pi, allow_nan=False)


def dense_null_space_dim(rep_in: Representation, rep_out: Representation) -> int:
    """Reference: stack the spec's Kronecker constraints on full (block-diagonal) generator matrices, rank by SVD."""
    discrete, lie = (sorted(set(a) | set(b)) for a, b in zip(rep_in.generators, rep_out.generators))
    size = rep_in.dim * rep_out.dim

    def full(rep: Representation, name: str, kind: str) -> np.ndarray:
        return block_diag(*(block.matrix(name) if kind == "discrete" else block.algebra(name) for block in rep.blocks))

    constraints = [
        np.kron(full(rep_out, g, "discrete"), np.linalg.inv(full(rep_in, g, "discrete")).T) - np.eye(size) for g in discrete
    ]
    constraints += [
        np.kron(full(rep_out, a, "lie"), np.eye(rep_in.dim)) - np.kron(np.eye(rep_out.dim), full(rep_in, a, "lie").T)
        for a in lie
    ]
    if not constraints:
        return size
    singular = np.linalg.svd(np.concatenate(constraints), compute_uv=False)
    return size - int((singular > 1e-8).sum())


def element(rep: Representation, word: list[str], algebra: dict[str, float]) -> torch.Tensor:
    return torch.tensor(rep.group_element(word, algebra), dtype=torch.float32)


def orthogonal_to_o3(q: np.ndarray) -> tuple[list[str], dict[str, float]]:
    """Write an orthogonal 3×3 matrix as (inversion)^s · exp(Σ c_i L_i) in o3()'s generators."""
    word = []
    if np.linalg.det(q) < 0:
        word, q = ["O(3):inversion"], -q
    a = np.real(logm(q))
    return word, {"O(3):Lx": a[2, 1], "O(3):Ly": a[0, 2], "O(3):Lz": a[1, 0]}


@pytest.mark.parametrize(
    ("rep_in", "rep_out", "expected"),
    [
        (symmetric(5), symmetric(5), 2),  # aI + b11ᵀ
        (symmetric(2), symmetric(2), 2),
        (so2(), so2(), 2),  # aI + bJ
        (so3(), so3(), 1),
        (o2(), o2(), 1),
        (o3(), o3(), 1),
        (cyclic(6), cyclic(6), 6),  # circulant matrices
        (dihedral(5), dihedral(5), 1),
        (trivial(), so2(), 0),  # no invariant vector: SO(2) bias space is empty
        (trivial(), symmetric(4), 1),
        (symmetric(5) * so2(), symmetric(5) * so2(), 4),  # Hom_{S_n} ⊗ Hom_{SO(2)} = 2 × 2
        (so3() * so3(), trivial(), 1),  # trace
        (so3() * so3(), so3(), 1),  # Levi-Civita
        (o3() * o3(), o3(), 0),  # the cross product is a pseudo-vector
        (symmetric(4) + trivial(), symmetric(4) + trivial(), 5),
    ],
)
def test_basis_dimensions(rep_in: Representation, rep_out: Representation, expected: int) -> None:
    basis = equivariant_basis(rep_in, rep_out)
    assert basis.shape == (rep_in.dim * rep_out.dim, expected)
    assert dense_null_space_dim(rep_in, rep_out) == expected


@pytest.mark.parametrize(
    ("rep_in", "rep_out"),
    [
        (2 * (symmetric(3) * so2()) + symmetric(3), symmetric(3) * so2() + 2 * trivial()),
        (o3() * o3() + o3(), 2 * o3() + trivial()),
        (dihedral(4) + cyclic(3), dihedral(4) * cyclic(3)),
    ],
)
def test_basis_is_orthonormal_equivariant_and_complete(rep_in: Representation, rep_out: Representation) -> None:
    basis = equivariant_basis(rep_in, rep_out)
    np.testing.assert_allclose(basis.T @ basis, np.eye(basis.shape[1]), atol=1e-10)
    assert basis.shape[1] == dense_null_space_dim(rep_in, rep_out)
    rng = np.random.default_rng(0)
    discrete, lie = rep_in.generators
    for _ in range(3):
        word = list(rng.choice(discrete, size=5)) if discrete else []
        algebra = {name: rng.normal() for name in lie}
        g_in, g_out = rep_in.group_element(word, algebra), rep_out.group_element(word, algebra)
        for w in basis.T:
            w = w.reshape(rep_out.dim, rep_in.dim)
            np.testing.assert_allclose(g_out @ w @ np.linalg.inv(g_in), w, atol=1e-9)


def test_basis_is_cached_and_read_only() -> None:
    first = equivariant_basis(symmetric(7) * so2(), symmetric(7) * so2())
    second = equivariant_basis(symmetric(7) * so2(), symmetric(7) * so2())  # equal reps built anew hit the cache
    assert second is first
    assert bias_basis(symmetric(7)) is bias_basis(symmetric(7))
    with pytest.raises(ValueError, match="read-only"):
        first[0, 0] = 1.0


def test_layer_weight_is_basis_times_parameters() -> None:
    rep_in, rep_out = 2 * so2() + trivial(), so2() + 3 * trivial()
    layer = EquivariantLinear(rep_in, rep_out)
    theta = torch.cat([pair.theta.detach().reshape(-1) for pair in layer.weight_pairs]).double()
    expected = torch.tensor(equivariant_basis(rep_in, rep_out)) @ theta
    torch.testing.assert_close(layer.weight().detach().reshape(-1).double(), expected, rtol=0, atol=1e-6)


def test_init_gives_unit_output_variance() -> None:
    rep = 3 * (symmetric(4) * so2()) + 2 * symmetric(4) + 2 * trivial()
    x = torch.randn(4096, rep.dim, generator=torch.Generator().manual_seed(0))
    variances = []
    for seed in range(16):
        torch.manual_seed(seed)
        variances.append(float(EquivariantLinear(rep, rep)(x).detach().var(0).mean()))
    assert 0.8 < np.mean(variances) < 1.25


@functools.cache
def particle_models() -> tuple[Representation, Representation, dict[str, EMLP]]:
    """4 particles in 2-D with a charge each, S_4 × O(2), one EMLP per nonlinearity mode."""
    torch.manual_seed(0)
    vectors = symmetric(4) * o2()
    rep_in, hidden = vectors + symmetric(4), 3 * vectors + 2 * symmetric(4) + trivial()
    models = {mode: EMLP(rep_in, vectors + trivial(), [hidden, hidden], nonlinearity=mode) for mode in ("gated", "norm")}
    return rep_in, vectors + trivial(), models


@settings(max_examples=25, deadline=None)
@given(angles, st.lists(st.sampled_from(["S(4):cycle", "S(4):transposition", "O(2):reflection"]), max_size=8))
def test_linear_layer_is_equivariant(theta: float, word: list[str]) -> None:
    rep_in, rep_out, _ = particle_models()
    torch.manual_seed(1)
    layer = EquivariantLinear(rep_in, rep_out)
    with torch.no_grad():
        layer.bias_pairs[0].theta.normal_()  # a nonzero invariant bias
    x = torch.randn(32, rep_in.dim)
    algebra = {"O(2):rotation": theta}
    with torch.no_grad():
        error = (layer(x @ element(rep_in, word, algebra).T) - layer(x) @ element(rep_out, word, algebra).T).abs().max()
    assert error < TOL


@settings(max_examples=25, deadline=None)
@given(angles, st.lists(st.sampled_from(["S(4):cycle", "S(4):transposition", "O(2):reflection"]), max_size=8))
def test_emlp_is_equivariant_for_particles(theta: float, word: list[str]) -> None:
    rep_in, rep_out, models = particle_models()
    x = torch.randn(32, rep_in.dim, generator=torch.Generator().manual_seed(2))
    algebra = {"O(2):rotation": theta}
    g_in, g_out = element(rep_in, word, algebra), element(rep_out, word, algebra)
    for mode, model in models.items():
        with torch.no_grad():
            out = model(x)
            error = (model(x @ g_in.T) - out @ g_out.T).abs().max()
        assert out.std() > 0.1, f"{mode}: output too small for the check to mean anything"
        assert error < TOL, f"{mode}: max error {error:.2e}"


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_emlp_is_equivariant_under_random_orthogonal_matrices(seed: int) -> None:
    """O(3) elements from the QR decomposition of Gaussian matrices, rank-2 tensors in the hidden layer."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))  # Haar-distributed orthogonal matrix
    word, algebra = orthogonal_to_o3(q)
    np.testing.assert_allclose(o3().group_element(word, algebra), q, atol=1e-8)
    rep_in, rep_out = 2 * o3() + trivial(), o3() + trivial()
    torch.manual_seed(0)
    model = EMLP(rep_in, rep_out, [4 * o3() + 4 * trivial() + o3() * o3()])
    x = torch.randn(16, rep_in.dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        error = (model(x @ element(rep_in, word, algebra).T) - model(x) @ element(rep_out, word, algebra).T).abs().max()
    assert error < TOL


def test_gated_nonlinearity_structure() -> None:
    particles = symmetric(3) * so2()
    rep = particles + so3() + 2 * trivial()
    gate = GatedNonlinearity(rep)
    assert gate.input_rep.dim == rep.dim + 3 + 1  # one gate per particle, one for the 3-D vector
    x = torch.randn(5, gate.input_rep.dim)
    out = gate(x)
    torch.testing.assert_close(out[:, 9:], torch.nn.functional.silu(x[:, 9:11]))  # scalars: pointwise
    torch.testing.assert_close(out[:, :6].reshape(5, 3, 2), x[:, :6].reshape(5, 3, 2) * torch.sigmoid(x[:, 11:14, None]))
    torch.testing.assert_close(out[:, 6:9], x[:, 6:9] * torch.sigmoid(x[:, 14:15]))
    norm = GatedNonlinearity(rep, mode="norm")
    assert norm.input_rep == rep
    units = x[:, :6].reshape(5, 3, 2)
    expected = units * torch.sigmoid(units.norm(dim=-1, keepdim=True))
    torch.testing.assert_close(norm(x[:, : rep.dim])[:, :6].reshape(5, 3, 2), expected)


def test_custom_generators_and_state_dict_round_trip() -> None:
    quarter_turn = from_generators("C4-plane", 2, discrete={"C4:r": [[0.0, -1.0], [1.0, 0.0]]})
    assert equivariant_basis(quarter_turn, quarter_turn).shape[1] == 2
    swap = from_generators("swap", 2, discrete={"Z2:s": [[0.0, 1.0], [1.0, 0.0]]})
    assert swap.blocks[0].gate is None  # permutation: pointwise nonlinearities allowed
    torch.manual_seed(0)
    model = EMLP(quarter_turn + swap, quarter_turn, [2 * quarter_turn + 2 * swap + trivial()])
    torch.manual_seed(1)
    copy = EMLP(quarter_turn + swap, quarter_turn, [2 * quarter_turn + 2 * swap + trivial()])
    copy.load_state_dict(model.state_dict())
    x = torch.randn(4, 4)
    torch.testing.assert_close(copy(x), model(x))


def test_bad_inputs_raise_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    layer = EquivariantLinear(symmetric(3), symmetric(3))
    with pytest.raises(ValueError, match=r"expects inputs \(\.\.\., 3\)"):
        layer(torch.randn(2, 4))
    with pytest.raises(ValueError, match="finite 2×2 matrix"):
        from_generators("bad", 2, discrete={"g": np.eye(3)})
    with pytest.raises(ValueError, match="singular"):
        from_generators("bad", 2, discrete={"g": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="positive integer"):
        0 * so2()
    with pytest.raises(TypeError):
        so2() * "so3"  # type: ignore[operator]
    with pytest.raises(TypeError, match="must be a Representation"):
        EquivariantLinear(so2(), np.eye(2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no nonzero equivariant linear map"):
        EMLP(so2(), trivial(), [])
    shear = from_generators("shear", 2, discrete={"sh": [[1.0, 1.0], [0.0, 1.0]]})
    with pytest.raises(ValueError, match="orthogonal action"):
        GatedNonlinearity(shear, mode="norm")
    with pytest.raises(ValueError, match="unknown generators"):
        so2().group_element(["SO(3):Lx"])
    monkeypatch.setattr(emlp, "MAX_SVD_ENTRIES", 100)
    with pytest.raises(ValueError, match="MAX_SVD_ENTRIES"):
        equivariant_basis(so3() * so3() * so3(), so3() * so3() * so3())
    monkeypatch.setattr(emlp, "MAX_DENSE_BASIS_ENTRIES", 10)
    with pytest.raises(ValueError, match="MAX_DENSE_BASIS_ENTRIES"):
        equivariant_basis(symmetric(6), 2 * symmetric(6))
