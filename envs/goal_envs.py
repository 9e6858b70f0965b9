"""Goal-reaching tasks of the Merlin/WGCSL offline benchmark, rebuilt on current Gymnasium.

Every task follows the GoalEnv convention of gymnasium-robotics: a `Dict` observation with keys ``observation``,
``achieved_goal`` and ``desired_goal``; a sparse reward ``-(|achieved - desired| > threshold)`` that
`compute_reward` recomputes for any batch of goals (hindsight relabelling needs that); ``info["is_success"]`` (1.0 or
0.0) on every step; no termination (the 50-step limit comes from the registration in `envs/registry.py`).

* `PointReachEnv`: a point in the open square [-4, 4]^2.
* `PointRoomsEnv`: the same point in four rooms connected by one doorway per wall segment.
* `ReacherGoalEnv`: Gymnasium's MuJoCo Reacher-v5 arm with the fingertip as achieved goal and the target as goal.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces, utils
from gymnasium.envs.mujoco.reacher_v5 import ReacherEnv

GoalObs = dict[str, np.ndarray]


def sparse_goal_reward(achieved_goal: np.ndarray, desired_goal: np.ndarray, threshold: float) -> np.ndarray:
    """-1 where the goals of shape (..., goal_dim) are further apart than ``threshold``, else 0 (float32, shape (...))."""
    distance = np.linalg.norm(np.asarray(achieved_goal) - np.asarray(desired_goal), axis=-1)
    return -(distance > threshold).astype(np.float32)


class PointGoalEnv(gym.Env[GoalObs, np.ndarray]):
    """A point in the square [-bound, bound]^2 moved by s' = clip(s + a, -bound, bound) with a in [-1, 1]^2.

    Start and goal are uniform in the square; the position is both ``observation`` and ``achieved_goal``. Subclasses
    change `move` to add obstacles.

    :param bound: Half-width of the square arena
    :param distance_threshold: A goal is reached when the point is at most this far from it
    :param render_mode: None or "rgb_array" (a top-down picture of the arena)
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}
    render_size = 256  # pixels per side of the rgb_array picture

    def __init__(self, bound: float = 4.0, distance_threshold: float = 0.5, render_mode: str | None = None) -> None:
        self.bound = float(bound)
        self.distance_threshold = float(distance_threshold)
        self.render_mode = render_mode
        box = spaces.Box(-self.bound, self.bound, shape=(2,), dtype=np.float32)
        self.observation_space = spaces.Dict({"observation": box, "achieved_goal": box, "desired_goal": box})
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self._position = np.zeros(2)
        self._goal = np.zeros(2)

    def move(self, position: np.ndarray, action: np.ndarray) -> np.ndarray:
        """Next positions for positions and actions of shape (..., 2) (vectorised)."""
        return np.clip(position + np.clip(action, -1.0, 1.0), -self.bound, self.bound)

    def compute_reward(self, achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any = None) -> np.ndarray:
        """Sparse reward of goal batches (..., 2): 0 within ``distance_threshold``, else -1 (float32)."""
        return sparse_goal_reward(achieved_goal, desired_goal, self.distance_threshold)

    def _obs(self) -> GoalObs:
        position = self._position.astype(np.float32)
        return {"observation": position, "achieved_goal": position.copy(), "desired_goal": self._goal.astype(np.float32)}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[GoalObs, dict[str, Any]]:
        super().reset(seed=seed)
        self._position = self.np_random.uniform(-self.bound, self.bound, size=2)
        self._goal = self.np_random.uniform(-self.bound, self.bound, size=2)
        obs = self._obs()
        return obs, {"is_success": 1.0 + float(self.compute_reward(obs["achieved_goal"], obs["desired_goal"]))}

    def step(self, action: np.ndarray) -> tuple[GoalObs, float, bool, bool, dict[str, Any]]:
        self._position = self.move(self._position, np.asarray(action, dtype=np.float64))
        obs = self._obs()
        reward = float(self.compute_reward(obs["achieved_goal"], obs["desired_goal"]))
        return obs, reward, False, False, {"is_success": 1.0 + reward}

    def wall_mask(self, x: np.ndarray, y: np.ndarray, width: float) -> np.ndarray:
        """Which points (x, y) lie within ``width`` of a wall (none in the open arena); used for rendering."""
        return np.zeros(np.broadcast_shapes(x.shape, y.shape), dtype=bool)

    def render(self) -> np.ndarray | None:
        """Top-down picture: walls black, goal disk (success radius) red, point blue."""
        if self.render_mode != "rgb_array":
            return None
        pixels = np.linspace(-self.bound, self.bound, self.render_size)
        x, y = np.meshgrid(pixels, pixels[::-1])
        pixel = 2 * self.bound / self.render_size
        image = np.full((self.render_size, self.render_size, 3), 255, dtype=np.uint8)
        image[np.hypot(x - self._goal[0], y - self._goal[1]) <= self.distance_threshold] = (230, 90, 90)
        image[np.hypot(x - self._position[0], y - self._position[1]) <= 2 * pixel] = (40, 70, 220)
        image[self.wall_mask(x, y, pixel)] = 0
        return image


class PointReachEnv(PointGoalEnv):
    """PointReach (WGCSL's ``Point2DLargeEnv``): reach a uniform goal in the open arena [-4, 4]^2 within 0.5."""


