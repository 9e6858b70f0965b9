"""What the SB3-style kinds (online and offline agents) share: the Gymnasium target and its hyperparameters, building a
model from them or loading ``--trained-agent`` with the command line's overrides, and the vectorised evaluation
environments."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from envs.registry import EVAL_ENVS, make_env, resolve_env_id
from runner.args import TrainArgs
from runner.hyperparams import Hyperparams, apply_overrides, hyperparams_for, split_run_keys
from runner.kinds.base import Runner, check_trained_agent


def make_model(algo_class: type[BaseAlgorithm], args: TrainArgs, hyperparams: Hyperparams, env: Any, seed: int) -> Any:
    """Build a new SB3-style model, or load ``--trained-agent`` with the CLI overrides applied."""
    if args.trained_agent is None:
        return algo_class(hyperparams.policy, env, seed=seed, device=args.device, verbose=args.verbose, **hyperparams.kwargs)
    check_trained_agent(args, "a model .zip")
    # Only what the user asked for on the command line; the network layout (policy_kwargs) is fixed by the zip.
    overrides = split_run_keys(apply_overrides({}, args.hyperparams, algo_class)).kwargs
    overrides.pop("policy_kwargs", None)
    try:
        model = algo_class.load(args.trained_agent, env=env, device=args.device, **overrides)
    # SB3's loader reports a truncated zip with an assert and another algorithm's zip with a TypeError of its policy.
    except (zipfile.BadZipFile, KeyError, EOFError, RuntimeError, ValueError, AttributeError, AssertionError,
            TypeError) as error:  # fmt: skip
        detail = str(error).removeprefix("Error: ") or type(error).__name__
        raise ValueError(
            f"--trained-agent {args.trained_agent} cannot be loaded as a {algo_class.__name__} model ({detail}); pass a "
            f"model.zip that {algo_class.__name__} saved"
        ) from None
    if args.load_replay_buffer:
        buffer_path = replay_buffer_beside(args.trained_agent)
        if not isinstance(model, OffPolicyAlgorithm):
            raise ValueError(f"--load-replay-buffer: {algo_class.__name__} has no replay buffer")
        if not buffer_path.is_file():
            raise FileNotFoundError(f"--load-replay-buffer: {buffer_path} does not exist")
        model.load_replay_buffer(buffer_path)
    return model


def replay_buffer_beside(model_path: Path) -> Path:
    """The replay buffer saved with a model: ``replay_buffer_<N>_steps.pkl`` beside a checkpoint
    ``model_<N>_steps.zip``, else ``replay_buffer.pkl`` in the model's folder."""
    checkpoint = re.fullmatch(r"model_(\d+)_steps\.zip", model_path.name)
    name = f"replay_buffer_{checkpoint.group(1)}_steps.pkl" if checkpoint else "replay_buffer.pkl"
    return model_path.parent / name


def evaluation_env(env_factory: Callable[[], Any], episodes: int, seed: int) -> Any:
    """Vectorised evaluation environments (up to `EVAL_ENVS`, each seeded ``seed + i``) for ``episodes`` episodes."""
    return make_vec_env(env_factory, n_envs=max(1, min(episodes, EVAL_ENVS)), seed=seed)


TRAIN_EVAL_SEED = 10_000  # added to the run's seed: the evaluation envs during training
FINAL_EVAL_SEED = 20_000  # added to the run's seed: those of the final evaluation (fresh episodes)


class GymRunner(Runner):
    """A kind whose target is a Gymnasium environment (a short name or a full id)."""

    @classmethod
    def resolve_target(cls, name: str) -> str:
        return resolve_env_id(name)

    def _resolve(self, args: TrainArgs, algo: str, algo_class: type[BaseAlgorithm], seed: int) -> Hyperparams:
        """Set the run's arguments, seed, environment id and environment factory; return the resolved
        hyperparameters."""
        self.args, self.seed = args, seed
        self.target = self.resolve_target(args.env)
        hyperparams = hyperparams_for(algo, self.target, args.hyperparams, algo_class)
        self.env_factory = partial(make_env, self.target, **hyperparams.run.get("env_kwargs", {}))
        return hyperparams

    def eval_env(self, seed_offset: int) -> Any:
        """The env copies of an evaluation of ``args.eval_episodes`` episodes, seeded seed + ``seed_offset`` + i
        (`TRAIN_EVAL_SEED` during training, `FINAL_EVAL_SEED` for the final model)."""
        return evaluation_env(self.env_factory, self.args.eval_episodes, self.seed + seed_offset)
