"""Do fully connected networks learn convolution-like filters under weight-sharing regularisation, even on shuffled
pixels, where a CNN fails? (Shakerinava, Sohrabi, Ravanbakhsh & Lacoste-Julien, AISTATS 2024, arXiv 2311.03096.)

Data: scikit-learn's bundled 8 x 8 digits (no download), each image circularly shifted by a random (dx, dy) drawn
once per example (the reference's "MNIST_14_Torus": one ``torch.roll`` per image, train and test alike), in two
variants: ``shifted`` (the images as they are) and ``shuffled`` (the pixels of every image, train, validation and
test, reordered by one fixed permutation). A fixed split holds out a test set and a validation set; each seed trains
on its own random subset of the rest, of each profile size.

Arms (the reference repository `motahareh-sohrabi/weight-sharing-regularization`, ``src/models/models.py``):

* ``fc``: its ``Net_2FC`` -- d -> d·c1 -> d·c2 fully connected layers (batch norm, ReLU, dropout), the mean over
  each group of d units of the second layer, a linear read-out: a network that *can* express the CNN below, with
  nothing forcing it to;
* ``fc_prox``: the same, with the exact proximal step of λ·R (step λ·lr, `equivariant.weight_sharing.ProxGradient`)
  on the first layer's weight and bias after every SGD step;
* ``fc_beta_lasso``: the same, with β-LASSO (Neyshabur, NeurIPS 2020, arXiv 2007.13657) on the first layer: λ·sign(w)
  added to the gradient, then every weight below β·λ in magnitude set to 0, as the reference code does it;
* ``cnn``: its ``Net_2CNN`` -- two 3 x 3 convolutions with circular padding (batch norm, ReLU), global average
  pooling, a linear read-out: exactly invariant to circular shifts of the unshuffled images.

λ of the two regularised arms is chosen per (variant, training size) among the profile's strengths by the mean
validation accuracy over seeds; the test set is read only for the reported accuracy. Each (variant, size, arm, λ,
seed) is a trial of the sweep engine (`benchmarks.common.BenchmarkGrid`), so an interrupted run resumes.

    OMP_NUM_THREADS=1 python -m benchmarks.weight_sharing --max-concurrent 1   # cpu profile
    python -m benchmarks.weight_sharing --profile gpu --device auto
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
import tyro
from sklearn.datasets import load_digits
from stable_baselines3.common.utils import get_device
from torch import Tensor, nn

from benchmarks.common import BenchmarkGrid, Profile, ResultsArgs, mean_and_std, run_grid
from benchmarks.render import Result, Section, machine, mean_std, save_figure
from equivariant.weight_sharing import ProxGradient
from runner.sweep import Resources, Trial

VARIANTS = ("shifted", "shuffled")
ARMS = ("fc", "fc_prox", "fc_beta_lasso", "cnn")
SIDE = 8  # the digits are 8 x 8
PIXELS = SIDE * SIDE
SPLIT_SEED = 0  # the test / validation / training-pool split and every example's shift, the same for every trial
PERMUTATION_SEED = 1  # the one pixel permutation of the shuffled variant
DISTINCT_TOLERANCE = 1e-6  # weights closer than this count as one value (the prox makes shared weights exactly equal)
SHOWN_FILTERS = 8  # first-layer rows (the largest spread first) or CNN kernels kept per run for the figure
LOCAL_WINDOW = 3  # side of the circular window of the locality measure: the CNN's kernel


@dataclass(frozen=True)
class WeightSharingProfile(Profile):
    """Budgets, sizes and strength grids of one profile."""

    steps: int
    """SGD steps of every run (cosine-decayed learning rate, no momentum, as the reference)."""
    train_sizes: tuple[int, ...]
    """Training examples per run; 0: the whole training pool."""
    prox_strengths: tuple[float, ...]
    """λ of the weight-sharing prox, chosen among on the validation split."""
    lasso_strengths: tuple[float, ...]
    """λ of β-LASSO, chosen among on the validation split."""
    beta: float = 50.0
    """β of β-LASSO (Neyshabur 2020's value)."""
    batch_size: int = 64
    learning_rate: float = 0.1
    momentum: float = 0.0
    fc_channels: tuple[int, int] = (8, 16)
    """(c1, c2): the fully connected layers have d·c1 and d·c2 units."""
    cnn_channels: tuple[int, int] = (8, 16)
    """Channels of the two convolutions."""
    dropout: float = 0.4
    """Dropout after each fully connected layer (the reference's 0.4)."""
    validation_size: int = 300
    test_size: int = 400


PROFILES: dict[str, WeightSharingProfile] = {
    "cpu": WeightSharingProfile(
        steps=3_000, train_sizes=(100, 300, 0), prox_strengths=(0.003, 0.01, 0.03), lasso_strengths=(1e-4, 1e-3),
        momentum=0.9, learning_rate=0.05, fc_channels=(4, 8), cnn_channels=(4, 8),
        rationale="126 runs of 3,000 steps (~10 s each on one thread): about 25 CPU minutes. Channels (4, 8) instead of "
        "the reference's (16, 32), and momentum 0.9 at learning rate 0.05 instead of plain SGD at 0.1: in a pilot on "
        "the validation split, plain SGD left the FC at 91 % training accuracy after 3,000 steps. The strength grids "
        "span the pilot's range from no visible effect to a collapse of the first layer (prox λ = 0.1: validation "
        "accuracy 0.41 against 0.59 for plain FC; β-LASSO λ = 1e-3: 93 % zeros)",
    ),
    "gpu": WeightSharingProfile(
        steps=20_000, train_sizes=(100, 300, 0), prox_strengths=(0.001, 0.003, 0.01, 0.03, 0.1),
        lasso_strengths=(1e-5, 1e-4, 1e-3), momentum=0.9, learning_rate=0.05, fc_channels=(16, 32),
        cnn_channels=(16, 32), rationale="the reference's channels, longer training and finer strength grids",
    ),
    "smoke": WeightSharingProfile(
        steps=4, train_sizes=(32,), prox_strengths=(1.0,), lasso_strengths=(1e-3,), batch_size=16,
        fc_channels=(2, 2), cnn_channels=(2, 2), validation_size=64, test_size=64,
    ),
}  # fmt: skip


@dataclass
class WeightSharingArgs(Resources, ResultsArgs):
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    """Data variants (shifted, shuffled)."""
    arms: list[str] = field(default_factory=lambda: list(ARMS))
    """Networks and regularisers (fc, fc_prox, fc_beta_lasso, cnn)."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Seeds: training subset, initialisation, batches and dropout."""
    profile: Literal["smoke", "cpu", "gpu"] = "cpu"
    """Budget profile (see PROFILES)."""
    device: str = "auto"
    """Torch device."""
    work_dir: Path = Path("runs/benchmarks/weight_sharing")
    """Records of the runs: <work_dir>/<profile>/records/."""
    name: str = "weight_sharing"
    """Results file: <results-dir>/<name>.json."""


# --- data -----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DigitSplits:
    """Flattened images (n, 64) as float32 and labels, per split, and the pixel permutation applied (None: none)."""

    train: tuple[Tensor, Tensor]
    validation: tuple[Tensor, Tensor]
    test: tuple[Tensor, Tensor]
    permutation: np.ndarray | None


def pixel_permutation() -> np.ndarray:
    """The fixed permutation of the shuffled variant: column j of a shuffled image is pixel ``permutation[j]``."""
    return np.random.default_rng(PERMUTATION_SEED).permutation(PIXELS)


def digit_splits(variant: str, validation_size: int, test_size: int) -> DigitSplits:
    """The digits, each circularly shifted once, standardised by one mean and std of the training pool, split into
    training pool, validation and test, their pixels permuted by `pixel_permutation` in the ``shuffled`` variant."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    digits = load_digits()
    rng = np.random.default_rng(SPLIT_SEED)
    images = digits.images.astype(np.float32)
    shifts = rng.integers(0, SIDE, size=(len(images), 2))
    images = np.stack([np.roll(image, tuple(shift), axis=(0, 1)) for image, shift in zip(images, shifts)])
    flat, labels = images.reshape(len(images), PIXELS), digits.target.astype(np.int64)
    order = rng.permutation(len(flat))
    test, validation, pool = np.split(order, [test_size, test_size + validation_size])
    flat = (flat - flat[pool].mean()) / flat[pool].std()
    permutation = pixel_permutation() if variant == "shuffled" else None
    if permutation is not None:
        flat = flat[:, permutation]

    def split(indices: np.ndarray) -> tuple[Tensor, Tensor]:
        return torch.from_numpy(flat[indices]), torch.from_numpy(labels[indices])

    return DigitSplits(split(pool), split(validation), split(test), permutation)


def to_image_layout(rows: np.ndarray, permutation: np.ndarray | None) -> np.ndarray:
    """First-layer rows (n, 64) over the input's pixel order, as (n, 8, 8) images in the original pixel order."""
    images = np.empty_like(rows)
    images[:, np.arange(PIXELS) if permutation is None else permutation] = rows
    return images.reshape(-1, SIDE, SIDE)


# --- networks -------------------------------------------------------------------------------------------------------


class FullyConnected(nn.Module):
    """The reference's ``Net_2FC``: d -> d·c1 -> d·c2 (batch norm, ReLU, dropout), the mean over each of c2 groups of
    d units, a linear read-out. With the first two layers circular convolutions it would be `CircularCNN`."""

    def __init__(self, channels: tuple[int, int], dropout: float) -> None:
        super().__init__()
        self.groups = channels[1]
        self.fc1 = nn.Linear(PIXELS, PIXELS * channels[0])
        self.fc2 = nn.Linear(PIXELS * channels[0], PIXELS * channels[1])
        self.hidden = nn.Sequential(
            self.fc1, nn.BatchNorm1d(self.fc1.out_features), nn.ReLU(), nn.Dropout(dropout),
            self.fc2, nn.BatchNorm1d(self.fc2.out_features), nn.ReLU(), nn.Dropout(dropout),
        )  # fmt: skip
        self.readout = nn.Linear(channels[1], 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.readout(self.hidden(x).reshape(len(x), self.groups, PIXELS).mean(-1))


class CircularCNN(nn.Module):
    """The reference's ``Net_2CNN``: two 3 x 3 circular convolutions (batch norm, ReLU), global average pooling, a
    linear read-out; invariant to circular shifts of its 8 x 8 input."""

    def __init__(self, channels: tuple[int, int]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels[0], 3, padding=1, padding_mode="circular")
        self.features = nn.Sequential(
            self.conv1, nn.BatchNorm2d(channels[0]), nn.ReLU(),
            nn.Conv2d(channels[0], channels[1], 3, padding=1, padding_mode="circular"), nn.BatchNorm2d(channels[1]), nn.ReLU(),
        )  # fmt: skip
        self.readout = nn.Linear(channels[1], 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.readout(self.features(x.reshape(len(x), 1, SIDE, SIDE)).mean((-2, -1)))


class BetaLasso:
    """β-LASSO on some parameters: ``add_subgradient`` before the optimizer step (λ·sign(w) added to the gradient),
    ``threshold`` after it (|w| < β·λ set to 0), as Neyshabur (2020) and the weight-sharing reference code do."""

    def __init__(self, params: list[Tensor], strength: float, beta: float) -> None:
        self.params, self.strength, self.beta = params, strength, beta

    @torch.no_grad()
    def add_subgradient(self) -> None:
        for param in self.params:
            param.grad += self.strength * torch.sign(param)

    @torch.no_grad()
    def threshold(self) -> None:
        for param in self.params:
            param.mul_(param.abs() >= self.beta * self.strength)


# --- one run --------------------------------------------------------------------------------------------------------


def distinct_values(values: np.ndarray) -> int:
    """How many distinct values ``values`` holds, values within `DISTINCT_TOLERANCE` of their neighbour merged."""
    ordered = np.sort(values.ravel())
    return int(1 + (np.diff(ordered) > DISTINCT_TOLERANCE).sum())


def locality(images: np.ndarray) -> np.ndarray:
    """Per (n, 8, 8) filter: the largest share of its squared deviation from its median that one circular 3 x 3
    window holds (1: the filter is a 3 x 3 kernel on a constant background); NaN for a constant filter."""
    energy = torch.from_numpy((images - np.median(images, axis=(1, 2), keepdims=True)) ** 2)
    offsets = range(-(LOCAL_WINDOW // 2), LOCAL_WINDOW // 2 + 1)
    windows = sum(torch.roll(energy, (dx, dy), dims=(1, 2)) for dx in offsets for dy in offsets)
    total = energy.sum((1, 2))
    share = windows.amax((1, 2)) / total
    return torch.where(total > 0, share, torch.nan).numpy()


def first_layer_summary(model: FullyConnected, permutation: np.ndarray | None) -> dict[str, Any]:
    """Distinct values (per row and in the whole layer), zeros, locality and the most varied rows of the first layer."""
    weight = model.fc1.weight.detach().cpu().double().numpy()
    images = to_image_layout(weight, permutation)
    shown = np.argsort(-weight.std(axis=1), kind="stable")[:SHOWN_FILTERS]
    return {
        "distinct_per_row": float(np.mean([distinct_values(row) for row in weight])),
        "distinct_in_layer": distinct_values(weight),
        "zero_fraction": float((weight == 0).mean()),
        "locality": float(np.nanmean(locality(images))),
        "filters": images[shown].tolist(),
    }


def batches(n: int, batch_size: int, steps: int, generator: torch.Generator) -> list[Tensor]:
    """``steps`` index batches: full batches of a fresh permutation each epoch (batch norm needs > 1 example)."""
    size = min(batch_size, n)
    out: list[Tensor] = []
    while len(out) < steps:
        order = torch.randperm(n, generator=generator)
        out += list(order[: n - n % size].split(size))
    return out[:steps]


@torch.no_grad()
def accuracy(model: nn.Module, data: tuple[Tensor, Tensor]) -> float:
    model.eval()
    return float((model(data[0]).argmax(-1) == data[1]).float().mean())


def train_run(config: dict[str, Any]) -> dict[str, Any]:
    """One trial: train an arm on one variant, training size, strength and seed; its accuracies and first layer."""
    profile: WeightSharingProfile = config["profile"]
    arm, strength, seed = config["arm"], config["strength"], config["seed"]
    device = get_device(config["device"])
    data = digit_splits(config["variant"], profile.validation_size, profile.test_size)
    generator = torch.Generator().manual_seed(seed)
    pool_size = len(data.train[1])
    size = config["size"] or pool_size
    if size > pool_size:
        raise ValueError(f"training size {size} exceeds the training pool of {pool_size} examples")
    subset = torch.randperm(pool_size, generator=generator)[:size]
    train_x, train_y = (tensor[subset].to(device) for tensor in data.train)
    validation, test = ((x.to(device), y.to(device)) for x, y in (data.validation, data.test))
    torch.manual_seed(seed)
    model = CircularCNN(profile.cnn_channels) if arm == "cnn" else FullyConnected(profile.fc_channels, profile.dropout)
    model = model.to(device)
    initial = None if arm == "cnn" else first_layer_summary(model, data.permutation)
    optimizer = torch.optim.SGD(model.parameters(), lr=profile.learning_rate, momentum=profile.momentum)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, profile.steps)
    first_layer = [model.fc1.weight, model.fc1.bias] if arm != "cnn" else []
    prox = ProxGradient(first_layer, strength) if arm == "fc_prox" else None
    lasso = BetaLasso(first_layer, strength, profile.beta) if arm == "fc_beta_lasso" else None
    start = time.perf_counter()
    for indices in batches(size, profile.batch_size, profile.steps, generator):
        model.train()
        loss = F.cross_entropy(model(train_x[indices]), train_y[indices])
        optimizer.zero_grad()
        loss.backward()
        if lasso is not None:
            lasso.add_subgradient()
        optimizer.step()
        if prox is not None:
            prox.step(optimizer)
        if lasso is not None:
            lasso.threshold()
        schedule.step()
    record = {key: config[key] for key in ("variant", "size", "arm", "strength", "seed")} | {
        "examples": size, "pool_examples": pool_size, "steps": profile.steps, "train_wall_time_s": time.perf_counter() - start,
        "final_train_loss": float(loss.detach()), "train_accuracy": accuracy(model, (train_x, train_y)),
        "validation_accuracy": accuracy(model, validation), "test_accuracy": accuracy(model, test),
    }  # fmt: skip
    if arm == "cnn":
        kernels = model.conv1.weight.detach().cpu().double().numpy()[:SHOWN_FILTERS, 0]
        return record | {"filters": kernels.tolist()}
    return record | first_layer_summary(model, data.permutation) | {"locality_at_init": initial["locality"]}


# --- the grid -------------------------------------------------------------------------------------------------------


def arm_strengths(arm: str, profile: WeightSharingProfile) -> tuple[float, ...]:
    """The strengths an arm is trained at (0: an arm without a regulariser)."""
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; choose from {', '.join(ARMS)}")
    return {"fc_prox": profile.prox_strengths, "fc_beta_lasso": profile.lasso_strengths}.get(arm, (0.0,))


def trial_name(variant: str, size: int, arm: str, strength: float, seed: int) -> str:
    """The trial's (and its record's) name; size 0 is the whole training pool."""
    label = f"{arm}_{strength:g}" if strength else arm
    return f"{variant}__n{size or 'all'}__{label}__seed{seed}"


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per variant, number of training examples and arm: λ chosen by the mean validation accuracy over seeds (the
    smallest λ on a tie), the mean validation and test accuracy at every λ, and at the chosen λ the test accuracy over
    seeds (mean, std, values) and the first layer's mean distinct values, zeros and locality."""
    groups: dict[tuple[str, int, str], dict[float, list[dict[str, Any]]]] = {}
    for run in sorted(runs, key=lambda r: (r["strength"], r["seed"])):
        groups.setdefault((run["variant"], run["examples"], run["arm"]), {}).setdefault(run["strength"], []).append(run)
    summary: dict[str, Any] = {}
    for (variant, examples, arm), by_strength in sorted(groups.items(), key=lambda item: (item[0][0], item[0][1])):
        validation = {strength: float(np.mean([r["validation_accuracy"] for r in chosen]))
                      for strength, chosen in by_strength.items()}  # fmt: skip
        strength = max(validation, key=lambda s: (validation[s], -s))
        chosen = by_strength[strength]
        entry = {
            "strength": strength,
            "seeds": [r["seed"] for r in chosen],
            "by_strength": {f"{s:g}": {"validation_accuracy": validation[s],
                                       "test_accuracy": float(np.mean([r["test_accuracy"] for r in by_strength[s]]))}
                            for s in sorted(by_strength)},
            "test_accuracy": mean_and_std(tests := [r["test_accuracy"] for r in chosen]) | {"values": tests},
        }  # fmt: skip
        for key in ("distinct_per_row", "distinct_in_layer", "zero_fraction", "locality", "locality_at_init"):
            if key in chosen[0]:
                entry[key] = float(np.mean([r[key] for r in chosen]))
        summary.setdefault(variant, {}).setdefault(str(examples), {})[arm] = entry
    return summary


def targets(summary: dict[str, Any]) -> dict[str, Any]:
    """The paper's claims as measurements, per training size where every arm ran: on shuffled pixels the test-accuracy
    margins of FC + prox over the CNN and over plain FC; on shifted images the share of the FC -> CNN gap that the
    prox closes, (prox − FC) / (CNN − FC); per variant, at the largest size, the first layer's distinct values per row
    and locality with the prox and without."""
    means = {variant: {size: {arm: entry["test_accuracy"]["mean"] for arm, entry in arms.items()}
                       for size, arms in sizes.items() if {"fc", "fc_prox", "cnn"} <= set(arms)}
             for variant, sizes in summary.items()}  # fmt: skip
    shuffled = {size: {"over_cnn": m["fc_prox"] - m["cnn"], "over_fc": m["fc_prox"] - m["fc"]}
                for size, m in means.get("shuffled", {}).items()}  # fmt: skip
    shifted = {size: {"gap": m["cnn"] - m["fc"], "gap_closed": (m["fc_prox"] - m["fc"]) / (m["cnn"] - m["fc"])}
               for size, m in means.get("shifted", {}).items() if m["cnn"] != m["fc"]}  # fmt: skip
    filters = {}
    for variant, sizes in summary.items():
        largest = max(sizes, key=int)
        if {"fc", "fc_prox"} <= set(sizes[largest]):
            filters[variant] = {"examples": int(largest)} | {
                arm: {key: sizes[largest][arm][key] for key in ("distinct_per_row", "locality", "locality_at_init")}
                for arm in ("fc", "fc_prox")}  # fmt: skip
    return {"shuffled_margins": shuffled, "shifted_gap_closed": shifted, "filters": filters}


def print_table(summary: dict[str, Any]) -> None:
    print(f"\n{'variant':<10}{'examples':>9}" + "".join(f"{arm:>24}" for arm in ARMS))
    for variant, sizes in summary.items():
        for size, arms in sizes.items():
            cells = [f"{'-':>24}" if arm not in arms else
                     f"{mean_std(arms[arm]['test_accuracy'], 3):>16} λ={arms[arm]['strength']:<5g}"
                     for arm in ARMS]  # fmt: skip
            print(f"{variant:<10}{size:>9}" + "".join(cells))


def main(args: WeightSharingArgs) -> None:
    profile = PROFILES[args.profile]
    for variant in args.variants:
        if variant not in VARIANTS:
            raise SystemExit(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    strengths = {arm: arm_strengths(arm, profile) for arm in args.arms}  # an unknown arm fails here, not in a worker
    trials = [
        Trial(trial_name(variant, size, arm, strength, seed),
              {"variant": variant, "size": size, "arm": arm, "strength": strength, "seed": seed, "profile": profile,
               "device": args.device})
        for variant in args.variants for size in profile.train_sizes for arm in args.arms
        for strength in strengths[arm] for seed in args.seeds
    ]  # fmt: skip

    def results(runs: list[dict[str, Any]]) -> dict[str, Any]:
        summary = summarise(runs)
        config = {"variants": args.variants, "arms": args.arms, "seeds": args.seeds, "device": args.device}
        return {"config": config, "runs": runs, "summary": summary, "targets": targets(summary)}

    grid = BenchmarkGrid(
        name=args.name, out=args, profile=args.profile, settings=asdict(profile),
        sweep_dir=(args.work_dir / args.profile).resolve(), trials=trials, run=train_run,
        record_name=lambda r: trial_name(r["variant"], r["size"], r["arm"], r["strength"], r["seed"]), results=results,
    )  # fmt: skip
    print_table(summarise(run_grid(grid, args)))
    print(f"wrote {args.results_path(args.name)}")


# --- the report section ---------------------------------------------------------------------------------------------

LABELS = {"fc": "FC", "fc_prox": "FC + prox", "fc_beta_lasso": "FC + β-LASSO", "cnn": "CNN"}
TEXT = """\
## Weight-sharing regularisation: FC networks on shifted and pixel-shuffled digits, {profile} profile

`OMP_NUM_THREADS=1 python -m benchmarks.weight_sharing --profile {profile} --max-concurrent 1` (resumable; rebuilt \
from every finished run).

The claim (Shakerinava, Sohrabi, Ravanbakhsh & Lacoste-Julien, AISTATS 2024, arXiv 2311.03096): "fully connected \
networks learn convolution-like filters even when pixels have been shuffled, while convolutional neural networks fail \
in this setting".

Machine: {machine}. Data: scikit-learn's 8 x 8 digits, each image circularly shifted once by a random (dx, dy) (the \
reference's MNIST 14 x 14 torus, scaled down to a bundled data set), standardised; {test_size} test and \
{validation_size} validation images held out, the other {pool} form the training pool, of which each seed trains on \
a random subset. *shifted*: the images as they are; *shuffled*: the 64 pixels of every image (training, validation \
and test alike) reordered by one fixed permutation. Networks (the reference code's `Net_2FC` and `Net_2CNN`): FC = \
64 → 64·{fc[0]} → 64·{fc[1]} fully connected (batch norm, ReLU, dropout {dropout:g}), the mean over each of {fc[1]} \
groups of 64 units, a linear read-out; CNN = two 3 x 3 convolutions with circular padding ({cnn[0]}, {cnn[1]} \
channels, batch norm, ReLU), global average pooling, a linear read-out, so exactly shift-invariant on *shifted*. FC + \
prox: the exact proximal step of λ·R with step λ·lr on the first layer's weight and bias (each one vector, as the \
reference) after every SGD step; FC + β-LASSO (Neyshabur, NeurIPS 2020): λ·sign(w) added to the first layer's \
gradient and every weight below β·λ = {beta:g}·λ zeroed after the step. {steps:,} SGD steps of batch {batch}, \
learning rate {lr:g} (cosine decay), momentum {momentum:g}, for every arm. {rationale}.

**λ is chosen on the validation split, not the test set**: per variant and training size, the λ of the grid \
(prox {prox_grid}; β-LASSO {lasso_grid}) with the best mean validation accuracy over seeds; the test accuracy is \
reported at that λ only. Seeds {seeds} (training subset, initialisation, batches, dropout).

Test accuracy (mean ± std over seeds; λ chosen in brackets):

| variant | training examples | FC | FC + prox | FC + β-LASSO | CNN |
|---|---|---|---|---|---|"""
ROW = "| {variant} | {size} | {cells} |"
SELECTION = """
Every λ of the grids (mean over seeds; **bold**: chosen by validation accuracy):

| variant | training examples | arm | λ | validation accuracy | test accuracy |
|---|---|---|---|---|---|"""
SELECTION_ROW = "| {variant} | {size} | {arm} | {strength} | {validation} | {test:.3f} |"
WEIGHTS = """
The first layer after training (mean over seeds, at the chosen λ): distinct values per row (of 64; values closer \
than {tolerance:g} count as one), distinct values in the whole layer (of {layer:,}), the share of zeros, and \
locality: per row, the largest share of its squared deviation from its median inside one circular 3 x 3 window (in \
the original pixel order, so the same measure on both variants; 1 = a 3 x 3 kernel on a constant background; a \
sparse row scores high too, so it says "local" only together with the filters), averaged over rows, after training \
and at initialisation:

| variant | training examples | arm | distinct per row | distinct in layer | zeros | locality | at init |
|---|---|---|---|---|---|---|---|"""
WEIGHTS_ROW = (
    "| {variant} | {size} | {arm} | {distinct_per_row:.1f} | {distinct_in_layer:,.0f} | {zero_fraction:.1%} | "
    "{locality:.3f} | {locality_at_init:.3f} |"
)
FIGURE = """
First-layer filters of seed {seed} at {size} training examples: the {shown} rows of largest spread of each FC arm's \
first layer as 8 x 8 images in the original pixel order (for *shuffled*, un-permuted), each coloured around its \
median, beside the CNN's first-layer 3 x 3 kernels (at most {shown}).
"""
VERDICT = """
**Verdict against the targets** (test-accuracy means over seeds):

- *On shuffled pixels FC + prox beats the CNN and plain FC*: {shuffled_verdict}. Margins of FC + prox: {shuffled}.
- *On shifted images FC + prox closes most (≥ 50 %) of the FC → CNN gap*: {shifted_verdict}. Share closed: \
{shifted}.
- *The filters look local and shared* (FC + prox at the largest training size against plain FC, on both variants: higher \
locality, and at most half the distinct values per row): {filters_verdict}. {filters}."""


def render(result: Result, figures: Path) -> str:
    """Setup, test accuracy per variant, size and arm, the λ selection, the first-layer statistics, the filters and
    the verdict against the paper's claims."""
    summary, profile = result["summary"], result["profile_config"]
    pool = result["runs"][0]["pool_examples"] if result["runs"] else 0
    lines = [TEXT.format(
        profile=result["profile"], machine=machine(result), test_size=profile["test_size"],
        validation_size=profile["validation_size"], pool=pool, fc=profile["fc_channels"], cnn=profile["cnn_channels"],
        dropout=profile["dropout"], beta=profile["beta"], steps=profile["steps"], batch=profile["batch_size"],
        lr=profile["learning_rate"], momentum=profile["momentum"], rationale=profile["rationale"].rstrip("."),
        prox_grid=", ".join(f"{s:g}" for s in profile["prox_strengths"]),
        lasso_grid=", ".join(f"{s:g}" for s in profile["lasso_strengths"]),
        seeds=", ".join(str(seed) for seed in result["config"]["seeds"]),
    )]  # fmt: skip
    for variant, sizes in summary.items():
        for size, arms in sizes.items():
            cells = ["-" if arm not in arms else mean_std(arms[arm]["test_accuracy"], 3) + strength_note(arms[arm])
                     for arm in LABELS]  # fmt: skip
            lines.append(ROW.format(variant=variant, size=size_label(size, pool), cells=" | ".join(cells)))
    lines.append(SELECTION)
    for variant, sizes in summary.items():
        for size, arms in sizes.items():
            for arm, entry in arms.items():
                for strength, scores in entry["by_strength"].items() if entry["strength"] else ():
                    bold = "**" if float(strength) == entry["strength"] else ""
                    lines.append(SELECTION_ROW.format(variant=variant, size=size_label(size, pool), arm=LABELS[arm],
                                                      strength=f"{bold}{strength}{bold}",
                                                      validation=f"{bold}{scores['validation_accuracy']:.3f}{bold}",
                                                      test=scores["test_accuracy"]))  # fmt: skip
    layer = PIXELS * PIXELS * profile["fc_channels"][0]
    lines.append(WEIGHTS.format(tolerance=DISTINCT_TOLERANCE, layer=layer))
    for variant, sizes in summary.items():
        for size, arms in sizes.items():
            lines += [WEIGHTS_ROW.format(variant=variant, size=size_label(size, pool), arm=LABELS[arm], **arms[arm])
                      for arm in LABELS if arm in arms and "locality" in arms[arm]]  # fmt: skip
    lines.append(filters_figure(result, figures, pool))
    lines.append(verdict(result["targets"], pool))
    return "\n".join(lines)


def strength_note(entry: dict[str, Any]) -> str:
    """`` (λ = ...)`` for a regularised arm, nothing for the others."""
    return f" (λ = {entry['strength']:g})" if entry["strength"] else ""


def size_label(size: str | int, pool: int) -> str:
    """A number of training examples, ``all (n)`` for the whole pool."""
    return f"all ({pool})" if int(size) == pool else str(size)


def filters_figure(result: Result, figures: Path, pool: int) -> str:
    """Rows (variant x arm) of first-layer filters from the lowest seed at the largest size, at each arm's chosen λ."""
    runs = result["runs"]
    if not runs:
        return ""
    seed, largest = min(run["seed"] for run in runs), max(run["examples"] for run in runs)
    chosen = {(variant, arm): entry["strength"] for variant, sizes in result["summary"].items()
              for arm, entry in sizes[str(largest)].items()}  # fmt: skip
    shown = [run for variant in VARIANTS for arm in LABELS for run in runs
             if (run["variant"], run["arm"]) == (variant, arm) and run["examples"] == largest and run["seed"] == seed
             and run["strength"] == chosen.get((variant, arm))]  # fmt: skip
    columns = max(len(run["filters"]) for run in shown)
    fig, axes = plt.subplots(len(shown), 1, figsize=(1.0 * columns + 1.4, 1.0 * len(shown)), squeeze=False)
    for ax, run in zip(axes[:, 0], shown):
        ax.imshow(montage(np.asarray(run["filters"]), columns), cmap="RdBu_r", vmin=-1.0, vmax=1.0)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(f"{run['variant']}\n{LABELS[run['arm']]}", fontsize=8, rotation=0, ha="right", va="center")
    markdown = save_figure(fig, figures, f"weight_sharing_{result['profile']}.png", "First-layer filters by arm")
    return FIGURE.format(seed=seed, size=size_label(largest, pool), shown=columns) + "\n" + markdown


def montage(filters: np.ndarray, columns: int) -> np.ndarray:
    """Filters (n, k, k), k <= 8, side by side on ``columns`` 8 x 8 tiles (a smaller kernel centred, so that pixels
    keep one size) one blank column apart, each centred on its median and scaled to [-1, 1]; blank = NaN."""
    tile = SIDE + 1
    out = np.full((SIDE, tile * columns - 1), np.nan)
    for index, image in enumerate(filters):
        centred = image - np.median(image)
        offset = (SIDE - len(image)) // 2
        left = index * tile + offset
        out[offset : offset + len(image), left : left + len(image)] = centred / (np.abs(centred).max() or 1.0)
    return out


def verdict(measured: dict[str, Any], pool: int) -> str:
    """Each target met or missed, with the measurements that decide it."""
    shuffled, shifted, filters = measured["shuffled_margins"], measured["shifted_gap_closed"], measured["filters"]
    met = {True: "**met**", False: "**missed**"}
    shuffled_ok = bool(shuffled) and all(m["over_cnn"] > 0 and m["over_fc"] > 0 for m in shuffled.values())
    shifted_ok = bool(shifted) and all(m["gap_closed"] >= 0.5 for m in shifted.values())
    filters_ok = bool(filters) and all(
        arms["fc_prox"]["locality"] > arms["fc"]["locality"]
        and arms["fc_prox"]["distinct_per_row"] <= arms["fc"]["distinct_per_row"] / 2
        for arms in filters.values()
    )
    return VERDICT.format(
        shuffled_verdict=met[shuffled_ok],
        shuffled="; ".join(f"{size_label(size, pool)} examples: {m['over_cnn']:+.3f} over the CNN, {m['over_fc']:+.3f} over "
                           f"FC" for size, m in shuffled.items()) or "not measured",
        shifted_verdict=met[shifted_ok],
        shifted="; ".join(f"{size_label(size, pool)} examples: {m['gap_closed']:.0%} of a {m['gap']:.3f} gap"
                          for size, m in shifted.items()) or "not measured",
        filters_verdict=met[filters_ok],
        filters="; ".join(first_layer_comparison(variant, arms, pool) for variant, arms in filters.items()) or "not measured",
    )  # fmt: skip


def first_layer_comparison(variant: str, arms: dict[str, Any], pool: int) -> str:
    """Distinct values per row and locality of FC + prox against plain FC, on one variant."""
    prox, plain = arms["fc_prox"], arms["fc"]
    return (
        f"{variant}, {size_label(arms['examples'], pool)} examples: {prox['distinct_per_row']:.1f} distinct values per "
        f"row against {plain['distinct_per_row']:.1f}, locality {prox['locality']:.3f} against {plain['locality']:.3f} "
        f"(at init {plain['locality_at_init']:.3f})"
    )


SECTION = Section(("weight_sharing",), render)


if __name__ == "__main__":
    main(tyro.cli(WeightSharingArgs))
