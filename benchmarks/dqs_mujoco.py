"""DQS against SB3 SAC on MuJoCo: same seeds, same step budget, same evaluation, plus their throughput ratio.

A grid of the sweep engine (`benchmarks.common.BenchmarkGrid`): every (env, algo, seed) is a `train.py` run with the
default hyperparameters of `runner/hyperparams.py`, run as a Ray Tune trial (two at a time on two cores, one torch
thread each, by default) that leaves a record under ``<work_dir>/<profile>/records/`` as soon as it finishes, so an
interrupted benchmark resumes where it stopped; ``--address`` runs the trials on a Ray cluster. The results file is
rebuilt from all records after each run. The throughput ratio DQS/SAC is measured per env in this process
(interleaved repeats of `benchmarks.throughput.measure`) before the grid starts: give it an idle machine.

    python -m benchmarks.dqs_mujoco                                  # CPU: 100k steps x 3 seeds, HalfCheetah + Hopper
    python -m benchmarks.dqs_mujoco --profile gpu --device cuda      # 1M steps
"""

from __future__ import annotations

import hashlib
import inspect
import json
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import tyro
from scipy.stats import trim_mean

from benchmarks.common import (
    BenchmarkGrid,
    Profile,
    ResultsArgs,
    previous_results,
    recorded_args,
    restore_missing,
    run_grid,
)
from benchmarks.render import Curve, Panel, Result, Section, figure, machine, mean_std, rliable_table
from benchmarks.throughput import acting_cost, measure_interleaved, warmed_up_model
from core.io import atomic_write
from envs import resolve_env_id
from runner.args import TrainArgs
from runner.hyperparams import default_hyperparams
from runner.registry import get_algo
from runner.sweep import Resources, Trial, run_train_trial, train_trial


@dataclass(frozen=True)
class RLProfile(Profile):
    """Budget of a grid of `train.py` runs."""

    steps: int  # environment steps per run
    eval_freq: int  # environment steps between evaluations


PROFILES: dict[str, RLProfile] = {
    "cpu": RLProfile(steps=100_000, eval_freq=5_000),
    "gpu": RLProfile(steps=1_000_000, eval_freq=10_000),
}


@dataclass
class RLGridArgs(Resources, ResultsArgs):
    """Options of a grid of `train.py` runs: envs x algos x seeds at one budget."""

    envs: list[str] = field(default_factory=lambda: ["HalfCheetah", "Hopper"])
    """Environments."""
    algos: list[str] = field(default_factory=lambda: ["dqs", "sac"])
    """Algorithms; the ratio is first / second."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Seeds, one run per (env, algo, seed)."""
    profile: Literal["cpu", "gpu"] = "cpu"
    """Step budget and evaluation frequency (see PROFILES)."""
    steps: int | None = None
    """Override the profile's training steps per run."""
    eval_freq: int | None = None
    """Override the profile's evaluation frequency."""
    eval_episodes: int = 10
    """Episodes per evaluation (deterministic policy)."""
    device: str = "auto"
    """Torch device."""
    work_dir: Path = Path("runs/benchmarks/dqs_mujoco")
    """Where the training runs are written."""
    name: str = "dqs_mujoco"
    """Results file: <results-dir>/<name>.json."""


@dataclass
class MujocoArgs(RLGridArgs):
    throughput_steps: int = 1_000
    """Timed steps per throughput measurement (after 1000 random steps); 0 skips the throughput phase."""
    throughput_repeats: int = 2
    """Interleaved throughput measurements per algorithm."""


CHECKPOINTS = 10  # per run: a killed run loses at most a tenth of its steps


