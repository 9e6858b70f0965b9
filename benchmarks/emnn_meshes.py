"""EMNN against EGNN-without-faces and an MLP on vertices: classifying primitive meshes in unseen poses.

Data (numpy, deterministic by seed; trimesh is not a dependency): five primitives, sphere, box, cylinder, cone and
octahedron. Each mesh is one subdivided icosahedron whose vertices are moved radially onto the shape's surface
(d ↦ d / g(d), g the gauge function of the convex shape), so every class has the same vertex count and connectivity and
only geometry tells them apart (a torus would need other connectivity, which graph models could classify without
looking at the geometry). Per mesh: random anisotropic axis scaling, Gaussian vertex noise, random vertex order.

Protocol: train on canonical poses; report accuracy on held-out canonical meshes, on held-out meshes under a random
rotation (SO(3)) and under a random rotation or reflection (O(3)), both with a random translation, and on the training
meshes themselves under a random O(3) pose. A reflected mesh keeps its face order, so its faces turn inside-out: for
EMNN-se3, whose face normals are pseudo-vectors, the O(3) columns measure sensitivity to that orientation bit. All five
primitives are mirror-symmetric, so no class depends on chirality. Every model gets the same invariant vertex input
‖x_i − x̄‖ (the MLP: centred coordinates) and the same epochs, batch size and learning rate.

    python -m benchmarks.emnn_meshes                            # CPU profile, seeds 0 1 2, 1 thread: ~2-3 min
    python -m benchmarks.emnn_meshes --profile smoke --seeds 0  # seconds: checks that the script runs
    python -m benchmarks.emnn_meshes --profile gpu --device cuda

``train_time_s`` counts forward, backward and optimiser steps (not collation or evaluation).

Methods: EMNN (``orientation`` se3 and o3), EGNN without faces (a stack of ``equivariant.egnn.EGNNLayer`` on the mesh
edges, with EMNN's edge settings: sum aggregation, a_ij = 1/deg(i), no attention or tanh; the ``EGNN`` class itself
only builds fully connected graphs of a fixed size), and an MLP on the vertex coordinates sorted along the first axis.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
import tyro
from torch import Tensor, nn
from torch.nn import functional as F

from benchmarks.common import Profile, ResultsArgs, mean_and_std, source_commit, write_results
from benchmarks.render import Result, Section, machine, mean_std
from equivariant.egnn import EGNNLayer
from equivariant.emnn import EMNN, batch_meshes, per_mesh_mean
from equivariant.mesh_pooling import DenseLayout

SHAPES = ("sphere", "box", "cylinder", "cone", "octahedron")
METHODS = ("emnn_se3", "emnn_o3", "egnn_no_faces", "mlp")
EVAL_SETS = ("test_canonical", "test_so3", "test_o3", "train_o3")


# ----------------------------------------------------------------------------------------------------------- data
def icosphere(subdivisions: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit icosphere: vertices (V, 3) and outward-oriented faces (F, 3); V = 10·4^s + 2."""
    t = (1.0 + 5.0**0.5) / 2.0
    vertices = np.array([[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t], [0, -1, -t],
                         [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]], dtype=np.float64)  # fmt: skip
    faces = np.array([[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2],
                      [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5],
                      [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]])  # fmt: skip
    vertices /= np.linalg.norm(vertices, axis=1, keepdims=True)
    for _ in range(subdivisions):  # split every triangle into four at its edge midpoints
        pairs = np.sort(faces[:, [[0, 1], [1, 2], [2, 0]]].reshape(-1, 2), axis=1)
        unique_pairs, midpoint_of = np.unique(pairs, axis=0, return_inverse=True)
        midpoints = vertices[unique_pairs].mean(axis=1)
        mid = len(vertices) + midpoint_of.reshape(-1, 3)  # mid[:, 0] on edge (a, b), 1 on (b, c), 2 on (c, a)
        a, b, c = faces.T
        faces = np.concatenate([np.stack([a, mid[:, 0], mid[:, 2]], 1), np.stack([b, mid[:, 1], mid[:, 0]], 1),
                                np.stack([c, mid[:, 2], mid[:, 1]], 1), mid])  # fmt: skip
        vertices = np.concatenate([vertices, midpoints / np.linalg.norm(midpoints, axis=1, keepdims=True)])
    normals = np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]])
    inward = (normals * vertices[faces].mean(axis=1)).sum(1) < 0
    faces[inward] = faces[inward][:, ::-1]
    return vertices, faces


