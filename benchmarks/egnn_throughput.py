"""EGNN forward+backward throughput: ours against the independent egnn-pytorch and against our pre-split edge input.

Three models at the same sizes (hidden width, message width, layers) on fully connected graphs of batched particle
systems, timed with interleaved repeats so machine noise hits all alike:

* ``ours``: `equivariant.egnn.EGNN` (attention gate, tanh-bounded coordinate steps, sum aggregation), whose first
  edge-MLP layer runs per node and is gathered per edge (`EGNNLayer._edge_messages`);
* ``ours_concatenated``: the same model and weights with the textbook edge input concat(h_i, h_j, ‖x_i − x_j‖²) run
  through the whole first Linear on every edge, i.e. the implementation before the split (the speed-up's baseline);
* ``egnn_pytorch``: ``egnn_pytorch.EGNN_Network`` (lucidrains, 0.2.8) with ``dim`` = ``m_dim`` = our hidden width and
  ``soft_edges`` (its attention gate). Its graph includes self-edges (n² instead of n(n − 1) edges), its edge MLP is
  twice as wide as its input (2·(2·dim + 1)) and it layer-normalises features, so it has more parameters per layer:
  the parameter counts are printed next to the rates.

    pip install '.[bench]'    # egnn-pytorch
    python -m benchmarks.egnn_throughput                          # CPU, 1 thread: ~5 min, 5 GB of memory
    python -m benchmarks.egnn_throughput --systems dw4 lj13 --repeats 5
    python -m benchmarks.egnn_throughput --device cuda --iterations 20 --name egnn_throughput_gpu
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

import torch
import tyro
from torch import Tensor, nn

from benchmarks.common import ResultsArgs, recorded_args, source_commit, write_results
from benchmarks.render import Result, Section, machine
from equivariant.egnn import EGNN, EGNNLayer

SystemName = Literal["dw4", "dw4_3d", "lj13", "lj55"]


@dataclass(frozen=True)
class ParticleSystem:
    """A batch of equal-size particle systems and the EGNN depth used on them (iDEM's settings per target)."""

    batch: int  # systems per forward pass
    particles: int  # nodes of each fully connected graph
    spatial_dim: int  # coordinates per particle
    n_layers: int  # message-passing layers


# Memory bounds the batch: for backward, egnn-pytorch keeps ~56 KB per edge at width 128 and 5 layers (n² edges: 4.8 GB
# for lj13 at batch 512), ours ~24 KB per edge (n(n − 1) edges); lj55 at batch 128 needs over 20 GB, hence 16.
SYSTEMS: dict[str, ParticleSystem] = {
    "dw4": ParticleSystem(512, 4, 2, 3),
    "dw4_3d": ParticleSystem(512, 4, 3, 3),
    "lj13": ParticleSystem(512, 13, 3, 5),
    "lj55": ParticleSystem(16, 55, 3, 5),
}
METHODS = ("ours", "ours_concatenated", "egnn_pytorch")


@dataclass
class EGNNThroughputArgs(ResultsArgs):
    systems: list[SystemName] = field(default_factory=lambda: ["dw4", "lj13", "lj55"])
    """Particle systems to time (see SYSTEMS: batch, particles, spatial dim, layers)."""
    hidden_dim: int = 128
    """Width of node features and messages of every model."""
    iterations: int = 1
    """Forward+backward passes per measurement (after one untimed warm-up pass per model)."""
    repeats: int = 3
    """Measurements per model and system, interleaved across models."""
    threads: int = 1
    """Torch CPU threads."""
    device: str = "cpu"
    """Torch device."""
    seed: int = 0
    """Seed of the weights and inputs."""
    name: str = "egnn_throughput"
    """Results file: <results-dir>/<name>.json."""


def concatenated_edge_messages(layer: EGNNLayer, h: Tensor, row: Tensor, col: Tensor, edge_scalars: Tensor) -> Tensor:
    """φ_e on concat(h_i, h_j, s_ij) per edge: what `EGNNLayer._edge_messages` computed before the per-node split."""
    return layer.edge_mlp(torch.cat([h[:, row], h[:, col], edge_scalars], dim=-1))


def with_concatenated_edge_input(model: EGNN) -> EGNN:
    """A copy of ``model`` (same weights) whose layers use `concatenated_edge_messages`."""
    clone = copy.deepcopy(model)
    for layer in clone.layers:
        layer._edge_messages = partial(concatenated_edge_messages, layer)
    return clone


def egnn_pytorch_network(system: ParticleSystem, hidden_dim: int) -> nn.Module:
    """egnn-pytorch's network at our sizes; fails with the install command when the package is missing."""
    try:
        from egnn_pytorch import EGNN_Network
    except ImportError as error:
        raise SystemExit(
            "benchmarks.egnn_throughput compares with egnn-pytorch, which is not installed: "
            "run `pip install '.[bench]'` (or `pip install egnn-pytorch==0.2.8`)."
        ) from error
    return EGNN_Network(depth=system.n_layers, dim=hidden_dim, m_dim=hidden_dim, soft_edges=True)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def training_pass(model: nn.Module, h: Tensor, x: Tensor) -> None:
    """One forward and backward pass of a loss on both outputs."""
    model.zero_grad(set_to_none=True)
    h_out, x_out = model(h, x)
    (h_out.square().mean() + x_out.square().mean()).backward()


def timed(fn: Callable[[], object], iterations: int, device: str) -> float:
    """Seconds per call of ``fn``, averaged over ``iterations`` calls (device synchronised)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iterations):
        fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / iterations


def measure_system(name: str, args: EGNNThroughputArgs) -> dict[str, object]:
    """Samples/s of every method on one system (interleaved repeats), the ratios and the parameter counts."""
    system = SYSTEMS[name]
    torch.manual_seed(args.seed)
    ours = EGNN(args.hidden_dim, args.hidden_dim, None, system.n_layers, n_nodes=system.particles)
    models: dict[str, nn.Module] = {
        "ours": ours,
        "ours_concatenated": with_concatenated_edge_input(ours),
        "egnn_pytorch": egnn_pytorch_network(system, args.hidden_dim),
    }
    models = {method: model.to(args.device) for method, model in models.items()}
    gen = torch.Generator().manual_seed(args.seed)
    h = torch.randn(system.batch, system.particles, args.hidden_dim, generator=gen).to(args.device)
    x = torch.randn(system.batch, system.particles, system.spatial_dim, generator=gen).to(args.device)
    for model in models.values():
        training_pass(model, h, x)  # warm-up
    with torch.no_grad():  # features: the coordinates of a fresh EGNN barely move (coordinate heads start near zero)
        split_error = (models["ours"](h, x)[0] - models["ours_concatenated"](h, x)[0]).abs().max().item()
    seconds: dict[str, list[float]] = {method: [] for method in models}
    for _ in range(args.repeats):
        for method, model in models.items():
            seconds[method].append(timed(partial(training_pass, model, h, x), args.iterations, args.device))
    rates = {method: [system.batch / s for s in values] for method, values in seconds.items()}
    medians = {method: statistics.median(values) for method, values in rates.items()}
    return {
        "system": name,
        **asdict(system),
        "parameters": {method: parameter_count(model) for method, model in models.items()},
        "samples_per_s": rates,
        "median_samples_per_s": medians,
        "ratio_ours_to_egnn_pytorch": medians["ours"] / medians["egnn_pytorch"],
        "speedup_of_split_edge_input": medians["ours"] / medians["ours_concatenated"],
        "max_abs_diff_split_vs_concatenated": split_error,
    }


def main(args: EGNNThroughputArgs) -> None:
    source_commit(args.allow_dirty)
    torch.set_num_threads(args.threads)
    egnn_pytorch_network(SYSTEMS["dw4"], 8)  # fail early, before any timing, if egnn-pytorch is missing
    rows = []
    for name in args.systems:
        rows.append(measure_system(name, args))
        row = rows[-1]
        print(f"{name}: ours/egnn-pytorch {row['ratio_ours_to_egnn_pytorch']:.2f}, split speed-up "
              f"{row['speedup_of_split_edge_input']:.2f}", flush=True)  # fmt: skip
    print(f"\nEGNN forward+backward, hidden {args.hidden_dim}, {args.threads} thread(s), {args.device}")
    print(f"{'system':<8}{'B x n x d, layers':>20}{'method':>20}{'params':>10}{'samples/s':>12}")
    for row in rows:
        shape = f"{row['batch']}x{row['particles']}x{row['spatial_dim']}, {row['n_layers']}"
        for method in METHODS:
            print(f"{row['system']:<8}{shape:>20}{method:>20}{row['parameters'][method]:>10}"
                  f"{row['median_samples_per_s'][method]:>12.1f}")  # fmt: skip
        print(f"{'':<8}ratio ours/egnn-pytorch {row['ratio_ours_to_egnn_pytorch']:.2f}, speed-up of the split edge "
              f"input {row['speedup_of_split_edge_input']:.2f} "
              f"(max |diff| {row['max_abs_diff_split_vs_concatenated']:.1e})")  # fmt: skip
    print(f"wrote {write_results(args.name, {'config': recorded_args(args), 'rows': rows}, args)}")


TEXT = """\
## EGNN forward+backward throughput (ours vs egnn-pytorch)

`python -m benchmarks.egnn_throughput --systems {systems} --hidden-dim {config[hidden_dim]} --iterations \
{config[iterations]} --repeats {config[repeats]} --threads {config[threads]} --device {config[device]}` (needs \
`pip install '.[bench]'`).

Machine: {machine}. Samples (particle systems) per second of one forward and backward pass, median of \
{config[repeats]} interleaved repeats; hidden and message width {config[hidden_dim]} in every model, fully connected \
graphs. `ours_concatenated` is our model with the edge MLP's first layer run on concat(h_i, h_j, d²) per edge (before \
the per-node split). egnn-pytorch 0.2.8 (`EGNN_Network`, `m_dim` = hidden, `soft_edges`) also passes messages along \
self-edges, has a twice-wider edge MLP and layer norms: hence its larger parameter counts.

| system | B x n x d | layers | method | parameters | median samples/s |
|---|---|---|---|---|---|"""
ROW = "| {system} | {batch} x {particles} x {spatial_dim} | {n_layers} | {method} | {parameters:,} | {rate:.1f} |"
COMPARISON = """
| system | ratio ours / egnn-pytorch | speed-up of the per-node split | max abs diff of features, split vs concat |
|---|---|---|---|"""
COMPARISON_ROW = (
    "| {system} | {ratio_ours_to_egnn_pytorch:.2f} | {speedup_of_split_edge_input:.2f} | "
    "{max_abs_diff_split_vs_concatenated:.1e} |"
)


def render(result: Result, figures: Path) -> str:
    """Parameters and samples per second of every model per system, and the ratios."""
    config = result["config"]
    lines = [TEXT.format(systems=" ".join(config["systems"]), config=config, machine=machine(result))]
    lines += [ROW.format(**{**row, "parameters": row["parameters"][method]}, method=method, rate=rate)
              for row in result["rows"] for method, rate in row["median_samples_per_s"].items()]  # fmt: skip
    lines.append(COMPARISON)
    lines += [COMPARISON_ROW.format(**row) for row in result["rows"]]
    return "\n".join(lines)


SECTION = Section(("egnn_throughput",), render)


if __name__ == "__main__":
    main(tyro.cli(EGNNThroughputArgs))
