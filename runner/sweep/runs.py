"""The `train.py` run of a sweep trial, and what survives its being killed.

A trial that writes checkpoints lives in its own folder (``<log_dir>/trials/<trial fingerprint>/``, chosen by the
engine), one ``segment<k>/`` log folder per attempt. When a sweep is killed mid-run (a session that ends, a preempted
node), a restarted sweep finds the run folders ("segments") already there and resumes from the newest checkpoint any
of them left: a periodic one (``checkpoints/model_<N>_steps.zip`` with ``replay_buffer_<N>_steps.pkl`` for
off-policy algorithms, ``checkpoints/iter_<N>.pt`` for the gradient-step kinds) or the model an interrupted run saved
at its last step. It trains the remaining steps as a new segment (``--trained-agent`` with its replay buffer), and the
trial's record joins the segments' evaluation curves, each segment's up to the step the next one resumed from. A
gradient-step model resumes bit for bit (its checkpoints hold the RNG states); an SB3 one continues from the same
weights, optimiser and buffer but resets its environments. A trial that sets no checkpoints (``--save-freq 0``), or
an off-policy one that saves no replay buffer, is one ordinary run under ``<log_dir>`` and starts over instead:
resuming without the buffer would train another algorithm.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from runner.args import TrainArgs
from runner.experiment import train
from runner.kinds.sb3 import replay_buffer_beside
from runner.registry import get_algo

_PERIODIC = re.compile(r"(?:model_(\d+)_steps\.zip|iter_(\d+)\.pt)")


@dataclass(frozen=True)
class Checkpoint:
    """A model file to resume from, the steps it had trained, and its replay buffer (None: the kind has none)."""

    model: Path
    steps: int
    replay_buffer: Path | None


def segments(home: Path) -> list[Path]:
    """The run folders of a trial's segments (``<home>/segment<k>/<algo>/<run>``), in the order they started; a
    segment killed before its run folder was written has none."""
    found = [(int(path.parents[2].name.removeprefix("segment")), path.parent)
             for path in home.glob("segment*/*/*/config.yaml")]  # fmt: skip
    return [run for _, run in sorted(found)]


def _segment_dir(home: Path) -> Path:
    """The log folder of the next segment."""
    taken = [int(path.name.removeprefix("segment")) for path in home.glob("segment*") if path.name[7:].isdigit()]
    return home / f"segment{max(taken, default=-1) + 1}"


def _results(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "results.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _run_config(run_dir: Path) -> dict[str, Any]:
    return yaml.safe_load((run_dir / "config.yaml").read_text())


def checkpoints(run_dir: Path, needs_buffer: bool) -> list[Checkpoint]:
    """The complete checkpoints of one segment: its periodic ones and, for a run interrupted at a step boundary, its
    final model; with ``needs_buffer`` only those whose replay buffer was written too (the model is written first)."""
    found = []
    for model in sorted((run_dir / "checkpoints").glob("*")):
        match = _PERIODIC.fullmatch(model.name)
        if match:
            found.append(Checkpoint(model, int(match.group(1) or match.group(2)), replay_buffer_beside(model)))
    results = _results(run_dir)
    if results is not None and results.get("interrupted"):
        for name in ("model.zip", "model.pt"):
            if (run_dir / name).is_file():
                found.append(Checkpoint(run_dir / name, results["num_timesteps"], run_dir / "replay_buffer.pkl"))
    if not needs_buffer:
        return [replace(checkpoint, replay_buffer=None) for checkpoint in found]
    return [checkpoint for checkpoint in found if checkpoint.replay_buffer.is_file()]


def _needs_buffer(args: TrainArgs) -> bool:
    return issubclass(get_algo(args.algo).load_class(), OffPolicyAlgorithm)


def _keeps_overrides(args: TrainArgs) -> bool:
    """Whether a resumed run takes the trial's ``--hyperparams`` again: an SB3 model applies them (the env's among
    them) on top of its zip; a gradient-step model keeps its checkpoint's configuration and would only warn."""
    return issubclass(get_algo(args.algo).load_class(), BaseAlgorithm)


def resumable(args: TrainArgs) -> bool:
    """Whether the run of ``args`` leaves checkpoints it can resume from: periodic ones, and for an off-policy
    algorithm its replay buffer beside them."""
    return args.save_freq > 0 and (args.save_replay_buffer or not _needs_buffer(args))


def _resumed_from(run_dir: Path, earlier: list[Path]) -> tuple[Path, int] | None:
    """The earlier segment and step a segment resumed from (the checkpoint its ``--trained-agent`` names); None for a
    segment that started from scratch."""
    agent = (_run_config(run_dir).get("args") or {}).get("trained_agent")
    if agent is None:
        return None
    for segment in earlier:
        for checkpoint in checkpoints(segment, needs_buffer=False):
            if checkpoint.model == Path(agent):
                return segment, checkpoint.steps
    raise ValueError(f"{run_dir} resumed from {agent}, which no earlier segment of its trial holds")


