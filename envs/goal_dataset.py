"""Offline goal-conditioned episodes in memory: the one format Merlin, GCSL and WGCSL train on.

Episodes may differ in length. They are stored flattened: episode ``e`` owns observation rows
``obs_offsets[e] : obs_offsets[e] + lengths[e] + 1`` (its final observation included) and action rows
``action_offsets[e] : action_offsets[e] + lengths[e]``. Action ``t`` of an episode leads from observation ``t`` to
observation ``t + 1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class GoalDataset:
    """Flattened goal-conditioned episodes (float32 arrays) and where they came from."""

    observations: np.ndarray  # (S, obs_dim), S = sum(lengths + 1): every episode's T + 1 observations
    achieved_goals: np.ndarray  # (S, goal_dim), row-aligned with observations
    desired_goals: np.ndarray  # (S, goal_dim), row-aligned with observations (constant within an episode for our tasks)
    actions: np.ndarray  # (sum(lengths), action_dim), actions in the env's own units
    lengths: np.ndarray  # (E,) int64, number of actions of each episode (>= 1)
    dataset_id: str = ""  # Minari id, or "" for in-memory data
    env_id: str = ""  # Gymnasium id of the environment the data was collected in ("" if unknown)
    obs_offsets: np.ndarray = field(init=False)  # (E,) first observation row of each episode
    action_offsets: np.ndarray = field(init=False)  # (E,) first action row of each episode

    def __post_init__(self) -> None:
        self.lengths = np.asarray(self.lengths, dtype=np.int64)
        if self.lengths.ndim != 1 or len(self.lengths) == 0 or self.lengths.min() < 1:
            raise ValueError("lengths must be a non-empty 1-D array of episode lengths >= 1.")
        n_obs, n_actions = int((self.lengths + 1).sum()), int(self.lengths.sum())
        for name in ("observations", "achieved_goals", "desired_goals"):
            rows = len(getattr(self, name))
            if rows != n_obs:
                raise ValueError(f"{name} has {rows} rows; {len(self.lengths)} episodes of these lengths need {n_obs}.")
        if len(self.actions) != n_actions:
            raise ValueError(f"actions has {len(self.actions)} rows; the episode lengths need {n_actions}.")
        self.obs_offsets = np.concatenate([[0], np.cumsum(self.lengths + 1)[:-1]]).astype(np.int64)
        self.action_offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)

    @property
    def n_episodes(self) -> int:
        return len(self.lengths)

    @property
    def n_transitions(self) -> int:
        return int(self.lengths.sum())

    def obs_index(self, episode: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Observation rows of steps ``t`` (0 ... length) of ``episode`` (vectorised)."""
        return self.obs_offsets[episode] + t

    def action_index(self, episode: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Action rows of steps ``t`` (0 ... length - 1) of ``episode`` (vectorised)."""
        return self.action_offsets[episode] + t

    @classmethod
    def from_episodes(
        cls,
        observations: list[np.ndarray],
        achieved_goals: list[np.ndarray],
        desired_goals: list[np.ndarray],
        actions: list[np.ndarray],
        dataset_id: str = "",
        env_id: str = "",
    ) -> GoalDataset:
        """Build from per-episode arrays: observations/goals of shape (T_e + 1, dim), actions (T_e, dim)."""
        lengths = np.array([len(a) for a in actions], dtype=np.int64)

        def stack(arrays: list[np.ndarray]) -> np.ndarray:
            return np.concatenate(arrays).astype(np.float32)

        return cls(
            stack(observations), stack(achieved_goals), stack(desired_goals), stack(actions), lengths, dataset_id, env_id
        )
