"""The experiment behind `train.py`: one pipeline for every kind of model. Resolve the algorithm and its kind's
`runner.kinds.Runner` (which resolves the target, the hyperparameters and the model), create the run folder, train
with evaluation and checkpoints, and always leave a usable model behind (also on Ctrl-C)."""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, is_dataclass, replace
from pathlib import Path
from typing import Any

import torch
from stable_baselines3.common.logger import configure

from causal.data import CASES
from core.cli import run_cli
from core.interrupts import Interrupts
from core.io import atomic_write
from core.run import new_run_dir, write_run_config
from envs.registry import ENV_ALIASES
from pde.problems import PDE_PROBLEMS
from runner.args import TrainArgs, check_args, train_command
from runner.kinds import runner_of
from runner.registry import ALGOS, get_algo
from samplers.energies import ENERGIES


def list_registry() -> str:
    """Human-readable table of algorithms and environments for `--list`."""
    lines = ["Algorithms:"]
    lines += [f"  {spec.name:<10} {spec.kind:<8} {spec.description}" for spec in ALGOS.values()]
    lines.append("Environments (short name -> id; any registered Gymnasium id also works):")
    lines += [f"  {name:<28} {env_id}" for name, env_id in ENV_ALIASES.items()]
    lines.append(
        "Energy targets (for sampler algorithms, e.g. --algo idem --env DW4; a CPU preset on a CPU, the "
        "reference preset on a GPU, --hyperparams preset reference|cpu to choose):"
    )
    lines += [f"  {name:<28} {factory.__name__}" for name, factory in ENERGIES.items()]
    lines.append("PDE problems (for --algo pinn, e.g. --env Burgers):")
    lines += [f"  {name:<28} {p.pde.name} on [0, {p.length:g}) x [0, {p.t_max:g}]" for name, p in PDE_PROBLEMS.items()]
    lines.append(
        "Causal tasks (for --algo ilcm|ilcm-atomic|ilcm-oracle|dvae|betavae, e.g. --env chain4-12-34.nonlinear.mlp;"
        " <case>.<linear|nonlinear>.<mlp|rotation>[.shifted]; python -m causal.data list prints them):"
    )
    lines += [f"  {case:<28} {spec_id}: {graph}, targets {family}" for case, (spec_id, graph, family) in CASES.items()]
    from crystals.data import DATASETS, data_dir  # imported here: pymatgen is slow to import

    lines.append(f"Crystal datasets (for --algo diffcsp|symmcd, e.g. --env Carbon24; trained on val, evaluated on test; "
                 f"read from {data_dir()}):")  # fmt: skip
    lines += [f"  {name:<28} {spec.folder}/" for name, spec in DATASETS.items()]
    return "\n".join(lines)


def _json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None, so that results.json stays valid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def _write_results(run_dir: Path, results: dict[str, Any]) -> None:
    """Write results.json atomically (valid JSON: non-finite floats become null)."""
    text = json.dumps(_json_safe(results), indent=2, allow_nan=False)
    atomic_write(run_dir / "results.json", lambda p: p.write_text(text))


def _print_outcome(args: TrainArgs, run_dir: Path, model_path: Path, results: dict[str, Any]) -> None:
    """Say how the run ended and where everything is."""
    status = "Interrupted: saved a checkpoint" if results["interrupted"] else "Done"
    print(f"{status} after {results['num_timesteps']} steps ({results['wall_time_s']:.0f} s).")
    print(f"  model:       {model_path}")
    print(f"  run folder:  {run_dir}")
    print(f"  TensorBoard: tensorboard --logdir {args.log_dir}")


def _start_run(args: TrainArgs, algo: str, target: str, seed: int, config: dict[str, Any], model: Any) -> Path:
    """Create the run folder, write config.yaml (with the model's resolved config, the frozen dataclass of the
    library's models, whatever the kind) and point the model's logger at it."""
    run_dir = new_run_dir(args.log_dir, algo, target, seed)
    command = train_command(replace(args, seed=seed))
    resolved = getattr(model, "config", None)
    config = {**config, "config": asdict(resolved)} if is_dataclass(resolved) else config
    write_run_config(run_dir, {"algo": algo, "env": args.env, "seed": seed, **config, "args": asdict(args)}, command)
    formats = ["stdout", "csv", "tensorboard"] if args.verbose else ["csv", "tensorboard"]
    model.set_logger(configure(str(run_dir), formats))
    return run_dir


def train(args: TrainArgs, on_evaluation: Callable[[int, float], None] | None = None) -> Path:
    """Run one experiment and return its run folder: the same pipeline for every kind of algorithm.
    ``on_evaluation(timesteps, mean_return)`` is called after every periodic evaluation of an online run (the sweep
    engine reports them to its scheduler)."""
    check_args(args)
    spec = get_algo(args.algo)
    algo_class = spec.load_class()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    runner = runner_of(spec.kind)(args, spec.name, algo_class, seed)
    runner.on_evaluation = on_evaluation
    run_dir = _start_run(args, spec.name, runner.target, seed, runner.config, runner.model)
    interrupts, failure = Interrupts(), None
    with interrupts.installed():
        start = time.perf_counter()
        try:
            with interrupts.abortable(on_first=False):
                runner.model.learn(runner.total_timesteps, progress_bar=args.progress,
                                   reset_num_timesteps=args.trained_agent is None,
                                   **runner.learn_kwargs(run_dir, interrupts.stop))  # fmt: skip
        except KeyboardInterrupt:
            pass  # a crash (a non-finite loss, a bug) propagates instead: nothing is saved, the last checkpoint stays
        wall_time = time.perf_counter() - start
        model_path = runner.save(run_dir)
        results: dict[str, Any] = {"num_timesteps": runner.model.num_timesteps, "wall_time_s": wall_time,
                                   "interrupted": interrupts.stop.is_set()}  # fmt: skip
        if not results["interrupted"]:
            try:
                with interrupts.abortable(on_first=True):
                    results |= runner.final_results(run_dir)
            except KeyboardInterrupt:
                results |= {"interrupted": True, "final_eval": "interrupted"}
            except Exception as error:  # the trained model is saved: results.json says what failed, then it is raised
                results["final_eval"] = f"failed: {type(error).__name__}: {error}"
                failure = error
        _write_results(run_dir, results)
    _print_outcome(args, run_dir, model_path, results)
    if failure is not None:
        raise failure
    if results["interrupted"]:
        raise SystemExit(interrupts.exit_code)
    return run_dir


def main(args: TrainArgs) -> None:
    """CLI entry: `--list`, or train; errors are one line (`core.cli.run_cli`)."""
    if args.list:
        print(list_registry())
        return
    run_cli(lambda: train(args))
