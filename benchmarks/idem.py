"""iDEM against MALA at an equal number of energy(+gradient) evaluations, on GMM-40, DW-4 and LJ-13 (LJ-55: GPU).

For each task: train iDEM for a fixed number of gradient steps (checkpointed, so an interrupted run resumes), draw
samples, then run MALA chains from the same prior with the energy-evaluation budget iDEM consumed, and compare both
(and an independent reference set, the noise floor of the metric) with the reference samples. Metrics are those of
`samplers.metrics.sampler_metrics`: true (not squared) energy W2, aligned and unaligned position W2, distance W2/TV.

Each task is a trial of the sweep engine (`benchmarks.common.BenchmarkGrid`, two at a time on two cores by default);
its record lands in ``<work_dir>/<profile>/records/<task>.json`` and in the results file, from which a fresh clone
restores it.

    python -m benchmarks.idem                       # CPU profile, all three tasks, resumes finished tasks
    python -m benchmarks.idem --profile gpu --tasks DW4 LJ13 LJ55 --device cuda

The CPU profile shrinks the reference configs (jarridrb/DEM ``configs/experiment/*_idem.yaml``) so each task fits in
roughly 20-40 minutes on 2 cores; the changes are listed per task in `PROFILES` and recorded in the JSON. The GPU
profile is the reference config.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import tyro

from benchmarks.common import BenchmarkGrid, Profile, ResultsArgs, run_grid
from benchmarks.render import Curve, Level, Panel, Result, Section, figure, machine, number
from equivariant.geometry import remove_com
from runner.sweep import Resources, Trial
from samplers.energies import Energy
from samplers.idem import IDEM, IDEM_CPU_OVERRIDES
from samplers.mcmc import mala
from samplers.metrics import sampler_metrics


@dataclass(frozen=True)
class TaskProfile:
    """Budget and config changes of one task in a profile."""

    steps: int  # iDEM gradient steps
    overrides: dict[str, Any] = field(default_factory=dict)  # IDEMConfig fields changed from the reference preset
    n_samples: int = 2000  # samples compared with as many reference rows
    aligned_samples: int = 500  # rows used by the (N x M alignments) aligned W2
    mcmc_chains: int = 10_000  # parallel MALA chains; n_samples of their final states are evaluated


@dataclass(frozen=True)
class IDEMProfile(Profile):
    """The tasks a profile can run, each with its budget."""

    tasks: dict[str, TaskProfile]


PROFILES: dict[str, IDEMProfile] = {
    "cpu": IDEMProfile(
        tasks={
            "GMM40": TaskProfile(steps=8_000, overrides=IDEM_CPU_OVERRIDES["GMM40"]),
            "DW4": TaskProfile(steps=8_000, overrides=IDEM_CPU_OVERRIDES["DW4"]),
            "LJ13": TaskProfile(steps=6_000, overrides=IDEM_CPU_OVERRIDES["LJ13"], n_samples=1000, aligned_samples=200),
        },
        rationale="iDEM's CPU preset (samplers.idem.IDEM_CPU_OVERRIDES: fewer MC samples and SDE steps, traded for more "
        "gradient steps)",
    ),
    "gpu": IDEMProfile(
        tasks={
            "GMM40": TaskProfile(steps=100_000),
            "DW4": TaskProfile(steps=100_000),
            "LJ13": TaskProfile(steps=100_000, n_samples=2000, aligned_samples=500),
            "LJ55": TaskProfile(steps=200_000, n_samples=1000, aligned_samples=200, mcmc_chains=12_800),
        },
        rationale="the reference configs",
    ),
}


@dataclass
class IDEMBenchArgs(Resources, ResultsArgs):
    tasks: list[str] = field(default_factory=lambda: ["GMM40", "DW4", "LJ13"])
    """Targets to run (GMM40, DW4, LJ13, LJ55)."""
    profile: Literal["cpu", "gpu"] = "cpu"
    """Budget profile (see PROFILES)."""
    seed: int = 0
    """Seed of iDEM, MALA and the reference subsets."""
    device: str = "auto"
    """Torch device."""
    chunk_steps: int = 500
    """iDEM steps between checkpoints (resume granularity)."""
    work_dir: Path = Path("runs/benchmarks/idem")
    """Checkpoints and samples of the benchmark runs."""
    force: bool = False
    """Re-run the listed tasks even if present in the results file (training resumes from its checkpoint)."""
    name: str = "idem"
    """Results file: <results-dir>/<name>.json (every task of the profile run so far)."""


def _metrics(samples: torch.Tensor, reference: torch.Tensor, energy: Energy, aligned: int) -> dict[str, float]:
    energy64 = copy.deepcopy(energy).cpu().double()
    return sampler_metrics(
        samples.cpu().double(), reference.cpu().double(), energy_fn=energy64.energy, n_particles=energy.n_particles,
        spatial_dim=energy.spatial_dim, aligned_samples=aligned,
    )  # fmt: skip


def _references(model: IDEM, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint reference sets: the one compared against, and an independent one giving the metric's floor."""
    both = model.reference_samples(2 * n, seed=seed)
    return both[:n], both[n:]


