"""Goal datasets: naming, Minari build and load, reproducibility, error messages, D4RL-layout datasets."""

import gymnasium as gym
import minari
import numpy as np
import pytest
from gymnasium import spaces
from minari.data_collector import EpisodeBuffer

from benchmarks.experts import success_rate
from envs import make_env
from envs.datasets import BuildArgs, ListArgs, build_dataset, dataset_id, load_goal_dataset, main
from envs.experts import ExpertConfig
from envs.goal_envs import PointReachEnv
from envs.registry import _register_robotics


@pytest.fixture(autouse=True)
def minari_root(tmp_path, monkeypatch):
    """Every test writes its datasets to its own temporary Minari root."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "datasets"))
    return tmp_path / "datasets"


def test_dataset_id_naming_rule():
    assert dataset_id("FetchReach", "expert") == "diffusion-baselines/fetchreach-expert-v0"
    assert dataset_id("PointReach-v0", "random") == "diffusion-baselines/pointreach-random-v0"
    with pytest.raises(ValueError, match="not a goal task"):
        dataset_id("HalfCheetah", "expert")
    with pytest.raises(ValueError, match="Unknown dataset kind"):
        dataset_id("PointReach", "medium")


@pytest.mark.parametrize(("env", "obs_dim", "goal_dim", "action_dim"), [("PointReach", 2, 2, 2), ("FetchReach", 10, 3, 4)])
def test_build_and_load_back_as_goal_dataset(env, obs_dim, goal_dim, action_dim):
    identifier = build_dataset(env, "expert", episodes=5, seed=0)
    assert identifier == dataset_id(env, "expert")
    data = load_goal_dataset(identifier.split("/")[1], env=make_env(env))  # short form, spaces checked
    assert data.n_episodes == 5 and np.all(data.lengths == 50)
    assert data.observations.shape == (5 * 51, obs_dim) and data.observations.dtype == np.float32
    assert data.achieved_goals.shape == data.desired_goals.shape == (5 * 51, goal_dim)
    assert data.actions.shape == (250, action_dim) and np.abs(data.actions).max() <= 1.0
    assert data.dataset_id == identifier and data.env_id == make_env(env).spec.id
    first = data.desired_goals[data.obs_index(0, np.arange(51))]
    np.testing.assert_array_equal(first, np.broadcast_to(first[0], first.shape))  # one goal per episode
    metadata = minari.load_dataset(identifier).storage.metadata
    assert metadata["algorithm_name"] == "scripted-expert(std=0.1, eps=0.1)"
    assert metadata["author"] == {"diffusion-baselines"}


def test_expert_data_reaches_goals_and_random_data_rarely_does():
    build_dataset("PointRooms", "expert", episodes=5, seed=0, expert=ExpertConfig(0.0, 0.0))
    build_dataset("PointRooms", "random", episodes=5, seed=0)
    for kind, expected in (("expert", 1.0), ("random", 0.0)):
        episodes = list(minari.load_dataset(dataset_id("PointRooms", kind)).iterate_episodes())
        final = [episode.infos["is_success"][-1] for episode in episodes]
        assert np.mean(final) == pytest.approx(expected, abs=0.2)
        np.testing.assert_array_equal(episodes[0].rewards, episodes[0].infos["is_success"][1:] - 1.0)


def test_same_seed_same_arrays_other_seed_differs_and_force_is_required():
    def arrays(seed: int, force: bool) -> list[np.ndarray]:
        build_dataset("PointRooms", "expert", episodes=3, seed=seed, force=force)
        data = load_goal_dataset("pointrooms-expert-v0")
        return [data.observations, data.desired_goals, data.actions]

    first = arrays(0, force=False)
    with pytest.raises(FileExistsError, match="--force"):
        build_dataset("PointRooms", "expert", episodes=3, seed=0)
    for a, b in zip(first, arrays(0, force=True)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[2], arrays(1, force=True)[2])


def test_missing_dataset_names_the_build_command(minari_root):
    with pytest.raises(FileNotFoundError) as error:
        load_goal_dataset("pointrooms-random-v0")
    message = str(error.value)
    assert "diffusion-baselines/pointrooms-random-v0" in message and str(minari_root) in message
    assert "python -m envs.datasets build --env PointRooms --kind random --episodes 2000 --seed 0" in message
    with pytest.raises(FileNotFoundError, match="minari download D4RL/pointmaze/umaze-v2"):
        load_goal_dataset("D4RL/pointmaze/umaze-v2")


@pytest.mark.filterwarnings("ignore:`eval_env` is set to None", "ignore:env_spec is None")
def test_dataset_without_achieved_goal_is_rejected():
    box = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    observations = {"observation": np.zeros((4, 2), np.float32), "desired_goal": np.zeros((4, 2), np.float32)}
    buffer = EpisodeBuffer(
        observations=observations,
        actions=np.zeros((3, 2), np.float32),
        rewards=np.zeros(3),
        terminations=np.zeros(3, bool),
        truncations=np.array([False, False, True]),
        infos={},
    )
    minari.create_dataset_from_buffers(
        "test/nogoal-v0",
        [buffer],
        observation_space=spaces.Dict({"observation": box, "desired_goal": box}),
        action_space=box,
        author="test",
        algorithm_name="zeros",
        code_permalink="none",
        author_email="none",
        description="no achieved goal",
    )
    with pytest.raises(ValueError, match=r"keys \['desired_goal', 'observation'\]; .* need the keys .*'achieved_goal'"):
        load_goal_dataset("test/nogoal-v0")


def test_space_mismatch_with_the_given_env_is_explained():
    build_dataset("PointReach", "random", episodes=1, seed=0)
    with pytest.raises(ValueError, match=r"observation_space\['observation'\] has shape \(2,\) in the dataset but \(10,\)"):
        load_goal_dataset("pointreach-random-v0", env=make_env("FetchReach"))
    with pytest.raises(ValueError, match=r"has bounds \[\[-4. -4.\], \[4. 4.\]\] in the dataset but \[\[-5. -5.\]"):
        load_goal_dataset("pointreach-random-v0", env=PointReachEnv(bound=5.0))


def test_variable_length_d4rl_layout_dataset_loads():
    _register_robotics()
    env = gym.make("PointMaze_Open-v3")
    rng = np.random.default_rng(0)
    buffers = []
    for episode, length in enumerate((7, 12, 3)):
        obs, _ = env.reset(seed=episode)
        observations, actions = [obs], []
        for _ in range(length):
            actions.append(rng.uniform(-1, 1, size=2).astype(np.float32))
            observations.append(env.step(actions[-1])[0])
        buffers.append(
            EpisodeBuffer(
                observations={key: np.stack([o[key] for o in observations]) for key in observations[0]},
                actions=np.stack(actions),
                rewards=np.zeros(length),
                terminations=np.zeros(length, bool),
                truncations=np.arange(length) == length - 1,
                infos={},
            )
        )
    minari.create_dataset_from_buffers(
        "D4RL/pointmaze/open-v2",
        buffers,
        env="PointMaze_Open-v3",
        eval_env="PointMaze_Open-v3",
        algorithm_name="random",
        author="test",
        author_email="none",
        code_permalink="none",
        description="variable-length episodes",
    )
    data = load_goal_dataset("D4RL/pointmaze/open-v2", env=env)
    np.testing.assert_array_equal(data.lengths, [7, 12, 3])
    assert data.observations.shape == (25, 4) and data.achieved_goals.shape == (25, 2) and data.actions.shape == (22, 2)
    np.testing.assert_allclose(data.actions[data.action_index(1, np.arange(12))], np.stack(buffers[1].actions))
    assert data.env_id == "PointMaze_Open-v3" and data.dataset_id == "D4RL/pointmaze/open-v2"


def test_cli_builds_and_lists(capsys):
    main(BuildArgs(env="PointReach", kind="random", episodes=2))
    main(ListArgs())
    with pytest.raises(SystemExit, match="already exists"):
        main(BuildArgs(env="PointReach", kind="random", episodes=2))
    output = capsys.readouterr().out
    assert "Wrote diffusion-baselines/pointreach-random-v0 (2 episodes)" in output
    assert "diffusion-baselines/pointreach-random-v0" in output.split("Datasets root:")[1] and "uniform-random" in output


def test_relative_datasets_root_works(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MINARI_DATASETS_PATH", "relative/minari")
    build_dataset("PointReach", "random", episodes=2, seed=0)
    data = load_goal_dataset("pointreach-random-v0")
    assert data.n_episodes == 2 and (tmp_path / "relative" / "minari").is_dir()


def test_expert_benchmark_counts_final_step_success():
    clean = ExpertConfig(noise_std=0.0, epsilon=0.0)
    assert success_rate("PointReach", "expert", 5, 0, clean) == 1.0
    assert success_rate("PointRooms", "random", 5, 0, None) < 0.5


def test_a_failed_rebuild_keeps_the_old_dataset_and_leaves_nothing_behind(monkeypatch):
    from envs import datasets

    build_dataset("PointReach", "random", episodes=3, seed=0)
    folder = datasets.get_dataset_path(dataset_id("PointReach", "random"))

    original = datasets.collect_episodes

    def collect_then_stop(*args, **kwargs):
        buffers = original(*args, **kwargs)
        yield next(buffers)
        raise KeyboardInterrupt  # Ctrl-C in the middle of collecting

    monkeypatch.setattr(datasets, "collect_episodes", collect_then_stop)
    with pytest.raises(KeyboardInterrupt):
        build_dataset("PointReach", "random", episodes=5, seed=1, force=True)
    assert load_goal_dataset("pointreach-random-v0").n_episodes == 3  # the old dataset, intact
    assert sorted(p.name for p in folder.parent.iterdir() if "pointreach" in p.name) == ["pointreach-random-v0"]
    monkeypatch.setattr(datasets, "collect_episodes", original)
    build_dataset("PointReach", "random", episodes=4, seed=1, force=True)
    assert load_goal_dataset("pointreach-random-v0").n_episodes == 4


def test_a_concurrent_build_of_the_same_id_is_refused_and_a_stale_lock_is_taken_over():
    import os

    from envs import datasets

    folder = datasets.get_dataset_path(dataset_id("PointReach", "random"))
    lock = folder.parent / f".{folder.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(str(os.getpid()))  # a live build holds the lock
    with pytest.raises(FileExistsError, match="Another build of pointreach-random-v0 is running"):
        build_dataset("PointReach", "random", episodes=2, seed=0)
    lock.write_text("999999999")  # its owner died
    build_dataset("PointReach", "random", episodes=2, seed=0)
    assert not lock.exists() and load_goal_dataset("pointreach-random-v0").n_episodes == 2


def test_sigterm_during_a_build_cleans_up_and_a_dead_build_is_never_listed(monkeypatch):
    import os
    import signal

    from envs import datasets

    original = datasets.collect_episodes

    def collect_then_sigterm(*args, **kwargs):
        buffers = original(*args, **kwargs)
        yield next(buffers)
        os.kill(os.getpid(), signal.SIGTERM)  # a scheduler stops the build
        yield from buffers

    monkeypatch.setattr(datasets, "collect_episodes", collect_then_sigterm)
    with pytest.raises(SystemExit, match="interrupted: the partial build was deleted"):
        datasets.main(datasets.BuildArgs(env="PointReach", kind="random", episodes=5))
    root = datasets.get_dataset_path(dataset_id("PointReach", "random")).parent
    assert [p.name for p in root.iterdir() if "pointreach" in p.name] == []  # no lock, no temporary build
    monkeypatch.setattr(datasets, "collect_episodes", original)
    dead = "diffusion-baselines/pointreach-random-building999999999-v0"  # a build killed with SIGKILL
    datasets._write_dataset(dead, "PointReach-v0", "random", 2, 0, datasets.ExpertConfig())
    assert dead not in datasets.list_goal_datasets()
    build_dataset("PointReach", "random", episodes=2, seed=0)
    assert sorted(datasets.list_goal_datasets()) == ["diffusion-baselines/pointreach-random-v0"]
    assert not datasets.get_dataset_path(dead).exists()


def _corrupt_metadata(folder):
    metadata = folder / "data" / "metadata.json"
    metadata.write_text(metadata.read_text()[:40])


def _truncate_hdf5(folder):
    data = folder / "data" / "main_data.hdf5"
    data.write_bytes(data.read_bytes()[:200])


def _drop_episode(folder):
    import h5py

    with h5py.File(folder / "data" / "main_data.hdf5", "a") as file:
        del file["episode_1"]


def _drop_key(folder):
    import h5py

    with h5py.File(folder / "data" / "main_data.hdf5", "a") as file:
        del file["episode_0"]["observations"]["desired_goal"]


@pytest.mark.parametrize("damage", [_corrupt_metadata, _truncate_hdf5, _drop_episode, _drop_key])
def test_a_damaged_dataset_is_reported_with_how_to_rebuild_it(damage):
    from envs import datasets

    build_dataset("PointReach", "random", episodes=3, seed=0)
    damage(datasets.get_dataset_path(dataset_id("PointReach", "random")))
    with pytest.raises(ValueError, match=r"is corrupt or incomplete .*rebuild it with python -m envs\.datasets build"):
        load_goal_dataset("pointreach-random-v0")
