"""End-to-end tests of train.py: tiny budgets, real environments, real files."""

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import tyro
import yaml
from stable_baselines3 import SAC

from runner import experiment
from runner.args import TrainArgs, train_command
from runner.experiment import main, train
from runner.kinds import online

ROOT = Path(__file__).resolve().parents[1]
TINY = {"learning_starts": "100", "batch_size": "32", "policy_kwargs": "{'net_arch': [32, 32]}"}


def tiny_args(tmp_path: Path, **overrides) -> TrainArgs:
    defaults = dict(
        algo="sac", env="Pendulum", total_timesteps=300, seed=3, eval_freq=0, eval_episodes=1, log_dir=tmp_path,
        progress=False, verbose=0, hyperparams=dict(TINY), num_threads=1,
    )  # fmt: skip
    return TrainArgs(**{**defaults, **overrides})


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_the_recorded_command_reproduces_the_arguments():
    args = TrainArgs(algo="dqs", env="Hopper", total_timesteps=100, seed=3, hyperparams={"temperature": "auto_0.1"},
                     log_dir=Path("runs/x y"), progress=False, trained_agent=Path("m.zip"), num_threads=None)  # fmt: skip
    command = train_command(args)
    assert command.startswith("python train.py --algo dqs --env Hopper") and "--eval-episodes" not in command
    assert tyro.cli(TrainArgs, args=shlex.split(command)[2:]) == args


def test_cli_smoke_writes_events_config_and_loadable_model(tmp_path: Path):
    hyper = [item for pair in TINY.items() for item in pair]
    result = run_cli(
        *("--algo", "sac", "--env", "Pendulum", "-n", "300", "--seed", "0", "--eval-freq", "200", "--eval-episodes", "1"),
        *("--log-dir", str(tmp_path), "--num-threads", "1", "--hyperparams", *hyper),
    )
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "sac").iterdir()
    assert run_dir.name.startswith("Pendulum-v1__seed0__")
    assert str(run_dir) in result.stdout and "tensorboard --logdir" in result.stdout
    assert list(run_dir.glob("events.out.tfevents.*"))
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["seed"] == 0 and config["env_id"] == "Pendulum-v1" and "train.py" in config["argv"]
    assert tyro.cli(TrainArgs, args=shlex.split(config["command"])[2:]) == TrainArgs(**{
        **config["args"], "log_dir": Path(config["args"]["log_dir"]), "seed": 0})  # fmt: skip
    assert config["versions"]["torch"] == torch.__version__ and config["hyperparams"]["learning_starts"] == 100
    assert (run_dir / "best_model.zip").is_file() and (run_dir / "evaluations.npz").is_file()
    assert "final_eval_mean_reward" in json.loads((run_dir / "results.json").read_text())
    model = SAC.load(run_dir / "model.zip")
    assert model.num_timesteps == 300
    action, _ = model.predict(np.zeros(3, dtype=np.float32), deterministic=True)
    assert action.shape == (1,)


def test_tensorboard_has_sb3_tags(tmp_path: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = train(tiny_args(tmp_path, total_timesteps=1000, eval_freq=500))  # rollout/ logs every 4 episodes
    tags = set(EventAccumulator(str(run_dir)).Reload().Tags()["scalars"])
    assert {"rollout/ep_rew_mean", "time/fps", "train/actor_loss", "train/critic_loss", "eval/mean_reward"} <= tags


def test_same_seed_is_repeatable_and_other_seed_differs(tmp_path: Path):
    def final_params(seed: int) -> torch.Tensor:
        run_dir = train(tiny_args(tmp_path, seed=seed))
        return torch.nn.utils.parameters_to_vector(SAC.load(run_dir / "model.zip").policy.parameters())

    first, second, other = final_params(5), final_params(5), final_params(6)
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_trained_agent_continues_with_replay_buffer(tmp_path: Path):
    first = train(tiny_args(tmp_path, save_replay_buffer=True))
    assert (first / "replay_buffer.pkl").is_file()
    second = train(tiny_args(tmp_path, total_timesteps=200, trained_agent=first / "model.zip",
                             hyperparams={"learning_rate": "1e-4"}))  # fmt: skip
    model = SAC.load(second / "model.zip")
    assert model.num_timesteps == 500
    assert model.learning_rate == 1e-4


def test_periodic_checkpoints(tmp_path: Path):
    run_dir = train(tiny_args(tmp_path, save_freq=100))
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert names == ["model_100_steps.zip", "model_200_steps.zip", "model_300_steps.zip"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"env": "HalfCheeta"}, "Did you mean: HalfCheetah"),
        ({"algo": "sacc"}, "Did you mean: sac"),
        ({"hyperparams": {"learnin_rate": "1e-3"}}, "did you mean learning_rate"),
        ({"trained_agent": Path("missing.zip")}, "does not exist"),
    ],
)
def test_bad_input_exits_with_clear_message(tmp_path: Path, overrides: dict, message: str):
    with pytest.raises(SystemExit, match=message):
        main(tiny_args(tmp_path, **overrides))
    assert not (tmp_path / "sac").exists()


