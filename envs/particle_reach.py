"""ParticleReach: N points in the plane must cover N targets; a task whose optimal policy is symmetric.

The MDP is invariant under rotations and reflections of the whole scene about the origin and under permutations of
the particles (with their actions) and of the targets: every piece of it (arena, initial law, dynamics, reward,
success) is built to keep that symmetry exact, so that equivariant policies (agents/equivariant.py) can exploit it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from scipy.optimize import linear_sum_assignment


def pairwise_distances(particles: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Distances ‖p_i − t_j‖ as an (n_particles, n_targets) matrix."""
    return np.linalg.norm(particles[:, None, :] - targets[None, :, :], axis=-1)


def assignment_cost(particles: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """Minimum over one-to-one assignments of Σ_i ‖p_i − t_π(i)‖ (Hungarian), and π as target index per particle."""
    distances = pairwise_distances(particles, targets)
    rows, cols = linear_sum_assignment(distances)
    return float(distances[rows, cols].sum()), cols


def all_covered(particles: np.ndarray, targets: np.ndarray, radius: float) -> bool:
    """Whether some one-to-one assignment puts every target within ``radius`` of its own particle.

    Decided as a bottleneck assignment (minimum number of pairs farther than ``radius``), so the answer does not
    depend on how ties of the min-cost assignment are broken and stays exactly permutation-invariant.
    """
    too_far = pairwise_distances(particles, targets) >= radius
    rows, cols = linear_sum_assignment(too_far)
    return not too_far[rows, cols].any()


class ParticleReachEnv(gym.Env[np.ndarray, np.ndarray]):
    """N particles in a disk arena of radius R move to cover N targets.

    Observation (float32, shape (4N,)): ``concat(particles.reshape(-1), targets.reshape(-1))``, i.e. the (N, 2)
    particle positions row by row in particle order ``[x_0, y_0, x_1, y_1, ...]``, then the (N, 2) target positions
    in the same layout (``equivariant.scene.SetLayout((N, N))`` parses it).

    Action (shape (2N,), in [-1, 1]): row i of ``action.reshape(N, 2)`` moves particle i by
    ``max_step * a_i / max(1, ‖a_i‖)``. The norm clip (rather than a per-coordinate clip) commutes with rotations.
    A particle leaving the arena is projected radially back onto its boundary circle.

    Reward: ``−C + success_bonus · success`` with C = min over one-to-one assignments π of Σ_i ‖p_i − t_π(i)‖.
    The Hungarian cost is dense, invariant under permuting particles or targets and under isometries of the scene,
    and C = 0 exactly when every particle sits on its own target. (The sum over targets of the distance to the
    nearest particle is invariant and dense too, but one particle between two close targets can beat it while
    another particle idles, so its optimum need not be a success.) Success (``info["is_success"]``): some
    assignment puts every target within ``success_radius`` of its own particle. Episodes do not terminate; the
    time limit (50 steps) comes from the registration.

    Reset: particles and targets i.i.d. uniform on the arena disk. That law is invariant under rotations and
    reflections, so every orientation of a scene is equally likely (the same law as rotating a random scene by a
    uniform random angle). ``reset(options={"particles": p, "targets": t})`` places a given scene, arrays of shape
    (N, 2) inside the arena.

    :param n_particles: Number of particles, and of targets
    :param max_step: Longest displacement of a particle per step
    :param arena_radius: Radius R of the disk arena, centred at the origin
    :param success_radius: Distance within which a target counts as covered
    :param success_bonus: Reward added on every step where all targets are covered
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(
        self,
        n_particles: int = 3,
        max_step: float = 0.1,
        arena_radius: float = 1.0,
        success_radius: float = 0.1,
        success_bonus: float = 1.0,
    ) -> None:
        if n_particles < 1:
            raise ValueError(f"n_particles must be at least 1, got {n_particles}")
        if min(max_step, arena_radius, success_radius) <= 0:
            raise ValueError(
                f"max_step, arena_radius and success_radius must be positive, got {max_step}, {arena_radius}, {success_radius}"
            )
        self.n_particles = n_particles
        self.max_step = float(max_step)
        self.arena_radius = float(arena_radius)
        self.success_radius = float(success_radius)
        self.success_bonus = float(success_bonus)
        self.observation_space = spaces.Box(-self.arena_radius, self.arena_radius, shape=(4 * n_particles,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2 * n_particles,), dtype=np.float32)
        self._particles = np.zeros((n_particles, 2))
        self._targets = np.zeros((n_particles, 2))

    def _sample_disk(self) -> np.ndarray:
        """N points uniform on the arena disk (radius ∝ sqrt(uniform) gives uniform area density)."""
        radius = self.arena_radius * np.sqrt(self.np_random.uniform(size=self.n_particles))
        angle = self.np_random.uniform(0.0, 2.0 * np.pi, size=self.n_particles)
        return radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)

    def _project_into_arena(self, positions: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(positions, axis=1, keepdims=True)
        return positions * np.minimum(1.0, self.arena_radius / np.maximum(norms, 1e-12))

    def _placed(self, options: dict[str, Any], key: str) -> np.ndarray:
        """A scene part given through ``reset(options=...)``, checked for shape and for lying in the arena."""
        positions = np.asarray(options[key], dtype=np.float64)
        if positions.shape != (self.n_particles, 2):
            raise ValueError(f"options[{key!r}] must have shape ({self.n_particles}, 2), got {positions.shape}")
        if np.linalg.norm(positions, axis=1).max() > self.arena_radius:
            raise ValueError(f"options[{key!r}] has points outside the arena disk of radius {self.arena_radius}")
        return positions

    def _observation(self) -> np.ndarray:
        return np.concatenate([self._particles.reshape(-1), self._targets.reshape(-1)]).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        options = options or {}
        self._particles = self._placed(options, "particles") if "particles" in options else self._sample_disk()
        self._targets = self._placed(options, "targets") if "targets" in options else self._sample_disk()
        return self._observation(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self.action_space.shape:
            raise ValueError(f"action must have shape {self.action_space.shape}, got {action.shape}")
        moves = action.reshape(self.n_particles, 2)
        moves = moves / np.maximum(1.0, np.linalg.norm(moves, axis=1, keepdims=True))
        self._particles = self._project_into_arena(self._particles + self.max_step * moves)
        cost, _ = assignment_cost(self._particles, self._targets)
        success = all_covered(self._particles, self._targets, self.success_radius)
        reward = -cost + (self.success_bonus if success else 0.0)
        return self._observation(), reward, False, False, {"is_success": success, "assignment_cost": cost}
