"""Merlin, GCSL and WGCSL: relabelling, noise models, learning, save/load, evaluation metrics and input checks."""

from __future__ import annotations

import math
import zipfile
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from scipy import stats
from stable_baselines3.common.callbacks import CheckpointCallback
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.merlin import GCSL, WGCSL, GoalEvalCallback, Merlin, ReverseModelConfig, evaluate_goal_policy
from agents.merlin.baselines import AdvantageQueue, wgcsl_weights
from agents.merlin.evaluation import EPISODE_VALUES, mean_metrics
from agents.merlin.noise import balanced_episodes, make_noise_config, synthesize
from agents.merlin.relabel import HindsightRelabeler
from agents.merlin.reverse_model import (
    WARN_ERROR_RATIO,
    dynamics_error_ratio,
    generate_reverse_model_data,
    train_reverse_dynamics,
)
from agents.merlin.stitching import stitch
from envs.goal_dataset import GoalDataset
from envs.goal_envs import PointReachEnv
from runner.registry import get_algo

SMALL = {"net_arch": [32, 32]}  # a tiny policy for the tests that do not need learning


def indexed_dataset(lengths: list[int], dataset_id: str = "") -> GoalDataset:
    """Episodes whose values encode where they come from: observation = (e, t), achieved goal = (e, t + 100),
    desired goal = (e, -1), action = (e, t) / 100."""
    obs, achieved, desired, actions = [], [], [], []
    for e, length in enumerate(lengths):
        t = np.arange(length + 1, dtype=np.float32)
        obs.append(np.stack([np.full_like(t, e), t], axis=1))
        achieved.append(np.stack([np.full_like(t, e), t + 100], axis=1))
        desired.append(np.stack([np.full_like(t, e), -np.ones_like(t)], axis=1))
        actions.append(obs[-1][:-1] / 100)
    return GoalDataset.from_episodes(obs, achieved, desired, actions, dataset_id=dataset_id)


def point_dataset(n_episodes: int = 200, length: int = 20, seed: int = 0, dataset_id: str = "point-random-v0") -> GoalDataset:
    """Uniform random-action episodes of PointReach (the position is observation and achieved goal)."""
    rng, env = np.random.default_rng(seed), PointReachEnv()
    position, goals = rng.uniform(-4, 4, size=(n_episodes, 2)), rng.uniform(-4, 4, size=(n_episodes, 2))
    positions, actions = [position], []
    for _ in range(length):
        actions.append(rng.uniform(-1, 1, size=(n_episodes, 2)))
        positions.append(env.move(positions[-1], actions[-1]))
    obs, act = np.stack(positions, axis=1), np.stack(actions, axis=1)
    desired = [np.repeat(g[None], length + 1, axis=0) for g in goals]
    return GoalDataset.from_episodes(list(obs), list(obs), desired, list(act), dataset_id=dataset_id)


def point_env(max_steps: int = 20) -> gym.Env:
    return gym.wrappers.TimeLimit(PointReachEnv(), max_steps)


class LineGoalEnv(gym.Env):
    """A point on a line from 0 towards the goal 3 (success within 0.5), for exact metric checks and bad spaces."""

    def __init__(self, obs_space: spaces.Space | None = None, action_space: spaces.Space | None = None) -> None:
        box = spaces.Box(-10, 10, shape=(1,), dtype=np.float32)
        self.observation_space = obs_space or spaces.Dict({"observation": box, "achieved_goal": box, "desired_goal": box})
        self.action_space = action_space or spaces.Box(-1, 1, shape=(1,), dtype=np.float32)
        self.x = 0.0

    def compute_reward(self, achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any = None) -> np.ndarray:
        return -(np.abs(np.asarray(achieved_goal) - desired_goal)[..., 0] > 0.5).astype(np.float32)

    def _obs(self) -> dict[str, np.ndarray]:
        x = np.array([self.x], dtype=np.float32)
        return {"observation": x, "achieved_goal": x.copy(), "desired_goal": np.array([3.0], dtype=np.float32)}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        self.x = 0.0
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        self.x = float(np.clip(self.x + float(np.clip(action[0], -1, 1)), -10, 10))
        obs = self._obs()
        reward = float(self.compute_reward(obs["achieved_goal"], obs["desired_goal"]))
        return obs, reward, False, False, {"is_success": 1.0 + reward}


# --- relabelling ------------------------------------------------------------------------------------------------


