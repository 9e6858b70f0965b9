"""Scripted experts for the goal-reaching tasks, with the noise model of WGCSL's "noisy expert" datasets.

``action = expert(obs, rng)`` maps one goal observation (the env's ``Dict`` observation) to an action in [-1, 1]^d:
the scripted controller's action plus Gaussian noise, replaced by a uniform random action with probability
``epsilon``. `make_expert` picks the controller of a task by short name or id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.config import CheckedConfig
from envs.goal_envs import GoalObs
from envs.registry import resolve_env_id


@dataclass
class ExpertConfig(CheckedConfig):
    """Noise of a scripted expert; ``ExpertConfig(0.0, 0.0)`` is the clean controller."""

    noise_std: float = 0.1
    """Std of the Gaussian noise added to every action component (actions live in [-1, 1])."""
    epsilon: float = 0.1
    """Probability of replacing the action by a uniform random one."""

    def describe(self) -> str:
        return f"std={self.noise_std:g}, eps={self.epsilon:g}"


class Expert:
    """A scripted controller `clean_action` with the noise of ``config`` applied in `__call__`."""

    action_dim = 2  # size of the task's action vector

    def __init__(self, config: ExpertConfig | None = None) -> None:
        self.config = config if config is not None else ExpertConfig()

    def clean_action(self, obs: GoalObs) -> np.ndarray:
        """The noise-free action for one observation."""
        raise NotImplementedError

    def __call__(self, obs: GoalObs, rng: np.random.Generator) -> np.ndarray:
        """Noisy action in [-1, 1]^d; draws the same random numbers on every call so that datasets are reproducible."""
        explore = rng.random() < self.config.epsilon
        noise = self.config.noise_std * rng.standard_normal(self.action_dim)
        uniform = rng.uniform(-1.0, 1.0, size=self.action_dim)
        action = uniform if explore else self.clean_action(obs) + noise
        return np.clip(action, -1.0, 1.0).astype(np.float32)


class PointReachExpert(Expert):
    """Step straight to the goal (the whole way when it is within one step)."""

    def clean_action(self, obs: GoalObs) -> np.ndarray:
        return np.clip(obs["desired_goal"] - obs["achieved_goal"], -1.0, 1.0)


class PointRoomsExpert(Expert):
    """Shortest route through the ring of rooms of `PointRoomsEnv`, one doorway at a time.

    Rooms are the quadrants, numbered counter-clockwise from (+, +). The doorway between rooms i and i + 1 (mod 4) is
    at distance 2 from the centre on their shared wall. Outside the doorway's channel (the strip in front of it, of
    half-width ``channel``) the expert heads for the entry point ``approach`` in front of the doorway; inside it, for
    the exit point ``approach`` behind it, so the straight segment through the wall stays inside the doorway.
    """

    door_centre = 2.0  # distance of each doorway's centre from the arena's centre (PointRoomsEnv.door_centre)
    channel = 0.3  # half-width of the strip in front of a doorway (less than the doorway's half-width 0.5)
    approach = 0.4  # distance of the entry/exit points from the wall
    room_signs = ((1, 1), (-1, 1), (-1, -1), (1, -1))  # signs of (x, y) in rooms 0..3

    def room(self, position: np.ndarray) -> int:
        """Quadrant 0..3 counter-clockwise from (+, +); points on a wall (only in doorways) go to the >= 0 side."""
        return self.room_signs.index((1 if position[0] >= 0 else -1, 1 if position[1] >= 0 else -1))

    def door(self, room_a: int, room_b: int) -> tuple[np.ndarray, int]:
        """Centre of the doorway between adjacent rooms and the axis of the wall's normal (0: wall on x = 0)."""
        first = room_a if (room_b - room_a) % 4 == 1 else room_b  # the doorway between rooms k and k + 1
        centres = {0: ((0.0, 1.0), 0), 1: ((-1.0, 0.0), 1), 2: ((0.0, -1.0), 0), 3: ((1.0, 0.0), 1)}
        direction, axis = centres[first]
        return self.door_centre * np.array(direction), axis

    def waypoint(self, position: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """The next point to head for."""
        here, there = self.room(position), self.room(goal)
        if here == there:
            return goal
        if (there - here) % 4 == 2:  # opposite room: go round the side with the shorter outer legs
            routes = [(here + 1) % 4, (here - 1) % 4]
            lengths = [
                np.linalg.norm(position - self.door(here, r)[0]) + np.linalg.norm(goal - self.door(r, there)[0])
                for r in routes
            ]
            there = routes[int(np.argmin(lengths))]
        centre, axis = self.door(here, there)
        side = self.room_signs[here][axis]
        in_channel = abs(position[1 - axis] - centre[1 - axis]) < self.channel
        target = centre.copy()
        target[axis] = (-side if in_channel else side) * self.approach
        return target

    def clean_action(self, obs: GoalObs) -> np.ndarray:
        position = np.asarray(obs["achieved_goal"], dtype=np.float64)
        return np.clip(self.waypoint(position, np.asarray(obs["desired_goal"], dtype=np.float64)) - position, -1.0, 1.0)


class ReacherGoalExpert(Expert):
    """Joint-space PD control towards the damped least-squares solution of J(q) dq = fingertip error.

    The fingertip of Reacher is at l1 (cos q1, sin q1) + l2 (cos(q1 + q2), sin(q1 + q2)); the torques are
    ``gain_p dq - gain_d qdot`` with dq = J^T (J J^T + damping^2 I)^-1 (goal - fingertip).
    """

    lengths = (0.1, 0.11)  # shoulder-elbow and elbow-fingertip distances of Reacher-v5's arm
    gain_p = 0.5  # torque (in action units, gear 200) per radian of joint error
    gain_d = 0.1  # torque per rad/s of joint velocity
    damping = 0.01  # damped least squares regulariser (metres), keeps dq bounded near the stretched-arm singularity

    def clean_action(self, obs: GoalObs) -> np.ndarray:
        cos1, cos2, sin1, sin2, *velocity = np.asarray(obs["observation"], dtype=np.float64)
        q1, q12 = np.arctan2(sin1, cos1), np.arctan2(sin1 * cos2 + cos1 * sin2, cos1 * cos2 - sin1 * sin2)
        l1, l2 = self.lengths
        jacobian = np.array(
            [[-l1 * np.sin(q1) - l2 * np.sin(q12), -l2 * np.sin(q12)], [l1 * np.cos(q1) + l2 * np.cos(q12), l2 * np.cos(q12)]]
        )
        error = np.asarray(obs["desired_goal"], dtype=np.float64) - np.asarray(obs["achieved_goal"], dtype=np.float64)
        step = jacobian.T @ np.linalg.solve(jacobian @ jacobian.T + self.damping**2 * np.eye(2), error)
        return np.clip(self.gain_p * step - self.gain_d * np.asarray(velocity), -1.0, 1.0)


class FetchReachExpert(Expert):
    """Proportional control of the gripper position (``observation[:3]``) to the goal; the gripper is left alone."""

    action_dim = 4
    gain = 10.0  # action per metre of error (an action of 1 moves the gripper target by 5 cm)

    def clean_action(self, obs: GoalObs) -> np.ndarray:
        error = np.asarray(obs["desired_goal"]) - np.asarray(obs["observation"][:3])
        return np.clip(np.append(self.gain * error, 0.0), -1.0, 1.0)


class FetchPushExpert(Expert):
    """Scripted push: go above a point behind the block (opposite the goal), descend, push it to the goal.

    Stateless phases read from the observation (gripper ``obs[0:3]``, block ``obs[3:6]``): with d the unit vector from
    block to goal in the table plane, the pushing pose is ``behind`` metres behind the block along -d at block
    height. When the gripper is close to that pose it pushes along d (towards the point ``behind`` behind the goal),
    correcting the sideways offset; otherwise it climbs ``clearance`` above the block, moves over the pushing pose and
    descends. The fingers stay closed (FetchPush blocks them).
    """

    action_dim = 4
    gain = 10.0  # action per metre of position error
    behind = 0.06  # distance from the block centre to the pushing pose (block half-size 0.025, fingers ~0.02)
    clearance = 0.05  # height above the block at which the gripper travels to the pushing pose
    pose_tolerance = 0.01  # horizontal distance to the pushing pose at which the gripper descends
    push_tolerance = 0.03  # largest sideways offset and height difference (metres) at which pushing continues
    push_step = 0.1  # largest gripper displacement aimed at per step while pushing (metres)
    done = 0.025  # block-to-goal distance at which the expert holds still (success radius 0.05)

    def plan(self, obs: GoalObs) -> tuple[str, np.ndarray]:
        """The current phase ("hold", "push", "descend", "climb", "travel") and the gripper position it aims at."""
        observation = np.asarray(obs["observation"], dtype=np.float64)
        gripper, block = observation[0:3], observation[3:6]
        offset = np.asarray(obs["desired_goal"], dtype=np.float64)[:2] - block[:2]
        if np.linalg.norm(offset) < self.done:
            return "hold", gripper
        direction = offset / np.linalg.norm(offset)
        relative = gripper[:2] - block[:2]
        along = relative @ direction
        sideways = relative - along * direction
        low = abs(gripper[2] - block[2]) < self.push_tolerance
        if low and np.linalg.norm(sideways) < self.push_tolerance and -2 * self.behind < along < 0:
            push = min(float(np.linalg.norm(offset)), self.push_step) * direction
            return "push", np.append(gripper[:2] + push - sideways, block[2])
        pose = block[:2] - self.behind * direction
        if np.linalg.norm(gripper[:2] - pose) < self.pose_tolerance:
            return "descend", np.append(pose, block[2])
        if gripper[2] < block[2] + self.clearance - 0.01 and np.linalg.norm(relative) < 2 * self.behind:
            return "climb", np.append(gripper[:2], block[2] + self.clearance)
        return "travel", np.append(pose, block[2] + self.clearance)

    def clean_action(self, obs: GoalObs) -> np.ndarray:
        gripper = np.asarray(obs["observation"][:3], dtype=np.float64)
        return np.clip(np.append(self.gain * (self.plan(obs)[1] - gripper), -1.0), -1.0, 1.0)


#: Gymnasium id -> scripted expert of that task.
EXPERTS: dict[str, type[Expert]] = {
    "PointReach-v0": PointReachExpert,
    "PointRooms-v0": PointRoomsExpert,
    "ReacherGoal-v0": ReacherGoalExpert,
    "FetchReach-v4": FetchReachExpert,
    "FetchPush-v4": FetchPushExpert,
}


def make_expert(env: str, config: ExpertConfig | None = None) -> Expert:
    """The scripted expert of a task given by short name or id, with noise ``config`` (default: `ExpertConfig()`)."""
    env_id = resolve_env_id(env)
    if env_id not in EXPERTS:
        raise ValueError(f"No scripted expert for {env!r}; experts exist for {', '.join(EXPERTS)}.")
    return EXPERTS[env_id](config)
