"""Does the Lie point symmetry loss make a physics-informed DeepONet more sample-efficient? (Akhound-Sadegh et al.,
NeurIPS 2023, Section 4.)

Relative L2 error on held-out initial conditions against the reference solver, as a function of the number of
training initial conditions (the supervision), on the heat equation and viscous Burgers, for three methods at equal
gradient steps: ``pinn`` (initial-condition + PDE-residual loss), ``symmetry`` (plus the symmetry loss over the whole
algebra) and ``augmentation`` (the training initial conditions moved by the finite group action: translations and
u-scaling for heat, translations and Galilean boosts for Burgers). At the smallest budget the symmetry loss is also
tried at the profile's ``weight_sweep`` weights (method ``symmetry_w<weight>``): a negative at one weight is not a
negative of the method. Each (problem, budget, method, seed) is a trial of
the sweep engine; its record lands in ``<work_dir>/<profile>/records/`` and in the results file, from which a fresh
clone restores it.

    python -m benchmarks.pinn_symmetry                          # CPU profile, resumes finished trials
    python -m benchmarks.pinn_symmetry --profile gpu --device cuda
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tyro

from benchmarks.common import BenchmarkGrid, Profile, ResultsArgs, run_grid
from benchmarks.render import Curve, Panel, Result, Section, figure, machine, mean_std, number
from pde.solver import PINNSolver
from runner.hyperparams import hyperparams_for
from runner.sweep import Resources, Trial

METHODS = ("pinn", "symmetry", "augmentation")


@dataclass(frozen=True)
class PINNProfile(Profile):
    """Budget and network of one profile; ``overrides`` are `pde.solver.PINNSolverConfig` fields."""

    steps: int
    budgets: tuple[int, ...]  # training initial conditions
    symmetry_weight: float = 1.0
    augment_copies: int = 3
    weight_sweep: tuple[float, ...] = ()  # further symmetry weights, at the smallest budget
    overrides: dict[str, Any] = field(default_factory=dict)


PROFILES: dict[str, PINNProfile] = {
    "cpu": PINNProfile(
        steps=2_000,
        budgets=(2, 4, 8, 16),
        weight_sweep=(10.0,),
        overrides={
            "hidden_dim": 64,
            "n_layers": 4,
            "latent_dim": 64,
            "ic_batch": 8,
            "residual_points": 64,
            "symmetry_points": 32,
            "eval_freq": 500,
        },
        rationale="4 x 64 networks, 8 initial conditions per step and 32 symmetry points per initial condition: "
        "the grid fits a few hours of two CPU cores; weight 10 is the one further symmetry weight (weight 0 is the "
        "plain PI-DeepONet)",
    ),
    "gpu": PINNProfile(steps=20_000, budgets=(2, 4, 8, 16, 32, 64), weight_sweep=(0.1, 10.0), overrides={"eval_freq": 1_000}),
    "smoke": PINNProfile(
        steps=4,
        budgets=(2,),
        overrides={
            "hidden_dim": 16,
            "n_layers": 2,
            "latent_dim": 8,
            "ic_batch": 2,
            "residual_points": 4,
            "symmetry_points": 2,
            "test_initial_conditions": 3,
            "sensors": 32,
            "eval_freq": 2,
        },
    ),
}


@dataclass
class PINNBenchArgs(Resources, ResultsArgs):
    problems: list[str] = field(default_factory=lambda: ["Heat", "Burgers"])
    """PDE problems (pde.problems)."""
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    """Methods to run (pinn, symmetry, augmentation)."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Seeds: training initial conditions, initialisation and collocation points."""
    profile: Literal["cpu", "gpu", "smoke"] = "cpu"
    """Budget profile (see PROFILES)."""
    device: str = "auto"
    """Torch device."""
    work_dir: Path = Path("runs/benchmarks/pinn_symmetry")
    """Records of the benchmark runs."""
    name: str = "pinn_symmetry"
    """Results file: <results-dir>/<name>.json."""


