"""``python -m runner.sweep {run,search,report}``: seeds x envs x hyperparameter sweeps on Ray Tune.

    python -m runner.sweep run --algo dqs sac --env Pendulum --seeds 0 1 2 -n 3000
    python -m runner.sweep run --algo sac --env Hopper --seeds 0 1 --grid learning_rate 3e-4 1e-3 --address auto
    python -m runner.sweep search --algo dqs --env Pendulum --seeds 0 1 -n 3000 --trials 8 \\
        --search learning_rate loguniform 1e-4 1e-2
    python -m runner.sweep report runs/sweeps/NAME --reference Pendulum-v1 -1500 -150
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import tyro

from core.cli import run_cli
from envs.registry import resolve_env_id
from runner.sweep.engine import Pruner, SweepSpec, run_search, run_sweep
from runner.sweep.report import format_report, sweep_report

AppendList = Annotated[list[list[str]], tyro.conf.UseAppendAction]


@dataclass
class Run(SweepSpec):
    """A grid sweep: algorithms x envs x --grid values x seeds, then its report."""

    grid: AppendList = field(default_factory=list)
    """KEY V1 V2 ...: one grid axis per --grid (repeat the flag for more axes)."""


@dataclass
class Search(SweepSpec):
    """Optuna TPE through Ray Tune, every trial on all --seeds, pruned on the periodic evaluation return."""

    search: AppendList = field(default_factory=list)
    """KEY KIND ARGS (uniform/loguniform LOW HIGH, int LOW HIGH, choice V1 V2 ...); repeat per key. Default: the
    algorithm's space in runner/hyperparams.py (SEARCH_SPACES)."""
    trials: int = 8
    """Hyperparameter samples."""
    pruner: Pruner = "asha"
    """ASHA, the median stopping rule, or none."""
    search_seed: int = 0
    """Seed of the TPE sampler."""


@dataclass
class Report:
    """Print a sweep's table (IQM, mean, median, optimality gap with CIs) and write its PNGs."""

    sweep_dir: tyro.conf.Positional[Path]
    """The sweep folder."""
    reference: AppendList = field(default_factory=list)
    """ENV LOW HIGH: normalise the env's scores to (score - LOW) / (HIGH - LOW); repeat per env."""
    key: Literal["final_return", "mean_eval_return"] = "final_return"
    """Score of a run: final_return or mean_eval_return."""
    reps: int = 2000
    """Bootstrap resamples."""


def _grid(entries: list[list[str]]) -> dict[str, tuple[str, ...]]:
    grid = {}
    for entry in entries:
        if len(entry) < 2:
            raise ValueError(f"--grid takes KEY V1 V2 ..., got {' '.join(entry)!r}")
        grid[entry[0]] = tuple(entry[1:])
    return grid


def main(command: Run | Search | Report) -> None:
    if isinstance(command, Report):
        references = {}
        for entry in command.reference:
            if len(entry) != 3:
                raise ValueError(f"--reference takes ENV LOW HIGH, got {' '.join(entry)!r}")
            low, high = float(entry[1]), float(entry[2])
            if not (math.isfinite(low) and math.isfinite(high) and high != low):
                raise ValueError(f"--reference {' '.join(entry)}: LOW and HIGH must be finite and differ")
            references[resolve_env_id(entry[0])] = (low, high)
        print(format_report(sweep_report(command.sweep_dir, references or None, command.key, command.reps)))
        return
    if isinstance(command, Search):
        records = run_search(command, command.search or None, command.trials, command.pruner, command.search_seed)
        for record in records:
            print(f"{record['mean_final_return']:10.2f}  {record['params']}  (seeds {record['seeds']})")
        if records:
            print(f"best: {records[0]['params']}")
        return
    run_sweep(command, _grid(command.grid))
    print(format_report(sweep_report(command.sweep_dir)))


if __name__ == "__main__":
    run_cli(lambda: main(tyro.extras.subcommand_cli_from_dict({"run": Run, "search": Search, "report": Report})))
