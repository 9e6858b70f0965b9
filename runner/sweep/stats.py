"""Aggregate statistics of a sweep with rliable (Agarwal et al., NeurIPS 2021): IQM, mean, median and optimality gap
with stratified-bootstrap confidence intervals, probability of improvement, performance profiles and learning curves
with confidence bands. Scores are (runs x tasks) arrays per algorithm, one task per env; returns can be normalised by
references (low, high) per env, e.g. a random policy and a published SAC@1M return."""

from __future__ import annotations

import itertools
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from rliable import library as rly
from rliable import metrics

#: The aggregates of `interval_estimates`; the optimality gap (the mean shortfall below 1) only for normalised scores.
AGGREGATES = ("IQM", "mean", "median", "optimality gap")


def _aggregates(scores: np.ndarray) -> np.ndarray:
    return np.array([metrics.aggregate_iqm(scores), metrics.aggregate_mean(scores), metrics.aggregate_median(scores),
                     metrics.aggregate_optimality_gap(scores)])  # fmt: skip


def _bootstrap(scores: dict[str, Any], func: Any, reps: int, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """rliable's stratified bootstrap, reproducible: ``random_state`` seeds its arch backend, but the paired bootstrap
    of P(A > B) (rliable's ``StratifiedIndependentBootstrap._get_indices``) draws from NumPy's global generator, which
    is seeded here too and restored afterwards (the arch deprecation warning of ``random_state`` silenced)."""
    global_state = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return rly.get_interval_estimates(scores, func, reps=reps, random_state=np.random.RandomState(seed))
    finally:
        np.random.set_state(global_state)


def interval_estimates(
    scores: dict[str, np.ndarray], reps: int = 2000, seed: int = 0, normalised: bool = False
) -> dict[str, dict[str, tuple[float, float, float]]]:
    """Per algorithm and aggregate: (point estimate, CI low, CI high), 95 % stratified bootstrap over runs per task.
    The optimality gap is included for ``normalised`` scores only (it measures the shortfall below a score of 1)."""
    points, intervals = _bootstrap(scores, _aggregates, reps, seed)
    names = AGGREGATES if normalised else AGGREGATES[:3]
    return {algo: {name: (float(points[algo][i]), float(intervals[algo][0, i]), float(intervals[algo][1, i]))
                   for i, name in enumerate(names)} for algo in scores}  # fmt: skip


def improvement_probabilities(
    scores: dict[str, np.ndarray], reps: int = 2000, seed: int = 0
) -> dict[str, tuple[float, float, float]]:
    """P(A > B) with its CI for every ordered pair of algorithms ("A > B")."""
    pairs = {f"{a} > {b}": (scores[a], scores[b]) for a, b in itertools.permutations(scores, 2)}
    if not pairs:
        return {}
    points, intervals = _bootstrap(pairs, metrics.probability_of_improvement, reps, seed)
    bounds = {pair: np.ravel(intervals[pair]) for pair in pairs}  # rliable returns (2, 1) for this scalar
    return {pair: (float(points[pair]), float(bounds[pair][0]), float(bounds[pair][1])) for pair in pairs}


def score_matrix(
    records: list[dict[str, Any]], key: str = "final_return", references: dict[str, tuple[float, float]] | None = None
) -> tuple[dict[str, np.ndarray], list[str]]:
    """(runs x envs) scores per algorithm from sweep records (runs paired by seed; an env missing a seed is dropped
    for that algorithm), normalised by ``references[env] = (low, high)`` when given."""
    by_cell: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for record in records:
        if record.get(key) is not None:
            by_cell[(record["algo"], record["env"])][record["seed"]] = float(record[key])
    envs = sorted({env for _, env in by_cell})
    scores = {}
    for algo in sorted({algo for algo, _ in by_cell}):
        seeds = sorted(set.intersection(*(set(by_cell.get((algo, env), {})) for env in envs)))
        if seeds:
            matrix = np.array([[by_cell[(algo, env)][seed] for env in envs] for seed in seeds])
            if references:
                low = np.array([references[env][0] for env in envs])
                high = np.array([references[env][1] for env in envs])
                matrix = (matrix - low) / (high - low)
            scores[algo] = matrix
    return scores, envs


def plot_performance_profiles(scores: dict[str, np.ndarray], path: Path, reps: int = 2000) -> Path:
    """Fraction of runs above each score threshold, with CIs (rliable's score distributions)."""
    low = min(float(s.min()) for s in scores.values())
    high = max(float(s.max()) for s in scores.values())
    taus = np.linspace(low, high, 101)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        profiles, cis = rly.create_performance_profile(scores, taus, reps=reps)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for algo in scores:
        ax.plot(taus, profiles[algo], label=algo)
        ax.fill_between(taus, cis[algo][0], cis[algo][1], alpha=0.2)
    ax.set(xlabel="score τ", ylabel="fraction of runs with score > τ")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _iqm_per_step(scores: np.ndarray) -> np.ndarray:
    """IQM over runs at every evaluation of (runs, 1 task, evaluations) scores."""
    return np.array([metrics.aggregate_iqm(scores[..., i]) for i in range(scores.shape[-1])])


def plot_learning_curves(records: list[dict[str, Any]], path: Path, reps: int = 1000) -> Path:
    """IQM over seeds of the evaluation return against steps, per (algo, env), with 95 % bootstrap bands."""
    curves: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if record.get("eval_returns"):
            curves[(record["algo"], record["env"])].append(record)
    envs = sorted({env for _, env in curves})
    fig, axes = plt.subplots(1, max(len(envs), 1), figsize=(5 * max(len(envs), 1), 3.5), squeeze=False)
    for (algo, env), runs in sorted(curves.items()):
        length = min(len(run["eval_returns"]) for run in runs)
        steps = np.array(runs[0]["eval_timesteps"][:length])
        returns = np.array([run["eval_returns"][:length] for run in runs])  # (seeds, evaluations)
        point, interval = _bootstrap({algo: returns[:, None, :]}, _iqm_per_step, reps, 0)
        ax = axes[0, envs.index(env)]
        ax.plot(steps, point[algo], label=f"{algo} ({len(runs)} seeds)")
        ax.fill_between(steps, interval[algo][0], interval[algo][1], alpha=0.2)
        ax.set(title=env, xlabel="environment steps", ylabel="IQM evaluation return")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
