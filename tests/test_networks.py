"""TimeMLPScore (iDEM's GMM network) and SinusoidalEmbedding."""

from __future__ import annotations

import math

import pytest
import torch

from core.networks import SinusoidalEmbedding
from samplers.networks import TimeMLPScore


def test_gmm_config_parameter_count() -> None:
    # Linear(384, 128) + 3 × Linear(128, 128) + Linear(128, 2), as iDEM's MyMLP (jarridrb/DEM).
    assert sum(p.numel() for p in TimeMLPScore(2).parameters()) == 99_074


def test_output_shape_and_time_formats() -> None:
    torch.manual_seed(0)
    model = TimeMLPScore(3, hidden_dim=32, n_blocks=2)
    x = torch.randn(7, 3)
    out = model(x, torch.full((7,), 0.3))
    assert out.shape == (7, 3)
    assert torch.allclose(out, model(x, torch.tensor(0.3)))
    assert torch.allclose(out, model(x, torch.full((7, 1), 0.3)))
    assert (out - model(x, torch.full((7,), 0.7))).abs().max() > 1e-4


def test_context_changes_output() -> None:
    torch.manual_seed(0)
    model = TimeMLPScore(2, hidden_dim=32, context_dim=4)
    x, t, ctx = torch.randn(5, 2), torch.rand(5), torch.randn(5, 4)
    out = model(x, t, ctx)
    assert out.shape == (5, 2)
    assert (out - model(x, t, ctx + 1.0)).abs().max() > 1e-4


@pytest.mark.parametrize(
    ("context_dim", "x_shape", "t_shape", "ctx_shape", "match"),
    [
        (0, (5, 3), (5,), None, "x must have shape"),
        (0, (5,), (5,), None, "x must have shape"),
        (0, (5, 2), (4,), None, "t must have shape"),
        (0, (5, 2), (5, 2), None, "t must have shape"),
        (0, (5, 2), (5,), (5, 1), "no context"),
        (3, (5, 2), (5,), None, "context must have shape"),
        (3, (5, 2), (5,), (4, 3), "context must have shape"),
    ],
)
def test_bad_shapes_raise(context_dim: int, x_shape: tuple, t_shape: tuple, ctx_shape: tuple | None, match: str) -> None:
    model = TimeMLPScore(2, hidden_dim=8, n_blocks=1, context_dim=context_dim)
    ctx = None if ctx_shape is None else torch.randn(ctx_shape)
    with pytest.raises(ValueError, match=match):
        model(torch.randn(x_shape), torch.rand(t_shape), ctx)


def test_sinusoidal_embedding_dqs_frequencies() -> None:
    emb = SinusoidalEmbedding(128, max_period=1000.0)
    v = torch.tensor([0.0, 0.5, 2.0])
    out = emb(v)
    assert out.shape == (3, 128)
    k = torch.arange(64, dtype=torch.float64)
    freqs = torch.exp(-k * math.log(1000.0) / 63)
    expected = torch.cat([torch.sin(v.double()[:, None] * freqs), torch.cos(v.double()[:, None] * freqs)], dim=-1)
    assert torch.allclose(out.double(), expected, atol=1e-6)
    assert emb(torch.zeros(2, 5)).shape == (2, 5, 128)
    scaled = SinusoidalEmbedding(8, scale=25.0)
    assert torch.allclose(scaled(torch.tensor([0.1])), SinusoidalEmbedding(8)(torch.tensor([2.5])))
    with pytest.raises(ValueError):
        SinusoidalEmbedding(7)


def test_dtype_follows_input() -> None:
    model = TimeMLPScore(2, hidden_dim=16, n_blocks=1).double()
    out = model(torch.randn(4, 2, dtype=torch.float64), torch.rand(4, dtype=torch.float64))
    assert out.dtype == torch.float64
