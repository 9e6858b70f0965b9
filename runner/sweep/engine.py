"""Seeds x envs x hyperparameters as Ray Tune experiments, every trial exactly a `train.py` run.

`run_trials` is the engine: a list of named `Trial` configs and a run function, executed as Ray Tune trials, each
leaving a record ``<sweep>/records/<trial>.json``; trials with a record are skipped, so a restarted sweep resumes.
The benchmarks declare their grids on it. A grid sweep (`run_sweep`) expands algorithms x envs x ``--grid`` values x
seeds into trials; a search (`run_search`) samples hyperparameters with Optuna's TPE and evaluates each sample on
several seeds, pruned by ASHA or the median rule on the periodic evaluation returns. Trials run on a local Ray (the
machine's cores, ``threads_per_trial`` each) or an existing cluster (``address``), with GPU fractions when asked.
Each grid trial writes its run folder through `runner.experiment.train`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
import socket
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import ray
import torch
import tyro
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule
from ray.tune.search.optuna import OptunaSearch

from core.cli import RunFailed
from core.io import atomic_write
from runner.args import TrainArgs
from runner.experiment import train
from runner.hyperparams import SEARCH_SPACES, apply_overrides, check_keys
from runner.kinds import runner_of
from runner.registry import get_algo
from runner.sweep.runs import run_record, segments_record, train_resumably

Pruner = Literal["asha", "median", "none"]


@dataclass
class Resources:
    """Where trials run and how many at a time (the resource options of every sweep and benchmark)."""

    threads_per_trial: int = 1
    """CPU threads (torch threads and Ray CPUs) per trial."""
    gpus_per_trial: float = 0.0
    """GPU share per trial, e.g. 0.25 to run four trials on one GPU."""
    max_concurrent: int | None = None
    """Trials at a time; default: as many as the cores allow at threads_per_trial each."""
    address: str | None = None
    """Ray cluster to join ("auto" or host:port); default: a local Ray on this machine."""


@dataclass(frozen=True)
class Trial:
    """One unit of a sweep: ``config`` is everything its run function needs (it runs in a Ray worker, which sees
    none of the driver's state); ``name`` names its record, ``<sweep_dir>/records/<name>.json``."""

    name: str
    config: dict[str, Any]


@dataclass(kw_only=True)
class SweepSpec(Resources):
    """What a sweep trains, and on which resources (also the options of ``python -m runner.sweep``)."""

    algo: list[str]
    """Algorithms (train.py names)."""
    env: list[str]
    """Environments (short names or Gymnasium ids; energy names for samplers)."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Seeds: one trial per seed (a search runs every seed inside each trial)."""
    total_timesteps: Annotated[int | None, tyro.conf.arg(aliases=["-n"])] = None
    """Steps per trial; default: the algorithm's per-env default."""
    hyperparams: dict[str, str] = field(default_factory=dict)
    """Overrides of every trial, KEY VALUE pairs as train.py --hyperparams."""
    eval_freq: int | None = None
    """Evaluate every this many steps (train.py --eval-freq)."""
    eval_episodes: int = 5
    """Episodes per evaluation."""
    save_freq: int = 0
    """Checkpoint every this many steps, with the replay buffer (train.py --save-freq --save-replay-buffer): a killed
    sweep then resumes its unfinished trials from their last checkpoint instead of starting them over."""
    device: str = "auto"
    """Torch device of every trial."""
    name: str = "sweep"
    """Sweep folder: <sweep-root>/<name>. Running the same name again resumes it."""
    sweep_root: Path = Path("runs/sweeps")
    """Where sweep folders are kept."""
    log_dir: Path = Path("runs")
    """Root of the trials' run folders (train.py --log-dir)."""

    @property
    def sweep_dir(self) -> Path:
        return self.sweep_root / self.name


def _plain(spec: SweepSpec) -> dict[str, Any]:
    """The spec as JSON-ready values."""
    return {key: str(value) if isinstance(value, Path) else value for key, value in asdict(spec).items()}


def _point_name(point: dict[str, str]) -> str:
    text = ",".join(f"{key}={value}" for key, value in sorted(point.items())) or "default"
    return re.sub(r"[^A-Za-z0-9_.,=+-]", "_", text)


def grid_trials(spec: SweepSpec, grid: dict[str, tuple[str, ...]] | None = None) -> list[Trial]:
    """Every trial of a grid sweep (algorithms x envs x ``grid`` points x seeds), its hyperparameters checked against
    its algorithm (the error of ``--hyperparams``), before anything starts."""
    points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())] if grid else [{}]
    trials = []
    for algo, env, point, seed in itertools.product(spec.algo, spec.env, points, spec.seeds):
        overrides = {**spec.hyperparams, **point}
        algo_spec = get_algo(algo)
        apply_overrides({}, overrides, algo_spec.load_class())  # unknown keys fail here, like --hyperparams
        env = runner_of(algo_spec.kind).resolve_target(env)  # one name per task (a Gymnasium id, an energy, a PDE)
        described = {"algo": algo, "env": env, "seed": seed, "grid_point": point, "hyperparams": overrides}
        trials.append(
            train_trial(
                f"{algo}__{env}__{_point_name(point)}__seed{seed}", train_args(spec, algo, env, seed, overrides), described
            )
        )
    return trials


