"""Preprocessed splits, cached on disk: every crystal of a split decomposed (`crystals.asu.decompose`) into flat
tensors, as SymmCD's data module does once per run (reference sibasmarak/SymmCD `pl_data/dataset.py`).

The cache file holds tensors and plain values only (it loads with ``torch.load(weights_only=True)``), is written
atomically, and carries its key: dataset, split, symprec, `PREPROCESSING_VERSION` and the source file's SHA-256. A file
whose key differs from the one asked for is rebuilt, never reused. The folder is ``$CRYSTALS_CACHE_DIR``, by default
``runs/cache/crystals`` in the repository (git-ignored).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.io import atomic_write
from crystals.asu import SYMPREC, AsymmetricUnit, decompose
from crystals.data import REPOSITORY_ROOT, CrystalRow, dataset, read_crystals, split_path
from crystals.groups import WYCKOFF_LETTERS
from crystals.lattice import lattice_to_k

CACHE_DIR_ENV = "CRYSTALS_CACHE_DIR"
DEFAULT_CACHE_DIR = REPOSITORY_ROOT / "runs" / "cache" / "crystals"
#: Bump when preprocessing changes what it writes: every older cache file is then rebuilt.
PREPROCESSING_VERSION = "crystals-asu-1"


@dataclass(frozen=True, eq=False)
class ProcessedSplit:
    """A split as flat tensors: per crystal (B) its space group, conventional lattice (Å, rows the vectors), lattice
    k (`crystals.lattice`), number of representatives and of atoms in the conventional cell; per representative (N,
    crystals in order) its atomic number, fractional coordinate, site-symmetry label (15 indices) and Wyckoff position
    (index, "a" = 0, and multiplicity). ``skipped`` lists [material_id, reason] of rows that did not decompose."""

    key: dict[str, Any]
    material_ids: list[str]
    space_group: torch.Tensor
    lattice: torch.Tensor
    lattice_k: torch.Tensor
    num_nodes: torch.Tensor
    num_atoms: torch.Tensor
    atomic_numbers: torch.Tensor
    frac_coords: torch.Tensor
    site_symmetry: torch.Tensor
    wyckoff_index: torch.Tensor
    multiplicity: torch.Tensor
    skipped: list[list[str]]

    def __len__(self) -> int:
        return len(self.material_ids)

    def asymmetric_unit(self, i: int) -> AsymmetricUnit:
        """Crystal ``i`` as an `AsymmetricUnit` (for decoding)."""
        start = int(self.num_nodes[:i].sum())
        nodes = slice(start, start + int(self.num_nodes[i]))
        return AsymmetricUnit(int(self.space_group[i]), self.lattice[i].numpy(), self.atomic_numbers[nodes].numpy(),
                              self.frac_coords[nodes].numpy(), self.site_symmetry[nodes].numpy())  # fmt: skip

    def state(self) -> dict[str, Any]:
        return {field.name: getattr(self, field.name) for field in fields(self)}


def build_processed_split(rows: list[CrystalRow], symprec: float, key: dict[str, Any]) -> ProcessedSplit:
    """Decompose every row; rows that do not decompose (spglib finds no group, disorder) are listed in ``skipped``
    with the reason and a warning, not dropped silently."""
    kept, units, skipped = [], [], []
    for row in rows:
        try:
            units.append(decompose(row.structure, symprec))
        except ValueError as error:
            skipped.append([row.material_id, str(error)])
            continue
        kept.append(row.material_id)
    if skipped:
        warnings.warn(f"{len(skipped)} of {len(rows)} crystals did not decompose (first: {skipped[0]}); see "
                      f"ProcessedSplit.skipped", stacklevel=2)  # fmt: skip
    asus = [unit.asymmetric_unit for unit in units]
    lattices = torch.tensor(np.array([asu.lattice for asu in asus]).reshape(-1, 3, 3), dtype=torch.float64)

    def nodes(values: list[np.ndarray], dtype: torch.dtype, width: tuple[int, ...] = ()) -> torch.Tensor:
        return torch.tensor(np.concatenate(values) if values else np.zeros((0, *width)), dtype=dtype)

    letters = [np.array([WYCKOFF_LETTERS.index(letter) for letter in unit.wyckoff_letters]) for unit in units]
    return ProcessedSplit(
        key=key,
        material_ids=kept,
        space_group=torch.tensor([asu.space_group for asu in asus], dtype=torch.long),
        lattice=lattices,
        lattice_k=lattice_to_k(lattices),
        num_nodes=torch.tensor([len(asu.atomic_numbers) for asu in asus], dtype=torch.long),
        num_atoms=torch.tensor([int(unit.multiplicities.sum()) for unit in units], dtype=torch.long),
        atomic_numbers=nodes([asu.atomic_numbers for asu in asus], torch.long),
        frac_coords=nodes([asu.frac_coords for asu in asus], torch.float64, (3,)),
        site_symmetry=nodes([asu.site_symmetry for asu in asus], torch.long, (15,)),
        wyckoff_index=nodes(letters, torch.long),
        multiplicity=nodes([unit.multiplicities for unit in units], torch.long),
        skipped=skipped,
    )


def cache_dir() -> Path:
    """The cache folder: ``$CRYSTALS_CACHE_DIR`` or ``runs/cache/crystals`` in the repository."""
    return Path(os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def processed_split(name: str, split: str, symprec: float = SYMPREC, data_root: str | os.PathLike | None = None,
                    cache_root: str | os.PathLike | None = None) -> ProcessedSplit:  # fmt: skip
    """One split of a registered dataset, preprocessed at ``symprec`` (Å): loaded from the cache when its key matches,
    else built from the CSV and written to the cache (atomically)."""
    if not symprec > 0:
        raise ValueError(f"symprec must be a positive distance in Å, got {symprec}")
    source = split_path(name, split, data_root)
    key = {"dataset": dataset(name).name, "split": split, "symprec": float(symprec), "version": PREPROCESSING_VERSION,
           "source_sha256": _sha256(source)}  # fmt: skip
    path = Path(cache_root or cache_dir()) / f"{dataset(name).folder}-{split}-symprec{symprec:g}.pt"
    if path.is_file():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # a truncated or foreign file: rebuild it
            warnings.warn(f"rebuilding {path}: it does not load ({type(error).__name__}: {error})", stacklevel=2)
        else:
            if isinstance(state, dict) and state.get("key") == key:
                return ProcessedSplit(**state)
            warnings.warn(f"rebuilding {path}: its key {state.get('key') if isinstance(state, dict) else None} is not "
                          f"{key}", stacklevel=2)  # fmt: skip
    processed = build_processed_split(read_crystals(source), symprec, key)
    atomic_write(path, lambda tmp: torch.save(processed.state(), tmp))
    return processed
