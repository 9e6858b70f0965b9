"""Learned-canonicalization diffusion against its ablations on DW-4 and LJ-13, at an equal wall-clock training budget.

Every (task, mode, seed) run trains :class:`samplers.canonical.CanonicalDiffusion` in one mode (canonical, frozen,
augmented, equivariant) on the task's training set (DW-4: the shared train split; LJ-13: the cached MALA samples of
`samplers.boltzmann_data`) until the profile's time budget is spent (checked between gradient steps). It then draws
the evaluation samples in chunks of 1000, every mode with the same number of integration steps, timing each chunk
(the run's sampling time per 1000 samples: the median chunk), and compares them with as many val rows by
`samplers.metrics.sampler_metrics`. The runs are trials of the sweep engine (`benchmarks.common.BenchmarkGrid`; one at a
time at ``--threads-per-trial 2`` on two cores, so that the wall-clock budgets are comparable); each saves its model
to ``<work_dir>/<profile>/models/<task>__<mode>__seed<k>.pt`` and writes its record under ``<work_dir>/<profile>/records/``
when it finishes, so an interrupted benchmark resumes where it stopped. When every mode of a task has
finished, `interleaved_sampling_times` times all modes again side by side (the speed target uses that measurement).
``benchmarks/results/<name>.json`` is rebuilt from every finished run of the profile each time, with the targets
(canonical quality >= equivariant, sampling >= 2x faster than equivariant) marked met or missed; in a fresh clone the
records are restored from it.

    python -m benchmarks.canonical --threads-per-trial 2                # CPU profile: 2 tasks x 4 modes x 1 seed, 5 min each
    python -m benchmarks.canonical --profile gpu --device cuda
    python -m benchmarks.canonical --profile tiny --name canonical_tiny --work-dir /tmp/canonical   # smoke test
"""

from __future__ import annotations

import copy
import itertools
import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, get_args

import torch
import tyro
from stable_baselines3.common.utils import get_device

from benchmarks.common import (
    BenchmarkGrid,
    Profile,
    ResultsArgs,
    previous_results,
    recorded_args,
    restore_missing,
    run_grid,
    source_commit,
    write_grid_results,
)
from benchmarks.render import Result, Section, machine, number, threads_option
from core.io import atomic_write
from runner.sweep import Resources, Trial
from samplers.boltzmann_data import mala_record, reference_subset, training_samples
from samplers.canonical import CanonicalDiffusion, Mode
from samplers.energies import Energy, make_energy
from samplers.metrics import sampler_metrics

TaskName = Literal["DW4", "LJ13"]
TASKS: tuple[str, ...] = get_args(TaskName)
MODES: tuple[str, ...] = get_args(Mode)
QUALITY_METRICS = ("energy_w2", "dist_w2", "x_w2_aligned")  # lower is better; the quality target needs all three
REPORTED_METRICS = ("energy_w2", "dist_w2", "dist_tv", "x_w2_aligned")
SPEEDUP_TARGET = 2.0  # required equivariant / canonical sampling time
TIMING_CHUNK = 1000  # samples per timed sampling call
REFERENCE_SEED = 12345  # val rows: the first n_samples are compared with, the next n_samples give the metric's floor


@dataclass(frozen=True)
class TaskBudget:
    """Evaluation size and CanonicalConfig changes of one task (the same for every mode)."""

    n_samples: int  # evaluated samples per run, and val rows compared with them
    aligned_samples: int  # rows of each set used by the aligned W2 (one alignment per pair)
    overrides: dict[str, Any] = field(default_factory=dict)  # CanonicalConfig fields changed from the preset
    timing_samples: int = 1000  # samples per mode and round of the interleaved sampling-time measurement


@dataclass(frozen=True)
class CanonicalProfile(Profile):
    """Budget of one profile."""

    train_s: float  # wall-clock training budget per run, checked between gradient steps
    tasks: dict[str, TaskBudget]
    timing_rounds: int = 3  # rounds of the interleaved sampling-time measurement (one call per mode each)