def method_overrides(method: str, profile: PINNProfile, symmetry_weight: float) -> dict[str, Any]:
    """The solver settings that make ``method`` (on top of the profile's), the symmetry method at ``symmetry_weight``."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    return {"symmetry_weight": symmetry_weight if method == "symmetry" else 0.0,
            "augment_copies": profile.augment_copies if method == "augmentation" else 0}  # fmt: skip


def method_label(method: str, symmetry_weight: float, profile: PINNProfile) -> str:
    """``method``, or ``symmetry_w<weight>`` for the symmetry loss at a weight other than the profile's."""
    return f"symmetry_w{symmetry_weight:g}" if method == "symmetry" and symmetry_weight != profile.symmetry_weight else method


def train_with_curve(config: dict[str, Any], settings: dict[str, Any], steps: int) -> dict[str, Any]:
    """Train a solver on ``config``'s problem, seed and device with ``settings`` for ``steps`` gradient steps,
    evaluating every ``eval_freq`` of them: the record fields every PINN benchmark shares (steps, final evaluation,
    curve, training time, the solver's whole config)."""
    solver = PINNSolver(config["problem"], seed=config["seed"], device=config["device"], **settings)
    curve: list[dict[str, float]] = []
    start = time.perf_counter()
    chunk = settings.get("eval_freq") or steps
    while solver.num_timesteps < steps:
        solver.learn(min(chunk, steps - solver.num_timesteps), reset_num_timesteps=False)
        curve.append({"step": solver.num_timesteps, "wall_time_s": time.perf_counter() - start, **solver.evaluate()})
    return {"steps": solver.num_timesteps, "final": curve[-1], "curve": curve,
            "train_wall_time_s": curve[-1]["wall_time_s"], "config": asdict(solver.config)}  # fmt: skip


def run_trial(config: dict[str, Any]) -> dict[str, Any]:
    """One trial: train the solver for the profile's steps; its held-out error curve and final error."""
    profile: PINNProfile = config["profile"]
    settings = {**hyperparams_for("pinn", config["problem"]).kwargs, **profile.overrides,
                **method_overrides(config["method"], profile, config["symmetry_weight"]),
                "train_initial_conditions": config["budget"]}  # fmt: skip
    return {"problem": config["problem"], "budget": config["budget"], "method": config["method"],
            "seed": config["seed"], **train_with_curve(config, settings, profile.steps)}  # fmt: skip


def trial_name(problem: str, budget: int, method: str, seed: int) -> str:
    """The trial's (and its record's) name; ``method`` is a `method_label`."""
    return f"{problem}__ics{budget}__{method}__seed{seed}"


def record_label(record: dict[str, Any], profile: PINNProfile) -> str:
    """The `method_label` of a finished run."""
    return method_label(record["method"], record["config"]["symmetry_weight"], profile)


def summarise(runs: list[dict[str, Any]], profile: PINNProfile) -> dict[str, Any]:
    """Per problem, budget and method label (`record_label`): the symmetry weight, the final relative L2 over seeds
    (mean, std, values), the training time per gradient step (mean over seeds, evaluations included), and the ratio
    of each other method's mean to the plain PINN's (< 1: lower error)."""
    summary: dict[str, Any] = {}
    for run in runs:
        entry = (summary.setdefault(run["problem"], {}).setdefault(str(run["budget"]), {})
                 .setdefault(record_label(run, profile), {"symmetry_weight": run["config"]["symmetry_weight"]}))  # fmt: skip
        entry.setdefault("seeds", []).append(run["seed"])
        entry.setdefault("values", []).append(run["final"]["relative_l2"])
        entry.setdefault("step_times_s", []).append(run["train_wall_time_s"] / run["steps"])
    for budgets in summary.values():
        for methods in budgets.values():
            for entry in methods.values():
                entry["mean"], entry["std"] = float(np.mean(entry["values"])), float(np.std(entry["values"]))
                entry["seconds_per_step"] = float(np.mean(entry.pop("step_times_s")))
            if "pinn" in methods:
                for method, entry in methods.items():
                    if method != "pinn":
                        entry["ratio_to_pinn"] = entry["mean"] / methods["pinn"]["mean"]
    return summary


