"""SB3's contract over every registered algorithm (as SB3's test_save_load.py, test_predict.py, test_deterministic.py):
save -> load with and without an env gives identical deterministic actions, get/set_parameters round-trips, the
replay buffer saves and loads, VecNormalize + two envs + EvalCallback + CheckpointCallback run, learn continues with
reset_num_timesteps=False, and the same seed gives the same parameters. The models trained on a named target keep
their own contract (`core.trainer.Trainer`): save -> load gives identical outputs and a resumed run continues bit for
bit; the same seed, the same network. Every kind of `runner.kinds.KINDS` is covered."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecNormalize
from test_crystal_models import MODELS, tiny_crystal_root, tiny_crystals  # noqa: F401 (fixtures)
from test_merlin import point_dataset, point_env

from core.trainer import Trainer
from runner.kinds import KINDS
from runner.registry import ALGOS
from samplers.base import BaseSampler
from samplers.energies import DoubleWellEnergy, GaussianMixtureEnergy

ONLINE = sorted(name for name, spec in ALGOS.items() if spec.kind == "online")
OFFLINE = sorted(name for name, spec in ALGOS.items() if spec.kind == "offline")
SAMPLERS = sorted(name for name, spec in ALGOS.items() if spec.kind == "sampler")
PDE_SOLVERS = sorted(name for name, spec in ALGOS.items() if spec.kind == "pde")
CRYSTAL_MODELS = sorted(name for name, spec in ALGOS.items() if spec.kind == "crystal")
CAUSAL_LEARNERS = sorted(name for name, spec in ALGOS.items() if spec.kind == "causal")
COVERED_KINDS = {"online": ONLINE, "offline": OFFLINE, "sampler": SAMPLERS, "pde": PDE_SOLVERS,
                 "crystal": CRYSTAL_MODELS, "causal": CAUSAL_LEARNERS}  # fmt: skip
STEPS = 64
_OFF_POLICY = {"learning_starts": 16, "batch_size": 8, "buffer_size": 500, "policy_kwargs": {"net_arch": [16, 16]}}
TINY: dict[str, dict[str, Any]] = {
    "dqs": {"learning_starts": 16, "batch_size": 8, "buffer_size": 500,
            "policy_kwargs": {"net_arch": [16, 16], "score_hidden_dim": 16, "embedding_dim": 8}},
    "ppo": {"n_steps": 32, "batch_size": 16, "n_epochs": 1, "policy_kwargs": {"net_arch": [16]}},
    "a2c": {"n_steps": 8, "policy_kwargs": {"net_arch": [16]}},
    "crossq": {**_OFF_POLICY, "policy_kwargs": {"net_arch": [16, 16]}},
    "merlin": {"batch_size": 16, "policy_kwargs": {"net_arch": [16, 16]}},
    "gcsl": {"batch_size": 16, "policy_kwargs": {"net_arch": [16, 16]}},
    "wgcsl": {"batch_size": 16, "policy_kwargs": {"net_arch": [16, 16]}},
}  # fmt: skip
SAMPLER_TINY: dict[str, dict[str, Any]] = {
    "idem": {"num_mc_samples": 8, "batch_size": 16, "inner_steps": 5, "samples_per_refresh": 16, "buffer_size": 64,
             "init_samples": 16, "integration_steps": 5, "hidden_dim": 16, "n_layers": 1, "eval_freq": 0},
    "canonical": {"batch_size": 8, "transformer_dim": 16, "transformer_layers": 1, "canonicalizer_dim": 8,
                  "integration_steps": 5, "eval_freq": 0},
}  # fmt: skip


PDE_TINY: dict[str, Any] = {
    "hidden_dim": 8,
    "n_layers": 2,
    "latent_dim": 4,
    "residual_points": 8,
    "ic_batch": 4,
    "train_initial_conditions": 4,
    "test_initial_conditions": 2,
    "eval_times": 2,
    "eval_freq": 0,
}


CAUSAL_TASK = "chain3-2-23.linear.rotation"
#: A schedule of 10 steps, so that 5 + 5 resumed steps run the same phases and restarts as 10 uninterrupted ones.
CAUSAL_TINY: dict[str, Any] = {"hidden_units": 8, "hidden_layers": 1, "batch_size": 16, "eval_pairs": 64, "eval_freq": 0,
                               "schedule_steps": 10}  # fmt: skip


def test_every_kind_has_a_runner_and_a_contract():
    assert {spec.kind for spec in ALGOS.values()} <= set(KINDS) == set(COVERED_KINDS)
    assert all(COVERED_KINDS[kind] for kind in KINDS), "a kind without a registered algorithm is not tested"


def make(name: str, env: Any = None, seed: int = 0, **overrides: Any) -> BaseAlgorithm:
    """A tiny model of a registered RL algorithm: Pendulum for online algorithms, PointReach data for offline ones."""
    spec = ALGOS[name]
    kwargs = copy.deepcopy({**TINY.get(name, _OFF_POLICY), **overrides})  # SB3 writes into policy_kwargs
    if spec.kind == "offline":
        env = env if env is not None else point_env()
        return spec.load_class()("MultiInputPolicy", env, dataset=point_dataset(20, 10), seed=seed, **kwargs)
    return spec.load_class()("MlpPolicy", env if env is not None else "Pendulum-v1", seed=seed, **kwargs)


def observations(model: BaseAlgorithm, n: int = 5) -> Any:
    space = model.observation_space
    space.seed(0)
    samples = [space.sample() for _ in range(n)]
    if isinstance(space, gym.spaces.Dict):
        return {key: np.stack([s[key] for s in samples]) for key in space.spaces}
    return np.stack(samples)


def same_parameters(a: BaseAlgorithm, b: BaseAlgorithm) -> bool:
    first, second = a.get_parameters(), b.get_parameters()
    return first.keys() == second.keys() and all(
        all(torch.equal(x, y) for x, y in zip(first[k].values(), second[k].values()) if isinstance(x, torch.Tensor))
        for k in first
        if not k.endswith("optimizer")
    )


@pytest.mark.parametrize("name", ONLINE + OFFLINE)
def test_save_load_with_and_without_env_gives_identical_actions(name: str, tmp_path: Path) -> None:
    model = make(name).learn(STEPS)
    obs = observations(model)
    action = model.predict(obs, deterministic=True)[0]
    model.save(tmp_path / "model.zip")
    algo_class = type(model)
    without_env = algo_class.load(tmp_path / "model.zip")
    np.testing.assert_array_equal(without_env.predict(obs, deterministic=True)[0], action)
    data = {"dataset": model.dataset} if ALGOS[name].kind == "offline" else {}  # datasets are not saved in the zip
    with_env = algo_class.load(tmp_path / "model.zip", env=model.get_env(), **data)
    np.testing.assert_array_equal(with_env.predict(obs, deterministic=True)[0], action)
    with_env.learn(8, reset_num_timesteps=False)  # a loaded model trains on
    # get_parameters / set_parameters round-trip into a fresh model.
    fresh = make(name, seed=1)
    fresh.set_parameters(model.get_parameters(), exact_match=True)
    np.testing.assert_array_equal(fresh.predict(obs, deterministic=True)[0], action)


@pytest.mark.parametrize("name", ONLINE + OFFLINE)
def test_the_same_seed_gives_the_same_parameters(name: str) -> None:
    assert same_parameters(make(name, seed=3).learn(STEPS), make(name, seed=3).learn(STEPS))
    assert not same_parameters(make(name, seed=3).learn(STEPS), make(name, seed=4).learn(STEPS))


@pytest.mark.parametrize("name", [n for n in ONLINE if issubclass(ALGOS[n].load_class(), OffPolicyAlgorithm)])
def test_the_replay_buffer_saves_and_loads(name: str, tmp_path: Path) -> None:
    model = make(name).learn(STEPS)
    model.save_replay_buffer(tmp_path / "buffer.pkl")
    other = make(name, seed=1)
    other.load_replay_buffer(tmp_path / "buffer.pkl")
    assert other.replay_buffer.size() == model.replay_buffer.size() == STEPS
    np.testing.assert_array_equal(other.replay_buffer.observations, model.replay_buffer.observations)


@pytest.mark.parametrize("name", ONLINE)
def test_vec_normalize_two_envs_and_callbacks(name: str, tmp_path: Path) -> None:
    env = VecNormalize(make_vec_env("Pendulum-v1", n_envs=2, seed=0))
    eval_env = VecNormalize(make_vec_env("Pendulum-v1", n_envs=1, seed=1), training=False, norm_reward=False)
    callbacks = [
        EvalCallback(eval_env, n_eval_episodes=1, eval_freq=16, log_path=str(tmp_path), warn=False),
        CheckpointCallback(save_freq=16, save_path=str(tmp_path / "checkpoints")),
    ]
    model = make(name, env=env).learn(STEPS, callback=callbacks)
    assert model.num_timesteps >= STEPS
    assert (tmp_path / "evaluations.npz").is_file() and list((tmp_path / "checkpoints").glob("*.zip"))
    model.learn(STEPS, reset_num_timesteps=False)
    assert model.num_timesteps >= 2 * STEPS


@pytest.mark.parametrize("name", OFFLINE)
def test_offline_eval_and_checkpoint_callbacks(name: str, tmp_path: Path) -> None:
    callbacks = [
        EvalCallback(make_vec_env(point_env, n_envs=1, seed=1), n_eval_episodes=1, eval_freq=16, log_path=str(tmp_path)),
        CheckpointCallback(save_freq=16, save_path=str(tmp_path / "checkpoints")),
    ]
    model = make(name).learn(STEPS, callback=callbacks)
    assert (tmp_path / "evaluations.npz").is_file() and list((tmp_path / "checkpoints").glob("*.zip"))
    model.learn(8, reset_num_timesteps=False)
    assert model.num_timesteps == STEPS + 8


def make_sampler(name: str, seed: int = 0) -> BaseSampler:
    sampler_class = ALGOS[name].load_class()
    if name == "canonical":
        data = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
        return sampler_class(DoubleWellEnergy(4, 2), data=data, seed=seed, **SAMPLER_TINY[name])
    return sampler_class(GaussianMixtureEnergy([[-2.0, 0.0], [2.0, 0.0]], stds=0.5), seed=seed, **SAMPLER_TINY[name])


@pytest.mark.parametrize("name", SAMPLERS)
def test_sampler_save_load_and_seed(name: str, tmp_path: Path) -> None:
    model = make_sampler(name).learn(10)
    assert isinstance(model, BaseSampler)
    model.save(tmp_path / "model.pt")
    loaded = type(model).load(tmp_path / "model.pt", target=model.target)
    torch.testing.assert_close(loaded.sample(32, seed=5), model.sample(32, seed=5), rtol=0, atol=0)
    again = make_sampler(name).learn(10)
    for a, b in zip(model.network.state_dict().values(), again.network.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("name", PDE_SOLVERS)
def test_pde_solver_save_load_resume_and_seed(name: str, tmp_path: Path) -> None:
    solver_class = ALGOS[name].load_class()
    model = solver_class("Heat", seed=0, **PDE_TINY).learn(5)
    assert isinstance(model, Trainer) and model.best_metrics["step"] == 5.0
    model.save(tmp_path / "model.pt")
    resumed = solver_class.load(tmp_path / "model.pt")
    assert resumed.evaluate() == model.evaluate()
    uninterrupted = solver_class("Heat", seed=0, **PDE_TINY).learn(10)
    resumed.learn(5, reset_num_timesteps=False)
    assert resumed.num_timesteps == 10
    for a, b in zip(resumed.network.state_dict().values(), uninterrupted.network.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    other = solver_class("Heat", seed=1, **PDE_TINY)
    assert not torch.equal(other.train_u0, model.train_u0)


@pytest.mark.parametrize("name", CAUSAL_LEARNERS)
def test_causal_learner_save_load_resume_and_seed(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAUSAL_CACHE_DIR", str(tmp_path / "cache"))
    learner_class = ALGOS[name].load_class()
    model = learner_class(CAUSAL_TASK, seed=0, **CAUSAL_TINY).learn(5)
    assert isinstance(model, Trainer) and model.best_metrics["step"] == 5.0
    model.save(tmp_path / "model.pt")
    resumed = learner_class.load(tmp_path / "model.pt")
    assert resumed.evaluate() == model.evaluate()
    x = model.val_pairs.x[:32]
    np.testing.assert_array_equal(resumed.encode(x), model.encode(x))
    uninterrupted = learner_class(CAUSAL_TASK, seed=0, **CAUSAL_TINY).learn(10)
    resumed.learn(5, reset_num_timesteps=False)
    assert resumed.num_timesteps == 10
    for a, b in zip(resumed.network.state_dict().values(), uninterrupted.network.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    other = learner_class(CAUSAL_TASK, seed=1, **CAUSAL_TINY)
    assert not np.array_equal(other.train_pairs.x[:8], model.train_pairs.x[:8])  # the seed draws the data too
    assert not torch.equal(next(iter(other.network.parameters())), next(iter(model.network.parameters())))


def _same_crystals(first: Any, second: Any) -> bool:
    """Whether two `crystals.models.Generated` hold the same crystals, bit for bit, and the same failures."""

    def key(structure: Any) -> tuple:
        return structure.lattice.matrix.tolist(), structure.atomic_numbers, structure.frac_coords.tolist()

    return [key(s) for s in first.structures] == [key(s) for s in second.structures] and first.failures == second.failures


@pytest.mark.usefixtures("tiny_crystals")
@pytest.mark.parametrize("name", CRYSTAL_MODELS)
def test_crystal_model_save_load_resume_and_seed(name: str, tmp_path: Path) -> None:
    model_class, tiny = ALGOS[name].load_class(), MODELS[name][1]
    model = model_class("Carbon24", seed=0, **tiny).learn(5)
    assert isinstance(model, Trainer) and model.best_metrics["step"] == 5.0
    model.save(tmp_path / "model.pt")
    resumed = model_class.load(tmp_path / "model.pt")
    assert _same_crystals(resumed.generate(4, seed=5), model.generate(4, seed=5))
    assert resumed.evaluate() == model.evaluate()
    uninterrupted = model_class("Carbon24", seed=0, **tiny).learn(10)
    resumed.learn(5, reset_num_timesteps=False)
    assert resumed.num_timesteps == 10
    for a, b in zip(resumed.network.state_dict().values(), uninterrupted.network.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    again, other = model_class("Carbon24", seed=0, **tiny), model_class("Carbon24", seed=1, **tiny)
    first = next(iter(model_class("Carbon24", seed=0, **tiny).network.parameters()))
    assert torch.equal(next(iter(again.network.parameters())), first)
    assert not torch.equal(next(iter(other.network.parameters())), first)


@pytest.mark.parametrize("name", ONLINE + OFFLINE)
def test_the_policy_alone_saves_and_loads(name: str, tmp_path: Path) -> None:
    model = make(name).learn(STEPS)
    obs = observations(model)
    model.policy.save(tmp_path / "policy.pth")
    loaded = type(model.policy).load(tmp_path / "policy.pth")
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], model.policy.predict(obs, deterministic=True)[0])
