"""Metrics that test a learned encoding ẑ against what (G, 𝓘) identifies (`causal.identifiability`; Li, Kaba &
Ravanbakhsh, AISTATS 2025, arXiv 2503.10834), with the true latents z and noises ε of the synthetic data.

* `match_blocks`: learned dimensions are assigned to the blocks of a partition of the latents by Hungarian matching on
  R²(ẑ_k ← z_B), block B receiving |B| dimensions B̂.
* `block_scores`, per block or identified set B: informativeness I_B = R²(z_B ← ẑ_B̂); purity P_B = R²(ẑ_B̂ ← z_B)
  (≈ 1 when the learned block depends on its own latents only); leakage Λ_B = max over j ∉ B ∪ An(B) of
  R²(ε_j ← ẑ_B̂), which catches a block that carries a foreign noise (in the chain z1 → z2 → z3 with 𝓘 = {{z2}}, a
  learned (z1 + ε3) in place of z1); sufficiency gap R²(z_B ← ẑ) − R²(z_B ← ẑ_B̂).
  Raw cross-block R² is deliberately absent: a child is predictable from its parent even in a perfect encoding.
* `dci`: disentanglement, completeness and informativeness from gradient-boosted-tree importances (Eastwood & Williams,
  ICLR 2018; as ILCM's `ws_crl/metrics.py::compute_dci`, Brehmer et al., NeurIPS 2022, arXiv 2203.16437, one
  regressor per true latent), per latent and per block; informativeness is reported as test R² rather than error.
* `target_jaccard`: inferred target sets against the true ones, per block after the matching.
* `evaluate`: all of it for an `Abstraction`, elementwise R² of its R2-identified latents included.

Every R² is the test-set R² of a regressor fitted on (at most `MAX_FIT_POINTS` of) the train set, averaged uniformly
over target coordinates. The regressor (`KernelRidge`) is ridge regression on the standardised inputs and Gaussian-kernel
features at `KERNEL_CENTRES` random centres (a subset-of-regressors kernel ridge), its penalty chosen on a held-out
fifth of the fit set: one fit takes about 0.1 s on 5,000 points on one core, handles several targets at once and fits smooth
invertible reparametrisations to R² > 0.99, where boosted trees (piecewise constant) lose a few points of R².
Latents and dimensions are 0-indexed; `Report` prints them 1-indexed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.ensemble import GradientBoostingRegressor

from causal.graphs import ancestors
from causal.identifiability import Abstraction, Family
from causal.pairs import Pairs

MAX_FIT_POINTS = 5_000
KERNEL_CENTRES = 300
#: Ridge penalties, relative to the mean eigenvalue of the features' Gram matrix.
RELATIVE_PENALTIES = np.logspace(-9, 0, 10)


@dataclass(frozen=True, eq=False)
class Encodings:
    """A learned encoding ``codes`` (N, d) of N observations with their true latents ``z`` (N, n) and noises (N, n)."""

    codes: np.ndarray
    z: np.ndarray
    noise: np.ndarray

    @classmethod
    def of(cls, pairs: Pairs, codes: np.ndarray) -> Encodings:
        """The encoding ``codes`` of ``pairs.x`` with its true latents and noises."""
        return cls(np.asarray(codes), pairs.z, pairs.noise)

    def __post_init__(self) -> None:
        if not len(self.codes) == len(self.z) == len(self.noise):
            raise ValueError(f"codes, z and noise have {len(self.codes)}, {len(self.z)}, {len(self.noise)} rows")


class KernelRidge:
    """Kernel ridge regression on a random subset of regressors: features [x, exp(-γ |x - c|²) for `KERNEL_CENTRES`
    centres c drawn from the fit set], inputs standardised and clipped to the fit set's range (no extrapolation),
    γ = 1 / (2 dim)."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def _features(self, inputs: np.ndarray) -> np.ndarray:
        scaled = np.clip((inputs - self.mean) / self.scale, self.low, self.high)
        distances = (scaled**2).sum(axis=1)[:, None] - 2.0 * scaled @ self.centres.T + (self.centres**2).sum(axis=1)[None, :]
        return np.concatenate([scaled, np.exp(-self.gamma * np.maximum(distances, 0.0))], axis=1)

    def fit(self, inputs: np.ndarray, targets: np.ndarray) -> KernelRidge:
        self.mean, self.scale = inputs.mean(axis=0), inputs.std(axis=0) + 1e-12
        scaled = (inputs - self.mean) / self.scale
        self.low, self.high = scaled.min(axis=0), scaled.max(axis=0)
        rng = np.random.default_rng(self.seed)
        self.centres = scaled[rng.choice(len(scaled), min(KERNEL_CENTRES, len(scaled)), replace=False)]
        self.gamma = 0.5 / inputs.shape[1]
        features = self._features(inputs)
        held_out = len(features) // 5
        fit_rows, check_rows = slice(held_out, None), slice(0, held_out)
        errors = [np.square(targets[check_rows] - predict(features[check_rows])).sum()
                  for predict in self._solve(features[fit_rows], targets[fit_rows], RELATIVE_PENALTIES)]  # fmt: skip
        self._predict = self._solve(features, targets, [RELATIVE_PENALTIES[int(np.argmin(errors))]])[0]
        return self

    @staticmethod
    def _solve(features: np.ndarray, targets: np.ndarray,
               penalties: Iterable[float]) -> list[Callable[[np.ndarray], np.ndarray]]:  # fmt: skip
        """The ridge predictors for each relative penalty, from one eigendecomposition of the Gram matrix."""
        feature_mean, target_mean = features.mean(axis=0), targets.mean(axis=0)
        centred = features - feature_mean
        eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred)
        projected = eigenvectors.T @ (centred.T @ (targets - target_mean))
        scale = max(eigenvalues.mean(), 1e-12)
        predictors = []
        for penalty in penalties:
            coefficients = eigenvectors @ (projected / (np.clip(eigenvalues, 0.0, None) + penalty * scale)[:, None])
            predictors.append(lambda f, c=coefficients: (f - feature_mean) @ c + target_mean)
        return predictors

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        return self._predict(self._features(inputs))


