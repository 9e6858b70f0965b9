"""The crystal benchmarks as CDVAE-style CSV files (Xie et al., ICLR 2022, arXiv 2110.06197; reference txie-93/cdvae
`data/`): one row per crystal, a ``material_id`` and a ``cif`` column holding a P1 CIF, plus property columns.

Datasets are registered by short name (`DATASETS`) and read in place from one data folder: ``$CRYSTALS_DATA_DIR``, by
default ``../shared/data/crystals`` next to the repository. Only the ``val`` and ``test`` splits exist there (the
original train splits are Git-LFS objects that could not be fetched): train on ``val``, evaluate on ``test``.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from pymatgen.core import Structure

from core.config import reject_unknown_keys

DATA_DIR_ENV = "CRYSTALS_DATA_DIR"
REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPOSITORY_ROOT.parent / "shared" / "data" / "crystals"
SPLITS = ("val", "test")


@dataclass(frozen=True)
class CrystalDataset:
    """A registered dataset: its folder under the data folder and its files' suffix (``.csv`` or ``.csv.gz``)."""

    name: str
    folder: str
    suffix: str


DATASETS = {dataset.name: dataset for dataset in (
    CrystalDataset("Perov5", "perov_5", ".csv"),
    CrystalDataset("Carbon24", "carbon_24", ".csv"),
    CrystalDataset("MP20BiTernary", "mp_20_biternary", ".csv.gz"),
    CrystalDataset("MPTS52", "mpts_52", ".csv.gz"),
)}  # fmt: skip


@dataclass(frozen=True, eq=False)
class CrystalRow:
    """One crystal of a CSV file: its id (as text) and its structure."""

    material_id: str
    structure: Structure


def data_dir() -> Path:
    """The data folder: ``$CRYSTALS_DATA_DIR`` or the default next to the repository (not checked here)."""
    return Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


def dataset(name: str) -> CrystalDataset:
    """The registered dataset ``name``; an unknown name is an error naming the closest ones."""
    reject_unknown_keys([name], DATASETS, "crystals", "dataset", f"registered datasets are {', '.join(DATASETS)}.")
    return DATASETS[name]


def split_path(name: str, split: str, root: str | os.PathLike | None = None) -> Path:
    """The file of one split of a registered dataset, under ``root`` (default: `data_dir`); it must exist."""
    spec = dataset(name)
    reject_unknown_keys([split], SPLITS, "crystals", "split", f"the splits are {', '.join(SPLITS)}.")
    root = Path(root) if root is not None else data_dir()
    path = root / spec.folder / f"{split}{spec.suffix}"
    if not path.is_file():
        raise FileNotFoundError(f"crystal data file {path} not found; set {DATA_DIR_ENV} to the folder holding "
                                f"{', '.join(d.folder for d in DATASETS.values())}/")  # fmt: skip
    return path


def read_crystals(path: str | os.PathLike, limit: int | None = None) -> list[CrystalRow]:
    """The crystals of a CDVAE-style CSV (plain or gzipped), the first ``limit`` rows if given. A CIF that does not
    parse is an error naming the file, row and id."""
    frame = pd.read_csv(path, nrows=limit)
    missing = {"material_id", "cif"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}; a crystal CSV needs material_id "
                         f"and cif")  # fmt: skip
    rows = []
    for row, (material_id, cif) in enumerate(zip(frame["material_id"], frame["cif"])):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pymatgen warns about rounded P1 coordinates in every file
                structure = Structure.from_str(cif, fmt="cif")
        except Exception as error:  # pymatgen raises several types for a bad CIF
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ValueError(f"{path}: row {row} (material_id {material_id}): the cif does not parse: {message}") from error
        rows.append(CrystalRow(str(material_id), structure))
    return rows


def read_split(name: str, split: str, root: str | os.PathLike | None = None, limit: int | None = None) -> list[CrystalRow]:
    """The crystals of one split of a registered dataset (`split_path`, `read_crystals`)."""
    return read_crystals(split_path(name, split, root), limit)
