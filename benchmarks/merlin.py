"""Offline goal reaching: Merlin, Merlin-P and Merlin-NP against GCSL and WGCSL (Jain & Ravanbakhsh, ICML 2024).

Every (method, task, dataset kind, seed) run is a `train.py` run (`runner.experiment.train`, the offline kind) of the
profile's gradient steps on the task's Minari dataset, evaluated every ``eval_freq`` steps (``evaluations.npz`` in its
run folder; the evaluation with the best discounted return marks the best checkpoint: model selection on evaluation
episodes); the benchmark then evaluates its final model on ``final_episodes`` fresh episodes. The runs are trials of the sweep
engine (`benchmarks.common.BenchmarkGrid`: ``--max-concurrent`` at a time, or on a Ray cluster with ``--address``);
each writes ``<work_dir>/<profile>/records/<task>-<kind>__<method>__seed<k>.json`` when it finishes, so an interrupted
benchmark resumes where it stopped; the summary ``benchmarks/results/<name>.json`` (mean ± std over seeds, the
targets, training times, the deviations from the reference protocol) is rewritten from every finished run of the
profile each time.

    python -m benchmarks.merlin                               # CPU profile: 5 methods x 4 tasks x 2 kinds x 3 seeds
    python -m benchmarks.merlin --profile gpu --device cuda   # the reference budget (5e5 gradient steps per run)
    python -m benchmarks.merlin --methods Merlin GCSL --tasks PointReach --kinds random --seeds 0

Datasets (seed 0) are built on first use into ``MINARI_DATASETS_PATH`` (default: ``<work_dir>/datasets``); the noise
models' synthetic trajectories are cached per dataset and seed under ``$DIFFUSION_BASELINES_CACHE/merlin`` (default:
``<work_dir>/cache/merlin``).
"""

from __future__ import annotations

import itertools
import json
import os
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal, NamedTuple, get_args

import numpy as np
import torch
import tyro
from minari.storage import get_dataset_path
from stable_baselines3.common.env_util import make_vec_env

from agents.merlin import GCSL, WGCSL, Merlin, evaluate_goal_policy
from agents.merlin.base import OfflineGoalAlgorithm
from agents.merlin.evaluation import EPISODE_VALUES, mean_metrics
from agents.merlin.noise import make_noise_config, resolve_cache_dir
from benchmarks.common import BenchmarkGrid, Profile, ResultsArgs, mean_and_std, recorded_args, run_grid
from benchmarks.render import Result, Section, machine, mean_std, threads_option
from core.io import atomic_write
from envs.datasets import KINDS, build_dataset, dataset_id, default_episodes, load_goal_dataset, open_dataset
from envs.goal_dataset import GoalDataset
from envs.registry import EVAL_ENVS, make_env, resolve_env_id
from runner.args import TrainArgs
from runner.experiment import train
from runner.hyperparams import hyperparams_for
from runner.kinds.sb3 import FINAL_EVAL_SEED
from runner.sweep import Resources, Trial

MethodName = Literal["Merlin", "Merlin-P", "Merlin-NP", "GCSL", "WGCSL"]
TaskName = Literal["PointReach", "PointRooms", "ReacherGoal", "FetchReach"]
KindName = Literal["expert", "random"]
TASKS: tuple[str, ...] = get_args(TaskName)
DATASET_SEED = 0  # seed of every dataset (fixed: the seeds of the runs vary the algorithms only)


def disjoint_eval_seed(seed: int) -> int:
    """First env seed of a run's final evaluation in the diagnostics (merlin_sensitivity, merlin_rooms): spaced 1000
    apart, so different run seeds never share episodes (the grid's seed + FINAL_EVAL_SEED does, see NOTES)."""
    return 100_000 + 1_000 * seed