def r2(targets: np.ndarray, predictions: np.ndarray) -> float:
    """R² averaged uniformly over target columns (a constant column counts as 0)."""
    targets, predictions = targets.reshape(len(targets), -1), predictions.reshape(len(predictions), -1)
    total = np.square(targets - targets.mean(axis=0)).sum(axis=0)
    residual = np.square(targets - predictions).sum(axis=0)
    return float(np.mean(np.where(total > 0, 1.0 - residual / np.where(total > 0, total, 1.0), 0.0)))


def predictability(train_inputs: np.ndarray, train_targets: np.ndarray, test_inputs: np.ndarray,
                   test_targets: np.ndarray) -> float:  # fmt: skip
    """R²(targets ← inputs): fitted on (at most `MAX_FIT_POINTS` of) train, scored on test; 0 without inputs."""
    if train_inputs.shape[1] == 0 or train_targets.shape[1] == 0:
        return 0.0
    rows = slice(0, MAX_FIT_POINTS)
    model = KernelRidge().fit(np.asarray(train_inputs[rows], np.float64), np.asarray(train_targets[rows], np.float64))
    return r2(np.asarray(test_targets, np.float64), model.predict(np.asarray(test_inputs, np.float64)))


def atoms(num_latents: int, sets: Iterable[Iterable[int]]) -> Family:
    """The coarsest partition of the latents that refines every set given (latents grouped by membership), ordered by
    smallest member."""
    sets = [set(s) for s in sets]
    groups: dict[tuple[bool, ...], list[int]] = {}
    for i in range(num_latents):
        groups.setdefault(tuple(i in s for s in sets), []).append(i)
    return tuple(sorted(tuple(group) for group in groups.values()))


