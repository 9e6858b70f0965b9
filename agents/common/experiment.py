"""The experiment behind `train.py`: resolve algorithm, environment and hyperparameters, create the run folder,
train with evaluation and checkpoints, and always leave a usable model behind (also on Ctrl-C)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shlex
import signal
import threading
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import tyro
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from agents.common.callbacks import CheckpointCallback, SaveBestCallback
from agents.common.run import new_run_dir, write_run_config
from agents.hyperparams import Hyperparams, apply_overrides, hyperparams_for, split_run_keys
from agents.merlin import GoalEvalCallback, evaluate_goal_policy
from agents.pinn import PINNSolver
from agents.registry import ALGOS, get_algo
from core.cli import run_cli
from core.io import atomic_save, atomic_write
from envs.datasets import (
    GOAL_TASKS,
    build_command,
    build_dataset,
    dataset_id,
    default_episodes,
    open_dataset,
    parse_dataset_id,
)
from envs.pde_problems import PDE_PROBLEMS, make_pde_problem
from envs.registry import ENV_ALIASES, make_env, resolve_env_id
from samplers.base import BaseSampler
from samplers.energies import ENERGIES, make_energy

DEFAULT_EVAL_FREQ = 10_000  # environment steps between evaluations of RL agents
#: Most evaluation episodes run side by side: one batched policy call per step serves all of them, which makes a
#: diffusion policy's evaluation about as cheap as one episode (DQS acting is launch-bound, not arithmetic-bound).
MAX_EVAL_ENVS = 10


@dataclass
class TrainArgs:
    """Train an agent and log it under runs/. Example: python train.py --algo sac --env HalfCheetah -n 20000"""

    algo: str = "sac"
    """Algorithm name, e.g. sac, td3, ppo (see --list)."""
    env: str = "HalfCheetah"
    """Environment: a short name (HalfCheetah) or a full Gymnasium id (HalfCheetah-v5)."""
    total_timesteps: Annotated[int | None, tyro.conf.arg(aliases=["-n"])] = None
    """Environment steps to train for; default: the algorithm's per-env default (agents/hyperparams.py)."""
    seed: int | None = None
    """Random seed; a run with the same seed on the same machine is repeatable. Default: drawn and recorded."""
    eval_freq: int | None = None
    """Evaluate every this many environment steps (sampler algorithms: gradient steps); <= 0 disables. Default: 10000
    for RL algorithms, the algorithm's own default for samplers."""
    eval_episodes: int = 5
    """Episodes per evaluation."""
    n_envs: int | None = None
    """Parallel training environments; default: per-env default, else 1."""
    device: str = "auto"
    """Torch device: auto, cpu, cuda, cuda:1, mps."""
    num_threads: int | None = 1
    """Torch CPU threads (torch.set_num_threads). Default 1: the right count when runs share the cores (sweeps,
    benchmarks), and on a 2-core Xeon faster than two for networks of this size; on other CPUs two can be faster
    (docs/benchmarks.md, throughput). None for torch's own choice."""
    hyperparams: dict[str, str] = field(default_factory=dict)
    """Overrides as KEY VALUE pairs, e.g. --hyperparams learning_rate 1e-3 batch_size 128. Values are Python
    literals; lin_3e-4 is a linear learning-rate schedule. Keys are checked against the algorithm's constructor."""
    log_dir: Path = Path("runs")
    """Root folder for runs: <log-dir>/<algo>/<env>__seed<seed>__<time>/."""
    progress: bool = True
    """Show a progress bar."""
    save_freq: int = 0
    """Save a checkpoint every this many environment steps under checkpoints/ (<= 0 disables)."""
    save_replay_buffer: bool = False
    """Also save the replay buffer (replay_buffer.pkl), for --trained-agent ... --load-replay-buffer (off-policy only)."""
    trained_agent: Path | None = None
    """Continue training from this model .zip (SB3 zips hold pickled objects: load only files you trust), or a
    sampler's .pt checkpoint (tensors and plain values only)."""
    load_replay_buffer: bool = False
    """With --trained-agent: also load the replay_buffer.pkl beside it (a pickle: only a file you trust)."""
    n_samples: int = 1000
    """Sampler algorithms: samples written to samples.npy (and evaluated) at the end of training."""
    build_dataset: bool = False
    """Offline algorithms: build the dataset first when it is missing (the library's goal tasks only)."""
    verbose: int = 1
    """0: quiet, 1: SB3 log tables and messages."""
    list: bool = False
    """Print the registered algorithms and environments, then exit."""


