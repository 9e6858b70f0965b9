"""Training throughput (environment steps per second once learning has started), algorithms side by side.

The first algorithm is the baseline; every other one is reported as a ratio to it, measured in the same process
with interleaved repeats so machine noise hits all of them alike.

    python -m benchmarks.throughput --algos sac --env HalfCheetah --steps 3000 --repeats 3 --threads 1 2
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import tyro
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import Logger

from benchmarks.common import ResultsArgs, recorded_args, source_commit, write_results
from benchmarks.render import Result, Section, machine, named
from envs.registry import make_env, resolve_env_id
from runner.hyperparams import hyperparams_for
from runner.kinds.sb3 import evaluation_env
from runner.registry import get_algo


@dataclass
class ThroughputArgs(ResultsArgs):
    algos: list[str] = field(default_factory=lambda: ["sac"])
    """Algorithms to time; the first is the baseline for the ratios."""
    env: str = "HalfCheetah"
    """Environment (short name or id)."""
    steps: int = 3000
    """Timed environment steps per measurement (each with the algorithm's gradient updates)."""
    learning_starts: int = 1000
    """Random-action steps before timing starts (the replay buffer needs data)."""
    repeats: int = 3
    """Measurements per algorithm and thread count, interleaved across algorithms."""
    threads: list[int] = field(default_factory=lambda: [1, 2])
    """Torch thread counts to measure."""
    device: str = "auto"
    """Torch device."""
    name: str = "throughput"
    """Results file: <results-dir>/<name>.json."""


def warmed_up_model(algo: str, env_id: str, learning_starts: int, device: str, seed: int) -> BaseAlgorithm:
    """The algorithm with its default settings for the env, silent, after ``learning_starts`` random steps and one
    update (the replay buffer holds data and kernels are warm)."""
    spec = get_algo(algo)
    hyperparams = hyperparams_for(spec.name, env_id)
    kwargs = hyperparams.kwargs | {"learning_starts": learning_starts}
    env = make_vec_env(lambda: make_env(env_id), n_envs=1, seed=seed)
    model = spec.load_class()(hyperparams.policy, env, seed=seed, device=device, **kwargs)
    model.set_logger(Logger(folder=None, output_formats=[]))
    model.learn(learning_starts + 1)
    return model


def measure(algo: str, env_id: str, steps: int, learning_starts: int, device: str, seed: int) -> float:
    """Steps per second of ``learn`` after ``learning_starts`` random steps, with the algorithm's default settings."""
    model = warmed_up_model(algo, env_id, learning_starts, device, seed)
    start = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    return steps / (time.perf_counter() - start)


def predict_ms(model: BaseAlgorithm, observation: Any, deterministic: bool, calls: int) -> float:
    """Milliseconds per `predict` of one observation, over ``calls`` calls after one warm-up call."""
    model.predict(observation, deterministic=deterministic)
    start = time.perf_counter()
    for _ in range(calls):
        model.predict(observation, deterministic=deterministic)
    return 1e3 * (time.perf_counter() - start) / calls


def acting_cost(model: BaseAlgorithm, env_id: str, episodes: int = 10, calls: int = 200, seed: int = 0) -> dict[str, float]:
    """What acting costs: milliseconds per `predict` of one observation (deterministic and stochastic), and seconds
    for one evaluation of ``episodes`` deterministic episodes run side by side, as `train.py` evaluates."""
    observation = make_env(env_id).reset(seed=seed)[0]
    cost: dict[str, float] = {}
    for deterministic in (True, False):
        cost[f"predict_ms_{'deterministic' if deterministic else 'stochastic'}"] = predict_ms(
            model, observation, deterministic, calls
        )
    eval_env = evaluation_env(lambda: make_env(env_id), episodes, seed)
    start = time.perf_counter()
    evaluate_policy(model, eval_env, n_eval_episodes=episodes, deterministic=True)
    cost[f"evaluation_s_{episodes}_episodes"] = time.perf_counter() - start
    return cost


def measure_interleaved(
    algos: list[str], env_id: str, steps: int, learning_starts: int, repeats: int, device: str
) -> dict[str, list[float]]:
    """``repeats`` measurements per algorithm, interleaved (a, b, a, b, ...) so machine noise hits all alike."""
    samples: dict[str, list[float]] = {algo: [] for algo in algos}
    for repeat in range(repeats):
        for algo in algos:
            samples[algo].append(measure(algo, env_id, steps, learning_starts, device, seed=repeat))
    return samples


def main(args: ThroughputArgs) -> None:
    source_commit(args.allow_dirty)
    env_id = resolve_env_id(args.env)
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        samples = measure_interleaved(args.algos, env_id, args.steps, args.learning_starts, args.repeats, args.device)
        baseline = statistics.median(samples[args.algos[0]])
        for algo, values in samples.items():
            median = statistics.median(values)
            row = {"algo": algo, "threads": threads, "steps_per_s": values, "median_steps_per_s": median}
            rows.append(row | {"ratio_to_baseline": median / baseline})
    print(f"\nTraining throughput on {env_id} ({args.steps} steps after {args.learning_starts} random steps)")
    print(f"{'algo':<10}{'threads':>8}{'median steps/s':>16}{'ratio':>8}   runs")
    for row in rows:
        runs = ", ".join(f"{v:.1f}" for v in row["steps_per_s"])
        median, ratio = row["median_steps_per_s"], row["ratio_to_baseline"]
        print(f"{row['algo']:<10}{row['threads']:>8}{median:>16.1f}{ratio:>8.2f}   {runs}")
    payload = {"env_id": env_id, "baseline": args.algos[0], "config": recorded_args(args), "rows": rows}
    print(f"wrote {write_results(args.name, payload, args)}")


TEXT = """\
## Training throughput (SAC is the baseline of every speed ratio){suffix}

`python -m benchmarks.throughput --algos {algos} --env {config[env]} --steps {config[steps]} --repeats {config[repeats]} \
--threads {threads}{option}`

Machine: {machine}. Environment steps per second including one gradient step per env step (each algorithm's \
defaults), timed over {config[steps]} steps after {config[learning_starts]} random steps; repeats interleaved across \
algorithms; ratio = median / median of the first algorithm. Absolute rates need an otherwise idle machine (the 2-thread \
rows suffer most from other load); the ratio survives load better.

| algo | torch threads | median env steps/s | ratio to baseline | runs |
|---|---|---|---|---|"""
ROW = "| {algo} | {threads} | {median_steps_per_s:.1f} | {ratio_to_baseline:.2f} | {runs} |"


def render(result: Result, figures: Path) -> str:
    """The throughput table of a results file of this benchmark."""
    config = result["config"]
    suffix, option = named(result, "throughput")
    text = TEXT.format(suffix=suffix, option=option, config=config, algos=" ".join(config["algos"]),
                       threads=" ".join(map(str, config["threads"])), machine=machine(result))  # fmt: skip
    rows = [ROW.format(**row, runs=", ".join(f"{v:.1f}" for v in row["steps_per_s"])) for row in result["rows"]]
    return "\n".join([text, *rows])


SECTION = Section(("throughput", "throughput_proposal", "throughput_crossq"), render)


if __name__ == "__main__":
    main(tyro.cli(ThroughputArgs))
