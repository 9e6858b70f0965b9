"""Weight-sharing penalty, exact prox (brute force, optimality certificate, scipy PAVA) and the proximal-gradient step."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import isotonic_regression as scipy_isotonic_regression

import equivariant.weight_sharing as ws
from equivariant.weight_sharing import ProxGradient, isotonic_regression, weight_sharing_penalty, weight_sharing_prox

finite = st.floats(-10.0, 10.0, allow_nan=False, width=64)
vectors = st.lists(finite, min_size=1, max_size=40).map(lambda v: torch.tensor(v, dtype=torch.float64))
strengths = st.floats(0.0, 20.0, allow_nan=False)


def naive_penalty(w: torch.Tensor) -> float:
    d = w.numel()
    return 0.0 if d == 1 else float((w[:, None] - w[None, :]).abs().sum() / 2 / (d - 1))


def objective(u: np.ndarray, w: np.ndarray, lam: float, mu: float = 0.0) -> float:
    d = len(w)
    sharing = np.abs(u[:, None] - u[None, :]).sum() / 2 / max(d - 1, 1)
    return 0.5 * float(((u - w) ** 2).sum()) + lam * sharing + mu * float(np.abs(u).sum())


def ordered_partitions(items: tuple[int, ...]):
    """All weak orderings of ``items``: ordered lists of disjoint non-empty blocks covering them."""
    if not items:
        yield []
        return
    for size in range(1, len(items) + 1):
        for first in itertools.combinations(items, size):
            rest = tuple(i for i in items if i not in first)
            for tail in ordered_partitions(rest):
                yield [first, *tail]


def brute_force_prox(w: np.ndarray, lam: float) -> np.ndarray:
    """Minimise over every weak ordering: on a fixed one the objective is a separable quadratic in the block values.

    Block b (values c_b, sizes n_b) minimises at c_b = mean(w_b) − λ/(d−1)·(#before − #after); the candidate is
    admissible when the c_b are strictly increasing, and the optimum is the best admissible candidate.
    """
    d = len(w)
    best, best_value = w, np.inf
    for blocks in ordered_partitions(tuple(range(d))):
        sizes = np.array([len(b) for b in blocks])
        before = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        after = d - before - sizes
        values = np.array([w[list(b)].mean() for b in blocks]) - lam / (d - 1) * (before - after)
        if np.all(np.diff(values) > 0):
            u = np.empty(d)
            for block, value in zip(blocks, values):
                u[list(block)] = value
            if (value := objective(u, w, lam)) < best_value:
                best, best_value = u, value
    return best


def assert_optimal(w: torch.Tensor, u: torch.Tensor, lam: float, atol: float = 1e-7) -> None:
    """Certificate: (w − u)/λ ∈ ∂R(u). Across clusters of equal u the subgradient is fixed; inside a cluster of size m
    it ranges over the permutahedron of (m−1, m−3, …, 1−m)/(d−1): zero sum, sorted prefix sums a ≤ a(m − a)."""
    d = w.numel()
    residual = (w - u).numpy() * (d - 1) / lam
    u = u.numpy()
    for value in np.unique(np.round(u, 9)):
        members = np.abs(u - value) < 1e-9
        m = int(members.sum())
        cross = (u < value - 1e-9).sum() - (u > value + 1e-9).sum()
        inner = np.sort(residual[members] - cross)[::-1]
        a = np.arange(1, m + 1)
        assert abs(inner.sum()) < atol * d, "subgradient does not sum to zero within a cluster"
        assert np.all(np.cumsum(inner) <= a * (m - a) + atol * d), "subgradient outside the cluster's permutahedron"


@settings(max_examples=60, deadline=None)
@given(vectors)
def test_penalty_matches_naive_sum(w: torch.Tensor) -> None:
    assert float(weight_sharing_penalty(w)) == pytest.approx(naive_penalty(w), rel=1e-10, abs=1e-10)


def test_penalty_is_batched_and_differentiable() -> None:
    w = torch.randn(3, 4, 7, dtype=torch.float64, requires_grad=True)
    expected = torch.tensor([[naive_penalty(row) for row in batch] for batch in w.detach()], dtype=torch.float64)
    torch.testing.assert_close(weight_sharing_penalty(w), expected)
    assert torch.autograd.gradcheck(weight_sharing_penalty, (w,))


@settings(max_examples=25, deadline=None)
@given(st.lists(finite, min_size=2, max_size=5), strengths)
def test_prox_matches_brute_force(values: list[float], lam: float) -> None:
    w = np.array(values)
    expected = brute_force_prox(w, lam)
    for backend in ("torch", "scipy"):
        u = weight_sharing_prox(torch.from_numpy(w), lam, backend=backend).numpy()
        assert objective(u, w, lam) <= objective(expected, w, lam) + 1e-10
        np.testing.assert_allclose(u, expected, atol=1e-7)


@settings(max_examples=40, deadline=None)
@given(vectors.filter(lambda w: w.numel() > 1), st.floats(1e-3, 20.0))
def test_prox_satisfies_optimality_condition(w: torch.Tensor, lam: float) -> None:
    for backend in ("torch", "scipy"):
        assert_optimal(w, weight_sharing_prox(w, lam, backend=backend), lam)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 50), st.integers(0, 2**31 - 1), st.booleans())
def test_torch_isotonic_matches_scipy(n_rows: int, d: int, seed: int, ties: bool) -> None:
    gen = torch.Generator().manual_seed(seed)
    if ties:
        y = torch.randint(0, 3, (n_rows, d), generator=gen).double()
    else:
        trend = torch.randn(n_rows, 1, generator=gen, dtype=torch.float64)
        walk = torch.randn(n_rows, d, generator=gen, dtype=torch.float64).cumsum(-1)
        y = trend * walk + torch.randn(n_rows, d, generator=gen, dtype=torch.float64)
    expected = np.stack([scipy_isotonic_regression(row).x for row in y.numpy()])
    for rounds in (0, 1, 8):  # 0 and 1 leave most of the work to the hull merge
        ws._POOLING_ROUNDS, saved = rounds, ws._POOLING_ROUNDS
        try:
            np.testing.assert_allclose(isotonic_regression(y, "torch").numpy(), expected, atol=1e-10)
        finally:
            ws._POOLING_ROUNDS = saved


def test_torch_prox_matches_scipy_on_long_merge_chains() -> None:
    """Heavy-tailed weights and λ where the central cluster swallows the tails one per pooling round."""
    gen = torch.Generator().manual_seed(0)
    uniform = torch.rand(3, 20_000, generator=gen, dtype=torch.float64) - 0.5
    w = -torch.sign(uniform) * torch.log1p(-2 * uniform.abs())  # Laplace(0, 1)
    lam = torch.tensor([0.3, 3.0, 30.0], dtype=torch.float64)
    torch_result = weight_sharing_prox(w, lam, backend="torch")
    torch.testing.assert_close(torch_result, weight_sharing_prox(w, lam, backend="scipy"), rtol=0, atol=1e-9)
    assert len(torch.unique(torch_result[2])) < len(torch.unique(torch_result[0]))


def test_zero_strength_is_identity_and_large_strength_collapses_to_mean() -> None:
    w = torch.randn(5, 30, dtype=torch.float64)
    torch.testing.assert_close(weight_sharing_prox(w, 0.0), w)
    collapsed = weight_sharing_prox(w, 1e4, backend="torch")
    torch.testing.assert_close(collapsed, w.mean(-1, keepdim=True).expand_as(w))
    torch.testing.assert_close(weight_sharing_prox(w[:1, :1], 3.0), w[:1, :1])  # d = 1: R ≡ 0


def test_batched_prox_equals_per_row() -> None:
    w = torch.randn(2, 3, 25, dtype=torch.float64)
    lam = torch.rand(2, 3, dtype=torch.float64) * 3
    batched = weight_sharing_prox(w, lam, l1_strength=0.1, backend="torch")
    for i, j in itertools.product(range(2), range(3)):
        torch.testing.assert_close(batched[i, j], weight_sharing_prox(w[i, j], float(lam[i, j]), l1_strength=0.1))
    assert weight_sharing_prox(w.float(), 1.0).dtype == torch.float32


@settings(max_examples=20, deadline=None)
@given(vectors.filter(lambda w: w.numel() > 1), st.floats(0.01, 5.0), st.floats(0.01, 3.0))
def test_prox_with_l1_is_not_improved_by_perturbations(w: torch.Tensor, lam: float, mu: float) -> None:
    """Convex objective: no small move (coordinates, cluster shifts, random) from the prox may decrease it."""
    u = weight_sharing_prox(w, lam, l1_strength=mu).numpy()
    w, d = w.numpy(), w.numel()
    rng = np.random.default_rng(0)
    clusters = [(np.abs(u - v) < 1e-12).astype(float) for v in np.unique(u)]
    directions = [*np.eye(d), *clusters, *rng.normal(size=(20, d))]
    base = objective(u, w, lam, mu)
    for v in directions:
        for eps in (1e-4, -1e-4):
            assert objective(u + eps * v, w, lam, mu) >= base - 1e-12


def test_prox_gradient_with_sgd_shares_weights() -> None:
    """Sparse-valued ground truth: with the prox, SGD recovers few distinct weight values; without it, none are shared."""
    gen = torch.Generator().manual_seed(0)
    truth = torch.tensor([-1.0, 0.5, 2.0]).repeat(8)
    x = torch.randn(256, 24, generator=gen)
    y = x @ truth + 0.05 * torch.randn(256, generator=gen)

    def train(strength: float | None) -> tuple[torch.Tensor, float]:
        torch.manual_seed(0)
        model = torch.nn.Linear(24, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        prox = None if strength is None else ProxGradient([model.weight], strength=strength)
        for _ in range(300):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x).squeeze(-1), y)
            loss.backward()
            optimizer.step()
            if prox is not None:
                prox.step(optimizer)
        return model.weight.detach().reshape(-1), loss.item()

    plain, plain_loss = train(None)
    shared, shared_loss = train(0.2)
    n_distinct = lambda w: len(torch.unique(torch.round(w, decimals=5)))  # noqa: E731
    assert n_distinct(plain) == 24
    assert n_distinct(shared) <= 8
    assert plain_loss < 0.01 and shared_loss < 0.01 * float(y.var())  # still fits (y has variance ~42)


def test_prox_gradient_reads_lr_and_validates() -> None:
    weight = torch.nn.Parameter(torch.tensor([0.0, 1.0, 3.0]))
    other = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([{"params": [weight], "lr": 0.5}], lr=0.1)
    prox = ProxGradient([weight], strength=2.0, l1_strength=0.1)
    expected = weight_sharing_prox(weight.detach(), 1.0, l1_strength=0.05)
    assert prox.penalty().item() == pytest.approx(2.0 * naive_penalty(weight.detach()) + 0.1 * 4.0)
    prox.step(optimizer)
    torch.testing.assert_close(weight.detach(), expected)
    with pytest.raises(ValueError, match="not optimised"):
        ProxGradient([other], strength=1.0).step(optimizer)
    with pytest.raises(ValueError, match="non-negative"):
        ProxGradient([weight], strength=-1.0)
    with pytest.raises(ValueError, match="same parameter twice"):
        ProxGradient([weight, weight], strength=1.0)


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="vectors along its last dimension"):
        weight_sharing_prox(torch.tensor(1.0), 1.0)
    with pytest.raises(TypeError, match="floating-point"):
        weight_sharing_penalty(torch.arange(4))
    with pytest.raises(ValueError, match="non-negative"):
        weight_sharing_prox(torch.randn(4), -0.5)
    with pytest.raises(ValueError, match="does not broadcast"):
        weight_sharing_prox(torch.randn(3, 4), torch.ones(2))
    with pytest.raises(ValueError, match="backend"):
        isotonic_regression(torch.randn(4), backend="cuda")  # type: ignore[arg-type]