# iDEM's EGNN sizes (width 128; 3 layers for DW-4, 5 for LJ-13) and a transformer of the same width.
_WIDE = {"transformer_dim": 128, "transformer_layers": 4, "egnn_dim": 128, "batch_size": 512}
_TINY = {"transformer_dim": 16, "egnn_dim": 16, "canonicalizer_dim": 8, "integration_steps": 5, "batch_size": 32}
PROFILES: dict[str, CanonicalProfile] = {
    "cpu": CanonicalProfile(
        train_s=300.0,
        tasks={"DW4": TaskBudget(2000, 300), "LJ13": TaskBudget(1000, 200, timing_samples=500)},
        rationale="the presets (width-64 denoisers, 200 sampling steps), 5 min of training per run on 2 CPU cores; "
        "LJ-13 is evaluated on 1000 samples since 1000 EGNN samples take about half a minute",
    ),
    "gpu": CanonicalProfile(
        train_s=600.0,
        tasks={
            "DW4": TaskBudget(5000, 500, {**_WIDE, "egnn_layers": 3}),
            "LJ13": TaskBudget(5000, 300, {**_WIDE, "egnn_layers": 5}),
        },
        rationale="width-128 denoisers (EGNN depth as iDEM's), batch 512, 10 min of training per run",
    ),
    "tiny": CanonicalProfile(
        train_s=2.0,
        tasks={"DW4": TaskBudget(64, 16, _TINY, 32), "LJ13": TaskBudget(64, 8, _TINY, 32)},
        rationale="smoke test of the pipeline; the numbers mean nothing",
    ),
}


@dataclass
class CanonicalBenchArgs(Resources, ResultsArgs):
    tasks: list[TaskName] = field(default_factory=lambda: list(TASKS))
    """Targets."""
    modes: list[Mode] = field(default_factory=lambda: list(MODES))
    """Modes of CanonicalDiffusion."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Seeds (one run per task, mode and seed)."""
    profile: Literal["cpu", "gpu", "tiny"] = "cpu"
    """Budget profile (see PROFILES)."""
    device: str = "auto"
    """Torch device."""
    work_dir: Path = Path("runs/benchmarks/canonical")
    """Run records and final models."""
    force: bool = False
    """Re-run selected runs that already have a record."""
    name: str = "canonical"
    """Results file: <results-dir>/<name>.json."""


class RunKey(NamedTuple):
    """One cell of the benchmark grid."""

    task: str
    mode: str
    seed: int

    @property
    def name(self) -> str:
        """The trial name (and record and model file name) of the run."""
        return f"{self.task}__{self.mode}__seed{self.seed}"