def train_command(args: TrainArgs) -> str:
    """The ``python train.py`` command line of ``args`` (its non-default flags): what reproduces a run, whether the CLI,
    a sweep worker or a benchmark started it."""
    words = ["python", "train.py"]
    for spec in fields(TrainArgs):
        value, default = getattr(args, spec.name), spec.default if spec.default is not MISSING else spec.default_factory()
        flag = "--" + spec.name.replace("_", "-")
        if value == default:
            continue
        if isinstance(value, bool):
            words.append(flag if value else f"--no-{flag[2:]}")
        elif isinstance(value, dict):
            words += [flag, *(str(item) for pair in value.items() for item in pair)]
        else:
            words += [flag, str(value)]
    return shlex.join(words)


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
    return "\n".join(lines)


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class _StopOnSignal(BaseCallback):
    """Ends SB3's learn at the next step boundary once ``stop`` is set (by the first Ctrl-C or SIGTERM)."""

    def __init__(self, stop: threading.Event) -> None:
        super().__init__()
        self.stop = stop

    def _on_step(self) -> bool:
        return not self.stop.is_set()


def _make_model(algo_class: type[BaseAlgorithm], args: TrainArgs, hyperparams: Hyperparams, env: Any, seed: int) -> Any:
    """Build a new SB3-style model, or load ``--trained-agent`` with the CLI overrides applied."""
    if args.trained_agent is None:
        return algo_class(hyperparams.policy, env, seed=seed, device=args.device, verbose=args.verbose, **hyperparams.kwargs)
    _check_trained_agent(args, "a model .zip")
    # Only what the user asked for on the command line; the network layout (policy_kwargs) is fixed by the zip.
    overrides = split_run_keys(apply_overrides({}, args.hyperparams, algo_class)).kwargs
    overrides.pop("policy_kwargs", None)
    try:
        model = algo_class.load(args.trained_agent, env=env, device=args.device, **overrides)
    except (zipfile.BadZipFile, KeyError, EOFError, RuntimeError, ValueError, AttributeError) as error:
        detail = str(error).removeprefix("Error: ")
        raise ValueError(
            f"--trained-agent {args.trained_agent} cannot be loaded as a {algo_class.__name__} model ({detail}); pass a "
            f"model.zip that {algo_class.__name__} saved"
        ) from None
    if args.load_replay_buffer:
        buffer_path = args.trained_agent.parent / "replay_buffer.pkl"
        if not isinstance(model, OffPolicyAlgorithm):
            raise ValueError(f"--load-replay-buffer: {algo_class.__name__} has no replay buffer")
        if not buffer_path.is_file():
            raise FileNotFoundError(f"--load-replay-buffer: {buffer_path} does not exist")
        model.load_replay_buffer(buffer_path)
    return model


def _budget(args: TrainArgs, hyperparams: Hyperparams, default: int) -> int:
    """``-n`` when given (an explicit value, 0 included, is never replaced), else the table's, else ``default``."""
    return hyperparams.run.get("n_timesteps", default) if args.total_timesteps is None else args.total_timesteps


def check_args(args: TrainArgs) -> None:
    """Raise a ValueError that says what to pass instead for every argument outside its range."""
    positive = {"-n/--total-timesteps": args.total_timesteps, "--n-envs": args.n_envs, "--num-threads": args.num_threads}
    for flag, value in positive.items():
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be a positive integer, got {value}")
    if args.seed is not None and not 0 <= args.seed < 2**32:
        raise ValueError(f"--seed must be an integer in [0, 2**32), got {args.seed}")
    for flag, value in {"--eval-episodes": args.eval_episodes, "--n-samples": args.n_samples}.items():
        if value < 0:
            raise ValueError(f"{flag} must be >= 0 (0: none), got {value}")
    check_device(args.device)
    for parent in [args.log_dir, *args.log_dir.parents]:
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"--log-dir {args.log_dir} is inside {parent}, which is a file: pass a folder path")


