"""Pieces every score network shares: the sinusoidal embedding of times, temperatures and coordinates, and the shape
check of a network's ``(x, t, context)`` inputs."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def check_score_inputs(x: Tensor, t: Tensor, context: Tensor | None, dim: int, context_dim: int) -> Tensor:
    """Validate ``x`` (N, dim), ``t`` ((), (N,) or (N, 1)) and ``context`` (N, context_dim); return t as (N,) in x's dtype.

    Raises ``ValueError`` with the offending shapes, so a mis-wired caller fails loudly instead of broadcasting.
    """
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"x must have shape (N, {dim}), got {tuple(x.shape)}")
    n = x.shape[0]
    if t.ndim == 0:
        t = t.expand(n)
    elif t.shape in ((n,), (n, 1)):
        t = t.reshape(n)
    else:
        raise ValueError(f"t must have shape (), ({n},) or ({n}, 1) to match x {tuple(x.shape)}, got {tuple(t.shape)}")
    if context_dim == 0:
        if context is not None:
            raise ValueError(f"this network takes no context (context_dim=0), got shape {tuple(context.shape)}")
    elif context is None or context.shape != (n, context_dim):
        got = None if context is None else tuple(context.shape)
        raise ValueError(f"context must have shape ({n}, {context_dim}), got {got}")
    return t.to(x.dtype)


class SinusoidalEmbedding(nn.Module):
    """Map values of any shape ``(...)`` to ``(..., dim)`` features ``[sin(scale·v·f_k), cos(scale·v·f_k)]``.

    Frequencies f_k = exp(-k ln(max_period) / (dim/2 - 1)), k = 0..dim/2-1, so they span 1 down to exactly
    1/max_period. iDEM's ``MyMLP`` uses max_period 10000; DQS uses 1000 (vineetjain96/Diffusion_Q_Sampling). The
    guided-diffusion convention exp(-k ln P / (dim/2)) equals this one with ``max_period = P ** ((dim/2 - 1) / (dim/2))``.
    """

    def __init__(self, dim: int, scale: float = 1.0, max_period: float = 10000.0) -> None:
        super().__init__()
        if dim < 4 or dim % 2:
            raise ValueError(f"dim must be even and at least 4, got {dim}")
        if max_period <= 1.0:
            raise ValueError(f"max_period must exceed 1, got {max_period}")
        half = dim // 2
        self.dim = dim
        self.scale = float(scale)
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float64) / (half - 1))
        self.register_buffer("freqs", freqs.float(), persistent=False)

    def forward(self, v: Tensor) -> Tensor:
        angles = (self.scale * v).unsqueeze(-1) * self.freqs.to(v.dtype)
        return torch.cat([angles.sin(), angles.cos()], dim=-1)