def _metrics(samples: torch.Tensor, reference: torch.Tensor, energy: Energy, aligned: int) -> dict[str, float]:
    energy64 = copy.deepcopy(energy).cpu().double()
    return sampler_metrics(samples.cpu().double(), reference.double(), energy_fn=energy64.energy, aligned_samples=aligned,
                           n_particles=energy.n_particles, spatial_dim=energy.spatial_dim)  # fmt: skip


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _references(energy: Energy, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint val subsets: the one every mode is compared with, and an independent one (the metric's floor)."""
    both = reference_subset(copy.deepcopy(energy).cpu(), 2 * n, REFERENCE_SEED)
    return both[:n], both[n:]


def timed_samples(model: CanonicalDiffusion, n: int, seed: int) -> tuple[torch.Tensor, list[float]]:
    """``n`` samples drawn in chunks of `TIMING_CHUNK` (seeded per chunk) and each chunk's wall time scaled to 1000."""
    chunks, seconds = [], []
    for index, start in enumerate(range(0, n, TIMING_CHUNK)):
        size = min(TIMING_CHUNK, n - start)
        began = time.perf_counter()
        chunks.append(model.sample(size, seed=seed * 1_000_003 + index).cpu())  # .cpu() waits for the device
        seconds.append((time.perf_counter() - began) * 1000 / size)
    return torch.cat(chunks), seconds


def train_and_evaluate(
    key: RunKey, profile: CanonicalProfile, data: torch.Tensor, device: str, model_path: Path | None = None
) -> dict[str, Any]:
    """Train one mode for the time budget, save it to ``model_path`` (if given), then sample (timed) and evaluate;
    returns the run's record."""
    budget = profile.tasks[key.task]
    model = CanonicalDiffusion(key.task, data=data, mode=key.mode, seed=key.seed, device=device, eval_freq=0,
                               **budget.overrides)  # fmt: skip
    began = time.perf_counter()
    model.learn(10**9, time_limit_s=profile.train_s)
    train_s = time.perf_counter() - began
    if model_path is not None:
        model.save(model_path)
    reference, _ = _references(model.target, budget.n_samples)
    samples, seconds = timed_samples(model, budget.n_samples, key.seed)
    gen = torch.Generator().manual_seed(key.seed)
    held_out = reference.to(model.device) / model.config.data_scale
    t = torch.rand(len(held_out), generator=gen).to(model.device)
    noise = torch.randn(held_out.shape, generator=gen).to(model.device)
    with torch.no_grad():
        val_loss, degenerate = model.denoising_loss(held_out, t, noise)
    return {
        **key._asdict(),
        "config": asdict(model.config),
        "steps": model.num_timesteps,
        "train_s": train_s,
        "steps_per_s": model.num_timesteps / train_s,
        "sample_s_per_1000": statistics.median(seconds),
        "sample_chunks_s_per_1000": seconds,
        "integration_steps": model.config.integration_steps,
        "denoiser_parameters": _count(model.network),
        "canonicalizer_parameters": 0 if model.canonicalizer is None else _count(model.canonicalizer),
        "val_denoising_loss": val_loss.item(),  # fixed t and noise on the compared val rows, in the mode's own pose
        "val_degenerate_frac": degenerate.float().mean().item(),
        "metrics": _metrics(samples, reference, model.target, budget.aligned_samples),
        "device": str(model.device),
        "torch_threads": torch.get_num_threads(),
        "model_path": None if model_path is None else str(model_path),  # CanonicalDiffusion.load(...) to resample
    }  # fmt: skip


def run_trial(config: dict[str, Any]) -> dict[str, Any]:
    """One trial of the grid: `train_and_evaluate` on the task's training data, the model saved beside the records."""
    key = RunKey(config["task"], config["mode"], config["seed"])
    record = train_and_evaluate(key, config["profile"], training_samples(key.task), config["device"],
                                Path(config["model_path"]))  # fmt: skip
    return {**record, "profile": config["profile_name"]}


def interleaved_sampling_times(
    task: str, profile: CanonicalProfile, data: torch.Tensor, device: str, modes: tuple[str, ...] = MODES
) -> dict[str, list[float]]:
    """Seconds per 1000 samples of every mode, timed in rounds that call each mode once in turn, so that machine load
    hits every mode alike (the timing after each training run sees only the load of its moment). The models are
    freshly built with the run's settings: the cost of sampling does not depend on the trained weights."""
    budget = profile.tasks[task]
    models = {mode: CanonicalDiffusion(task, data=data, mode=mode, seed=0, device=device, eval_freq=0, **budget.overrides)
              for mode in modes}  # fmt: skip
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    for round_index in range(profile.timing_rounds):
        for mode, model in models.items():
            began = time.perf_counter()
            model.sample(budget.timing_samples, seed=round_index).cpu()  # .cpu() waits for the device
            times[mode].append((time.perf_counter() - began) * 1000 / budget.timing_samples)
    return times


def task_timing(task: str, profile_name: str, work_dir: Path, data: torch.Tensor, device: str) -> dict[str, Any]:
    """`interleaved_sampling_times` of the task, cached beside its runs."""
    path = work_dir / profile_name / task / "sampling_interleaved.json"
    if path.is_file():
        return json.loads(path.read_text())
    profile = PROFILES[profile_name]
    times = interleaved_sampling_times(task, profile, data, device)
    record = {"task": task, "rounds": profile.timing_rounds, "samples_per_call": profile.tasks[task].timing_samples,
              "s_per_1000": times, "median_s_per_1000": {mode: statistics.median(v) for mode, v in times.items()},
              "device": str(get_device(device)), "torch_threads": torch.get_num_threads()}  # fmt: skip
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(record, indent=2)))
    return record


