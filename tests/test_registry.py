import pytest
from stable_baselines3 import SAC
from stable_baselines3.common.utils import LinearSchedule

from runner.hyperparams import apply_overrides, check_keys, default_hyperparams, parse_value
from runner.registry import ALGOS, get_algo, register_algo


def test_sb3_baselines_are_registered_and_importable():
    for name in ("sac", "td3", "ddpg", "ppo", "a2c", "tqc", "crossq"):
        assert get_algo(name).load_class().__name__.lower() == name


def test_unknown_algorithm_suggests():
    with pytest.raises(ValueError, match="Did you mean: sac"):
        get_algo("sacc")


def test_duplicate_registration_rejected():
    with pytest.raises(ValueError, match="already registered"):
        register_algo("sac", "stable_baselines3:SAC")
    assert ALGOS["sac"].target == "stable_baselines3:SAC"


def test_hyperparams_merge_default_pattern_and_env():
    fetch = default_hyperparams("sac", "FetchReach-v4")
    assert fetch["policy"] == "MultiInputPolicy" and fetch["replay_buffer_class"].__name__ == "HerReplayBuffer"
    cheetah = default_hyperparams("sac", "HalfCheetah-v5")
    assert cheetah["policy"] == "MlpPolicy" and cheetah["n_timesteps"] == 50_000
    cheetah["policy"] = "changed"
    assert default_hyperparams("sac", "HalfCheetah-v5")["policy"] == "MlpPolicy"


def test_parse_values():
    assert parse_value("3e-4") == 3e-4
    assert parse_value("[64, 64]") == [64, 64]
    assert parse_value("{'net_arch': [32]}") == {"net_arch": [32]}
    assert parse_value("auto") == "auto"
    schedule = parse_value("lin_1e-3")
    assert isinstance(schedule, LinearSchedule) and schedule(1.0) == pytest.approx(1e-3) and schedule(0.0) == 0.0


def test_unknown_hyperparameter_is_rejected_with_suggestion():
    with pytest.raises(ValueError, match=r"'learnin_rate' \(did you mean learning_rate"):
        apply_overrides({}, {"learnin_rate": "1e-3"}, SAC)
    assert apply_overrides({"a": 1}, {"batch_size": "64"}, SAC) == {"a": 1, "batch_size": 64}


def test_unknown_keys_are_rejected_one_way_everywhere():
    """The same error type (a TypeError and a ValueError), naming the closest known key, wherever a key enters."""
    from agents.dqs import DQS
    from agents.merlin.noise import make_noise_config
    from core.config import UnknownKeyError
    from pde.solver import PINNSolver
    from samplers.idem import IDEM

    attempts = {
        "lerning_rate": lambda: check_keys(["lerning_rate"], get_algo("sac").load_class()),
        "temperatur": lambda: DQS("MlpPolicy", "Pendulum-v1", temperatur=1.0),
        "hiden_dim": lambda: IDEM("GMM40", hiden_dim=8),
        "symmetry_weigth": lambda: PINNSolver("Heat", symmetry_weigth=1.0),
        "treshold": lambda: make_noise_config("stitching", {"treshold": 0.5}),
    }
    for key, attempt in attempts.items():
        with pytest.raises(UnknownKeyError, match=f"got unknown .*'{key}' \\(did you mean "):
            attempt()
    assert issubclass(UnknownKeyError, TypeError) and issubclass(UnknownKeyError, ValueError)