def gauge(shape: str, d: np.ndarray) -> np.ndarray:
    """Gauge g(d) of the shape's convex body (surface: g = 1), for directions d (V, 3); all bodies contain the origin."""
    radial = np.linalg.norm(d[:, :2], axis=1)
    if shape == "sphere":
        return np.linalg.norm(d, axis=1)
    if shape == "box":
        return np.abs(d).max(axis=1)
    if shape == "octahedron":
        return np.abs(d).sum(axis=1)
    if shape == "cylinder":  # radius 1, height 2
        return np.maximum(radial, np.abs(d[:, 2]))
    if shape == "cone":  # base disc of radius 1 at z = −1, apex at z = 1
        return np.maximum(2.0 * radial + d[:, 2], -d[:, 2])
    raise ValueError(f"unknown shape {shape!r}; choose from {SHAPES}")


class MeshSet(NamedTuple):
    """Meshes of one vertex count: positions (M, V, 3), faces (M, 3, F) per mesh, class labels (M,)."""

    pos: Tensor
    faces: Tensor
    labels: Tensor


def make_meshes(
    n_per_class: int, seed: int, subdivisions: int = 2, noise: float = 0.01, scale_range: tuple[float, float] = (0.6, 1.4)
) -> MeshSet:
    """Canonical-pose primitive meshes, class by class: axis scales ~ U(scale_range)³, noise ~ N(0, noise²), shuffled
    vertex order (faces relabelled to match)."""
    rng = np.random.default_rng(seed)
    sphere, template = icosphere(subdivisions)
    n_vertices = len(sphere)
    positions, faces, labels = [], [], []
    for label, shape in enumerate(SHAPES):
        surface = sphere / gauge(shape, sphere)[:, None]
        for _ in range(n_per_class):
            scaled = surface * rng.uniform(*scale_range, size=3) + noise * rng.standard_normal(surface.shape)
            order = rng.permutation(n_vertices)  # new vertex v is old vertex order[v]
            relabel = np.empty(n_vertices, dtype=np.int64)
            relabel[order] = np.arange(n_vertices)
            positions.append(scaled[order])
            faces.append(relabel[template].T)
            labels.append(label)
    return MeshSet(torch.tensor(np.stack(positions), dtype=torch.float32), torch.tensor(np.stack(faces)),
                   torch.tensor(labels))  # fmt: skip


def random_pose(meshes: MeshSet, group: Literal["so3", "o3"], seed: int, shift: float = 1.0) -> MeshSet:
    """Apply an independent Haar-random rotation (so3) or rotation/reflection (o3) and a N(0, shift²) translation."""
    gen = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(len(meshes.pos), 3, 3, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)  # sign fix: Haar measure on O(3)
    if group == "so3":
        q[:, :, 0] *= torch.linalg.det(q).unsqueeze(-1)
    shifts = shift * torch.randn(len(meshes.pos), 1, 3, generator=gen, dtype=torch.float64)
    moved = meshes.pos.double() @ q.transpose(-1, -2) + shifts
    return meshes._replace(pos=moved.float())


# --------------------------------------------------------------------------------------------------------- models
class MeshBatch(NamedTuple):
    """A flat batch of meshes (see equivariant.emnn) with the invariant vertex input and labels."""

    pos: Tensor
    edges: Tensor
    faces: Tensor
    batch: Tensor
    num_graphs: int
    distance_to_centroid: Tensor  # (N, 1) the invariant vertex input
    labels: Tensor


def collate(meshes: MeshSet, index: Tensor, device: torch.device) -> MeshBatch:
    pos, edges, faces, batch = batch_meshes(list(meshes.pos[index]), list(meshes.faces[index]))
    centred = pos - per_mesh_mean(pos, batch, len(index))[batch]
    tensors = (pos, edges, faces, batch)
    pos, edges, faces, batch = (t.to(device) for t in tensors)
    distance = centred.norm(dim=-1, keepdim=True).to(device)
    return MeshBatch(pos, edges, faces, batch, len(index), distance, meshes.labels[index].to(device))


def _head(in_dim: int, hidden_dim: int, n_classes: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, n_classes))


class EMNNClassifier(nn.Module):
    """EMNN → mean of vertex features per mesh → MLP head."""

    def __init__(self, hidden_dim: int, n_layers: int, n_classes: int, orientation: Literal["se3", "o3"]) -> None:
        super().__init__()
        self.emnn = EMNN(1, hidden_dim, None, n_layers, orientation=orientation)
        self.head = _head(hidden_dim, hidden_dim, n_classes)

    def forward(self, b: MeshBatch) -> Tensor:
        h, _ = self.emnn(b.distance_to_centroid, b.pos, b.edges, b.faces, b.batch)
        return self.head(per_mesh_mean(h, b.batch, b.num_graphs))