def task_baseline(task: str, profile_name: str, work_dir: Path, data: torch.Tensor) -> dict[str, Any]:
    """Metrics of the training data and of an independent val subset against the compared val rows (cached)."""
    path = work_dir / profile_name / task / "baseline.json"
    if path.is_file():
        return json.loads(path.read_text())
    budget, energy = PROFILES[profile_name].tasks[task], make_energy(task)
    reference, independent = _references(energy, budget.n_samples)
    pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[: budget.n_samples]
    record = {
        "task": task,
        "training_data": {"n": len(data), "source": "MALA (samplers.boltzmann_data)" if task == "LJ13" else "train split",
                          "mala_record": mala_record(task) if task == "LJ13" else None,
                          "metrics": _metrics(data[pick], reference, energy, budget.aligned_samples)},
        "reference_floor": _metrics(independent, reference, energy, budget.aligned_samples),
    }  # fmt: skip
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(record, indent=2)))
    return record


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """task -> mode -> means over seeds of the reported metrics, steps and timings."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in runs:
        groups.setdefault((record["task"], record["mode"]), []).append(record)
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for (task, mode), records in sorted(groups.items(), key=lambda item: (item[0][0], MODES.index(item[0][1]))):
        summary.setdefault(task, {})[mode] = {
            "seeds": [r["seed"] for r in records],
            **{k: statistics.fmean(r["metrics"][k] for r in records) for k in REPORTED_METRICS},
            **{
                k: statistics.fmean(r[k] for r in records)
                for k in ("steps", "train_s", "sample_s_per_1000", "val_denoising_loss")
            },
        }
    return summary


def check_targets(summary: dict[str, Any], timings: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Per task: canonical <= equivariant on every quality metric, and equivariant / canonical sampling time >= 2
    (from the interleaved timing when ``timings`` has the task, else from the runs' own timings)."""
    timings = timings or {}
    targets = []
    for task, modes in summary.items():
        canonical, equivariant = modes.get("canonical"), modes.get("equivariant")
        if canonical is None or equivariant is None:
            continue
        checks = [{"metric": k, "canonical": canonical[k], "equivariant": equivariant[k],
                   "met": canonical[k] <= equivariant[k]} for k in QUALITY_METRICS]  # fmt: skip
        targets.append({"task": task, "target": "canonical quality >= equivariant (lower energy W2, distance W2 and "
                        "aligned W2)", "met": all(c["met"] for c in checks), "checks": checks})  # fmt: skip
        medians = timings.get(task, {}).get("median_s_per_1000", {})
        interleaved = "canonical" in medians and "equivariant" in medians
        speedup = (medians["equivariant"] / medians["canonical"] if interleaved
                   else equivariant["sample_s_per_1000"] / canonical["sample_s_per_1000"])  # fmt: skip
        targets.append({"task": task, "target": f"canonical sampling >= {SPEEDUP_TARGET:g}x faster than equivariant",
                        "met": speedup >= SPEEDUP_TARGET, "speedup": speedup,
                        "timing": "interleaved" if interleaved else "per run"})  # fmt: skip
    return targets