def train_idem(
    task: str, profile: TaskProfile, run_dir: Path, seed: int, chunk_steps: int, device: str
) -> tuple[IDEM, float, list[dict[str, float]]]:  # fmt: skip
    """Train (or resume, from ``run_dir``) iDEM for ``profile.steps``, checkpointed every ``chunk_steps``; returns the
    model, the wall time and the eval curve."""
    checkpoint = run_dir / "model.pt"
    curve_path = run_dir / "curve.json"
    if checkpoint.is_file():
        model = IDEM.load(checkpoint, device=device)
        state = json.loads(curve_path.read_text())
        print(f"[{task}] resuming at step {model.num_timesteps}")
    else:
        model = IDEM(task, seed=seed, device=device, preset="reference", eval_freq=0, **profile.overrides)
        state = {"wall_time_s": 0.0, "curve": []}
    while model.num_timesteps < profile.steps:
        start = time.perf_counter()
        model.learn(min(chunk_steps, profile.steps - model.num_timesteps), reset_num_timesteps=False)
        state["wall_time_s"] += time.perf_counter() - start
        quick = model.evaluate()  # eval_samples fresh samples vs as many reference rows, for the learning curve
        state["curve"].append({"step": model.num_timesteps, "wall_time_s": state["wall_time_s"],
                               "energy_evaluations": model.energy_evaluations, **quick})  # fmt: skip
        model.save(checkpoint)
        curve_path.write_text(json.dumps(state))
        print(
            f"[{task}] step {model.num_timesteps}/{profile.steps}  {state['wall_time_s']:.0f}s  "
            f"energy_w2={quick.get('energy_w2', math.nan):.3f}  x_w2={quick['x_w2_unaligned']:.3f}",
            flush=True,
        )
    return model, state["wall_time_s"], state["curve"]


