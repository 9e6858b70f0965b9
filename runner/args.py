"""The arguments of one run (`TrainArgs`, train.py's flags) and their checks, shared by `train.py`, the sweep engine
and the benchmarks."""

from __future__ import annotations

import shlex
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Annotated

import torch
import tyro

DEFAULT_EVAL_FREQ = 10_000  # environment steps between evaluations of RL agents


@dataclass
class TrainArgs:
    """Train an agent and log it under runs/. Example: python train.py --algo sac --env HalfCheetah -n 20000"""

    algo: str = "sac"
    """Algorithm name, e.g. sac, td3, ppo (see --list)."""
    env: str = "HalfCheetah"
    """Environment: a short name (HalfCheetah) or a full Gymnasium id (HalfCheetah-v5)."""
    total_timesteps: Annotated[int | None, tyro.conf.arg(aliases=["-n"])] = None
    """Environment steps to train for; default: the algorithm's per-env default (runner/hyperparams.py). With
    --trained-agent, 0 trains nothing and only writes the agent's final results (evaluation, samples)."""
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
    """With --trained-agent: also load the replay buffer saved with it (replay_buffer.pkl beside a final model,
    replay_buffer_<N>_steps.pkl beside a checkpoint model_<N>_steps.zip; a pickle: only a file you trust)."""
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


def check_args(args: TrainArgs) -> None:
    """Raise a ValueError that says what to pass instead for every argument outside its range."""
    positive = {"--n-envs": args.n_envs, "--num-threads": args.num_threads}
    if args.trained_agent is None or args.total_timesteps != 0:  # -n 0 --trained-agent M: only M's final results
        positive["-n/--total-timesteps"] = args.total_timesteps
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
