"""A crystal as its asymmetric unit (SymmCD, Levy et al., ICLR 2025, arXiv 2502.03638, §3.1; reference
sibasmarak/SymmCD `common/data_utils.py` and `pl_data/dataset.py`): the space group, the conventional lattice and one
representative per orbit with its element, fractional coordinate and site-symmetry label.

Cell convention: the conventional cell of the ITA standard setting, refined (idealised) by spglib, as the reference's
pyxtal crystal is. Wyckoff tables and the lattice family constraints (`crystals.lattice`) hold in that cell only; a
primitive cell of a centred group would need the Wyckoff positions rewritten per cell. The input is Niggli-reduced
first, as in the reference, so spglib starts from the same cell whatever the file gave.

One ``symprec`` serves the data and the samples (`SYMPREC`): the reference used 0.01 for perov and the test set but
0.1 for generated crystals, so labels and evaluation disagreed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import spglib
from pymatgen.core import Lattice, Structure

from crystals.groups import SpaceGroup, project, quiet_spglib, space_group, wrapped_difference
from crystals.site_symmetry import DIRECTIONS, SYMBOLS

#: spglib's distance tolerance (Å) for data and samples alike (the value SymmCD uses for carbon, MP-20 and samples).
SYMPREC = 0.1
#: spglib's angle tolerance: its own default (-1: derived from symprec). pymatgen's `SpacegroupAnalyzer`, which the
#: reference uses, passes 5 degrees; then spglib at times reports a group it cannot impose on the cell (a strained
#: spinel called Fd-3m, its refined cell P1), which no Wyckoff decomposition can hold. Changing it (or what
#: `decompose` writes) calls for a new `crystals.processed.PREPROCESSING_VERSION`.
ANGLE_TOLERANCE = -1.0
#: Largest distance (Å) from its Wyckoff position that a refined site may have (spglib symmetrises to ~1e-10 Å).
_ON_POSITION = 1e-4


@dataclass(frozen=True, eq=False)
class AsymmetricUnit:
    """What the generative model sees of a crystal: space group, conventional lattice (3, 3; rows the vectors, Å) and
    per representative its atomic number, fractional coordinate in [0, 1) and site-symmetry label (15 indices into
    `crystals.site_symmetry.SYMBOLS`). A sampled crystal has exactly these; `decompose` adds the Wyckoff letters."""

    space_group: int
    lattice: np.ndarray
    atomic_numbers: np.ndarray
    frac_coords: np.ndarray
    site_symmetry: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.atomic_numbers)
        if not 1 <= int(self.space_group) <= 230:
            raise ValueError(f"space_group must be in 1..230, got {self.space_group}")
        if np.shape(self.lattice) != (3, 3) or not np.all(np.isfinite(self.lattice)):
            raise ValueError(f"lattice must be a finite (3, 3) array, got shape {np.shape(self.lattice)}")
        if np.shape(self.frac_coords) != (n, 3) or not np.all(np.isfinite(self.frac_coords)):
            raise ValueError(f"frac_coords must be a finite ({n}, 3) array (one row per atomic number), "
                             f"got shape {np.shape(self.frac_coords)}")  # fmt: skip
        if np.shape(self.site_symmetry) != (n, len(DIRECTIONS)):
            raise ValueError(f"site_symmetry must be ({n}, {len(DIRECTIONS)}) indices into the 13 symbols, "
                             f"got shape {np.shape(self.site_symmetry)}")  # fmt: skip
        if n and not (np.min(self.site_symmetry) >= 0 and np.max(self.site_symmetry) < len(SYMBOLS)):
            raise ValueError(f"site_symmetry entries must be indices in 0..{len(SYMBOLS) - 1}")
        if n and np.min(self.atomic_numbers) < 1:
            raise ValueError("atomic_numbers must be positive (1 = H)")


@dataclass(frozen=True, eq=False)
class WyckoffDecomposition:
    """A data crystal decomposed: its asymmetric unit, the Wyckoff letter and multiplicity of each representative, and
    the refined conventional cell it came from."""

    asymmetric_unit: AsymmetricUnit
    wyckoff_letters: tuple[str, ...]
    multiplicities: np.ndarray
    conventional: Structure


def conventional_cell(structure: Structure, symprec: float = SYMPREC) -> tuple[Structure, SpaceGroup]:
    """The refined conventional cell of ``structure`` in the ITA setting of `crystals.groups.space_group`, and its
    group, found by spglib at ``symprec`` (Å) after Niggli reduction."""
    if symprec <= 0:
        raise ValueError(f"symprec must be a positive distance in Å, got {symprec}")
    if not structure.is_ordered:
        raise ValueError("the structure is disordered (partial occupancies); only ordered crystals decompose")
    reduced = structure.get_reduced_structure("niggli")
    cell = (reduced.lattice.matrix, reduced.frac_coords, [site.specie.Z for site in reduced])
    dataset = _symmetry_dataset(cell, symprec)
    group = space_group(dataset.number)
    if dataset.hall_number != group.hall_number:  # another origin choice: standardise into the tables' setting
        dataset = _symmetry_dataset(cell, symprec, group.hall_number)
    refined = Structure(Lattice(dataset.std_lattice), [int(z) for z in dataset.std_types],
                        np.mod(dataset.std_positions, 1.0))  # fmt: skip
    return refined, group


def _symmetry_dataset(cell: tuple, symprec: float, hall_number: int = 0) -> spglib.SpglibDataset:
    """spglib's dataset, or ValueError (spglib 2 returns None by default, spglib 3 raises)."""
    try:
        with quiet_spglib():
            dataset = spglib.get_symmetry_dataset(
                cell, symprec=symprec, angle_tolerance=ANGLE_TOLERANCE, hall_number=hall_number
            )
    except spglib.error.SpglibError as error:
        raise ValueError(f"spglib found no space group at symprec={symprec}: {error}") from error
    if dataset is None:
        raise ValueError(f"spglib found no space group at symprec={symprec}")
    return dataset


