"""Helpers shared by the equivariance tests."""

import torch
from torch import nn


def amplify_coordinate_heads(model: nn.Module, scale: float = 0.05) -> nn.Module:
    """Replace the near-zero (gain 0.001) last layers of every EGNN/EMNN coordinate head (modules named ``*coord_mlp``)
    by O(``scale``) weights, so that equivariance checks on coordinates are not vacuous. Returns the model."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.endswith("coord_mlp"):
                module[-1].weight.copy_(scale * torch.randn(module[-1].weight.shape, generator=gen))
    return model