def print_table(summary: dict[str, Any]) -> None:
    labels = {label for budgets in summary.values() for methods in budgets.values() for label in methods}
    columns = [*METHODS, *sorted(labels - set(METHODS))]
    print(f"\n{'problem':<9}{'ICs':>5}" + "".join(f"{m:>26}" for m in columns))
    for problem, budgets in summary.items():
        for budget, methods in sorted(budgets.items(), key=lambda item: int(item[0])):
            cells = []
            for method in columns:
                entry = methods.get(method)
                cells.append(f"{'-':>26}" if entry is None else
                             f"{entry['mean']:>12.4f} ± {entry['std']:.4f} ({len(entry['values'])})")  # fmt: skip
            print(f"{problem:<9}{budget:>5}" + "".join(cells))


def main(args: PINNBenchArgs) -> None:
    profile = PROFILES[args.profile]
    for method in args.methods:
        method_overrides(method, profile, profile.symmetry_weight)  # an unknown method fails here, not in a worker
    root = (args.work_dir / args.profile).resolve()
    weights = {(budget, method): [profile.symmetry_weight] for budget in profile.budgets for method in args.methods}
    if "symmetry" in args.methods:
        weights[min(profile.budgets), "symmetry"] += list(profile.weight_sweep)
    trials = [
        Trial(trial_name(problem, budget, method_label(method, weight, profile), seed),
              {"problem": problem, "budget": budget, "method": method, "symmetry_weight": weight, "seed": seed,
               "profile": profile, "device": args.device})
        for problem in args.problems for (budget, method), method_weights in weights.items()
        for weight in method_weights for seed in args.seeds
    ]  # fmt: skip
    grid = BenchmarkGrid(
        name=args.name, out=args, profile=args.profile, settings=asdict(profile), sweep_dir=root, trials=trials, run=run_trial,
        record_name=lambda record: trial_name(record["problem"], record["budget"], record_label(record, profile),
                                              record["seed"]),
        results=lambda runs: {"config": {"problems": args.problems, "methods": args.methods, "seeds": args.seeds},
                              "runs": runs, "summary": summarise(runs, profile)},
    )  # fmt: skip
    runs = run_grid(grid, args)
    print_table(summarise(runs, profile))
    print(f"wrote {args.results_path(args.name)}")


LABELS = {"pinn": "PI-DeepONet", "symmetry": "+ symmetry loss", "augmentation": "+ augmentation"}
TEXT = """\
## Lie point symmetry loss for a physics-informed DeepONet, {profile} profile

`python -m benchmarks.pinn_symmetry --profile {profile}` (resumable; rebuilt from every finished run).

Machine: {machine}. Relative L2 error on {test_initial_conditions} held-out initial conditions against the reference \
solver (mean ± std over seeds, seeds in brackets), after {budget[steps]:,} gradient steps for every method, by the \
number of training initial conditions. Symmetry weight {budget[symmetry_weight]:g} (all generators of the algebra); \
augmentation: {budget[augment_copies]} transformed copies of each initial condition. {rationale}

| problem | training ICs | {methods} | symmetry / plain | augmentation / plain |
|---|---|{rules}"""
ROW = "| {problem} | {budget} | {cells} |"
SWEEP = """
The symmetry loss at other weights (same budget and steps; weight 0 is the plain PI-DeepONet):

| problem | training ICs | symmetry weight | relative L2 | / plain |
|---|---|---|---|---|"""
SWEEP_ROW = "| {problem} | {budget} | {symmetry_weight:g} | {error} | {ratio} |"
INITIAL = """
The same error at t = 0 only, where the solution is the held-out initial condition itself: how much of the error is \
the operator network failing to represent initial conditions it has not seen, which a loss on the training \
conditions' solutions does not address directly (mean over seeds):

| problem | training ICs | {methods} |
|---|---|{rules}"""
STEP_TIMES = """
Training time per gradient step, mean over every trial of the method (evaluations included; one thread per trial):
"""
STEP_TIME = "- {label}: {seconds:.3f} s"


