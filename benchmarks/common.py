"""Shared benchmark plumbing: machine description, JSON results under benchmarks/results/, and `BenchmarkGrid`, the
declaration of a benchmark's runs as trials of the sweep engine (`runner.sweep.run_trials`)."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.io import atomic_write
from core.run import git_commit, package_versions
from runner.sweep import Resources, Trial, load_records, pending_trials, run_trials

RESULTS_DIR = Path(__file__).resolve().parent / "results"


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


def write_results(name: str, payload: dict[str, Any]) -> Path:
    """Write ``benchmarks/results/<name>.json`` with the payload plus date, machine, versions and commit."""
    record = {
        "benchmark": name,
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "git_commit": git_commit(),
        "versions": package_versions(),
        **payload,
    }
    return atomic_write(RESULTS_DIR / f"{name}.json", lambda p: p.write_text(json.dumps(record, indent=2) + "\n"))


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
    """Results file: ``benchmarks/results/<name>.json``."""
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
    """The trial name of a record (to restore the committed records of ``benchmarks/results/<name>.json``)."""
    results: Callable[[list[dict[str, Any]]], dict[str, Any]]
    """The results file's payload from every record (all of them in it: what a fresh clone restores)."""
    committed: Callable[[dict[str, Any]], list[dict[str, Any]]] = lambda results: results.get("runs", [])
    """The records held by a results file (the inverse of ``results``; default: its ``runs``)."""


def write_grid_results(grid: BenchmarkGrid) -> Path:
    """Rewrite the grid's results file from every record in its sweep folder."""
    payload = grid.results(load_records(grid.sweep_dir))
    return write_results(grid.name, {"profile": grid.profile, "profile_config": grid.settings, **payload})


def run_grid(
    grid: BenchmarkGrid,
    resources: Resources,
    rerun: Callable[[dict[str, Any]], bool] | None = None,
    prepare: Callable[[list[Trial]], None] | None = None,
) -> list[dict[str, Any]]:
    """Restore the committed records, run every trial without one through the sweep engine (and those of the grid
    whose record ``rerun`` rejects), and rewrite the results file after each finished trial and at the end; returns
    the records of the grid's trials. ``prepare(pending)`` runs here first, for what the pending trials share (e.g.
    datasets to build)."""
    previous = previous_results(RESULTS_DIR / f"{grid.name}.json", grid.profile, grid.settings)
    records = grid.sweep_dir / "records"
    restore_missing((records / f"{grid.record_name(r)}.json", r) for r in grid.committed(previous))
    if rerun is not None:
        for trial in grid.trials:
            path = records / f"{trial.name}.json"
            if path.is_file() and rerun(json.loads(path.read_text())):
                path.unlink()
    pending = pending_trials(grid.trials, grid.sweep_dir)
    if prepare is not None and pending:
        prepare(pending)

    finished = run_trials(grid.trials, grid.run, grid.sweep_dir, resources, after_each=lambda: write_grid_results(grid))
    write_grid_results(grid)
    return finished
