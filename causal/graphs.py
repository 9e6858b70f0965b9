"""Causal graphs of the latents: a DAG over latents 0..n-1 as an (n, n) bool adjacency matrix with ``adj[i, j]`` for
the edge i → j, checked acyclic; the named graphs of the worked examples and benchmark cases of Li, Kaba & Ravanbakhsh
(AISTATS 2025, arXiv 2503.10834) and the random DAGs of ILCM's scaling experiment (Brehmer et al., NeurIPS 2022, arXiv
2203.16437; reference Qualcomm-AI-research/weakly-supervised-causal-representation-learning
`ws_crl/causal/graph.py::create_graph`: each edge of a random upper-triangular matrix with probability p).

Latents are 0-indexed here; a name written for people (``graph_from_edges("1>2,2>3")``, `describe`) is 1-indexed, z1..zn.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

from core.config import reject_unknown_keys


def validate_dag(adjacency: np.ndarray) -> np.ndarray:
    """``adjacency`` as a read-only (n, n) bool array, checked square, without self-loops and acyclic."""
    adjacency = np.array(adjacency, dtype=bool)
    if adjacency.ndim != 2 or adjacency.shape[0] != adjacency.shape[1]:
        raise ValueError(f"an adjacency matrix must be square, got shape {adjacency.shape}")
    if adjacency.diagonal().any():
        raise ValueError(f"the graph has a self-loop at z{int(np.flatnonzero(adjacency.diagonal())[0]) + 1}")
    topological_order(adjacency)
    adjacency.flags.writeable = False
    return adjacency


def topological_order(adjacency: np.ndarray) -> list[int]:
    """The nodes in a topological order (Kahn's algorithm, smallest index first among the ready ones); a cycle is an
    error naming the nodes on or behind it."""
    indegree = adjacency.sum(axis=0).astype(int)
    ready = sorted(np.flatnonzero(indegree == 0).tolist())
    order: list[int] = []
    while ready:
        node = ready.pop(0)
        order.append(node)
        for child in np.flatnonzero(adjacency[node]):
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(int(child))
        ready.sort()
    if len(order) < len(adjacency):
        stuck = sorted(set(range(len(adjacency))) - set(order))
        raise ValueError(f"the graph has a cycle through or behind {', '.join(f'z{i + 1}' for i in stuck)}")
    return order


def reachability(adjacency: np.ndarray) -> np.ndarray:
    """(n, n) bool: ``[i, j]`` when a directed path of at least one edge leads from i to j (transitive closure)."""
    reach = np.array(adjacency, dtype=bool)
    for middle in range(len(reach)):
        reach |= reach[:, [middle]] & reach[[middle], :]
    return reach


def descendants(adjacency: np.ndarray, nodes: Iterable[int]) -> set[int]:
    """The strict descendants De(S) of a node set: every node reached from a member by a path of at least one edge
    (members reached from other members included, the start itself only then)."""
    reach = reachability(adjacency)
    return {int(j) for i in nodes for j in np.flatnonzero(reach[i])}


def ancestors(adjacency: np.ndarray, nodes: Iterable[int]) -> set[int]:
    """The strict ancestors An(S) of a node set (members that are ancestors of other members included)."""
    return descendants(np.asarray(adjacency).T, nodes)


def parents(adjacency: np.ndarray, node: int) -> list[int]:
    return np.flatnonzero(np.asarray(adjacency)[:, node]).tolist()


def chain(n: int) -> np.ndarray:
    """z1 → z2 → ... → zn."""
    return validate_dag(np.eye(n, k=1, dtype=bool))


def fork() -> np.ndarray:
    """z1 → z2, z1 → z3."""
    return graph_from_edges("1>2,1>3", 3)


def collider() -> np.ndarray:
    """z1 → z3 ← z2."""
    return graph_from_edges("1>3,2>3", 3)


def diamond() -> np.ndarray:
    """z1 → z2, z1 → z3, z2 → z4, z3 → z4."""
    return graph_from_edges("1>2,1>3,2>4,3>4", 4)


def erdos_renyi(n: int, p: float, seed: int, shuffle: bool = False) -> np.ndarray:
    """A random DAG: each edge i → j with i < j present with probability ``p`` (ILCM's random upper-triangular graph);
    with ``shuffle`` the nodes are then relabelled by a random permutation, so that 0..n-1 is no longer a
    topological order."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"an edge probability must lie in [0, 1], got {p}")
    rng = np.random.default_rng(seed)
    adjacency = np.triu(rng.random((n, n)) < p, k=1)
    if shuffle:
        permutation = rng.permutation(n)
        adjacency = adjacency[np.ix_(permutation, permutation)]
    return validate_dag(adjacency)


def graph_from_edges(edges: str, n: int | None = None) -> np.ndarray:
    """A DAG from 1-indexed edges "1>2,2>3" (spaces ignored) over ``n`` nodes (default: the largest index named)."""
    pairs = [part for part in edges.replace(" ", "").split(",") if part]
    parsed = []
    for part in pairs:
        match = re.fullmatch(r"(\d+)>(\d+)", part)
        if not match or min(int(match[1]), int(match[2])) < 1:
            raise ValueError(f"bad edge {part!r}: write edges as 1-indexed 'i>j' pairs separated by commas, e.g. '1>2,2>3'")
        parsed.append((int(match[1]) - 1, int(match[2]) - 1))
    size = n if n is not None else max((max(edge) + 1 for edge in parsed), default=0)
    if any(max(edge) >= size for edge in parsed):
        raise ValueError(f"edges {edges!r} name a node beyond z{size}")
    adjacency = np.zeros((size, size), dtype=bool)
    for i, j in parsed:
        adjacency[i, j] = True
    return validate_dag(adjacency)


#: Graph names without parameters; `named_graph` also reads chain<n>, er<n>[-p<p>][-s<seed>] and 1-indexed edges.
NAMED_GRAPHS = {"fork": fork, "collider": collider, "diamond": diamond}
_GRAPH_FORMS = "chain<n> (chain4), fork, collider, diamond, er<n>[-p<p>][-s<seed>] (er5-p0.5-s0) or edges such as '1>2,2>3'"


def named_graph(name: str) -> np.ndarray:
    """The graph a short name describes: chain<n>, fork, collider, diamond, er<n>[-p<p>][-s<seed>] (defaults p=0.5,
    seed 0, nodes in a fixed order) or 1-indexed edges "1>2,2>3"; an unknown name names the closest known ones."""
    name = name.strip()
    if match := re.fullmatch(r"chain(\d+)", name):
        return chain(int(match[1]))
    if match := re.fullmatch(r"er(\d+)(?:-p([0-9.]+))?(?:-s(\d+))?", name):
        return erdos_renyi(int(match[1]), float(match[2] or 0.5), int(match[3] or 0))
    if ">" in name:
        return graph_from_edges(name)
    reject_unknown_keys([name], [*NAMED_GRAPHS, "chain4", "er5"], "causal.graphs", "graph", f"graphs are {_GRAPH_FORMS}.")
    return NAMED_GRAPHS[name]()


def describe(adjacency: np.ndarray) -> str:
    """The edges, 1-indexed: "z1→z2, z2→z3" (or "no edges")."""
    edges = [f"z{i + 1}→z{j + 1}" for i, j in zip(*np.nonzero(adjacency))]
    return ", ".join(edges) or "no edges"
