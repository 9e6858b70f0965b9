"""SymmCD against DiffCSP: crystal generation with and without the crystal's symmetry built in.

SymmCD (Levy et al., ICLR 2025, arXiv 2502.03638) claims data-like symmetry — a share of P1 crystals and a space-group
histogram like the data's, where DiffCSP (Jiao et al., NeurIPS 2023, arXiv 2309.04475) gives about 36 % P1 on MP-20 —
at comparable validity and coverage, with fewer nodes per crystal. Each (dataset, model, seed) is a ``train.py`` run
(`benchmarks.common.BenchmarkGrid`, resumable) at equal gradient steps on the same CSPNet (the models' CPU preset:
hidden 128, 4 layers, 32 frequencies), followed by sampling and the CDVAE/SymmCD metrics against the test split
(`crystals.evaluate`), at one spglib tolerance (0.1 Å) for samples and data alike. Only the val and test splits of the
CDVAE datasets exist here, so the models train on val and are evaluated against test: published numbers (trained on
train) are not directly comparable.

Before the trials start, the driver preprocesses each dataset's splits and computes the test set's fingerprints once
(cached under ``$CRYSTALS_CACHE_DIR``; CrystalNN takes 10-30 minutes per dataset on one core).

    python -m benchmarks.crystals                                      # cpu: Perov-5 and Carbon-24, 3 seeds
    python -m benchmarks.crystals --profile gpu --device cuda          # + MP-20 bi/ternary, the papers' networks
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import matplotlib.pyplot as plt
import numpy as np
import tyro
from pymatgen.core import Structure

from benchmarks.common import BenchmarkGrid, Profile, ResultsArgs, mean_and_std, recorded_args, run_grid
from benchmarks.render import Result, Section, machine, mean_std, save_figure
from crystals.asu import SYMPREC
from crystals.metrics import reference_features
from crystals.processed import processed_split
from runner.args import TrainArgs
from runner.sweep import Resources, Trial, run_train_trial, train_trial

MODELS = ("diffcsp", "symmcd")
EXAMPLES = 3  # sampled crystals kept per run (as CIF text) for the rendered examples


@dataclass(frozen=True)
class CrystalProfile(Profile):
    """Datasets, budgets and sample counts of one profile."""

    steps: dict[str, int]
    """Gradient steps per dataset (the same for both models)."""
    n_samples: int
    """Crystals sampled and evaluated per run."""
    hyperparams: dict[str, str] = field(default_factory=dict)
    """``--hyperparams`` of every run (empty: the models' presets, the CPU benchmark's network on a CPU)."""


#: A network of a few milliseconds per step, for the smoke profile.
SMOKE_NETWORK = {"hidden_dim": "16", "n_layers": "1", "n_frequencies": "4", "time_dim": "8", "batch_size": "5",
                 "sampling_steps": "5", "eval_freq": "0"}  # fmt: skip

PROFILES: dict[str, CrystalProfile] = {
    "smoke": CrystalProfile(
        steps={"Carbon24": 3},
        n_samples=4,
        hyperparams=SMOKE_NETWORK,
        rationale="a test of the plumbing on tiny data, seconds",
    ),
    "cpu": CrystalProfile(
        steps={"Perov5": 4_000, "Carbon24": 2_500},
        n_samples=500,
        rationale="~30-60 min per run on one core: Perov-5 ~135 epochs of val at batch 128, Carbon-24 ~30 at batch 64",
    ),
    "gpu": CrystalProfile(
        steps={"Perov5": 50_000, "Carbon24": 50_000, "MP20BiTernary": 50_000},
        n_samples=10_000,
        rationale="the papers' networks (reference preset) and CDVAE's 10,000 samples",
    ),
}


@dataclass
class CrystalArgs(Resources, ResultsArgs):
    """Options of the crystal benchmark."""

    profile: Literal["smoke", "cpu", "gpu"] = "cpu"
    """Budgets and datasets (see PROFILES)."""
    datasets: list[str] | None = None
    """Datasets to run (default: the profile's)."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Seeds, one run per (dataset, model, seed)."""
    device: str = "auto"
    """Torch device."""
    work_dir: Path = Path("runs/benchmarks/crystals")
    """Where the training runs and trial records are written."""
    name: str = "crystals"
    """Results file: <results-dir>/<name>.json."""


CHECKPOINTS = 5  # per run: a killed benchmark resumes its runs' training from the last one (`runner.sweep.runs`)


def crystal_trials(args: CrystalArgs, profile: CrystalProfile) -> list[Trial]:
    """One ``train.py`` run per (dataset, seed, model): the profile's steps with `CHECKPOINTS` checkpoints, sampling
    and evaluation at the end."""
    datasets = args.datasets or list(profile.steps)
    unknown = [name for name in datasets if name not in profile.steps]
    if unknown:
        raise SystemExit(f"error: no step budget for {', '.join(unknown)} in the {args.profile} profile "
                         f"(it has {', '.join(profile.steps)})")  # fmt: skip
    return [
        train_trial(
            f"run__{dataset}__{model}__seed{seed}",
            TrainArgs(
                algo=model,
                env=dataset,
                total_timesteps=profile.steps[dataset],
                seed=seed,
                n_samples=profile.n_samples,
                log_dir=(args.work_dir / args.profile).resolve(),
                progress=False,
                verbose=0,
                num_threads=args.threads_per_trial,
                device=args.device,
                hyperparams=profile.hyperparams,
                save_freq=max(profile.steps[dataset] // CHECKPOINTS, 1),
            ),
            {"env": dataset, "algo": model, "seed": seed, "steps": profile.steps[dataset]},
        )
        for dataset in datasets
        for seed in args.seeds
        for model in MODELS
    ]


def run_crystal_trial(config: dict[str, Any]) -> dict[str, Any]:
    """One run's record: `run_train_trial`'s (sample counts, metrics, parameters, timing) plus the first few sampled
    crystals as CIF text, for the rendered examples."""
    record = run_train_trial(config)
    samples = Path(record["run_dir"]) / "samples"
    record["example_cifs"] = [path.read_text() for path in sorted(samples.glob("*.cif"))[:EXAMPLES]]
    return record


def prepare(pending: list[Trial]) -> None:
    """Preprocess the pending datasets' splits and compute their test sets' fingerprints once, here, rather than in
    two trials at once."""
    for dataset in sorted({trial.config["described"]["env"] for trial in pending}):
        for split in ("val", "test"):
            processed_split(dataset, split, SYMPREC)
        print(f"{dataset}: computing (or loading) the test set's fingerprints", flush=True)
        reference_features(dataset, "test", SYMPREC, progress=True)


def record_name(record: dict[str, Any]) -> str:
    return f"run__{record['env']}__{record['algo']}__seed{record['seed']}"


#: Per-run numbers summarised over seeds: (record path, label, digits, percent).
COLUMNS: tuple[tuple[tuple[str, str], str, int, bool], ...] = (
    (("metrics", "struct_valid"), "struct. valid %", 1, True),
    (("metrics", "comp_valid"), "comp. valid %", 1, True),
    (("metrics", "cov_recall"), "COV-R %", 1, True),
    (("metrics", "cov_precision"), "COV-P %", 1, True),
    (("metrics", "wdist_density"), "d_ρ", 3, False),
    (("metrics", "wdist_num_elements"), "d_elem", 3, False),
    (("metrics", "non_p1"), "non-P1 %", 1, True),
    (("metrics", "num_space_groups"), "groups", 1, False),
    (("metrics", "space_group_js"), "SG JS", 3, False),
    (("metrics", "space_group_tv"), "SG TV", 3, False),
    (("metrics", "space_group_match"), "SG match %", 1, True),
    (("samples", "decode_success_rate"), "decoded %", 1, True),
    (("samples", "nodes_per_crystal"), "nodes/crystal", 2, False),
    (("samples", "sampling_seconds_per_crystal"), "sampling s/crystal", 3, False),
)


#: Shares of everything sampled: 0 for a run in which nothing decoded (its metrics are None).
SAMPLED_SHARES = frozenset({"struct_valid", "comp_valid", "valid", "cov_precision"})


def _value(run: dict[str, Any], path: tuple[str, str]) -> float | None:
    section = run.get(path[0])
    if section is None and path[0] == "metrics" and path[1] in SAMPLED_SHARES:
        return 0.0
    value = (section or {}).get(path[1])
    return None if value is None else float(value)


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per dataset and model: mean ± std over seeds of every column (percentages as fractions; a run in which nothing
    decoded counts 0 for the shares of everything sampled and is left out of the others), the test set's non-P1 share
    and number of groups, and the pooled space-group counts of the samples."""
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for dataset in sorted({run["env"] for run in runs}):
        for model in MODELS:
            chosen = [run for run in runs if run["env"] == dataset and run["algo"] == model and "samples" in run]
            evaluated = [run for run in chosen if run.get("metrics")]
            if not evaluated:
                continue
            cell: dict[str, Any] = {"seeds": len(chosen), "parameters": chosen[0].get("parameters"),
                                    "train_minutes": mean_and_std(r["train_wall_time_s"] / 60 for r in chosen)}  # fmt: skip
            for path, _, _, _ in COLUMNS:
                values = [v for v in (_value(run, path) for run in chosen) if v is not None]
                cell[path[1]] = mean_and_std(values) if values else None
            counts: dict[str, int] = {}
            for run in evaluated:
                for group, count in run["metrics"]["space_group_counts"].items():
                    counts[group] = counts.get(group, 0) + count
            metrics = evaluated[0]["metrics"]
            cell |= {"space_group_counts": counts, "reference_space_group_counts": metrics["reference_space_group_counts"],
                     "reference_non_p1": metrics["reference_non_p1"],
                     "reference_num_space_groups": metrics["reference_num_space_groups"],
                     "reference_num_space_groups_same_size": metrics["reference_num_space_groups_same_size"]}  # fmt: skip
            summary.setdefault(dataset, {})[model] = cell
    return summary


def targets(cells: dict[str, dict[str, Any]]) -> list[tuple[str, str, bool]] | None:
    """The issue's targets on one dataset, (target, measured, met), from the means over seeds; None without both
    models. "Within 5 points of DiffCSP's" (validity, COV-R) is read one-sided: SymmCD at most 5 points below; the
    non-P1 share is two-sided. Sampling seconds are measured with the benchmark's concurrent trials beside them, the
    same for both models."""
    if not all(model in cells for model in MODELS):
        return None
    diffcsp, symmcd = cells["diffcsp"], cells["symmcd"]

    def mean(cell: dict[str, Any], key: str) -> float:
        return cell[key]["mean"] if cell[key] is not None else float("nan")

    data_non_p1, data_groups = symmcd["reference_non_p1"], symmcd["reference_num_space_groups_same_size"]
    rows = [
        ("SymmCD non-P1 within 5 points of the test set's",
         f"{100 * mean(symmcd, 'non_p1'):.1f} % vs {100 * data_non_p1:.1f} %",
         abs(mean(symmcd, "non_p1") - data_non_p1) <= 0.05),
        ("SymmCD space-group JS at most half of DiffCSP's",
         f"{mean(symmcd, 'space_group_js'):.3f} vs {mean(diffcsp, 'space_group_js'):.3f}",
         mean(symmcd, "space_group_js") <= 0.5 * mean(diffcsp, "space_group_js")),
        ("SymmCD distinct groups >= 0.7 x the test set's (expected among as many test crystals as samples)",
         f"{mean(symmcd, 'num_space_groups'):.1f} vs 0.7 x {data_groups:.1f}",
         mean(symmcd, "num_space_groups") >= 0.7 * data_groups),
        ("structural validity within 5 points of DiffCSP's",
         f"{100 * mean(symmcd, 'struct_valid'):.1f} % vs {100 * mean(diffcsp, 'struct_valid'):.1f} %",
         mean(symmcd, "struct_valid") >= mean(diffcsp, "struct_valid") - 0.05),
        ("COV-R within 5 points of DiffCSP's",
         f"{100 * mean(symmcd, 'cov_recall'):.1f} % vs {100 * mean(diffcsp, 'cov_recall'):.1f} %",
         mean(symmcd, "cov_recall") >= mean(diffcsp, "cov_recall") - 0.05),
        ("fewer nodes per crystal than DiffCSP",
         f"{mean(symmcd, 'nodes_per_crystal'):.2f} vs {mean(diffcsp, 'nodes_per_crystal'):.2f}",
         mean(symmcd, "nodes_per_crystal") < mean(diffcsp, "nodes_per_crystal")),
        ("less sampling time per crystal than DiffCSP",
         f"{mean(symmcd, 'sampling_seconds_per_crystal'):.3f} s vs {mean(diffcsp, 'sampling_seconds_per_crystal'):.3f} s",
         mean(symmcd, "sampling_seconds_per_crystal") < mean(diffcsp, "sampling_seconds_per_crystal")),
    ]  # fmt: skip
    return rows


def crystal_grid(args: CrystalArgs, profile: CrystalProfile) -> BenchmarkGrid:
    def results(runs: list[dict[str, Any]]) -> dict[str, Any]:
        return {"config": recorded_args(args), "runs": runs, "summary": summarize(runs)}

    return BenchmarkGrid(name=args.name, out=args, profile=args.profile, settings=asdict(profile),
                         sweep_dir=args.work_dir / args.profile, trials=crystal_trials(args, profile),
                         run=run_crystal_trial, record_name=record_name, results=results)  # fmt: skip


def main(args: CrystalArgs) -> None:
    """Run every missing (dataset, model, seed), then print the targets per dataset."""
    profile = PROFILES[args.profile]
    runs = run_grid(crystal_grid(args, profile), args, prepare=prepare)
    for dataset, cells in summarize(runs).items():
        for target, measured, met in targets(cells) or []:
            print(f"{dataset:<10} {'met ' if met else 'MISS'} {target}: {measured}")
    print(f"wrote {args.results_path(args.name)}")


# --- docs/benchmarks.md -------------------------------------------------------------------------------------------

TEXT = """\
## SymmCD vs DiffCSP: crystal generation

`python -m benchmarks.crystals --profile {profile}` (resumable; runs are added as they finish).

Machine: {machine}. Each run trains on the dataset's **val** split (the train splits are not available here) for the \
same number of gradient steps ({steps}) with the same CSPNet, samples {n_samples} crystals and evaluates them against \
the **test** split with CDVAE's metrics (structural validity: all distances ≥ 0.5 Å; compositional validity: SMACT; \
COV with CrystalNN/Magpie fingerprints at the CDVAE thresholds; Wasserstein distances of density and of the number of \
elements) and SymmCD's symmetry metrics, at spglib symprec 0.1 Å for samples and test crystals alike. A crystal that \
does not decode counts as invalid. Mean ± std over seeds; published numbers train on the train split and are not \
comparable."""
TARGETS = """
Targets ({dataset}; the issue's, means over seeds):

| target | measured | |
|---|---|---|"""


def _format(stats: dict[str, Any] | None, digits: int, percent: bool) -> str:
    if stats is None:
        return "-"
    scale = 100.0 if percent else 1.0
    return mean_std({"mean": scale * stats["mean"], "std": scale * stats["std"]}, digits)


def histogram_figure(summary: dict[str, dict[str, dict[str, Any]]], figures: Path) -> str:
    """Space-group histograms of the test set and of each model's samples (pooled over seeds), one panel per
    dataset, the groups present in any of them on the x axis in order."""
    fig, axes = plt.subplots(len(summary), 1, figsize=(11, 3.2 * len(summary)), squeeze=False)
    for ax, (dataset, cells) in zip(axes[:, 0], summary.items()):
        some = next(iter(cells.values()))
        sets = {"test set": some["reference_space_group_counts"],
                **{model: cell["space_group_counts"] for model, cell in cells.items()}}  # fmt: skip
        groups = sorted({int(g) for counts in sets.values() for g in counts})
        width = 0.8 / len(sets)
        for offset, (label, counts) in enumerate(sets.items()):
            total = sum(counts.values())
            shares = [counts.get(str(g), 0) / total for g in groups]
            ax.bar(np.arange(len(groups)) + (offset - (len(sets) - 1) / 2) * width, shares, width, label=label)
        ax.set_xticks(np.arange(len(groups)), [str(g) for g in groups], rotation=90, fontsize=7)
        ax.set_ylabel("share of crystals")
        ax.set_title(f"{dataset}: share of crystals per space group (spglib, symprec 0.1 Å; the groups of any set)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, figures, "crystals_space_groups.png", "Space-group histograms: test set, DiffCSP, SymmCD")


def _draw_crystal(ax: Any, structure: Structure, title: str) -> None:
    """Atoms of the cell (coloured by element) and the cell's edges, in Cartesian Å."""
    matrix = structure.lattice.matrix
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)]) @ matrix
    ax.set_box_aspect(np.ptp(corners, axis=0))  # Å on every axis alike
    for corner in np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)]):
        for axis in range(3):
            if corner[axis] == 0:
                end = corner.copy()
                end[axis] = 1
                ax.plot(*np.stack([corner @ matrix, end @ matrix]).T, color="0.6", linewidth=0.6)
    elements = sorted({site.specie.symbol for site in structure})
    for index, element in enumerate(elements):
        points = np.array([site.coords for site in structure if site.specie.symbol == element])
        ax.scatter(*points.T, s=30, color=f"C{index}", label=element, depthshade=False)
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()
    ax.legend(fontsize=6, loc="upper right")


