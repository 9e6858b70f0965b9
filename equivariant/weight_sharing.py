"""Weight-sharing regularisation (Shakerinava et al., AISTATS 2024): penalty, exact proximal map, proximal-gradient step.

    R(w) = 1/(d−1) Σ_{i>j} |w_i − w_j|,        prox_{λR}(w) = argmin_u ½‖u − w‖² + λ R(u)

R pulls every pair of weights together, so its proximal map makes weights exactly equal (shared). The prox is exact:
sort w ascending into s, shift z_k = s_k + λ(d + 1 − 2k)/(d − 1), take the increasing
isotonic regression of z, unsort. Everything is batched over leading dimensions (one vector per row, last dim = d).

Isotonic regression has two exact backends:

- "scipy": ``scipy.optimize.isotonic_regression`` (sequential PAVA in compiled code, O(d)) row by row on the CPU.
- "torch": a parallel algorithm on any device, whole batch at once. It pools adjacent violators in parallel rounds
  (each round merges every maximal run of blocks with decreasing means; a block being constant in the solution is
  invariant, so this is exact) for at most ``_POOLING_ROUNDS`` rounds, which settles most inputs. Long merge chains
  (a cluster swallowing its neighbours one per round, thousands of rounds) are then finished by divide and conquer
  on the lower convex hull of the cumulative-sum diagram, whose slopes are the isotonic solution: the increasing
  runs left by pooling are convex chains, and adjacent chains are merged pairwise in ⌈log₂ #runs⌉ levels, each
  finding the bridge (common lower tangent) of every pair by a nested binary search. Depth O(log³ d), like the
  paper's ``search_collisions`` algorithm; all arithmetic in float64.

"auto" uses scipy for CPU tensors (faster there: see benchmarks/prox_throughput.py) and torch elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import numpy as np
import torch
from scipy.optimize import isotonic_regression as scipy_isotonic_regression
from torch import Tensor

Backend = Literal["auto", "torch", "scipy"]

_POOLING_ROUNDS = 8  # parallel pooling rounds before the hull merge; most inputs converge within them


def weight_sharing_penalty(w: Tensor) -> Tensor:
    """R(w) over the last dimension in O(d log d), differentiable; shape ``w.shape[:-1]`` (0 for d = 1).

    With x sorted ascending, Σ_{i>j} |x_i − x_j| = Σ_k (k·x_k − S_k) with prefix sums S_k, which equals
    Σ_k (2k − d − 1)·x_k: the weighted form needs no prefix sums, so it loses no precision at large d.
    """
    _check_vectors(w, "w")
    d = w.shape[-1]
    if d == 1:
        return w.new_zeros(w.shape[:-1])
    coefficients = torch.arange(1 - d, d, 2, device=w.device, dtype=w.dtype)  # 2k − d − 1 for k = 1..d
    return (torch.sort(w, dim=-1).values * coefficients).sum(-1) / (d - 1)


def isotonic_regression(y: Tensor, backend: Backend = "auto") -> Tensor:
    """Exact increasing isotonic regression of every row (last dim) of ``y``: argmin_{u₁ ≤ … ≤ u_d} ‖u − y‖²."""
    _check_vectors(y, "y")
    backend = _resolve_backend(backend, y)
    rows = y.detach().reshape(-1, y.shape[-1])
    if backend == "scipy":
        fitted = np.stack([scipy_isotonic_regression(row).x for row in rows.double().cpu().numpy()])
        return torch.from_numpy(fitted).to(device=y.device, dtype=y.dtype).reshape(y.shape)
    return _isotonic_torch(rows.double()).to(y.dtype).reshape(y.shape)


def weight_sharing_prox(
    w: Tensor, strength: float | Tensor, l1_strength: float | Tensor = 0.0, backend: Backend = "auto"
) -> Tensor:
    """Exact prox of ``strength``·R (then of ``l1_strength``·‖·‖₁) for every row of ``w``; no autograd history.

    ``strength`` and ``l1_strength`` are floats or tensors broadcastable to ``w.shape[:-1]`` (one value per row).
    Soft-thresholding after the weight-sharing prox is the exact prox of the sum: the prox keeps the order of w, and
    soft-thresholding only merges values, so the subgradient of R at the prox stays valid after it.
    """
    _check_vectors(w, "w")
    w = w.detach()
    batch_shape, d = w.shape[:-1], w.shape[-1]
    lam = _per_row(strength, "strength", w)
    out = w
    if d > 1:
        rows = w.reshape(-1, d).double()
        if _resolve_backend(backend, w) == "scipy":  # numpy's vectorised quicksort is ~5x faster than torch.sort on CPU
            order = torch.from_numpy(np.argsort(rows.cpu().numpy(), axis=-1)).to(w.device)
        else:
            order = torch.argsort(rows, dim=-1)
        k = torch.arange(1, d + 1, device=w.device, dtype=torch.float64)
        shifted = rows.gather(-1, order) + lam.reshape(-1, 1) * ((d + 1 - 2 * k) / (d - 1))
        shared = isotonic_regression(shifted, backend)
        out = torch.empty_like(rows).scatter_(-1, order, shared).to(w.dtype).reshape(w.shape)
    threshold = _per_row(l1_strength, "l1_strength", w)
    if bool((threshold > 0).any()):
        threshold = threshold.reshape(*batch_shape, 1).to(w.dtype)
        out = torch.sign(out) * torch.clamp(out.abs() - threshold, min=0.0)
    return out


class ProxGradient:
    """Proximal-gradient weight sharing on top of any torch optimizer.

    Usage: ``loss.backward(); optimizer.step(); prox.step(optimizer)``. Each chosen parameter is flattened to one
    vector and replaced by its prox with step λ·lr (and μ·lr for the optional L1 part), lr read at call time from the
    optimizer's param group holding it, so LR schedulers are followed. Weights and biases are separate parameters,
    hence separate vectors, as in the reference code. A separate object (not an optimizer subclass) keeps the
    optimizer's state, checkpoints and schedulers untouched.

    :param params: The parameters to regularise
    :param strength: λ, the weight of R in the objective
    :param l1_strength: μ, the weight of an extra L1 penalty (0 = none)
    :param backend: Isotonic-regression backend (see module docstring)
    """

    def __init__(self, params: Iterable[Tensor], strength: float, l1_strength: float = 0.0, backend: Backend = "auto") -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("ProxGradient needs at least one parameter")
        if len({id(p) for p in self.params}) != len(self.params):
            raise ValueError("ProxGradient received the same parameter twice")
        if strength < 0 or l1_strength < 0:
            raise ValueError(f"strengths must be non-negative, got strength={strength}, l1_strength={l1_strength}")
        self.strength = float(strength)
        self.l1_strength = float(l1_strength)
        self.backend = backend

    @torch.no_grad()
    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Apply the prox to every parameter with the learning rate of its param group in ``optimizer``."""
        learning_rates = {id(p): float(group["lr"]) for group in optimizer.param_groups for p in group["params"]}
        for param in self.params:
            if id(param) not in learning_rates:
                raise ValueError(f"a parameter of shape {tuple(param.shape)} is not optimised by {type(optimizer).__name__}")
            lr = learning_rates[id(param)]
            shared = weight_sharing_prox(param.reshape(-1), self.strength * lr, self.l1_strength * lr, self.backend)
            param.copy_(shared.reshape(param.shape))

    def penalty(self) -> Tensor:
        """λ Σ R(p) + μ Σ ‖p‖₁ over the parameters: the regulariser of the objective (differentiable, for logging)."""
        sharing = sum(weight_sharing_penalty(p.reshape(-1)) for p in self.params)
        l1 = sum(p.abs().sum() for p in self.params)
        return self.strength * sharing + self.l1_strength * l1


