"""What a family 𝓘 of possible intervention target sets identifies about the latents of a known DAG G, from pairs
observed before and after a perfect intervention on an unknown S ∈ 𝓘: the causal abstraction of Li, Kaba &
Ravanbakhsh (AISTATS 2025, arXiv 2503.10834), in our reading of its Theorems 3.1 and 3.2 (their full text was not
available to us), and a conservative rule checked against it. With ND(S) = V ∖ (S ∪ De(S)) (De: strict descendants):

* R1 (Thm 3.1 reading), `nd_partition`: the blocks are the classes of equal signature sig(i) = {S ∈ 𝓘 : i ∈ ND(S)}
  (the atoms of the sets ND(S)); the quotient DAG has B → B' when some edge i → j of G crosses from B to B'. Every
  ND(S) is ancestral, so B → B' implies sig(B') ⊊ sig(B): the quotient is acyclic and decreasing |sig| orders it.
* R2 (Thm 3.2 reading), `isolated_targets`: for each distinct N among the ND(S), T_N = ∩{S ∈ 𝓘 : ND(S) = N}; when
  T_N = {i}, z_i is identified on its own, up to an elementwise reparametrisation. With every singleton in 𝓘 this is
  Brehmer et al. (NeurIPS 2022, arXiv 2203.16437): everything is identified.
* R0 (conservative), `safe_blocks`: under a descendant-closed S (De(S) ⊆ S) a pair shares exactly z_{V∖S} while z_S is
  resampled, so V ∖ S is block-identified as the shared content block (von Kügelgen et al., NeurIPS 2021, arXiv
  2106.04619), and so are intersections of such sets; R2's singletons are added. R1 can claim more than R0: in the chain
  z1 → z2 → z3 with 𝓘 = {{z2}}, an alternative model with latents (z1 + ε3, z2, ε3) reproduces every pair, so z1 is
  not separable from ε3 although R1 makes {z1} a block.

Latents are 0-indexed in code; the command line and everything printed use 1-indexed names z1..zn:

    python -m causal.identifiability --graph chain4 --family "1,2;3,4" [--draw quotient.png]
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

from causal.graphs import descendants, describe, named_graph, validate_dag
from causal.pairs import TargetSet
from core.cli import run_cli

Family = tuple[TargetSet, ...]


def normalize_family(family: Iterable[Iterable[int]], num_latents: int) -> Family:
    """The family as sorted tuples of distinct 0-indexed latents, each set once, in first-seen order."""
    normalized: list[TargetSet] = []
    for target in family:
        members = tuple(sorted({int(i) for i in target}))
        if any(not 0 <= i < num_latents for i in members):
            raise ValueError(f"target set {_names(members, one_indexed=False)} names a latent outside 0..{num_latents - 1}")
        if members not in normalized:
            normalized.append(members)
    return tuple(normalized)


def non_descendants(adjacency: np.ndarray, target: Iterable[int]) -> frozenset[int]:
    """ND(S) = V ∖ (S ∪ De(S)): the latents a pair shares under a perfect intervention on S (with their noises)."""
    target = set(target)
    return frozenset(range(len(adjacency))) - target - descendants(adjacency, target)


def nd_partition(adjacency: np.ndarray, family: Iterable[Iterable[int]]) -> tuple[Family, tuple[tuple[int, int], ...]]:
    """R1: the blocks of equal signature in topological order (decreasing |sig|, then smallest member) and the
    quotient edges (a, b) between block indices."""
    adjacency = validate_dag(adjacency)
    n = len(adjacency)
    nd_sets = [non_descendants(adjacency, target) for target in normalize_family(family, n)]
    signatures = [frozenset(k for k, nd in enumerate(nd_sets) if i in nd) for i in range(n)]
    classes: dict[frozenset[int], list[int]] = {}
    for i, signature in enumerate(signatures):
        classes.setdefault(signature, []).append(i)
    ordered = sorted(classes.items(), key=lambda item: (-len(item[0]), item[1][0]))
    blocks = tuple(tuple(members) for _, members in ordered)
    block_of = {i: b for b, members in enumerate(blocks) for i in members}
    edges = {(block_of[i], block_of[j]) for i, j in zip(*np.nonzero(adjacency)) if block_of[i] != block_of[j]}
    return blocks, tuple(sorted(edges))


def isolated_targets(adjacency: np.ndarray, family: Iterable[Iterable[int]]) -> tuple[int, ...]:
    """R2: the latents i with T_N = {i} for some N, T_N the intersection of the target sets whose ND set is N."""
    adjacency = validate_dag(adjacency)
    intersections: dict[frozenset[int], set[int]] = {}
    for target in normalize_family(family, len(adjacency)):
        nd = non_descendants(adjacency, target)
        intersections[nd] = intersections.get(nd, set(target)) & set(target)
    return tuple(sorted(next(iter(t)) for t in intersections.values() if len(t) == 1))


def safe_blocks(adjacency: np.ndarray, family: Iterable[Iterable[int]]) -> Family:
    """R0: the ∩-closure of {V ∖ S : S ∈ 𝓘, De(S) ⊆ S} without V and ∅, plus R2's singletons; largest sets first."""
    adjacency = validate_dag(adjacency)
    n = len(adjacency)
    family = normalize_family(family, n)
    everything = frozenset(range(n))
    generators = {everything - set(s) for s in family if descendants(adjacency, s) <= set(s)}
    closure = set(generators)
    frontier = set(generators)
    while frontier:
        new = {a & b for a, b in itertools.product(frontier, closure)} - closure
        closure |= new
        frontier = new
    closure |= {frozenset({i}) for i in isolated_targets(adjacency, family)}
    closure -= {everything, frozenset()}
    return tuple(sorted((tuple(sorted(s)) for s in closure), key=lambda s: (-len(s), s)))