class EGNNClassifier(nn.Module):
    """EGNN layers on the mesh edges (no faces), with EMNN's edge settings → mean per mesh → MLP head."""

    def __init__(self, hidden_dim: int, n_layers: int, n_classes: int) -> None:
        super().__init__()
        self.embedding = nn.Linear(1, hidden_dim)
        self.layers = nn.ModuleList(
            EGNNLayer(hidden_dim, edge_attr_dim=1, attention=False, tanh=False, aggregation="sum") for _ in range(n_layers)
        )
        self.head = _head(hidden_dim, hidden_dim, n_classes)

    def forward(self, b: MeshBatch) -> Tensor:
        row = b.edges[0]
        inv_degree = 1.0 / torch.bincount(row, minlength=b.pos.shape[0])[row].to(b.pos.dtype)
        h, x = self.embedding(b.distance_to_centroid).unsqueeze(0), b.pos.unsqueeze(0)  # one flat "graph" of all meshes
        for layer in self.layers:
            h, x = layer(h, x, b.edges, inv_degree.view(1, -1, 1))
        return self.head(per_mesh_mean(h.squeeze(0), b.batch, b.num_graphs))


class SortedMLPClassifier(nn.Module):
    """MLP on centred vertex coordinates sorted by their first coordinate, zero-padded to ``max_vertices``."""

    def __init__(self, hidden_dim: int, n_classes: int, max_vertices: int) -> None:
        super().__init__()
        self.max_vertices = max_vertices
        self.mlp = nn.Sequential(nn.Linear(3 * max_vertices, hidden_dim), nn.SiLU(), _head(hidden_dim, hidden_dim, n_classes))

    def forward(self, b: MeshBatch) -> Tensor:
        centred = b.pos - per_mesh_mean(b.pos, b.batch, b.num_graphs)[b.batch]
        dense = DenseLayout.build(b.batch, b.num_graphs).pad(centred, fill=float("nan"))  # nan sorts last, then → 0
        order = dense[..., 0].argsort(dim=1)
        dense = torch.gather(dense, 1, order.unsqueeze(-1).expand_as(dense)).nan_to_num(0.0)
        dense = F.pad(dense, (0, 0, 0, self.max_vertices - dense.shape[1]))
        return self.mlp(dense.flatten(1))


# ------------------------------------------------------------------------------------------------------ benchmark
@dataclass(frozen=True)
class Budget(Profile):
    """Data size and training budget of one profile (identical for every method)."""

    train_per_class: int  # canonical training meshes per class
    test_per_class: int  # meshes per class in each evaluation set
    subdivisions: int  # icosphere subdivisions: 1 → 42 vertices, 2 → 162, 3 → 642
    epochs: int  # passes over the training set
    batch_size: int  # meshes per optimiser step
    hidden_dim: int  # width of every network (MLP: hidden layers)
    n_layers: int  # message-passing layers of EMNN / EGNN
    lr: float  # Adam learning rate


PROFILES: dict[str, Budget] = {
    "smoke": Budget(train_per_class=8, test_per_class=4, subdivisions=1, epochs=2, batch_size=10, hidden_dim=16,
                    n_layers=2, lr=2e-3),
    "cpu": Budget(train_per_class=60, test_per_class=40, subdivisions=1, epochs=30, batch_size=20, hidden_dim=32,
                  n_layers=3, lr=2e-3),
    "gpu": Budget(train_per_class=400, test_per_class=200, subdivisions=3, epochs=100, batch_size=32, hidden_dim=64,
                  n_layers=4, lr=1e-3),
}  # fmt: skip


