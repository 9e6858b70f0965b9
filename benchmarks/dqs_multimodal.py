"""Multimodality test: which of MultiGoal's four goals do DQS and SAC reach, over 100 stochastic episodes each.

Both agents train for the same number of steps with the same seeds through `train.py`'s experiment (default
hyperparameters of `runner/hyperparams.py`), then run ``--episodes`` episodes with the stochastic policy (the policy
itself, not its mode). Target: DQS reaches at least 3 of the 4 goals, each in at least 10% of the episodes.

    python -m benchmarks.dqs_multimodal --steps 10000 --seeds 0 1 2
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tyro

from benchmarks.common import ResultsArgs, source_commit, write_results
from benchmarks.render import Result, Section, machine
from envs import make_env
from runner.args import TrainArgs
from runner.experiment import train
from runner.registry import get_algo

N_GOALS = 4


@dataclass
class MultimodalArgs(ResultsArgs):
    algos: list[str] = field(default_factory=lambda: ["dqs", "sac"])
    """Algorithms to compare."""
    steps: int = 10_000
    """Training steps per run."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Seeds (one run per algorithm and seed)."""
    episodes: int = 100
    """Stochastic evaluation episodes per run."""
    threads: int = 1
    """Torch threads."""
    work_dir: Path = Path("runs/benchmarks/dqs_multimodal")
    """Where the training runs are written."""
    name: str = "dqs_multimodal"
    """Results file: <results-dir>/<name>.json (runs already there are kept unless --force)."""
    force: bool = False
    """Re-run (algo, seed) pairs already in the results file."""


def goal_counts(model: Any, episodes: int, seed: int) -> list[int]:
    """Episodes ending at each goal (last entry: no goal reached), sampling actions from the stochastic policy."""
    env = make_env("MultiGoal")
    counts = [0] * (N_GOALS + 1)
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed * 100_000 + episode)
        done, info = False, {}
        while not done:
            action, _ = model.predict(obs, deterministic=False)
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        counts[info.get("goal_index", -1)] += 1  # index -1 (no goal) is the last slot
    return counts


#: The DQS paper's setting of this test: a fixed T = 10, hot enough to visit all four goals (docs/dqs.md, section 5).
RUN_OVERRIDES: dict[str, dict[str, str]] = {"dqs": {"temperature": "10.0"}}


def run(algo: str, seed: int, args: MultimodalArgs) -> dict[str, Any]:
    run_dir = train(
        TrainArgs(
            algo=algo,
            env="MultiGoal",
            total_timesteps=args.steps,
            seed=seed,
            eval_freq=0,
            eval_episodes=0,
            log_dir=args.work_dir,
            progress=False,
            verbose=0,
            num_threads=args.threads,
            hyperparams=RUN_OVERRIDES.get(algo, {}),
        )
    )
    model = get_algo(algo).load_class().load(run_dir / "model.zip", device="cpu")
    torch.manual_seed(seed)
    counts = goal_counts(model, args.episodes, seed)
    fractions = [c / args.episodes for c in counts[:N_GOALS]]
    wall_time = json.loads((run_dir / "results.json").read_text())["wall_time_s"]
    return {
        "algo": algo,
        "seed": seed,
        "goal_counts": counts[:N_GOALS],
        "no_goal": counts[N_GOALS],
        "goals_reached_10pct": sum(f >= 0.10 for f in fractions),
        "train_wall_time_s": wall_time,
        "run_dir": str(run_dir),
    }


def main(args: MultimodalArgs) -> None:
    source_commit(args.allow_dirty)
    path = args.results_path(args.name)
    runs = [] if args.force or not path.is_file() else json.loads(path.read_text())["runs"]
    done = {(r["algo"], r["seed"]) for r in runs if r["steps"] == args.steps}
    for seed in args.seeds:
        for algo in args.algos:
            if (algo, seed) in done:
                continue
            runs.append({**run(algo, seed, args), "steps": args.steps, "episodes": args.episodes})
            write_results(args.name, {"env_id": "MultiGoal-v0", "runs": runs}, args)
            print(f"{algo} seed {seed}: goals {runs[-1]['goal_counts']} none {runs[-1]['no_goal']}", flush=True)
    print(f"\n{'algo':<6}{'seed':>5}   goal counts (+x, -x, +y, -y)   none   goals >= 10%")
    for r in runs:
        print(f"{r['algo']:<6}{r['seed']:>5}   {r['goal_counts']!s:<28}{r['no_goal']:>6}{r['goals_reached_10pct']:>9}")
    for algo in args.algos:
        reached = [r["goals_reached_10pct"] for r in runs if r["algo"] == algo]
        print(f"{algo}: goals reached in >= 10% of episodes, mean over seeds {np.mean(reached):.2f}")
    print(f"wrote {path}")


TEXT = """\
## DQS vs SAC: multimodality on MultiGoal

`python -m benchmarks.dqs_multimodal --steps {steps} --seeds {seeds}`

Machine: {machine}. Episodes ending at each goal over {episodes} stochastic-policy episodes per run. Target: DQS \
reaches at least 3 of the 4 goals, each in at least 10% of episodes.

| algo | seed | +x | -x | +y | -y | no goal | goals in >= 10% of episodes | train time (s) |
|---|---|---|---|---|---|---|---|---|"""
ROW = "| {algo} | {seed} | {counts} | {no_goal} | {goals_reached_10pct} | {train_wall_time_s:.0f} |"


def render(result: Result, figures: Path) -> str:
    """The goal counts of every run."""
    runs = result["runs"]
    text = TEXT.format(steps=runs[0]["steps"], seeds=" ".join(str(s) for s in sorted({r["seed"] for r in runs})),
                       episodes=runs[0]["episodes"], machine=machine(result))  # fmt: skip
    rows = [
        ROW.format(**r, counts=" | ".join(map(str, r["goal_counts"])))
        for r in sorted(runs, key=lambda r: (r["algo"], r["seed"]))
    ]
    return "\n".join([text, *rows])


SECTION = Section(("dqs_multimodal",), render)


if __name__ == "__main__":
    main(tyro.cli(MultimodalArgs))