def _check_vectors(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"{name} must hold vectors along its last dimension, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")


def _resolve_backend(backend: Backend, x: Tensor) -> Literal["torch", "scipy"]:
    if backend == "auto":
        return "scipy" if x.device.type == "cpu" else "torch"
    if backend not in ("torch", "scipy"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'scipy', got {backend!r}")
    return backend


def _per_row(value: float | Tensor, name: str, w: Tensor) -> Tensor:
    """``value`` as a float64 tensor of shape ``w.shape[:-1]``, checked non-negative."""
    value = torch.as_tensor(value, dtype=torch.float64, device=w.device)
    try:
        value = torch.broadcast_to(value, w.shape[:-1])
    except RuntimeError as error:
        raise ValueError(f"{name} of shape {tuple(value.shape)} does not broadcast to {tuple(w.shape[:-1])}") from error
    if bool((value < 0).any()) or not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} must be finite and non-negative")
    return value


def _isotonic_torch(rows: Tensor) -> Tensor:
    """Parallel exact isotonic regression of the rows of a float64 (n_rows, d) tensor."""
    n_rows, d = rows.shape
    sums = rows.reshape(-1)
    sizes = torch.ones_like(sums)
    row_of = torch.arange(n_rows, device=rows.device).repeat_interleave(d)
    for _ in range(_POOLING_ROUNDS):
        means = sums / sizes
        merge = (means[1:] < means[:-1]) & (row_of[1:] == row_of[:-1])
        if not bool(merge.any()):
            break
        sums, sizes, row_of = _pool(sums, sizes, row_of, torch.cat([merge.new_ones(1), ~merge]))
    else:
        group = _lower_hull_groups(sums, sizes, row_of, n_rows)
        sums, sizes, row_of = _pool(sums, sizes, row_of, torch.cat([group.new_ones(1, dtype=torch.bool), group.diff() > 0]))
    return torch.repeat_interleave(sums / sizes, sizes.long()).reshape(n_rows, d)


