"""Shared benchmark plumbing: machine description and JSON results under benchmarks/results/."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from pathlib import Path
from typing import Any

import torch

from agents.common.io import atomic_write
from agents.common.run import git_commit, package_versions

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