def test_relabelled_triples_are_consistent():
    lengths = [1, 4, 7, 2]
    dataset = indexed_dataset(lengths)
    batch = HindsightRelabeler(dataset, her_ratio=0.5).sample(4000, np.random.default_rng(0))
    e, i, j = batch.episodes, batch.steps, batch.goal_steps
    episode_lengths = np.array(lengths)[e]
    assert np.all((i >= 0) & (i < j) & (j <= episode_lengths))
    np.testing.assert_array_equal(batch.observations, np.stack([e, i], axis=1))
    np.testing.assert_array_equal(batch.next_observations, np.stack([e, i + 1], axis=1))
    np.testing.assert_allclose(batch.actions, np.stack([e, i], axis=1) / 100, rtol=1e-6)
    her, original = batch.hindsight, ~batch.hindsight
    assert 0.45 < her.mean() < 0.55
    # Hindsight: g is achieved_goal[j] of the same episode, h = j - i.
    np.testing.assert_array_equal(batch.goals[her], np.stack([e, j + 100], axis=1)[her])
    np.testing.assert_array_equal(batch.horizons[her], (j - i)[her])
    # Original goal: the episode's desired goal, h = T - i.
    np.testing.assert_array_equal(batch.goals[original], np.stack([e, -np.ones_like(e)], axis=1)[original])
    np.testing.assert_array_equal(batch.horizons[original], (episode_lengths - i)[original])
    np.testing.assert_array_equal(batch.offsets, batch.horizons - 1)
    np.testing.assert_array_equal(batch.original_goals[:, 1], -1)


@pytest.mark.parametrize("max_horizon", [None, 2])
def test_pairs_are_uniform_over_the_upper_triangle(max_horizon: int | None):
    lengths = [2, 3, 1]
    relabeler = HindsightRelabeler(indexed_dataset(lengths), her_ratio=1.0, max_horizon=max_horizon)
    allowed = [(e, i, j) for e, n in enumerate(lengths) for i in range(n) for j in range(i + 1, n + 1)
               if max_horizon is None or j - i <= max_horizon]  # fmt: skip
    assert relabeler.n_pairs == len(allowed)
    e, i, j = relabeler.sample_pairs(40_000, np.random.default_rng(1))
    index = {pair: k for k, pair in enumerate(allowed)}
    counts = np.bincount([index[p] for p in zip(e.tolist(), i.tolist(), j.tolist())], minlength=len(allowed))
    assert stats.chisquare(counts).pvalue > 1e-3


# --- noise models -----------------------------------------------------------------------------------------------


def test_stitching_jumps_only_above_threshold():
    dataset = indexed_dataset([6, 6, 6, 6])
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(len(dataset.observations), 4))
    codes[7:14] = codes[0:7] + 1e-3 * rng.normal(size=(7, 4))  # episode 1 nearly duplicates episode 0
    codes = th.nn.functional.normalize(th.as_tensor(codes, dtype=th.float32), dim=1)
    starts = np.arange(4)
    threshold = 0.999
    walks, jumps = stitch(dataset, codes, starts, threshold, rollout_length=6)
    assert len(jumps.cosines) > 0
    recomputed = (codes[jumps.from_rows] * codes[jumps.to_rows]).sum(dim=1).numpy()
    np.testing.assert_allclose(recomputed, jumps.cosines, atol=1e-6)
    assert np.all(jumps.cosines >= threshold) and np.all(jumps.to_rows != jumps.from_rows)
    assert np.all(dataset.observations[jumps.to_rows, 1] > 0)  # never to a t = 0 state
    # Every walk step is a dataset transition, and the goal is the walk's final achieved goal.
    ends = np.cumsum(walks.lengths + 1) - 1
    np.testing.assert_array_equal(walks.desired_goals, np.repeat(walks.achieved_goals[ends], walks.lengths + 1, axis=0))
    starts_of_walks = np.delete(np.arange(len(walks.observations)), ends)
    np.testing.assert_allclose(walks.actions, walks.observations[starts_of_walks] / 100, rtol=1e-6)

    no_jump_walks, no_jumps = stitch(dataset, codes, starts, 1.0 + 1e-6, rollout_length=6)
    assert len(no_jumps.cosines) == 0
    for name in ("observations", "achieved_goals", "actions", "lengths"):
        np.testing.assert_array_equal(getattr(no_jump_walks, name), getattr(dataset, name))


