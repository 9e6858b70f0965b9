"""The report of a sweep: per (algo, env) mean ± std over seeds, rliable aggregates with confidence intervals over the
envs, probabilities of improvement, and PNGs of performance profiles and learning curves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from core.io import atomic_write
from runner.sweep.engine import load_records
from runner.sweep.stats import (
    AGGREGATES,
    improvement_probabilities,
    interval_estimates,
    plot_learning_curves,
    plot_performance_profiles,
    score_matrix,
)


def sweep_report(
    sweep_dir: Path, references: dict[str, tuple[float, float]] | None = None, key: str = "final_return", reps: int = 2000
) -> dict[str, Any]:
    """Compute the report of ``sweep_dir``, write ``report/report.json`` and its PNGs, and return it."""
    records = load_records(sweep_dir)
    if not records:
        raise FileNotFoundError(f"{sweep_dir} has no finished trials (records/*.json): run the sweep first.")
    if not any(isinstance(r.get(key), (int, float)) for r in records):
        raise ValueError(f"no record of {sweep_dir} has a numeric {key!r}: use final_return or mean_eval_return")
    out = Path(sweep_dir) / "report"
    out.mkdir(parents=True, exist_ok=True)
    cells: dict[str, dict[str, dict[str, float]]] = {}
    for algo, env in sorted({(r["algo"], r["env"]) for r in records}):
        values = [r[key] for r in records if r["algo"] == algo and r["env"] == env and r.get(key) is not None]
        cells.setdefault(env, {})[algo] = {"seeds": len(values), "mean": float(np.mean(values)), "std": float(np.std(values))}
    scores, envs = score_matrix(records, key, references)
    report: dict[str, Any] = {"key": key, "normalised": references is not None, "envs": envs, "cells": cells,
                              "aggregates": interval_estimates(scores, reps, normalised=references is not None)
                              if scores else {},
                              "improvement": improvement_probabilities(scores, reps) if len(scores) > 1 else {},
                              "figures": {}}  # fmt: skip
    if scores:
        report["figures"]["performance_profiles"] = str(plot_performance_profiles(scores, out / "performance_profiles.png"))
    if any(r.get("eval_returns") for r in records):
        report["figures"]["learning_curves"] = str(plot_learning_curves(records, out / "learning_curves.png"))
    text = json.dumps(report, indent=2, allow_nan=False)  # a non-finite score fails here, before a report is replaced
    atomic_write(out / "report.json", lambda tmp: tmp.write_text(text))
    return report


def format_report(report: dict[str, Any]) -> str:
    """The report as text tables."""
    lines = [f"score: {report['key']}" + (" (normalised)" if report["normalised"] else "")]
    for env, algos in report["cells"].items():
        for algo, cell in algos.items():
            lines.append(f"  {env:<22} {algo:<10} {cell['mean']:11.2f} ± {cell['std']:9.2f}   ({cell['seeds']} seeds)")
    if report["aggregates"]:
        lines.append(f"aggregates over {len(report['envs'])} env(s), 95% stratified-bootstrap CIs:")
        names = [name for name in AGGREGATES if name in next(iter(report["aggregates"].values()))]
        lines.append("  " + f"{'algo':<10}" + "".join(f"{name:>30}" for name in names))
        for algo, values in report["aggregates"].items():
            cells = "".join(f"{f'{p:.2f} [{lo:.2f}, {hi:.2f}]':>30}" for p, lo, hi in (values[name] for name in names))
            lines.append(f"  {algo:<10}" + cells)
    for pair, (point, low, high) in report["improvement"].items():
        lines.append(f"  P({pair}) = {point:.2f} [{low:.2f}, {high:.2f}]")
    lines += [f"  {name}: {path}" for name, path in report["figures"].items()]
    return "\n".join(lines)