def test_list_shows_algorithms_and_environments():
    result = run_cli("--list")
    assert result.returncode == 0
    for name in ("sac", "ppo", "crossq", "idem", "HalfCheetah-v5", "FetchReach-v4", "PointMaze_UMaze-v3", "DW4", "LJ13"):
        assert name in result.stdout


def test_sigint_leaves_loadable_checkpoint(tmp_path: Path):
    process = subprocess.Popen(
        [sys.executable, "train.py", "--env", "Pendulum", "-n", "1000000", "--seed", "0", "--no-progress",
         "--verbose", "0", "--log-dir", str(tmp_path), "--num-threads", "1", "--hyperparams", "learning_starts", "100"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("sac/*/progress.csv")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(3)  # past learning_starts: gradient updates are running
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Interrupted: saved a checkpoint" in stdout
    (run_dir,) = (tmp_path / "sac").iterdir()
    model = SAC.load(run_dir / "model.zip")
    assert 0 < model.num_timesteps < 1_000_000
    assert json.loads((run_dir / "results.json").read_text())["interrupted"] is True


def test_budget_below_learning_starts_warns(tmp_path: Path):
    with pytest.warns(UserWarning, match="50 steps do not exceed learning_starts=100"):
        train(tiny_args(tmp_path, total_timesteps=50))


def test_offline_run_builds_missing_dataset_on_request_and_reports_goal_metrics(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setenv("DIFFUSION_BASELINES_CACHE", str(tmp_path / "cache"))
    args = tiny_args(tmp_path, algo="merlin", env="PointReach", total_timesteps=60, eval_freq=30, eval_episodes=2,
                     hyperparams={"batch_size": "64"})  # fmt: skip
    with pytest.raises(FileNotFoundError, match=r"python -m envs\.datasets build --env PointReach --kind expert"):
        train(args)
    monkeypatch.setattr("envs.datasets.default_episodes", lambda task: 20)
    run_dir = train(tiny_args(tmp_path, **{**vars(args), "build_dataset": True}))
    results = json.loads((run_dir / "results.json").read_text())
    assert results["num_timesteps"] == 60 and (run_dir / "best_model.zip").is_file()
    assert set(results["final_eval"]) >= {"success_rate", "final_distance", "discounted_return"}
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["hyperparams"]["dataset"] == "diffusion-baselines/pointreach-expert-v0"


def test_a_crash_saves_nothing_and_results_stay_valid_json(tmp_path, monkeypatch):
    def crash(self, run_dir, stop):
        raise FloatingPointError("loss is nan")

    monkeypatch.setattr(online.Online, "learn_kwargs", crash)
    with pytest.raises(FloatingPointError):
        train(tiny_args(tmp_path))
    (run_dir,) = (tmp_path / "sac").iterdir()
    assert not (run_dir / "model.zip").exists()  # the last good checkpoint is not overwritten by a broken model
    assert json.loads(json.dumps(experiment._json_safe({"a": [float("nan"), 1.0], "b": float("inf")}), allow_nan=False)) == {
        "a": [None, 1.0],
        "b": None,
    }


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signals_during_the_final_save_lose_nothing(tmp_path, monkeypatch, signum):
    """Two signals while the files are written (as two Ctrl-C 50 ms apart): every file is still written, then the run
    exits with 128 + the signal."""
    save = online.Online.save

    def interrupted_save(self, run_dir):
        os.kill(os.getpid(), signum)
        os.kill(os.getpid(), signum)
        return save(self, run_dir)

    monkeypatch.setattr(online.Online, "save", interrupted_save)
    with pytest.raises(SystemExit) as exit_info:
        train(tiny_args(tmp_path, total_timesteps=120, save_replay_buffer=True))
    assert exit_info.value.code == 128 + signum
    (run_dir,) = (tmp_path / "sac").iterdir()
    assert {"model.zip", "replay_buffer.pkl", "results.json"} <= {path.name for path in run_dir.iterdir()}
    assert json.loads((run_dir / "results.json").read_text())["interrupted"] is True


def test_a_failed_final_evaluation_still_writes_results(tmp_path, monkeypatch):
    def failing(self, run_dir):
        raise ValueError("the reference split has 1000 rows")

    monkeypatch.setattr(online.Online, "final_results", failing)
    with pytest.raises(ValueError, match="reference split"):
        train(tiny_args(tmp_path, total_timesteps=120))
    (run_dir,) = (tmp_path / "sac").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["final_eval"] == "failed: ValueError: the reference split has 1000 rows"
    assert (run_dir / "model.zip").is_file()


def test_the_model_is_written_before_the_replay_buffer_and_a_failed_write_names_its_file(tmp_path, monkeypatch):
    import errno

    def full_disk(model, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(online, "save_replay_buffer", full_disk)
    with pytest.raises(OSError, match=r"No space left on device while writing .*replay_buffer\.pkl"):
        train(tiny_args(tmp_path, total_timesteps=120, save_replay_buffer=True))
    (run_dir,) = (tmp_path / "sac").iterdir()
    assert (run_dir / "model.zip").is_file() and not list(run_dir.glob(".*tmp*"))


def test_run_folders_started_in_the_same_second_never_clash(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from core.run import new_run_dir

    with ThreadPoolExecutor(8) as pool:
        folders = list(pool.map(lambda _: new_run_dir(tmp_path, "sac", "Pendulum-v1", 0), range(16)))
    assert len(set(folders)) == 16 and all(folder.is_dir() for folder in folders)


def test_a_replay_buffer_larger_than_free_memory_is_announced(monkeypatch):
    from gymnasium import spaces

    image, action = spaces.Box(0, 255, (3, 84, 84), np.uint8), spaces.Box(-1, 1, (6,), np.float32)
    assert online.replay_buffer_bytes({"buffer_size": 1000}, image, action) == 1000 * (2 * 3 * 84 * 84 + 24 + 12)
    monkeypatch.setattr(online, "available_memory", lambda: 10**9)
    with pytest.warns(UserWarning, match=r"needs about 42\.4 GB, more than the 1\.0 GB free: pass --hyperparams buffer_size"):
        online.warn_if_buffer_exceeds_memory({"buffer_size": 1_000_000}, image, action, 5000)


def test_a_sampler_stops_at_a_step_boundary(tmp_path):
    from samplers.energies import GaussianMixtureEnergy
    from samplers.idem import IDEM

    calls = []
    tiny = {"num_mc_samples": 8, "batch_size": 16, "inner_steps": 5, "samples_per_refresh": 16, "buffer_size": 64,
            "init_samples": 16, "integration_steps": 5, "hidden_dim": 16, "n_layers": 1, "eval_freq": 0}  # fmt: skip
    model = IDEM(GaussianMixtureEnergy([[0.0, 0.0]], stds=1.0), seed=0, **tiny)
    model.learn(50, stop=lambda: calls.append(1) or len(calls) > 7)  # the flag the Ctrl-C handler sets
    assert model.num_timesteps == 7


def test_ctrl_c_in_the_python_api_stops_a_sampler_at_a_step_boundary(tmp_path, monkeypatch):
    """model.learn(n) without a stop flag, Ctrl-C after step 4: the loop ends at the boundary and raises; the saved
    model then resumes exactly as an uninterrupted run."""
    from samplers.energies import GaussianMixtureEnergy
    from samplers.idem import IDEM

    tiny = {"num_mc_samples": 8, "batch_size": 16, "inner_steps": 5, "samples_per_refresh": 16, "buffer_size": 64,
            "init_samples": 16, "integration_steps": 5, "hidden_dim": 16, "n_layers": 1, "eval_freq": 0}  # fmt: skip
    target = GaussianMixtureEnergy([[0.0, 0.0]], stds=1.0)
    uninterrupted = IDEM(target, seed=0, **tiny).learn(10)
    model = IDEM(target, seed=0, **tiny)
    after_step = IDEM._after_step

    def ctrl_c_after_step_4(self, step, stats):
        after_step(self, step, stats)
        if step == 4:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(IDEM, "_after_step", ctrl_c_after_step_4)
    with pytest.raises(KeyboardInterrupt, match="stopped after step 4"):
        model.learn(10)
    monkeypatch.undo()
    model.save(tmp_path / "model.pt")
    resumed = IDEM.load(tmp_path / "model.pt", target=target).learn(6, reset_num_timesteps=False)
    for a, b in zip(resumed.network.state_dict().values(), uninterrupted.network.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_signal_during_the_final_evaluation_still_writes_results(tmp_path, monkeypatch):
    def interrupted(self, run_dir):
        raise KeyboardInterrupt  # what SIGTERM raises during the final evaluation

    monkeypatch.setattr(online.Online, "final_results", interrupted)
    with pytest.raises(SystemExit) as exit_info:
        train(tiny_args(tmp_path, total_timesteps=120))
    assert exit_info.value.code == 130
    (run_dir,) = (tmp_path / "sac").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["interrupted"] is True and results["final_eval"] == "interrupted"
    assert (run_dir / "model.zip").is_file()


def test_a_saved_replay_buffer_holds_its_filled_rows_only_and_loads_at_full_capacity(tmp_path):
    from agents.common.replay import save_replay_buffer

    model = SAC("MlpPolicy", "Pendulum-v1", buffer_size=100_000, learning_starts=50, seed=0,
                policy_kwargs={"net_arch": [8]}).learn(60)  # fmt: skip
    save_replay_buffer(model, tmp_path / "filled.pkl")
    model.save_replay_buffer(tmp_path / "whole.pkl")
    assert (tmp_path / "filled.pkl").stat().st_size < (tmp_path / "whole.pkl").stat().st_size / 100
    other = SAC("MlpPolicy", "Pendulum-v1", buffer_size=100_000, policy_kwargs={"net_arch": [8]})
    other.load_replay_buffer(tmp_path / "filled.pkl")  # SB3's own loader
    loaded, original = other.replay_buffer, model.replay_buffer
    assert loaded.buffer_size == 100_000 and loaded.pos == original.pos == 60 and not loaded.full
    for name in ("observations", "actions", "rewards", "dones", "timeouts"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(original, name))
    other.learn(10, reset_num_timesteps=False)  # adds on after the restored rows
    assert other.replay_buffer.pos == 70


def test_a_checkpoint_resumes_with_its_own_replay_buffer(tmp_path):
    train(tiny_args(tmp_path, total_timesteps=200, save_freq=100, save_replay_buffer=True))
    (run_dir,) = (tmp_path / "sac").iterdir()
    resumed = train(tiny_args(tmp_path / "resumed", total_timesteps=20, load_replay_buffer=True,
                              trained_agent=run_dir / "checkpoints" / "model_100_steps.zip"))  # fmt: skip
    assert json.loads((resumed / "results.json").read_text())["num_timesteps"] == 120


def test_a_resumed_model_evaluates_on_its_runs_step_grid(tmp_path):
    first = train(tiny_args(tmp_path, total_timesteps=150, eval_freq=100))
    resumed = train(tiny_args(tmp_path / "resumed", total_timesteps=150, eval_freq=100,
                              trained_agent=first / "model.zip"))  # fmt: skip
    assert np.load(resumed / "evaluations.npz")["timesteps"].tolist() == [200, 300]


def test_periodic_checkpoints_include_the_replay_buffer_when_asked(tmp_path):
    train(tiny_args(tmp_path, total_timesteps=200, save_freq=100, save_replay_buffer=True))
    (run_dir,) = (tmp_path / "sac").iterdir()
    names = sorted(path.name for path in (run_dir / "checkpoints").iterdir())
    assert names == [
        "model_100_steps.zip",
        "model_200_steps.zip",
        "replay_buffer_100_steps.pkl",
        "replay_buffer_200_steps.pkl",
    ]
