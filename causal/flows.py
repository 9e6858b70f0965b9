"""Solution functions of an implicit latent causal model: z_i = s_i⁻¹(ε_i; ε_−i), one invertible map of the noise ε_i
per latent whose parameters depend on the other noises (Brehmer, de Haan, Lippe & Cohen, NeurIPS 2022, arXiv
2203.16437, App. C; reference ``ws_crl/causal/implicit_scm.py`` with ``ws_crl/transforms.py``).

Each map is a conditional affine flow z_i = (ε_i − m_i(c_i)) / σ_i(c_i) with σ_i ≥ ``min_scale``, whose log-derivative
log|∂z_i/∂ε_i| = −log σ_i is exact. The conditioner of latent i reads c_i = ε ⊙ mask_i: ``context="others"`` lets it
see every other noise (ILCM without a graph, as the reference), ``context="ordered"`` only the noises of the latents
before it (ε_<i: an autoregressive, i.e. fixed-order, model, in which every DAG fits after a permutation of the
latents), ``context="none"`` nothing, so each map is a fixed affine map (the paper's dVAE baseline). With an acyclic
context ("ordered", "none") the map ε ↦ z is triangular, so z = s⁻¹(ε̃; ε̃) of a whole vector is a change of variables
with log-determinant Σ_i log|∂z_i/∂ε_i|, whichever latents are solved jointly.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

Context = Literal["others", "ordered", "none"]


def context_mask(num_latents: int, context: Context) -> Tensor:
    """(n, n) float: row i marks the noises the conditioner of latent i reads (never ε_i itself)."""
    if context == "others":
        return 1.0 - torch.eye(num_latents)
    if context == "ordered":
        return torch.ones(num_latents, num_latents).tril(-1)
    if context == "none":
        return torch.zeros(num_latents, num_latents)
    raise ValueError(f"context must be 'others', 'ordered' or 'none', got {context!r}")


class MaskedConditioner(nn.Module):
    """``n`` independent MLPs evaluated at once with batched weights: MLP i maps ε ⊙ mask_i to ``out_features``
    parameters of latent i's map. Batching keeps a step to a few matrix products instead of ``n`` small networks."""

    def __init__(self, mask: Tensor, out_features: int, hidden_units: int, hidden_layers: int) -> None:
        super().__init__()
        num_latents = mask.shape[0]
        self.register_buffer("mask", mask.float())
        sizes = [num_latents, *[hidden_units] * hidden_layers, out_features]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in itertools.pairwise(sizes):
            bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's default initialisation, per latent
            self.weights.append(nn.Parameter(torch.empty(num_latents, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(num_latents, fan_out).uniform_(-bound, bound)))

    def forward(self, noise: Tensor) -> Tensor:
        """(B, n) noises -> (B, n, out_features) parameters, row i computed from ε ⊙ mask_i only."""
        hidden = noise.unsqueeze(1) * self.mask  # (B, n, n): latent i's masked copy of the noises
        for layer, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            hidden = torch.einsum("bni,nio->bno", hidden, weight) + bias
            if layer < len(self.weights) - 1:
                hidden = F.relu(hidden)
        return hidden


class SolutionFunctions(nn.Module):
    """z = s⁻¹(ε; context), latent by latent: z_i = (ε_i − m_i) / σ_i with (m_i, log(σ_i − min_scale)) from the
    masked conditioner at ``context``. ``noise`` and ``context`` may differ: the ELBO of `causal.ilcm` solves the
    intervened noises ε̃_S in the context of the pre-intervention noises ε when the context is cyclic (the reference's
    ``_compute_logprob_intervened``) and of the post-intervention noises ε̃ when it is `acyclic`.

    :param num_latents: n
    :param context: "others" (ILCM as the reference), "ordered" (ILCM over target sets) or "none" (dVAE)
    :param min_scale: Lower bound of σ_i, so |∂z_i/∂ε_i| ≤ 1/min_scale (reference ``min_std`` 0.2)
    :param init_scale: σ_i at initialisation (reference: about 10, "broad", so p(ε̃_i | ε) starts wide)
    """

    def __init__(self, num_latents: int, context: Context, hidden_units: int = 64, hidden_layers: int = 2,
                 min_scale: float = 0.2, init_scale: float = 10.0) -> None:  # fmt: skip
        super().__init__()
        if not 0 < min_scale < init_scale:
            raise ValueError(f"need 0 < min_scale < init_scale, got {min_scale} and {init_scale}")
        self.min_scale = min_scale
        #: Whether latent i reads only latents before it, so that solving several latents at once is triangular.
        self.acyclic = context != "others"
        self.conditioner = MaskedConditioner(context_mask(num_latents, context), 2, hidden_units, hidden_layers)
        with torch.no_grad():  # start near a constant map with scale init_scale, as the reference's "broad" init
            last_weight, last_bias = self.conditioner.weights[-1], self.conditioner.biases[-1]
            last_weight[..., 0].normal_(0.0, 0.1)
            last_bias[..., 0].normal_(0.0, 1e-3)
            last_weight[..., 1].normal_(0.0, 1e-3)
            last_bias[..., 1].fill_(math.log(init_scale - min_scale))

    def _shift_scale(self, context: Tensor) -> tuple[Tensor, Tensor]:
        params = self.conditioner(context)
        return params[..., 0], self.min_scale + torch.exp(params[..., 1])

    def forward(self, noise: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        """(B, n) noises and context -> the causal latents z = s⁻¹(ε; context) and log|∂z_i/∂ε_i|, both (B, n)."""
        shift, scale = self._shift_scale(context)
        return (noise - shift) / scale, -torch.log(scale)

    def noise(self, latents: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        """The inverse: ε = s(z; context) and log|∂ε_i/∂z_i|, both (B, n)."""
        shift, scale = self._shift_scale(context)
        return latents * scale + shift, torch.log(scale)
