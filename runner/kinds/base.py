"""The plug-in protocol of a kind of model: everything `runner.experiment.train` needs to know about one kind (an SB3
agent on a Gym environment, an offline agent on a dataset, a sampler of an energy, a PDE solver), so that the pipeline
itself never branches on the kind."""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from core.io import atomic_save
from runner.args import TrainArgs
from runner.hyperparams import Hyperparams


class Runner(abc.ABC):
    """One kind of model in `train`'s pipeline: ``__init__`` resolves the target, builds (or resumes) the model and
    its budget; then `learn_kwargs`, `save` and `final_results` drive it. Register a new kind in `runner.kinds.KINDS`.

    :param args: The run's arguments
    :param algo: The algorithm's registered name
    :param algo_class: Its class
    :param seed: The run's seed (drawn by `train` when ``args.seed`` is None)
    """

    #: Training steps of a run without ``-n`` and without a per-env default in `runner.hyperparams`.
    default_budget: ClassVar[int]
    #: The resolved target: a Gymnasium id, an energy name, a PDE problem name.
    target: str
    model: Any
    total_timesteps: int
    #: Entries of config.yaml besides algo, env, seed and the CLI arguments (the model's resolved config among them).
    config: dict[str, Any]
    #: Called with (timesteps, mean return) after every periodic evaluation (the sweep engine's scheduler).
    on_evaluation: Callable[[int, float], None] | None = None

    @classmethod
    @abc.abstractmethod
    def resolve_target(cls, name: str) -> str:
        """The one name of the target ``name`` (a short name resolved to its full id); a ValueError naming close
        matches when there is no such target. The sweep engine names trials by it."""

    @abc.abstractmethod
    def __init__(self, args: TrainArgs, algo: str, algo_class: type, seed: int) -> None: ...

    def learn_kwargs(self, run_dir: Path, stop: threading.Event) -> dict[str, Any]:
        """Keyword arguments of ``model.learn`` besides the budget, the progress bar and reset_num_timesteps; the
        learn loop must end at the next step boundary once ``stop`` is set."""
        return {}

    def save(self, run_dir: Path) -> Path:
        """Write the final model into ``run_dir`` atomically; returns its path."""
        return atomic_save(self.model, run_dir / "model.zip")

    def final_results(self, run_dir: Path) -> dict[str, Any]:
        """Entries of results.json after an uninterrupted run (the final evaluation)."""
        return {}


def budget(args: TrainArgs, hyperparams: Hyperparams, default: int) -> int:
    """``-n`` when given (an explicit value, 0 included, is never replaced), else the table's, else ``default``."""
    return hyperparams.run.get("n_timesteps", default) if args.total_timesteps is None else args.total_timesteps


def check_trained_agent(args: TrainArgs, expected: str) -> None:
    """A FileNotFoundError when ``--trained-agent`` names no file (``expected``: what it should be)."""
    if args.trained_agent is not None and not args.trained_agent.is_file():
        raise FileNotFoundError(f"--trained-agent {args.trained_agent} does not exist (expected {expected}).")
