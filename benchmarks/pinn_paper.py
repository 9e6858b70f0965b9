"""The Lie point symmetry loss in the regime its paper claims a gain in, with the controls that separate symmetry from
reweighting, and an equivariance loss of the operator that reaches unseen initial conditions.

Two studies of a physics-informed DeepONet (`pde.solver.PINNSolver`), each arm at equal gradient steps, 3 seeds, MSE
and relative L2 error on held-out initial conditions (ICs) against the reference solver:

* ``paper``: Akhound-Sadegh et al. (NeurIPS 2023, arXiv 2311.04293, §4 and Table 1) report sample efficiency in the
  number of residual points N_r. A fixed set of training ICs, and per IC a fixed collocation set of N_r points drawn
  once (heat N_r ∈ {500, 2000, 10000}, Burgers {5000, 25000, 100000}); every step draws its points from those sets.
  Arms: ``plain``; ``classical`` (+ the symmetry loss in the paper's form pr v(Δ)); ``evolutionary`` (+ D_Δ[u](Q_v),
  as GPS_PINO, arXiv 2502.00373); and three controls: ``gpinn`` (+ mean ‖∇Δ‖², Yu et al., arXiv 2111.02801, at the
  symmetry loss's weight and points), ``reweighted`` (the residual weighted by 1 + κ Σ_v λ_v², κ = symmetry weight /
  residual weight: since pr v(Δ) = λ_v Δ, the classical arm's loss in expectation, computed without it) and
  ``plain_5x`` (plain with 5 N_r).
* ``equivariance``: by the number of training ICs (2, 4, 8) with fresh points each step, the regime of
  `benchmarks.pinn_symmetry`: ``plain``; ``equivariance`` (+ the operator's infinitesimal equivariance loss,
  `pde.equivariance`); ``augmentation`` (its finite counterpart: the ICs moved by the problem's finite group action);
  ``equivariance_augmentation`` (both).

Each (study, problem, N_r or ICs, arm, seed) is a trial of the sweep engine, resumable; its record lands in
``<work_dir>/<profile>/records/`` and in the results file, from which a fresh clone restores it.

    python -m benchmarks.pinn_paper                                   # cpu profile
    python -m benchmarks.pinn_paper --profile paper --device cuda     # the paper's networks and budgets, on a GPU
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tyro

from benchmarks.common import BenchmarkGrid, Profile, ResultsArgs, mean_and_std, run_grid
from benchmarks.pinn_symmetry import train_with_curve
from benchmarks.render import Result, Section, machine, number
from pde.networks import DeepONetConfig
from runner.hyperparams import hyperparams_for
from runner.sweep import Resources, Trial

STUDIES = ("paper", "equivariance")
ARMS = {
    "paper": ("plain", "classical", "evolutionary", "gpinn", "reweighted", "plain_5x"),
    "equivariance": ("plain", "equivariance", "augmentation", "equivariance_augmentation"),
}
SYMMETRY_ARMS = ("classical", "evolutionary")
CONTROLS = ("gpinn", "reweighted", "plain_5x")
METRICS = ("mse", "relative_l2", "relative_l2_initial")


PAPER_RESIDUAL_POINTS = {"Heat": (500, 2_000, 10_000), "Burgers": (5_000, 25_000, 100_000)}


@dataclass(frozen=True, kw_only=True)
class PaperProfile(Profile):
    """Budgets and networks of one profile; ``overrides`` are `pde.solver.PINNSolverConfig` fields of every trial."""

    paper_steps: int
    """Gradient steps of every arm of the paper study."""
    equivariance_steps: int
    """Gradient steps of every arm of the equivariance study."""
    overrides: dict[str, Any]
    train_initial_conditions: int = 16
    """Training ICs of the paper study (its number is not in what we could retrieve of the paper)."""
    residual_points_per_ic: dict[str, tuple[int, ...]] = field(default_factory=lambda: dict(PAPER_RESIDUAL_POINTS))
    """N_r values of the paper study, per problem (default: the paper's, §4 and Table 1)."""
    budgets: tuple[int, ...] = (2, 4, 8)
    """Training ICs of the equivariance study."""
    symmetry_weight: float = 1.0
    """Weight of the symmetry loss (both forms) and of the gPINN control."""
    equivariance_weight: float = 1.0
    """Weight of the equivariance loss (each relation normalised by its change of the IC)."""
    augment_copies: int = 3
    """Transformed copies of each training IC in the augmentation arms."""
    larger_factor: int = 5
    """N_r multiple of the plain_5x control."""


PROFILES: dict[str, PaperProfile] = {
    "cpu": PaperProfile(
        paper_steps=1_000,
        equivariance_steps=2_000,
        overrides={"hidden_dim": 64, "n_layers": 4, "latent_dim": 64, "ic_batch": 8, "residual_points": 64,
                   "symmetry_points": 32, "eval_freq": 500},
        rationale="The paper's N_r values with benchmarks.pinn_symmetry's CPU networks (4 x 64, 8 ICs and 64 residual "
        "points per IC per step, 32 for the symmetry-type terms): each IC's set is drawn from about 32,000 times in "
        "1,000 steps, so N_r binds at the smaller values. CPU time per step on one thread (measured over 100 steps, "
        "heat / Burgers): plain 38 / 67 ms, classical 450 / 510, evolutionary 320 / 360, gPINN 180 / 210, "
        "reweighted 34 / 58, equivariance 67 / 95 (the Lie machinery's cost is per call, not per point, so fewer "
        "symmetry points do not help). Hence 1,000 steps for the paper study (about 6 CPU-hours) and "
        "pinn_symmetry's 2,000 for the equivariance study (about 3), runnable separately with --studies.",
    ),
    "paper": PaperProfile(
        paper_steps=20_000,
        equivariance_steps=20_000,
        overrides={"ic_batch": 16, "residual_points": 512, "symmetry_points": 128, "eval_freq": 2_000},
        rationale="DeepONetConfig's 7 x 100 ELU networks (the set-up a student reproduction gives for the paper, not "
        "verified), the paper's N_r values, 20,000 steps, 16 ICs and 512 residual points per IC per step: for a GPU "
        "(--device cuda).",
    ),
    "smoke": PaperProfile(
        paper_steps=2,
        equivariance_steps=2,
        train_initial_conditions=2,
        residual_points_per_ic={"Heat": (16,), "Burgers": (16,)},
        budgets=(2,),
        overrides={"hidden_dim": 16, "n_layers": 2, "latent_dim": 8, "ic_batch": 2, "residual_points": 4,
                   "symmetry_points": 2, "test_initial_conditions": 3, "sensors": 32, "eval_freq": 0},
    ),
}  # fmt: skip


@dataclass
class PaperBenchArgs(Resources, ResultsArgs):
    problems: list[str] = field(default_factory=lambda: ["Heat", "Burgers"])
    """PDE problems (pde.problems)."""
    studies: list[str] = field(default_factory=lambda: list(STUDIES))
    """Studies to run (paper, equivariance)."""
    arms: list[str] | None = None
    """Arms to run, of whichever study has them (default: every arm of each study; see ARMS)."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Seeds: training ICs, initialisation, collocation sets and points."""
    profile: Literal["cpu", "paper", "smoke"] = "cpu"
    """Budget profile (see PROFILES)."""
    device: str = "auto"
    """Torch device."""
    work_dir: Path = Path("runs/benchmarks/pinn_paper")
    """Records of the benchmark runs."""
    name: str = "pinn_paper"
    """Results file: <results-dir>/<name>.json."""


def arm_settings(study: str, problem: str, level: int, arm: str, profile: PaperProfile) -> dict[str, Any]:
    """The solver settings of one trial: the problem's tuned settings, the profile's, then the study's and the arm's
    (``level``: N_r in the paper study, training ICs in the equivariance study)."""
    if study not in ARMS or arm not in ARMS[study]:
        raise ValueError(f"unknown arm {arm!r} of study {study!r}; the studies and arms are {ARMS}")
    settings = {**hyperparams_for("pinn", problem).kwargs, **profile.overrides}
    weight = profile.symmetry_weight
    if study == "paper":
        residual_weight = settings.get("residual_weight", DeepONetConfig.residual_weight)
        knobs = {"classical": {"symmetry_weight": weight, "symmetry_form": "classical"},
                 "evolutionary": {"symmetry_weight": weight, "symmetry_form": "evolutionary"},
                 "gpinn": {"gradient_weight": weight},
                 "reweighted": {"residual_reweighting": weight / residual_weight}}.get(arm, {})  # fmt: skip
        points = level * (profile.larger_factor if arm == "plain_5x" else 1)
        return {**settings, **knobs, "collocation": "fixed", "residual_points_per_ic": points,
                "train_initial_conditions": profile.train_initial_conditions}  # fmt: skip
    return {**settings, "train_initial_conditions": level,
            "equivariance_weight": profile.equivariance_weight if "equivariance" in arm else 0.0,
            "augment_copies": profile.augment_copies if "augmentation" in arm else 0}  # fmt: skip


def run_trial(config: dict[str, Any]) -> dict[str, Any]:
    """One trial: train the arm's solver for its study's steps; its held-out error curve and final errors."""
    profile: PaperProfile = config["profile"]
    study, level = config["study"], config["level"]
    settings = arm_settings(study, config["problem"], level, config["arm"], profile)
    steps = profile.paper_steps if study == "paper" else profile.equivariance_steps
    return {key: config[key] for key in ("study", "problem", "level", "arm", "seed")} | train_with_curve(
        config, settings, steps
    )


LEVEL_KEYS = {"paper": "nr", "equivariance": "ics"}


def trial_name(study: str, problem: str, level: int, arm: str, seed: int) -> str:
    """The trial's (and its record's) name."""
    return f"{problem}__{study}__{LEVEL_KEYS[study]}{level}__{arm}__seed{seed}"


def levels(study: str, problem: str, profile: PaperProfile) -> tuple[int, ...]:
    """The N_r values (paper study) or training-IC counts (equivariance study) of ``problem``."""
    return profile.residual_points_per_ic[problem] if study == "paper" else profile.budgets


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per study, problem, level and arm: each metric's mean, std and values over seeds with the ratio of its mean to
    the plain arm's (< 1: lower error), and the training time per gradient step (evaluations included)."""
    grouped: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for run in runs:
        grouped.setdefault((run["study"], run["problem"], str(run["level"]), run["arm"]), []).append(run)
    summary: dict[str, Any] = {}
    for (study, problem, level, arm), group in grouped.items():
        entry = {metric: {**mean_and_std(run["final"][metric] for run in group),
                          "values": [run["final"][metric] for run in group]} for metric in METRICS}  # fmt: skip
        entry["seeds"] = [run["seed"] for run in group]
        entry["seconds_per_step"] = float(np.mean([run["train_wall_time_s"] / run["steps"] for run in group]))
        summary.setdefault(study, {}).setdefault(problem, {}).setdefault(level, {})[arm] = entry
    for problems in summary.values():
        for by_level in problems.values():
            for arms in by_level.values():
                for entry in arms.values():
                    for metric in METRICS:
                        if "plain" in arms:
                            entry[metric]["ratio_to_plain"] = entry[metric]["mean"] / arms["plain"][metric]["mean"]
    return summary


def main(args: PaperBenchArgs) -> None:
    profile = PROFILES[args.profile]
    unknown = sorted(set(args.studies) - set(STUDIES))
    if unknown:
        raise SystemExit(f"unknown studies {unknown}; choose from {', '.join(STUDIES)}")
    known_arms = {arm for arms in ARMS.values() for arm in arms}
    if args.arms is not None and not set(args.arms) <= known_arms:
        raise SystemExit(f"unknown arms {sorted(set(args.arms) - known_arms)}; the studies' arms are {ARMS}")
    trials = [
        Trial(trial_name(study, problem, level, arm, seed),
              {"study": study, "problem": problem, "level": level, "arm": arm, "seed": seed, "profile": profile,
               "device": args.device})
        for study in args.studies for problem in args.problems for level in levels(study, problem, profile)
        for arm in ARMS[study] if args.arms is None or arm in args.arms for seed in args.seeds
    ]  # fmt: skip
    grid = BenchmarkGrid(
        name=args.name, out=args, profile=args.profile, settings=asdict(profile),
        sweep_dir=(args.work_dir / args.profile).resolve(), trials=trials, run=run_trial,
        record_name=lambda record: trial_name(record["study"], record["problem"], record["level"], record["arm"],
                                              record["seed"]),
        results=lambda runs: {"config": {"problems": args.problems, "studies": args.studies, "arms": args.arms,
                                         "seeds": args.seeds}, "runs": runs, "summary": summarise(runs)},
    )  # fmt: skip
    runs = run_grid(grid, args)
    print(render_tables(summarise(runs)))
    print(f"wrote {args.results_path(args.name)}")


# --- the section of docs/benchmarks.md --------------------------------------------------------------------------------

LABELS = {
    "plain": "plain", "classical": "+ classical", "evolutionary": "+ evolutionary", "gpinn": "+ gPINN",
    "reweighted": "residual × (1 + κΣλ²)", "plain_5x": "plain, 5 N_r", "equivariance": "+ equivariance",
    "augmentation": "+ augmentation", "equivariance_augmentation": "+ equivariance + augmentation",
}  # fmt: skip
LEVEL_LABELS = {"paper": "N_r", "equivariance": "training ICs"}
METRIC_LABELS = {"mse": "MSE", "relative_l2": "relative L2 error"}
TEXT = """\
## The symmetry loss at the paper's residual-point budgets, and an equivariance loss of the operator, {profile} profile

`python -m benchmarks.pinn_paper --profile {profile}` (resumable; rebuilt from every finished run).

Machine: {machine}. A physics-informed DeepONet trained from initial conditions alone; errors on \
{test_initial_conditions} held-out initial conditions against the reference solver, mean ± std over seeds, every arm \
of a study at equal gradient steps. {rationale}

**Paper study** (Akhound-Sadegh et al., NeurIPS 2023, §4 and Table 1: sample efficiency in the number of residual \
points N_r): {budget[train_initial_conditions]} training initial conditions, each with a fixed set of N_r collocation \
points drawn once, {budget[paper_steps]:,} steps. The symmetry loss over the whole algebra at weight \
{budget[symmetry_weight]:g}, in the paper's classical form pr v(Δ) = λ_v Δ and in the evolutionary form D_Δ[u](Q_v) = \
λ_v Δ − ξ_v·∇Δ (GPS_PINO). Controls: gPINN (mean ‖∇Δ‖² at the same weight and points), the residual reweighted by \
1 + κ Σ_v λ_v² with κ = symmetry weight / residual weight (the classical arm's loss in expectation, computed without \
it), and plain with {budget[larger_factor]} N_r.

**Equivariance study** (beyond the paper): by the number of training initial conditions, fresh collocation points \
each step, {budget[equivariance_steps]:,} steps. The operator's equivariance loss DG(u₀)[Q⁰_v] = Q_v[G(u₀)] (weight \
{budget[equivariance_weight]:g}, each relation normalised by mean Q⁰²; heat: ∂x, ∂t, u∂u, superposition; Burgers: ∂x, \
∂t, Galilean boost), the finite group action as augmentation ({budget[augment_copies]} copies per initial condition), \
and both.
"""
TABLE = """
{title}

| problem | {level} | {columns} |
|---|---|{rules}"""
VERDICT = """
**Verdict.**
"""


def beats(better: dict[str, float], worse: dict[str, float]) -> bool:
    """Whether ``better`` is lower than ``worse`` beyond the seeds' spread: its mean + std under the other's mean − std."""
    return better["mean"] + better["std"] < worse["mean"] - worse["std"]


def cell(entry: dict[str, Any] | None, metric: str) -> str:
    """``mean ± std`` of a metric (three significant digits), with its ratio to plain."""
    if entry is None:
        return "-"
    stats = entry[metric]
    ratio = f" ({stats['ratio_to_plain']:.2f}×)" if "ratio_to_plain" in stats else ""
    return f"{number(stats['mean'])} ± {number(stats['std'])}{ratio}"


def table(summary: dict[str, Any], study: str, metric: str) -> str:
    """One table of a study: a row per problem and level, a column per arm, the metric's mean ± std (ratio to plain)."""
    title = f"{study.capitalize()} study, {METRIC_LABELS[metric]} (× plain):"
    lines = [TABLE.format(title=title, level=LEVEL_LABELS[study], columns=" | ".join(LABELS[arm] for arm in ARMS[study]),
                          rules="---|" * len(ARMS[study]))]  # fmt: skip
    for problem, by_level in summary.get(study, {}).items():
        for level in sorted(by_level, key=int):
            cells = " | ".join(cell(by_level[level].get(arm), metric) for arm in ARMS[study])
            lines.append(f"| {problem} | {int(level):,} | {cells} |")
    return "\n".join(lines)


def render_tables(summary: dict[str, Any]) -> str:
    """Every table of the studies present in ``summary``."""
    return "\n".join(table(summary, study, metric) for study in STUDIES if study in summary for metric in METRIC_LABELS)


def paper_verdict(problem: str, by_level: dict[str, dict[str, Any]]) -> str:
    """Whether a symmetry arm lowers the MSE beyond the seeds' spread at some N_r, and whether a control matches it."""
    notes, unmatched, gains = [], [], 0
    for level in sorted(by_level, key=int):
        arms = by_level[level]
        if "plain" not in arms:
            continue
        for arm in (arm for arm in SYMMETRY_ARMS if arm in arms and beats(arms[arm]["mse"], arms["plain"]["mse"])):
            gains += 1
            matched = [LABELS[c] for c in CONTROLS if c in arms and not beats(arms[arm]["mse"], arms[c]["mse"])]
            ratio = arms[arm]["mse"]["ratio_to_plain"]
            notes.append(f"N_r = {int(level):,}: {LABELS[arm]} {ratio:.2f}× plain, "
                         + (f"matched by {', '.join(matched)}" if matched else "no control matches it"))  # fmt: skip
            if not matched:
                unmatched.append(f"{int(level):,}")
    if not gains:
        return (f"- {problem}: **not reproduced** at these N_r: no symmetry arm lowers the MSE beyond the seeds' "
                "spread.")  # fmt: skip
    verdict = (f"**reproduced**, and no control matches the gain at N_r = {', '.join(unmatched)}" if unmatched
               else "**a gain, but not from symmetry**: a control matches every one")  # fmt: skip
    return f"- {problem}: {verdict} ({'; '.join(notes)})."


def equivariance_verdict(problem: str, by_level: dict[str, dict[str, Any]]) -> str:
    """Whether the equivariance loss lowers the held-out relative L2 error beyond the seeds' spread at every budget
    of 2–8 training ICs, with the augmentation arms' ratios beside it."""
    budgets = [level for level in sorted(by_level, key=int) if 2 <= int(level) <= 8 and "plain" in by_level[level]]
    met = [level for level in budgets if "equivariance" in by_level[level]
           and beats(by_level[level]["equivariance"]["relative_l2"], by_level[level]["plain"]["relative_l2"])]  # fmt: skip
    ratios = "; ".join(
        f"{level} ICs: " + ", ".join(f"{LABELS[arm]} {by_level[level][arm]['relative_l2']['ratio_to_plain']:.2f}×"
                                     for arm in ARMS["equivariance"][1:] if arm in by_level[level])
        for level in budgets
    )  # fmt: skip
    verdict = ("**met**" if budgets and met == budgets else
               f"**partly met** (at {', '.join(met)} ICs)" if met else "**missed**")  # fmt: skip
    return f"- {problem}: {verdict} ({ratios})."


def render(result: Result, figures: Path) -> str:
    """The method, the tables of both studies, the time per step and the verdict against the issue's targets."""
    summary, runs = result["summary"], result["runs"]
    test_initial_conditions = runs[0]["config"]["test_initial_conditions"] if runs else "?"
    method = TEXT.format(
        profile=result["profile"],
        machine=machine(result),
        test_initial_conditions=test_initial_conditions,
        rationale=result["profile_config"].get("rationale", ""),
        budget=result["profile_config"],
    )
    lines = [method, render_tables(summary), "", "Training time per gradient step (mean over trials, evaluations included):",
             ""]  # fmt: skip
    for study in (study for study in STUDIES if study in summary):
        for arm in ARMS[study]:
            times = [arms[arm]["seconds_per_step"] for by_level in summary[study].values()
                     for arms in by_level.values() if arm in arms]  # fmt: skip
            if times:
                lines.append(f"- {study}, {LABELS[arm]}: {np.mean(times):.3f} s")
    lines.append(VERDICT)
    lines.append("Target 1, the paper's claim at its own N_r with the controls beside it (a gain: mean + std below the "
                 "plain arm's mean − std, on the MSE):")  # fmt: skip
    lines += [paper_verdict(problem, by_level) for problem, by_level in summary.get("paper", {}).items()]
    lines.append("\nTarget 2, the equivariance loss lowers the held-out relative L2 error at 2–8 training ICs:")
    lines += [equivariance_verdict(problem, by_level) for problem, by_level in summary.get("equivariance", {}).items()]
    return "\n".join(lines)


SECTION = Section(("pinn_paper",), render)


if __name__ == "__main__":
    main(tyro.cli(PaperBenchArgs))
