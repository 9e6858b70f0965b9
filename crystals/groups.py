"""Space groups in the International Tables setting: operations, Wyckoff positions and their site-symmetry labels,
and the projection of a point onto a Wyckoff position.

The Wyckoff tables are pyxtal's (`pyxtal.symmetry.get_wyckoffs`, the Bilbao/ITA listing: origin choice 2, hexagonal
axes for R groups, unique axis b); pyxtal is pinned in pyproject.toml so these tables cannot drift. Everything derived
from them (labels, the space-group vector) is computed here and in `crystals.site_symmetry`. The spglib Hall number of
the same setting is found by comparing operation sets, so spglib standardises cells into exactly this setting.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import spglib

from crystals.site_symmetry import site_symmetry_label, space_group_vector

#: Wyckoff letters in ITA order (Pmmm, the longest list, runs to "A", ITA's alpha).
WYCKOFF_LETTERS = "abcdefghijklmnopqrstuvwxyzA"
#: A point with no special coordinate: its images under a Wyckoff position's members have that position's symmetry.
_GENERIC_PARAMETERS = np.array([0.1378, 0.2791, 0.4127])
#: Fractional tolerance for "the same point" between exactly computed positions (tables, projections).
EXACT_TOLERANCE = 1e-6
#: Lattice translations tried when looking for the nearest periodic image.
_SHIFTS = np.array(list(itertools.product((-1, 0, 1), repeat=3)), dtype=float)


def wrapped_difference(difference: np.ndarray) -> np.ndarray:
    """Fractional differences folded into [-1/2, 1/2)."""
    return difference - np.round(difference)


@dataclass(frozen=True, eq=False)
class WyckoffPosition:
    """One Wyckoff position: its members are the affine maps p -> A p + b (one per orbit point in the conventional
    cell, p the free parameters) and ``labels`` the site-symmetry label of each member (`crystals.site_symmetry`)."""

    letter: str
    multiplicity: int
    matrices: np.ndarray  # (multiplicity, 3, 3)
    offsets: np.ndarray  # (multiplicity, 3)
    labels: np.ndarray  # (multiplicity, 15)

    @property
    def degrees_of_freedom(self) -> int:
        return int(np.linalg.matrix_rank(self.matrices[0]))


@dataclass(frozen=True, eq=False)
class SpaceGroup:
    """A space group in its ITA standard setting: all operations of the conventional cell (centring included, the
    ITA general position order, coset representatives first) and its Wyckoff positions, "a" first."""

    number: int
    symbol: str
    hall_number: int
    centring: str
    rotations: np.ndarray  # (order, 3, 3) int
    translations: np.ndarray  # (order, 3)
    wyckoff_positions: tuple[WyckoffPosition, ...]

    @property
    def order(self) -> int:
        """The number of operations in the conventional cell (the general position's multiplicity)."""
        return len(self.rotations)

    def images(self, point: np.ndarray) -> np.ndarray:
        """The point's image under every operation, folded into [0, 1): (order, 3)."""
        return _images(self.rotations, self.translations, point)

    def orbit(self, point: np.ndarray) -> np.ndarray:
        """The distinct images of the point in the conventional cell (exact coincidences only)."""
        return distinct_points(self.images(point))

    def site_symmetry(self, point: np.ndarray) -> np.ndarray:
        """The site-symmetry label (15,) of a point."""
        return site_symmetry_label(self.rotations[_fixing(self.rotations, self.translations, point)])

    @functools.cached_property
    def members(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every member of every Wyckoff position, flattened: (position index, matrix, offset, label) arrays."""
        positions = self.wyckoff_positions
        index = np.concatenate([np.full(position.multiplicity, i) for i, position in enumerate(positions)])
        return (index, np.concatenate([p.matrices for p in positions]), np.concatenate([p.offsets for p in positions]),
                np.concatenate([p.labels for p in positions]))  # fmt: skip

    @functools.cached_property
    def vector(self) -> np.ndarray:
        """SymmCD's 397-number condition (`crystals.site_symmetry.space_group_vector`)."""
        cosets = self.order // centring_multiplicity(self.centring)
        return space_group_vector(self.centring, self.rotations[:cosets], self.translations[:cosets])


def _images(rotations: np.ndarray, translations: np.ndarray, point: np.ndarray) -> np.ndarray:
    return np.mod(rotations @ point + translations, 1.0)


def _fixing(rotations: np.ndarray, translations: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Which operations fix the point (modulo lattice translations): the mask of its stabiliser."""
    return np.all(np.abs(wrapped_difference(_images(rotations, translations, point) - point)) < EXACT_TOLERANCE, axis=1)


def distinct_points(points: np.ndarray) -> np.ndarray:
    """The points (n, 3), with exact periodic duplicates removed, first occurrence kept."""
    same = np.all(np.abs(wrapped_difference(points[:, None] - points[None])) < EXACT_TOLERANCE, axis=-1)
    return points[~np.tril(same, k=-1).any(axis=1)]


def centring_multiplicity(centring: str) -> int:
    """Lattice points per conventional cell."""
    return {"P": 1, "A": 2, "B": 2, "C": 2, "I": 2, "R": 3, "F": 4}[centring]


def project(
    point: np.ndarray, matrices: np.ndarray, offsets: np.ndarray, lattice: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The nearest point (Cartesian metric, periodic) of each affine set {A p + b} to ``point``: the projected
    fractional points (m, 3) in [0, 1) and their Cartesian distances (m,) in the lattice's unit.

    Each set is projected orthogonally in the metric G = L L^T (rows of L are the lattice vectors), over the 27
    neighbouring lattice translations, so a distance is a real length even in an oblique cell.
    """
    metric = lattice @ lattice.T
    # The G-orthogonal projector onto each column space: A (A^T G A)^+ A^T G.
    gram = np.linalg.pinv(np.transpose(matrices, (0, 2, 1)) @ metric @ matrices, hermitian=True)
    projectors = matrices @ gram @ np.transpose(matrices, (0, 2, 1)) @ metric
    displacement = wrapped_difference(point - offsets)[:, None, :] + _SHIFTS[None]  # (m, 27, 3)
    residual = displacement - np.einsum("mij,msj->msi", projectors, displacement)
    squared = np.einsum("msi,ij,msj->ms", residual, metric, residual)
    nearest = np.argmin(squared, axis=1)
    chosen = residual[np.arange(len(matrices)), nearest]
    return np.mod(point - chosen, 1.0), np.sqrt(np.maximum(squared[np.arange(len(matrices)), nearest], 0.0))


@contextlib.contextmanager
def quiet_spglib() -> Iterator[None]:
    """Silence spglib 2.x's per-call notice about its error handling (failures are checked by the callers)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Set OLD_ERROR_HANDLING", DeprecationWarning)
        yield


@functools.cache
def _hall_numbers_by_group() -> dict[int, tuple[int, ...]]:
    found: dict[int, list[int]] = {}
    with quiet_spglib():
        for hall_number in range(1, 531):
            found.setdefault(spglib.get_spacegroup_type(hall_number).number, []).append(hall_number)
    return {number: tuple(halls) for number, halls in found.items()}


def _operation_set(rotations: np.ndarray, translations: np.ndarray) -> set[tuple]:
    folded = np.round(np.mod(translations, 1.0), 6) % 1.0
    return {(*np.rint(r).astype(int).ravel(), *t) for r, t in zip(rotations, folded)}


@functools.cache
def space_group(number: int) -> SpaceGroup:
    """Space group ``number`` (1-230) in the ITA standard setting of pyxtal's Wyckoff tables (cached)."""
    if not (isinstance(number, (int, np.integer)) and 1 <= number <= 230):
        raise ValueError(f"space group number must be an integer in 1..230, got {number!r}")
    from pyxtal.symmetry import get_wyckoffs  # imported here: pyxtal takes about a second to import

    number = int(number)
    tables = get_wyckoffs(number)
    rotations = np.array([np.rint(op.rotation_matrix) for op in tables[0]], dtype=np.int64)
    translations = np.array([op.translation_vector for op in tables[0]], dtype=float)
    general = _operation_set(rotations, translations)
    for hall_number in _hall_numbers_by_group()[number]:
        with quiet_spglib():
            database = spglib.get_symmetry_from_database(hall_number)
        if _operation_set(database["rotations"], database["translations"]) == general:
            break
    else:
        raise RuntimeError(f"no spglib Hall setting of space group {number} matches pyxtal's Wyckoff tables")
    positions = []
    for index, members in enumerate(reversed(tables)):  # pyxtal lists the general position first, "a" last
        matrices = np.array([op.rotation_matrix for op in members], dtype=float)
        offsets = np.array([op.translation_vector for op in members], dtype=float)
        labels = []
        for point in np.mod(matrices @ _GENERIC_PARAMETERS + offsets, 1.0):
            fixing = _fixing(rotations, translations, point)
            if fixing.sum() * len(members) != len(rotations):
                raise RuntimeError(f"space group {number}, Wyckoff {WYCKOFF_LETTERS[index]}: stabiliser and "
                                   f"multiplicity disagree")  # fmt: skip
            labels.append(site_symmetry_label(rotations[fixing]))
        positions.append(WyckoffPosition(WYCKOFF_LETTERS[index], len(members), matrices, offsets, np.array(labels)))
    with quiet_spglib():
        symbol = spglib.get_spacegroup_type(hall_number).international_short
    return SpaceGroup(number=number, symbol=symbol, hall_number=hall_number, centring=symbol[0], rotations=rotations,
                      translations=translations, wyckoff_positions=tuple(positions))  # fmt: skip