def test_stitching_and_cache(tmp_path):
    dataset = point_dataset(n_episodes=30, length=10)
    config = make_noise_config("stitching", {"epochs": 1, "hidden_dim": 32, "threshold": 0.99})
    args = (dataset, "stitching", config, 40, spaces.Box(-1, 1, (2,)), 0, th.device("cpu"), tmp_path)
    walks, walk_stats = synthesize(*args)
    assert walks.n_episodes == 40 and np.isfinite(walks.observations).all() and walk_stats["n_jumps"] >= 0
    assert len(list(tmp_path.glob("point-random-v0-stitching-*.npz"))) == 1
    cached, cached_stats = synthesize(*args)
    np.testing.assert_array_equal(cached.observations, walks.observations)
    assert cached_stats == walk_stats


def test_reverse_model_rollouts_shapes_and_finite():
    dataset = point_dataset(n_episodes=30, length=8)
    box = spaces.Box(-1, 1, (2,))
    config = ReverseModelConfig(epochs=2, hidden_dim=32, rollout_length=5)
    starts = balanced_episodes(dataset.n_episodes, 12, np.random.default_rng(0))
    with pytest.warns(UserWarning, match="no motion"):  # 2 epochs on 30 episodes: barely trained, and it says so
        rollouts, info = generate_reverse_model_data(dataset, box, config, starts, seed=0, device=th.device("cpu"))
    assert info["dynamics_error_ratio"] > WARN_ERROR_RATIO
    assert rollouts.n_episodes == 12 - info["n_dropped"] == 12
    np.testing.assert_array_equal(rollouts.lengths, 5)
    assert rollouts.observations.shape == (12 * 6, 2) and rollouts.actions.shape == (12 * 5, 2)
    for name in ("observations", "achieved_goals", "desired_goals", "actions"):
        assert np.isfinite(getattr(rollouts, name)).all()
    assert np.all(np.abs(rollouts.actions) <= 1.0)
    finals = dataset.observations[dataset.obs_index(starts, dataset.lengths[starts])]
    np.testing.assert_allclose(rollouts.observations[5::6], finals)  # rollouts end at the dataset final states
    np.testing.assert_allclose(rollouts.desired_goals[0::6], finals)


def test_dynamics_error_ratio_separates_a_trained_reverse_model_from_an_untrained_one():
    dataset = point_dataset(n_episodes=200, length=10)  # x_t = x_{t+1} - a_t (inside the arena): learnable exactly
    generator = th.Generator().manual_seed(0)
    trained, untrained = (train_reverse_dynamics(dataset, ReverseModelConfig(epochs=epochs, hidden_dim=64), 10, generator,
                                                 th.device("cpu")) for epochs in (150, 1))  # fmt: skip
    assert dynamics_error_ratio(trained, dataset, 10) < 0.2 < 0.8 < dynamics_error_ratio(untrained, dataset, 10)


def test_balanced_episodes_uses_each_episode_evenly():
    counts = np.bincount(balanced_episodes(7, 30, np.random.default_rng(0)), minlength=7)
    assert counts.min() >= 4 and counts.max() <= 5 and counts.sum() == 30


# --- algorithms -------------------------------------------------------------------------------------------------


def test_merlin_learns_point_reach_better_than_random():
    env = point_env()
    model = Merlin("MultiInputPolicy", env, dataset=point_dataset(), batch_size=256, seed=0, device="cpu",
                   policy_kwargs={"net_arch": [128, 128]})  # fmt: skip
    model.learn(400, log_interval=0)
    trained = evaluate_goal_policy(model, env, 30)

    class RandomPolicy:
        def predict(self, obs: dict, deterministic: bool = True) -> tuple[np.ndarray, None]:
            return np.random.default_rng(0).uniform(-1, 1, size=(len(obs["observation"]), 2)), None

    random = evaluate_goal_policy(RandomPolicy(), env, 30)
    assert trained["success_rate"] >= random["success_rate"] + 0.5
    assert trained["final_distance"] < random["final_distance"] / 2


