"""The synthetic pair datasets of the causal-abstraction benchmark: counterfactual pairs (`causal.scm`) of an SCM over a
named graph, a target set drawn uniformly from the family ∪ {∅} (Li, Kaba & Ravanbakhsh, AISTATS 2025, arXiv
2503.10834; ILCM's scaling data, Brehmer et al., NeurIPS 2022, arXiv 2203.16437, draws ∅ and singletons uniformly),
observed through an invertible mixing to 16 dimensions (`causal.mixing`).

A task is named ``<case>.<mechanism>.<mixing>[.shifted]``:

* case — a graph and a family (1-indexed in the name, 0-indexed in code): ``chain4-singletons`` (case id F1),
  ``chain4-12-34`` (F2), ``chain4-1-2-34`` (F3), ``diamond-23-4`` (F4), ``chain3-2`` (P1), ``chain3-2-23`` (P2) and
  ``er5-singletons`` (ER); the ids F1..P2 and ER are accepted for the case;
* mechanism — ``linear`` or ``nonlinear``; mixing — ``mlp`` (invertible leaky-ReLU MLP) or ``rotation``;
* ``.shifted`` — intervened latents drawn from N(2, 1) instead of N(0, 1).

`load_split(name, split, seed)` generates deterministically from (task, seed): the SCM weights and the mixing are drawn
from the seed (so train, val and test share them), the pairs of each split from the seed and the split. The result is
cached as ``.npz`` (no pickle, written atomically) under ``$CAUSAL_CACHE_DIR`` or ``runs/cache/causal`` in the
repository, keyed by `GENERATOR_VERSION`, the task's spec, the seed and the split; a file that does not load or whose key
differs is rebuilt with a warning. In the stored `causal.pairs.Pairs`, ``family[0]`` is the empty set.

    python -m causal.data write --task chain4-12-34.nonlinear.mlp --seed 0
    python -m causal.data list
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import tyro

from causal.graphs import named_graph
from causal.identifiability import Family, parse_family
from causal.mixing import OBSERVATION_DIM, Mixing, MixingKind, make_mixing
from causal.pairs import Pairs, family_masks
from causal.scm import AdditiveSCM, Mechanism, make_scm
from core.cli import run_cli
from core.config import CheckedConfig, reject_unknown_keys
from core.io import atomic_write

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")
CACHE_DIR_ENV = "CAUSAL_CACHE_DIR"
REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE_DIR = REPOSITORY_ROOT / "runs" / "cache" / "causal"
#: Bump when generation changes what it writes for a (task, seed): every older cache file is then rebuilt.
GENERATOR_VERSION = "causal-pairs-1"

#: case name -> (case id, graph name, family 1-indexed)
CASES: dict[str, tuple[str, str, str]] = {
    "chain4-singletons": ("F1", "chain4", "1;2;3;4"),
    "chain4-12-34": ("F2", "chain4", "1,2;3,4"),
    "chain4-1-2-34": ("F3", "chain4", "1;2;3,4"),
    "diamond-23-4": ("F4", "diamond", "2,3;4"),
    "chain3-2": ("P1", "chain3", "2"),
    "chain3-2-23": ("P2", "chain3", "2;2,3"),
    "er5-singletons": ("ER", "er5-p0.5-s0", "1;2;3;4;5"),
}
MECHANISMS: tuple[Mechanism, ...] = ("linear", "nonlinear")
MIXINGS: tuple[MixingKind, ...] = ("mlp", "rotation")
SHIFTED_MEAN = 2.0


@dataclass(frozen=True)
class TaskSpec(CheckedConfig):
    """A registered task: graph (a `causal.graphs.named_graph` name), family of target sets (0-indexed; ∅ is added
    when sampling), mechanism, mixing, mean of the intervened latents, observation size and split sizes."""

    name: str
    graph: str
    family: Family
    mechanism: Mechanism
    mixing: MixingKind
    intervention_mean: float = 0.0
    dim_x: int = OBSERVATION_DIM
    num_train: int = 25_000
    num_val: int = 5_000
    num_test: int = 5_000

    def adjacency(self) -> np.ndarray:
        return named_graph(self.graph)

    def pair_family(self) -> Family:
        """The target sets pairs are drawn from, uniformly: ∅ first, then the family."""
        return ((), *(s for s in self.family if s))

    def size(self, split: Split) -> int:
        return {"train": self.num_train, "val": self.num_val, "test": self.num_test}[split]


def _build_tasks() -> dict[str, TaskSpec]:
    tasks = {}
    for case, (_, graph, family) in CASES.items():
        family_0 = parse_family(family, len(named_graph(graph)))
        for mechanism in MECHANISMS:
            for mixing in MIXINGS:
                for suffix, mean in (("", 0.0), (".shifted", SHIFTED_MEAN)):
                    name = f"{case}.{mechanism}.{mixing}{suffix}"
                    tasks[name] = TaskSpec(name, graph, family_0, mechanism, mixing, mean)
    return tasks


TASKS: dict[str, TaskSpec] = _build_tasks()
_CASE_IDS = {case_id.lower(): case for case, (case_id, _, _) in CASES.items()}


def resolve_task(name: str) -> str:
    """The canonical task name of ``name`` (case-insensitive; the case may be a case id, "f2.linear.mlp"); an unknown
    name is an error naming the closest registered ones."""
    case, _, rest = name.strip().lower().partition(".")
    canonical = f"{_CASE_IDS.get(case, case)}.{rest}" if rest else _CASE_IDS.get(case, case)
    reject_unknown_keys([canonical], TASKS, "causal.data", "task",
                        "tasks are <case>.<linear|nonlinear>.<mlp|rotation>[.shifted] with case one of "
                        f"{', '.join(CASES)} (or F1-F4, P1, P2, ER); `python -m causal.data list` prints them.")  # fmt: skip
    return canonical


def task(name: str) -> TaskSpec:
    """The frozen spec of a registered task."""
    return TASKS[resolve_task(name)]


def _rng(*parts: object) -> np.random.Generator:
    """A generator seeded by the SHA-256 of the parts' text: stable across runs, platforms and Python versions."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(np.random.SeedSequence(int.from_bytes(digest[:16], "little")))


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """The data-generating process of a task at a seed: the SCM and the mixing g."""

    spec: TaskSpec
    scm: AdditiveSCM
    mixing: Mixing


