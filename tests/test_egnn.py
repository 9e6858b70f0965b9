"""E(n) equivariance, zero-COM output, shape checks and parameter counts of the plain-torch EGNN."""

from __future__ import annotations

import pytest
import torch
from equivariance_checks import amplify_coordinate_heads
from torch import Tensor

from equivariant.egnn import EGNN, EGNNLayer, EGNNScore, fully_connected_edges

TOL = 1e-5


def random_orthogonal(d: int, det: float, gen: torch.Generator) -> Tensor:
    """A random d×d orthogonal matrix with the requested determinant (+1 rotation, −1 reflection)."""
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    if torch.linalg.det(q).sign() != det:
        q[:, 0] = -q[:, 0]
    return q.float()


def transforms(d: int, n: int, gen: torch.Generator) -> list[tuple[str, Tensor, Tensor, Tensor]]:
    """(name, Q, permutation, translation) for a rotation, a reflection, a translation and a permutation alone."""
    eye, ident, zero = torch.eye(d), torch.arange(n), torch.zeros(d)
    return [
        ("rotation", random_orthogonal(d, 1.0, gen), ident, zero),
        ("reflection", random_orthogonal(d, -1.0, gen), ident, zero),
        ("translation", eye, ident, 3.0 * torch.randn(d, generator=gen)),
        ("permutation", eye, torch.randperm(n, generator=gen), zero),
        ("all", random_orthogonal(d, -1.0, gen), torch.randperm(n, generator=gen), 3.0 * torch.randn(d, generator=gen)),
    ]


@pytest.mark.parametrize("aggregation", ["sum", "mean"])
@pytest.mark.parametrize(("n", "d", "layers"), [(4, 2, 3), (13, 3, 2)])
def test_score_is_equivariant_and_zero_com(n: int, d: int, layers: int, aggregation: str) -> None:
    torch.manual_seed(0)
    model = EGNNScore(n, d, hidden_dim=32, n_layers=layers, aggregation=aggregation)
    amplify_coordinate_heads(model)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(8, n, d, generator=gen)
    t = torch.rand(8, generator=gen)
    out = model(x.reshape(8, -1), t).reshape(8, n, d)
    assert out.abs().max() > 0.02, "output too small for the equivariance check to mean anything"
    assert out.mean(dim=1).abs().max() < 1e-6
    for name, q, perm, shift in transforms(d, n, gen):
        moved = model((x[:, perm] @ q.T + shift).reshape(8, -1), t).reshape(8, n, d)
        err = (moved - out[:, perm] @ q.T).abs().max().item()
        assert err < TOL, f"{name}: max error {err:.2e}"


@pytest.mark.parametrize(
    "options",
    [
        {"aggregation": "sum"},
        {"aggregation": "mean", "attention": False, "tanh": False, "residual": False},
        {"normalize": True, "norm_constant": 1e-8},
    ],
)
def test_raw_egnn_coordinates_equivariant_features_invariant(options: dict) -> None:
    torch.manual_seed(0)
    n, d, f = 6, 3, 5
    model = EGNN(f, 32, 4, 3, n_nodes=n, **options)
    amplify_coordinate_heads(model)
    gen = torch.Generator().manual_seed(3)
    x, h = torch.randn(4, n, d, generator=gen), torch.randn(4, n, f, generator=gen)
    h_out, x_out = model(h, x)
    assert h_out.shape == (4, n, 4) and x_out.shape == x.shape
    assert (x_out - x).abs().max() > 0.02, "coordinates barely move: check would be vacuous"
    for name, q, perm, shift in transforms(d, n, gen):
        h_moved, x_moved = model(h[:, perm], x[:, perm] @ q.T + shift)
        x_err = (x_moved - (x_out[:, perm] @ q.T + shift)).abs().max().item()
        h_err = (h_moved - h_out[:, perm]).abs().max().item()
        assert x_err < TOL and h_err < TOL, f"{name}: coordinate error {x_err:.2e}, feature error {h_err:.2e}"


