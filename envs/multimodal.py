"""Small 2-D tasks whose optimal maximum-entropy policies are multimodal, and the MMD metric used to score them.

* `GMMNavEnv` ("GMM-v0" of DQS, vineetjain96/Diffusion_Q_Sampling ``src/envs/gmm_env.py``): unit-length steps in
  [-50, 50]^2 rewarded by log p(s') of a 40-mode mixture, so that with gamma = 0 the Boltzmann policy at T = 1 moves
  towards p.
* `MultiGoalEnv` (Haarnoja et al. 2017, soft Q-learning): a point mass with four equally good goals.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from samplers.energies import GMM40Energy


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    peak = x.max(axis=axis, keepdims=True)
    return np.log(np.exp(x - peak).sum(axis=axis)) + peak.squeeze(axis)


def gmm_mmd(states: np.ndarray, samples: np.ndarray) -> float:
    """MMD between two point sets as DQS's GMM evaluation: RBF kernel exp(-d^2 / (2 h^2)) on the pooled points,
    bandwidth h = sqrt(0.5 median of the positive squared distances) + 1e-7, V-statistic (diagonals included).

    Returns sqrt(max(MMD^2, 0)); 0 when every pooled point coincides.
    """
    x, y = np.asarray(states, dtype=np.float64), np.asarray(samples, dtype=np.float64)
    pooled = np.concatenate([x, y])
    sq_dist = ((pooled[:, None, :] - pooled[None, :, :]) ** 2).sum(-1)
    positive = sq_dist[sq_dist > 0]
    if positive.size == 0:
        return 0.0
    bandwidth = math.sqrt(0.5 * float(np.median(positive))) + 1e-7
    kernel = np.exp(-sq_dist / (2.0 * bandwidth**2))
    n = len(x)
    mmd2 = kernel[:n, :n].mean() + kernel[n:, n:].mean() - 2.0 * kernel[:n, n:].mean()
    return math.sqrt(max(float(mmd2), 0.0))


class GMMNavEnv(gym.Env[np.ndarray, np.ndarray]):
    """Navigate a 2-D point on [-bound, bound]^2 with unit-length steps; reward log p(s') of a GMM.

    p is the equal-weight, unit-std mixture over the 40 GMM-40 means (iDEM's means; DQS's table holds the same values
    rounded to 4 decimals). Step: s' = clip(s + a / (|a| + 1e-8), -bound, bound). Reset: uniform on the box. The
    episode terminates after ``max_steps`` steps (as the reference, which trains with mask 0: use gamma = 0).

    :param max_steps: Episode length
    :param bound: Half-width of the square state space
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, max_steps: int = 100, bound: float = 50.0) -> None:
        self.max_steps = max_steps
        self.bound = float(bound)
        self.means = GMM40Energy().means.double().numpy()
        self.observation_space = spaces.Box(-self.bound, self.bound, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self._state = np.zeros(2)
        self._steps = 0

    def log_density(self, states: np.ndarray) -> np.ndarray:
        """Exact log p of points of shape (..., 2)."""
        sq_dist = ((np.asarray(states, dtype=np.float64)[..., None, :] - self.means) ** 2).sum(-1)
        return _logsumexp(-0.5 * sq_dist, axis=-1) - math.log(2.0 * math.pi) - math.log(len(self.means))

    def sample_target(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` exact samples of p, shape (n, 2) (the reference set of the MMD evaluation)."""
        return self.means[rng.integers(len(self.means), size=n)] + rng.standard_normal((n, 2))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._state = self.np_random.uniform(-self.bound, self.bound, size=2)
        self._steps = 0
        return self._state.astype(np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = np.asarray(action, dtype=np.float64)
        self._state = np.clip(self._state + action / (np.linalg.norm(action) + 1e-8), -self.bound, self.bound)
        self._steps += 1
        reward = float(self.log_density(self._state))
        return self._state.astype(np.float32), reward, self._steps >= self.max_steps, False, {}


class MultiGoalEnv(gym.Env[np.ndarray, np.ndarray]):
    """Point mass at the origin with four goals at (±5, 0) and (0, ±5) (soft Q-learning's multi-goal task).

    s' = clip(s + a, -bound, bound) with a clipped to [-1, 1]^2; reward = -(action_cost_coeff |a|^2 +
    distance_cost_coeff min_g |s' - g|) plus ``goal_reward`` on reaching a goal (distance < ``goal_threshold``),
    which terminates the episode. ``info["goal_index"]`` is the goal reached (-1 if none) and ``info["is_success"]``
    whether one was. The time limit (30 steps) comes from the registration.

    :param goal_reward: Bonus for reaching a goal
    :param action_cost_coeff: Weight of the squared action norm
    :param distance_cost_coeff: Weight of the distance to the closest goal
    :param init_sigma: Std of the Gaussian initial position around the origin
    :param goal_threshold: Radius within which a goal counts as reached
    :param bound: Half-width of the square state space
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}
    goals = np.array([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0], [0.0, -5.0]])

    def __init__(
        self,
        goal_reward: float = 10.0,
        action_cost_coeff: float = 30.0,
        distance_cost_coeff: float = 1.0,
        init_sigma: float = 0.1,
        goal_threshold: float = 1.0,
        bound: float = 7.0,
    ) -> None:
        self.goal_reward = goal_reward
        self.action_cost_coeff = action_cost_coeff
        self.distance_cost_coeff = distance_cost_coeff
        self.init_sigma = init_sigma
        self.goal_threshold = goal_threshold
        self.bound = float(bound)
        self.observation_space = spaces.Box(-self.bound, self.bound, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self._position = np.zeros(2)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        start = self.init_sigma * self.np_random.standard_normal(2)
        self._position = np.clip(start, -self.bound, self.bound)
        return self._position.astype(np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        self._position = np.clip(self._position + action, -self.bound, self.bound)
        distances = np.linalg.norm(self._position - self.goals, axis=1)
        closest = int(distances.argmin())
        reached = bool(distances[closest] < self.goal_threshold)
        reward = -(self.action_cost_coeff * float(action @ action) + self.distance_cost_coeff * float(distances[closest]))
        reward += self.goal_reward if reached else 0.0
        info = {"goal_index": closest if reached else -1, "is_success": reached}
        return self._position.astype(np.float32), reward, reached, False, info
