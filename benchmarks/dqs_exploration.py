"""The DQS paper's exploration claim on sparse-reward mazes: success rate vs environment steps, DQS against SAC.

Fixed start and goal cells (the goal at the far end of the corridor from the start), reward 1 only on
reaching the goal, which ends the episode (``continuing_task=False``), and no hindsight relabelling: an agent finds
the goal only by exploring. Both algorithms run their one default configuration (``MultiInputPolicy`` on the
goal-dict observation, no HER); the trials, records, resume and summary are those of `benchmarks.dqs_mujoco`
(a grid of the sweep engine), one budget per maze.

    python -m benchmarks.dqs_exploration                       # CPU: UMaze 30k and Medium 60k steps x 3 seeds
    python -m benchmarks.dqs_exploration --profile gpu --device cuda
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tyro

from benchmarks.common import run_grid
from benchmarks.dqs_mujoco import (
    RLGridArgs,
    RLProfile,
    learning_curves,
    mujoco_grid,
    print_summary,
    ran_other_defaults,
    run_trials_of,
    steps_of,
)
from benchmarks.render import Result, Section, machine, rliable_table

#: Fixed-goal layouts ("r" start cell, "g" goal cell; 1 = wall): gymnasium-robotics' UMaze and Medium maps.
MAZE_MAPS: dict[str, list[list[int | str]]] = {
    "PointMaze_UMaze": [[1, 1, 1, 1, 1], [1, "r", 0, 0, 1], [1, 1, 1, 0, 1], [1, "g", 0, 0, 1], [1, 1, 1, 1, 1]],
    "PointMaze_Medium": [
        [1, 1, 1, 1, 1, 1, 1, 1],
        [1, "r", 0, 1, 1, 0, 0, 1],
        [1, 0, 0, 1, 0, 0, 0, 1],
        [1, 1, 0, 0, 0, 1, 1, 1],
        [1, 0, 0, 1, 0, 0, 0, 1],
        [1, 0, 1, 0, 0, 1, 0, 1],
        [1, 0, 0, 0, 1, 0, "g", 1],
        [1, 1, 1, 1, 1, 1, 1, 1],
    ],
}
#: Steps per profile, times STEP_FACTOR per maze: the Medium maze's path from start to goal is 9 cells, the UMaze's 6.
PROFILES: dict[str, RLProfile] = {
    "cpu": RLProfile(steps=30_000, eval_freq=2_500),
    "gpu": RLProfile(steps=300_000, eval_freq=10_000),
}
STEP_FACTOR: dict[str, int] = {"PointMaze_UMaze": 1, "PointMaze_Medium": 2}


@dataclass
class ExplorationArgs(RLGridArgs):
    envs: list[str] = field(default_factory=lambda: list(MAZE_MAPS))
    """Mazes (keys of MAZE_MAPS)."""
    work_dir: Path = Path("runs/benchmarks/dqs_exploration")
    """Where the training runs are written."""
    name: str = "dqs_exploration"
    """Results file: <results-dir>/<name>.json."""


def maze_overrides(env: str) -> dict[str, str]:
    """The `train.py --hyperparams` of both algorithms on one maze: fixed start and goal, episodes end at the goal,
    the goal-dict observation without HER."""
    env_kwargs = {"maze_map": MAZE_MAPS[env], "continuing_task": False}
    return {"env_kwargs": repr(env_kwargs), "policy": "MultiInputPolicy", "replay_buffer_class": "None",
            "replay_buffer_kwargs": "None"}  # fmt: skip


def run(args: ExplorationArgs) -> None:
    unknown = sorted(set(args.envs) - set(MAZE_MAPS))
    if unknown:
        raise SystemExit(f"error: unknown maze {', '.join(unknown)}; choose from {', '.join(MAZE_MAPS)}")
    profile = PROFILES[args.profile]
    steps, eval_freq = args.steps or profile.steps, args.eval_freq or profile.eval_freq
    settings = {"steps": steps, "eval_freq": eval_freq, "eval_episodes": args.eval_episodes, "step_factor": STEP_FACTOR}
    trials = run_trials_of(args, lambda env: steps * STEP_FACTOR[env], eval_freq, maze_overrides)
    print_summary(run_grid(mujoco_grid(args, settings, trials), args, stale=ran_other_defaults))


TEXT = """\
## DQS vs SAC: exploration on sparse-reward mazes

`python -m benchmarks.dqs_exploration --profile {profile}` (resumable; runs are added as they finish).

Machine: {machine}. Fixed start and goal cells, reward 1 only at the goal (which ends the episode), no HER; success \
rate of {config[eval_episodes]} deterministic evaluation episodes, mean over seeds of the final evaluation and of the \
mean over all evaluations.

| maze | algo | seeds | steps | final success | mean success over evaluations |
|---|---|---|---|---|---|"""
ROW = "| {env} | {algo} | {seeds} | {steps} | {final_success_mean:.2f} | {mean_success_mean:.2f} |"


def render(result: Result, figures: Path) -> str:
    """Final and mean success rates per maze and algorithm, rliable intervals and the success curves."""
    lines = [TEXT.format(profile=result["profile"], config=result["config"], machine=machine(result))]
    lines += [ROW.format(**s, env=env, algo=algo, steps=steps_of(result, env, algo))
              for env, algos in result["summary"].items() for algo, s in algos.items()]  # fmt: skip
    # the same scores as the table: the last and the mean of the evaluations' success rates (a run's final_return
    # comes from train.py's separate final evaluation)
    successes = [{**run, "final_success": run["eval_success_rates"][-1], "mean_success": float(np.mean(
        run["eval_success_rates"]))} for run in result["runs"]]  # fmt: skip
    lines += rliable_table(successes, {"final_success": "final success", "mean_success": "mean success"})
    curves = learning_curves(result, "eval_success_rates", "success rate", figures, "dqs_exploration_curves.png",
                             "DQS vs SAC success rates")  # fmt: skip
    return "\n".join([*lines, "", curves])


SECTION = Section(("dqs_exploration",), render)


if __name__ == "__main__":
    run(tyro.cli(ExplorationArgs))