def train_args(spec: SweepSpec, algo: str, env: str, seed: int, hyperparams: dict[str, str]) -> TrainArgs:
    """The `train.py` arguments of one trial of ``spec``."""
    return TrainArgs(
        algo=algo, env=env, total_timesteps=spec.total_timesteps, seed=seed, eval_freq=spec.eval_freq,
        eval_episodes=spec.eval_episodes, num_threads=spec.threads_per_trial, device=spec.device,
        hyperparams=hyperparams, log_dir=spec.log_dir, progress=False, verbose=0, save_freq=spec.save_freq,
        save_replay_buffer=spec.save_freq > 0,
    )  # fmt: skip


def train_trial(name: str, args: TrainArgs, described: dict[str, Any]) -> Trial:
    """A trial that is one `train.py` run; its record is ``described`` plus the run's (`segments_record`)."""
    return Trial(name, {"train_args": args, "described": described})


def run_train_trial(config: dict[str, Any]) -> dict[str, Any]:
    """The run function of `train_trial` trials: one `train.py` run, which a trial that writes checkpoints keeps in its
    own folder (`TRIAL_DIR`) and resumes from its newest one when an earlier attempt was killed
    (`runner.sweep.runs`)."""
    runs = train_resumably(config["train_args"], Path(config[TRIAL_DIR]))
    return {**config["described"], **segments_record(runs)}


#: `TrainArgs` fields that say where and how a run is watched or kept, not what it trains: a resumed sweep may change
#: them.
_NOT_IDENTITY = frozenset({"log_dir", "progress", "verbose", "num_threads", "save_freq", "save_replay_buffer"})


