"""Goal tasks (PointReach, PointRooms, ReacherGoal) and the scripted experts of every goal task."""

import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs import make_env, resolve_env_id
from envs.experts import ExpertConfig, make_expert
from envs.goal_envs import PointReachEnv, PointRoomsEnv, ReacherGoalEnv

NEW_TASKS = ["PointReach", "PointRooms", "ReacherGoal"]
CLEAN = ExpertConfig(noise_std=0.0, epsilon=0.0)


def final_success_rate(name: str, episodes: int, expert_config: ExpertConfig | None) -> float:
    """Final-step ``is_success`` averaged over episodes; ``expert_config=None`` plays uniform random actions."""
    env = make_env(name)
    expert = make_expert(name, expert_config) if expert_config is not None else None
    rng = np.random.default_rng(0)
    env.action_space.seed(0)
    successes = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=1000 + episode)
        truncated = False
        while not truncated:
            action = expert(obs, rng) if expert is not None else env.action_space.sample()
            obs, _, terminated, truncated, info = env.step(action)
            assert not terminated
        successes.append(info["is_success"])
    return float(np.mean(successes))


@pytest.mark.parametrize("name", NEW_TASKS)
def test_registered_with_50_step_episodes_and_pass_the_env_checker(name):
    env = make_env(name)
    assert resolve_env_id(name) == f"{name}-v0" and env.spec.max_episode_steps == 50
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*infinity")  # Reacher's velocities and positions are unbounded
        check_env(env.unwrapped, skip_render_check=name == "ReacherGoal")  # Reacher's check would open a window


@pytest.mark.parametrize("name", NEW_TASKS)
def test_compute_reward_on_a_batch_equals_the_step_rewards_and_success(name):
    env = make_env(name)
    expert = make_expert(name, ExpertConfig(noise_std=0.1, epsilon=0.1))
    rng = np.random.default_rng(1)
    achieved, desired, rewards, successes = [], [], [], []
    for episode in range(2):
        obs, _ = env.reset(seed=episode)
        for _ in range(50):
            obs, reward, _, _, info = env.step(expert(obs, rng))
            achieved.append(obs["achieved_goal"])
            desired.append(obs["desired_goal"])
            rewards.append(reward)
            successes.append(info["is_success"])
    batch = env.unwrapped.compute_reward(np.array(achieved), np.array(desired), [{}] * len(rewards))
    assert batch.dtype == np.float32 and batch.shape == (len(rewards),)
    np.testing.assert_array_equal(batch, rewards)
    np.testing.assert_array_equal(np.array(successes), 1.0 + batch)
    assert set(np.unique(batch)) == {-1.0, 0.0}  # both outcomes occur
    # Relabelling against a goal batch of shape (n, k, goal_dim) broadcasts too.
    grid = env.unwrapped.compute_reward(np.array(achieved)[:, None], np.array(desired)[None, :5], None)
    assert grid.shape == (len(rewards), 5)


@pytest.mark.parametrize("name", NEW_TASKS)
def test_reset_with_a_seed_is_reproducible(name):
    env = make_env(name)
    actions = np.random.default_rng(0).uniform(-1, 1, size=(5, 2)).astype(np.float32)
    runs = []
    for _ in range(2):
        obs, _ = env.reset(seed=42)
        runs.append([obs] + [env.step(a)[0] for a in actions])
    for first, second in zip(*runs):
        for key in first:
            np.testing.assert_array_equal(first[key], second[key])
    other, _ = env.reset(seed=43)
    assert not np.array_equal(other["desired_goal"], runs[0][0]["desired_goal"])


def test_point_reach_moves_by_the_clipped_action_inside_the_arena():
    env = PointReachEnv()
    env.reset(seed=0)
    env._position = np.array([3.5, 0.0])
    obs, *_ = env.step(np.array([1.0, -0.3], dtype=np.float32))
    np.testing.assert_allclose(obs["observation"], [4.0, -0.3], atol=1e-6)
    np.testing.assert_array_equal(obs["observation"], obs["achieved_goal"])