def test_context_and_time_embedding_keep_equivariance_and_change_output() -> None:
    torch.manual_seed(0)
    n, d = 5, 3
    model = EGNNScore(n, d, hidden_dim=32, n_layers=2, time_embed_dim=16, context_dim=3)
    amplify_coordinate_heads(model)
    gen = torch.Generator().manual_seed(4)
    x, t, ctx = torch.randn(6, n * d, generator=gen), torch.rand(6, generator=gen), torch.randn(6, 3, generator=gen)
    out = model(x, t, ctx)
    assert (out - model(x, t, ctx + 1.0)).abs().max() > 1e-3
    _, q, perm, shift = transforms(d, n, gen)[-1]
    moved = model((x.reshape(6, n, d)[:, perm] @ q.T + shift).reshape(6, -1), t, ctx)
    assert (moved - (out.reshape(6, n, d)[:, perm] @ q.T).reshape(6, -1)).abs().max() < TOL


def test_parameter_counts_match_dem_minus_unused_feature_head() -> None:
    # DEM's EGNN_dynamics has 347,908 (DW-4) and 579,590 (LJ) parameters, including a Linear(128, 1) feature output
    # head (129 parameters) whose result it discards; EGNNScore does not build it.
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(EGNNScore(4, 2, 128, 3)) == 347_908 - 129
    assert count(EGNNScore(13, 3, 128, 5)) == 579_590 - 129


def test_fully_connected_edges() -> None:
    edges = fully_connected_edges(4)
    assert edges.shape == (2, 12)
    assert not (edges[0] == edges[1]).any()
    assert len({tuple(e) for e in edges.T.tolist()}) == 12


def test_shape_errors() -> None:
    model = EGNNScore(4, 2, hidden_dim=16, n_layers=1)
    x = torch.randn(3, 8)
    with pytest.raises(ValueError, match="x must have shape"):
        model(torch.randn(3, 6), torch.rand(3))
    with pytest.raises(ValueError, match="t must have shape"):
        model(x, torch.rand(4))
    with pytest.raises(ValueError, match="context"):
        model(x, torch.rand(3), torch.randn(3, 2))
    egnn = EGNN(2, 16, 2, 1, n_nodes=4)
    with pytest.raises(ValueError, match="h must have shape"):
        egnn(torch.randn(3, 4, 3), torch.randn(3, 4, 2))
    with pytest.raises(ValueError, match="x must have shape"):
        egnn(torch.randn(3, 5, 2), torch.randn(3, 5, 2))


def test_float64_and_backward() -> None:
    model = EGNNScore(4, 2, hidden_dim=16, n_layers=2).double()
    x = torch.randn(5, 8, dtype=torch.float64, requires_grad=True)
    out = model(x, torch.rand(5, dtype=torch.float64))
    assert out.dtype == torch.float64
    out.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def concatenated_edge_messages(layer: EGNNLayer, h: Tensor, row: Tensor, col: Tensor, edge_scalars: Tensor) -> Tensor:
    """The textbook φ_e on concat(h_i, h_j, s_ij) per edge, which the per-node split must reproduce."""
    return layer.edge_mlp(torch.cat([h[:, row], h[:, col], edge_scalars], dim=-1))


@pytest.mark.parametrize(("n", "d", "layers", "time_embed_dim"), [(4, 2, 3, 0), (7, 3, 2, 8)])
def test_per_node_edge_split_equals_concatenated_edge_input(
    n: int, d: int, layers: int, time_embed_dim: int, monkeypatch
) -> None:
    torch.manual_seed(0)
    model = EGNNScore(n, d, hidden_dim=32, n_layers=layers, time_embed_dim=time_embed_dim)  # edge_attr_dim 1
    raw = EGNN(3, 32, 4, layers, n_nodes=n)  # no edge attributes
    amplify_coordinate_heads(model)
    amplify_coordinate_heads(raw)
    gen = torch.Generator().manual_seed(5)
    x, t, h = torch.randn(6, n * d, generator=gen), torch.rand(6, generator=gen), torch.randn(6, n, 3, generator=gen)

    def outputs_and_gradients() -> list[Tensor]:
        model.zero_grad()
        score = model(x, t)
        score.square().sum().backward()
        h_out, x_out = raw(h, x.reshape(6, n, d))
        return [score, h_out, x_out, *(p.grad.clone() for p in model.parameters() if p.grad is not None)]

    split = outputs_and_gradients()
    monkeypatch.setattr(EGNNLayer, "_edge_messages", concatenated_edge_messages)
    concatenated = outputs_and_gradients()
    assert split[0].abs().max() > 0.02, "score too small for the comparison to mean anything"
    assert len(split) == len(concatenated) > 3 + 4 * layers
    for ours, reference in zip(split, concatenated):
        assert (ours - reference).abs().max() < TOL * max(1.0, reference.abs().max().item())
