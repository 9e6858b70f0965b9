"""Weight-sharing prox throughput at large d: our batched prox vs a plain numpy + scipy reference, side by side.

The reference is the textbook recipe written directly in numpy (argsort, shift, ``scipy.optimize.isotonic_regression``
PAVA, unsort), one vector at a time. Ours is ``weight_sharing_prox`` with the parallel torch backend and with "auto"
(scipy's PAVA on CPU tensors). Methods are interleaved per repeat so machine noise hits all alike, and every output
is compared with the reference.

    python -m benchmarks.prox_throughput --d 1000000 --strengths 0.01 1 10 --repeats 3
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import tyro
from scipy.optimize import isotonic_regression

from benchmarks.common import ResultsArgs, recorded_args, source_commit, write_results
from benchmarks.render import Result, Section, machine
from equivariant.weight_sharing import weight_sharing_prox


@dataclass
class ProxThroughputArgs(ResultsArgs):
    d: int = 1_000_000
    """Vector length."""
    rows: int = 1
    """Vectors per call (the torch backend handles them as one batch)."""
    strengths: list[float] = field(default_factory=lambda: [0.01, 1.0, 10.0])
    """Prox strengths λ: few merges, many, and a collapse to the mean."""
    repeats: int = 3
    """Timed calls per method and strength, interleaved across methods."""
    threads: int = 1
    """Torch threads."""
    device: str = "cpu"
    """Torch device of our prox (the reference always runs on the CPU)."""
    name: str = "prox_throughput"
    """Results file: <results-dir>/<name>.json."""


def reference_prox(w: np.ndarray, lam: float) -> np.ndarray:
    """Sort, shift, scipy PAVA, unsort: the exact prox of λR for every row, in plain numpy."""
    d = w.shape[-1]
    out = np.empty_like(w)
    shift = lam * (d + 1 - 2 * np.arange(1, d + 1)) / (d - 1)
    for row, target in zip(w, out):
        order = np.argsort(row)
        target[order] = isotonic_regression(row[order] + shift).x
    return out


def timed(fn: Callable[[], np.ndarray], device: str) -> tuple[float, np.ndarray]:
    """Seconds for one call of ``fn`` (device synchronised) and its result."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def main(args: ProxThroughputArgs) -> None:
    source_commit(args.allow_dirty)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(args.rows, args.d, generator=gen, dtype=torch.float64)
    w_device, w_numpy = w.to(args.device), w.numpy()
    methods: dict[str, Callable[[float], Callable[[], np.ndarray]]] = {
        "reference numpy+scipy": lambda lam: lambda: reference_prox(w_numpy, lam),
        "ours torch": lambda lam: lambda: weight_sharing_prox(w_device, lam, backend="torch").cpu().numpy(),
        "ours auto": lambda lam: lambda: weight_sharing_prox(w_device, lam, backend="auto").cpu().numpy(),
    }
    rows = []
    for lam in args.strengths:
        seconds: dict[str, list[float]] = {name: [] for name in methods}
        results: dict[str, np.ndarray] = {}
        for _ in range(args.repeats):
            for name, make in methods.items():
                elapsed, results[name] = timed(make(lam), args.device)
                seconds[name].append(elapsed)
        reference = results["reference numpy+scipy"]
        baseline = statistics.median(seconds["reference numpy+scipy"])
        for name, values in seconds.items():
            median = statistics.median(values)
            rows.append(
                {
                    "method": name,
                    "strength": lam,
                    "seconds": values,
                    "median_seconds": median,
                    "million_elements_per_s": args.rows * args.d / median / 1e6,
                    "speedup_vs_reference": baseline / median,
                    "max_abs_diff_vs_reference": float(np.abs(results[name] - reference).max()),
                    "distinct_values_row0": int(np.unique(results[name][0]).size),
                }
            )
    print(f"\nWeight-sharing prox, {args.rows} x d={args.d} (standard normal), {args.threads} torch thread(s), {args.device}")
    print(f"{'method':<24}{'lambda':>8}{'median s':>10}{'Melem/s':>9}{'speedup':>9}{'max|diff|':>11}{'distinct':>10}")
    for row in rows:
        print(
            f"{row['method']:<24}{row['strength']:>8g}{row['median_seconds']:>10.3f}{row['million_elements_per_s']:>9.2f}"
            f"{row['speedup_vs_reference']:>9.2f}{row['max_abs_diff_vs_reference']:>11.1e}{row['distinct_values_row0']:>10}"
        )
    print(f"wrote {write_results(args.name, {'config': recorded_args(args), 'rows': rows}, args)}")


TEXT = """\
## Weight-sharing prox throughput

`python -m benchmarks.prox_throughput --d {config[d]} --rows {config[rows]} --strengths {strengths} --repeats \
{config[repeats]} --threads {config[threads]} --device {config[device]}`

Machine: {machine}. {config[rows]} standard-normal vector(s) of length {config[d]:,}; median of {config[repeats]} \
interleaved calls. The reference sorts, shifts and runs scipy's PAVA one vector at a time in numpy; every output is \
compared with it.

| method | strength | median s | M elements/s | speed-up vs reference | max abs diff | distinct values |
|---|---|---|---|---|---|---|"""
ROW = (
    "| {method} | {strength:g} | {median_seconds:.3f} | {million_elements_per_s:.2f} | {speedup_vs_reference:.2f} | "
    "{max_abs_diff_vs_reference:.1e} | {distinct_values_row0:,} |"
)


def render(result: Result, figures: Path) -> str:
    """Time, rate, speed-up and agreement with the reference of every method and strength."""
    config = result["config"]
    text = TEXT.format(config=config, strengths=" ".join(f"{s:g}" for s in config["strengths"]), machine=machine(result))
    return "\n".join([text, *(ROW.format(**row) for row in result["rows"])])


SECTION = Section(("prox_throughput",), render)


if __name__ == "__main__":
    main(tyro.cli(ProxThroughputArgs))
