"""The `train.py` run of a sweep trial, and what survives its being killed.

A trial that writes checkpoints lives in its own folder (``<sweep>/trials/<trial name>/<fingerprint>/``, chosen by
the engine), one ``segment<k>/`` log folder per attempt. When a sweep is killed mid-run (a session that ends, a
preempted node), a restarted sweep finds the run folders ("segments") already there and resumes from the newest
checkpoint any of them left: a periodic one (``checkpoints/model_<N>_steps.zip`` with ``replay_buffer_<N>_steps.pkl`` for
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
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from core.run import read_run_config
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


def _segment_number(folder: Path) -> int | None:
    number = folder.name.removeprefix("segment")
    return int(number) if folder.name.startswith("segment") and number.isdigit() else None


def segments(home: Path) -> list[Path]:
    """The run folders of a trial's segments (``<home>/segment<k>/<algo>/<run>``), in the order they started; a
    segment killed before its run folder (or its config.yaml) was complete has none."""
    found = []
    for path in home.glob("segment*/*/*/config.yaml"):
        number = _segment_number(path.parents[2])
        if number is not None and _run_config(path.parent) is not None:
            found.append((number, path.parent))
    return [run for _, run in sorted(found)]


def _segment_dir(home: Path) -> Path:
    """The log folder of the next segment."""
    taken = [number for number in map(_segment_number, home.glob("segment*")) if number is not None]
    return home / f"segment{max(taken, default=-1) + 1}"


def _results(run_dir: Path) -> dict[str, Any] | None:
    """A segment's results.json (written atomically), None when it has none."""
    path = run_dir / "results.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _run_config(run_dir: Path) -> dict[str, Any] | None:
    """A segment's config.yaml, None when a kill left it unreadable."""
    try:
        return read_run_config(run_dir) or None
    except (OSError, ValueError):
        return None


def finished(results: dict[str, Any] | None) -> bool:
    """Whether a segment's results say it trained to the end and wrote its final results (not interrupted, and no
    final evaluation that failed)."""
    if results is None or results.get("interrupted") is not False:
        return False
    return not str(results.get("final_eval", "")).startswith("failed")


def checkpoints(run_dir: Path, needs_buffer: bool) -> list[Checkpoint]:
    """The complete checkpoints of one segment: its periodic ones and, for a run interrupted at a step boundary or
    whose final results failed, its final model; with ``needs_buffer`` only those whose replay buffer was written too
    (the model is written first)."""
    found = []
    for model in sorted((run_dir / "checkpoints").glob("*")):
        match = _PERIODIC.fullmatch(model.name)
        if match:
            found.append(Checkpoint(model, int(match.group(1) or match.group(2)), replay_buffer_beside(model)))
    results = _results(run_dir)
    if results is not None and not finished(results):  # interrupted at a step boundary, or its final results failed
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
    agent = ((_run_config(run_dir) or {}).get("args") or {}).get("trained_agent")
    if agent is None:
        return None
    for segment in earlier:
        for checkpoint in checkpoints(segment, needs_buffer=False):
            if _within_trial(checkpoint.model) == _within_trial(Path(agent)):
                return segment, checkpoint.steps
    return None  # a run started from a model outside its trial (train.py --trained-agent): its own root


def _within_trial(path: Path) -> tuple[str, ...]:
    """A path from its ``segment<k>`` folder on (the whole path outside a trial): a trial folder that moved (another
    mount, a renamed work dir) still finds its checkpoints."""
    starts = [i for i, part in enumerate(path.parts) if _segment_number(Path(part)) is not None]
    return path.parts[starts[-1] :] if starts else path.parts


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
    if earlier and finished(_results(earlier[-1])):
        return [run for run, _ in lineage(earlier)]
    found = [checkpoint for run in earlier for checkpoint in checkpoints(run, _needs_buffer(args))]
    newest = max(found, key=lambda checkpoint: checkpoint.steps, default=None)
    if newest is None:
        return [train(replace(args, log_dir=_segment_dir(home)))]
    total = read_run_config(earlier[0])["total_timesteps"]  # the first segment started afresh with the trial's budget
    # At the last step (killed while evaluating or sampling at the end) it trains 0 steps and writes the final results.
    resumed = replace(args, log_dir=_segment_dir(home), trained_agent=newest.model,
                      load_replay_buffer=newest.replay_buffer is not None, total_timesteps=max(total - newest.steps, 0),
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
    checkpoint): the last one's results, the training time summed over the segments that recorded one (a killed
    segment leaves none: ``segments_without_time`` counts them), the evaluation curve joined over its lineage (each
    segment's up to the step the next resumed from), and the steps they resumed at."""
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
        times = [(_results(run) or {}).get("wall_time_s") for run in runs]
        record |= {"segments": [str(run) for run in runs], "resumed_at": starts[1:],
                   "train_wall_time_s": sum(t for t in times if t is not None),
                   "segments_without_time": sum(t is None for t in times)}  # fmt: skip
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
    try:
        with np.load(path) as data:
            arrays = {key: data[key] for key in ("timesteps", "results", "successes") if key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        if _results(run_dir) is not None:
            raise
        return None  # SB3 writes it in place: a segment killed during the write leaves a truncated file
    keep = np.ones(len(arrays["timesteps"]), dtype=bool) if end is None else arrays["timesteps"] <= end
    return {key: value[keep] for key, value in arrays.items()}