def print_table(summary: dict[str, Any], targets: list[dict[str, Any]]) -> None:
    header = f"{'task':<6}{'mode':<13}" + "".join(f"{k:>14}" for k in REPORTED_METRICS)
    print("\n" + header + f"{'val loss':>10}{'steps':>8}{'s/1000 samples':>16}")
    for task, modes in summary.items():
        for mode, s in modes.items():
            values = "".join(f"{s[k]:>14.4f}" for k in REPORTED_METRICS)
            timing = f"{s['val_denoising_loss']:>10.4f}{s['steps']:>8.0f}{s['sample_s_per_1000']:>16.2f}"
            print(f"{task:<6}{mode:<13}{values}{timing}")
    print()
    for target in targets:
        detail = f"speedup {target['speedup']:.2f}x" if "speedup" in target else ", ".join(
            f"{c['metric']} {c['canonical']:.4f} vs {c['equivariant']:.4f}" for c in target["checks"])  # fmt: skip
        print(f"[{'met' if target['met'] else 'missed':>6}] {target['task']}: {target['target']} ({detail})")


def main(args: CanonicalBenchArgs) -> None:
    source_commit(args.allow_dirty)
    profile = PROFILES[args.profile]
    root = (args.work_dir / args.profile).resolve()
    committed = previous_results(args.results_path(args.name), args.profile, asdict(profile))
    restore_missing((root / task / f"{name}.json", record)  # the per-task records of a fresh clone
                    for name, key in (("baseline", "baselines"), ("sampling_interleaved", "sampling_interleaved"))
                    for task, record in committed.get(key, {}).items())  # fmt: skip

    def results(runs: list[dict[str, Any]]) -> dict[str, Any]:
        def per_task(name: str) -> dict[str, Any]:
            return {path.parent.name: json.loads(path.read_text()) for path in sorted(root.glob(f"*/{name}.json"))}

        timings, summary = per_task("sampling_interleaved"), summarize(runs)
        return {"config": recorded_args(args), "baselines": per_task("baseline"),
                "sampling_interleaved": timings, "summary": summary, "targets": check_targets(summary, timings),
                "runs": runs}  # fmt: skip

    keys = [RunKey(*cell) for cell in itertools.product(args.tasks, args.modes, args.seeds)]
    trials = [Trial(key.name, {**key._asdict(), "profile": profile, "profile_name": args.profile, "device": args.device,
                               "model_path": str(root / "models" / f"{key.name}.pt")})
              for key in keys]  # fmt: skip
    grid = BenchmarkGrid(name=args.name, out=args, profile=args.profile, settings=asdict(profile), sweep_dir=root,
                         trials=trials,
                         run=run_trial, record_name=lambda r: RunKey(r["task"], r["mode"], r["seed"]).name,
                         results=results)  # fmt: skip
    torch.set_num_threads(args.threads_per_trial)
    for task in args.tasks:
        task_baseline(task, args.profile, root.parent, training_samples(task))
    runs = run_grid(grid, args, rerun=(lambda record: True) if args.force else None)
    for task in args.tasks:
        if set(MODES) <= {run["mode"] for run in runs if run["task"] == task}:
            timing = task_timing(task, args.profile, root.parent, training_samples(task), args.device)
            print(f"{task} interleaved sampling, s per 1000: " + ", ".join(
                f"{mode} {value:.2f}" for mode, value in timing["median_s_per_1000"].items()), flush=True)  # fmt: skip
    write_grid_results(grid)
    summary = summarize(runs)
    print_table(summary, check_targets(summary, results(runs)["sampling_interleaved"]))
    print(f"wrote {args.results_path(args.name)}")


