"""Short environment names, goal-task wrappers and one `make_env` used by every entry point.

Gymnasium refuses unversioned aliases next to versioned ids, so short names (``HalfCheetah``) live in a table here
and are resolved to full ids (``HalfCheetah-v5``) before ``gym.make``.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import functools
import io
import warnings
from collections.abc import Callable
from typing import Any

import gymnasium as gym

from envs.wrappers import SuccessToIsSuccess

#: Env copies an evaluation steps in lockstep: one batched policy call per step serves them all (the distribution of
#: episodes is unchanged), which makes a diffusion policy's evaluation about as cheap as one episode.
EVAL_ENVS = 10

MUJOCO_TASKS = (
    "Ant", "HalfCheetah", "Hopper", "Humanoid", "HumanoidStandup", "InvertedDoublePendulum", "InvertedPendulum",
    "Pusher", "Reacher", "Swimmer", "Walker2d",
)  # fmt: skip
FETCH_TASKS = ("FetchReach", "FetchPush", "FetchSlide", "FetchPickAndPlace")
MAZE_LAYOUTS = ("Open", "UMaze", "Medium", "Large")

#: Short name -> registered Gymnasium id.
ENV_ALIASES: dict[str, str] = {
    **{name: f"{name}-v5" for name in MUJOCO_TASKS},
    "Pendulum": "Pendulum-v1",
    "MountainCarContinuous": "MountainCarContinuous-v0",
    **{name: f"{name}-v4" for name in FETCH_TASKS},
    **{f"{name}Dense": f"{name}Dense-v4" for name in FETCH_TASKS},
    **{f"PointMaze_{layout}": f"PointMaze_{layout}-v3" for layout in MAZE_LAYOUTS},
    **{f"PointMaze_{layout}Dense": f"PointMaze_{layout}Dense-v3" for layout in MAZE_LAYOUTS},
    **{f"AntMaze_{layout}": f"AntMaze_{layout}-v5" for layout in ("UMaze", "Medium", "Large")},
    "GMMNav": "GMMNav-v0",
    "MultiGoal": "MultiGoal-v0",
    "PointReach": "PointReach-v0",
    "PointRooms": "PointRooms-v0",
    "ReacherGoal": "ReacherGoal-v0",
    "ParticleReach": "ParticleReach-v0",
}

# The library's multimodal tasks (envs/multimodal.py); GMMNav terminates after 100 steps by itself.
gym.register("GMMNav-v0", entry_point="envs.multimodal:GMMNavEnv")
gym.register("MultiGoal-v0", entry_point="envs.multimodal:MultiGoalEnv", max_episode_steps=30)
# The goal-reaching tasks of the Merlin/WGCSL benchmark (envs/goal_envs.py): 50-step episodes, sparse -1/0 rewards.
gym.register("PointReach-v0", entry_point="envs.goal_envs:PointReachEnv", max_episode_steps=50)
gym.register("PointRooms-v0", entry_point="envs.goal_envs:PointRoomsEnv", max_episode_steps=50)
gym.register("ReacherGoal-v0", entry_point="envs.goal_envs:ReacherGoalEnv", max_episode_steps=50)
gym.register("ParticleReach-v0", entry_point="envs.particle_reach:ParticleReachEnv", max_episode_steps=50)

#: Wrappers applied by `make_env` to ids matching a glob pattern (after ``gym.make``).
ENV_WRAPPERS: dict[str, Callable[[gym.Env], gym.Env]] = {
    # The mazes report ``info["success"]``; SB3's Monitor/EvalCallback read ``info["is_success"]``.
    "PointMaze_*": SuccessToIsSuccess,
    "AntMaze_*": SuccessToIsSuccess,
}


@functools.cache
def _register_robotics() -> None:
    """Register gymnasium-robotics' tasks once (its import prints an Adroit notice to stderr, silenced here)."""
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        import gymnasium_robotics

        gym.register_envs(gymnasium_robotics)


def available_env_ids() -> list[str]:
    """Every id `make_env` accepts, short names first."""
    _register_robotics()
    return [*ENV_ALIASES, *gym.registry]


def resolve_env_id(name: str) -> str:
    """Map a short name or a registered id to the full Gymnasium id; suggest close names when unknown."""
    if name in ENV_ALIASES:
        return ENV_ALIASES[name]
    _register_robotics()
    if name in gym.registry:
        return name
    candidates = available_env_ids()
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ValueError(f"Unknown environment {name!r}.{hint} Run `python train.py --list` to see every environment.")


def make_env(name: str, **kwargs: Any) -> gym.Env:
    """Create an environment by short name or id, with the project's compatibility wrappers applied."""
    env_id = resolve_env_id(name)
    _register_robotics()
    env = gym.make(env_id, **kwargs)
    for pattern, wrapper in ENV_WRAPPERS.items():
        if fnmatch.fnmatchcase(env_id, pattern):
            env = wrapper(env)
    return env
