"""Evaluation of goal-conditioned policies with the Merlin metrics (``eval_policy`` and ``discounted_return`` of the
reference code, vineetjain96/merlin), and its SB3 callback.

Per episode: success = the final step's ``info["is_success"]``; final distance = |achieved_goal - desired_goal| at
the end; discounted return with the +1 shift G = sum_t gamma^t (r_t + 1) (sparse -1/0 rewards become 0/1); and the
undiscounted shifted return sum_t (r_t + 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from core.io import atomic_save

METRICS = ("success_rate", "final_distance", "discounted_return", "undiscounted_return")


class Predictor(Protocol):
    """Anything with SB3's ``predict``."""

    def predict(self, observation: Any, deterministic: bool = False) -> tuple[np.ndarray, Any]: ...


def evaluate_goal_policy(
    model: Predictor, env: gym.Env | VecEnv, n_episodes: int, gamma: float = 0.98, deterministic: bool = True
) -> dict[str, float]:
    """Run ``n_episodes`` episodes (spread over the VecEnv's copies, as SB3's ``evaluate_policy``) and average the
    metrics. A plain env is wrapped in a DummyVecEnv; episodes end when the env says so (its time limit)."""
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be at least 1, got {n_episodes}.")
    vec_env = env if isinstance(env, VecEnv) else DummyVecEnv([lambda: env])
    n_envs = vec_env.num_envs
    targets = np.array([(n_episodes + k) // n_envs for k in range(n_envs)])
    counts = np.zeros(n_envs, dtype=int)
    discounted, undiscounted, steps = np.zeros(n_envs), np.zeros(n_envs), np.zeros(n_envs, dtype=int)
    results: dict[str, list[float]] = {key: [] for key in METRICS}
    obs = vec_env.reset()
    while (counts < targets).any():
        actions, _ = model.predict(obs, deterministic=deterministic)
        obs, rewards, dones, infos = vec_env.step(actions)
        shifted = np.asarray(rewards, dtype=np.float64) + 1.0
        discounted += gamma**steps * shifted
        undiscounted += shifted
        steps += 1
        for k in np.flatnonzero(dones):
            if counts[k] < targets[k]:
                final = infos[k]["terminal_observation"]  # the VecEnv has already reset obs[k]
                distance = np.linalg.norm(np.asarray(final["achieved_goal"]) - np.asarray(final["desired_goal"]))
                results["success_rate"].append(float(infos[k].get("is_success", 0.0)))
                results["final_distance"].append(float(distance))
                results["discounted_return"].append(float(discounted[k]))
                results["undiscounted_return"].append(float(undiscounted[k]))
                counts[k] += 1
            discounted[k] = undiscounted[k] = steps[k] = 0
    return {key: float(np.mean(values)) for key, values in results.items()}


class GoalEvalCallback(BaseCallback):
    """Evaluate every ``eval_freq`` gradient steps, log ``eval/*``, keep the best checkpoint and the final metrics.

    The best checkpoint (highest discounted return, as the reference) is chosen on the evaluation episodes, i.e. it
    is model selection on the test set: report ``final_metrics`` (the last model) next to
    ``best_metrics``. At the end of training the final model is evaluated once more if the last step was not an
    evaluation step.

    :param eval_env: Goal env (or VecEnv) to evaluate on
    :param eval_freq: Evaluate every this many gradient steps
    :param n_eval_episodes: Episodes per evaluation (reference: 100)
    :param gamma: Discount of the shifted return
    :param best_model_save_path: Folder of ``best_model.zip`` (written atomically); None: do not save
    :param deterministic: Evaluate the mean action
    :param verbose: 1 prints every evaluation
    """

    def __init__(
        self,
        eval_env: gym.Env | VecEnv,
        eval_freq: int = 2000,
        n_eval_episodes: int = 100,
        gamma: float = 0.98,
        best_model_save_path: str | Path | None = None,
        deterministic: bool = True,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        if eval_freq < 1:
            raise ValueError(f"eval_freq must be at least 1, got {eval_freq}.")
        self.eval_env = eval_env
        self.eval_freq = eval_freq
        self.n_eval_episodes = n_eval_episodes
        self.gamma = gamma
        self.best_model_save_path = None if best_model_save_path is None else Path(best_model_save_path)
        self.deterministic = deterministic
        self.best_metrics: dict[str, float] | None = None
        self.final_metrics: dict[str, float] | None = None
        self.best_timestep = -1
        self._last_eval_timestep = -1

    def _evaluate(self) -> None:
        metrics = evaluate_goal_policy(self.model, self.eval_env, self.n_eval_episodes, self.gamma, self.deterministic)
        self._last_eval_timestep = self.num_timesteps
        self.final_metrics = metrics
        for key, value in metrics.items():
            self.logger.record(f"eval/{key}", value)
        if self.best_metrics is None or metrics["discounted_return"] > self.best_metrics["discounted_return"]:
            self.best_metrics, self.best_timestep = metrics, self.num_timesteps
            if self.best_model_save_path is not None:
                atomic_save(self.model, self.best_model_save_path / "best_model.zip")
        self.logger.record("eval/best_discounted_return", self.best_metrics["discounted_return"])
        self.logger.dump(self.num_timesteps)
        if self.verbose:
            print(f"Eval at {self.num_timesteps} steps: " + ", ".join(f"{k}={v:.3f}" for k, v in metrics.items()))

    def _on_step(self) -> bool:
        if self.n_calls % self.eval_freq == 0:
            self._evaluate()
        return True

    def _on_training_end(self) -> None:
        if self._last_eval_timestep != self.num_timesteps:
            self._evaluate()