TEXT = """\
## Learned-canonicalization diffusion vs equivariant, frozen and augmented (DW-4, LJ-13)

`python -m benchmarks.canonical --profile {profile}{threads}` (resumable per task, mode and seed; the tables are rebuilt \
from every finished run).

Machine: {machine}. Every mode trains on the same data for the same wall-clock budget ({budget[train_s]:.0f} s, \
checked between gradient steps; {budget[rationale]}), then samples with the same number of integration steps. Metrics \
(`samplers.metrics.sampler_metrics`) against val rows: `energy_w2` is a true W2; `x_w2_aligned` aligns translation, \
rotation/reflection and permutation on the first rows of each set (counts in the last column). `val loss` is the \
ε-prediction loss on those val rows with fixed t and noise, in each mode's own pose. Sampling time, seconds per 1000 \
samples: the median over the run's own sampling calls, right after its training (exposed to the machine's load at that \
moment), and the interleaved measurement (`interleaved_sampling_times`: every mode called in turn, median over \
rounds), which the speed target uses. Means over seeds.

| task | mode | seeds | {metrics} | val loss | gradient steps | s per 1000 samples (run) | s per 1000 samples \
(interleaved) | samples (aligned) |
|---|---|---|{rules}"""
ROW = "| {task} | {mode} | {seeds} | {values} | {loss} | {steps:.0f} | {run_time} | {interleaved} | {counts} |"
BASELINE_ROW = "| {task} | *{label}* | - | {values} | - | - | - | - | {counts} |"
TARGETS_INTRO = """
Targets:
"""
TARGET = "- {task}: {target}: **{status}** ({detail})."
MALA_DATA = """
LJ-13 training data: {n_samples} MALA samples (`{command}`): {recipe[n_chains]} chains, {recipe[burn_in]} burn-in \
steps, {recipe[n_kept]} states kept every {recipe[thinning]} steps, per-chain step sizes; generated in \
{generation_s:.0f} s on {torch_threads} thread(s), acceptance {acceptance_rate:.2f}, mean energy {energy_mean:.2f} \
(val {val_energy})."""


def render(result: Result, figures: Path) -> str:
    """Metrics, sampling times and sample counts per task and mode beside the training data and the val floor, the
    targets, and how the LJ-13 training data was made."""
    budget = result["profile_config"]
    lines = [TEXT.format(profile=result["profile"], threads=threads_option(result["config"]), machine=machine(result),
                         budget=budget, metrics=" | ".join(REPORTED_METRICS),
                         rules="---|" * (len(REPORTED_METRICS) + 5))]  # fmt: skip
    interleaved = {task: t["median_s_per_1000"] for task, t in result.get("sampling_interleaved", {}).items()}
    counts = {task: f"{sizes['n_samples']} ({sizes['aligned_samples']})" for task, sizes in budget["tasks"].items()}
    for task, modes in result["summary"].items():
        for mode, s in modes.items():
            lines.append(ROW.format(task=task, mode=mode, seeds=len(s["seeds"]), values=metric_cells(s),
                                    loss=number(s["val_denoising_loss"]), steps=s["steps"],
                                    run_time=number(s["sample_s_per_1000"]),
                                    interleaved=number(interleaved.get(task, {}).get(mode)), counts=counts[task]))  # fmt: skip
        baseline = result["baselines"].get(task)
        if baseline is not None:
            for label, metrics in (("training data", baseline["training_data"]["metrics"]),
                                   ("val floor", baseline["reference_floor"])):  # fmt: skip
                lines.append(BASELINE_ROW.format(task=task, label=label, values=metric_cells(metrics), counts=counts[task]))
    lines.append(TARGETS_INTRO)
    for target in result["targets"]:
        if "speedup" in target:
            detail = f"equivariant / canonical sampling time {target['speedup']:.2f}, {target.get('timing', 'per run')} timing"
        else:
            detail = ", ".join(
                f"{c['metric']} {number(c['canonical'])} vs {number(c['equivariant'])}" for c in target["checks"]
            )
        lines.append(TARGET.format(**target, status="met" if target["met"] else "missed", detail=detail))
    mala = result["baselines"].get("LJ13", {}).get("training_data", {}).get("mala_record")
    if mala:
        lines.append(MALA_DATA.format(**mala, val_energy=number(mala.get("val_energy_mean"))))
    return "\n".join(lines)


def metric_cells(metrics: dict[str, Any]) -> str:
    """The reported metrics of a row, as table cells."""
    return " | ".join(number(metrics.get(key)) for key in REPORTED_METRICS)


SECTION = Section(("canonical",), render)


if __name__ == "__main__":
    main(tyro.cli(CanonicalBenchArgs))
