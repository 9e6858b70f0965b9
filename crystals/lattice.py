"""The lattice as six numbers k (DiffCSP++, Jiao et al., ICML 2024, arXiv 2402.03992, §3.2; used by SymmCD, Levy et al.,
ICLR 2025, arXiv 2502.03638, §3.3): L(k) = exp(sum_i k_i B_i), symmetric positive definite, rows the lattice vectors,
with each crystal family fixing some k (`family_mask`).

Encoding goes through the polar decomposition, S = 1/2 log(L L^T): the symmetric matrix with the lattice's metric, so
the cell is only rotated and fractional coordinates do not change. SymmCD's `lattice_to_ks` takes logm(L) directly,
which distorts monoclinic and triclinic cells (a monoclinic (3, 4, 5, 90, 100, 90) comes back as (2.97, 4, 5.02, 90,
98.0, 90)); here every family round-trips exactly.
"""

from __future__ import annotations

import math

import torch

#: B_1..B_6: E12+E21, E13+E31, E23+E32, E11-E22, E11+E22-2E33, I (pairwise orthogonal in the Frobenius product).
K_BASIS = torch.tensor([
    [[0, 1, 0], [1, 0, 0], [0, 0, 0]],
    [[0, 0, 1], [0, 0, 0], [1, 0, 0]],
    [[0, 0, 0], [0, 0, 1], [0, 1, 0]],
    [[1, 0, 0], [0, -1, 0], [0, 0, 0]],
    [[1, 0, 0], [0, 1, 0], [0, 0, -2]],
    [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
], dtype=torch.float64)  # fmt: skip
#: Crystal families by their last space-group number, and the k components each fixes (0-based).
FAMILIES = (("triclinic", 2), ("monoclinic", 15), ("orthorhombic", 74), ("tetragonal", 142), ("hexagonal", 194),
            ("cubic", 230))  # fmt: skip
_FIXED = {"triclinic": (), "monoclinic": (0, 2), "orthorhombic": (0, 1, 2), "tetragonal": (0, 1, 2, 3),
          "hexagonal": (0, 1, 2, 3), "cubic": (0, 1, 2, 3, 4)}  # fmt: skip
#: Hexagonal cells have gamma = 120 degrees: cos(gamma) = tanh(2 k_0) = -1/2.
HEXAGONAL_K0 = -math.log(3.0) / 4.0


def crystal_family(space_group: int) -> str:
    """The crystal family of a space group (trigonal groups, R included, belong to the hexagonal family)."""
    if not 1 <= int(space_group) <= 230:
        raise ValueError(f"space group number must be in 1..230, got {space_group}")
    return next(family for family, last in FAMILIES if int(space_group) <= last)


def family_mask(space_groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per space group (B,), the mask m (B, 6) of free k components and the bias b (B, 6) of fixed ones, so that
    m * k + b obeys the family's constraints (`apply_family_mask`)."""
    groups = torch.as_tensor(space_groups).reshape(-1)
    mask = torch.ones(len(groups), 6, dtype=torch.float64)
    bias = torch.zeros(len(groups), 6, dtype=torch.float64)
    for row, number in enumerate(groups.tolist()):
        family = crystal_family(number)
        mask[row, list(_FIXED[family])] = 0.0
        if family == "hexagonal":
            bias[row, 0] = HEXAGONAL_K0
    return mask, bias


def apply_family_mask(k: torch.Tensor, space_groups: torch.Tensor) -> torch.Tensor:
    """k (B, 6) with the components each space group's family fixes set to their values."""
    mask, bias = family_mask(space_groups)
    return mask.to(k) * k + bias.to(k)


def lattice_to_k(lattice: torch.Tensor) -> torch.Tensor:
    """Lattices (..., 3, 3), rows the lattice vectors -> k (..., 6) with S = 1/2 log(L L^T) = sum_i k_i B_i."""
    lattice = torch.as_tensor(lattice, dtype=torch.float64)
    eigenvalues, eigenvectors = torch.linalg.eigh(lattice @ lattice.transpose(-1, -2))
    if bool((eigenvalues <= 0).any()):
        raise ValueError("a lattice is singular (zero volume); its vectors must be linearly independent")
    log_metric = eigenvectors @ torch.diag_embed(torch.log(eigenvalues)) @ eigenvectors.transpose(-1, -2)
    symmetric = 0.5 * log_metric
    basis = K_BASIS.to(symmetric)
    return torch.einsum("...ij,kij->...k", symmetric, basis) / (basis * basis).sum(dim=(-1, -2))


def k_to_lattice(k: torch.Tensor) -> torch.Tensor:
    """k (..., 6) -> the symmetric lattice matrix exp(sum_i k_i B_i) (..., 3, 3), rows the lattice vectors."""
    k = torch.as_tensor(k)
    return torch.linalg.matrix_exp(torch.einsum("...k,kij->...ij", k, K_BASIS.to(k)))
