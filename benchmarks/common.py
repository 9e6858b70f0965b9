"""Shared benchmark plumbing: machine description and JSON results under benchmarks/results/."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from agents.common.run import git_commit, package_versions
from core.io import atomic_write

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
    if previous.get("profile") != profile or _settings(previous.get("profile_config", {})) != _settings(profile_config):
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
