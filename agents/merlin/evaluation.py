"""Evaluation of goal-conditioned policies with the Merlin metrics (``eval_policy`` and ``discounted_return`` of the
reference code, vineetjain96/merlin), and its SB3 callback, which writes ``evaluations.npz`` as SB3's ``EvalCallback``.

Per episode: success = the final step's ``info["is_success"]``; final distance = |achieved_goal - desired_goal| at
the end; discounted return with the +1 shift G = sum_t gamma^t (r_t + 1) (sparse -1/0 rewards become 0/1); and the
undiscounted shifted return sum_t (r_t + 1).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from core.io import atomic_save, atomic_write

#: Each metric and the per-episode values it averages (their names in evaluations.npz).
EPISODE_VALUES: dict[str, str] = {
    "success_rate": "successes",
    "final_distance": "final_distances",
    "discounted_return": "discounted_returns",
    "undiscounted_return": "undiscounted_returns",
}
METRICS = tuple(EPISODE_VALUES)


class Predictor(Protocol):
    """Anything with SB3's ``predict``."""

    def predict(self, observation: Any, deterministic: bool = False) -> tuple[np.ndarray, Any]: ...


def goal_episodes(
    model: Predictor, env: gym.Env | VecEnv, n_episodes: int, gamma: float = 0.98, deterministic: bool = True
) -> dict[str, np.ndarray]:
    """Run ``n_episodes`` episodes (spread over the VecEnv's copies, as SB3's ``evaluate_policy``); per episode, the
    values of `EPISODE_VALUES`, the episode's return (sum of rewards, SB3's ``results``) and its length. A plain env is
    wrapped in a DummyVecEnv; episodes end when the env says so (its time limit)."""
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be at least 1, got {n_episodes}.")
    vec_env = env if isinstance(env, VecEnv) else DummyVecEnv([lambda: env])
    n_envs = vec_env.num_envs
    targets = np.array([(n_episodes + k) // n_envs for k in range(n_envs)])
    counts = np.zeros(n_envs, dtype=int)
    discounted, undiscounted, returns = np.zeros(n_envs), np.zeros(n_envs), np.zeros(n_envs)
    steps = np.zeros(n_envs, dtype=int)
    results: dict[str, list[float]] = {key: [] for key in [*EPISODE_VALUES.values(), "returns", "lengths"]}
    obs = vec_env.reset()
    while (counts < targets).any():
        actions, _ = model.predict(obs, deterministic=deterministic)
        obs, rewards, dones, infos = vec_env.step(actions)
        shifted = np.asarray(rewards, dtype=np.float64) + 1.0
        discounted += gamma**steps * shifted
        undiscounted += shifted
        returns += rewards
        steps += 1
        for k in np.flatnonzero(dones):
            if counts[k] < targets[k]:
                final = infos[k]["terminal_observation"]  # the VecEnv has already reset obs[k]
                distance = np.linalg.norm(np.asarray(final["achieved_goal"]) - np.asarray(final["desired_goal"]))
                results["successes"].append(float(infos[k].get("is_success", 0.0)))
                results["final_distances"].append(float(distance))
                results["discounted_returns"].append(float(discounted[k]))
                results["undiscounted_returns"].append(float(undiscounted[k]))
                results["returns"].append(float(returns[k]))
                results["lengths"].append(int(steps[k]))
                counts[k] += 1
            discounted[k] = undiscounted[k] = returns[k] = steps[k] = 0
    return {key: np.array(values) for key, values in results.items()}


def mean_metrics(episodes: Mapping[str, np.ndarray]) -> dict[str, float]:
    """The metrics (`METRICS`) of one evaluation: the means of its per-episode values."""
    return {metric: float(np.mean(episodes[key])) for metric, key in EPISODE_VALUES.items()}


def evaluate_goal_policy(
    model: Predictor, env: gym.Env | VecEnv, n_episodes: int, gamma: float = 0.98, deterministic: bool = True
) -> dict[str, float]:
    """The metrics of ``n_episodes`` episodes (`goal_episodes`)."""
    return mean_metrics(goal_episodes(model, env, n_episodes, gamma, deterministic))


class GoalEvalCallback(BaseCallback):
    """Evaluate every ``eval_freq`` gradient steps, log ``eval/*``, keep the best checkpoint and the final metrics, and
    write every evaluation so far to ``evaluations.npz`` (as SB3's ``EvalCallback``: ``timesteps``, ``results`` (episode
    returns), ``ep_lengths``; plus the per-episode values of `EPISODE_VALUES` and ``seconds``, each evaluation's wall
    time, best-model saving included).

    The best checkpoint (highest discounted return, as the reference) is chosen on the evaluation episodes, i.e. it
    is model selection on the test set: report ``final_metrics`` (the last model) next to
    ``best_metrics``. At the end of training the final model is evaluated once more if the last step was not an
    evaluation step.

    :param eval_env: Goal env (or VecEnv) to evaluate on
    :param eval_freq: Evaluate every this many gradient steps
    :param n_eval_episodes: Episodes per evaluation (reference: 100)
    :param gamma: Discount of the shifted return
    :param best_model_save_path: Folder of ``best_model.zip`` (written atomically); None: do not save
    :param log_path: Folder of ``evaluations.npz`` (rewritten atomically after each evaluation); None: do not write
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
        log_path: str | Path | None = None,
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
        self.log_path = None if log_path is None else Path(log_path) / "evaluations.npz"
        self.evaluations: dict[str, list[Any]] = {}
        self.deterministic = deterministic
        self.best_metrics: dict[str, float] | None = None
        self.final_metrics: dict[str, float] | None = None
        self.best_timestep = -1
        self._last_eval_timestep = -1

    def _evaluate(self) -> None:
        start = time.perf_counter()
        episodes = goal_episodes(self.model, self.eval_env, self.n_eval_episodes, self.gamma, self.deterministic)
        metrics = mean_metrics(episodes)
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
        self._record(episodes, time.perf_counter() - start)

    def _record(self, episodes: dict[str, np.ndarray], seconds: float) -> None:
        """Append this evaluation to the history and rewrite ``evaluations.npz``."""
        entries = {"timesteps": self.num_timesteps, "results": episodes["returns"], "ep_lengths": episodes["lengths"],
                   **{key: episodes[key] for key in EPISODE_VALUES.values()}, "seconds": seconds}  # fmt: skip
        for key, value in entries.items():
            self.evaluations.setdefault(key, []).append(value)
        if self.log_path is not None:
            arrays = {key: np.array(values) for key, values in self.evaluations.items()}
            atomic_write(self.log_path, lambda path: np.savez(path, **arrays))

    def _on_step(self) -> bool:
        if self.n_calls % self.eval_freq == 0:
            self._evaluate()
        return True

    def _on_training_end(self) -> None:
        if self._last_eval_timestep != self.num_timesteps:
            self._evaluate()
