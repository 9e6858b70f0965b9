"""What every benchmark's section of docs/benchmarks.md shares: the `Section` declaration a benchmark module makes,
the machine line, number and mean ± std formatting, the rliable table, and one plotter of curves and reference lines
for the sections' figures. Each section's text is a template of its module (``str.format`` fields filled from its
results file); `benchmarks.report` renders the registered sections in order."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from benchmarks.common import DIRTY
from runner.sweep.stats import improvement_probabilities, interval_estimates

MIN_SEEDS_FOR_INTERVALS = 3  # fewer seeds give no meaningful bootstrap interval
DIRTY_NOTE = (
    "*Written from a git tree with uncommitted changes (a `-dirty` commit): the code that produced these numbers may "
    "differ from the commit named below. Results written before the benchmarks refused a dirty tree count their own "
    "results file as a change, so for them the mark does not show that the code differed.*"
)

Result = dict[str, Any]


@dataclass(frozen=True)
class Section:
    """A benchmark's section of docs/benchmarks.md: the results files it renders (``<results_dir>/<name>.json``, in
    this order) and ``render(result, figures)``, its markdown (figures saved into the folder ``figures``)."""

    results: tuple[str, ...]
    render: Callable[[Result, Path], str]

    def text(self, result: Result, figures: Path) -> str:
        """The rendered section, with a one-line note under its heading when the results come from uncommitted code."""
        heading, rest = self.render(result, figures).split("\n", 1)
        return f"{heading}\n\n{DIRTY_NOTE}\n{rest}" if dirty(result) else f"{heading}\n{rest}"


def dirty(result: Result) -> bool:
    """Whether a results file was written from uncommitted code (files written before ``"dirty"`` was recorded say it
    by their commit's suffix)."""
    return bool(result.get("dirty", str(result.get("git_commit")).endswith(DIRTY)))


def machine(result: Result) -> str:
    """Where and when a result was measured: CPU, cores, GPU, load, date and commit."""
    info = result["machine"]
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ", no GPU"
    load = info.get("load_average_1_5_15min")
    load_text = f", load average {load[0]:.1f} when written" if load else ", machine load not recorded"
    return f"{info['cpu']} ({info['cpu_count']} cores{gpu}{load_text}), {result['date'][:10]}, commit `{result['git_commit']}`"


def number(value: float | None) -> str:
    """Three significant digits (scientific notation from 10^4 on); ``-`` for a missing or NaN value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.3e}"


def mean_std(stats: Mapping[str, Any] | None, digits: int = 2, counted: bool = False) -> str:
    """``mean ± std`` of a ``{"mean", "std"}`` record at ``digits`` decimals (``counted``: then the number of its
    ``values`` in brackets); ``-`` for a missing one."""
    if stats is None:
        return "-"
    text = f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"
    return f"{text} ({len(stats['values'])})" if counted else text


def threads_option(config: Mapping[str, Any]) -> str:
    """The ``--threads-per-trial`` option of a grid benchmark's command (files written before the benchmarks ran on
    the sweep engine recorded it as ``threads``); empty when the run left torch its default."""
    threads = config.get("threads_per_trial", config.get("threads"))
    return f" --threads-per-trial {threads}" if threads else ""


def named(result: Result, default: str) -> tuple[str, str]:
    """(heading suffix, ``--name`` option) of a results file written under another name than its benchmark's
    ``default`` one (e.g. ``throughput_proposal`` of ``benchmarks.throughput``); both empty for the default name."""
    name = result["benchmark"]
    return ("", "") if name == default else (f" ({name})", f" --name {name}")


def interval(estimate: Sequence[float]) -> str:
    """A point estimate and its interval: ``point [low, high]``."""
    point, low, high = estimate
    return f"{point:.2f} [{low:.2f}, {high:.2f}]"


RLIABLE_INTRO = """
rliable statistics where an algorithm has at least {seeds} seeds (95 % stratified bootstrap intervals over seeds; \
P(A > B): probability that a run of A beats a run of B):

