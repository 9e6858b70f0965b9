"""The identifiability calculator of `causal.identifiability` (rules R1, R2, R0 read from Li, Kaba & Ravanbakhsh,
AISTATS 2025, arXiv 2503.10834) and the DAGs of `causal.graphs`: the worked examples by hand, the degenerate
families, properties on random graphs and families, and the command line."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from causal import graphs
from causal.identifiability import (
    Args,
    abstraction,
    isolated_targets,
    main,
    nd_partition,
    non_descendants,
    parse_family,
    safe_blocks,
)
from core.cli import run_cli


def sets(text: str) -> set[tuple[int, ...]]:
    """1-indexed "1,2;3" -> {(0, 1), (2,)}; "" -> empty."""
    return {tuple(int(i) - 1 for i in part.split(",")) for part in text.split(";") if part}


def edges(text: str) -> set[tuple[tuple[int, ...], tuple[int, ...]]]:
    """1-indexed quotient edges "1,2>3;..." between blocks named by their members."""
    found = set()
    for part in filter(None, text.split(";")):
        source, target = part.split(">")
        found.add((tuple(int(i) - 1 for i in source.split(",")), tuple(int(i) - 1 for i in target.split(","))))
    return found


# (graph, family, R1 blocks, R1 quotient edges, R2 latents, R0 sets), 1-indexed, one row per worked example.
WORKED_EXAMPLES = [
    ("chain3", "1;2;3", "1;2;3", "1>2;2>3", "1;2;3", "1,2"),
    ("chain3", "1,2,3", "1,2,3", "", "", ""),
    ("chain3", "1,2;3", "1,2;3", "1,2>3", "3", "1,2"),
    ("chain3", "2", "1;2,3", "1>2,3", "2", ""),
    ("chain3", "2;2,3", "1;2,3", "1>2,3", "2", "1"),
    ("chain3", "1", "1,2,3", "", "1", ""),
    ("chain4", "1,2;3,4", "1,2;3,4", "1,2>3,4", "", "1,2"),
    ("chain4", "1;2;3,4", "1;2;3,4", "1>2;2>3,4", "1;2", "1,2"),
    ("chain4", "2;4", "1;2,3;4", "1>2,3;2,3>4", "2;4", "1,2,3"),
    ("fork", "2;3", "1;2;3", "1>2;1>3", "2;3", "1,3;1,2;1"),
    ("fork", "2,3", "1;2,3", "1>2,3", "", "1"),
    ("collider", "1;2", "1;2;3", "1>3;2>3", "1;2", ""),
    ("collider", "3", "1,2;3", "1,2>3", "3", "1,2"),
    ("diamond", "2,3;4", "1;2,3;4", "1>2,3;2,3>4", "4", "1,2,3"),
]


@pytest.mark.parametrize(("graph", "family", "blocks", "quotient", "isolated", "safe"), WORKED_EXAMPLES)
def test_worked_examples(graph: str, family: str, blocks: str, quotient: str, isolated: str, safe: str) -> None:
    adjacency = graphs.named_graph(graph)
    targets = sets(family)
    found_blocks, found_edges = nd_partition(adjacency, targets)
    assert set(found_blocks) == sets(blocks)
    assert {(found_blocks[a], found_blocks[b]) for a, b in found_edges} == edges(quotient)
    assert set(isolated_targets(adjacency, targets)) == {i for (i,) in sets(isolated)}
    # safe_blocks lists R0's sets with R2's singletons among them
    assert set(safe_blocks(adjacency, targets)) == sets(safe) | {(i,) for (i,) in sets(isolated)}


def test_nd_sets_of_the_table() -> None:
    adjacency = graphs.diamond()
    assert non_descendants(adjacency, (1, 2)) == {0}
    assert non_descendants(adjacency, (3,)) == {0, 1, 2}
    assert non_descendants(adjacency, ()) == {0, 1, 2, 3}


@pytest.mark.parametrize("graph", ["chain4", "diamond", "fork", "collider", "er5-p0.5-s3"])
def test_all_singletons_identify_everything(graph: str) -> None:
    """Brehmer et al.: every singleton in the family identifies every latent individually."""
    adjacency = graphs.named_graph(graph)
    n = len(adjacency)
    result = abstraction(adjacency, [(i,) for i in range(n)])
    assert sorted(result.blocks) == [(i,) for i in range(n)]
    assert result.isolated == tuple(range(n))
    assert {(i,) for i in range(n)} <= set(result.safe)


@pytest.mark.parametrize("graph", ["chain4", "diamond", "er5-p0.5-s1"])
def test_intervening_on_everything_identifies_nothing(graph: str) -> None:
    adjacency = graphs.named_graph(graph)
    n = len(adjacency)
    result = abstraction(adjacency, [tuple(range(n))])
    assert result.blocks == (tuple(range(n)),)
    assert result.quotient_edges == ()
    assert result.isolated == ()
    assert result.safe == ()


@pytest.mark.parametrize(("graph", "family"), [(row[0], row[1]) for row in WORKED_EXAMPLES])
def test_the_empty_target_set_changes_nothing(graph: str, family: str) -> None:
    adjacency = graphs.named_graph(graph)
    without = abstraction(adjacency, sets(family))
    with_empty = abstraction(adjacency, [(), *sets(family)])
    assert (without.blocks, without.quotient_edges, without.isolated, without.safe) == (
        with_empty.blocks, with_empty.quotient_edges, with_empty.isolated, with_empty.safe)  # fmt: skip


@st.composite
def graph_and_families(draw: st.DrawFn) -> tuple[np.ndarray, list[tuple[int, ...]], list[tuple[int, ...]]]:
    """A random DAG on up to 7 nodes (random order), a family and a larger family containing it."""
    n = draw(st.integers(1, 7))
    adjacency = graphs.erdos_renyi(n, draw(st.floats(0.0, 1.0)), draw(st.integers(0, 10**6)), shuffle=True)
    target = st.frozensets(st.integers(0, n - 1), max_size=n).map(lambda s: tuple(sorted(s)))
    family = draw(st.lists(target, max_size=5))
    extra = draw(st.lists(target, min_size=1, max_size=3))
    return adjacency, family, family + extra


@settings(max_examples=150, deadline=None)
@given(graph_and_families())
def test_quotient_is_acyclic_and_blocks_partition(case: tuple[np.ndarray, list, list]) -> None:
    adjacency, family, _ = case
    blocks, quotient_edges = nd_partition(adjacency, family)
    assert sorted(i for block in blocks for i in block) == list(range(len(adjacency)))
    assert all(a < b for a, b in quotient_edges)  # the blocks come in a topological order of the quotient
    quotient = np.zeros((len(blocks), len(blocks)), dtype=bool)
    for a, b in quotient_edges:
        quotient[a, b] = True
    graphs.validate_dag(quotient)


@settings(max_examples=150, deadline=None)
@given(graph_and_families())
def test_a_finer_family_never_identifies_less(case: tuple[np.ndarray, list, list]) -> None:
    adjacency, family, finer = case
    coarse_blocks, _ = nd_partition(adjacency, family)
    fine_blocks, _ = nd_partition(adjacency, finer)
    assert all(any(set(fine) <= set(coarse) for coarse in coarse_blocks) for fine in fine_blocks)
    assert set(isolated_targets(adjacency, family)) <= set(isolated_targets(adjacency, finer))
    assert set(safe_blocks(adjacency, family)) <= set(safe_blocks(adjacency, finer))


@settings(max_examples=100, deadline=None)
@given(graph_and_families())
def test_safe_sets_are_unions_of_r1_blocks_or_r2_singletons(case: tuple[np.ndarray, list, list]) -> None:
    """Every R0 set is a union of R1 blocks (an intersection of ND sets) unless it is an R2 singleton."""
    adjacency, family, _ = case
    blocks, _ = nd_partition(adjacency, family)
    isolated = isolated_targets(adjacency, family)
    for safe in safe_blocks(adjacency, family):
        assert (len(safe) == 1 and safe[0] in isolated) or all(set(b) <= set(safe) or not set(b) & set(safe) for b in blocks)


def test_graph_helpers() -> None:
    adjacency = graphs.diamond()
    assert graphs.descendants(adjacency, {1}) == {3}
    assert graphs.ancestors(adjacency, {3}) == {0, 1, 2}
    assert graphs.parents(adjacency, 3) == [1, 2]
    assert graphs.topological_order(graphs.graph_from_edges("3>1,1>2")) == [2, 0, 1]
    shuffled = graphs.erdos_renyi(6, 0.8, 5, shuffle=True)
    assert graphs.erdos_renyi(6, 0.8, 5, shuffle=True).tolist() == shuffled.tolist()
    assert not np.tril(graphs.erdos_renyi(6, 0.8, 5)).any()  # unshuffled: 0..n-1 is a topological order
    with pytest.raises(ValueError, match="cycle"):
        graphs.graph_from_edges("1>2,2>3,3>1")
    with pytest.raises(ValueError, match="self-loop"):
        graphs.validate_dag(np.eye(2, dtype=bool))


def test_parse_family() -> None:
    assert parse_family("1,2; 3,4", 4) == ((0, 1), (2, 3))
    assert parse_family("{2};{};2", 3) == ((1,), ())
    with pytest.raises(ValueError, match=r"outside 1\.\.3"):
        parse_family("0", 3)


def test_cli_prints_one_indexed_and_draws(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    main(Args(graph="chain3", family="2;2,3", draw=tmp_path / "q.png"))
    out = capsys.readouterr().out
    assert "B1 = {z1}, B2 = {z2,z3}" in out
    assert "R2 individually identified: z2" in out
    assert "R0 identified sets: {z1}, {z2}" in out
    assert (tmp_path / "q.png").stat().st_size > 1000


@pytest.mark.parametrize(("graph", "family", "message"), [
    ("chian4", "1", "did you mean chain4"),
    ("chain3", "1;4", "outside 1..3"),
    ("chain3", "x", "bad target set"),
    ("1>2,2>1", "1", "cycle"),
    ("1-2", "1", "unknown graph"),
])  # fmt: skip
def test_cli_rejects_bad_input_in_one_line(graph: str, family: str, message: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: main(Args(graph=graph, family=family)))
    assert message in str(exit_info.value) and "\n" not in str(exit_info.value)
