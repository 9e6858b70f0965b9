"""Asymmetric unit -> full crystal (SymmCD, Levy et al., ICLR 2025, arXiv 2502.03638, §3.4; reference
sibasmarak/SymmCD `modify_frac_coords_one`): each representative goes to the nearest legal place, a Wyckoff position
whose site symmetry is nearest its label, then its orbit is expanded with the group's operations.

Unlike the reference, the decoder fails loudly: it never keeps a raw atom with multiplicity 1 when something goes wrong
(the reference's bare ``except``), it measures the projection in Å rather than in fractional units, and it checks the
expanded crystal for sites that coincide (two representatives on one fixed site, orbits that collide, a point projected
onto a site of higher symmetry than its position), merging them only when asked to.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pymatgen.core import Lattice, Structure

from crystals.asu import AsymmetricUnit
from crystals.groups import distinct_points, project, space_group


class DecodeError(ValueError):
    """An asymmetric unit that decodes to no valid crystal; the message says why."""


@dataclass(frozen=True)
class DecoderConfig:
    """How strict decoding is.

    ``duplicate_tolerance``: sites closer than this (Å) are one site; far below a bond length (the CDVAE validity rule
    rejects pairs under 0.5 Å), far above round-off. ``merge_duplicates``: keep one of a set of coinciding sites of one
    element instead of failing (coinciding sites of different elements always fail). ``max_label_mismatch``: how many
    of the 15 directions a label may differ in from the nearest Wyckoff position's label (None: any; a sampled label
    need not be a point group, and the reference maps it to the nearest position without a bound)."""

    duplicate_tolerance: float = 0.1
    merge_duplicates: bool = False
    max_label_mismatch: int | None = None

    def __post_init__(self) -> None:
        if not self.duplicate_tolerance > 0:
            raise ValueError(f"duplicate_tolerance must be a positive distance in Å, got {self.duplicate_tolerance}")
        if self.max_label_mismatch is not None and not 0 <= self.max_label_mismatch <= 15:
            raise ValueError(f"max_label_mismatch must be None or in 0..15 directions, got {self.max_label_mismatch}")


@dataclass(frozen=True, eq=False)
class DecodedCrystal:
    """A decoded crystal (conventional cell) with what decoding chose and moved: per representative its Wyckoff
    letter, the number of directions its label disagreed with that position's, and how far (Å) it was moved onto it;
    and how many coinciding sites were merged."""

    structure: Structure
    wyckoff_letters: tuple[str, ...]
    label_mismatch: np.ndarray
    projection_distance: np.ndarray
    merged_sites: int


def decode(asu: AsymmetricUnit, config: DecoderConfig = DecoderConfig()) -> DecodedCrystal:
    """The full crystal of an asymmetric unit; raises `DecodeError` with the reason when it has none.

    For each representative: keep the members (one per orbit point) of every Wyckoff position whose label differs from
    the representative's in the fewest directions; project the coordinate onto each kept member (Cartesian, periodic)
    and take the nearest; emit that point's orbit. Position, not label, separates positions with equal labels (1a and
    1b of Pm-3m).
    """
    if len(asu.atomic_numbers) == 0:
        raise DecodeError("the asymmetric unit is empty")
    group = space_group(int(asu.space_group))
    lattice = np.asarray(asu.lattice, dtype=float)
    if abs(np.linalg.det(lattice)) < 1e-6:
        raise DecodeError("the lattice has no volume")
    index, matrices, offsets, labels = group.members
    species, coords, letters, mismatches, moved, collapsed = [], [], [], [], [], 0
    for number, point, label in zip(asu.atomic_numbers, np.mod(asu.frac_coords, 1.0), asu.site_symmetry):
        mismatch = np.count_nonzero(labels != label, axis=1)
        if config.max_label_mismatch is not None and mismatch.min() > config.max_label_mismatch:
            raise DecodeError(f"a label differs from every Wyckoff position of {group.symbol} in {mismatch.min()} "
                              f"directions (max_label_mismatch={config.max_label_mismatch})")  # fmt: skip
        candidates = np.flatnonzero(mismatch == mismatch.min())
        projected, distances = project(point, matrices[candidates], offsets[candidates], lattice)
        best = int(np.argmin(distances))
        position = group.wyckoff_positions[index[candidates[best]]]
        orbit = distinct_points(group.images(projected[best]))
        if len(orbit) != position.multiplicity and not config.merge_duplicates:
            raise DecodeError(f"Z={number} projected onto {position.multiplicity}{position.letter} of {group.symbol} "
                              f"lands on a special point: its orbit has {len(orbit)} sites")  # fmt: skip
        collapsed += position.multiplicity - len(orbit)
        species += [int(number)] * len(orbit)
        coords.append(orbit)
        letters.append(position.letter)
        mismatches.append(mismatch.min())
        moved.append(distances[best])
    structure, merged = _remove_duplicates(Structure(Lattice(lattice), species, np.concatenate(coords)), config)
    return DecodedCrystal(structure, tuple(letters), np.array(mismatches), np.array(moved), collapsed + merged)


def _remove_duplicates(structure: Structure, config: DecoderConfig) -> tuple[Structure, int]:
    """Drop sites closer than the tolerance to an earlier kept site of the same element, or raise `DecodeError`."""
    distances = structure.distance_matrix
    numbers = [site.specie.Z for site in structure]
    drop: set[int] = set()
    for i, j in zip(*np.nonzero(np.triu(distances < config.duplicate_tolerance, k=1))):
        if i in drop or j in drop:
            continue
        if numbers[i] != numbers[j]:
            raise DecodeError(f"sites of Z={numbers[i]} and Z={numbers[j]} coincide ({distances[i, j]:.3f} Å apart)")
        if not config.merge_duplicates:
            raise DecodeError(f"two Z={numbers[i]} sites coincide ({distances[i, j]:.3f} Å apart): two representatives "
                              f"on one site, or an orbit point on a symmetry element")  # fmt: skip
        drop.add(int(j))
    if drop:
        structure.remove_sites(sorted(drop))
    return structure, len(drop)