def check_device(device: str) -> None:
    """Raise a ValueError for a device torch does not know, or one this machine does not have."""
    if device == "auto":
        return
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown --device {device!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device} but CUDA is not available on this machine: use --device cpu (or auto)")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise ValueError(f"--device {device} but this machine has {torch.cuda.device_count()} CUDA device(s)")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {device} but MPS is not available on this machine: use --device cpu (or auto)")


def available_memory() -> int | None:
    """Bytes of memory free for new allocations (POSIX), None where the system does not say."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def replay_buffer_bytes(kwargs: dict[str, Any], observation_space: Any, action_space: Any) -> int:
    """Estimated size of an SB3 replay buffer: per transition the observation (twice, unless optimize_memory_usage),
    the action and three float32 scalars (reward, done, timeout)."""
    spaces_ = observation_space.spaces.values() if hasattr(observation_space, "spaces") else [observation_space]
    observation = sum(int(np.prod(space.shape)) * np.dtype(space.dtype).itemsize for space in spaces_)
    copies = 1 if kwargs.get("optimize_memory_usage") else 2
    per_transition = copies * observation + int(np.prod(action_space.shape)) * 4 + 3 * 4
    return int(kwargs.get("buffer_size", 1_000_000)) * per_transition


def warn_if_buffer_exceeds_memory(kwargs: dict[str, Any], observation_space: Any, action_space: Any, steps: int) -> None:
    """Warn, before anything is allocated, when the replay buffer would need more memory than is free."""
    needed, free = replay_buffer_bytes(kwargs, observation_space, action_space), available_memory()
    if free is not None and needed > free:
        warnings.warn(
            f"The replay buffer ({kwargs.get('buffer_size', 1_000_000)} transitions) needs about {needed / 1e9:.1f} GB, "
            f"more than the {free / 1e9:.1f} GB free: pass --hyperparams buffer_size N (the run has {steps} steps), "
            "or optimize_memory_usage True.",
            stacklevel=3,
        )


def _check_trained_agent(args: TrainArgs, expected: str) -> None:
    if args.trained_agent is not None and not args.trained_agent.is_file():
        raise FileNotFoundError(f"--trained-agent {args.trained_agent} does not exist (expected {expected}).")


def _run_interruptibly(
    learn: Callable[[], object], save: Callable[[], Path], stop: threading.Event
) -> tuple[bool, float, Path]:
    """Run ``learn``; the first Ctrl-C or SIGTERM sets ``stop``, which the learn loop checks at every step boundary
    (so the saved state is never mid-step), a second one interrupts at once. Then ``save`` with both signals blocked
    (no signal can cut the checkpoint short). A crash (a non-finite loss, a bug) saves nothing, so the last good
    checkpoint stays. Returns (interrupted, seconds, path)."""

    def request_stop(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt(f"signal {signum}")
        stop.set()

    interrupted = False
    start = time.perf_counter()
    with _handling_signals(request_stop) as signals:
        try:
            learn()
        except KeyboardInterrupt:
            interrupted = True
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, signals) if signals else None  # before the old handlers return
    try:
        model_path = save()
    finally:
        if blocked is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)  # a signal that came meanwhile acts now
    return interrupted or stop.is_set(), time.perf_counter() - start, model_path


def _json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None, so that results.json stays valid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def _finish(args: TrainArgs, run_dir: Path, model_path: Path, results: dict[str, Any]) -> Path:
    """Write results.json, print where everything is, and exit with 130 after an interruption."""
    text = json.dumps(_json_safe(results), indent=2, allow_nan=False)
    atomic_write(run_dir / "results.json", lambda p: p.write_text(text))
    status = "Interrupted: saved a checkpoint" if results["interrupted"] else "Done"
    print(f"{status} after {results['num_timesteps']} steps ({results['wall_time_s']:.0f} s).")
    print(f"  model:       {model_path}")
    print(f"  run folder:  {run_dir}")
    print(f"  TensorBoard: tensorboard --logdir {args.log_dir}")
    if results["interrupted"]:
        raise SystemExit(130)
    return run_dir


def _start_run(args: TrainArgs, algo: str, target: str, seed: int, config: dict[str, Any], model: Any) -> Path:
    """Create the run folder, write config.yaml and point the model's logger at it."""
    run_dir = new_run_dir(args.log_dir, algo, target, seed)
    command = train_command(replace(args, seed=seed))
    write_run_config(run_dir, {"algo": algo, "env": args.env, "seed": seed, **config, "args": asdict(args)}, command)
    formats = ["stdout", "csv", "tensorboard"] if args.verbose else ["csv", "tensorboard"]
    model.set_logger(configure(str(run_dir), formats))
    return run_dir


