"""Crystals as flat, PyG-style tensors for the diffusion models: all nodes of all crystals stacked, a per-node crystal
index, random minibatches drawn with a torch Generator.

A node is what the denoiser sees of a crystal, and the two models see different things:

- SymmCD (Levy et al., ICLR 2025, arXiv 2502.03638, §3.1): one representative per orbit of the refined conventional
  cell, with its site-symmetry label (`asymmetric_units`): its "fewer nodes".
- DiffCSP (Jiao et al., NeurIPS 2023, arXiv 2309.04475): every atom of the Niggli-reduced cell of the dataset's CIF,
  rotated to the standard orientation of its lattice parameters, as CDVAE's ``build_crystal(niggli=True,
  primitive=False)`` that DiffCSP reads (`niggli_cells`). That cell is the file's own (for most CDVAE crystals the
  primitive one), not the conventional cell, which has more atoms in centred groups (Carbon-24: 9.2 against 13.3 per
  crystal).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from pymatgen.core import Lattice, Structure
from torch import Tensor

from crystals.data import read_split
from crystals.processed import ProcessedSplit


class CrystalBatch(NamedTuple):
    """A minibatch of B crystals with N nodes in all."""

    atomic_numbers: Tensor  # (N,) int64
    frac_coords: Tensor  # (N, 3) float
    lattice: Tensor  # (B, 3, 3) float, rows the lattice vectors (Å)
    batch: Tensor  # (N,) int64: each node's crystal, in 0..B-1, crystals in order
    space_group: Tensor  # (B,) int64
    site_symmetry: Tensor | None  # (N, 15) int64 label indices (asymmetric units only)


@dataclass(frozen=True, eq=False)
class CrystalSet:
    """Crystals as flat tensors on one device: per crystal its space group (of the refined cell), lattice and number
    of nodes; per node (crystals in order) its atomic number, fractional coordinate and, for asymmetric units, its
    site-symmetry label."""

    space_group: Tensor
    lattice: Tensor
    num_nodes: Tensor
    atomic_numbers: Tensor
    frac_coords: Tensor
    site_symmetry: Tensor | None = None

    def __post_init__(self) -> None:
        crystals, nodes = len(self.space_group), int(self.num_nodes.sum()) if len(self.num_nodes) else 0
        if crystals == 0:
            raise ValueError("a crystal set needs at least one crystal")
        if self.lattice.shape != (crystals, 3, 3) or self.num_nodes.shape != (crystals,):
            raise ValueError(f"need lattice ({crystals}, 3, 3) and num_nodes ({crystals},), got "
                             f"{tuple(self.lattice.shape)} and {tuple(self.num_nodes.shape)}")  # fmt: skip
        if (self.num_nodes < 1).any():
            raise ValueError("every crystal needs at least one node")
        if self.atomic_numbers.shape != (nodes,) or self.frac_coords.shape != (nodes, 3):
            raise ValueError(f"need {nodes} atomic numbers and ({nodes}, 3) coordinates (the sum of num_nodes), got "
                             f"{tuple(self.atomic_numbers.shape)} and {tuple(self.frac_coords.shape)}")  # fmt: skip
        if self.site_symmetry is not None and self.site_symmetry.shape != (nodes, 15):
            raise ValueError(f"site_symmetry must be ({nodes}, 15), got {tuple(self.site_symmetry.shape)}")

    def __len__(self) -> int:
        return len(self.space_group)

    def to(self, device: torch.device | str) -> CrystalSet:
        """The same crystals on ``device``."""
        site_symmetry = None if self.site_symmetry is None else self.site_symmetry.to(device)
        return CrystalSet(self.space_group.to(device), self.lattice.to(device), self.num_nodes.to(device),
                          self.atomic_numbers.to(device), self.frac_coords.to(device), site_symmetry)  # fmt: skip

    def subset(self, indices: Tensor) -> CrystalSet:
        """Crystals ``indices`` (in that order) as a set of their own."""
        nodes = self._nodes_of(indices)[0]
        site_symmetry = None if self.site_symmetry is None else self.site_symmetry[nodes]
        return CrystalSet(self.space_group[indices], self.lattice[indices], self.num_nodes[indices],
                          self.atomic_numbers[nodes], self.frac_coords[nodes], site_symmetry)  # fmt: skip

    def batch(self, indices: Tensor, dtype: torch.dtype = torch.float32) -> CrystalBatch:
        """Crystals ``indices`` as a `CrystalBatch`, coordinates and lattices in ``dtype``."""
        nodes, batch = self._nodes_of(indices)
        site_symmetry = None if self.site_symmetry is None else self.site_symmetry[nodes]
        return CrystalBatch(self.atomic_numbers[nodes], self.frac_coords[nodes].to(dtype),
                            self.lattice[indices].to(dtype), batch, self.space_group[indices],
                            site_symmetry)  # fmt: skip

    def random_batch(self, size: int, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> CrystalBatch:
        """``size`` distinct crystals drawn uniformly with ``generator`` (all of them, shuffled, if fewer)."""
        if size < 1:
            raise ValueError(f"size must be positive, got {size}")
        order = torch.randperm(len(self), generator=generator, device=generator.device)
        return self.batch(order[:size].to(self.space_group.device), dtype)

    def _nodes_of(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        """The node indices of crystals ``indices`` in order, and each one's position in ``indices``."""
        indices = torch.as_tensor(indices, dtype=torch.long, device=self.num_nodes.device)
        starts = self.num_nodes.cumsum(0) - self.num_nodes
        counts = self.num_nodes[indices]
        batch = torch.repeat_interleave(torch.arange(len(indices), device=counts.device), counts)
        rank = torch.arange(len(batch), device=counts.device) - (counts.cumsum(0) - counts)[batch]
        return starts[indices][batch] + rank, batch