@dataclass(frozen=True)
class Abstraction:
    """What (G, 𝓘) identifies: R1's blocks (topological order) and quotient edges between block indices, R2's
    individually identified latents, and R0's identified sets (R2's singletons among them). 0-indexed; ``str`` prints
    it 1-indexed."""

    num_latents: int
    edges: tuple[tuple[int, int], ...]
    family: Family
    blocks: Family
    quotient_edges: tuple[tuple[int, int], ...]
    isolated: tuple[int, ...]
    safe: Family

    def adjacency(self) -> np.ndarray:
        adjacency = np.zeros((self.num_latents, self.num_latents), dtype=bool)
        for i, j in self.edges:
            adjacency[i, j] = True
        return adjacency

    def block_names(self) -> list[str]:
        return [_names(block) for block in self.blocks]

    def __str__(self) -> str:
        quotient = ", ".join(f"B{a + 1}→B{b + 1}" for a, b in self.quotient_edges) or "no edges"
        lines = [
            f"graph: {describe(self.adjacency())}",
            f"family: {', '.join(_names(s) for s in self.family) or 'empty'}",
            "R1 blocks (topological order): " + ", ".join(f"B{b + 1} = {name}" for b, name in enumerate(self.block_names())),
            f"R1 quotient: {quotient}",
            f"R2 individually identified: {', '.join(f'z{i + 1}' for i in self.isolated) or 'none'}",
            f"R0 identified sets: {', '.join(_names(s) for s in self.safe) or 'none'}",
        ]
        return "\n".join(lines)


def abstraction(adjacency: np.ndarray, family: Iterable[Iterable[int]]) -> Abstraction:
    """R1, R2 and R0 of (G, 𝓘) in one result."""
    adjacency = validate_dag(adjacency)
    family = normalize_family(family, len(adjacency))
    blocks, quotient_edges = nd_partition(adjacency, family)
    edges = tuple((int(i), int(j)) for i, j in zip(*np.nonzero(adjacency)))
    return Abstraction(len(adjacency), edges, family, blocks, quotient_edges, isolated_targets(adjacency, family),
                       safe_blocks(adjacency, family))  # fmt: skip


def parse_family(text: str, num_latents: int) -> Family:
    """A family written 1-indexed, sets separated by ';' and members by ',' ("1,2;3,4"; braces optional; "{}" or "∅"
    for the empty set), as 0-indexed target sets."""
    family = []
    for part in text.split(";"):
        part = part.strip().strip("{}").strip()
        if part in ("", "∅"):
            family.append(())
            continue
        try:
            members = [int(member) for member in part.split(",")]
        except ValueError:
            raise ValueError(f"bad target set {part!r}: write 1-indexed latents separated by ',' and sets by ';', e.g. "
                             "'1,2;3,4'") from None  # fmt: skip
        if any(not 1 <= m <= num_latents for m in members):
            raise ValueError(f"target set {{{part}}} names a latent outside 1..{num_latents}")
        family.append(tuple(m - 1 for m in members))
    return normalize_family(family, num_latents)


def draw_quotient(result: Abstraction, path: str | Path) -> Path:
    """Write a drawing of R1's quotient DAG (blocks as nodes, R2-identified latents marked with *) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import networkx as nx

    graph = nx.DiGraph()
    labels = {}
    for b, block in enumerate(result.blocks):
        graph.add_node(b)
        labels[b] = _names(block) + ("*" if any(i in result.isolated for i in block) else "")
    graph.add_edges_from(result.quotient_edges)
    for layer, nodes in enumerate(nx.topological_generations(graph)):
        for node in nodes:
            graph.nodes[node]["layer"] = layer
    figure, axes = plt.subplots(figsize=(1.8 + 1.6 * len(result.blocks), 3.0))
    nx.draw_networkx(graph, nx.multipartite_layout(graph, subset_key="layer"), ax=axes, labels=labels, node_size=2200,
                     node_color="#dde6f3", arrowsize=18, font_size=9)  # fmt: skip
    axes.set_title("R1 quotient (* holds an R2-identified latent)", fontsize=9)
    axes.axis("off")
    path = Path(path)
    figure.savefig(path, bbox_inches="tight", dpi=120)
    plt.close(figure)
    return path


def _names(members: Iterable[int], one_indexed: bool = True) -> str:
    return "{" + ",".join(f"z{i + 1}" if one_indexed else str(i) for i in members) + "}"


@dataclass
class Args:
    """Print what a family of intervention target sets identifies on a graph (R1 blocks and quotient, R2, R0)."""

    graph: str
    """chain<n>, fork, collider, diamond, er<n>[-p<p>][-s<seed>] or 1-indexed edges such as '1>2,2>3'."""
    family: str
    """Target sets, 1-indexed: members separated by ',', sets by ';', e.g. '1,2;3,4' ('{}' is the empty set)."""
    draw: Path | None = None
    """Also write a drawing of the quotient graph to this image file."""


def main(args: Args) -> Abstraction:
    adjacency = named_graph(args.graph)
    result = abstraction(adjacency, parse_family(args.family, len(adjacency)))
    print(result)
    if args.draw is not None:
        print(f"wrote {draw_quotient(result, args.draw)}")
    return result


if __name__ == "__main__":
    run_cli(lambda: main(tyro.cli(Args)))
