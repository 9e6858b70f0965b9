"""Particle-system helpers: flat (N, n_particles * spatial_dim) tensors viewed as point clouds."""

from __future__ import annotations

import torch
from torch import Tensor


def as_particles(x: Tensor, n_particles: int, spatial_dim: int) -> Tensor:
    """View a flat batch ``(..., n_particles * spatial_dim)`` as ``(..., n_particles, spatial_dim)``."""
    if x.shape[-1] != n_particles * spatial_dim:
        raise ValueError(
            f"expected last dimension {n_particles} particles x {spatial_dim} coordinates = "
            f"{n_particles * spatial_dim}, got shape {tuple(x.shape)}"
        )
    return x.reshape(*x.shape[:-1], n_particles, spatial_dim)


def remove_com(x: Tensor, n_particles: int, spatial_dim: int) -> Tensor:
    """Subtract each configuration's centre of mass (zero-COM projection), keeping the flat shape."""
    particles = as_particles(x, n_particles, spatial_dim)
    return (particles - particles.mean(dim=-2, keepdim=True)).reshape(x.shape)


def pairwise_distances(x: Tensor, n_particles: int, spatial_dim: int) -> Tensor:
    """Distances of all unique pairs ``i < j``: shape ``(..., n_particles * (n_particles - 1) / 2)``."""
    particles = as_particles(x, n_particles, spatial_dim)
    i, j = torch.triu_indices(n_particles, n_particles, offset=1, device=x.device)
    return (particles[..., i, :] - particles[..., j, :]).norm(dim=-1)