def asymmetric_units(split: ProcessedSplit) -> CrystalSet:
    """SymmCD's nodes: the representatives of every crystal of a preprocessed split, with their labels."""
    return CrystalSet(split.space_group, split.lattice, split.num_nodes, split.atomic_numbers, split.frac_coords,
                      split.site_symmetry)  # fmt: skip


def niggli_cell(structure: Structure) -> Structure:
    """The Niggli-reduced cell in the standard orientation of its lattice parameters (a along x, b in the xy plane),
    as CDVAE's ``build_crystal`` and so DiffCSP."""
    reduced = structure.get_reduced_structure("niggli")
    return Structure(Lattice.from_parameters(*reduced.lattice.parameters), reduced.species, reduced.frac_coords)


def niggli_cells(split: ProcessedSplit, data_root: str | os.PathLike | None = None) -> CrystalSet:
    """DiffCSP's nodes: every atom of the Niggli cell (`niggli_cell`) of the crystals of a preprocessed split, read
    again from its CSV, in the split's order, so both models train on the same crystals (those that decomposed)."""
    key = split.key
    rows = {row.material_id: row.structure for row in read_split(key["dataset"], key["split"], data_root)}
    missing = [material_id for material_id in split.material_ids if material_id not in rows]
    if missing:
        raise ValueError(f"{len(missing)} crystals of the preprocessed split are not in its CSV (first: {missing[0]}); "
                         f"the cache is stale: delete it")  # fmt: skip
    cells = [niggli_cell(rows[material_id]) for material_id in split.material_ids]
    return CrystalSet(
        space_group=split.space_group.clone(),
        lattice=torch.tensor(np.array([cell.lattice.matrix for cell in cells]), dtype=torch.float64),
        num_nodes=torch.tensor([len(cell) for cell in cells], dtype=torch.long),
        atomic_numbers=torch.tensor([site.specie.Z for cell in cells for site in cell], dtype=torch.long),
        frac_coords=torch.tensor(np.concatenate([np.mod(cell.frac_coords, 1.0) for cell in cells]), dtype=torch.float64),
    )