def render(result: Result, figures: Path) -> str:
    """The final error per problem, training budget and method, the symmetry-weight sweep, the error at t = 0, the
    time per step and the error against the budget."""
    summary, methods = result["summary"], " | ".join(LABELS.values())
    test_conditions = result["runs"][0]["config"]["test_initial_conditions"] if result["runs"] else "?"
    lines = [TEXT.format(profile=result["profile"], machine=machine(result), test_initial_conditions=test_conditions,
                         budget=result["profile_config"], rationale=result["profile_config"].get("rationale", ""),
                         methods=methods, rules="---|" * (len(LABELS) + 2))]  # fmt: skip
    for problem, budgets in summary.items():
        for budget, entries in sorted(budgets.items(), key=lambda item: int(item[0])):
            cells = [mean_std(entries.get(method), 4, counted=True) for method in LABELS]
            ratios = [number(entries.get(method, {}).get("ratio_to_pinn")) for method in ("symmetry", "augmentation")]
            lines.append(ROW.format(problem=problem, budget=budget, cells=" | ".join(cells + ratios)))
    sweep = [(problem, budget, entry) for problem, budgets in summary.items()
             for budget, entries in budgets.items() for label, entry in sorted(entries.items())
             if label not in LABELS]  # fmt: skip
    if sweep:
        lines.append(SWEEP)
        lines += [SWEEP_ROW.format(problem=problem, budget=budget, symmetry_weight=entry["symmetry_weight"],
                                   error=mean_std(entry, 4, counted=True), ratio=number(entry.get("ratio_to_pinn")))
                  for problem, budget, entry in sweep]  # fmt: skip
    lines.append(INITIAL.format(methods=methods, rules="---|" * len(LABELS)))
    initial: dict[tuple[str, int, str], list[float]] = {}
    for run in result["runs"]:
        initial.setdefault((run["problem"], int(run["budget"]), run["method"]), []).append(run["final"]["relative_l2_initial"])
    for problem, budgets in summary.items():
        for budget in sorted(budgets, key=int):
            errors = [initial.get((problem, int(budget), method)) for method in LABELS]
            cells = " | ".join("-" if e is None else f"{np.mean(e):.4f}" for e in errors)
            lines.append(ROW.format(problem=problem, budget=budget, cells=cells))
    lines.append(STEP_TIMES)
    for method, label in LABELS.items():
        times = [entries[method]["seconds_per_step"] for budgets in summary.values()
                 for entries in budgets.values() if method in entries]  # fmt: skip
        if times:
            lines.append(STEP_TIME.format(label=label, seconds=np.mean(times)))
    return "\n".join([*lines, "", error_by_budget(result, figures)])


def error_by_budget(result: Result, figures: Path) -> str:
    """Per problem: mean ± std of each method's final error against the number of training initial conditions."""
    panels = []
    for problem, budgets in result["summary"].items():
        curves = []
        for color, (method, label) in enumerate(LABELS.items()):
            points = [(int(b), budgets[b][method]) for b in sorted(budgets, key=int) if method in budgets[b]]
            if points:
                curves.append(Curve(label, [b for b, _ in points], [e["mean"] for _, e in points], f"C{color}",
                                    spread=[e["std"] for _, e in points], errorbars=True, marker="o"))  # fmt: skip
        panels.append(Panel(curves, "training initial conditions", "relative L2 error", title=problem, xscale="log",
                            yscale="log", legend=7))  # fmt: skip
    name = f"pinn_symmetry_{result['profile']}.png"
    return figure(panels, figures, name, "Relative L2 error by training initial conditions")


SECTION = Section(("pinn_symmetry",), render)


if __name__ == "__main__":
    main(tyro.cli(PINNBenchArgs))
