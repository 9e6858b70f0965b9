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
from benchmarks.common import write_results
from benchmarks.dqs_sharpness import run_of
from benchmarks.throughput import predict_ms
from envs.registry import make_env
from runner.kinds.sb3 import evaluation_env


@dataclass
class ActingArgs:
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
    """Results file: benchmarks/results/<name>.json."""


def main(args: ActingArgs) -> None:
    if not args.model.is_file():
        raise SystemExit(f"no model file {args.model}: pass the model.zip of a DQS train.py run")
    if min([*args.steps, *args.candidates, args.episodes, args.calls, args.repeats]) < 1:
        raise SystemExit("--steps, --candidates, --episodes, --calls and --repeats must be positive")
    env_id, algo, _ = run_of(args.model)
    if algo != "dqs":
        raise SystemExit(f"{args.model} is a {algo} model: pass a DQS one")
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
    config = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    path = write_results(args.name, {"config": config, "env_id": env_id, "sac_predict_ms": cost["sac"],
                                     "sac_median_predict_ms": sac_ms, "settings": rows})  # fmt: skip
    print(f"SAC predict {sac_ms:.2f} ms; wrote {path}")


if __name__ == "__main__":
    main(tyro.cli(ActingArgs))
