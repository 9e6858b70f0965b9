"""Site-symmetry labels and the space-group condition of SymmCD (Levy et al., ICLR 2025, arXiv 2502.03638, §3.1-3.2;
reference sibasmarak/SymmCD `pl_data/dataset.py`, which takes both from pyxtal's `site_symmetry`).

A point group is written as its highest axial symmetry along each of 15 symmetry directions: one of 13 symbols per
direction (`SYMBOLS`), a 15 x 13 one-hot label. The space group is written as its centring letter plus, per direction,
the set of its 26 kinds of symmetry element (rotations, screws, mirrors, glides: `SPACE_GROUP_ELEMENTS`), 7 + 15 x 26
= 397 numbers.

Both are derived here from the operations themselves (the kind from det and trace, the axis from an eigenvector), in
the conventional lattice basis of the International Tables setting, so their order is fixed by this module and not by a
pyxtal release (pyxtal 1.1.5 reorders the 13 symbols of 0.6.7; the order here is 0.6.7's, the paper's). Directions are
lattice directions [uvw] in every crystal family: pyxtal instead converts hexagonal operations to Cartesian axes and
then maps [210] onto the row of [100]; here the hexagonal tertiary directions [120] and [210] have rows of their own.
"""

from __future__ import annotations

import numpy as np

#: The 15 symmetry directions, as lattice directions [uvw] of the conventional cell: the cell axes, the body and face
#: diagonals of the cubic list, then the hexagonal tertiary directions [120] and [210] (which no other family has).
DIRECTIONS = np.array([
    (1, 0, 0), (0, 1, 0), (0, 0, 1),
    (1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1),
    (1, -1, 0), (1, 1, 0), (0, 1, -1), (0, 1, 1), (-1, 0, 1), (1, 0, 1),
    (1, 2, 0), (2, 1, 0),
])  # fmt: skip
#: The 13 axial point groups a direction can carry, in the paper's (pyxtal 0.6.7's) column order.
SYMBOLS = ("1", "-1", "2", "m", "3", "2/m", "4", "-4", "-3", "6", "-6", "4/m", "6/m")
#: The elements each axial group holds along its direction ("m" is the mirror normal to it; "-1" is inversion).
_AXIAL_ELEMENTS = {
    frozenset({"1"}): "1",
    frozenset({"1", "-1"}): "-1",
    frozenset({"1", "2"}): "2",
    frozenset({"1", "m"}): "m",
    frozenset({"1", "3"}): "3",
    frozenset({"1", "-1", "2", "m"}): "2/m",
    frozenset({"1", "2", "4"}): "4",
    frozenset({"1", "2", "-4"}): "-4",
    frozenset({"1", "-1", "3", "-3"}): "-3",
    frozenset({"1", "2", "3", "6"}): "6",
    frozenset({"1", "m", "3", "-6"}): "-6",
    frozenset({"1", "-1", "2", "m", "4", "-4"}): "4/m",
    frozenset({"1", "-1", "2", "m", "3", "-3", "6", "-6"}): "6/m",
}
#: Centring letters of the conventional cell (the first 7 numbers of the space-group vector).
CENTRINGS = ("P", "I", "F", "A", "B", "C", "R")
#: Symmetry elements with their intrinsic translations (SymmCD's `to_matrix_representation_spg` column order).
SPACE_GROUP_ELEMENTS = (
    "1", "-1", "2", "2_1", "m", "a", "b", "c", "n", "d", "3", "3_1", "3_2", "4", "-4", "4_1", "4_2", "4_3", "-3", "6",
    "6_1", "6_2", "6_3", "6_4", "6_5", "-6",
)  # fmt: skip
SPACE_GROUP_VECTOR_SIZE = len(CENTRINGS) + len(DIRECTIONS) * len(SPACE_GROUP_ELEMENTS)

# A crystallographic point operation's kind is fixed by its determinant and trace (ITA Table 1.2.2.1).
_PROPER_BY_TRACE = {3: "1", -1: "2", 0: "3", 1: "4", 2: "6"}
_IMPROPER_BY_TRACE = {-3: "-1", 1: "m", 0: "-3", -1: "-4", -2: "-6"}
#: The order of each kind's matrix (its power that is the identity).
_ORDER = {"1": 1, "2": 2, "3": 3, "4": 4, "6": 6, "-1": 2, "m": 2, "-3": 6, "-4": 4, "-6": 6}


def point_operation_kind(rotation: np.ndarray) -> str:
    """The kind of a crystallographic point operation (integer matrix in a lattice basis): "1", "2", "3", "4", "6"
    (rotations), "-1" (inversion), "m" (mirror), "-3", "-4", "-6" (rotoinversions)."""
    rotation = np.rint(rotation).astype(int)
    determinant, trace = round(np.linalg.det(rotation)), int(np.trace(rotation))
    kinds = _PROPER_BY_TRACE if determinant == 1 else _IMPROPER_BY_TRACE
    if trace not in kinds:
        raise ValueError(f"not a crystallographic point operation (det {determinant}, trace {trace}): {rotation.tolist()}")
    return kinds[trace]