def space_group_number(structure: Structure, symprec: float = SYMPREC) -> int:
    """The number of the space group spglib finds at ``symprec`` (Å), with this module's angle tolerance; 1 (P1)
    where it finds none, as SymmCD's metrics count a failure."""
    cell = (structure.lattice.matrix, structure.frac_coords, [site.specie.Z for site in structure])
    try:
        return int(_symmetry_dataset(cell, symprec).number)
    except ValueError:
        return 1


def decompose(structure: Structure, symprec: float = SYMPREC) -> WyckoffDecomposition:
    """Split a crystal into orbits of its space group and keep one representative per orbit: the copy nearest the
    cell centre (1/2, 1/2, 1/2) in fractional coordinates, ties broken by the coordinates, so the choice is
    deterministic (the reference jitters the centre randomly per process). Representatives are ordered by Wyckoff
    letter, then atomic number, then coordinates."""
    conventional, group = conventional_cell(structure, symprec)
    frac = conventional.frac_coords
    numbers = np.array([site.specie.Z for site in conventional])
    lattice = conventional.lattice.matrix
    unassigned = np.ones(len(frac), dtype=bool)
    rows = []
    for first in range(len(frac)):
        if not unassigned[first]:
            continue
        orbit = group.orbit(frac[first])
        distances = np.linalg.norm(wrapped_difference(frac[:, None, :] - orbit[None]) @ lattice, axis=-1)
        members = np.flatnonzero((distances.min(axis=1) < _ON_POSITION) & (numbers == numbers[first]) & unassigned)
        if len(members) != len(orbit):
            raise ValueError(f"the refined cell of {conventional.composition.reduced_formula} is not closed under "
                             f"{group.symbol}: an orbit of {len(orbit)} has {len(members)} atoms")  # fmt: skip
        unassigned[members] = False
        order = np.lexsort((*np.round(frac[members], 8).T[::-1], np.linalg.norm(frac[members] - 0.5, axis=1).round(8)))
        representative = frac[members[order[0]]]
        position, member = locate(group, representative, lattice, multiplicity=len(orbit))
        # (sort key: Wyckoff position, element, coordinates), then the coordinate and the member it lies on
        rows.append((position, numbers[first], tuple(np.round(representative, 8)), representative, member))
    rows.sort(key=lambda row: row[:3])
    positions = [group.wyckoff_positions[row[0]] for row in rows]
    asu = AsymmetricUnit(
        space_group=group.number,
        lattice=lattice,
        atomic_numbers=np.array([row[1] for row in rows], dtype=np.int64),
        frac_coords=np.array([row[3] for row in rows]).reshape(-1, 3),
        site_symmetry=np.array([p.labels[row[4]] for p, row in zip(positions, rows)]).reshape(-1, len(DIRECTIONS)),
    )
    return WyckoffDecomposition(asu, tuple(p.letter for p in positions),
                                np.array([p.multiplicity for p in positions], dtype=np.int64), conventional)  # fmt: skip


def locate(group: SpaceGroup, point: np.ndarray, lattice: np.ndarray, multiplicity: int) -> tuple[int, int]:
    """The Wyckoff position (index) of a point whose orbit has ``multiplicity`` points, and the member (index) the
    point lies on. Among positions of that multiplicity the point lies on exactly one."""
    index, matrices, offsets, _ = group.members
    candidates = np.flatnonzero(np.array([group.wyckoff_positions[i].multiplicity for i in index]) == multiplicity)
    _, distances = project(point, matrices[candidates], offsets[candidates], lattice)
    best = candidates[np.argmin(distances)]
    if distances.min() > _ON_POSITION:
        raise ValueError(f"no Wyckoff position of multiplicity {multiplicity} in {group.symbol} holds the point "
                         f"{np.round(point, 4).tolist()} (nearest {distances.min():.2g} Å away)")  # fmt: skip
    return int(index[best]), int(best - np.flatnonzero(index == index[best])[0])
