"""Relaxed equivariance: symmetric inputs (stabilisers enumerated), equivariant baselines, generic inputs, noise."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from equivariance_checks import amplify_coordinate_heads
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ks_2samp
from torch import Tensor, nn

from equivariant.canonicalization import EGNNCanonicalizer, GroupElement, invert, random_orthogonal
from equivariant.egnn import EGNN
from equivariant.relaxed import CanonicalizedNetwork, SymmetryBreakingInput

TOL = 1e-5
SEEDS = st.integers(0, 2**31 - 1)
CENTRE = {2: torch.tensor([0.3, -0.7]), 3: torch.tensor([0.3, -0.7, 0.2])}


def regular_polygon(n: int) -> Tensor:
    angles = 0.4 + 2 * math.pi * torch.arange(n) / n  # 0.4: not aligned with the axes
    return torch.stack([angles.cos(), angles.sin()], dim=-1) + CENTRE[2]


def tetrahedron() -> Tensor:
    corners = torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]])
    return corners @ random_orthogonal(1, 3, True, torch.Generator().manual_seed(7))[0].T + CENTRE[3]


SHAPES = {"triangle": regular_polygon(3), "square": regular_polygon(4), "tetrahedron": tetrahedron()}


def stabiliser(points: Tensor, proper: bool) -> Tensor:
    """Rotation parts R (|G_x|, D, D) of the stabiliser of a point set: all orthogonal R with R x_k = x_σ(k) for a σ."""
    centred = (points - points.mean(0)).double()
    found = []
    for sigma in itertools.permutations(range(len(points))):
        r = torch.linalg.lstsq(centred, centred[list(sigma)]).solution.T
        orthogonal = (r.T @ r - torch.eye(r.shape[0], dtype=r.dtype)).abs().max() < 1e-5
        if (centred @ r.T - centred[list(sigma)]).abs().max() < 1e-5 and orthogonal and (not proper or r.det() > 0):
            found.append(r)
    return torch.stack(found).float()


def relaxed_canonicalizer(n: int, d: int, group: str, mode: str = "particles") -> EGNNCanonicalizer:
    torch.manual_seed(0)
    model = EGNNCanonicalizer(n, d, group=group, frame_vectors=mode, sort_particles=True, hidden_dim=16)  # type: ignore[arg-type]
    amplify_coordinate_heads(model)
    return model


def mlp(n_in: int, n_out: int) -> nn.Module:
    """A plain (non-equivariant) network on the flattened canonical configuration."""
    torch.manual_seed(2)
    return nn.Sequential(nn.Flatten(), nn.Linear(n_in, 32), nn.Tanh(), nn.Linear(32, n_out))


def attention_point(x: Tensor, b: Tensor) -> Tensor:
    """A jointly E(D) × S_N-equivariant point: x̄ + Σ_i softmax_i(Σ_m c_m ⟨x_i − x̄, b_m⟩) (x_i − x̄)."""
    centre = x.mean(dim=1, keepdim=True)
    coefficients = torch.tensor([2.0, -1.3, 0.7])[: b.shape[1]]
    logits = torch.einsum("bnd,bmd,m->bn", x - centre, b, coefficients)
    return centre.squeeze(1) + torch.einsum("bn,bnd->bd", logits.softmax(dim=1), x - centre)


def relaxed_models(n: int, d: int, group: str) -> dict[str, nn.Module]:
    """Construction A (plain MLP → one point) and construction B (attention point fed the canonical frame)."""
    canonicalizer = relaxed_canonicalizer(n, d, group)
    return {
        "A": CanonicalizedNetwork(canonicalizer, mlp(n * d, d), output="positions"),
        "B": SymmetryBreakingInput(attention_point, canonicalizer),
    }


def random_transforms(batch: int, n: int, d: int, proper: bool, gen: torch.Generator) -> GroupElement:
    """Random elements of E(D) × S_N (proper rotations only if ``proper``)."""
    rotation = random_orthogonal(batch, d, proper, gen)
    perm = torch.stack([torch.randperm(n, generator=gen) for _ in range(batch)])
    return GroupElement(rotation, torch.randn(batch, d, generator=gen), perm)


# ---------------------------------------------------------------------------- (i) relaxed on symmetric inputs


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("group", ["SO", "O"])
@settings(max_examples=8, deadline=None)
@given(seed=SEEDS)
def test_relaxed_equivariance_on_symmetric_inputs(shape: str, group: str, seed: int) -> None:
    points = SHAPES[shape]
    n, d = points.shape
    rotations = stabiliser(points, proper=group == "SO")
    assert len(rotations) == {"triangle": 3, "square": 4, "tetrahedron": 12}[shape] * (1 if group == "SO" else 2)
    g = random_transforms(8, n, d, group == "SO", torch.Generator().manual_seed(seed))
    x = points.expand(8, n, d)
    moved = invert(g, x, "positions")
    for name, model in relaxed_models(n, d, group).items():
        y = model(x[:1])[0]
        assert (y - CENTRE[d]).norm() > 0.05, f"{name}: the output should break the symmetry"
        # f(g·x) must equal g·(h·f(x)) for some h in the stabiliser: h·y = R_h (y − c) + c around the centre c
        candidates = (y - CENTRE[d]) @ rotations.mT + CENTRE[d]  # (|G_x|, D)
        expected = torch.einsum("bij,hj->bhi", g.rotation, candidates) + g.translation.unsqueeze(1)  # (8, |G_x|, D)
        error = (model(moved).unsqueeze(1) - expected).norm(dim=-1).amin(dim=1)
        assert error.max() < TOL, f"{name}: no stabiliser element explains the output (error {error.max():.2e})"


def test_canonical_input_of_a_symmetric_input_is_exactly_invariant_and_the_choice_varies() -> None:
    # c(gx) = g h c(x) with h ∈ G_x makes the canonical square identical for every g, while h itself depends on g:
    # relaxed, not exact, equivariance.
    points = SHAPES["square"]
    model = relaxed_models(4, 2, "O")["A"]
    g = random_transforms(64, 4, 2, False, torch.Generator().manual_seed(0))
    moved = invert(g, points.expand(64, 4, 2), "positions")
    _, canonical = model.canonicalizer(points.unsqueeze(0))
    _, canonical_moved = model.canonicalizer(moved)
    assert (canonical_moved - canonical).abs().max() < TOL
    y = model(points.unsqueeze(0))[0]
    exact = invert(g, y.expand(64, 2), "positions")
    assert ((model(moved) - exact).norm(dim=-1) > 0.1).any(), "some g should select a different stabiliser element"


# ------------------------------------------------------------------------ (ii) equivariant maps keep the symmetry


class PooledEGNNPoint(nn.Module):
    """An E(D) × S_N-equivariant point: x̄' + Σ_i w_i (x'_i − x̄') with EGNN coordinates x' and invariant weights w."""

    def __init__(self, n: int) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.egnn = EGNN(1, 16, 1, 2, n_nodes=n)
        amplify_coordinate_heads(self)

    def forward(self, x: Tensor) -> Tensor:
        relative = x - x.mean(dim=1, keepdim=True)
        weights, moved = self.egnn(relative.square().sum(-1, keepdim=True), relative)
        centred = moved - moved.mean(dim=1, keepdim=True)
        return x.mean(dim=1) + torch.einsum("bn,bnd->bd", weights.squeeze(-1), centred)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_equivariant_maps_cannot_break_the_symmetry_but_relaxed_ones_do(shape: str) -> None:
    points = SHAPES[shape]
    n, d = points.shape
    x = points.unsqueeze(0)
    rotations = stabiliser(points, proper=False)
    for f in (lambda x: x.mean(dim=1), PooledEGNNPoint(n)):
        y = f(x)[0]
        assert (y - CENTRE[d]).norm() < TOL, "an equivariant output is fixed by the stabiliser: the centre"
        assert ((y - CENTRE[d]) @ rotations.mT + CENTRE[d] - y).abs().max() < TOL
    generic = points + 0.3 * torch.randn(points.shape, generator=torch.Generator().manual_seed(0))
    assert (PooledEGNNPoint(n)(generic.unsqueeze(0))[0] - generic.mean(0)).norm() > 0.01, "the baseline is not trivial"
    assert relaxed_canonicalizer(n, d, "O", mode="pooled").group_element(x).degenerate.item()
    for name, model in relaxed_models(n, d, "O").items():
        assert (model(x)[0] - CENTRE[d]).norm() > 0.05, f"{name} should pick a non-centre point"


# ------------------------------------------------------------------------------ (iii) generic inputs: exact


def per_particle_models(n: int, d: int) -> dict[str, tuple[nn.Module, str]]:
    canonicalizer = relaxed_canonicalizer(n, d, "O")
    pooled = relaxed_canonicalizer(n, d, "SO", mode="pooled")
    return {
        "A point": (CanonicalizedNetwork(canonicalizer, mlp(n * d, d), "positions"), "positions"),
        "A positions": (
            CanonicalizedNetwork(canonicalizer, nn.Sequential(mlp(n * d, n * d), nn.Unflatten(1, (n, d))), "positions"),
            "positions",
        ),
        "A vectors (pooled SO)": (
            CanonicalizedNetwork(pooled, nn.Sequential(mlp(n * d, n * d), nn.Unflatten(1, (n, d))), "vectors"),
            "vectors",
        ),
        "A invariant": (CanonicalizedNetwork(canonicalizer, mlp(n * d, 3), "invariant"), "invariant"),
        "B point": (SymmetryBreakingInput(attention_point, canonicalizer), "positions"),
    }


@pytest.mark.parametrize("d", [2, 3])
@settings(max_examples=10, deadline=None)
@given(seed=SEEDS)
def test_relaxed_models_are_exactly_equivariant_on_generic_inputs(d: int, seed: int) -> None:
    n = 5
    x = torch.randn(8, n, d, generator=torch.Generator().manual_seed(d))
    for name, (model, kind) in per_particle_models(n, d).items():
        proper = "SO" in name
        g = random_transforms(8, n, d, proper, torch.Generator().manual_seed(seed))
        out = model(x)
        assert out.abs().max() > 0.05
        error = (model(invert(g, x, "positions")) - invert(g, out, kind)).abs().max()  # type: ignore[arg-type]
        assert error < TOL, f"{name}: equivariance error {error:.2e}"


# ------------------------------------------------------------------------------------------ noise injection


def test_noise_injection_is_equivariant_in_distribution_only() -> None:
    points = SHAPES["square"]
    model = SymmetryBreakingInput(attention_point, None)
    samples = 4000
    x = points.expand(samples, 4, 2)
    g = random_transforms(1, 4, 2, False, torch.Generator().manual_seed(5))
    g_many = GroupElement(g.rotation.expand(samples, 2, 2), g.translation.expand(samples, 2), g.permutation.expand(samples, 4))
    moved = invert(g_many, x, "positions")
    y = model(x, generator=torch.Generator().manual_seed(0))
    same_noise = model(moved, generator=torch.Generator().manual_seed(0))
    assert ((same_noise - invert(g_many, y, "positions")).norm(dim=-1) > 0.1).float().mean() > 0.5, "not pointwise"
    fresh = model(moved, generator=torch.Generator().manual_seed(1))
    pulled_back = (fresh - g.translation) @ g.rotation[0]  # g⁻¹·f(g·x)
    for statistic in (lambda p: p[:, 0], lambda p: p[:, 1], lambda p: (p - CENTRE[2]).norm(dim=-1)):
        assert ks_2samp(statistic(y).numpy(), statistic(pulled_back).numpy()).pvalue > 1e-3
    assert ((y - CENTRE[2]).norm(dim=-1) > 0.05).all() and (y.mean(0) - CENTRE[2]).norm() < 0.05


# ------------------------------------------------------------------------------------------------- errors


def test_bad_arguments_raise_clear_errors() -> None:
    canonicalizer = relaxed_canonicalizer(4, 2, "O")
    with pytest.raises(ValueError, match="output must be"):
        CanonicalizedNetwork(canonicalizer, nn.Identity(), "scalar")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="spanning"):
        SymmetryBreakingInput(attention_point, canonicalizer, torch.tensor([[1.0, 0.0], [2.0, 0.0]]))
    with pytest.raises(ValueError, match="spatial dimension"):
        SymmetryBreakingInput(attention_point, canonicalizer, torch.eye(3))(SHAPES["square"].unsqueeze(0))