| env | score | algo | seeds | IQM [95 % CI] | mean [95 % CI] |
|---|---|---|---|---|---|"""


def rliable_table(runs: list[Result], keys: dict[str, str]) -> list[str]:
    """Per env, for the algorithms with at least `MIN_SEEDS_FOR_INTERVALS` seeds: IQM and mean over seeds with 95 %
    stratified-bootstrap intervals (rliable) of each record field in ``keys`` (field -> label), and P(A > B) of every
    pair of them; empty when no env has two such algorithms or one with enough seeds."""
    lines: list[str] = []
    for env in sorted({run["env"] for run in runs}):
        chosen = [run for run in runs if run["env"] == env]
        algos = sorted(a for a in {run["algo"] for run in chosen}
                       if len({run["seed"] for run in chosen if run["algo"] == a}) >= MIN_SEEDS_FOR_INTERVALS)  # fmt: skip
        for key, label in keys.items():
            scores = {a: np.array([[run[key]] for run in chosen if run["algo"] == a]) for a in algos}
            if not scores:
                continue
            estimates = interval_estimates(scores)
            for algo in algos:
                lines.append(f"| {env} | {label} | {algo} | {len(scores[algo])} | {interval(estimates[algo]['IQM'])} | "
                             f"{interval(estimates[algo]['mean'])} |")  # fmt: skip
            for pair, estimate in improvement_probabilities(scores).items():
                lines.append(f"| {env} | {label} | P({pair}) | | {interval(estimate)} | |")
    return [RLIABLE_INTRO.format(seeds=MIN_SEEDS_FOR_INTERVALS), *lines] if lines else []


@dataclass(frozen=True)
class Curve:
    """One line of a panel: ``y`` over ``x``, with a ± ``spread`` drawn as a band, or as error bars when
    ``errorbars`` (few points, each marked)."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    color: str
    spread: Sequence[float] | None = None
    errorbars: bool = False
    marker: str | None = None


@dataclass(frozen=True)
class Level:
    """A horizontal reference line of a panel (a baseline's value, a noise floor)."""

    y: float
    label: str
    color: str
    linestyle: str


@dataclass(frozen=True)
class Panel:
    """One axes of a figure: its curves and reference lines, labels and scales, and the legend's font size (None:
    no legend)."""

    curves: list[Curve]
    xlabel: str
    ylabel: str
    title: str = ""
    levels: list[Level] = field(default_factory=list)
    xscale: str = "linear"
    yscale: str = "linear"
    legend: float | None = 8


def figure(panels: list[Panel], figures: Path, name: str, alt: str, panel_width: float = 5.0) -> str:
    """Draw ``panels`` side by side into ``<figures>/<name>`` and return the markdown line that shows it (the folder
    is ``figures/`` beside docs/benchmarks.md)."""
    columns = max(len(panels), 1)  # an empty results file still gets its (empty) figure
    fig, axes = plt.subplots(1, columns, figsize=(panel_width * columns, 3.5), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for curve in panel.curves:
            if curve.errorbars:
                ax.errorbar(curve.x, curve.y, yerr=curve.spread, color=curve.color, marker=curve.marker, capsize=3,
                            label=curve.label)  # fmt: skip
                continue
            ax.plot(curve.x, curve.y, color=curve.color, marker=curve.marker, label=curve.label)
            if curve.spread is not None:
                y, spread = np.asarray(curve.y), np.asarray(curve.spread)
                ax.fill_between(curve.x, y - spread, y + spread, color=curve.color, alpha=0.2)
        for level in panel.levels:
            ax.axhline(level.y, color=level.color, linestyle=level.linestyle, label=level.label)
        ax.set(title=panel.title, xlabel=panel.xlabel, ylabel=panel.ylabel, xscale=panel.xscale, yscale=panel.yscale)
        if panel.legend is not None:
            ax.legend(fontsize=panel.legend)
    return save_figure(fig, figures, name, alt)


def save_figure(fig: Figure, figures: Path, name: str, alt: str) -> str:
    """Save ``fig`` as ``<figures>/<name>`` (then close it) and return the markdown line that shows it (the folder is
    ``figures/`` beside docs/benchmarks.md): what every section's figure goes through."""
    fig.tight_layout()
    figures.mkdir(parents=True, exist_ok=True)
    fig.savefig(figures / name, dpi=100)
    plt.close(fig)
    return f"![{alt}]({figures.name}/{name})"
