"""Merlin's sensitivity to ``her_ratio`` and the test horizon (tuned per task in vineetjain96/merlin
``src/train_offline.py``; a criticism raised by the paper's reviewers).

For each (task, dataset kind, her_ratio, seed) Merlin (reverse play) trains for the profile's gradient steps on the same
datasets as `benchmarks.merlin`; the final model is then evaluated at every test horizon on fresh episodes
(`set_test_horizon`: the horizon is a network input, so one trained model serves every horizon). The default seeds are
disjoint from the main benchmark's, so settings chosen here are not selected on the numbers they are judged by.
The runs are trials of the sweep engine (`benchmarks.common.BenchmarkGrid`); each writes
``<work_dir>/<profile>/sensitivity/records/<task>-<kind>__her<r>__seed<k>.json`` (resumable: a record lacking a
requested horizon is run again); the summary ``benchmarks/results/merlin_sensitivity.json`` is rewritten from every
finished run of the profile.

    python -m benchmarks.merlin_sensitivity                       # CPU profile, 4 tasks x 2 kinds x 4 her_ratios
    python -m benchmarks.merlin_sensitivity --tasks PointRooms --kinds expert --her-ratios 0.2 1.0
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import tyro
from stable_baselines3.common.env_util import make_vec_env

from agents.merlin import Merlin, evaluate_goal_policy
from agents.merlin.merlin import value_for_dataset
from benchmarks.common import BenchmarkGrid, ResultsArgs, recorded_args, run_grid
from benchmarks.merlin import (
    PROFILES,
    TASKS,
    KindName,
    MerlinProfile,
    TaskName,
    disjoint_eval_seed,
    prepare_datasets,
    trial_dataset,
    use_project_folders,
)
from benchmarks.render import Result, Section, machine, threads_option
from envs.datasets import KINDS
from envs.goal_dataset import GoalDataset
from envs.registry import EVAL_ENVS, make_env, resolve_env_id
from runner.hyperparams import hyperparams_for
from runner.sweep import Resources, Trial


@dataclass
class SensitivityArgs(Resources, ResultsArgs):
    """Merlin at every (her_ratio, test horizon) pair on the offline goal-reaching datasets (resumable, run by run)."""

    tasks: list[TaskName] = field(default_factory=lambda: list(TASKS))
    """Goal tasks."""
    kinds: list[KindName] = field(default_factory=lambda: list(KINDS))
    """Dataset kinds."""
    her_ratios: list[float] = field(default_factory=lambda: [0.0, 0.2, 0.5, 1.0])
    """Relabelling probabilities (one trained model each)."""
    horizons: list[int] = field(default_factory=lambda: [1, 5, 10, 20, 50])
    """Test horizons every trained model is evaluated at."""
    seeds: list[int] = field(default_factory=lambda: [100, 101])
    """Seeds of the algorithm (disjoint from benchmarks.merlin's 0-2, evaluated on their own episodes; the datasets
    always use seed 0)."""
    profile: Literal["cpu", "gpu", "tiny"] = "cpu"
    """Budget of benchmarks.merlin (gradient steps, final-evaluation episodes, dataset size)."""
    device: str = "auto"
    """Torch device (auto: CUDA when available)."""
    work_dir: Path = Path("runs/benchmarks/merlin")
    """Shared with benchmarks.merlin: its datasets are reused; records go under <work_dir>/<profile>/sensitivity/."""
    name: str | None = None
    """Summary file: <results-dir>/<name>.json (default: merlin_sensitivity, or merlin_sensitivity_<profile>)."""


def record_name(task: str, kind: str, her_ratio: float, seed: int) -> str:
    """The trial name (and record file name) of one (task, kind, her_ratio, seed) run."""
    return f"{task}-{kind}__her{her_ratio:g}__seed{seed}"


def train_and_sweep(
    task: str, kind: str, her_ratio: float, seed: int, horizons: list[int], profile: MerlinProfile, dataset: GoalDataset,
    device: str,
) -> dict[str, Any]:  # fmt: skip
    """Train Merlin with ``her_ratio`` (every other setting as the main benchmark's), then evaluate it at each horizon."""
    env_id = resolve_env_id(task)
    make = partial(make_env, env_id)
    hyperparams = hyperparams_for("merlin", env_id).kwargs
    default = {
        name: value_for_dataset(hyperparams.pop(name), dataset.dataset_id, name) for name in ("her_ratio", "test_horizon")
    }
    model = Merlin("MultiInputPolicy", make_vec_env(make, n_envs=1, seed=seed), dataset=dataset, her_ratio=her_ratio,
                   seed=seed, device=device, **hyperparams)  # fmt: skip
    start = time.perf_counter()
    model.learn(profile.steps)
    train_s = time.perf_counter() - start
    by_horizon: dict[str, dict[str, float]] = {}
    for horizon in horizons:
        model.set_test_horizon(horizon)
        env = make_vec_env(make, n_envs=min(EVAL_ENVS, profile.final_episodes), seed=disjoint_eval_seed(seed))
        by_horizon[str(horizon)] = evaluate_goal_policy(model, env, profile.final_episodes)
        env.close()
    model.get_env().close()
    return {
        "task": task,
        "kind": kind,
        "her_ratio": her_ratio,
        "seed": seed,
        "dataset_id": dataset.dataset_id,
        "tuned": default,  # the library's setting for this task and kind when the run was made
        "steps": model.num_timesteps,
        "train_s": train_s,
        "final_episodes": profile.final_episodes,
        "by_horizon": by_horizon,
        "torch_threads": torch.get_num_threads(),
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """summary[task-kind]: the tuned setting, mean ± std over seeds of every metric per (her_ratio, horizon), and the
    (her_ratio, horizon) with the highest mean discounted return."""
    summary: dict[str, dict[str, Any]] = {}
    for (task, kind), cell in itertools.groupby(sorted(runs, key=lambda r: (r["task"], r["kind"])),
                                                key=lambda r: (r["task"], r["kind"])):  # fmt: skip
        cell_runs = list(cell)
        grid: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
        for her_ratio in sorted({r["her_ratio"] for r in cell_runs}):
            chosen = [r for r in cell_runs if r["her_ratio"] == her_ratio]
            horizons = sorted(set.intersection(*(set(r["by_horizon"]) for r in chosen)), key=int)
            grid[f"{her_ratio:g}"] = {
                horizon: {
                    metric: {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}
                    for metric in chosen[0]["by_horizon"][horizon]
                    for values in [[r["by_horizon"][horizon][metric] for r in chosen]]
                }
                for horizon in horizons
            }
        best = max(((her, horizon) for her, row in grid.items() for horizon in row),
                   key=lambda pair: grid[pair[0]][pair[1]]["discounted_return"]["mean"])  # fmt: skip
        summary[f"{task}-{kind}"] = {"task": task, "kind": kind, "tuned": cell_runs[0]["tuned"], "grid": grid,
                                     "best": {"her_ratio": float(best[0]), "test_horizon": int(best[1])}}  # fmt: skip
    return summary


def print_table(summary: dict[str, dict[str, Any]]) -> None:
    """Per task and kind: discounted return (success rate) for every her_ratio (rows) and horizon (columns)."""
    for cell, entry in summary.items():
        horizons = sorted({h for row in entry["grid"].values() for h in row}, key=int)
        tuned, best = entry["tuned"], entry["best"]
        print(f"\n{cell} (default when run: her_ratio {tuned['her_ratio']}, test_horizon {tuned['test_horizon']}; "
              f"best here: her_ratio {best['her_ratio']:g}, test_horizon {best['test_horizon']})")  # fmt: skip
        print(f"{'her_ratio':>10}" + "".join(f"{'h=' + h:>16}" for h in horizons))
        for her, row in entry["grid"].items():
            cells = [f"{row[h]['discounted_return']['mean']:.1f} ({row[h]['success_rate']['mean']:.2f})" if h in row else "-"
                     for h in horizons]  # fmt: skip
            print(f"{her:>10}" + "".join(f"{c:>16}" for c in cells))


def run_trial(config: dict[str, Any]) -> dict[str, Any]:
    """One trial: `train_and_sweep` on its (already built) dataset."""
    dataset = trial_dataset(config)
    return train_and_sweep(config["task"], config["kind"], config["her_ratio"], config["seed"], config["horizons"],
                           config["profile"], dataset, config["device"])  # fmt: skip


def main(args: SensitivityArgs) -> None:
    profile = PROFILES[args.profile]
    name = args.name or ("merlin_sensitivity" if args.profile == "cpu" else f"merlin_sensitivity_{args.profile}")
    environ = use_project_folders(args.work_dir, profile)
    cells = itertools.product(args.tasks, args.kinds, args.her_ratios, args.seeds)
    trials = [Trial(record_name(task, kind, her, seed), {"task": task, "kind": kind, "her_ratio": her, "seed": seed,
                    "horizons": args.horizons, "profile": profile, "environ": environ, "device": args.device})
              for task, kind, her, seed in cells]  # fmt: skip
    grid = BenchmarkGrid(
        name=name, out=args, profile=args.profile, settings=asdict(profile),
        sweep_dir=(args.work_dir / args.profile / "sensitivity").resolve(), trials=trials, run=run_trial,
        record_name=lambda r: record_name(r["task"], r["kind"], r["her_ratio"], r["seed"]),
        results=lambda runs: {"config": recorded_args(args), "summary": summarize(runs), "runs": runs},
    )  # fmt: skip
    requested = {str(horizon) for horizon in args.horizons}

    def prepare(pending: list[Trial]) -> None:
        prepare_datasets(pending, profile.dataset_episodes)

    runs = run_grid(grid, args, rerun=lambda record: not requested <= set(record["by_horizon"]), prepare=prepare)
    print_table(summarize(runs))
    print(f"\nwrote {args.results_path(name)}")


TEXT = """\
## Merlin: sensitivity to her_ratio and the test horizon

`python -m benchmarks.merlin_sensitivity --profile {profile}{threads}` (resumable).

Machine: {machine}. Merlin (reverse play) trained for {budget[steps]} gradient steps per her_ratio on the Merlin \
benchmark's datasets, seeds {seeds} (disjoint from the benchmark's; each seed with its own episodes), each final model \
evaluated on {budget[final_episodes]} fresh episodes at every test horizon; means over the seeds (n per table). Cells: \
discounted return (success rate); **bold**: the library's default when the sweep ran; the best cell of each table is \
marked with \\*."""
TABLE = """
**{cell}** (n = {n})

| her_ratio | {horizons} |
|---|{rules}"""
CELL = "{discounted_return[mean]:.1f} ({success_rate[mean]:.2f})"


def render(result: Result, figures: Path) -> str:
    """Per task and dataset: discounted return (success rate) at every (her_ratio, test horizon), the default and the
    best marked."""
    seeds = ", ".join(map(str, sorted({r["seed"] for r in result["runs"]})))
    lines = [TEXT.format(profile=result["profile"], threads=threads_option(result["config"]), machine=machine(result),
                         budget=result["profile_config"], seeds=seeds)]  # fmt: skip
    for cell, entry in result["summary"].items():
        horizons = sorted({h for row in entry["grid"].values() for h in row}, key=int)
        tuned, best = entry["tuned"], entry["best"]
        n = min(stats["discounted_return"]["n"] for row in entry["grid"].values() for stats in row.values())
        lines.append(TABLE.format(cell=cell, n=n, horizons=" | ".join(f"h = {h}" for h in horizons),
                                  rules="---|" * len(horizons)))  # fmt: skip
        for her, row in entry["grid"].items():
            cells = []
            for h in horizons:
                if h not in row:
                    cells.append("-")
                    continue
                text = CELL.format(**row[h])
                if float(her) == tuned["her_ratio"] and int(h) == tuned["test_horizon"]:
                    text = f"**{text}**"
                if float(her) == best["her_ratio"] and int(h) == best["test_horizon"]:
                    text += " \\*"
                cells.append(text)
            lines.append(f"| {her} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


SECTION = Section(("merlin_sensitivity",), render)


if __name__ == "__main__":
    main(tyro.cli(SensitivityArgs))