@dataclass
class EMNNMeshArgs(ResultsArgs):
    profile: Literal["smoke", "cpu", "gpu"] = "cpu"
    """Budget profile (see PROFILES); smoke only checks that the script runs."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """One run per seed: the seed draws the data, the initialisation and the batch order."""
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    """Subset of emnn_se3, emnn_o3, egnn_no_faces, mlp."""
    device: str = "cpu"
    """Torch device."""
    threads: int = 1
    """Torch CPU threads."""
    name: str = "emnn_meshes"
    """Results file: <results-dir>/<name>.json."""


def build_model(method: str, budget: Budget, n_vertices: int) -> nn.Module:
    if method in ("emnn_se3", "emnn_o3"):
        return EMNNClassifier(budget.hidden_dim, budget.n_layers, len(SHAPES), orientation=method.removeprefix("emnn_"))
    if method == "egnn_no_faces":
        return EGNNClassifier(budget.hidden_dim, budget.n_layers, len(SHAPES))
    if method == "mlp":
        return SortedMLPClassifier(4 * budget.hidden_dim, len(SHAPES), n_vertices)
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}")


@torch.no_grad()
def accuracy(model: nn.Module, batches: list[MeshBatch]) -> float:
    model.eval()
    correct = sum(int((model(b).argmax(-1) == b.labels).sum()) for b in batches)
    return correct / sum(b.num_graphs for b in batches)


def run_method(method: str, budget: Budget, seed: int, args: EMNNMeshArgs) -> dict[str, float]:
    """Train one method on canonical meshes of this seed; return accuracies, train time and parameter count."""
    device = torch.device(args.device)
    train = make_meshes(budget.train_per_class, seed=1000 * seed, subdivisions=budget.subdivisions)
    test = make_meshes(budget.test_per_class, seed=1000 * seed + 1, subdivisions=budget.subdivisions)
    eval_sets = {"test_canonical": test, "test_so3": random_pose(test, "so3", seed), "test_o3": random_pose(test, "o3", seed),
                 "train_o3": random_pose(train, "o3", seed + 1)}  # fmt: skip

    def batches(meshes: MeshSet) -> list[MeshBatch]:
        return [collate(meshes, idx, device) for idx in torch.arange(len(meshes.labels)).split(budget.batch_size)]

    torch.manual_seed(seed)
    model = build_model(method, budget, train.pos.shape[1]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=budget.lr)
    gen = torch.Generator().manual_seed(seed)
    train_time = 0.0
    for _ in range(budget.epochs):
        model.train()
        for idx in torch.randperm(len(train.labels), generator=gen).split(budget.batch_size):
            b = collate(train, idx, device)
            start = time.perf_counter()
            loss = F.cross_entropy(model(b), b.labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            train_time += time.perf_counter() - start
    result = {name: accuracy(model, batches(meshes)) for name, meshes in eval_sets.items()}
    return {
        **result,
        "train_time_s": train_time,
        "final_loss": loss.item(),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def print_table(summary: dict[str, dict[str, list[float]]]) -> None:
    print(f"\n{'method':<15}" + "".join(f"{k:>20}" for k in EVAL_SETS) + f"{'train s':>10}")
    for method, runs in summary.items():
        cells = []
        for key in EVAL_SETS:
            values = runs[key]
            spread = statistics.pstdev(values)  # as the report (np.std)
            cells.append(f"{statistics.mean(values):>13.3f} ± {spread:.3f}")
        print(f"{method:<15}" + "".join(cells) + f"{statistics.mean(runs['train_time_s']):>10.1f}")


def main(args: EMNNMeshArgs) -> None:
    source_commit(args.allow_dirty)
    torch.set_num_threads(args.threads)
    budget = PROFILES[args.profile]
    runs: dict[str, dict[str, list[float]]] = {}
    for method in args.methods:
        for seed in args.seeds:
            result = run_method(method, budget, seed, args)
            print(f"[{method} seed {seed}] " + "  ".join(f"{k}={v:.3g}" for k, v in result.items()), flush=True)
            for key, value in result.items():
                runs.setdefault(method, {}).setdefault(key, []).append(value)
    print_table(runs)
    path = write_results(args.name, {"profile": args.profile, "budget": asdict(budget), "seeds": args.seeds,
                                     "shapes": list(SHAPES), "runs": runs}, args)  # fmt: skip
    print(f"wrote {path}")


TEXT = """\
## EMNN vs EGNN without faces vs MLP: primitive meshes in unseen poses

`python -m benchmarks.emnn_meshes --profile {profile} --seeds {seeds}`

Machine: {machine}. Classes: {shapes}; trained on canonical poses ({budget[train_per_class]} meshes per class, \
{budget[epochs]} epochs, width {budget[hidden_dim]}, {budget[n_layers]} layers), accuracy mean ± std over seeds on \
held-out canonical meshes, on held-out meshes under random SO(3) and O(3) poses (with translations), and on the \
training meshes under random O(3) poses. Train time counts forward, backward and optimiser steps.

| method | {sets} | train time (s) | parameters |
|---|{rules}"""
ROW = "| {method} | {cells} | {train_s:.1f} | {parameters:,} |"


def render(result: Result, figures: Path) -> str:
    """Accuracy on every evaluation set, train time and size of every method."""
    lines = [TEXT.format(profile=result["profile"], seeds=" ".join(map(str, result["seeds"])), machine=machine(result),
                         shapes=", ".join(result["shapes"]), budget=result["budget"], sets=" | ".join(EVAL_SETS),
                         rules="---|" * (len(EVAL_SETS) + 2))]  # fmt: skip
    for method, runs in result["runs"].items():
        cells = " | ".join(mean_std(mean_and_std(runs[key]), 3) for key in EVAL_SETS)
        lines.append(ROW.format(method=method, cells=cells, train_s=np.mean(runs["train_time_s"]),
                                parameters=int(runs["parameters"][0])))  # fmt: skip
    return "\n".join(lines)


SECTION = Section(("emnn_meshes",), render)


if __name__ == "__main__":
    main(tyro.cli(EMNNMeshArgs))