def direction_row(rotation: np.ndarray) -> int:
    """The row of `DIRECTIONS` along the operation's axis (a mirror's axis is its normal); not for 1 and -1."""
    rotation = np.asarray(rotation, dtype=float)
    determinant = np.sign(np.linalg.det(rotation))
    # The axis is the eigenvector of eigenvalue det: R u = u for rotations, R u = -u for rotoinversions and mirrors.
    axis = np.linalg.svd(rotation - determinant * np.eye(3))[2][-1]
    cross = np.cross(DIRECTIONS / np.linalg.norm(DIRECTIONS, axis=1, keepdims=True), axis)
    rows = np.flatnonzero(np.linalg.norm(cross, axis=1) < 1e-6)
    if len(rows) != 1:
        raise ValueError(f"the axis {np.round(axis, 4).tolist()} of {rotation.tolist()} is not a symmetry direction")
    return int(rows[0])


def site_symmetry_label(rotations: np.ndarray) -> np.ndarray:
    """The site-symmetry label of a point group given by its matrices (k, 3, 3) in the conventional lattice basis: per
    direction the index into `SYMBOLS` of the highest axial symmetry along it, shape (15,). The identity holds on every
    direction, and inversion (which has no axis) on every direction too."""
    elements = [{"1"} for _ in DIRECTIONS]
    inversion = False
    for rotation in rotations:
        kind = point_operation_kind(rotation)
        if kind == "-1":
            inversion = True
        elif kind != "1":
            elements[direction_row(rotation)].add(kind)
    label = np.empty(len(DIRECTIONS), dtype=np.int64)
    for row, found in enumerate(elements):
        symbol = _AXIAL_ELEMENTS.get(frozenset(found | ({"-1"} if inversion else set())))
        if symbol is None:
            raise ValueError(f"elements {sorted(found)} along {DIRECTIONS[row].tolist()} form no axial point group")
        label[row] = SYMBOLS.index(symbol)
    return label


def one_hot_site_symmetry(labels: np.ndarray) -> np.ndarray:
    """Labels (..., 15) of indices into `SYMBOLS` -> one-hot (..., 15, 13) float32."""
    return np.eye(len(SYMBOLS), dtype=np.float32)[np.asarray(labels)]


def label_symbols(label: np.ndarray) -> tuple[str, ...]:
    """A label (15,) as its 15 symbols, for reading and for error messages."""
    return tuple(SYMBOLS[index] for index in label)


def _intrinsic_translation(rotation: np.ndarray, translation: np.ndarray, order: int) -> np.ndarray:
    """The screw or glide part of (R, t): the mean of R^i t over one period (ITA §1.2.2.4)."""
    power, total = np.eye(3), np.zeros(3)
    for _ in range(order):
        total += power @ translation
        power = rotation @ power
    return total / order


def space_group_element(rotation: np.ndarray, translation: np.ndarray) -> str:
    """The kind of a space-group operation with its intrinsic translation: "2_1" for a screw, "c" or "n" or "d" for a
    glide, else the point kind (`SPACE_GROUP_ELEMENTS`)."""
    kind = point_operation_kind(rotation)
    if kind in ("1", "-1", "-3", "-4", "-6"):  # these have a fixed point: no intrinsic translation
        return kind
    intrinsic = _intrinsic_translation(np.asarray(rotation, dtype=float), np.asarray(translation, dtype=float),
                                       _ORDER[kind])  # fmt: skip
    if kind == "m":
        glide = intrinsic - np.round(intrinsic)
        nonzero = np.flatnonzero(np.abs(glide) > 1e-6)
        if len(nonzero) == 0:
            return "m"
        if np.any(np.isclose(np.abs(glide[nonzero]), 0.25)):
            return "d"
        return "abc"[nonzero[0]] if len(nonzero) == 1 else "n"
    axis = _counterclockwise_axis(np.asarray(rotation, dtype=float))
    fold = int(kind)
    pitch = round(fold * float(intrinsic @ axis) / float(axis @ axis)) % fold  # screw n_p: p/n of a lattice period
    return kind if pitch == 0 else f"{kind}_{pitch}"


def _counterclockwise_axis(rotation: np.ndarray) -> np.ndarray:
    """The direction of a rotation's axis, signed so that the rotation turns counter-clockwise about it (in a
    right-handed basis): the screw 4_1 is then told from 4_3, and 3_1 from 3_2, whichever power of the rotation the
    listing holds."""
    axis = DIRECTIONS[direction_row(rotation)].astype(float)
    across = np.eye(3)[np.argmin(np.abs(axis))]  # any vector off the axis
    return axis if np.linalg.det(np.stack([axis, across, rotation @ across])) > 0 else -axis


def space_group_vector(centring: str, rotations: np.ndarray, translations: np.ndarray) -> np.ndarray:
    """SymmCD's 397-number space-group condition: one-hot centring (7) then, per direction, which of the 26 elements
    the group's coset representatives (the general position modulo centring, ITA order) hold there (15 x 26)."""
    if centring not in CENTRINGS:
        raise ValueError(f"unknown centring {centring!r}; expected one of {', '.join(CENTRINGS)}")
    table = np.zeros((len(DIRECTIONS), len(SPACE_GROUP_ELEMENTS)), dtype=np.float32)
    table[:, SPACE_GROUP_ELEMENTS.index("1")] = 1
    for rotation, translation in zip(rotations, translations):
        element = space_group_element(rotation, translation)
        if element == "-1":
            table[:, SPACE_GROUP_ELEMENTS.index("-1")] = 1
        elif element != "1":
            table[direction_row(rotation), SPACE_GROUP_ELEMENTS.index(element)] = 1
    centring_one_hot = np.eye(len(CENTRINGS), dtype=np.float32)[CENTRINGS.index(centring)]
    return np.concatenate([centring_one_hot, table.ravel()])