def evaluation_env(env_factory: Callable[[], Any], episodes: int, seed: int) -> Any:
    """Vectorised evaluation environments (up to `MAX_EVAL_ENVS`, each seeded ``seed + i``) for ``episodes`` episodes."""
    return make_vec_env(env_factory, n_envs=max(1, min(episodes, MAX_EVAL_ENVS)), seed=seed)


class _Kind:
    """What one kind of algorithm (online, offline, sampler) brings to the pipeline of `train`: its target, model and
    budget (built in ``__init__``), what its run folder records, how it learns, saves and is evaluated at the end."""

    target: str  # the env id, or the energy name of a sampler
    model: Any
    total_timesteps: int
    config: dict[str, Any]  # entries of config.yaml besides algo, env, seed and the CLI arguments
    on_evaluation: Callable[[int, float], None] | None = None  # called with (timesteps, mean return) after evaluations

    def learn_kwargs(self, run_dir: Path, stop: threading.Event) -> dict[str, Any]:
        """Keyword arguments of ``model.learn`` besides the budget, the progress bar and reset_num_timesteps; the
        learn loop must end at the next step boundary once ``stop`` is set."""
        return {}

    def save(self, run_dir: Path) -> Path:
        return atomic_save(self.model, run_dir / "model.zip")

    def final_results(self, run_dir: Path) -> dict[str, Any]:
        """Entries of results.json after an uninterrupted run (the final evaluation)."""
        return {}


class _ReportEvaluation(BaseCallback):
    """Child of an `EvalCallback`: passes (timesteps, mean return) of every evaluation to ``report``."""

    def __init__(self, report: Callable[[int, float], None]) -> None:
        super().__init__()
        self.report = report

    def _on_step(self) -> bool:
        self.report(self.num_timesteps, float(self.parent.last_mean_reward))  # type: ignore[union-attr]
        return True