def test_save_load_gives_identical_actions_and_omits_dataset(tmp_path):
    env = point_env()
    model = WGCSL("MultiInputPolicy", env, dataset=point_dataset(n_episodes=20), batch_size=32, seed=0, device="cpu",
                  policy_kwargs=SMALL, value_net_arch=[16])  # fmt: skip
    model.learn(20, log_interval=0)
    model.save(tmp_path / "model.zip")
    with zipfile.ZipFile(tmp_path / "model.zip") as archive:
        assert "observations" not in archive.read("data").decode()
    loaded = WGCSL.load(tmp_path / "model.zip", env=env, device="cpu")
    assert loaded.dataset is None and loaded.dataset_id == "point-random-v0"
    resets = [PointReachEnv().reset(seed=seed)[0] for seed in range(5)]
    obs = {key: np.stack([reset[key] for reset in resets]) for key in resets[0]}
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
    for name in ("value", "value_target"):
        for a, b in zip(getattr(model, name).parameters(), getattr(loaded, name).parameters()):
            assert th.equal(a, b)


def test_gcsl_ignores_the_horizon_and_merlin_uses_it():
    dataset, env = point_dataset(n_episodes=10), point_env()
    obs, goals = th.zeros(3, 2), th.ones(3, 2)
    for cls, uses in ((GCSL, False), (Merlin, True)):
        policy = cls("MultiInputPolicy", env, dataset=dataset, seed=0, device="cpu", policy_kwargs=SMALL).policy
        short, long = (policy.distribution(obs, goals, th.full((3,), h)).mean for h in (1.0, 40.0))
        assert policy.use_horizon is uses and th.equal(short, long) is not uses


def test_set_test_horizon_changes_actions_and_survives_save_load(tmp_path):
    env = point_env()
    model = Merlin("MultiInputPolicy", env, dataset=point_dataset(n_episodes=10), seed=0, device="cpu", policy_kwargs=SMALL)
    obs = {key: value[None] for key, value in PointReachEnv().reset(seed=0)[0].items()}
    at_one = model.predict(obs, deterministic=True)[0]
    model.set_test_horizon(30)
    assert model.config.test_horizon == model.policy.test_horizon == 30
    assert not np.array_equal(model.predict(obs, deterministic=True)[0], at_one)
    model.save(tmp_path / "merlin.zip")
    assert Merlin.load(tmp_path / "merlin.zip", env=env, device="cpu").policy.test_horizon == 30
    for bad in (0, 2.5):
        with pytest.raises(ValueError, match="positive integer"):
            model.set_test_horizon(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="use_horizon=False"):
        GCSL("MultiInputPolicy", env, dataset=point_dataset(n_episodes=10), device="cpu").set_test_horizon(5)


def test_wgcsl_weights_bounded_and_favour_positive_advantages():
    advantages = th.linspace(-5, 5, 101)
    offsets = th.randint(0, 50, (101,)).float()
    weights = wgcsl_weights(advantages, offsets, gamma=0.98, threshold=0.0)
    assert weights.min() >= 0 and weights.max() <= 10
    same_offset = wgcsl_weights(advantages, th.zeros(101), gamma=0.98, threshold=0.0)
    assert th.all(same_offset[1:] >= same_offset[:-1])  # monotone in the advantage
    assert same_offset[advantages >= 0].min() > 10 * same_offset[advantages < 0].max()
    queue = AdvantageQueue(size=4)
    queue.add(np.array([1.0, 2.0, 3.0]))
    queue.add(np.array([4.0, 5.0]))  # wraps around: holds 5, 2, 3, 4
    assert queue.percentile(0) == 2.0 and queue.percentile(100) == 5.0


def test_evaluation_metrics_with_the_plus_one_shift():
    env = gym.wrappers.TimeLimit(LineGoalEnv(), 5)

    class GoStraight:
        def predict(self, obs: dict, deterministic: bool = True) -> tuple[np.ndarray, None]:
            return np.clip(obs["desired_goal"] - obs["observation"], -1, 1), None

    metrics = evaluate_goal_policy(GoStraight(), DummyVecEnv([lambda: env]), n_episodes=3, gamma=0.5)
    # Positions 1, 2, 3, 3, 3: rewards -1, -1, 0, 0, 0 become 0, 0, 1, 1, 1.
    assert metrics == pytest.approx(
        {"success_rate": 1.0, "final_distance": 0.0, "discounted_return": 0.25 + 0.125 + 0.0625, "undiscounted_return": 3.0}
    )