def examples_figure(runs: Sequence[dict[str, Any]], figures: Path) -> str:
    """The first sampled crystals of seed 0's run of each (dataset, model)."""
    chosen = [run for run in runs if run["seed"] == min(r["seed"] for r in runs) and run.get("example_cifs")]
    fig = plt.figure(figsize=(3 * EXAMPLES, 3 * max(len(chosen), 1)))
    for row, run in enumerate(chosen):
        for column, text in enumerate(run["example_cifs"]):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pymatgen warns about rounded coordinates
                structure = Structure.from_str(text, fmt="cif")
            ax = fig.add_subplot(len(chosen), EXAMPLES, row * EXAMPLES + column + 1, projection="3d")
            formula = structure.composition.reduced_formula
            _draw_crystal(ax, structure, f"{run['env']} {run['algo']}: {formula}, {len(structure)} atoms")
    fig.tight_layout()
    return save_figure(fig, figures, "crystals_examples.png", "Sampled crystals of DiffCSP and SymmCD")


def render(result: Result, figures: Path) -> str:
    """Metrics per dataset and model, the targets, the space-group histograms and a few sampled crystals."""
    settings = result["profile_config"]
    steps = ", ".join(f"{dataset} {n:,}" for dataset, n in settings["steps"].items())
    lines = [TEXT.format(profile=result["profile"], machine=machine(result), steps=steps, n_samples=settings["n_samples"])]
    header = ["dataset", "model", "seeds", "parameters", "train min"] + [label for _, label, _, _ in COLUMNS]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for dataset, cells in result["summary"].items():
        for model, cell in cells.items():
            values = [_format(cell[path[1]], digits, percent) for path, _, digits, percent in COLUMNS]
            row = [dataset, model, str(cell["seeds"]), f"{cell['parameters']:,}", _format(cell["train_minutes"], 1, False)]
            lines.append("| " + " | ".join(row + values) + " |")
        some = next(iter(cells.values()))
        data = {"non_p1": f"{100 * some['reference_non_p1']:.1f}", "num_space_groups": f"{some['reference_num_space_groups']}"}
        cells_of_data = [data.get(path[1], "") for path, *_ in COLUMNS]
        lines.append("| " + " | ".join([dataset, "test set", "", "", "", *cells_of_data]) + " |")
    for dataset, cells in result["summary"].items():
        rows = targets(cells)
        if rows:
            lines.append(TARGETS.format(dataset=dataset))
            lines += [f"| {target} | {measured} | {'met' if met else '**missed**'} |" for target, measured, met in rows]
    lines += ["", histogram_figure(result["summary"], figures), "", examples_figure(result["runs"], figures)]
    return "\n".join(lines)


SECTION = Section(("crystals",), render)


if __name__ == "__main__":
    main(tyro.cli(CrystalArgs))
