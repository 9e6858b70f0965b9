"""Hindsight relabelling with horizons (vineetjain96/merlin ``src/components/buffer.py``): (state, goal, horizon) ->
action samples from episodes.

A sample is an episode e and a pair of its steps i < j (0 <= i < j <= T_e, so that a_i exists and s_j may be the final
observation). With probability ``her_ratio`` the goal is the achieved goal at j and the horizon h = j - i; otherwise
the goal is the episode's desired goal (at step i) and h = T_e - i, the steps left to the end of the episode.

Pairs are drawn uniformly over the set of all (episode, i, j) triples, i.e. an episode is chosen with probability
proportional to its number of pairs. With equal-length episodes (the Merlin benchmark) this is exactly the reference:
a uniform episode, then a uniform upper-triangular pair. With unequal lengths it keeps every pair equally likely
instead of over-sampling the pairs of short episodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.goal_dataset import GoalDataset


@dataclass
class GoalBatch:
    """Relabelled samples (numpy arrays, row-aligned); the target is ``actions``."""

    observations: np.ndarray  # (B, obs_dim) s_i
    goals: np.ndarray  # (B, goal_dim) relabelled goal g
    horizons: np.ndarray  # (B,) int64 h: j - i (hindsight) or T - i (original goal)
    actions: np.ndarray  # (B, action_dim) a_i
    next_observations: np.ndarray  # (B, obs_dim) s_{i+1}
    next_achieved_goals: np.ndarray  # (B, goal_dim) achieved goal at i + 1
    original_goals: np.ndarray  # (B, goal_dim) the episode's desired goal at step i
    offsets: np.ndarray  # (B,) int64 Delta = h - 1: the goal sits Delta steps after s_{i+1} (WGCSL's gamma^Delta)
    hindsight: np.ndarray  # (B,) bool, whether g was relabelled to achieved_goal[j]
    episodes: np.ndarray  # (B,) int64 episode index e
    steps: np.ndarray  # (B,) int64 i
    goal_steps: np.ndarray  # (B,) int64 j (for hindsight samples the step whose achieved goal is g)

    def __len__(self) -> int:
        return len(self.actions)

    @staticmethod
    def concatenate(batches: list[GoalBatch]) -> GoalBatch:
        """One batch holding the rows of ``batches`` in order."""
        fields = GoalBatch.__dataclass_fields__
        return GoalBatch(**{name: np.concatenate([getattr(b, name) for b in batches]) for name in fields})


def triangular(n: np.ndarray) -> np.ndarray:
    """n (n + 1) / 2, elementwise (int64)."""
    n = np.asarray(n, dtype=np.int64)
    return n * (n + 1) // 2


def inverse_triangular(k: np.ndarray) -> np.ndarray:
    """The m >= 1 with triangular(m - 1) <= k < triangular(m), for integers k >= 0 (exact, vectorised)."""
    k = np.asarray(k, dtype=np.int64)
    m = np.floor((np.sqrt(8.0 * k + 1.0) - 1.0) / 2.0).astype(np.int64) + 1
    m -= triangular(m - 1) > k  # correct floating-point rounding in either direction
    m += triangular(m) <= k
    return m


def transition_rows(dataset: GoalDataset) -> np.ndarray:
    """Observation rows of every s_t that has an action (all rows but each episode's final one), in order."""
    keep = np.ones(len(dataset.observations), dtype=bool)
    keep[dataset.obs_index(np.arange(dataset.n_episodes), dataset.lengths)] = False
    return np.flatnonzero(keep)


class HindsightRelabeler:
    """Draws relabelled (s_i, g, h) -> a_i samples from a `GoalDataset`.

    The pairs (i, j) of an episode of length T are indexed by m = T - (j - i) + 1 in [1, T] (m is the number of
    pairs with that gap) and i in [0, m): an integer k uniform in [0, triangular(T)) gives m = inverse_triangular(k)
    and i = k - triangular(m - 1), so one integer draw per sample yields a uniform pair, with no loop.

    :param dataset: Episodes to sample from
    :param her_ratio: Probability of relabelling the goal to a later achieved goal of the same episode
    :param max_horizon: Only pairs with j - i <= max_horizon (for long episodes, e.g. D4RL-style datasets); None: all
    """

    def __init__(self, dataset: GoalDataset, her_ratio: float, max_horizon: int | None = None) -> None:
        if not 0.0 <= her_ratio <= 1.0:
            raise ValueError(f"her_ratio must be in [0, 1], got {her_ratio}.")
        if max_horizon is not None and max_horizon < 1:
            raise ValueError(f"max_horizon must be at least 1 (or None), got {max_horizon}.")
        self.dataset = dataset
        self.her_ratio = her_ratio
        lengths = dataset.lengths
        max_gap = lengths if max_horizon is None else np.minimum(lengths, max_horizon)
        # Pairs with gap d <= max_gap are those with m >= T - max_gap + 1, i.e. k >= triangular(T - max_gap).
        self._k_start = triangular(lengths - max_gap)
        pair_counts = triangular(lengths) - self._k_start
        self._pair_ends = np.cumsum(pair_counts)
        self._pair_starts = self._pair_ends - pair_counts

    @property
    def n_pairs(self) -> int:
        """Number of (episode, i, j) triples samples are drawn from."""
        return int(self._pair_ends[-1])

    def sample_pairs(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(episodes, i, j), each of shape (n,), uniform over all allowed pairs."""
        flat = rng.integers(0, self.n_pairs, size=n)
        episodes = np.searchsorted(self._pair_ends, flat, side="right")
        k = flat - self._pair_starts[episodes] + self._k_start[episodes]
        m = inverse_triangular(k)
        i = k - triangular(m - 1)
        j = i + self.dataset.lengths[episodes] - m + 1
        return episodes, i, j

    def sample(self, n: int, rng: np.random.Generator) -> GoalBatch:
        """``n`` relabelled samples."""
        data = self.dataset
        episodes, i, j = self.sample_pairs(n, rng)
        hindsight = rng.random(n) < self.her_ratio
        rows, goal_rows = data.obs_index(episodes, i), data.obs_index(episodes, j)
        original_goals = data.desired_goals[rows]
        goals = np.where(hindsight[:, None], data.achieved_goals[goal_rows], original_goals)
        horizons = np.where(hindsight, j - i, data.lengths[episodes] - i)
        return GoalBatch(
            observations=data.observations[rows],
            goals=goals,
            horizons=horizons,
            actions=data.actions[data.action_index(episodes, i)],
            next_observations=data.observations[rows + 1],
            next_achieved_goals=data.achieved_goals[rows + 1],
            original_goals=original_goals,
            offsets=horizons - 1,
            hindsight=hindsight,
            episodes=episodes,
            steps=i,
            goal_steps=j,
        )
