"""ParticleReach: symmetry of the MDP (rotation, reflection, permutations), checker, seeding, dynamics, a greedy solver."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

from envs import make_env, resolve_env_id
from envs.particle_reach import ParticleReachEnv, all_covered, assignment_cost

N = 3


def orthogonal(angle: float, reflect: bool) -> np.ndarray:
    """Rotation by ``angle``, preceded by the reflection y ↦ −y when ``reflect``."""
    c, s = np.cos(angle), np.sin(angle)
    rotation = np.array([[c, -s], [s, c]])
    return rotation @ np.diag([1.0, -1.0]) if reflect else rotation


def random_scene(seed: int, radius: float = 0.8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Particles, targets (strictly inside the arena, so rotations keep them there) and an action, all (N, 2)."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(-1.0, 1.0, size=(2 * N, 2))
    points *= radius / np.maximum(np.linalg.norm(points, axis=1, keepdims=True), radius)
    return points[:N], points[N:], rng.uniform(-1.0, 1.0, size=(N, 2))


def step_scene(particles: np.ndarray, targets: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, float, dict]:
    env = ParticleReachEnv(n_particles=N, success_radius=0.3)
    env.reset(seed=0, options={"particles": particles, "targets": targets})
    obs, reward, _, _, info = env.step(action.reshape(-1))
    return obs, reward, info


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    angle=st.floats(0.0, 2.0 * np.pi),
    reflect=st.booleans(),
    particle_order=st.permutations(range(N)),
    target_order=st.permutations(range(N)),
)
def test_mdp_is_symmetric_under_isometries_and_permutations(seed, angle, reflect, particle_order, target_order):
    particles, targets, action = random_scene(seed)
    q, p_order, t_order = orthogonal(angle, reflect), list(particle_order), list(target_order)
    obs, reward, info = step_scene(particles, targets, action)
    moved_obs, moved_reward, moved_info = step_scene(particles[p_order] @ q.T, targets[t_order] @ q.T, action[p_order] @ q.T)
    assert moved_reward == pytest.approx(reward, abs=1e-9)
    assert moved_info["is_success"] == info["is_success"]
    # The next state transforms like the state: particles rotated and permuted with their actions.
    next_particles, next_targets = obs.reshape(2, N, 2).astype(np.float64)
    moved_particles, moved_targets = moved_obs.reshape(2, N, 2)
    np.testing.assert_allclose(moved_particles, next_particles[p_order] @ q.T, atol=1e-6)
    np.testing.assert_allclose(moved_targets, next_targets[t_order] @ q.T, atol=1e-6)


def test_reward_is_invariant_at_the_arena_boundary():
    """Projection onto the boundary circle commutes with rotations too (a box arena would not)."""
    particles, targets = np.array([[0.95, 0.0], [0.0, -0.95], [0.5, 0.5]]), np.zeros((N, 2))
    action = np.array([[1.0, 0.3], [0.2, -1.0], [0.0, 0.0]])
    q = orthogonal(0.7, False)
    obs, reward, _ = step_scene(particles, targets, action)
    moved_obs, moved_reward, _ = step_scene(particles @ q.T, targets, action @ q.T)
    assert np.linalg.norm(obs[:4].reshape(2, 2), axis=1) == pytest.approx([1.0, 1.0], abs=1e-6)
    assert moved_reward == pytest.approx(reward, abs=1e-9)
    np.testing.assert_allclose(moved_obs[: 2 * N].reshape(N, 2), obs[: 2 * N].reshape(N, 2) @ q.T, atol=1e-6)


def test_cost_is_the_best_one_to_one_assignment_and_success_needs_one_particle_per_target():
    targets = np.array([[0.0, 0.0], [0.05, 0.0], [0.5, 0.5]])
    cost, assigned = assignment_cost(targets[[2, 0, 1]] + [0.01, 0.0], targets)
    assert cost == pytest.approx(0.03) and list(assigned) == [2, 0, 1]
    # One particle between two close targets covers both within 0.1, but the third target's particle is idle.
    crowded = np.array([[0.02, 0.0], [0.9, 0.0], [0.5, 0.5]])
    assert not all_covered(crowded, targets, 0.1)
    assert all_covered(targets + 0.01, targets, 0.1)


def test_reward_and_success_when_every_particle_sits_on_its_target():
    env = ParticleReachEnv(n_particles=N)
    _, targets, _ = random_scene(1)
    env.reset(options={"particles": targets[::-1], "targets": targets})
    _, reward, terminated, truncated, info = env.step(np.zeros(2 * N, dtype=np.float32))
    assert reward == pytest.approx(env.success_bonus) and info["is_success"] and info["assignment_cost"] == 0.0
    assert not terminated and not truncated


def test_steps_are_norm_clipped_to_max_step():
    env = ParticleReachEnv(n_particles=2, max_step=0.1)
    obs, _ = env.reset(options={"particles": np.zeros((2, 2)), "targets": np.ones((2, 2)) * 0.5})
    obs, *_ = env.step(np.array([1.0, 1.0, 0.3, 0.0], dtype=np.float32))
    np.testing.assert_allclose(obs[:4], [0.1 / np.sqrt(2), 0.1 / np.sqrt(2), 0.03, 0.0], atol=1e-7)


def test_passes_gymnasium_checker_and_registration():
    check_env(gym.make("ParticleReach-v0").unwrapped)
    assert resolve_env_id("ParticleReach") == "ParticleReach-v0"
    env = make_env("ParticleReach", n_particles=5)
    assert env.spec.max_episode_steps == 50 and env.observation_space.shape == (20,) and env.action_space.shape == (10,)


def test_seeding_is_reproducible():
    def rollout(seed: int) -> np.ndarray:
        env = ParticleReachEnv()
        env.action_space.seed(seed)
        observations = [env.reset(seed=seed)[0]]
        observations += [env.step(env.action_space.sample())[0] for _ in range(5)]
        return np.stack(observations)

    np.testing.assert_array_equal(rollout(3), rollout(3))
    assert not np.allclose(rollout(3), rollout(4))


def test_initial_law_privileges_no_orientation():
    env = ParticleReachEnv(n_particles=N)
    env.reset(seed=0)
    points = np.concatenate([env.reset()[0].reshape(-1, 2) for _ in range(2000)])
    covariance = np.cov(points.T)
    # Uniform on the unit disk: zero mean and covariance I/4 (isotropic).
    np.testing.assert_allclose(points.mean(axis=0), 0.0, atol=0.02)
    np.testing.assert_allclose(covariance, np.eye(2) / 4, atol=0.01)
    assert np.linalg.norm(points, axis=1).max() <= 1.0


def greedy_action(obs: np.ndarray, max_step: float) -> np.ndarray:
    """Move each particle straight to its target in the min-cost assignment (the env norm-clips the step)."""
    particles, targets = obs.reshape(2, -1, 2).astype(np.float64)
    _, assigned = assignment_cost(particles, targets)
    return ((targets[assigned] - particles) / max_step).reshape(-1)


def test_greedy_assignment_policy_solves_the_task():
    env = gym.make("ParticleReach-v0")
    successes = []
    for episode in range(20):
        obs, _ = env.reset(seed=episode)
        truncated = False
        while not truncated:
            obs, _, _, truncated, info = env.step(greedy_action(obs, env.unwrapped.max_step))
        successes.append(info["is_success"])
    assert np.mean(successes) >= 0.9


def test_bad_input_is_rejected_with_a_clear_message():
    with pytest.raises(ValueError, match="n_particles"):
        ParticleReachEnv(n_particles=0)
    env = ParticleReachEnv(n_particles=N)
    with pytest.raises(ValueError, match="outside the arena"):
        env.reset(options={"particles": np.full((N, 2), 0.9)})
    with pytest.raises(ValueError, match="shape"):
        env.reset(options={"targets": np.zeros((N + 1, 2))})
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action must have shape"):
        env.step(np.zeros(N))
