"""What the kinds trained by gradient steps on a named target share (samplers of an energy, PDE solvers): the model
is built from the target's name and the resolved hyperparameters, or resumed from a ``.pt`` checkpoint with its own
configuration; it learns with the run's checkpoint folder and stop flag and is saved as ``model.pt``."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Any

from runner.args import TrainArgs
from runner.hyperparams import hyperparams_for
from runner.kinds.base import Runner, budget, check_trained_agent


class TargetModel(Runner):
    """A model trained by gradient steps on a named target (an energy, a PDE problem) and saved as ``model.pt``: a
    sampler or a PDE solver. It takes the run's checkpoint folder and stop flag, and a resumed one keeps its own
    configuration."""

    def __init__(self, args: TrainArgs, algo: str, algo_class: type, seed: int) -> None:
        self.args = args
        self.target = self.resolve_target(args.env)
        self.hyperparams = hyperparams_for(algo, args.env, args.hyperparams, algo_class)
        self.total_timesteps = budget(args, self.hyperparams, self.default_budget)
        kwargs = self.hyperparams.kwargs | ({} if args.eval_freq is None else {"eval_freq": args.eval_freq})
        check_trained_agent(args, "a checkpoint .pt")
        if args.trained_agent is not None and args.hyperparams:
            warnings.warn(
                f"--hyperparams {' '.join(f'{k} {v}' for k, v in args.hyperparams.items())} ignored: a resumed {algo} "
                f"keeps the configuration of {args.trained_agent}",
                stacklevel=3,
            )
        self.model = (
            algo_class(args.env, seed=seed, device=args.device, **kwargs)
            if args.trained_agent is None
            else algo_class.load(args.trained_agent, device=args.device)
        )
        self.config = {"env_id": self.target, "total_timesteps": self.total_timesteps, "device": str(self.model.device),
                       "hyperparams": self.hyperparams.as_dict()}  # fmt: skip

    def learn_kwargs(self, run_dir: Path, stop: threading.Event) -> dict[str, Any]:
        return {"checkpoint_dir": run_dir / "checkpoints", "checkpoint_freq": max(self.args.save_freq, 0),
                "stop": stop.is_set}  # fmt: skip

    def save(self, run_dir: Path) -> Path:
        return self.model.save(run_dir / "model.pt")