@dataclass(frozen=True)
class Method:
    """A benchmarked algorithm: its class, its key in `runner.hyperparams` and the noise model that feeds it."""

    algo: str  # key of runner.hyperparams.HYPERPARAMS (per-task her_ratio/test_horizon, WGCSL's baw_delta, ...)
    algo_class: type[OfflineGoalAlgorithm]  # Merlin, GCSL or WGCSL
    noise_model: str = "reverse_play"  # "reverse_play" (the dataset only), "reverse_model" or "stitching"

    @property
    def generates(self) -> bool:
        """Whether its noise model generates synthetic trajectories (timed, and cached per dataset and seed)."""
        return self.noise_model != "reverse_play"


METHODS: dict[str, Method] = {
    "Merlin": Method("merlin", Merlin),
    "Merlin-P": Method("merlin", Merlin, "reverse_model"),
    "Merlin-NP": Method("merlin", Merlin, "stitching"),
    "GCSL": Method("gcsl", GCSL),
    "WGCSL": Method("wgcsl", WGCSL),
}


@dataclass(frozen=True)
class MerlinProfile(Profile):
    """Budget of one profile. ``gpu`` is the reference protocol (vineetjain96/merlin); the others deviate from it
    where `deviations` says."""

    steps: int  # gradient steps per run (batches of 512, as the reference)
    eval_freq: int  # gradient steps between evaluations during training (they select the best checkpoint)
    eval_episodes: int  # episodes per evaluation during training
    final_episodes: int = 100  # episodes of the final model's evaluation (fresh seeds)
    dataset_episodes: int = 2000  # episodes per dataset (WGCSL's size for these tasks)
    noise_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)  # per noise model: config fields changed
    n_synthetic: int | None = None  # synthetic trajectories per noise-model run; None: as many as dataset episodes

    def __post_init__(self) -> None:
        for name in ("steps", "eval_freq", "eval_episodes", "final_episodes", "dataset_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"MerlinProfile.{name} must be at least 1, got {getattr(self, name)}.")
        for noise_model, kwargs in self.noise_kwargs.items():
            make_noise_config(noise_model, kwargs)  # fail early on an unknown noise model or field


PROFILES: dict[str, MerlinProfile] = {
    "gpu": MerlinProfile(steps=500_000, eval_freq=2000, eval_episodes=100),
    # 120 runs in about 65 min on one core (measured: Merlin/GCSL ~150-180 gradient steps/s, WGCSL ~60; 100 FetchReach
    # evaluation episodes ~3 s). The stitching cost is dominated by the neighbour search (~25 ms per walk for 2000
    # episodes), hence fewer synthetic walks; one reverse-model epoch is ~8 GRU updates, hence a narrower, 3-epoch one.
    "cpu": MerlinProfile(
        steps=2500,
        eval_freq=500,
        eval_episodes=20,
        noise_kwargs={"reverse_model": {"epochs": 3, "hidden_dim": 128}, "stitching": {"epochs": 1}},
        n_synthetic=500,
        rationale="The whole grid (120 runs, 48 noise-model fits, 8 datasets) fits in about an hour on one CPU core.",
    ),
    "tiny": MerlinProfile(
        steps=60,
        eval_freq=30,
        eval_episodes=2,
        final_episodes=4,
        dataset_episodes=20,
        noise_kwargs={"reverse_model": {"epochs": 1, "hidden_dim": 16}, "stitching": {"epochs": 1, "hidden_dim": 16}},
        n_synthetic=10,
        rationale="Smoke test of the pipeline; the numbers mean nothing.",
    ),
}
REFERENCE_PROFILE = "gpu"
#: Differences from the reference that hold in every profile.
NOTES = (
    "Datasets: the project's own (envs.datasets: noisy scripted experts and uniform random actions, seed 0), not "
    "WGCSL's buffers; ReacherGoal-v0 stands for Reacher-v2 and FetchReach-v4 for FetchReach-v2 (MuJoCo 3).",
    "Final-model metrics are a separate evaluation on fresh episodes; best-checkpoint metrics are those of the "
    "training-time evaluation with the highest discounted return (selection on evaluation episodes).",
    f"Evaluations step {EVAL_ENVS} env copies in lockstep (batched policy calls); the distribution of episodes is unchanged.",
    f"The evaluation envs of seed k are seeded k + {FINAL_EVAL_SEED} + i (i < {EVAL_ENVS}), so consecutive seeds "
    "share most evaluation episodes: methods are compared on the same episodes (paired), and the std over seeds "
    "reflects training variance more than episode sampling.",
)


def deviations(profile: MerlinProfile) -> dict[str, dict[str, Any]]:
    """Every setting in which ``profile`` differs from the reference profile (noise-model settings field by field)."""
    reference = PROFILES[REFERENCE_PROFILE]
    changes: dict[str, dict[str, Any]] = {}
    for name in ("steps", "eval_freq", "eval_episodes", "final_episodes", "dataset_episodes", "n_synthetic"):
        value, reference_value = getattr(profile, name), getattr(reference, name)
        if value != reference_value:
            changes[name] = {"profile": value, "reference": reference_value}
    for noise_model in sorted(set(profile.noise_kwargs) | set(reference.noise_kwargs)):
        ours = asdict(make_noise_config(noise_model, profile.noise_kwargs.get(noise_model)))  # type: ignore[arg-type]
        theirs = asdict(make_noise_config(noise_model, reference.noise_kwargs.get(noise_model)))  # type: ignore[arg-type]
        for key in ours:
            if ours[key] != theirs[key]:
                changes[f"{noise_model}.{key}"] = {"profile": ours[key], "reference": theirs[key]}
    return changes


@dataclass
class MerlinBenchArgs(Resources, ResultsArgs):
    """Merlin, Merlin-P, Merlin-NP, GCSL and WGCSL on the offline goal-reaching datasets (resumable, run by run)."""

    methods: list[MethodName] = field(default_factory=lambda: list(METHODS))
    """Methods to run."""
    tasks: list[TaskName] = field(default_factory=lambda: list(TASKS))
    """Goal tasks."""
    kinds: list[KindName] = field(default_factory=lambda: list(KINDS))
    """Dataset kinds."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Seeds of the algorithms (the datasets always use seed 0)."""
    profile: Literal["cpu", "gpu", "tiny"] = "cpu"
    """Budget (see PROFILES; tiny only checks the pipeline)."""
    device: str = "auto"
    """Torch device (auto: CUDA when available)."""
    work_dir: Path = Path("runs/benchmarks/merlin")
    """Per-run results, and the default folders of the datasets and of the synthetic-data cache."""
    force: bool = False
    """Re-run the selected runs even when their results exist (cached datasets and synthetic data are reused)."""
    name: str | None = None
    """Summary file: <results-dir>/<name>.json (default: merlin; merlin_tiny for the tiny profile)."""


# --- datasets -------------------------------------------------------------------------------------------------------


def default_dataset_folder(work_dir: Path, episodes: int) -> Path:
    """``<work_dir>/datasets``, or ``<work_dir>/datasets-<N>-episodes`` for other sizes than WGCSL's (the dataset ids do
    not say the size, so differently sized datasets need their own folder)."""
    return work_dir / ("datasets" if episodes == default_episodes(TASKS[0]) else f"datasets-{episodes}-episodes")


def use_project_folders(work_dir: Path, profile: MerlinProfile) -> dict[str, str]:
    """Point Minari and the synthetic-data cache into ``work_dir`` unless the user set their variables; returns both
    variables as absolute paths (what the grid's trials set in their Ray workers)."""
    os.environ.setdefault("MINARI_DATASETS_PATH", str(default_dataset_folder(work_dir, profile.dataset_episodes)))
    os.environ.setdefault("DIFFUSION_BASELINES_CACHE", str(work_dir / "cache"))
    return {key: str(Path(os.environ[key]).resolve()) for key in ("MINARI_DATASETS_PATH", "DIFFUSION_BASELINES_CACHE")}


def prepare_datasets(pending: list[Trial], episodes: int) -> dict[str, dict[str, Any]]:
    """Build or check, in the driver, the datasets of the pending trials (configs with ``task`` and ``kind``) before
    they load them (two trials must not build one dataset); returns how each was made, by dataset id."""
    infos = {}
    for task, kind in dict.fromkeys((trial.config["task"], trial.config["kind"]) for trial in pending):
        dataset, info = prepare_dataset(task, kind, episodes)
        infos[dataset.dataset_id] = info
    return infos


def trial_dataset(config: dict[str, Any]) -> GoalDataset:
    """In a trial's Ray worker: the driver's dataset and cache folders, then the trial's dataset."""
    os.environ |= config["environ"]
    return load_goal_dataset(dataset_id(config["task"], config["kind"]))


def prepare_dataset(task: str, kind: str, episodes: int) -> tuple[GoalDataset, dict[str, Any]]:
    """Load the (task, kind) dataset, building it first when it is missing; returns it and how it was made."""
    identifier = dataset_id(task, kind)
    root = os.environ.get("MINARI_DATASETS_PATH", str(Path("~/.minari/datasets").expanduser()))
    info: dict[str, Any] = {
        "path": str(get_dataset_path(identifier)),
        "command": f"MINARI_DATASETS_PATH={root} python -m envs.datasets build --env {task} --kind {kind} "
        f"--episodes {episodes} --seed {DATASET_SEED}",
    }
    if not get_dataset_path(identifier).exists():
        print(f"Building {identifier} ({episodes} episodes) under {root}", flush=True)
        start = time.perf_counter()
        build_dataset(task, kind, episodes, seed=DATASET_SEED)
        info["build_s"] = time.perf_counter() - start
    start = time.perf_counter()
    dataset = load_goal_dataset(identifier)
    info["load_s"] = time.perf_counter() - start
    if dataset.n_episodes != episodes:
        raise ValueError(
            f"Dataset {identifier!r} at {info['path']} has {dataset.n_episodes} episodes, but the profile needs {episodes}. "
            "Point MINARI_DATASETS_PATH at another folder (or unset it to use the benchmark's own)."
        )
    info["episodes"] = dataset.n_episodes
    info["description"] = open_dataset(identifier).storage.metadata.get("description", "")
    return dataset, info


# --- one run --------------------------------------------------------------------------------------------------------


class RunKey(NamedTuple):
    """One cell of the benchmark grid."""

    task: str
    kind: str
    seed: int
    method: str

    @property
    def name(self) -> str:
        """The trial name (and record file name) of the run."""
        return f"{self.task}-{self.kind}__{self.method}__seed{self.seed}"


def _cached_files() -> set[Path]:
    """The noise models' cache files now present (a new one means the run generated its synthetic data)."""
    folder = resolve_cache_dir(None)
    return set(folder.glob("*.npz")) if folder.is_dir() else set()


def train_args(key: RunKey, profile: MerlinProfile, log_dir: Path, device: str) -> tuple[TrainArgs, dict[str, Any]]:
    """The `train.py` run of ``key`` (its dataset, noise model and the profile's budget and evaluations), and the
    hyperparameters it trains with (the table's for the task, then the noise model's)."""
    method = METHODS[key.method]
    noise = {"noise_model": method.noise_model,
             "noise_kwargs": profile.noise_kwargs.get(method.noise_model) if method.generates else None,
             "n_synthetic": profile.n_synthetic if method.generates else None}  # fmt: skip
    overrides = {"dataset": dataset_id(key.task, key.kind), **noise}
    args = TrainArgs(algo=method.algo, env=key.task, total_timesteps=profile.steps, seed=key.seed,
                     eval_freq=profile.eval_freq, eval_episodes=profile.eval_episodes, device=device,
                     num_threads=None, log_dir=log_dir, progress=False, verbose=0,
                     hyperparams={name: repr(value) for name, value in overrides.items()})  # fmt: skip
    return args, hyperparams_for(method.algo, resolve_env_id(key.task)).kwargs | noise


def evaluation_curve(run_dir: Path) -> tuple[list[dict[str, float]], float]:
    """The metrics of every training evaluation of a run (its ``evaluations.npz``) and their total wall time."""
    with np.load(run_dir / "evaluations.npz") as evaluations:
        curve = [{"step": int(step), **mean_metrics({key: evaluations[key][i] for key in EPISODE_VALUES.values()})}
                 for i, step in enumerate(evaluations["timesteps"])]  # fmt: skip
        return curve, float(evaluations["seconds"].sum())


def train_and_evaluate(key: RunKey, profile: MerlinProfile, log_dir: Path, device: str = "auto") -> dict[str, Any]:
    """Train ``key.method`` for ``profile.steps`` gradient steps through `runner.experiment.train` (evaluations along
    the way), then evaluate the final model on fresh episodes; returns the run's record (metrics, timings, settings)."""
    method = METHODS[key.method]
    args, hyperparams = train_args(key, profile, log_dir, device)
    cached_before = _cached_files()
    run_dir = train(args)
    results = json.loads((run_dir / "results.json").read_text())
    curve, eval_s = evaluation_curve(run_dir)
    model = method.algo_class.load(run_dir / "model.zip", device=device)
    env_id = resolve_env_id(key.task)
    final_env = make_vec_env(partial(make_env, env_id), n_envs=min(EVAL_ENVS, profile.final_episodes),
                             seed=key.seed + FINAL_EVAL_SEED)  # fmt: skip
    start = time.perf_counter()
    final = evaluate_goal_policy(model, final_env, profile.final_episodes)
    final_eval_s = time.perf_counter() - start
    final_env.close()
    noise_s = model.data_stats.get("synthesis_s", 0.0)
    train_s = results["wall_time_s"] - noise_s - eval_s
    return {
        "method": key.method,
        "task": key.task,
        "kind": key.kind,
        "seed": key.seed,
        "env_id": env_id,
        "dataset_id": dataset_id(key.task, key.kind),
        "algorithm": method.algo_class.__name__,
        "hyperparams": hyperparams,
        "resolved": {name: getattr(model.config, name) for name in ("her_ratio", "test_horizon", "use_horizon")},
        "steps": results["num_timesteps"],
        "final": final,
        "final_episodes": profile.final_episodes,
        "best": results["best_eval"],
        "best_step": results["best_eval_timestep"],
        "eval_episodes": profile.eval_episodes,
        "curve": curve,
        "data_stats": model.data_stats,
        "timing": {
            "train_s": train_s,
            "steps_per_s": results["num_timesteps"] / train_s,
            "noise_s": noise_s if method.generates else None,
            "noise_generated": method.generates and bool(_cached_files() - cached_before),
            "eval_s": eval_s,
            "final_eval_s": final_eval_s,
        },
        "device": str(model.device),
        "torch_threads": torch.get_num_threads(),
        "run_dir": str(run_dir),
    }


def run_trial(config: dict[str, Any]) -> dict[str, Any]:
    """One trial of the grid: `train_and_evaluate` in the driver's dataset and cache folders (its dataset is built)."""
    os.environ |= config["environ"]
    key = RunKey(config["task"], config["kind"], config["seed"], config["method"])
    record = train_and_evaluate(key, config["profile"], Path(config["log_dir"]) / key.name, config["device"])
    return {**record, "profile": config["profile_name"]}


# --- summary and targets --------------------------------------------------------------------------------------------


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """summary[task][kind][method]: mean ± std over seeds of the final and best-checkpoint metrics and of the times."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for record in runs:
        groups.setdefault((record["task"], record["kind"], record["method"]), []).append(record)
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for task, kind, method in itertools.product(TASKS, KINDS, METHODS):  # the order of the tables
        chosen = groups.get((task, kind, method))
        if chosen is None:
            continue
        noise = [r["timing"]["noise_s"] for r in chosen if r["timing"]["noise_generated"]]
        summary.setdefault(task, {}).setdefault(kind, {})[method] = {
            "seeds": sorted(r["seed"] for r in chosen),
            **{
                selection: {key: mean_and_std([r[selection][key] for r in chosen]) for key in chosen[0][selection]}
                for selection in ("final", "best")
            },
            "best_step": mean_and_std([r["best_step"] for r in chosen]),
            "train_s": mean_and_std([r["timing"]["train_s"] for r in chosen]),
            "noise_s": mean_and_std(noise) if noise else None,
        }
    return summary


def training_time(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per method over all its runs: training time per run, gradient steps per second, noise-model generation time."""
    times: dict[str, dict[str, Any]] = {}
    for method in METHODS:
        chosen = [r for r in runs if r["method"] == method]
        if not chosen:
            continue
        noise = [r["timing"]["noise_s"] for r in chosen if r["timing"]["noise_generated"]]
        times[method] = {
            "runs": len(chosen),
            "train_s": mean_and_std([r["timing"]["train_s"] for r in chosen]),
            "steps_per_s": mean_and_std([r["timing"]["steps_per_s"] for r in chosen]),
            "noise_s": mean_and_std(noise) if noise else None,
            "noise_generations": len(noise),
        }
    return times


@dataclass(frozen=True)
class Target:
    """A claim checked on the summary: ``method``'s mean ``metric`` >= the baseline's (or ``threshold``) in every cell."""

    description: str
    method: str  # left-hand side of the comparison
    metric: str  # one of agents.merlin.evaluation.METRICS
    cells: tuple[tuple[str, str], ...]  # (task, kind) pairs the claim covers
    baseline: str | None = None  # method compared against; None: compare with ``threshold``
    threshold: float = 0.0


TARGETS = (
    Target(
        "Merlin >= GCSL (discounted return) on every task and dataset",
        "Merlin",
        "discounted_return",
        tuple(itertools.product(TASKS, KINDS)),
        baseline="GCSL",
    ),
    Target(
        "Merlin-NP >= Merlin (discounted return) on the random datasets",
        "Merlin-NP",
        "discounted_return",
        tuple((task, "random") for task in TASKS),
        baseline="Merlin",
    ),
    Target(
        "FetchReach-expert: Merlin success rate >= 0.95", "Merlin", "success_rate", (("FetchReach", "expert"),), threshold=0.95
    ),
)


def check_target(target: Target, summary: dict[str, Any], selection: str) -> dict[str, Any]:
    """Status of ``target`` on the ``selection`` ("final" or "best") metrics: "missed" when any available cell fails,
    "incomplete" when all available cells pass but some are missing, else "met"; plus every cell's comparison."""

    def value(task: str, kind: str, method: str) -> float | None:
        entry = summary.get(task, {}).get(kind, {}).get(method)
        return None if entry is None else entry[selection][target.metric]["mean"]

    checks = []
    for task, kind in target.cells:
        ours = value(task, kind, target.method)
        reference = target.threshold if target.baseline is None else value(task, kind, target.baseline)
        if ours is not None and reference is not None:
            checks.append({"task": task, "kind": kind, "value": ours, "reference": reference, "met": ours >= reference})
    if not all(check["met"] for check in checks):
        status = "missed"
    else:
        status = "met" if len(checks) == len(target.cells) else "incomplete"
    return {"target": target.description, "selection": selection, "status": status, "cells": len(target.cells),
            "checks": checks}  # fmt: skip


def check_targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [check_target(target, summary, selection) for target in TARGETS for selection in ("final", "best")]


def _cell(stats: dict[str, float], width: int) -> str:
    return f"{stats['mean']:.3f} ± {stats['std']:.3f}".rjust(width)


def print_table(summary: dict[str, Any], targets: list[dict[str, Any]]) -> None:
    """The mean ± std table (final model, then best checkpoint) and the targets' status."""
    header = (f"{'task':<12}{'kind':<8}{'method':<11}{'seeds':>6}{'success':>15}{'final dist':>17}{'disc. return':>17}"
              f"{'best success':>15}{'best return':>17}{'train s':>9}")  # fmt: skip
    print("\n" + header)
    for task, kinds in summary.items():
        for kind, methods in kinds.items():
            for method, s in methods.items():
                final, best = s["final"], s["best"]
                print(f"{task:<12}{kind:<8}{method:<11}{len(s['seeds']):>6}{_cell(final['success_rate'], 15)}"
                      f"{_cell(final['final_distance'], 17)}{_cell(final['discounted_return'], 17)}"
                      f"{_cell(best['success_rate'], 15)}{_cell(best['discounted_return'], 17)}"
                      f"{s['train_s']['mean']:>9.1f}")  # fmt: skip
    print()
    for target in targets:
        failed = [f"{c['task']}-{c['kind']} {c['value']:.3f} < {c['reference']:.3f}" for c in target["checks"] if not c["met"]]
        detail = f" ({'; '.join(failed)})" if failed else f" ({len(target['checks'])}/{target['cells']} cells)"
        print(f"[{target['status']:>10}] {target['target']} [{target['selection']} model]{detail}")


# --- driver ---------------------------------------------------------------------------------------------------------


def main(args: MerlinBenchArgs) -> None:
    profile = PROFILES[args.profile]
    name = args.name or ("merlin_tiny" if args.profile == "tiny" else "merlin")
    environ = use_project_folders(args.work_dir, profile)
    root = (args.work_dir / args.profile).resolve()
    datasets_record = root / "datasets.json"
    committed = json.loads(path.read_text()) if (path := args.results_path(name)).is_file() else {}
    datasets: dict[str, Any] = {**committed.get("datasets", {}),
                                **(json.loads(datasets_record.read_text()) if datasets_record.is_file() else {})}  # fmt: skip

    def prepare(pending: list[Trial]) -> None:
        for identifier, info in prepare_datasets(pending, profile.dataset_episodes).items():
            datasets[identifier] = {**datasets.get(identifier, {}), **info}
        atomic_write(datasets_record, lambda path: path.write_text(json.dumps(datasets, indent=2)))

    def results(runs: list[dict[str, Any]]) -> dict[str, Any]:
        summary = summarize(runs)
        return {
            "reference_profile": REFERENCE_PROFILE,
            "deviations": deviations(profile),
            "notes": list(NOTES),
            "config": recorded_args(args),
            "datasets": datasets,
            "summary": summary,
            "training_time": training_time(runs),
            "targets": check_targets(summary),
            "runs": runs,
        }

    keys = [RunKey(*cell) for cell in itertools.product(args.tasks, args.kinds, args.seeds, args.methods)]
    trials = [Trial(key.name, {**key._asdict(), "profile": profile, "profile_name": args.profile, "environ": environ,
                               "device": args.device, "log_dir": str(root / "runs")}) for key in keys]  # fmt: skip
    grid = BenchmarkGrid(
        name=name, out=args, profile=args.profile, settings=asdict(profile), sweep_dir=root, trials=trials, run=run_trial,
        record_name=lambda r: RunKey(r["task"], r["kind"], r["seed"], r["method"]).name, results=results,
    )  # fmt: skip
    runs = run_grid(grid, args, rerun=(lambda record: True) if args.force else None, prepare=prepare)
    summary = summarize(runs)
    print_table(summary, check_targets(summary))
    print(f"wrote {args.results_path(name)}")


TEXT = """\
## Merlin vs GCSL/WGCSL (offline goal reaching)

`python -m benchmarks.merlin --profile {profile}{threads}` (resumable; the tables are rebuilt from every finished run).

Machine: {machine}; MuJoCo {versions[mujoco]}, gymnasium-robotics {versions[gymnasium-robotics]}. Per run: \
{budget[steps]} gradient steps (batch 512) on a {budget[dataset_episodes]}-episode dataset; {budget[eval_episodes]} \
evaluation episodes every {budget[eval_freq]} steps, then {budget[final_episodes]} fresh episodes for the final model. \
Mean ± std over seeds. Success: `is_success` at the last step; final distance: |achieved - desired goal| at the last \
step; discounted return: sum of 0.98^t (r_t + 1). The best checkpoint is the training evaluation with the highest \
discounted return, i.e. model selection on evaluation episodes: the final model is the unselected number.

| task | dataset | method | seeds | success | final distance | discounted return | best ckpt: success \
| best ckpt: discounted return | train time (s) |
|---|---|---|---|---|---|---|---|---|---|"""
ROW = (
    "| {task} | {kind} | {method} | {seeds} | {success} | {distance} | {discounted} | {best_success} | "
    "{best_discounted} | {train:.0f} |"
)
TARGETS_INTRO = """
Targets (final model; the best checkpoint in brackets):
"""
TARGET = "- {description}: **{status}** ({checks} of {cells} cells run; best checkpoint: {best}){detail}"
TRAINING_TIME = """
| method | runs | train time per run (s) | gradient steps/s | noise-model generation per dataset and seed (s) |
|---|---|---|---|---|"""
TRAINING_TIME_ROW = "| {method} | {runs} | {train} | {rate} | {noise} |"
PROTOCOL = """
Changed from the reference protocol (the `{reference}` profile): {changes}. {rationale}
"""
DATASETS = """
Datasets:
"""
DATASET = "- `{identifier}`: {episodes} episodes, {built} (`{command}`)."


def render(result: Result, figures: Path) -> str:
    """Final and best-checkpoint metrics per task, dataset and method, the targets, training times, the deviations from
    the reference protocol and the datasets."""
    lines = [TEXT.format(profile=result["profile"], threads=threads_option(result["config"]), machine=machine(result),
                         versions=result["versions"], budget=result["profile_config"])]  # fmt: skip
    for task, kinds in result["summary"].items():
        for kind, methods in kinds.items():
            for method, s in methods.items():
                final, best = s["final"], s["best"]
                lines.append(ROW.format(task=task, kind=kind, method=method, seeds=len(s["seeds"]),
                                        success=mean_std(final["success_rate"]),
                                        distance=mean_std(final["final_distance"], 3),
                                        discounted=mean_std(final["discounted_return"]),
                                        best_success=mean_std(best["success_rate"]),
                                        best_discounted=mean_std(best["discounted_return"]),
                                        train=s["train_s"]["mean"]))  # fmt: skip
    lines.append(TARGETS_INTRO)
    statuses: dict[str, dict[str, dict[str, Any]]] = {}
    for target in result["targets"]:
        statuses.setdefault(target["target"], {})[target["selection"]] = target
    for description, by_selection in statuses.items():
        final, best = by_selection["final"], by_selection["best"]
        misses = [f"{c['task']}-{c['kind']} {c['value']:.3f} < {c['reference']:.3f}" for c in final["checks"] if not c["met"]]
        lines.append(TARGET.format(description=description, status=final["status"], checks=len(final["checks"]),
                                   cells=final["cells"], best=best["status"],
                                   detail=f"; misses: {', '.join(misses)}" if misses else ""))  # fmt: skip
    lines.append(TRAINING_TIME)
    for method, t in result["training_time"].items():
        noise = f"{mean_std(t['noise_s'], 1)} ({t['noise_generations']} fits)" if t["noise_s"] else "-"
        lines.append(TRAINING_TIME_ROW.format(method=method, runs=t["runs"], train=mean_std(t["train_s"], 1),
                                              rate=mean_std(t["steps_per_s"], 0), noise=noise))  # fmt: skip
    changes = ", ".join(f"{key} {c['profile']} (reference {c['reference']})" for key, c in result["deviations"].items())
    lines.append(PROTOCOL.format(reference=result["reference_profile"], changes=changes or "nothing",
                                 rationale=result["profile_config"]["rationale"]))  # fmt: skip
    lines += [f"- {note}" for note in result["notes"]]
    lines.append(DATASETS)
    for identifier, dataset in result["datasets"].items():
        built = f"built in {dataset['build_s']:.0f} s" if "build_s" in dataset else "found already built"
        lines.append(DATASET.format(identifier=identifier, episodes=dataset["episodes"], built=built,
                                    command=dataset["command"]))  # fmt: skip
    return "\n".join(lines)


SECTION = Section(("merlin",), render)


if __name__ == "__main__":
    main(tyro.cli(MerlinBenchArgs))