def _pool(sums: Tensor, sizes: Tensor, row_of: Tensor, starts: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Merge consecutive blocks into groups beginning where ``starts`` is True."""
    group = starts.cumsum(0) - 1
    n_groups = int(group[-1]) + 1
    return (
        sums.new_zeros(n_groups).index_add_(0, group, sums),
        sizes.new_zeros(n_groups).index_add_(0, group, sizes),
        row_of[starts],
    )


def _lower_hull_groups(sums: Tensor, sizes: Tensor, row_of: Tensor, n_rows: int) -> Tensor:
    """Final pool id of every block: the lower convex hull of each row's cumulative-sum diagram, by D&C bridges.

    Points P_0..P_m of a row with m blocks are P_v = (sizes, sums) accumulated over its first v blocks; the hull's
    vertices are the final block boundaries. A point between two blocks with decreasing means is reflex; cutting
    after each reflex point splits a row into runs that are convex chains, i.e. their own hulls. Level ℓ merges
    runs 2j·2^ℓ.. with the next 2^ℓ runs: with L and R the alive (hull) points of the two halves, the bridge (a ∈ L,
    b ∈ R) keeps L up to a and R from b. For a point c left of R, the tangent to R is the first b where the slope
    from c stops decreasing; a is the first point of L whose next L point does not lie below the line to its tangent.
    Both predicates are monotone on convex chains, hence the nested binary search.
    """
    device = sums.device
    n_blocks = sums.shape[0]
    blocks_per_row = torch.bincount(row_of, minlength=n_rows)
    point_row = torch.arange(n_rows, device=device).repeat_interleave(blocks_per_row + 1)
    row_start = torch.cumsum(blocks_per_row + 1, 0) - (blocks_per_row + 1)  # index of each row's P_0
    block_point = torch.arange(n_blocks, device=device) + row_of + 1  # index of the point closing each block
    is_start = torch.zeros_like(point_row, dtype=torch.bool)
    is_start[row_start] = True
    x_steps = torch.zeros_like(point_row, dtype=sums.dtype).index_copy_(0, block_point, sizes)
    y_steps = torch.zeros_like(x_steps).index_copy_(0, block_point, sums)
    x_all, y_all = x_steps.cumsum(0), y_steps.cumsum(0)
    x_all, y_all = x_all - x_all[row_start][point_row], y_all - y_all[row_start][point_row]

    means = sums / sizes
    violation = (means[:-1] > means[1:]) & (row_of[:-1] == row_of[1:])
    reflex = torch.zeros_like(is_start)
    reflex[block_point[:-1][violation]] = True
    reflex_before = reflex.long().cumsum(0) - reflex.long()
    run = reflex_before - reflex_before[row_start][point_row]  # run index of each point within its row

    alive = torch.ones_like(is_start)
    points = torch.arange(point_row.shape[0], device=device)
    for level in range(int(run.max()).bit_length()):
        points = points[alive[points]]
        pair = run[points] >> (level + 1)
        right = ((run[points] >> level) & 1).bool()
        n = points.shape[0]
        pos = torch.arange(n, device=device)
        new_pair = torch.ones_like(right)
        new_pair[1:] = (pair[1:] != pair[:-1]) | (point_row[points][1:] != point_row[points][:-1])
        pair_id = new_pair.cumsum(0) - 1
        n_pairs = int(pair_id[-1]) + 1
        left_first = pos[new_pair]
        pair_end = torch.cat([left_first[1:], left_first.new_full((1,), n)])
        right_first = torch.full_like(left_first, n)
        starts_right = right & (new_pair | ~torch.roll(right, 1))
        right_first[pair_id[starts_right]] = pos[starts_right]
        merging = (right_first < pair_end).nonzero().squeeze(1)
        if merging.numel() == 0:
            continue
        bridge_left = torch.full((n_pairs,), n, device=device)
        bridge_right = torch.full((n_pairs,), -1, device=device)
        bridge_left[merging], bridge_right[merging] = _bridges(
            x_all[points], y_all[points], left_first[merging], right_first[merging], pair_end[merging] - 1
        )
        dead = torch.where(right, pos < bridge_right[pair_id], pos > bridge_left[pair_id])
        alive[points[dead]] = False

    boundary = (alive & ~is_start).long()  # hull vertices closing a pool
    return (boundary.cumsum(0) - boundary)[block_point]


def _bridges(x: Tensor, y: Tensor, left_first: Tensor, right_first: Tensor, right_last: Tensor) -> tuple[Tensor, Tensor]:
    """Common lower tangent (a, b) of the convex chains x/y[left_first:right_first] and [right_first:right_last + 1]."""

    def slope(i: Tensor, j: Tensor) -> Tensor:
        return (y[j] - y[i]) / (x[j] - x[i])

    right_steps = int((right_last - right_first).max()).bit_length()

    def tangent(c: Tensor) -> Tensor:
        lo, hi = right_first, right_last
        for _ in range(right_steps):
            mid = (lo + hi) // 2
            descending = (mid < hi) & (slope(c, torch.minimum(mid + 1, hi)) < slope(c, mid))
            lo, hi = torch.where(descending, mid + 1, lo), torch.where(descending, hi, mid)
        return lo

    lo, hi = left_first, right_first - 1
    for _ in range(int((hi - lo).max()).bit_length()):
        mid = (lo + hi) // 2
        below = (mid < hi) & (slope(mid, torch.minimum(mid + 1, hi)) < slope(mid, tangent(mid)))
        lo, hi = torch.where(below, mid + 1, lo), torch.where(below, hi, mid)
    return lo, tangent(lo)