def run_trials_of(
    args: RLGridArgs, steps_of: Callable[[str], int], eval_freq: int, overrides_of: Callable[[str], dict[str, str]]
) -> list[Trial]:  # fmt: skip
    """One `train.py` trial per (env, seed, algo): ``steps_of(env)`` steps, ``overrides_of(env)`` as its
    ``--hyperparams``, evaluated every ``eval_freq`` steps, with `CHECKPOINTS` checkpoints and their replay buffers,
    so that a killed benchmark resumes its runs from the last one (`runner.sweep.runs`)."""
    return [
        train_trial(
            f"run__{env}__{algo}__seed{seed}",
            TrainArgs(
                algo=algo,
                env=env,
                total_timesteps=steps_of(env),
                seed=seed,
                eval_freq=eval_freq,
                eval_episodes=args.eval_episodes,
                log_dir=(args.work_dir / args.profile).resolve(),
                progress=False,
                verbose=0,
                num_threads=args.threads_per_trial,
                device=args.device,
                hyperparams=overrides_of(env),
                save_freq=max(steps_of(env) // CHECKPOINTS, 1),
                save_replay_buffer=True,
            ),
            {"env": env, "algo": algo, "seed": seed, "steps": steps_of(env), "defaults": defaults_fingerprint(algo, env)},
        )
        for env in args.envs
        for seed in args.seeds
        for algo in args.algos
    ]


def defaults_fingerprint(algo: str, env: str) -> str | None:
    """A short hash of the defaults an (algo, env) run trains with, for an algorithm with a config dataclass (DQS): its
    hyperparameter-table entry for the env, its constructor's defaults and the dataclass's defaults, less the knobs at
    the value that behaves as before they existed (``NEUTRAL_KNOBS``); None for the others (SB3's own)."""
    algo_class = get_algo(algo).load_class()
    config_class = getattr(algo_class, "config_class", None)
    if config_class is None:
        return None
    constructor = {name: parameter.default for name, parameter in inspect.signature(algo_class).parameters.items()
                   if parameter.default is not inspect.Parameter.empty}  # fmt: skip
    neutral = getattr(config_class, "NEUTRAL_KNOBS", {})
    config = {key: value for key, value in asdict(config_class()).items() if key not in neutral or value != neutral[key]}
    payload = {"table": default_hyperparams(algo, resolve_env_id(env)), "constructor": constructor, "config": config}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def ran_other_defaults(record: dict[str, Any]) -> bool:
    """Whether a record was trained with other defaults than today's (a DQS record from before a change of its
    defaults, or from before records carried the fingerprint): `run_grid` reruns it."""
    return record.get("defaults") != defaults_fingerprint(record["algo"], record["env"])


def record_name(record: dict[str, Any]) -> str:
    """The trial name of a run record."""
    return f"run__{record['env']}__{record['algo']}__seed{record['seed']}"


def throughput(env: str, args: MujocoArgs) -> dict[str, Any]:
    """Median steps/s of each algorithm (interleaved) and the ratio first/second."""
    torch.set_num_threads(args.threads_per_trial)
    env_id = resolve_env_id(env)
    samples = measure_interleaved(args.algos, env_id, args.throughput_steps, 1000, args.throughput_repeats, args.device)
    medians = {algo: statistics.median(values) for algo, values in samples.items()}
    acting = {algo: acting_cost(warmed_up_model(algo, env_id, 1000, args.device, 0), env_id) for algo in args.algos}
    first, second = args.algos[:2]
    return {"steps_per_s": samples, "median_steps_per_s": medians, "ratio": medians[first] / medians[second],
            "acting": acting}  # fmt: skip


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per env and algo: mean ± std and IQM over seeds of the final and the mean evaluation return (the area under
    the curve), and of the final and mean success rate where recorded."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for run in runs:
        summary.setdefault(run["env"], {}).setdefault(run["algo"], {})
    for env, algos in summary.items():
        for algo in algos:
            chosen = [r for r in runs if r["env"] == env and r["algo"] == algo]
            finals = [r["final_return"] for r in chosen]
            means = [r["mean_eval_return"] for r in chosen]
            algos[algo] = {
                "seeds": len(chosen),
                "final_mean": float(np.mean(finals)),
                "final_std": float(np.std(finals)),
                "final_iqm": float(trim_mean(finals, 0.25)),
                "mean_eval_mean": float(np.mean(means)),
                "mean_eval_std": float(np.std(means)),
                "mean_eval_iqm": float(trim_mean(means, 0.25)),
            }
            if all("eval_success_rates" in r for r in chosen):
                rates = [r["eval_success_rates"] for r in chosen]
                algos[algo] |= {
                    "final_success_mean": float(np.mean([r[-1] for r in rates])),
                    "mean_success_mean": float(np.mean([np.mean(r) for r in rates])),
                }
    return summary


def mujoco_grid(
    args: RLGridArgs, settings: dict[str, Any], trials: list[Trial], throughput_dir: Path | None = None
) -> BenchmarkGrid:  # fmt: skip
    """The grid of ``trials`` whose results file holds the runs, their summary and the throughput records of
    ``throughput_dir`` (``<env>.json`` each)."""

    def results(runs: list[dict[str, Any]]) -> dict[str, Any]:
        ratios = (
            {}
            if throughput_dir is None
            else {p.stem: json.loads(p.read_text()) for p in sorted(throughput_dir.glob("*.json"))}
        )
        return {"config": recorded_args(args), "throughput": ratios, "runs": runs, "summary": summarize(runs)}

    return BenchmarkGrid(name=args.name, out=args, profile=args.profile, settings=settings,
                         sweep_dir=args.work_dir / args.profile,
                         trials=trials, run=run_train_trial, record_name=record_name, results=results)  # fmt: skip


def print_summary(runs: list[dict[str, Any]]) -> None:
    for env, algos in summarize(runs).items():
        for algo, s in algos.items():
            print(
                f"{env:<12}{algo:<6} final {s['final_mean']:9.1f} ± {s['final_std']:7.1f}   "
                f"mean eval {s['mean_eval_mean']:9.1f} ± {s['mean_eval_std']:7.1f}   ({s['seeds']} seeds)"
            )


def main(args: MujocoArgs) -> None:
    """Measure the missing throughput ratios, then run every missing (env, algo, seed) of the grid; print the
    summary."""
    profile = PROFILES[args.profile]
    steps, eval_freq = args.steps or profile.steps, args.eval_freq or profile.eval_freq
    throughput_dir = args.work_dir / args.profile / "throughput"
    settings = {"steps": steps, "eval_freq": eval_freq, "eval_episodes": args.eval_episodes}
    grid = mujoco_grid(args, settings, run_trials_of(args, lambda env: steps, eval_freq, lambda env: {}), throughput_dir)
    committed = previous_results(args.results_path(args.name), args.profile, settings)
    restore_missing((throughput_dir / f"{env}.json", ratio) for env, ratio in committed.get("throughput", {}).items())
    for env in args.envs:
        measured = throughput_dir / f"{env}.json"
        if args.throughput_steps and not measured.is_file():
            ratio = throughput(env, args)
            atomic_write(measured, lambda p, ratio=ratio: p.write_text(json.dumps(ratio, indent=2)))
            print(f"{env}: throughput {ratio['median_steps_per_s']} ratio {ratio['ratio']:.2f}", flush=True)
    print_summary(run_grid(grid, args, stale=ran_other_defaults))
    print(f"wrote {args.results_path(args.name)}")


def runs_of(result: Result, env: str, algo: str) -> list[Result]:
    """The run records of one (env, algo) cell of a grid's results file."""
    return [r for r in result["runs"] if r["env"] == env and r["algo"] == algo]


def steps_of(result: Result, env: str, algo: str) -> str:
    """The step budgets of one cell's runs (one, unless the budget changed between runs)."""
    return ", ".join(sorted({str(r["steps"]) for r in runs_of(result, env, algo)}))


def learning_curves(result: Result, key: str, ylabel: str, figures: Path, name: str, alt: str) -> str:
    """Mean ± std over seeds of each algorithm's evaluation curve ``key`` at the steps every seed evaluated at (a run
    resumed from an interrupted model evaluates on a shifted grid), one panel per env."""
    panels = []
    for env, algos in result["summary"].items():
        curves = []
        for color, algo in enumerate(algos):
            runs = runs_of(result, env, algo)
            steps = sorted(set.intersection(*(set(r["eval_timesteps"]) for r in runs)))
            values = np.array([[dict(zip(r["eval_timesteps"], r[key]))[step] for step in steps] for r in runs])
            curves.append(Curve(f"{algo} ({len(runs)} seeds)", steps, values.mean(0), f"C{color}",
                                spread=values.std(0)))  # fmt: skip
        panels.append(Panel(curves, "environment steps", ylabel, title=env))
    return figure(panels, figures, name, alt)


TEXT = """\
## DQS vs SAC on MuJoCo

`python -m benchmarks.dqs_mujoco --profile {profile}{options}` (resumable; runs are added as they finish).

Machine: {machine}. Deterministic evaluation, {config[eval_episodes]} episodes; mean ± std and IQM over seeds of the \
final evaluation and of the mean over all evaluations (area under the curve).

| env | algo | seeds | steps | final return | final IQM | mean eval return | mean eval IQM |
|---|---|---|---|---|---|---|---|"""
ROW = "| {env} | {algo} | {seeds} | {steps} | {final} | {final_iqm:.1f} | {mean_eval} | {mean_eval_iqm:.1f} |"
THROUGHPUT = """
| env | median env steps/s | ratio {ratio} |
|---|---|---|"""
THROUGHPUT_ROW = "| {env} | {medians} | {ratio:.2f} |"
ACTING = """
| env | algo | predict, deterministic (ms) | predict, stochastic (ms) | 10-episode evaluation (s) |
|---|---|---|---|---|"""
ACTING_ROW = (
    "| {env} | {algo} | {predict_ms_deterministic:.2f} | {predict_ms_stochastic:.2f} | {evaluation_s_10_episodes:.1f} |"
)


def render(result: Result, figures: Path) -> str:
    """Final and mean evaluation returns per env and algorithm, the throughput and acting costs, rliable intervals and
    the learning curves."""
    config = result["config"]
    options = "".join(f" --{key.replace('_', '-')} {config[key]}" for key in ("steps", "eval_freq") if config.get(key))
    lines = [TEXT.format(profile=result["profile"], options=options, config=config, machine=machine(result))]
    for env, algos in result["summary"].items():
        for algo, s in algos.items():
            final = mean_std({"mean": s["final_mean"], "std": s["final_std"]}, 1)
            mean_eval = mean_std({"mean": s["mean_eval_mean"], "std": s["mean_eval_std"]}, 1)
            lines.append(ROW.format(**s, env=env, algo=algo, steps=steps_of(result, env, algo), final=final,
                                    mean_eval=mean_eval))  # fmt: skip
    if result["throughput"]:
        lines.append(THROUGHPUT.format(ratio="/".join(config["algos"][:2])))
        for env, t in result["throughput"].items():
            medians = ", ".join(f"{algo} {v:.1f}" for algo, v in t["median_steps_per_s"].items())
            lines.append(THROUGHPUT_ROW.format(env=env, medians=medians, ratio=t["ratio"]))
        acting = {env: t["acting"] for env, t in result["throughput"].items() if "acting" in t}
        if acting:
            lines.append(ACTING)
            lines += [ACTING_ROW.format(**c, env=env, algo=algo) for env, algos in acting.items() for algo, c in algos.items()]
    lines += rliable_table(result["runs"], {"final_return": "final return", "mean_eval_return": "mean eval return"})
    curves = learning_curves(result, "eval_returns", "evaluation return", figures, "dqs_mujoco_curves.png",
                             "DQS vs SAC learning curves")  # fmt: skip
    return "\n".join([*lines, "", curves])


SECTION = Section(("dqs_mujoco",), render)


if __name__ == "__main__":
    main(tyro.cli(MujocoArgs))
