"""The offline kind: a goal-conditioned algorithm learning from a Minari dataset (Merlin, GCSL, WGCSL); timesteps are
gradient steps, and evaluation episodes in the environment report success rate, final distance and the shifted
discounted return (every evaluation in the run folder's evaluations.npz). Evaluations step up to ``EVAL_ENVS`` env
copies in lockstep, seeded seed + 10000 + i during training and seed + 20000 + i for the final model, as the Merlin
benchmark (`benchmarks.merlin`) evaluates."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

from agents.common.callbacks import CheckpointCallback, StopOnFlag
from agents.merlin import GoalEvalCallback, evaluate_goal_policy
from envs.datasets import (
    GOAL_TASKS,
    build_command,
    build_dataset,
    dataset_id,
    default_episodes,
    open_dataset,
    parse_dataset_id,
)
from envs.registry import ENV_ALIASES
from runner.args import DEFAULT_EVAL_FREQ, TrainArgs
from runner.kinds.base import budget
from runner.kinds.sb3 import FINAL_EVAL_SEED, TRAIN_EVAL_SEED, GymRunner, make_model


def offline_dataset(dataset: str | None, env_id: str, build: bool) -> str:
    """The dataset id of an offline run: ``--hyperparams dataset ID``, else the task's expert dataset; built when
    missing and ``build`` is set, otherwise a missing dataset fails with the command that builds it."""
    if dataset is None:
        if env_id not in {ENV_ALIASES[name] for name in GOAL_TASKS}:
            raise ValueError(f"{env_id} has no default dataset: pass one with --hyperparams dataset MINARI_ID.")
        dataset = dataset_id(env_id, "expert")
    try:
        open_dataset(dataset)
    except FileNotFoundError:
        parsed = parse_dataset_id(dataset)
        if not build or parsed is None:
            raise
        task, kind = parsed
        print(f"Dataset {dataset} is missing: building it ({build_command(dataset)}).")
        build_dataset(task, kind, default_episodes(task), seed=0)
    return dataset


class Offline(GymRunner):
    """An offline goal-conditioned algorithm on a Minari dataset; timesteps are gradient steps, and evaluation
    episodes in the env report success rate, final distance and the shifted discounted return (agents/merlin)."""

    default_budget = 500_000

    def __init__(self, args: TrainArgs, algo: str, algo_class: type[BaseAlgorithm], seed: int) -> None:
        hyperparams = self._resolve(args, algo, algo_class, seed)
        hyperparams.kwargs["dataset"] = offline_dataset(hyperparams.kwargs.get("dataset"), self.target, args.build_dataset)
        self.total_timesteps = budget(args, hyperparams, self.default_budget)
        self.model = make_model(algo_class, args, hyperparams, make_vec_env(self.env_factory, n_envs=1, seed=seed), seed)
        self.config = {"env_id": self.target, "total_timesteps": self.total_timesteps, "device": str(self.model.device),
                       "hyperparams": hyperparams.as_dict()}  # fmt: skip
        self.evaluation: GoalEvalCallback | None = None

    def learn_kwargs(self, run_dir: Path, stop: threading.Event) -> dict[str, Any]:
        args = self.args
        eval_freq = DEFAULT_EVAL_FREQ if args.eval_freq is None else args.eval_freq
        callbacks: list[BaseCallback] = [StopOnFlag(stop)]
        if eval_freq > 0 and args.eval_episodes > 0:
            self.evaluation = GoalEvalCallback(
                self.eval_env(TRAIN_EVAL_SEED), eval_freq, args.eval_episodes, best_model_save_path=run_dir,
                log_path=run_dir, verbose=args.verbose,
            )  # fmt: skip
            callbacks.append(self.evaluation)
        if args.save_freq > 0:
            callbacks.append(CheckpointCallback(args.save_freq, run_dir / "checkpoints", verbose=args.verbose))
        return {"callback": callbacks}

    def final_results(self, run_dir: Path) -> dict[str, Any]:
        results: dict[str, Any] = {}
        if self.evaluation is not None:
            results |= {"best_eval": self.evaluation.best_metrics, "best_eval_timestep": self.evaluation.best_timestep}
        if self.args.eval_episodes > 0:
            results["final_eval"] = evaluate_goal_policy(self.model, self.eval_env(FINAL_EVAL_SEED), self.args.eval_episodes)
        return results
