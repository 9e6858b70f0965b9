"""Where the time of DQS training goes, next to SAC: torch.profiler over real `learn` calls.

Every algorithm's `collect_rollouts`, its policy's `_predict` (acting) and `train` (gradient updates) are labelled;
inside DQS's update, the critic target (soft value or next-action sampling) and the score target (Monte-Carlo
estimator) carry their own labels (agents/dqs/dqs.py). The profiler adds a small per-op overhead, so read the
shares, not the absolute times (throughput.py measures those without a profiler).

    python -m benchmarks.dqs_profile --env HalfCheetah --steps 1000 --threads 1
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import tyro

from benchmarks.common import ResultsArgs, recorded_args, source_commit, write_results
from benchmarks.throughput import warmed_up_model
from envs.registry import resolve_env_id

#: Labels reported, outermost first; "env step and rest" is rollout minus acting.
SECTIONS = ("rollout", "act", "train", "dqs/critic_target", "dqs/score_target")


@dataclass
class ProfileArgs(ResultsArgs):
    algos: list[str] = field(default_factory=lambda: ["sac", "dqs"])
    """Algorithms to profile with their default hyperparameters for the env."""
    env: str = "HalfCheetah"
    """Environment (short name or id)."""
    steps: int = 1000
    """Profiled environment steps (one gradient update each) after the warm-up."""
    learning_starts: int = 1000
    """Random-action steps before profiling (the replay buffer needs data)."""
    threads: int = 1
    """Torch CPU threads."""
    device: str = "auto"
    """Torch device."""
    seed: int = 0
    """Seed of the env and the model."""
    name: str = "dqs_profile"
    """Results file: <results-dir>/<name>.json."""


def _labelled(function: Callable[..., Any], label: str) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with torch.profiler.record_function(label):
            return function(*args, **kwargs)

    return wrapper


def profile(algo: str, env_id: str, steps: int, learning_starts: int, device: str, seed: int) -> dict[str, Any]:
    """Milliseconds per environment step spent in each section of ``learn`` (see `SECTIONS`)."""
    model = warmed_up_model(algo, env_id, learning_starts, device, seed)
    model.collect_rollouts = _labelled(model.collect_rollouts, "rollout")
    model.train = _labelled(model.train, "train")
    model.policy._predict = _labelled(model.policy._predict, "act")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        model.learn(steps, reset_num_timesteps=False)
    totals = {event.key: event.cpu_time_total / 1e3 for event in profiler.key_averages() if event.key in SECTIONS}
    per_step = {label: totals.get(label, 0.0) / steps for label in SECTIONS if label in totals}
    per_step["env step and rest"] = per_step["rollout"] - per_step["act"]
    return {"ms_per_env_step": per_step, "total_ms_per_env_step": per_step["rollout"] + per_step["train"]}


def main(args: ProfileArgs) -> None:
    source_commit(args.allow_dirty)
    torch.set_num_threads(args.threads)
    env_id = resolve_env_id(args.env)
    results = {algo: profile(algo, env_id, args.steps, args.learning_starts, args.device, args.seed) for algo in args.algos}
    print(f"{'algo':<6} {'section':<20} {'ms/step':>9} {'share':>7}")
    for algo, result in results.items():
        total = result["total_ms_per_env_step"]
        for section, ms in result["ms_per_env_step"].items():
            print(f"{algo:<6} {section:<20} {ms:>9.2f} {ms / total:>7.1%}")
        print(f"{algo:<6} {'total':<20} {total:>9.2f}")
    path = write_results(args.name, {"env": env_id, "config": recorded_args(args), "profiles": results}, args)
    print(f"Wrote {path}")


if __name__ == "__main__":
    main(tyro.cli(ProfileArgs))