class _Online(_Kind):
    """An SB3-style algorithm on a Gym environment, with evaluation, checkpoints and a final evaluation."""

    def __init__(self, args: TrainArgs, algo: str, algo_class: type[BaseAlgorithm], seed: int) -> None:
        self.args, self.seed = args, seed
        self.target = resolve_env_id(args.env)
        hyperparams = hyperparams_for(algo, self.target, args.hyperparams, algo_class)
        self.total_timesteps = _budget(args, hyperparams, 100_000)
        self.n_envs = hyperparams.run.get("n_envs", 1) if args.n_envs is None else args.n_envs
        self.env_factory = partial(make_env, self.target, **hyperparams.run.get("env_kwargs", {}))
        env = make_vec_env(self.env_factory, n_envs=self.n_envs, seed=seed)
        if issubclass(algo_class, OffPolicyAlgorithm):
            warn_if_buffer_exceeds_memory(hyperparams.kwargs, env.observation_space, env.action_space, self.total_timesteps)
        self.model = _make_model(algo_class, args, hyperparams, env, seed)
        self.config = {"env_id": self.target, "total_timesteps": self.total_timesteps, "n_envs": self.n_envs,
                       "device": str(self.model.device), "hyperparams": hyperparams.as_dict()}  # fmt: skip

    def learn_kwargs(self, run_dir: Path, stop: threading.Event) -> dict[str, Any]:
        args = self.args
        learning_starts = getattr(self.model, "learning_starts", 0)
        if args.trained_agent is None and self.total_timesteps <= learning_starts:
            warnings.warn(
                f"{self.total_timesteps} steps do not exceed learning_starts={learning_starts}: the agent takes random "
                f"actions and never updates. Train longer or pass --hyperparams learning_starts N.",
                stacklevel=3,
            )
        eval_freq = DEFAULT_EVAL_FREQ if args.eval_freq is None else args.eval_freq
        callbacks: list[BaseCallback] = [_StopOnSignal(stop)]
        if eval_freq > 0:
            callbacks.append(
                EvalCallback(
                    evaluation_env(self.env_factory, args.eval_episodes, self.seed + 10_000),
                    callback_on_new_best=SaveBestCallback(run_dir / "best_model.zip"),
                    callback_after_eval=None if self.on_evaluation is None else _ReportEvaluation(self.on_evaluation),
                    n_eval_episodes=args.eval_episodes,
                    eval_freq=max(eval_freq // self.n_envs, 1),
                    log_path=str(run_dir),
                    verbose=args.verbose,
                )
            )
        if args.save_freq > 0:
            callbacks.append(
                CheckpointCallback(args.save_freq, run_dir / "checkpoints", args.verbose, args.save_replay_buffer)
            )
        return {"callback": callbacks}

    def save(self, run_dir: Path) -> Path:
        if self.args.save_replay_buffer and isinstance(self.model, OffPolicyAlgorithm):
            atomic_write(run_dir / "replay_buffer.pkl", self.model.save_replay_buffer)
        return super().save(run_dir)

    def final_results(self, run_dir: Path) -> dict[str, Any]:
        if self.args.eval_episodes <= 0:
            return {}
        eval_env = evaluation_env(self.env_factory, self.args.eval_episodes, self.seed + 20_000)
        mean, std = evaluate_policy(self.model, eval_env, n_eval_episodes=self.args.eval_episodes, deterministic=True)
        return {"final_eval_mean_reward": float(mean), "final_eval_std_reward": float(std)}


def _offline_dataset(dataset: str | None, env_id: str, build: bool) -> str:
    """The dataset id of an offline run: ``--hyperparams dataset ID``, else the task's expert dataset; built when
    missing and ``build`` is set, otherwise a missing dataset fails with the command that builds it."""
    if dataset is None:
        if env_id not in {ENV_ALIASES[name] for name in GOAL_TASKS}:
            raise ValueError(f"{env_id} has no default dataset: pass one with --hyperparams dataset MINARI_ID.")
        dataset = dataset_id(env_id, "expert")
    try:
        open_dataset(dataset)
    except FileNotFoundError:
        parsed = parse_dataset_id(dataset)
        if not build or parsed is None:
            raise
        task, kind = parsed
        print(f"Dataset {dataset} is missing: building it ({build_command(dataset)}).")
        build_dataset(task, kind, default_episodes(task), seed=0)
    return dataset


class _Offline(_Kind):
    """An offline goal-conditioned algorithm on a Minari dataset; timesteps are gradient steps, and evaluation
    episodes in the env report success rate, final distance and the shifted discounted return (agents/merlin)."""

    def __init__(self, args: TrainArgs, algo: str, algo_class: type[BaseAlgorithm], seed: int) -> None:
        self.args, self.seed = args, seed
        self.target = resolve_env_id(args.env)
        hyperparams = hyperparams_for(algo, self.target, args.hyperparams, algo_class)
        hyperparams.kwargs["dataset"] = _offline_dataset(hyperparams.kwargs.get("dataset"), self.target, args.build_dataset)
        self.total_timesteps = _budget(args, hyperparams, 500_000)
        self.env_factory = partial(make_env, self.target, **hyperparams.run.get("env_kwargs", {}))
        self.model = _make_model(algo_class, args, hyperparams, make_vec_env(self.env_factory, n_envs=1, seed=seed), seed)
        self.config = {"env_id": self.target, "total_timesteps": self.total_timesteps, "device": str(self.model.device),
                       "hyperparams": hyperparams.as_dict()}  # fmt: skip
        self.evaluation: GoalEvalCallback | None = None

    def learn_kwargs(self, run_dir: Path, stop: threading.Event) -> dict[str, Any]:
        args = self.args
        eval_freq = DEFAULT_EVAL_FREQ if args.eval_freq is None else args.eval_freq
        callbacks: list[BaseCallback] = [_StopOnSignal(stop)]
        if eval_freq > 0 and args.eval_episodes > 0:
            eval_env = make_vec_env(self.env_factory, n_envs=1, seed=self.seed + 10_000)
            self.evaluation = GoalEvalCallback(
                eval_env, eval_freq, args.eval_episodes, best_model_save_path=run_dir, verbose=args.verbose
            )
            callbacks.append(self.evaluation)
        if args.save_freq > 0:
            callbacks.append(CheckpointCallback(args.save_freq, run_dir / "checkpoints", verbose=args.verbose))
        return {"callback": callbacks}

    def final_results(self, run_dir: Path) -> dict[str, Any]:
        results: dict[str, Any] = {}
        if self.evaluation is not None:
            results |= {"best_eval": self.evaluation.best_metrics, "best_eval_timestep": self.evaluation.best_timestep}
        if self.args.eval_episodes > 0:
            eval_env = make_vec_env(self.env_factory, n_envs=1, seed=self.seed + 20_000)
            results["final_eval"] = evaluate_goal_policy(self.model, eval_env, self.args.eval_episodes)
        return results


class _TargetModel(_Kind):
    """A model trained by gradient steps on a named target (an energy, a PDE problem) and saved as ``model.pt``: a
    sampler or a PDE solver. It takes the run's checkpoint folder and stop flag, and a resumed one keeps its own
    configuration."""

    default_budget: int

    def __init__(self, args: TrainArgs, algo: str, algo_class: type, seed: int) -> None:
        self.args = args
        self.hyperparams = hyperparams_for(algo, args.env, args.hyperparams, algo_class)
        self.total_timesteps = _budget(args, self.hyperparams, self.default_budget)
        kwargs = self.hyperparams.kwargs | ({} if args.eval_freq is None else {"eval_freq": args.eval_freq})
        _check_trained_agent(args, "a checkpoint .pt")
        if args.trained_agent is not None and args.hyperparams:
            warnings.warn(
                f"--hyperparams {' '.join(f'{k} {v}' for k, v in args.hyperparams.items())} ignored: a resumed {algo} "
                f"keeps the configuration of "
                f"{args.trained_agent}",
                stacklevel=3,
            )
        self.model = (
            algo_class(args.env, seed=seed, device=args.device, **kwargs)
            if args.trained_agent is None
            else algo_class.load(args.trained_agent, device=args.device)
        )
        self.config = {"env_id": self.target, "total_timesteps": self.total_timesteps, "device": str(self.model.device),
                       "hyperparams": {**self.hyperparams.as_dict(), **asdict(self.model.config)}}  # fmt: skip

    def learn_kwargs(self, run_dir: Path, stop: threading.Event) -> dict[str, Any]:
        return {"checkpoint_dir": run_dir / "checkpoints", "checkpoint_freq": max(self.args.save_freq, 0),
                "stop": stop.is_set}  # fmt: skip

    def save(self, run_dir: Path) -> Path:
        return self.model.save(run_dir / "model.pt")


class _Sampler(_TargetModel):
    """A sampler trained from an energy target (``--env DW4``); writes samples.npy and their metrics at the end."""

    default_budget = 10_000
    model: BaseSampler

    def __init__(self, args: TrainArgs, algo: str, algo_class: type[BaseSampler], seed: int) -> None:
        if not issubclass(algo_class, BaseSampler):
            raise TypeError(
                f"{algo_class.__name__} is registered as a sampler but does not subclass samplers.base.BaseSampler"
            )
        make_energy(args.env)  # validates the target name, suggesting close ones
        self.target = args.env
        super().__init__(args, algo, algo_class, seed)
        self.config["preset"] = self.model.preset

    def final_results(self, run_dir: Path) -> dict[str, Any]:
        model, n = self.model, self.args.n_samples
        results: dict[str, Any] = {"energy_evaluations": model.energy_evaluations, "best_eval": model.best_metrics}
        if n <= 0:
            return results
        latest = model.latest_evaluation(n)  # the end of learn evaluated: reuse its samples and metrics
        samples = model.sample(n, progress_bar=self.args.verbose > 0).cpu() if latest is None else latest[0]
        atomic_write(run_dir / "samples.npy", lambda p: np.save(p, samples.numpy()))
        if latest is not None:
            results["final_eval"] = latest[1]
            return results
        try:
            results["final_eval"] = model.evaluate(samples=samples, reference=model.reference_samples(n))
        except FileNotFoundError as error:
            results["final_eval"] = f"skipped: {error}"
            print(f"Final evaluation skipped: {error}")
        return results


class _PDE(_TargetModel):
    """A physics-informed solver of a PDE problem (``--env Burgers``); timesteps are gradient steps, and the final
    evaluation is the relative L2 error on held-out initial conditions."""

    default_budget = 2_000
    model: PINNSolver

    def __init__(self, args: TrainArgs, algo: str, algo_class: type[PINNSolver], seed: int) -> None:
        self.target = make_pde_problem(args.env).name  # validates the name, suggesting close ones
        super().__init__(args, algo, algo_class, seed)

    def final_results(self, run_dir: Path) -> dict[str, Any]:
        return {"final_eval": self.model.evaluate(), "best_eval": self.model.best_metrics}


KINDS: dict[str, type[_Kind]] = {"online": _Online, "offline": _Offline, "sampler": _Sampler, "pde": _PDE}


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
    kind = KINDS[spec.kind](args, spec.name, algo_class, seed)
    kind.on_evaluation = on_evaluation
    run_dir = _start_run(args, spec.name, kind.target, seed, kind.config, kind.model)
    stop = threading.Event()
    learn = partial(kind.model.learn, kind.total_timesteps, progress_bar=args.progress,
                    reset_num_timesteps=args.trained_agent is None, **kind.learn_kwargs(run_dir, stop))  # fmt: skip
    interrupted, wall_time, model_path = _run_interruptibly(learn, lambda: kind.save(run_dir), stop)
    results: dict[str, Any] = {"num_timesteps": kind.model.num_timesteps, "wall_time_s": wall_time, "interrupted": interrupted}
    if not interrupted:
        try:
            with _handling_signals(_raise_keyboard_interrupt):
                results |= kind.final_results(run_dir)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM during the final evaluation: results.json is still written
            results |= {"interrupted": True, "final_eval": "interrupted"}
    return _finish(args, run_dir, model_path, results)


@contextlib.contextmanager
def _handling_signals(handler: Callable[[int, object], None]) -> Iterator[tuple[signal.Signals, ...]]:
    """Within the block, SIGINT and SIGTERM call ``handler`` (SIGINT may be ignored when started in the background;
    SIGTERM from cluster schedulers is treated like Ctrl-C); yields the signals handled. Handlers can only be set from
    the main thread: a run inside a Ray Tune worker thread leaves them to Ray (and yields none)."""
    signals = (signal.SIGINT, signal.SIGTERM) if threading.current_thread() is threading.main_thread() else ()
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield signals
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def main(args: TrainArgs) -> None:
    """CLI entry: `--list`, or train; errors are one line (`core.cli.run_cli`)."""
    if args.list:
        print(list_registry())
        return
    run_cli(lambda: train(args))
