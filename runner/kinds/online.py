"""The online kind: an SB3-style algorithm stepping a Gymnasium environment (SAC, DQS, ...), with periodic evaluation,
checkpoints, a final evaluation, and a warning before a replay buffer larger than the free memory is allocated.
Evaluation envs are seeded seed + `TRAIN_EVAL_SEED` + i during training and seed + `FINAL_EVAL_SEED` + i at the end."""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from agents.common.callbacks import CheckpointCallback, ReportEvaluation, SaveBestCallback, StopOnFlag
from agents.common.replay import save_replay_buffer
from core.io import atomic_write
from runner.args import DEFAULT_EVAL_FREQ, TrainArgs
from runner.kinds.base import budget
from runner.kinds.sb3 import FINAL_EVAL_SEED, TRAIN_EVAL_SEED, GymRunner, make_model


def available_memory() -> int | None:
    """Bytes of memory free for new allocations (POSIX), None where the system does not say."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def replay_buffer_bytes(kwargs: dict[str, Any], observation_space: Any, action_space: Any) -> int:
    """Estimated size of an SB3 replay buffer: per transition the observation (twice, unless optimize_memory_usage),
    the action and three float32 scalars (reward, done, timeout)."""
    spaces_ = observation_space.spaces.values() if hasattr(observation_space, "spaces") else [observation_space]
    observation = sum(int(np.prod(space.shape)) * np.dtype(space.dtype).itemsize for space in spaces_)
    copies = 1 if kwargs.get("optimize_memory_usage") else 2
    per_transition = copies * observation + int(np.prod(action_space.shape)) * 4 + 3 * 4
    return int(kwargs.get("buffer_size", 1_000_000)) * per_transition


def warn_if_buffer_exceeds_memory(kwargs: dict[str, Any], observation_space: Any, action_space: Any, steps: int) -> None:
    """Warn, before anything is allocated, when the replay buffer would need more memory than is free."""
    needed, free = replay_buffer_bytes(kwargs, observation_space, action_space), available_memory()
    if free is not None and needed > free:
        warnings.warn(
            f"The replay buffer ({kwargs.get('buffer_size', 1_000_000)} transitions) needs about {needed / 1e9:.1f} GB, "
            f"more than the {free / 1e9:.1f} GB free: pass --hyperparams buffer_size N (the run has {steps} steps), "
            "or optimize_memory_usage True.",
            stacklevel=3,
        )


class Online(GymRunner):
    """An SB3-style algorithm on a Gym environment, with evaluation, checkpoints and a final evaluation."""

    default_budget = 100_000

    def __init__(self, args: TrainArgs, algo: str, algo_class: type[BaseAlgorithm], seed: int) -> None:
        hyperparams = self._resolve(args, algo, algo_class, seed)
        self.total_timesteps = budget(args, hyperparams, self.default_budget)
        self.n_envs = hyperparams.run.get("n_envs", 1) if args.n_envs is None else args.n_envs
        env = make_vec_env(self.env_factory, n_envs=self.n_envs, seed=seed)
        if issubclass(algo_class, OffPolicyAlgorithm):
            warn_if_buffer_exceeds_memory(hyperparams.kwargs, env.observation_space, env.action_space, self.total_timesteps)
        self.model = make_model(algo_class, args, hyperparams, env, seed)
        self.config = {"env_id": self.target, "total_timesteps": self.total_timesteps, "n_envs": self.n_envs,
                       "device": str(self.model.device), "hyperparams": hyperparams.as_dict()}  # fmt: skip

    def learn_kwargs(self, run_dir: Path, stop: threading.Event) -> dict[str, Any]:
        args = self.args
        learning_starts = getattr(self.model, "learning_starts", 0)
        if args.trained_agent is None and self.total_timesteps <= learning_starts:
            warnings.warn(
                f"{self.total_timesteps} steps do not exceed learning_starts={learning_starts}: the agent takes random "
                f"actions and never updates. Train longer or pass --hyperparams learning_starts N.",
                stacklevel=3,
            )
        eval_freq = DEFAULT_EVAL_FREQ if args.eval_freq is None else args.eval_freq
        callbacks: list[BaseCallback] = [StopOnFlag(stop)]
        if eval_freq > 0:
            evaluation = EvalCallback(
                self.eval_env(TRAIN_EVAL_SEED),
                callback_on_new_best=SaveBestCallback(run_dir / "best_model.zip"),
                callback_after_eval=None if self.on_evaluation is None else ReportEvaluation(self.on_evaluation),
                n_eval_episodes=args.eval_episodes,
                eval_freq=max(eval_freq // self.n_envs, 1),
                log_path=str(run_dir),
                verbose=args.verbose,
            )
            # SB3 counts calls from the start of this learn: a resumed model keeps evaluating on its run's step grid.
            evaluation.n_calls = self.model.num_timesteps // self.n_envs
            callbacks.append(evaluation)
        if args.save_freq > 0:
            callbacks.append(
                CheckpointCallback(args.save_freq, run_dir / "checkpoints", args.verbose, args.save_replay_buffer)
            )
        return {"callback": callbacks}

    def save(self, run_dir: Path) -> Path:
        """The model first (what matters: on a nearly full disk it may still fit), then the optional replay buffer."""
        model_path = super().save(run_dir)
        if self.args.save_replay_buffer and isinstance(self.model, OffPolicyAlgorithm):
            atomic_write(run_dir / "replay_buffer.pkl", lambda tmp: save_replay_buffer(self.model, tmp))
        return model_path

    def final_results(self, run_dir: Path) -> dict[str, Any]:
        if self.args.eval_episodes <= 0:
            return {}
        eval_env = self.eval_env(FINAL_EVAL_SEED)
        mean, std = evaluate_policy(self.model, eval_env, n_eval_episodes=self.args.eval_episodes, deterministic=True)
        return {"final_eval_mean_reward": float(mean), "final_eval_std_reward": float(std)}