def run_mcmc(model: IDEM, budget: int, profile: TaskProfile, seed: int) -> tuple[torch.Tensor, dict[str, float]]:
    """MALA chains started from iDEM's prior, using ``budget`` energy+gradient evaluations in total."""
    torch.manual_seed(seed)
    chains = profile.mcmc_chains
    n_steps = max(budget // chains - 1, 1)
    x0 = model._prior(chains) * model.config.data_scale
    start = time.perf_counter()
    # Per-chain step sizes: chains started far out (huge gradients) and chains in a well need very different steps; a
    # global step size tuned to the average acceptance leaves the far ones stuck (DW-4: mean energy > 1000).
    result = mala(model.target, x0, n_steps=n_steps, adapt_steps=min(n_steps // 2, 2000), per_chain=True)
    wall = time.perf_counter() - start
    pick = torch.randperm(chains)[: profile.n_samples]
    info = {"chains": chains, "steps": n_steps, "energy_evaluations": int(result.n_energy_evals), "wall_time_s": wall,
            "acceptance_rate": float(result.acceptance_rate), "step_size": float(result.step_size.mean())}  # fmt: skip
    return result.samples[pick], info


def run_task(config: dict[str, Any]) -> dict[str, Any]:
    """One trial: iDEM on the task (resumed from its checkpoint), then MALA at iDEM's energy budget; the record."""
    task, profile, seed = config["task"], config["profile"], config["seed"]
    model, idem_wall, curve = train_idem(task, profile, Path(config["run_dir"]), seed, config["chunk_steps"],
                                         config["device"])  # fmt: skip
    reference, independent = _references(model, profile.n_samples, seed)
    start = time.perf_counter()
    samples = model.sample(profile.n_samples)
    sample_wall = time.perf_counter() - start
    if model.is_particle_system:
        samples = remove_com(samples, model.target.n_particles, model.target.spatial_dim)
    idem_metrics = _metrics(samples, reference, model.target, profile.aligned_samples)
    mcmc_samples, mcmc_info = run_mcmc(model, model.energy_evaluations, profile, seed)
    mcmc_metrics = _metrics(mcmc_samples, reference, model.target, profile.aligned_samples)
    floor_metrics = _metrics(independent, reference, model.target, profile.aligned_samples)
    return {
        "task": task,
        "profile_name": config["profile_name"],
        "profile": asdict(profile),
        "config": asdict(model.config),
        "idem": {"metrics": idem_metrics, "steps": model.num_timesteps, "energy_evaluations": model.energy_evaluations,
                 "train_wall_time_s": idem_wall, "sample_wall_time_s": sample_wall, "curve": curve},
        "mcmc": {"metrics": mcmc_metrics, **mcmc_info},
        "reference_floor": {"metrics": floor_metrics},
    }  # fmt: skip


METRIC_KEYS = ("energy_w2", "x_w2_aligned", "x_w2_unaligned", "dist_w2", "dist_tv")


def print_table(tasks: dict[str, Any]) -> None:
    print(f"\n{'task':<7}{'method':<10}" + "".join(f"{k:>16}" for k in METRIC_KEYS) + f"{'energy evals':>15}{'wall s':>9}")
    for task, result in tasks.items():
        rows = [
            ("iDEM", result["idem"]["metrics"], result["idem"]["energy_evaluations"], result["idem"]["train_wall_time_s"]),
            ("MALA", result["mcmc"]["metrics"], result["mcmc"]["energy_evaluations"], result["mcmc"]["wall_time_s"]),
            ("ref", result["reference_floor"]["metrics"], 0, 0.0),
        ]
        for method, metrics, evals, wall in rows:
            values = "".join(f"{metrics.get(k, math.nan):>16.4f}" for k in METRIC_KEYS)
            print(f"{task:<7}{method:<10}{values}{evals:>15.3g}{wall:>9.0f}")


def main(args: IDEMBenchArgs) -> None:
    profile = PROFILES[args.profile]
    unknown = sorted(set(args.tasks) - set(profile.tasks))
    if unknown:
        raise SystemExit(f"error: no {args.profile} profile for {', '.join(unknown)}; choose from "
                         f"{', '.join(profile.tasks)}")  # fmt: skip
    root = (args.work_dir / args.profile).resolve()
    trials = [Trial(task, {"task": task, "profile": profile.tasks[task], "profile_name": args.profile,
                           "seed": args.seed, "run_dir": str(root / task), "chunk_steps": args.chunk_steps,
                           "device": args.device}) for task in args.tasks]  # fmt: skip
    settings = {"seed": args.seed, "tasks": asdict(profile)["tasks"]}
    grid = BenchmarkGrid(
        name=args.name, out=args, profile=args.profile, settings=settings, sweep_dir=root, trials=trials, run=run_task,
        record_name=lambda record: record["task"],
        results=lambda runs: {"seed": args.seed, "tasks": {record["task"]: record for record in runs}},
        committed=lambda results: [{"task": task, **record} for task, record in results.get("tasks", {}).items()
                                   if record.get("profile_name") == args.profile],
    )  # fmt: skip
    runs = run_grid(grid, args, rerun=(lambda record: True) if args.force else None)
    print_table({record["task"]: record for record in runs})
    print(f"wrote {args.results_path(args.name)}")


TEXT = """\
## iDEM vs MALA at equal energy evaluations

`python -m benchmarks.idem --profile {profile}` (resumable; seed {seed}).

Machine: {machine}.
Metrics (`samplers.metrics`): `energy_w2` is a true W2 (DEM reports its square); `x_w2_aligned` aligns translation, \
rotation/reflection and permutation; `ref` compares two independent reference sets of the same size (the metric's \
noise floor). MALA chains (per-chain step sizes adapted by dual averaging towards 0.574 acceptance) start from iDEM's \
prior and use the same number of energy+gradient evaluations as iDEM's training; the evaluated samples are final \
states of randomly chosen chains.

| task | method | {metrics} | energy evals | wall time (s) | samples |
|---|---|{rules}"""
ROW = "| {task} | {method} | {values} | {evals} | {wall} | {count} |"
SETTINGS = """
Settings changed from the reference configs in this profile (see `PROFILES` in `benchmarks/idem.py`):
"""
SETTING = (
    "- {task}: {steps} gradient steps; {changes}; MALA {chains} chains x {mcmc_steps} steps (acceptance {acceptance:.2f})."
)


def render(result: Result, figures: Path) -> str:
    """The metrics of iDEM, MALA and the reference floor per task, each task's settings and iDEM's learning curves."""
    lines = [TEXT.format(profile=result["profile"], seed=result["seed"], machine=machine(result),
                         metrics=" | ".join(METRIC_KEYS), rules="---|" * (len(METRIC_KEYS) + 3))]  # fmt: skip
    for task, entry in result["tasks"].items():
        rows = [
            ("iDEM", entry["idem"]["metrics"], entry["idem"]["energy_evaluations"], entry["idem"]["train_wall_time_s"]),
            ("MALA", entry["mcmc"]["metrics"], entry["mcmc"]["energy_evaluations"], entry["mcmc"]["wall_time_s"]),
            ("ref", entry["reference_floor"]["metrics"], None, None),
        ]
        for method, metrics, evals, wall in rows:
            values = " | ".join(number(metrics.get(key)) for key in METRIC_KEYS)
            lines.append(ROW.format(task=task, method=method, values=values, evals=number(evals), wall=number(wall),
                                    count=int(metrics["n_samples"])))  # fmt: skip
    lines.append(SETTINGS)
    for task, entry in result["tasks"].items():
        changes = ", ".join(f"{k}={v}" for k, v in entry["profile"]["overrides"].items()) or "none"
        mcmc = entry["mcmc"]
        lines.append(SETTING.format(task=task, steps=entry["profile"]["steps"], changes=changes, chains=mcmc["chains"],
                                    mcmc_steps=mcmc["steps"], acceptance=mcmc["acceptance_rate"]))  # fmt: skip
    return "\n".join([*lines, "", learning_curves(result, figures)])


def learning_curves(result: Result, figures: Path) -> str:
    """Per task: iDEM's energy W2 (or unaligned position W2) during training against MALA's and the reference floor."""
    panels = []
    for task, entry in result["tasks"].items():
        curve = entry["idem"]["curve"]
        key = "energy_w2" if "energy_w2" in curve[0] else "x_w2_unaligned"
        idem = Curve("iDEM (during training)", [p["energy_evaluations"] for p in curve], [p[key] for p in curve], "C0",
                     marker="o")  # fmt: skip
        levels = [Level(entry["mcmc"]["metrics"][key], "MALA, final budget", "C1", "--"),
                  Level(entry["reference_floor"]["metrics"][key], "reference floor", "gray", ":")]  # fmt: skip
        panels.append(Panel([idem], "energy evaluations", key, title=task, levels=levels, yscale="log", legend=7))
    return figure(panels, figures, "idem_curves.png", "iDEM learning curves", panel_width=4.5)


SECTION = Section(("idem",), render)


if __name__ == "__main__":
    main(tyro.cli(IDEMBenchArgs))
