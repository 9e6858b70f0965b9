"""Bad inputs through every command-line entry point: each is refused with a one-line message that says what is wrong
(and how to fix it), through `core.cli.run_cli` (SystemExit with the message, so no traceback is printed), before
anything is trained or written."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import tyro

from envs import datasets
from pde.solver import PINNSolver
from runner.args import TrainArgs
from runner.experiment import main
from samplers import evaluate

PENDULUM = ["--env", "Pendulum", "-n", "50", "--no-progress", "--verbose", "0"]
TRAIN_CASES: list[tuple[str, list[str], str]] = [
    ("zero steps", ["--algo", "sac", *PENDULUM, "-n", "0"], "-n/--total-timesteps must be a positive integer, got 0"),
    ("negative steps", ["--algo", "sac", *PENDULUM, "-n", "-5"], "-n/--total-timesteps must be a positive integer"),
    ("zero envs", ["--algo", "sac", *PENDULUM, "--n-envs", "0"], "--n-envs must be a positive integer"),
    ("negative seed", ["--algo", "sac", *PENDULUM, "--seed", "-1"], "--seed must be an integer in [0, 2**32)"),
    ("huge seed", ["--algo", "sac", *PENDULUM, "--seed", str(2**40)], "--seed must be an integer in [0, 2**32)"),
    ("zero threads", ["--algo", "sac", *PENDULUM, "--num-threads", "0"], "--num-threads must be a positive integer"),
    ("unknown device", ["--algo", "sac", *PENDULUM, "--device", "tpu"], "unknown --device 'tpu'"),
    ("negative eval episodes", ["--algo", "sac", *PENDULUM, "--eval-episodes", "-1"], "--eval-episodes must be >= 0"),
    ("negative samples", ["--algo", "idem", "--env", "GMM40", "--n-samples", "-1"], "--n-samples must be >= 0"),
    ("gamma above 1", ["--algo", "sac", *PENDULUM, "--hyperparams", "gamma", "1.5"], "gamma must be in [0.0, 1.0]"),
    ("negative gamma", ["--algo", "dqs", *PENDULUM, "--hyperparams", "gamma", "-0.1"], "gamma must be in [0.0, 1.0]"),
    ("tau above 1", ["--algo", "td3", *PENDULUM, "--hyperparams", "tau", "2"], "tau must be in [0.0, 1.0]"),
    ("empty buffer", ["--algo", "sac", *PENDULUM, "--hyperparams", "buffer_size", "0"], "buffer_size must be a positive"),
    ("zero batch", ["--algo", "dqs", *PENDULUM, "--hyperparams", "batch_size", "0"], "batch_size must be a positive"),
    ("text for a number", ["--algo", "sac", *PENDULUM, "--hyperparams", "batch_size", "abc"], "batch_size must be a number"),
    ("text for a dqs knob", ["--algo", "dqs", *PENDULUM, "--hyperparams", "n_mc_samples", "many"], "must be a number"),
    ("text for a bool", ["--algo", "sac", *PENDULUM, "--hyperparams", "use_sde", "yes"], "use_sde must be True or False"),
    ("negative learning rate", ["--algo", "sac", *PENDULUM, "--hyperparams", "learning_rate", "-1"],
     "learning_rate must be positive"),
    ("malformed policy_kwargs", ["--algo", "sac", *PENDULUM, "--hyperparams", "policy_kwargs", "{'net_arch': [64"],
     "policy_kwargs must be a dict literal"),
    ("infinite learning rate", ["--algo", "sac", *PENDULUM, "--hyperparams", "learning_rate", "1e999"],
     "learning_rate must be a finite number, got inf"),
    ("infinite PINN learning rate", ["--algo", "pinn", "--env", "Heat", "-n", "1", "--hyperparams", "learning_rate",
                                     "1e999"], "learning_rate must be a finite number"),
    ("an iDEM network that does not exist", ["--algo", "idem", "--env", "GMM40", "--hyperparams", "network",
                                             "'transformer'"], "network must be one of 'mlp', 'egnn'"),
    ("an iDEM init that does not exist", ["--algo", "idem", "--env", "GMM40", "--hyperparams", "init_from", "'bar'"],
     "init_from must be one of"),
    ("zero temperature", ["--algo", "dqs", *PENDULUM, "--hyperparams", "temperature", "0"], "temperature must be"),
    ("negative temperature", ["--algo", "dqs", *PENDULUM, "--hyperparams", "temperature", "-1"], "temperature must be"),
    ("unknown backup", ["--algo", "dqs", *PENDULUM, "--hyperparams", "backup", "'hardd'"], "backup must be one of"),
    ("sampler knob in policy_kwargs", ["--algo", "dqs", *PENDULUM, "--hyperparams", "policy_kwargs",
                                       "{'sampler_steps': 3}"], "as DQS arguments, not in policy_kwargs"),
    ("misspelt key", ["--algo", "sac", *PENDULUM, "--hyperparams", "lerning_rate", "1e-3"],
     "got unknown hyperparameters 'lerning_rate' (did you mean learning_rate"),
    ("a knob GCSL fixes", ["--algo", "gcsl", "--env", "PointReach", "--hyperparams", "her_ratio", "0.5"],
     "got unknown hyperparameters 'her_ratio'"),
    ("unknown algorithm", ["--algo", "sacc", *PENDULUM], "Unknown algorithm 'sacc'. Did you mean: sac"),
    ("unknown env", ["--algo", "sac", "--env", "HalfCheetahh"], "Unknown environment 'HalfCheetahh'"),
    ("unknown energy", ["--algo", "idem", "--env", "DW-4x"], "Did you mean 'DW4'"),
    ("missing dataset", ["--algo", "merlin", "--env", "PointReach", "--hyperparams", "dataset", "'nope/none-v0'"],
     "not found"),
    ("missing model", ["--algo", "sac", *PENDULUM, "--trained-agent", "{tmp}/missing.zip"], "does not exist"),
    ("truncated model", ["--algo", "sac", *PENDULUM, "--trained-agent", "{tmp}/truncated.zip"],
     "cannot be loaded as a SAC model"),
    ("crafted sampler checkpoint", ["--algo", "idem", "--env", "GMM40", "--trained-agent", "{tmp}/crafted.pt"],
     "never unpickled"),
    ("half a zip", ["--algo", "dqs", *PENDULUM, "--trained-agent", "{tmp}/half.zip"], "cannot be loaded as a DQS model"),
    ("a SAC zip as DQS", ["--algo", "dqs", *PENDULUM, "--trained-agent", "{tmp}/sac.zip"],
     "cannot be loaded as a DQS model"),
    ("half a checkpoint", ["--algo", "idem", "--env", "GMM40", "--trained-agent", "{tmp}/half.pt"],
     "half.pt: truncated, or not a .pt checkpoint"),
    ("a zip as a sampler checkpoint", ["--algo", "idem", "--env", "GMM40", "--trained-agent", "{tmp}/sac.zip"],
     "sac.zip: truncated, or not a .pt checkpoint"),
    ("another model's checkpoint", ["--algo", "idem", "--env", "GMM40", "--trained-agent", "{tmp}/pinn.pt"],
     "IDEM cannot load"),
    ("crafted PINN checkpoint", ["--algo", "pinn", "--env", "Heat", "--trained-agent", "{tmp}/crafted.pt"],
     "never unpickled"),
    ("log dir under a file", ["--algo", "sac", *PENDULUM, "--log-dir", "{tmp}/a_file/runs"], "which is a file"),
    ("replay buffer not there", ["--algo", "sac", *PENDULUM, "--trained-agent", "{tmp}/sac.zip", "--load-replay-buffer"],
     "replay_buffer.pkl does not exist"),
]  # fmt: skip


class _WritesAMarker:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bad files the cases point at: a truncated zip, a crafted checkpoint, a plain file, a real SAC zip whose
    replay_buffer.pkl is crafted (and must not be read unless asked)."""
    from stable_baselines3 import SAC

    tmp = tmp_path_factory.mktemp("bad")
    (tmp / "truncated.zip").write_bytes(b"PK\x03\x04 not really a zip")
    torch.save({"target": "GMM40", "config": _WritesAMarker(tmp / "executed")}, tmp / "crafted.pt")
    (tmp / "a_file").write_text("not a folder")
    SAC("MlpPolicy", "Pendulum-v1", policy_kwargs={"net_arch": [8]}).save(tmp / "sac.zip")
    (tmp / "half.zip").write_bytes((tmp / "sac.zip").read_bytes()[: (tmp / "sac.zip").stat().st_size // 2])
    PINNSolver("Heat", hidden_dim=8, n_layers=1, latent_dim=4).save(tmp / "pinn.pt")
    (tmp / "half.pt").write_bytes((tmp / "pinn.pt").read_bytes()[: (tmp / "pinn.pt").stat().st_size // 2])
    return tmp


@pytest.mark.parametrize(("name", "argv", "message"), TRAIN_CASES, ids=[case[0] for case in TRAIN_CASES])
def test_train_py_refuses_in_one_line(name: str, argv: list[str], message: str, files: Path) -> None:
    if name == "unknown device" and torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    args = tyro.cli(TrainArgs, args=[arg.replace("{tmp}", str(files)) for arg in argv])
    args.log_dir = args.log_dir if "{tmp}" in " ".join(argv) and "--log-dir" in argv else files / "runs"
    with pytest.raises(SystemExit) as error:
        main(args)
    text = str(error.value)
    assert text.startswith("error: ") and message in text, text
    assert "\n" not in text.strip() and "Traceback" not in text
    assert not (files / "executed").exists()
    assert not list((files / "runs").rglob("model.*")) if (files / "runs").exists() else True


def test_cuda_without_cuda_is_refused(files: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    with pytest.raises(SystemExit, match="CUDA is not available on this machine: use --device cpu"):
        main(tyro.cli(TrainArgs, args=["--algo", "sac", *PENDULUM, "--device", "cuda", "--log-dir", str(files / "r")]))


def test_a_replay_buffer_beside_the_model_is_not_unpickled_unless_asked(files: Path) -> None:
    folder = files / "resume"
    folder.mkdir()
    (folder / "sac.zip").write_bytes((files / "sac.zip").read_bytes())
    with (folder / "replay_buffer.pkl").open("wb") as handle:
        pickle.dump(_WritesAMarker(files / "buffer_executed"), handle)
    argv = ["--algo", "sac", *PENDULUM, "-n", "1", "--eval-freq", "0", "--eval-episodes", "0", "--trained-agent",
            str(folder / "sac.zip"), "--log-dir", str(files / "resumed")]  # fmt: skip
    main(tyro.cli(TrainArgs, args=argv))
    assert not (files / "buffer_executed").exists()


def test_datasets_build_refuses_zero_episodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    with pytest.raises(SystemExit, match="--episodes must be a positive number of episodes, got 0"):
        datasets.main(datasets.BuildArgs(env="PointReach", kind="random", episodes=0))
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["{tmp}/missing"], "missing"), (["{tmp}/a_file"], "a_file"), (["{tmp}", "--n-samples", "0"], "n_samples")],
)
def test_samplers_evaluate_refuses_in_one_line(argv: list[str], message: str, files: Path) -> None:
    with pytest.raises(SystemExit) as error:
        evaluate.main([arg.replace("{tmp}", str(files)) for arg in argv])
    assert str(error.value).startswith("error: ") and message in str(error.value)


def test_a_zip_of_another_algorithm_is_refused(files: Path) -> None:
    from stable_baselines3 import PPO

    PPO("MlpPolicy", "Pendulum-v1", n_steps=16, batch_size=16, policy_kwargs={"net_arch": [8]}).save(files / "ppo.zip")
    with pytest.raises(SystemExit) as error:
        main(tyro.cli(TrainArgs, args=["--algo", "sac", *PENDULUM, "--trained-agent", str(files / "ppo.zip"),
                                       "--log-dir", str(files / "foreign")]))  # fmt: skip
    assert str(error.value).startswith("error: ")
    assert zipfile.is_zipfile(files / "ppo.zip")


def test_more_samples_than_the_reference_split_is_refused_before_training(tmp_path: Path, monkeypatch) -> None:
    from samplers.energies import BOLTZMANN_DIR_ENV

    np.save(tmp_path / "dw4_val.npy", np.random.default_rng(0).normal(size=(50, 8)))
    monkeypatch.setenv(BOLTZMANN_DIR_ENV, str(tmp_path))
    argv = ["--algo", "idem", "--env", "DW4", "-n", "20", "--n-samples", "200", "--log-dir", str(tmp_path / "runs")]
    with pytest.raises(SystemExit, match=r"--n-samples 200: DW4 val split has 50 rows.*pass a smaller --n-samples"):
        main(tyro.cli(TrainArgs, args=argv))
    assert not (tmp_path / "runs").exists()  # nothing trained, no run folder


def test_a_config_yaml_with_an_unsafe_tag_is_refused_in_one_line(tmp_path: Path) -> None:
    np.save(tmp_path / "samples.npy", np.zeros((4, 2)))
    (tmp_path / "config.yaml").write_text("env: !!python/object/apply:os.system ['touch executed']\n")
    with pytest.raises(SystemExit) as error:
        evaluate.main([str(tmp_path)])
    assert "config.yaml is not a run's config.yaml" in str(error.value) and "--energy" in str(error.value)
    assert not (tmp_path / "executed").exists()