def ground_truth(name: str, seed: int = 0) -> GroundTruth:
    """The SCM and mixing of a task at ``seed``. The SCM's weights depend on (graph, mechanism, seed) and the mixing
    on (mixing, n, dim_x, seed) only, so tasks that differ in one of them share the other."""
    spec = task(name)
    adjacency = spec.adjacency()
    scm = make_scm(adjacency, spec.mechanism, _rng(GENERATOR_VERSION, "scm", spec.graph, spec.mechanism, seed))
    mixing_rng = _rng(GENERATOR_VERSION, "mixing", spec.mixing, len(adjacency), spec.dim_x, seed)
    return GroundTruth(spec, scm, make_mixing(spec.mixing, len(adjacency), mixing_rng, spec.dim_x))


def generate_split(name: str, split: Split, seed: int = 0) -> Pairs:
    """The pairs of one split, generated (no cache): target sets uniform on ∅ and the family, counterfactual latents,
    observations through the mixing."""
    truth = ground_truth(name, seed)
    spec = truth.spec
    _check_split(split)
    rng = _rng(GENERATOR_VERSION, "pairs", spec.name, seed, split)
    family = spec.pair_family()
    target_index = rng.integers(len(family), size=spec.size(split))
    masks = family_masks(family, truth.scm.num_latents)[target_index]
    z, z_tilde, noise, noise_tilde = truth.scm.sample_pairs(masks, rng, spec.intervention_mean)
    x, x_tilde, z, z_tilde, noise, noise_tilde = (np.asarray(array, dtype=np.float32) for array in (
        truth.mixing(z), truth.mixing(z_tilde), z, z_tilde, noise, noise_tilde))  # fmt: skip
    return Pairs(x, x_tilde, z, z_tilde, noise, noise_tilde, target_index.astype(np.int64), family)