def match_blocks(train: Encodings, test: Encodings, blocks: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
    """The learned dimensions B̂ of each block of a partition: a Hungarian matching maximising the total
    R²(ẑ_k ← z_B), block B taking |B| dimensions (fewer when the code has fewer dimensions than latents)."""
    num_codes = train.codes.shape[1]
    scores = np.array([[predictability(train.z[:, list(block)], train.codes[:, [k]], test.z[:, list(block)],
                                       test.codes[:, [k]]) for block in blocks] for k in range(num_codes)])  # fmt: skip
    slots = [b for b, block in enumerate(blocks) for _ in block]
    codes, slot_index = linear_sum_assignment(-scores[:, slots])
    dims: list[list[int]] = [[] for _ in blocks]
    for k, slot in zip(codes, slot_index):
        dims[slots[slot]].append(int(k))
    return tuple(tuple(sorted(d)) for d in dims)


@dataclass(frozen=True)
class BlockScores:
    """The scores of one block B with its learned dimensions B̂ (module docstring); ``leaky_latent`` is the j whose
    noise is best predicted (None when every latent is in B or an ancestor of it, and Λ = 0); a negative R² counts as
    no leakage (Λ ≥ 0)."""

    block: tuple[int, ...]
    dims: tuple[int, ...]
    informativeness: float
    purity: float
    leakage: float
    leaky_latent: int | None
    sufficiency_gap: float

    def row(self) -> str:
        name = "{" + ",".join(f"z{i + 1}" for i in self.block) + "}"
        dims = "[" + ",".join(f"ẑ{k + 1}" for k in self.dims) + "]"
        source = f" (ε{self.leaky_latent + 1})" if self.leaky_latent is not None else ""
        return (f"{name:14s} {dims:16s} I={self.informativeness:6.3f}  P={self.purity:6.3f}  "
                f"Λ={self.leakage:6.3f}{source:6s} gap={self.sufficiency_gap:6.3f}")  # fmt: skip


def block_scores(train: Encodings, test: Encodings, block: Sequence[int], dims: Sequence[int],
                 adjacency: np.ndarray) -> BlockScores:  # fmt: skip
    """I_B, P_B, Λ_B and the sufficiency gap of ``block`` encoded by the learned dimensions ``dims``."""
    block, dims = tuple(block), tuple(dims)

    def score(inputs: tuple[str, Sequence[int]], targets: tuple[str, Sequence[int]]) -> float:
        """R²(targets ← inputs), each named by an `Encodings` field and its columns."""
        fit = [getattr(train, field)[:, list(columns)] for field, columns in (inputs, targets)]
        check = [getattr(test, field)[:, list(columns)] for field, columns in (inputs, targets)]
        return predictability(*fit, *check)

    informativeness = score(("codes", dims), ("z", block))
    everything = range(train.codes.shape[1])
    outside = sorted(set(range(train.z.shape[1])) - set(block) - ancestors(adjacency, block))
    leaks = {j: score(("codes", dims), ("noise", [j])) for j in outside}
    leaky = max(leaks, key=leaks.get) if leaks else None  # type: ignore[arg-type]
    return BlockScores(block, dims, informativeness, score(("z", block), ("codes", dims)),
                       max(leaks[leaky], 0.0) if leaky is not None else 0.0, leaky,
                       score(("codes", everything), ("z", block)) - informativeness)  # fmt: skip


@dataclass(frozen=True)
class DCIScores:
    """Disentanglement, completeness (Eastwood & Williams 2018) and informativeness (mean test R²) of an encoding,
    with the importance matrix (codes × factors)."""

    disentanglement: float
    completeness: float
    informativeness: float
    importance: np.ndarray

    def grouped(self, code_groups: Sequence[Sequence[int]], factor_groups: Sequence[Sequence[int]]) -> DCIScores:
        """Block DCI: importances summed over groups of codes and groups of factors (informativeness kept)."""
        importance = np.array([[self.importance[np.ix_(list(c), list(f))].sum() for f in factor_groups]
                               for c in code_groups])  # fmt: skip
        return DCIScores(*_disentanglement_completeness(importance), self.informativeness, importance)


def _normalized_entropy(probabilities: np.ndarray, axis: int) -> np.ndarray:
    size = probabilities.shape[axis]
    if size == 1:
        return np.zeros(probabilities.shape[1 - axis])
    logs = np.log(np.where(probabilities > 0, probabilities, 1.0))
    return -(probabilities * logs).sum(axis=axis) / np.log(size)


def _disentanglement_completeness(importance: np.ndarray) -> tuple[float, float]:
    total = importance.sum()
    if total <= 0:
        return 0.0, 0.0
    code_totals, factor_totals = importance.sum(axis=1), importance.sum(axis=0)
    per_code = 1.0 - _normalized_entropy(importance / np.where(code_totals > 0, code_totals, 1.0)[:, None], axis=1)
    per_factor = 1.0 - _normalized_entropy(importance / np.where(factor_totals > 0, factor_totals, 1.0)[None, :], axis=0)
    return float((per_code * code_totals / total).sum()), float(per_factor.mean())


def dci(train: Encodings, test: Encodings, seed: int = 0) -> DCIScores:
    """DCI from one gradient-boosted regressor per true latent (sklearn defaults: 100 trees of depth 3) fitted on
    train; informativeness is their mean R² on test."""
    rows = slice(0, MAX_FIT_POINTS)
    importance, scores = [], []
    for j in range(train.z.shape[1]):
        model = GradientBoostingRegressor(random_state=seed).fit(train.codes[rows], train.z[rows, j])
        importance.append(model.feature_importances_)
        scores.append(r2(test.z[:, j], model.predict(test.codes)))
    importance_matrix = np.array(importance).T
    return DCIScores(*_disentanglement_completeness(importance_matrix), float(np.mean(scores)), importance_matrix)


def target_jaccard(predicted: np.ndarray, true_masks: np.ndarray, blocks: Sequence[Sequence[int]],
                   dims: Sequence[Sequence[int]]) -> float:  # fmt: skip
    """Mean Jaccard index between inferred and true target sets at the level of blocks: a learned dimension in an
    inferred set (``predicted``, (N, d) bool) names its matched block; a true set (``true_masks``, (N, n) bool) names
    every block it touches. Two empty sets agree (1)."""
    code_to_block = np.full(predicted.shape[1], -1)
    for b, block_dims in enumerate(dims):
        code_to_block[list(block_dims)] = b
    block_masks = np.stack([true_masks[:, list(block)].any(axis=1) for block in blocks], axis=1)  # (N, blocks)
    inferred = np.zeros_like(block_masks)
    for k in np.flatnonzero(code_to_block >= 0):
        inferred[:, code_to_block[k]] |= predicted[:, k]
    union = (inferred | block_masks).sum(axis=1)
    return float(np.mean(np.where(union > 0, (inferred & block_masks).sum(axis=1) / np.maximum(union, 1), 1.0)))


@dataclass(frozen=True)
class Report:
    """`evaluate`'s result: the matching (atoms of the abstraction and their learned dimensions), scores of the R1
    blocks and of the R0 sets, elementwise R² of the R2 latents, DCI per latent and per R1 block, target Jaccard."""

    atoms: Family
    dims: tuple[tuple[int, ...], ...]
    blocks: tuple[BlockScores, ...]
    safe: tuple[BlockScores, ...]
    elementwise: dict[int, float]
    dci: DCIScores
    block_dci: DCIScores
    target_jaccard: float | None

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON values (0-indexed; ``text``: the printed report), for a results file."""

        def scores(entries: tuple[BlockScores, ...]) -> list[dict[str, Any]]:
            return [asdict(entry) for entry in entries]

        def dci_values(values: DCIScores) -> dict[str, Any]:
            return {"disentanglement": values.disentanglement, "completeness": values.completeness,
                    "informativeness": values.informativeness, "importance": values.importance.tolist()}  # fmt: skip

        return {"atoms": self.atoms, "dims": self.dims, "blocks": scores(self.blocks), "safe": scores(self.safe),
                "elementwise": {str(i): value for i, value in self.elementwise.items()}, "dci": dci_values(self.dci),
                "block_dci": dci_values(self.block_dci), "target_jaccard": self.target_jaccard, "text": str(self)}  # fmt: skip

    def __str__(self) -> str:
        lines = ["R1 blocks:", *(f"  {s.row()}" for s in self.blocks), "R0 sets (R2 singletons among them):",
                 *([f"  {s.row()}" for s in self.safe] or ["  none"]),
                 "R2 elementwise R²: " + (", ".join(f"z{i + 1} {v:.3f}" for i, v in self.elementwise.items()) or "none"),
                 f"DCI: D={self.dci.disentanglement:.3f} C={self.dci.completeness:.3f} I={self.dci.informativeness:.3f}; "
                 f"block DCI: D={self.block_dci.disentanglement:.3f} C={self.block_dci.completeness:.3f}"]  # fmt: skip
        if self.target_jaccard is not None:
            lines.append(f"target Jaccard (per block): {self.target_jaccard:.3f}")
        return "\n".join(lines)


def evaluate(result: Abstraction, train: Encodings, test: Encodings, predicted_targets: np.ndarray | None = None,
             true_targets: np.ndarray | None = None) -> Report:  # fmt: skip
    """Score an encoding against an abstraction: match learned dimensions to the atoms of its R1 blocks, R0 sets and R2
    singletons, then score every R1 block and R0 set (its dimensions: those of its atoms), the R2 latents elementwise,
    DCI, and, given inferred (N, d) and true (N, n) target masks of the test pairs, the target Jaccard over R1 blocks."""
    adjacency = result.adjacency()
    parts = atoms(result.num_latents, [*result.blocks, *result.safe])
    dims = match_blocks(train, test, parts)

    def set_dims(members: Sequence[int]) -> tuple[int, ...]:
        return tuple(sorted({k for part, d in zip(parts, dims) if set(part) <= set(members) for k in d}))

    scores = {members: block_scores(train, test, members, set_dims(members), adjacency)
              for members in dict.fromkeys([*result.blocks, *result.safe])}  # fmt: skip
    blocks, safe = tuple(scores[b] for b in result.blocks), tuple(scores[s] for s in result.safe)
    elementwise = {i: scores[(i,)].informativeness for i in result.isolated}  # R0 lists every R2 singleton
    overall = dci(train, test)
    block_dims = [set_dims(block) for block in result.blocks]
    jaccard = None
    if predicted_targets is not None and true_targets is not None:
        jaccard = target_jaccard(predicted_targets, true_targets, result.blocks, block_dims)
    return Report(parts, dims, blocks, safe, elementwise, overall, overall.grouped(block_dims, result.blocks), jaccard)