def trial_fingerprint(config: dict[str, Any]) -> str:
    """A short hash of what a trial trains: its config without paths (they only say where things go), and of its
    `TrainArgs` the values that differ from the defaults (as the recorded train.py command: a flag added later does not
    change it) outside `_NOT_IDENTITY`. A record is reused only for a trial with the same fingerprint."""

    def plain(value: Any) -> Any:
        if isinstance(value, TrainArgs):
            defaults = asdict(TrainArgs())
            return {key: plain(item) for key, item in asdict(value).items()
                    if key not in _NOT_IDENTITY and item != defaults[key]}  # fmt: skip
        if isinstance(value, dict):
            return {str(key): plain(item) for key, item in value.items() if not isinstance(item, Path)}
        if isinstance(value, (list, tuple)):
            return [plain(item) for item in value]
        return value

    text = json.dumps(plain(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_record(path: Path) -> dict[str, Any]:
    """A trial's record; a file that is not one (truncated by a full disk, edited) is named in the error."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not a readable trial record ({error}): delete it to run that trial again") from None


def _record_trial(config: dict[str, Any]) -> None:
    """One Ray Tune trial: the run function on the trial's config with ``threads_per_trial`` torch threads, then its
    record with the trial's fingerprint (atomically, so a killed sweep never leaves half a record) and its numbers
    reported to Tune."""
    torch.set_num_threads(config["threads"])
    record = record_trial(config["trial"], config["run"], Path(config["records"]).parent)
    tune.report({key: value for key, value in record.items() if isinstance(value, (int, float))} or {"done": 1})


#: The key of a trial's config under which its run function finds the trial's own folder,
#: ``<sweep>/trials/<name>/<fingerprint>`` (a trial run again with other settings gets another).
TRIAL_DIR = "trial_dir"


def record_trial(trial: Trial, run: Callable[[dict[str, Any]], dict[str, Any]], sweep_dir: Path) -> dict[str, Any]:
    """Run one trial (its config plus `TRIAL_DIR`) and write its record with the trial's fingerprint to
    ``<sweep_dir>/records/<name>.json`` atomically, so a killed sweep never leaves half a record; the record."""
    fingerprint = trial_fingerprint(trial.config)
    record = {**run({**trial.config, TRIAL_DIR: Path(sweep_dir) / "trials" / trial.name / fingerprint}),
              "trial_fingerprint": fingerprint}  # fmt: skip
    path = Path(sweep_dir) / "records" / f"{trial.name}.json"
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(record, indent=2)))
    return record


class _AfterEachTrial(tune.Callback):
    """Calls ``hook`` in the driver whenever a trial finishes (e.g. to rewrite a results file)."""

    def __init__(self, hook: Callable[[], None]) -> None:
        self.hook = hook

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.hook()


def _absolute(spec: SweepSpec) -> SweepSpec:
    """The plain `SweepSpec` of ``spec`` (a CLI subclass too) with absolute paths: trials run in Ray workers, each in
    its own working directory."""
    values = {f.name: getattr(spec, f.name) for f in fields(SweepSpec)}
    return SweepSpec(**values | {"sweep_root": spec.sweep_root.resolve(), "log_dir": spec.log_dir.resolve()})


#: Seconds to wait for a cluster's address to answer before saying so (Ray itself retries for minutes).
CONNECT_TIMEOUT_S = 10.0
AUTH_HINT = (
    "the cluster requires token authentication (Ray >= 2.52; `ray start` enables it by default since 2.60): run with "
    "RAY_AUTH_MODE=token and the cluster's token in ~/.ray/auth_token or RAY_AUTH_TOKEN (print it on the head node "
    "with `ray get-auth-token`)"
)


def _start_ray(resources: Resources, concurrent: int) -> bool:
    """Join ``address``, or start a private local Ray sized for ``concurrent`` trials (``address="local"``: never a
    cluster that ``ray start`` registered on this machine, nor a stale registration of a dead one); True when started
    here. An address that does not answer, or a cluster that wants a token, fails in one line that says what to do."""
    if ray.is_initialized():
        return False
    if not resources.address:
        ray.init(address="local", num_cpus=concurrent * resources.threads_per_trial, include_dashboard=False,
                 log_to_driver=False)  # fmt: skip
        return True
    _check_reachable(resources.address)
    try:
        ray.init(address=resources.address, log_to_driver=False)
    except ConnectionError as error:
        reason = AUTH_HINT if _wants_a_token(error) else str(error)
        raise ConnectionError(f"cannot join the Ray cluster at {resources.address}: {reason}") from None
    return True


def _wants_a_token(error: BaseException | None) -> bool:
    """Whether Ray's connection error (or an error it was raised from) is a refused authentication token."""
    while error is not None:
        if "AuthToken" in str(error) or "Authentication" in type(error).__name__:
            return True
        error = error.__cause__ or error.__context__
    return False


def _check_reachable(address: str) -> None:
    """A ConnectionError when ``host:port`` does not accept a connection within `CONNECT_TIMEOUT_S` ("auto" and
    ``ray://`` addresses are left to Ray)."""
    host, _, port = address.rpartition(":")
    if address == "auto" or "://" in address or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise ConnectionError(
            f"no Ray cluster answers at --address {address} ({error}): start one there (`ray start --head --port "
            f"{port}`), or leave --address out to run on a private local Ray"
        ) from None


def _fit(
    resources: Resources, trainable: Any, param_space: dict[str, Any], tune_config: tune.TuneConfig, storage: Path,
    name: str, callbacks: list[tune.Callback] | None = None,
) -> None:  # fmt: skip
    """Run a Tune experiment on a local Ray (started and shut down here) or the joined cluster; trials that raised
    fail the call with their count and the first error, after the others have finished."""
    concurrent = tune_config.max_concurrent_trials or 1
    started = _start_ray(resources, concurrent)
    try:
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": resources.threads_per_trial, "gpu": resources.gpus_per_trial}),
            param_space=param_space,
            tune_config=tune_config,
            run_config=tune.RunConfig(name=name, storage_path=str(storage.resolve()), verbose=1, callbacks=callbacks),
        )
        failed = [result for result in tuner.fit() if result.error is not None]
    finally:
        if started:
            ray.shutdown()
    if failed:
        first = failed[0]
        trial = first.config.get("trial") if isinstance(first.config, dict) else None
        cause = str(first.error).strip().splitlines()[-1]
        raise RunFailed(
            f"{len(failed)} trial(s) failed and left no record (rerun to retry them); first: "
            f"{getattr(trial, 'name', 'a trial')}: {cause} (its log: {first.path})"
        )


def _concurrency(resources: Resources, n_trials: int) -> int:
    if resources.max_concurrent is not None:
        return max(1, min(resources.max_concurrent, n_trials))
    cores = ray.available_resources().get("CPU", 1) if ray.is_initialized() else (os.cpu_count() or 1)
    return max(1, min(n_trials, int(cores // resources.threads_per_trial)))


def pending_trials(trials: list[Trial], sweep_dir: Path) -> list[Trial]:
    """The trials without a record in ``<sweep_dir>/records``. A ValueError when a record of the same name was made
    by a trial with other settings (its `trial_fingerprint` differs): the sweep would report the old results as the
    new ones. Records from before fingerprints were recorded are taken as they are."""
    pending, changed = [], []
    for trial in trials:
        path = Path(sweep_dir) / "records" / f"{trial.name}.json"
        if not path.is_file():
            pending.append(trial)
        elif read_record(path).get("trial_fingerprint", trial_fingerprint(trial.config)) != trial_fingerprint(trial.config):
            changed.append(trial.name)
    if changed:
        raise ValueError(
            f"{len(changed)} finished trial(s) of {sweep_dir} ran with other settings than these ({', '.join(changed[:3])}"
            f"{', ...' if len(changed) > 3 else ''}): pass another --name for the new settings, or delete those records "
            "to run them again"
        )
    return pending


def run_trials(
    trials: list[Trial], run: Callable[[dict[str, Any]], dict[str, Any]], sweep_dir: Path, resources: Resources,
    after_each: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Run ``run(trial.config)`` on Ray Tune for every trial without a record in ``<sweep_dir>/records`` (so an
    interrupted sweep resumes), ``after_each`` in this process whenever one finishes; returns every record.

    ``run`` must be importable by the workers (a module-level function of the project)."""
    check_resources(resources)
    names = [trial.name for trial in trials]
    if not trials:
        raise ValueError("the sweep has no trials: pass at least one --seeds value (and --algo, --env)")
    if len(set(names)) != len(names):
        raise ValueError(f"trial names must be unique, got {sorted(n for n in names if names.count(n) > 1)}")
    records = Path(sweep_dir).resolve() / "records"
    pending = pending_trials(trials, sweep_dir)
    print(f"{len(trials) - len(pending)} of {len(trials)} trials already finished; running {len(pending)}.", flush=True)
    if pending:
        _fit(resources, _record_trial, {"run": run, "records": str(records), "threads": resources.threads_per_trial,
                                        "trial": tune.grid_search(pending)},
             tune.TuneConfig(max_concurrent_trials=_concurrency(resources, len(pending))), Path(sweep_dir) / "tune",
             "trials", [_AfterEachTrial(after_each)] if after_each else None)  # fmt: skip
        unfinished = pending_trials(trials, sweep_dir)
        if unfinished:  # no trial failed, yet some left no record: Tune stopped on Ctrl-C or SIGTERM
            print(f"Interrupted: {len(trials) - len(unfinished)} of {len(trials)} trials finished; run the same command "
                  "again to resume.", file=sys.stderr)  # fmt: skip
            raise SystemExit(130)
    return load_records(sweep_dir, {trial.name for trial in trials})


def check_resources(resources: Resources) -> None:
    """A ValueError for resources no trial can run on."""
    if resources.threads_per_trial < 1:
        raise ValueError(f"--threads-per-trial must be a positive integer, got {resources.threads_per_trial}")
    if resources.max_concurrent is not None and resources.max_concurrent < 1:
        raise ValueError(f"--max-concurrent must be a positive integer (or left out), got {resources.max_concurrent}")
    if not resources.gpus_per_trial >= 0:
        raise ValueError(f"--gpus-per-trial must be >= 0, got {resources.gpus_per_trial}")


def run_sweep(spec: SweepSpec, grid: dict[str, tuple[str, ...]] | None = None) -> list[dict[str, Any]]:
    """Run every grid trial that has no record yet (so an interrupted sweep resumes) and return all records."""
    spec = _absolute(spec)
    trials = grid_trials(spec, grid)
    pending_trials(trials, spec.sweep_dir)  # refuses other settings under this name before sweep.json is rewritten
    atomic_write(spec.sweep_dir / "sweep.json", lambda tmp: tmp.write_text(json.dumps(
        {"kind": "grid", "spec": _plain(spec), "grid": grid or {}, "trials": [trial.name for trial in trials]},
        indent=2)))  # fmt: skip
    return run_trials(trials, run_train_trial, spec.sweep_dir, spec)


def load_records(sweep_dir: Path, names: set[str] | None = None) -> list[dict[str, Any]]:
    """The records of every finished trial of a sweep (of the trials ``names`` only, when given)."""
    paths = sorted((Path(sweep_dir) / "records").glob("*.json"))
    return [read_record(path) for path in paths if names is None or path.stem in names]


# --- search ---------------------------------------------------------------------------------------------------------


def search_space(algo: str, entries: list[list[str]] | None) -> dict[str, Any]:
    """The Tune search space: ``entries`` (KEY KIND ARG... from ``--search``), else the algorithm's default in
    `runner.hyperparams.SEARCH_SPACES`. Kinds: ``uniform`` / ``loguniform`` LOW HIGH, ``int`` LOW HIGH, ``choice``
    V1 V2 ... (values stay strings, parsed as ``--hyperparams`` values)."""
    declared: dict[str, tuple[Any, ...]] = (
        {entry[0]: (entry[1], *entry[2:]) for entry in entries} if entries else dict(SEARCH_SPACES.get(algo, {}))
    )
    if not declared:
        raise ValueError(
            f"No search space for {algo}: pass --search KEY KIND ARGS (e.g. --search learning_rate loguniform 1e-4 1e-2)."
        )
    check_keys(declared, get_algo(algo).load_class())  # unknown keys fail here, like --hyperparams
    space: dict[str, Any] = {}
    for key, (kind, *args) in declared.items():
        if kind in ("uniform", "loguniform", "int"):
            if len(args) != 2:
                raise ValueError(f"--search {key} {kind} takes LOW HIGH, got {args}")
            low, high = float(args[0]), float(args[1])
            space[key] = {"uniform": tune.uniform, "loguniform": tune.loguniform}.get(kind, tune.randint)(
                *((low, high) if kind != "int" else (int(low), int(high) + 1))
            )
        elif kind == "choice":
            if not args:
                raise ValueError(f"--search {key} choice takes at least one value")
            values = args[0] if len(args) == 1 and isinstance(args[0], list) else args
            space[key] = tune.choice([str(value) for value in values])
        else:
            raise ValueError(f"--search {key}: unknown kind {kind!r}; use uniform, loguniform, int or choice")
    return space


def _search_trial(config: dict[str, Any]) -> None:
    """One search trial: the sampled hyperparameters on every seed in turn. Each periodic evaluation is reported as
    ``score`` (iteration k is the same seed and step in every trial, so ASHA compares like with like); the last
    report's ``score`` is the mean final return over the seeds, Optuna's objective."""
    spec, algo, env = config["spec"], config["algo"], config["env"]
    sampled = {key: str(value) for key, value in config["params"].items()}
    finals, run_dirs = [], []
    for seed in spec.seeds:
        run_dir = train(train_args(spec, algo, env, seed, {**spec.hyperparams, **sampled}),
                        on_evaluation=lambda step, value, seed=seed: tune.report({"score": value, "seed": seed,
                                                                                  "timesteps": step}))  # fmt: skip
        finals.append(run_record(run_dir)["final_return"])
        run_dirs.append(str(run_dir))
    record = {"algo": algo, "env": env, "params": sampled, "seeds": list(spec.seeds), "run_dirs": run_dirs,
              "final_returns": finals, "mean_final_return": float(np.mean(finals))}  # fmt: skip
    name = tune.get_context().get_trial_id()
    atomic_write(spec.sweep_dir / "search" / f"{name}.json", lambda tmp: tmp.write_text(json.dumps(record, indent=2)))
    tune.report({"score": record["mean_final_return"], "done_seeds": len(finals)})


def run_search(
    spec: SweepSpec, entries: list[list[str]] | None, n_trials: int, pruner: Pruner = "asha", seed: int = 0
) -> list[dict[str, Any]]:
    """Optuna TPE over the search space for ``spec.algo[0]`` on ``spec.env[0]``, ``n_trials`` samples, each on every
    seed of ``spec.seeds``; returns the per-trial records (mean final return over the seeds), best first."""
    spec = _absolute(spec)
    check_resources(spec)
    if n_trials < 1 or not spec.seeds:
        raise ValueError(f"a search needs --trials >= 1 and at least one --seeds value, got {n_trials} and {spec.seeds}")
    if len(spec.algo) != 1 or len(spec.env) != 1:
        raise ValueError("a search tunes one algorithm on one env: pass exactly one --algo and one --env")
    if spec.save_freq > 0:
        raise ValueError("--save-freq resumes the trials of `run`; a search restarts its samples: leave it out")
    algo = spec.algo[0]
    env = runner_of(get_algo(algo).kind).resolve_target(spec.env[0])
    space = search_space(algo, entries)
    schedulers = {
        "asha": lambda: ASHAScheduler(time_attr="training_iteration", grace_period=1, max_t=10_000),
        "median": lambda: MedianStoppingRule(time_attr="training_iteration", grace_period=1, min_samples_required=2),
        "none": FIFOScheduler,
    }
    _fit(
        spec, _search_trial, {"spec": spec, "algo": algo, "env": env, "params": space},
        tune.TuneConfig(metric="score", mode="max", search_alg=OptunaSearch(seed=seed), scheduler=schedulers[pruner](),
                        num_samples=n_trials, max_concurrent_trials=_concurrency(spec, n_trials)),
        spec.sweep_dir / "tune", "search",
    )  # fmt: skip
    records = [json.loads(path.read_text()) for path in (spec.sweep_dir / "search").glob("*.json")]
    return sorted(records, key=lambda record: -record["mean_final_return"] if math.isfinite(record["mean_final_return"])
                  else math.inf)  # fmt: skip