class PointRoomsEnv(PointGoalEnv):
    """PointRooms (WGCSL's ``Point2D-FourRoom``): the arena [-4, 4]^2 split into four rooms by walls on x = 0 and y = 0.

    Each of the four wall segments (x = 0 with y > 0 or y < 0; y = 0 with x > 0 or x < 0) has one doorway of width
    ``2 * door_half_width`` centred at distance ``door_centre`` from the middle, i.e. the doorways span
    |y| in [1.5, 2.5] on x = 0 and |x| in [1.5, 2.5] on y = 0::

        +-------+-------+
        |       |       |
        |       :       |   ":" and "..": doorways
        |       |       |
        +--..---+---..--+
        |       |       |
        |       :       |
        |       |       |
        +-------+-------+

    Walls have no thickness. A move whose straight segment meets a wall line outside a doorway stops where it meets the
    first such wall and stays on its own side (at most ``wall_margin`` from the wall); the wall centre (0, 0) belongs to
    no doorway. Start and goal are uniform over the arena (the walls have measure zero), so most goals lie in
    another room.

    :param door_centre: Distance of each doorway's centre from the arena's centre
    :param door_half_width: Half the width of each doorway
    """

    wall_margin = 1e-6  # a point stopped by a wall stays this close to it, on its own side

    def __init__(self, door_centre: float = 2.0, door_half_width: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.door_centre = float(door_centre)
        self.door_half_width = float(door_half_width)

    def in_doorway(self, along: np.ndarray) -> np.ndarray:
        """Whether points on a wall line at coordinate ``along`` (along that line) are inside a doorway."""
        return np.abs(np.abs(along) - self.door_centre) <= self.door_half_width

    def move(self, position: np.ndarray, action: np.ndarray) -> np.ndarray:
        start = np.asarray(position, dtype=np.float64)
        end = super().move(start, action)
        delta = end - start
        crossing_t, blocked = [], []
        for axis in (0, 1):  # axis 0: the wall on x = 0; axis 1: the wall on y = 0
            s, e = start[..., axis], end[..., axis]
            crosses = (s != 0) & (s * e <= 0)  # the segment reaches the wall line at t in (0, 1]
            t = np.where(crosses, s / np.where(crosses, s - e, 1.0), 1.0)
            hits = crosses & ~self.in_doorway(start[..., 1 - axis] + t * delta[..., 1 - axis])
            # A point standing in a doorway and moving along the wall line may not slide out of the doorway.
            slides_out = (s == 0) & (e == 0) & ~self.in_doorway(end[..., 1 - axis])
            crossing_t.append(np.where(slides_out, 0.0, t))
            blocked.append(hits | slides_out)
        t_stop = np.minimum(*(np.where(b, t, 1.0) for b, t in zip(blocked, crossing_t)))
        stopped = start + t_stop[..., None] * delta
        for axis in (0, 1):
            s = start[..., axis]
            stop_here = blocked[axis] & (crossing_t[axis] <= t_stop)
            stopped[..., axis] = np.where(
                stop_here, np.copysign(np.minimum(np.abs(s), self.wall_margin), s), stopped[..., axis]
            )
        return stopped

    def wall_mask(self, x: np.ndarray, y: np.ndarray, width: float) -> np.ndarray:
        return ((np.abs(x) <= width) & ~self.in_doorway(y)) | ((np.abs(y) <= width) & ~self.in_doorway(x))


class ReacherGoalEnv(ReacherEnv):
    """Gymnasium's Reacher-v5 arm as a goal task (WGCSL's ``Reacher``): bring the fingertip within 0.05 of the target.

    ``observation`` = [cos q1, cos q2, sin q1, sin q2, dq1, dq2] (no target information), ``achieved_goal`` = fingertip
    (x, y), ``desired_goal`` = target (x, y), sampled by Reacher-v5 itself (uniform in the disk of radius 0.2). The
    physics, reset distribution and rendering are Reacher-v5's; only observation, reward and info change.

    :param distance_threshold: Success radius around the target
    :param kwargs: Passed to Gymnasium's ``ReacherEnv`` (e.g. ``render_mode``)
    """

    def __init__(self, distance_threshold: float = 0.05, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        utils.EzPickle.__init__(self, distance_threshold, **kwargs)
        self.distance_threshold = float(distance_threshold)
        goal = spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float64)
        self.observation_space = spaces.Dict(
            {
                "observation": spaces.Box(-np.inf, np.inf, shape=(6,), dtype=np.float64),
                "achieved_goal": goal,
                "desired_goal": goal,
            }
        )

    def compute_reward(self, achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any = None) -> np.ndarray:
        """Sparse reward of goal batches (..., 2): 0 within ``distance_threshold``, else -1 (float32)."""
        return sparse_goal_reward(achieved_goal, desired_goal, self.distance_threshold)

    def _get_obs(self) -> GoalObs:
        angles = self.data.qpos[:2]
        return {
            "observation": np.concatenate([np.cos(angles), np.sin(angles), self.data.qvel[:2]]),
            "achieved_goal": self.get_body_com("fingertip")[:2].copy(),
            "desired_goal": self.get_body_com("target")[:2].copy(),
        }

    def _get_reset_info(self) -> dict[str, float]:
        obs = self._get_obs()
        return {"is_success": 1.0 + float(self.compute_reward(obs["achieved_goal"], obs["desired_goal"]))}

    def step(self, action: np.ndarray) -> tuple[GoalObs, float, bool, bool, dict[str, Any]]:
        self.do_simulation(action, self.frame_skip)
        obs = self._get_obs()
        reward = float(self.compute_reward(obs["achieved_goal"], obs["desired_goal"]))
        if self.render_mode == "human":
            self.render()
        return obs, reward, False, False, {"is_success": 1.0 + reward}