@pytest.mark.parametrize(
    ("start", "action", "crosses"),
    [
        ((-0.5, 3.0), (1.0, 0.0), False),  # x = 0 wall, above the upper doorway
        ((-0.5, 2.2), (1.0, 0.0), True),  # through the upper doorway (|y| in [1.5, 2.5])
        ((0.4, -1.0), (-1.0, -1.0), False),  # meets x = 0 at y = -1.4, just outside the lower doorway
        ((0.4, -1.6), (-1.0, -0.5), True),  # crosses x = 0 at y = -1.8: lower doorway
        ((3.2, 0.5), (0.0, -1.0), False),  # y = 0 wall right of the right doorway
        ((2.0, 0.5), (0.0, -1.0), True),  # through the right doorway (|x| in [1.5, 2.5])
        ((-0.5, -0.5), (1.0, 1.0), False),  # through the centre, which is wall
    ],
)
def test_point_rooms_walls_block_outside_doorways(start, action, crosses):
    env = PointRoomsEnv()
    env.reset(seed=0)
    env._position = np.array(start)
    obs, *_ = env.step(np.array(action, dtype=np.float32))
    end = obs["observation"]
    crossed = bool(np.any(np.sign(end) * np.sign(start) < 0))
    assert crossed == crosses
    if not crosses:  # stopped at the wall: moved up to it, not beyond
        assert np.min(np.abs(end)) <= 1e-5 or np.allclose(end, start)


def test_point_rooms_never_crosses_a_wall_outside_a_doorway():
    env = PointRoomsEnv()
    rng = np.random.default_rng(0)
    start = rng.uniform(-4, 4, size=(20_000, 2))
    end = env.move(start, rng.uniform(-1, 1, size=(20_000, 2)))
    assert np.all(np.abs(end) <= 4.0)
    for axis in (0, 1):
        crossed = np.sign(end[:, axis]) * np.sign(start[:, axis]) < 0
        t = start[crossed, axis] / (start[crossed, axis] - end[crossed, axis])
        along = start[crossed, 1 - axis] + t * (end[crossed, 1 - axis] - start[crossed, 1 - axis])
        assert crossed.sum() > 100 and np.all(env.in_doorway(along))


def test_point_rooms_renders_an_rgb_array():
    env = PointRoomsEnv(render_mode="rgb_array")
    env.reset(seed=0)
    image = env.render()
    assert image.shape == (256, 256, 3) and image.dtype == np.uint8
    assert (image == 0).all(-1).any()  # walls are drawn


def test_reacher_goal_observation_and_goals_come_from_reacher():
    env = ReacherGoalEnv()
    obs, _ = env.reset(seed=0)
    q = env.data.qpos[:2]
    np.testing.assert_allclose(obs["observation"][:4], [np.cos(q[0]), np.cos(q[1]), np.sin(q[0]), np.sin(q[1])])
    np.testing.assert_allclose(obs["desired_goal"], env.goal)
    assert np.linalg.norm(obs["desired_goal"]) < 0.2


@pytest.mark.parametrize("name", ["PointReach", "PointRooms", "ReacherGoal", "FetchReach", "FetchPush"])
def test_clean_expert_reaches_the_goal(name):
    assert final_success_rate(name, 20, CLEAN) >= 0.9


def test_random_actions_rarely_solve_point_rooms():
    assert final_success_rate("PointRooms", 20, None) <= 0.2


def test_noisy_expert_is_reproducible_and_in_bounds():
    expert = make_expert("FetchPush", ExpertConfig(noise_std=0.5, epsilon=0.5))
    obs, _ = make_env("FetchPush").reset(seed=0)
    rng_first, rng_second = np.random.default_rng(3), np.random.default_rng(3)
    first = [expert(obs, rng_first) for _ in range(20)]
    second = [expert(obs, rng_second) for _ in range(20)]
    np.testing.assert_array_equal(first, second)
    assert np.all(np.abs(first) <= 1.0) and np.array(first).shape == (20, 4)
    with pytest.raises(ValueError, match="No scripted expert"):
        make_expert("HalfCheetah")
