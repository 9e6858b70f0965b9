"""Shared benchmark plumbing: machine description, the options and writing of a JSON results file (by default under
benchmarks/results/, refused from a dirty git tree), the `Profile` base of every benchmark's budgets, and
`BenchmarkGrid`, the declaration of a benchmark's runs as trials of the sweep engine (`runner.sweep.run_trials`)."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.io import atomic_write
from core.run import git_commit, package_versions
from runner.sweep import Resources, Trial, load_records, pending_trials, run_trials

DEFAULT_RESULTS_DIR = Path(__file__).resolve().parent / "results"
DIRTY = "-dirty"  # suffix of core.run.git_commit() when the tree has uncommitted changes


@dataclass(kw_only=True)
class ResultsArgs:
    """Where a benchmark writes its results file, and whether it may write it from uncommitted code (the options
    every benchmark's arguments inherit)."""

    results_dir: Path = DEFAULT_RESULTS_DIR
    """Folder of the results file <results-dir>/<name>.json."""
    allow_dirty: bool = False
    """Write results from a git tree with uncommitted changes (the file then records "dirty": true)."""

    def results_path(self, name: str) -> Path:
        """The results file of ``name``."""
        return self.results_dir / f"{name}.json"


def source_commit(allow_dirty: bool) -> str | None:
    """The commit the results come from (`core.run.git_commit`; None outside git). Raises SystemExit on a tree with
    uncommitted changes unless ``allow_dirty``: a results file must name the code that produced it. Every benchmark
    calls it before it starts (so a refusal costs nothing) and again when it writes."""
    commit = git_commit()
    if commit is not None and commit.endswith(DIRTY) and not allow_dirty:
        raise SystemExit(
            f"error: the git tree has uncommitted changes ({commit}); commit them, or pass --allow-dirty to write results "
            'marked "dirty": true.'
        )
    return commit


def recorded_args(args: Any) -> dict[str, Any]:
    """A benchmark's arguments as its results file records them: paths as strings, without the `ResultsArgs` options
    (where the file goes is not part of what it measured)."""
    skipped = {spec.name for spec in fields(ResultsArgs)}
    return {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items() if key not in skipped}


@dataclass(frozen=True, kw_only=True)
class Profile:
    """The base of every benchmark's profiles (budgets and sizes by name, e.g. ``cpu``, ``gpu``; a module's
    ``PROFILES`` maps the names to instances of its subclass): the fields are what a results file records as
    ``profile_config`` (``asdict``), and a resumed benchmark needs them unchanged (`previous_results`), the free-text
    `rationale` aside."""

    rationale: str = ""
    """Why the profile's budget is what it is."""


def machine_info() -> dict[str, Any]:
    """CPU model, core count, torch threads and GPU (if any), so a result says where it was measured."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "platform": platform.platform(),
        # Other work on the machine distorts timings (ratios measured side by side survive it better).
        "load_average_1_5_15min": list(os.getloadavg()),
    }


def mean_and_std(values: Iterable[float]) -> dict[str, float]:
    """``{"mean", "std"}`` of ``values`` (population std): the summary of a metric over seeds."""
    array = np.asarray(list(values), dtype=np.float64)
    return {"mean": float(array.mean()), "std": float(array.std())}


def write_results(name: str, payload: dict[str, Any], out: ResultsArgs) -> Path:
    """Write ``<out.results_dir>/<name>.json`` with the payload plus date, machine, versions and commit (`source_commit`:
    refused from a dirty tree unless ``out.allow_dirty``)."""
    commit = source_commit(out.allow_dirty)
    record = {
        "benchmark": name,
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "git_commit": commit,
        "dirty": commit is not None and commit.endswith(DIRTY),
        "versions": package_versions(),
        **payload,
    }
    return atomic_write(out.results_path(name), lambda p: p.write_text(json.dumps(record, indent=2) + "\n"))


def _settings(profile_config: dict[str, Any]) -> dict[str, Any]:
    """A profile's settings as stored in JSON (tuples become lists), without its free-text rationale."""
    return {k: v for k, v in json.loads(json.dumps(profile_config)).items() if k != "rationale"}


def previous_results(path: Path, profile: str, profile_config: dict[str, Any]) -> dict[str, Any]:
    """The results file at ``path`` (``{}`` if there is none), whose run records a resumed benchmark may restore.

    Raises SystemExit when it holds another profile or the same profile with other settings (its ``rationale`` text
    aside): resuming would mix budgets, and rewriting it would lose those results."""
    previous = json.loads(path.read_text()) if path.is_file() else {}
    if not previous:
        return {}
    # A file written before its settings were recorded (no "profile_config") is judged by its profile name alone.
    settings = _settings(previous.get("profile_config", profile_config))
    if previous.get("profile") != profile or settings != _settings(profile_config):
        raise SystemExit(
            f"{path} holds results of the {previous.get('profile')!r} profile with other settings than this run's "
            f"{profile!r}; pass --name to write another file (or move that one away)."
        )
    return previous


def restore_missing(files: Iterable[tuple[Path, Any]]) -> int:
    """Write each (path, record) whose path does not exist, atomically, as JSON: finished runs of a committed results
    file come back in a fresh clone (runs/ is not versioned) instead of being trained again. Returns how many."""
    restored = 0
    for path, record in files:
        if not path.is_file():
            atomic_write(path, lambda tmp, record=record: tmp.write_text(json.dumps(record, indent=2)))
            restored += 1
    return restored


@dataclass(frozen=True)
class BenchmarkGrid:
    """A benchmark's runs, declared: its trials, the function that runs one and returns its record, and how the
    results file is built from the records. `run_grid` does the rest the same way for every benchmark."""

    name: str
    """Results file: ``<out.results_dir>/<name>.json``."""
    out: ResultsArgs
    """Where the results file goes (the benchmark's arguments)."""
    profile: str
    """Profile name, recorded in the results file."""
    settings: dict[str, Any]
    """What every record depends on (budgets, sizes): a results file with other settings is not resumed."""
    sweep_dir: Path
    """Records: ``<sweep_dir>/records/<trial>.json``."""
    trials: list[Trial]
    run: Callable[[dict[str, Any]], dict[str, Any]]
    """One trial's config -> its record (a module-level function: it runs in a Ray worker)."""
    record_name: Callable[[dict[str, Any]], str]
    """The trial name of a record (to restore the committed records of the results file)."""
    results: Callable[[list[dict[str, Any]]], dict[str, Any]]
    """The results file's payload from every record (all of them in it: what a fresh clone restores)."""
    committed: Callable[[dict[str, Any]], list[dict[str, Any]]] = lambda results: results.get("runs", [])
    """The records held by a results file (the inverse of ``results``; default: its ``runs``)."""


def write_grid_results(grid: BenchmarkGrid) -> Path:
    """Rewrite the grid's results file from every record in its sweep folder."""
    payload = grid.results(load_records(grid.sweep_dir))
    return write_results(grid.name, {"profile": grid.profile, "profile_config": grid.settings, **payload}, grid.out)


def run_grid(
    grid: BenchmarkGrid,
    resources: Resources,
    rerun: Callable[[dict[str, Any]], bool] | None = None,
    prepare: Callable[[list[Trial]], None] | None = None,
    stale: Callable[[dict[str, Any]], bool] | None = None,
) -> list[dict[str, Any]]:
    """Restore the committed records, drop those of the grid's trials that ``rerun`` selects and every record that
    ``stale`` rejects (those outside the grid then leave the results file: e.g. trained with other defaults), run
    every trial without a record through the sweep engine, and rewrite the results file after each finished trial
    and at the end; returns the records of the grid's trials.
    ``prepare(pending)`` runs here first, for what the pending trials share (e.g. datasets to build). Refuses to
    start from a dirty tree unless ``grid.out.allow_dirty`` (`source_commit`)."""
    source_commit(grid.out.allow_dirty)
    previous = previous_results(grid.out.results_path(grid.name), grid.profile, grid.settings)
    records = grid.sweep_dir / "records"
    restore_missing((records / f"{grid.record_name(r)}.json", r) for r in grid.committed(previous))
    if rerun is not None:
        for trial in grid.trials:
            path = records / f"{trial.name}.json"
            if path.is_file() and rerun(json.loads(path.read_text())):
                path.unlink()
    if stale is not None:
        for path in records.glob("*.json"):
            if stale(json.loads(path.read_text())):
                path.unlink()
    pending = pending_trials(grid.trials, grid.sweep_dir)
    if prepare is not None and pending:
        prepare(pending)

    finished = run_trials(grid.trials, grid.run, grid.sweep_dir, resources, after_each=lambda: write_grid_results(grid))
    write_grid_results(grid)
    return finished