def lineage(runs: list[Path]) -> list[tuple[Path, int]]:
    """The segments the last of ``runs`` continues, first to last, each with the step it started at."""
    chain, run = [], runs[-1]
    while True:
        origin = _resumed_from(run, runs[: runs.index(run)])
        chain.append((run, 0 if origin is None else origin[1]))
        if origin is None:
            return chain[::-1]
        run = origin[0]


def train_resumably(args: TrainArgs, home: Path) -> list[Path]:
    """Train ``args``; the segments that make up the run, in order, the last one finished. A `resumable` run lives in
    ``home`` and resumes from the newest checkpoint of the segments already there (see the module docstring), and a
    finished segment whose record was not written (a sweep killed in between) is taken as it is; any other run is
    one ordinary run under ``args.log_dir``, started over when the sweep is."""
    if not resumable(args):
        return [train(args)]
    earlier = segments(home)
    if earlier and (_results(earlier[-1]) or {}).get("interrupted") is False:
        return [run for run, _ in lineage(earlier)]
    found = [checkpoint for run in earlier for checkpoint in checkpoints(run, _needs_buffer(args))]
    newest = max(found, key=lambda checkpoint: checkpoint.steps, default=None)
    if newest is None:
        return [train(replace(args, log_dir=_segment_dir(home)))]
    first = next(run for run in earlier if newest.model.is_relative_to(run))
    total = _run_config(lineage(earlier[: earlier.index(first) + 1])[0][0])["total_timesteps"]
    resumed = replace(args, log_dir=_segment_dir(home), trained_agent=newest.model,
                      load_replay_buffer=newest.replay_buffer is not None, total_timesteps=total - newest.steps,
                      hyperparams=args.hyperparams if _keeps_overrides(args) else {})  # fmt: skip
    run = train(resumed)
    return [segment for segment, _ in lineage([*earlier, run])]


def run_record(run_dir: Path) -> dict[str, Any]:
    """The outcome of a finished `train.py` run: its evaluation curve, final and mean evaluation return (RL kinds),
    the final and best evaluation metrics (the other kinds: a sampler's, a PDE solver's), the samples' counts and
    metrics and the parameter count (a crystal generator's), timing."""
    return segments_record([run_dir])


def segments_record(runs: list[Path]) -> dict[str, Any]:
    """`run_record` of a run made of segments (``runs``, the last finished, each continuing an earlier one's
    checkpoint): the last one's results (its ``train_wall_time_s`` too: a killed segment leaves no time), the
    evaluation curve joined over its lineage (each segment's up to the step the next resumed from), and the steps
    they resumed at."""
    last = runs[-1]
    results = _results(last)
    if results is None:
        raise FileNotFoundError(f"{last}/results.json not found: the run did not finish")
    record: dict[str, Any] = {
        "run_dir": str(last),
        "num_timesteps": results["num_timesteps"],
        "train_wall_time_s": results["wall_time_s"],
        "final_return": results.get("final_eval_mean_reward"),
    }
    record |= {key: results[key] for key in ("final_eval", "best_eval", "samples", "metrics", "parameters") if key in results}
    chain = lineage(runs)
    runs, starts = [run for run, _ in chain], [start for _, start in chain]
    if len(runs) > 1:
        record |= {"segments": [str(run) for run in runs], "resumed_at": starts[1:]}
    curves = [_evaluations(run, end) for run, end in zip(runs, [*starts[1:], None])]
    curves = [curve for curve in curves if curve is not None]
    if curves:
        joined = {key: np.concatenate([curve[key] for curve in curves]) for key in curves[-1]}
        returns = joined["results"].mean(axis=1)
        record |= {"eval_timesteps": joined["timesteps"].tolist(), "eval_returns": returns.tolist(),
                   "mean_eval_return": float(returns.mean())}  # fmt: skip
        if "successes" in joined:
            record["eval_success_rates"] = joined["successes"].mean(axis=1).tolist()
    return record


def _evaluations(run_dir: Path, end: int | None) -> dict[str, np.ndarray] | None:
    """The arrays of a segment's evaluations.npz at steps up to ``end`` (all of them for None); None without one."""
    path = run_dir / "evaluations.npz"
    if not path.is_file():
        return None
    with np.load(path) as data:
        arrays = {key: data[key] for key in ("timesteps", "results", "successes") if key in data.files}
    keep = np.ones(len(arrays["timesteps"]), dtype=bool) if end is None else arrays["timesteps"] <= end
    return {key: value[keep] for key, value in arrays.items()}