def _check_split(split: str) -> None:
    reject_unknown_keys([split], SPLITS, "causal.data", "split", f"the splits are {', '.join(SPLITS)}.")


def cache_dir() -> Path:
    """The cache folder: ``$CAUSAL_CACHE_DIR`` or ``runs/cache/causal`` in the repository."""
    return Path(os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR)


def cache_path(name: str, split: Split, seed: int = 0) -> Path:
    return cache_dir() / f"{resolve_task(name)}-seed{seed}-{split}.npz"


def _cache_key(spec: TaskSpec, split: Split, seed: int) -> str:
    return json.dumps({"version": GENERATOR_VERSION, "task": dataclasses.asdict(spec), "seed": seed, "split": split},
                      sort_keys=True)  # fmt: skip


_ARRAYS = ("x", "x_tilde", "z", "z_tilde", "noise", "noise_tilde", "target_index")


def _write(path: Path, pairs: Pairs, key: str) -> None:
    arrays = {field: getattr(pairs, field) for field in _ARRAYS}
    masks = family_masks(pairs.family, pairs.num_latents)
    atomic_write(path, lambda tmp: np.savez(tmp, key=np.array(key), family_masks=masks, **arrays))


def _read(path: Path, key: str) -> Pairs | None:
    """The pairs in ``path`` if it loads and carries ``key``; else None after a warning saying why."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            found = str(stored["key"])
            if found == key:
                family = tuple(tuple(np.flatnonzero(row).tolist()) for row in stored["family_masks"])
                return Pairs(**{field: stored[field] for field in _ARRAYS}, family=family)
    except Exception as error:  # a truncated, foreign or inconsistent file: rebuild it
        warnings.warn(f"rebuilding {path}: it does not load ({type(error).__name__}: {error})", stacklevel=3)
        return None
    warnings.warn(f"rebuilding {path}: its key {found} is not {key}", stacklevel=3)
    return None


def load_split(name: str, split: Split, seed: int = 0) -> Pairs:
    """One split of a task at ``seed``: from the cache when its key matches, else generated and cached."""
    spec = task(name)
    _check_split(split)
    path, key = cache_path(spec.name, split, seed), _cache_key(spec, split, seed)
    if path.is_file() and (pairs := _read(path, key)) is not None:
        return pairs
    pairs = generate_split(spec.name, split, seed)
    _write(path, pairs, key)
    return pairs


@dataclass
class WriteArgs:
    """Generate the train, val and test splits of a task at a seed into the cache (kept when already there)."""

    task: str
    """Task name, e.g. chain4-12-34.nonlinear.mlp (`python -m causal.data list`)."""
    seed: int = 0
    """Seed of the SCM weights, the mixing and the pairs."""


@dataclass
class ListArgs:
    """Print the registered tasks with their graph and family (1-indexed)."""


def main(args: WriteArgs | ListArgs) -> None:
    if isinstance(args, ListArgs):
        for name, spec in TASKS.items():
            family = "; ".join("{" + ",".join(f"z{i + 1}" for i in s) + "}" for s in spec.family)
            print(f"{name:40s} {spec.graph:12s} {family}")
        return
    for split in SPLITS:
        start = time.perf_counter()
        pairs = load_split(args.task, split, args.seed)
        print(f"{cache_path(args.task, split, args.seed)}: {len(pairs)} pairs ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    run_cli(lambda: main(tyro.extras.subcommand_cli_from_dict({"write": WriteArgs, "list": ListArgs})))
