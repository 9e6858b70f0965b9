"""Time-conditioned score / drift networks with the shared signature ``forward(x, t, context=None) -> (N, dim)``.

``TimeMLPScore`` is iDEM's GMM network (``MyMLP``, jarridrb/DEM ``mlp.py``); the particle-system counterpart is
:class:`equivariant.egnn.EGNNScore`; both embed with `core.networks.SinusoidalEmbedding`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from core.networks import SinusoidalEmbedding, check_score_inputs


class TimeMLPScore(nn.Module):
    """iDEM's GMM score network ("MyMLP"): per-coordinate and time sinusoidal embeddings into a residual GELU MLP.

    Input = concat(emb(x_1), …, emb(x_dim), emb(t)[, context]) → Linear → GELU → ``n_blocks`` × [h + GELU(Linear(h))]
    → Linear(dim). The optional raw ``context`` (e.g. an RL state) is concatenated to the embeddings. With dim=2 and
    the defaults this has 99,074 parameters, as in the reference.
    """

    def __init__(
        self,
        dim: int,
        hidden_dim: int = 128,
        n_blocks: int = 3,
        time_embed_dim: int = 128,
        coord_embed_dim: int = 128,
        coord_embed_scale: float = 25.0,
        context_dim: int = 0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.context_dim = context_dim
        self.coord_embedding = SinusoidalEmbedding(coord_embed_dim, scale=coord_embed_scale)
        self.time_embedding = SinusoidalEmbedding(time_embed_dim)
        self.input = nn.Linear(dim * coord_embed_dim + time_embed_dim + context_dim, hidden_dim)
        self.blocks = nn.ModuleList(nn.Linear(hidden_dim, hidden_dim) for _ in range(n_blocks))
        self.output = nn.Linear(hidden_dim, dim)

    def forward(self, x: Tensor, t: Tensor, context: Tensor | None = None) -> Tensor:
        t = check_score_inputs(x, t, context, self.dim, self.context_dim)
        features = [self.coord_embedding(x).flatten(1), self.time_embedding(t)]
        if context is not None:
            features.append(context.to(x.dtype))
        h = F.gelu(self.input(torch.cat(features, dim=-1)))
        for block in self.blocks:
            h = h + F.gelu(block(h))
        return self.output(h)