def test_callbacks_run_per_gradient_step(tmp_path):
    env = point_env(10)
    model = Merlin("MultiInputPolicy", env, dataset=point_dataset(n_episodes=20), batch_size=32, seed=0, device="cpu",
                   policy_kwargs=SMALL)  # fmt: skip
    model.set_logger(configure(str(tmp_path / "logs"), ["csv"]))
    evaluation = GoalEvalCallback(env, eval_freq=15, n_eval_episodes=2, best_model_save_path=tmp_path, log_path=tmp_path)
    checkpoints = CheckpointCallback(save_freq=10, save_path=str(tmp_path / "checkpoints"))
    model.learn(30, callback=[evaluation, checkpoints], log_interval=10)
    assert model.num_timesteps == 30 and (tmp_path / "best_model.zip").is_file()
    with np.load(tmp_path / "evaluations.npz") as evaluations:  # as SB3's EvalCallback, plus the goal metrics
        assert evaluations["timesteps"].tolist() == [15, 30] and evaluations["results"].shape == (2, 2)
        assert evaluations["ep_lengths"].shape == (2, 2) and evaluations["successes"].shape == (2, 2)
        last = {key: evaluations[key][-1] for key in EPISODE_VALUES.values()}
        assert mean_metrics(last) == evaluation.final_metrics
    assert len(list((tmp_path / "checkpoints").glob("*.zip"))) == 3
    assert evaluation.final_metrics is not None and evaluation.best_metrics is not None
    log = (tmp_path / "logs" / "progress.csv").read_text()
    for key in ("train/loss", "train/log_std", "train/grad_norm", "eval/success_rate", "eval/discounted_return", "time/fps"):
        assert key in log


def test_tuned_values_follow_the_dataset_kind():
    env, tuned = point_env(), {"expert": 0.2, "random": 1.0}
    expert = Merlin("MultiInputPolicy", env, dataset=point_dataset(5, 3, dataset_id="pointrooms/expert-v0"),
                    her_ratio=tuned, test_horizon={"expert": 5, "random": 1}, device="cpu", policy_kwargs=SMALL)  # fmt: skip
    assert expert.config.her_ratio == 0.2 and expert.policy.test_horizon == 5
    with pytest.warns(UserWarning, match="expert or random"):
        unknown = Merlin("MultiInputPolicy", env, dataset=point_dataset(5, 3, dataset_id="mystery-v0"), her_ratio=tuned,
                         device="cpu", policy_kwargs=SMALL)  # fmt: skip
    assert unknown.config.her_ratio == 1.0
    assert {get_algo(name).kind for name in ("merlin", "gcsl", "wgcsl")} == {"offline"}


# --- bad inputs -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (LineGoalEnv(obs_space=spaces.Box(-1, 1, (1,))), "Dict observation space"),
        (LineGoalEnv(obs_space=spaces.Dict({"observation": spaces.Box(-1, 1, (1,))})), "lacks the goal key"),
        (LineGoalEnv(action_space=spaces.Discrete(3)), "Box action space"),
    ],
)
def test_bad_spaces_raise(env: gym.Env, message: str):
    with pytest.raises(ValueError, match=message):
        Merlin("MultiInputPolicy", env, device="cpu")


def test_bad_dataset_noise_model_and_nan_loss_raise():
    env = point_env()
    zeros = np.zeros((4, 2), np.float32)
    wide_obs = GoalDataset(np.zeros((4, 3), np.float32), zeros, zeros, np.zeros((3, 2), np.float32), np.array([3]))
    with pytest.raises(ValueError, match=r"observations .* shape \(4, 3\), but the env's observation has dimension 2"):
        Merlin("MultiInputPolicy", env, dataset=wide_obs, device="cpu")
    with pytest.raises(ValueError, match="Did you mean 'stitching'"):
        Merlin("MultiInputPolicy", env, noise_model="stiching", device="cpu")
    with pytest.raises(ValueError, match="got unknown noise_kwargs"):
        Merlin("MultiInputPolicy", env, noise_model="stitching", noise_kwargs={"radius": 0.9}, device="cpu")
    with pytest.raises(ValueError, match="no dataset"):
        Merlin("MultiInputPolicy", env, device="cpu").learn(1)
    model = Merlin(
        "MultiInputPolicy", env, dataset=point_dataset(n_episodes=5), batch_size=8, device="cpu", policy_kwargs=SMALL
    )
    with th.no_grad():
        model.policy.net[0].weight.fill_(math.nan)
    with pytest.raises(FloatingPointError, match=r"policy loss.*lower learning rate"):
        model.learn(1, log_interval=0)
