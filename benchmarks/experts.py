"""Final-step success of the goal tasks' data sources: clean scripted expert, noisy expert (the "expert" datasets) and
uniform random actions (the "random" datasets), rolled out exactly as the dataset builders do.

    python -m benchmarks.experts --episodes 500
"""

from __future__ import annotations

from dataclasses import dataclass, field

import tyro

from benchmarks.common import ResultsArgs, recorded_args, source_commit, write_results
from envs.datasets import GOAL_TASKS, collect_episodes
from envs.experts import ExpertConfig

#: Data source -> (dataset kind, expert noise).
SOURCES: dict[str, tuple[str, ExpertConfig | None]] = {
    "clean expert": ("expert", ExpertConfig(noise_std=0.0, epsilon=0.0)),
    "noisy expert": ("expert", ExpertConfig()),
    "random": ("random", None),
}


@dataclass
class ExpertsArgs(ResultsArgs):
    tasks: list[str] = field(default_factory=lambda: list(GOAL_TASKS))
    """Goal tasks to roll out."""
    episodes: int = 500
    """Episodes per task and source."""
    seed: int = 0
    """Seed of resets and actions (as `python -m envs.datasets build --seed`)."""


def success_rate(task: str, kind: str, episodes: int, seed: int, expert: ExpertConfig | None) -> float:
    """Share of episodes whose last step reports ``is_success``."""
    buffers = collect_episodes(task, kind, episodes, seed, expert)
    return sum(float(buffer.infos["is_success"][-1]) for buffer in buffers) / episodes


def main(args: ExpertsArgs) -> None:
    source_commit(args.allow_dirty)
    rates = {
        task: {name: success_rate(task, kind, args.episodes, args.seed, expert) for name, (kind, expert) in SOURCES.items()}
        for task in args.tasks
    }
    print(f"{'task':<12}" + "".join(f"{name:>14}" for name in SOURCES))
    for task, row in rates.items():
        print(f"{task:<12}" + "".join(f"{rate:>14.3f}" for rate in row.values()))
    payload = {"config": recorded_args(args), "noisy_expert": vars(ExpertConfig()), "success_rate": rates}
    path = write_results("experts", payload, args)
    print(f"Wrote {path}")


if __name__ == "__main__":
    main(tyro.cli(ExpertsArgs))
