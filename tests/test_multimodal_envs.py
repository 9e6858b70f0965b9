"""GMMNav and MultiGoal: dynamics, rewards, goal reporting, registration, and the MMD metric."""

import math

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.env_checker import check_env

from envs import make_env, resolve_env_id
from envs.multimodal import GMMNavEnv, MultiGoalEnv, gmm_mmd
from samplers.energies import GMM40Energy


@pytest.mark.parametrize("env_class", [GMMNavEnv, MultiGoalEnv])
def test_passes_sb3_env_checker(env_class):
    check_env(env_class(), warn=True)


def test_short_names_make_registered_envs():
    assert resolve_env_id("GMMNav") == "GMMNav-v0" and resolve_env_id("MultiGoal") == "MultiGoal-v0"
    assert isinstance(make_env("GMMNav").unwrapped, GMMNavEnv)
    assert make_env("MultiGoal").spec.max_episode_steps == 30


def test_gmm_nav_steps_have_unit_length_and_stay_in_the_box():
    env = GMMNavEnv()
    obs, _ = env.reset(seed=0)
    for action in ([0.3, -0.1], [1.0, 1.0], [-0.01, 0.0]):
        next_obs, *_ = env.step(np.array(action, dtype=np.float32))
        assert np.linalg.norm(next_obs - obs) == pytest.approx(1.0, abs=1e-5)
        obs = next_obs
    env._state = np.array([49.7, -49.9])
    obs, *_ = env.step(np.array([1.0, -1.0], dtype=np.float32))
    np.testing.assert_allclose(obs, [50.0, -50.0])


def test_gmm_nav_reward_is_the_mixture_log_density_and_episode_lasts_100_steps():
    env = GMMNavEnv()
    env.reset(seed=1)
    means = GMM40Energy().means.double().numpy()
    np.testing.assert_allclose(env.means, means)
    for step in range(1, 101):
        _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        s = env._state
        density = np.mean([math.exp(-0.5 * np.sum((s - mu) ** 2)) / (2 * math.pi) for mu in means])
        assert reward == pytest.approx(math.log(density), rel=1e-9)
        assert terminated == (step == 100) and not truncated
    # At a mode the density is about 1 / (2 pi 40): the other modes are far away.
    assert env.log_density(means[0]) == pytest.approx(-math.log(2 * math.pi * 40), abs=1e-3)


def test_mmd_is_zero_for_identical_sets_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    target = GMMNavEnv().sample_target(200, rng)
    assert gmm_mmd(target, target) == pytest.approx(0.0, abs=1e-6)
    shifts = [gmm_mmd(target + shift, target) for shift in (0.5, 2.0, 8.0, 20.0)]
    assert 0 < shifts[0] < shifts[1] < shifts[2] < shifts[3]
    # Two independent draws of the same law are much closer than a far-shifted set.
    assert gmm_mmd(GMMNavEnv().sample_target(200, rng), target) < shifts[3] / 4
    assert gmm_mmd(np.zeros((5, 2)), np.zeros((5, 2))) == 0.0


def test_mmd_matches_a_direct_v_statistic():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(7, 2)), rng.normal(1.0, 1.0, size=(5, 2))
    z = np.concatenate([x, y])
    sq = [np.sum((a - b) ** 2) for a in z for b in z]
    h = math.sqrt(0.5 * np.median([d for d in sq if d > 0])) + 1e-7
    k = lambda a, b: math.exp(-np.sum((a - b) ** 2) / (2 * h * h))  # noqa: E731
    mmd2 = np.mean([k(a, b) for a in x for b in x]) + np.mean([k(a, b) for a in y for b in y])
    mmd2 -= 2 * np.mean([k(a, b) for a in x for b in y])
    assert gmm_mmd(x, y) == pytest.approx(math.sqrt(mmd2), rel=1e-9)


@pytest.mark.parametrize("goal", range(4))
def test_multigoal_reports_the_goal_reached(goal):
    env = gym.make("MultiGoal-v0")
    env.reset(seed=0)
    env.unwrapped._position = np.zeros(2)
    direction = MultiGoalEnv.goals[goal] / 5.0
    for _ in range(4):  # ends exactly 1.0 from the goal: not yet within the threshold
        _, _, terminated, _, info = env.step(direction.astype(np.float32))
        assert not terminated and info["goal_index"] == -1 and not info["is_success"]
    _, reward, terminated, truncated, info = env.step(direction.astype(np.float32))
    assert terminated and not truncated
    assert info["goal_index"] == goal and info["is_success"]
    assert reward == pytest.approx(-30.0 + 10.0)  # unit action cost, zero distance, goal bonus


def test_multigoal_time_limit_and_clipping():
    env = gym.make("MultiGoal-v0")
    obs, _ = env.reset(seed=0)
    assert np.linalg.norm(obs) < 1.0
    for _ in range(30):
        obs, reward, terminated, truncated, info = env.step(np.array([0.0, 0.0], dtype=np.float32))
        assert reward == pytest.approx(-np.min(np.linalg.norm(obs - MultiGoalEnv.goals, axis=1)), rel=1e-5)
        assert info["goal_index"] == -1 and not terminated
    assert truncated
    start, _ = env.reset(seed=0)
    obs, reward, *_ = env.step(np.array([3.0, 0.0], dtype=np.float32))  # clipped to a unit step costing 30
    np.testing.assert_allclose(obs, start + np.array([1.0, 0.0]), atol=1e-6)
    assert reward == pytest.approx(-30.0 - np.min(np.linalg.norm(obs - MultiGoalEnv.goals, axis=1)), rel=1e-5)
