"""Time-conditioned score / drift networks with the shared signature ``forward(x, t, context=None) -> (N, dim)``.

``TimeMLPScore`` is iDEM's GMM network (``MyMLP``, jarridrb/DEM ``mlp.py``); the particle-system counterpart is
:class:`equivariant.egnn.EGNNScore`; ``ParticleTransformer`` is canonicalized diffusion's permutation-equivariant (not
rotation-equivariant) denoiser. All embed times with `core.networks.SinusoidalEmbedding`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from core.networks import SinusoidalEmbedding, check_score_inputs
from equivariant.geometry import as_particles, remove_com


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


class AttentionBlock(nn.Module):
    """Pre-norm multi-head self-attention with an additive per-head logit bias, then a GELU MLP (both residual)."""

    def __init__(self, dim: int, n_heads: int) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"the width {dim} must be divisible by the number of heads {n_heads}")
        self.n_heads = n_heads
        self.attention_norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, h: Tensor, bias: Tensor) -> Tensor:
        """``h`` (B, n, dim), ``bias`` (B, heads, n, n) added to the attention logits."""
        batch, n, dim = h.shape
        q, k, v = self.qkv(self.attention_norm(h)).view(batch, n, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        h = h + self.out(attended.transpose(1, 2).reshape(batch, n, dim))
        return h + self.mlp(self.mlp_norm(h))


class ParticleTransformer(nn.Module):
    """Permutation-equivariant, not rotation-equivariant ε-network on particle coordinates (the GDM-style denoiser).

    Tokens are particles: Linear(x_i) + MLP(sinusoidal(t)), with no positional encoding, so permuting the particles
    permutes the output. Every block's attention logits get a learned per-head bias from the pair distance
    ‖x_i − x_j‖, a cheap pair feature (n² scalars through a small MLP) that EGNNs get for free. Output:
    LayerNorm → Linear (zero-initialised, so training starts from ε̂ = 0) with the centre of mass removed.
    Flat interface, as every score network here: x (N, n·d), t (N,) → (N, n·d).
    """

    def __init__(
        self, n_particles: int, spatial_dim: int, hidden_dim: int = 128, n_layers: int = 4, n_heads: int = 4,
        time_embed_dim: int = 32, distance_dim: int = 32,
    ) -> None:  # fmt: skip
        super().__init__()
        self.n_particles = n_particles
        self.spatial_dim = spatial_dim
        self.dim = n_particles * spatial_dim
        self.n_layers, self.n_heads = n_layers, n_heads
        self.embed = nn.Linear(spatial_dim, hidden_dim)
        # DDPM's convention: sinusoids of 1000 t (t in [0, 1]), i.e. of the integer step of a 1000-step chain.
        self.time_embed = nn.Sequential(
            SinusoidalEmbedding(time_embed_dim, scale=1000.0), nn.Linear(time_embed_dim, hidden_dim), nn.SiLU(),
            nn.Linear(hidden_dim, hidden_dim),
        )  # fmt: skip
        self.distance_bias = nn.Sequential(nn.Linear(1, distance_dim), nn.SiLU(), nn.Linear(distance_dim, n_layers * n_heads))
        self.blocks = nn.ModuleList(AttentionBlock(hidden_dim, n_heads) for _ in range(n_layers))
        self.head = nn.Sequential(nn.LayerNorm(hidden_dim), nn.Linear(hidden_dim, spatial_dim))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: Tensor, t: Tensor, context: Tensor | None = None) -> Tensor:
        t = check_score_inputs(x, t, context, self.dim, 0)
        positions = as_particles(x, self.n_particles, self.spatial_dim)
        h = self.embed(positions) + self.time_embed(t).unsqueeze(1)
        distances = torch.cdist(positions, positions).unsqueeze(-1)  # (B, n, n, 1)
        biases = self.distance_bias(distances).permute(0, 3, 1, 2).chunk(self.n_layers, dim=1)  # (B, heads, n, n) each
        for block, bias in zip(self.blocks, biases):
            h = block(h, bias)
        return remove_com(self.head(h).reshape(x.shape), self.n_particles, self.spatial_dim)
