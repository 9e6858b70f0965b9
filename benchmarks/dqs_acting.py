"""What deterministic acting costs a trained DQS agent, and what cheaper acting does to its return, beside SAC's cost.

For every (``deterministic_steps``, ``n_action_candidates``) setting, the trained DQS model is loaded with those knobs
and measured the way `train.py` evaluates: milliseconds per deterministic `predict` of one observation (interleaved
with SB3 SAC's, so that machine noise hits both alike: the ratio is the figure) and the mean deterministic return over
``episodes`` evaluation episodes run side by side from fixed seeds (the same episodes for every setting). Results go
to ``benchmarks/results/<name>.json``.

    python -m benchmarks.dqs_acting --model runs/.../model.zip --steps 20 10 5 --candidates 10 4
"""

from __future__ import annotations

import itertools
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import tyro
from stable_baselines3 import SAC
from stable_baselines3.common.evaluation import evaluate_policy

from agents.dqs import DQS
from benchmarks.common import ResultsArgs, recorded_args, source_commit, write_results
from benchmarks.dqs_sharpness import run_of
from benchmarks.render import Result, Section, machine
from benchmarks.throughput import predict_ms
from envs.registry import make_env
from runner.kinds.sb3 import evaluation_env


@dataclass
class ActingArgs(ResultsArgs):
    model: Path
    """A trained DQS model.zip of a train.py run folder (its config.yaml names the environment)."""
    steps: list[int] = field(default_factory=lambda: [20, 10, 5])
    """Values of ``deterministic_steps`` (PF-ODE steps of deterministic predict)."""
    candidates: list[int] = field(default_factory=lambda: [10])
    """Values of ``n_action_candidates`` (argmax-Q over this many PF-ODE samples)."""
    episodes: int = 10
    """Deterministic evaluation episodes per setting."""
    calls: int = 300
    """Timed predict calls per measurement."""
    repeats: int = 3
    """Interleaved cost measurements per setting (the median is reported)."""
    seed: int = 0
    """Seed of the evaluation episodes."""
    name: str = "dqs_acting"
    """Results file: <results-dir>/<name>.json."""


def main(args: ActingArgs) -> None:
    if not args.model.is_file():
        raise SystemExit(f"no model file {args.model}: pass the model.zip of a DQS train.py run")
    if min([*args.steps, *args.candidates, args.episodes, args.calls, args.repeats]) < 1:
        raise SystemExit("--steps, --candidates, --episodes, --calls and --repeats must be positive")
    env_id, algo, _ = run_of(args.model)
    if algo != "dqs":
        raise SystemExit(f"{args.model} is a {algo} model: pass a DQS one")
    source_commit(args.allow_dirty)
    torch.set_num_threads(1)
    sac = SAC("MlpPolicy", make_env(env_id), device="cpu")  # acting cost only: its weights do not matter
    settings = list(itertools.product(args.steps, args.candidates))
    models = {s: DQS.load(args.model, device="cpu", deterministic_steps=s[0], n_action_candidates=s[1]) for s in settings}
    observation = make_env(env_id).reset(seed=args.seed)[0]
    cost: dict[object, list[float]] = {key: [] for key in [*settings, "sac"]}
    for _ in range(args.repeats):
        for key, model in [*models.items(), ("sac", sac)]:
            cost[key].append(predict_ms(model, observation, True, args.calls))
    sac_ms = statistics.median(cost["sac"])
    rows = []
    for (steps, candidates), model in models.items():
        eval_env = evaluation_env(lambda: make_env(env_id), args.episodes, args.seed)
        returns, _ = evaluate_policy(model, eval_env, args.episodes, deterministic=True, return_episode_rewards=True)
        ms = statistics.median(cost[(steps, candidates)])
        rows.append({"deterministic_steps": steps, "n_action_candidates": candidates, "predict_ms": cost[(steps, candidates)],
                     "median_predict_ms": ms, "ratio_to_sac": ms / sac_ms, "returns": [float(r) for r in returns],
                     "mean_return": float(np.mean(returns)), "std_return": float(np.std(returns))})  # fmt: skip
        print(f"steps {steps:3d} candidates {candidates:3d}: predict {ms:.2f} ms ({ms / sac_ms:.1f}x SAC), "
              f"return {np.mean(returns):.0f} ± {np.std(returns):.0f}", flush=True)  # fmt: skip
    path = write_results(args.name, {"config": recorded_args(args), "env_id": env_id, "sac_predict_ms": cost["sac"],
                                     "sac_median_predict_ms": sac_ms, "settings": rows}, args)  # fmt: skip
    print(f"SAC predict {sac_ms:.2f} ms; wrote {path}")


TEXT = """\
## What deterministic acting costs a trained DQS agent ({env_id})

`python -m benchmarks.dqs_acting --model {config[model]} --name {config[name]} --steps {steps} --candidates \
{candidates}` on {env_id}, {date}.

Machine: {machine}. Milliseconds per deterministic `predict` of one observation (median of {config[repeats]} \
interleaved measurements of {config[calls]} calls), as a ratio to SB3 SAC's ({sac_median_predict_ms:.2f} ms, measured \
beside it), and the model's mean deterministic return over the same {config[episodes]} evaluation episodes for every \
setting.

| PF-ODE steps | candidates | predict (ms) | × SAC | return |
|---|---|---|---|---|"""
ROW = (
    "| {deterministic_steps} | {n_action_candidates} | {median_predict_ms:.2f} | {ratio_to_sac:.1f} | "
    "{mean_return:.0f} ± {std_return:.0f} |"
)


def render(result: Result, figures: Path) -> str:
    """Predict time, ratio to SAC and return of every (PF-ODE steps, candidates) setting."""
    config = result["config"]
    text = TEXT.format(config=config, env_id=result["env_id"], date=result["date"][:10], machine=machine(result),
                       sac_median_predict_ms=result["sac_median_predict_ms"], steps=" ".join(map(str, config["steps"])),
                       candidates=" ".join(map(str, config["candidates"])))  # fmt: skip
    return "\n".join([text, *(ROW.format(**row) for row in result["settings"])])


SECTION = Section(("dqs_acting", "dqs_acting_pendulum"), render)


if __name__ == "__main__":
    main(tyro.cli(ActingArgs))
