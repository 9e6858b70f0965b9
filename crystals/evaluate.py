"""A crystal generator's samples on disk and their evaluation: ``python -m crystals.evaluate RUN_DIR [--dataset NAME]
[--symprec S]``.

A run of ``train.py --algo symmcd|diffcsp`` writes ``RUN_DIR/samples/``: one CIF per decoded crystal and
``samples.json`` (how many were sampled, each CIF's sampled space group, the reasons of the decoding failures, nodes
per sampled crystal, sampling seconds). This command reads them back, evaluates them with `crystals.metrics` against
the test split of the run's dataset (``env`` in ``RUN_DIR/config.yaml`` unless ``--dataset`` is given; its features are
cached) and writes ``RUN_DIR/metrics.json``. Failures to decode count as invalid samples.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tyro
from pymatgen.core import Structure
from pymatgen.io.cif import CifWriter

from core.cli import run_cli
from core.io import atomic_write
from core.run import read_run_config
from crystals.asu import SYMPREC
from crystals.metrics import evaluate_crystals, reference_features
from crystals.models import Generated

INDEX = "samples.json"


def write_samples(folder: Path, generated: Generated) -> None:
    """One CIF per decoded crystal (``00000.cif``, ...) and ``samples.json`` in ``folder``, each written atomically."""
    for index, structure in enumerate(generated.structures):
        atomic_write(folder / f"{index:05d}.cif", lambda path, s=structure: CifWriter(s).write_file(path))
    index = {"requested": generated.requested, "sampled_space_groups": generated.space_groups,
             "failures": generated.failures, "nodes": generated.nodes, "seconds": generated.seconds}  # fmt: skip
    atomic_write(folder / INDEX, lambda path: path.write_text(json.dumps(index, indent=1) + "\n"))


def read_samples(folder: Path) -> Generated:
    """The samples `write_samples` wrote to ``folder`` (CIFs read back with pymatgen), failing with one line that
    names the file when something is missing or malformed."""
    index_path = folder / INDEX
    if not index_path.is_file():
        raise FileNotFoundError(f"{index_path} not found: {folder} is not a samples folder of a crystal run")
    try:
        index = json.loads(index_path.read_text())
        groups, failures, nodes, seconds = (index[k] for k in ("sampled_space_groups", "failures", "nodes", "seconds"))
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{index_path} is not a samples index ({type(error).__name__}: {error})") from None
    if len(groups) + len(failures) != len(nodes):
        raise ValueError(f"{index_path}: {len(groups)} crystals and {len(failures)} failures for {len(nodes)} sampled")
    paths = [folder / f"{i:05d}.cif" for i in range(len(groups))]
    structures = []
    for path in paths:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pymatgen warns about rounded coordinates and missing symmetry
                structures.append(Structure.from_file(path))
        except Exception as error:  # pymatgen raises several types for a missing or bad CIF
            raise ValueError(f"{path}: {type(error).__name__}: {error}") from None
    return Generated(structures=structures, space_groups=groups, failures=failures, nodes=nodes, seconds=seconds)


def sample_counts(generated: Generated) -> dict[str, Any]:
    """What a sampling run cost and how much of it decoded: crystals requested and decoded (with the failures'
    reasons counted), nodes per sampled crystal (what the network sees), atoms per decoded crystal, sampling seconds
    per crystal."""
    n, structures = generated.requested, generated.structures
    return {
        "requested": n,
        "decoded": len(structures),
        "decode_success_rate": len(structures) / n,
        "failure_reasons": dict(Counter(reason.split(":")[0] for reason in generated.failures)),
        "nodes_per_crystal": sum(generated.nodes) / n,
        "atoms_per_crystal": sum(len(s) for s in structures) / len(structures) if structures else None,
        "sampling_seconds_per_crystal": generated.seconds / n,
    }


def evaluate_generated(generated: Generated, dataset: str, symprec: float = SYMPREC,
                       progress: bool = False) -> dict[str, Any] | None:  # fmt: skip
    """`crystals.metrics.evaluate_crystals` of the decoded crystals against the test split of ``dataset`` (features
    cached), the failures counted as invalid and the sampled space groups (SymmCD) as the conditioned ones; None when
    nothing decoded."""
    if not generated.structures:
        return None
    groups = generated.space_groups
    conditioned = groups if all(group is not None for group in groups) else None
    return evaluate_crystals(generated.structures, reference_features(dataset, "test", symprec, progress=progress),
                             dataset, symprec=symprec, conditioned_space_groups=conditioned,
                             undecoded=len(generated.failures), progress=progress)  # fmt: skip


@dataclass(frozen=True)
class EvaluateConfig:
    """Evaluate the sampled crystals of a crystal run against its dataset's test split."""

    run_dir: tyro.conf.Positional[Path]
    """Run folder holding samples/ (CIFs and samples.json) and config.yaml."""
    dataset: str | None = None
    """Dataset whose test split is the reference (Perov5, Carbon24, ...); default: `env` in config.yaml."""
    symprec: float | None = None
    """spglib tolerance (Å) for samples and test crystals alike; default: the run's model config, else 0.1."""


def evaluate_run(config: EvaluateConfig) -> dict[str, Any]:
    """Evaluate ``config.run_dir``'s samples, print the metrics and write them to ``RUN_DIR/metrics.json``."""
    run_config = read_run_config(config.run_dir)
    dataset = config.dataset or run_config.get("env")
    if dataset is None:
        raise ValueError(f"no dataset: {config.run_dir}/config.yaml names none; pass --dataset NAME")
    model_config = run_config.get("config")
    symprec = config.symprec if config.symprec is not None else (model_config or {}).get("symprec", SYMPREC)
    if not symprec > 0:
        raise ValueError(f"symprec must be a positive distance in Å, got {symprec}")
    generated = read_samples(config.run_dir / "samples")
    metrics = evaluate_generated(generated, dataset, symprec, progress=True)
    result = {"dataset": dataset, "samples": sample_counts(generated), "metrics": metrics}
    rows = result["samples"] | (metrics or {"metrics": "none: no sample decoded"})
    width = max(map(len, rows))
    print(f"{config.run_dir}  ({dataset} test split, symprec {symprec:g})")
    for key, value in rows.items():
        print(f"  {key:<{width}}  {value}")
    atomic_write(config.run_dir / "metrics.json", lambda path: path.write_text(json.dumps(result, indent=2) + "\n"))
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse the command line (``argv``, default sys.argv) and evaluate; errors are one line (`core.cli.run_cli`)."""
    return run_cli(lambda: evaluate_run(tyro.cli(EvaluateConfig, args=argv)))


if __name__ == "__main__":
    main()
