import gymnasium as gym
import numpy as np
import pytest

from envs import ENV_ALIASES, make_env, resolve_env_id
from envs.registry import available_env_ids


def test_every_alias_points_to_a_registered_id():
    registered = set(available_env_ids())
    missing = {name: env_id for name, env_id in ENV_ALIASES.items() if env_id not in registered}
    assert not missing


def test_short_and_full_names_resolve():
    assert resolve_env_id("HalfCheetah") == "HalfCheetah-v5"
    assert resolve_env_id("HalfCheetah-v4") == "HalfCheetah-v4"
    assert resolve_env_id("FetchReach") == "FetchReach-v4"


def test_unknown_name_suggests_close_ones():
    with pytest.raises(ValueError, match=r"Unknown environment 'HalfCheeta'.*Did you mean: HalfCheetah"):
        resolve_env_id("HalfCheeta")


def test_fetch_reach_constructs_and_steps():
    env = make_env("FetchReach")
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"observation", "achieved_goal", "desired_goal"}
    # mujoco 3.11 places the gripper here; mujoco >= 3.12 breaks gymnasium-robotics 1.4.2 before this point.
    np.testing.assert_allclose(obs["observation"][:3], [1.342, 0.749, 0.535], atol=2e-3)
    obs, _, _, _, info = env.step(env.action_space.sample())
    assert "is_success" in info
    # HER relabels with a vectorised compute_reward reached through the wrappers.
    goals = np.stack([obs["achieved_goal"]] * 3)
    rewards = env.unwrapped.compute_reward(goals, goals + 1.0, [info] * 3)
    assert rewards.shape == (3,)


def test_point_maze_reports_is_success():
    env = make_env("PointMaze_UMaze")
    env.reset(seed=0)
    info = env.step(env.action_space.sample())[-1]
    assert info["is_success"] == info["success"]
    assert isinstance(env, gym.Wrapper)
