"""EMNN: E(3)/SE(3) equivariance, permutation equivariance, locality of face messages, the invariant hierarchy
(FPS, radius pooling, kNN interpolation) and the benchmark's mesh generator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from equivariance_checks import amplify_coordinate_heads
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from benchmarks.emnn_meshes import (
    METHODS,
    PROFILES,
    SHAPES,
    EGNNClassifier,
    EMNNClassifier,
    EMNNMeshArgs,
    collate,
    icosphere,
    make_meshes,
    random_pose,
    run_method,
)
from equivariant.emnn import EMNN, MeshTopology, batch_meshes, edges_from_faces, vertex_normals
from equivariant.mesh_pooling import (
    HierarchicalEMNN,
    PointLevel,
    Pooling,
    Unpooling,
    farthest_point_sampling,
    knn_interpolate,
    normalized_positions,
    radius_max_pool,
)

TOL = 1e-5
quaternions = st.lists(st.floats(-1.0, 1.0), min_size=4, max_size=4).filter(lambda q: sum(v * v for v in q) > 0.01)
translations = st.lists(st.floats(-3.0, 3.0), min_size=3, max_size=3)


def rotation(quaternion: list[float]) -> Tensor:
    """Rotation matrix of a (not necessarily unit) quaternion (w, x, y, z)."""
    w, x, y, z = (torch.tensor(quaternion, dtype=torch.float64) / math.sqrt(sum(v * v for v in quaternion))).tolist()
    return torch.tensor([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                         [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                         [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])  # fmt: skip


def reflection(quaternion: list[float]) -> Tensor:
    """An improper orthogonal matrix: a rotation composed with the mirror x ↦ −x."""
    return rotation(quaternion) @ torch.diag(torch.tensor([-1.0, 1.0, 1.0]))


def sample_meshes(seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Two noisy icospheres of 42 and 12 vertices in one flat batch: (pos, edges, faces, batch)."""
    gen = torch.Generator().manual_seed(seed)
    meshes = []
    for subdivisions, scale in ((1, 1.0), (0, 0.7)):
        vertices, faces = icosphere(subdivisions)
        pos = torch.tensor(vertices, dtype=torch.float32) * scale
        meshes.append((pos + 0.1 * torch.randn(pos.shape, generator=gen), torch.tensor(faces.T)))
    return batch_meshes([m[0] for m in meshes], [m[1] for m in meshes])


def make_model(orientation: str, num_vectors: int = 1, in_vectors: int = 0) -> EMNN:
    torch.manual_seed(0)
    model = EMNN(3, 16, 4, 3, orientation=orientation, num_vectors=num_vectors, in_vectors=in_vectors)
    amplify_coordinate_heads(model)
    return model


def max_errors(model: EMNN, q: Tensor, shift: Tensor, vectors_are_pseudo: bool = False) -> tuple[float, float, float]:
    """(coordinate error, feature error, coordinate displacement) of ``model`` under x ↦ xQᵀ + shift."""
    pos, edges, faces, batch = sample_meshes()
    h = torch.randn(pos.shape[0], 3, generator=torch.Generator().manual_seed(5))
    vectors = None
    if model.in_vectors:  # vertex normals (pseudo-vectors) or random true vectors, transformed accordingly
        vectors = vertex_normals(pos, faces).unsqueeze(-1) if vectors_are_pseudo else torch.randn(pos.shape[0], 3, 1)
    h_out, x_out = model(h, pos, edges, faces, batch, vectors)
    moved_vectors = None
    if vectors is not None:
        sign = torch.linalg.det(q) if vectors_are_pseudo else 1.0
        moved_vectors = sign * torch.einsum("ij,njc->nic", q, vectors)
    h_moved, x_moved = model(h, pos @ q.T + shift, edges, faces, batch, moved_vectors)
    coord_error = (x_moved - (x_out @ q.T + shift)).abs().max().item()
    return coord_error, (h_moved - h_out).abs().max().item(), (x_out - pos).abs().max().item()


@pytest.mark.parametrize("orientation", ["se3", "o3"])
@pytest.mark.parametrize(("num_vectors", "in_vectors"), [(1, 0), (3, 1)])
@settings(max_examples=8, deadline=None)
@given(quaternion=quaternions, shift=translations)
def test_rotation_translation_equivariance(orientation: str, num_vectors: int, in_vectors: int, quaternion, shift) -> None:
    model = make_model(orientation, num_vectors, in_vectors)
    coord_error, feature_error, moved = max_errors(model, rotation(quaternion), torch.tensor(shift), vectors_are_pseudo=True)
    assert moved > 0.05, "coordinates barely move: the check would be vacuous"
    assert coord_error < TOL and feature_error < TOL, (coord_error, feature_error)


@pytest.mark.parametrize(("num_vectors", "in_vectors"), [(1, 0), (3, 1)])
@settings(max_examples=8, deadline=None)
@given(quaternion=quaternions, shift=translations)
def test_o3_is_reflection_equivariant(num_vectors: int, in_vectors: int, quaternion, shift) -> None:
    coord_error, feature_error, _ = max_errors(make_model("o3", num_vectors, in_vectors), reflection(quaternion),
                                               torch.tensor(shift))  # fmt: skip
    assert coord_error < TOL and feature_error < TOL, (coord_error, feature_error)


@settings(max_examples=5, deadline=None)
@given(quaternion=quaternions)
def test_se3_breaks_under_reflection(quaternion) -> None:
    """The paper's pseudo-vector normal flips under reflections: the coordinate error is of the update's size."""
    coord_error, feature_error, moved = max_errors(make_model("se3"), reflection(quaternion), torch.zeros(3))
    assert coord_error > 0.1 * moved > 1e-3
    assert feature_error > 1e-4, "later layers read distances of the mis-transformed coordinates"


def permute_within_meshes(batch: Tensor, gen: torch.Generator) -> Tensor:
    """A random vertex permutation that keeps each mesh's vertices together (batch stays sorted)."""
    keys = batch.double() + torch.rand(batch.shape, generator=gen, dtype=torch.float64)
    return keys.argsort()


@pytest.mark.parametrize("orientation", ["se3", "o3"])
def test_permutation_equivariance(orientation: str) -> None:
    model = make_model(orientation)
    pos, edges, faces, batch = sample_meshes()
    h = torch.randn(pos.shape[0], 3)
    perm = permute_within_meshes(batch, torch.Generator().manual_seed(3))  # new vertex v is old vertex perm[v]
    relabel = torch.empty_like(perm)
    relabel[perm] = torch.arange(len(perm))
    h_out, x_out = model(h, pos, edges, faces, batch)
    h_perm, x_perm = model(h[perm], pos[perm], relabel[edges], relabel[faces], batch[perm])
    assert (x_perm - x_out[perm]).abs().max() < TOL and (h_perm - h_out[perm]).abs().max() < TOL


def three_triangles() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    gen = torch.Generator().manual_seed(4)
    pos = torch.randn(9, 3, generator=gen)
    faces = torch.arange(9).reshape(3, 3).T.contiguous()  # triangles (0,1,2), (3,4,5), (6,7,8)
    return pos, edges_from_faces(faces, 9), faces, torch.randn(9, 3, generator=gen)


@pytest.mark.parametrize(("orientation", "one_mesh"), [("se3", False), ("o3", False), ("se3", True)])
def test_disconnected_components_do_not_interact(orientation: str, one_mesh: bool) -> None:
    """The released code routes face messages role-major/face-major mixed, so triangle C moved triangle A (HySonLab/EquiMesh).

    "o3" is checked across meshes only: its orientation uses the mesh centroid, which all components of a mesh share.
    """
    model = make_model(orientation)
    pos, edges, faces, h = three_triangles()
    batch = torch.zeros(9, dtype=torch.long) if one_mesh else torch.arange(3).repeat_interleave(3)
    h_out, x_out = model(h, pos, edges, faces, batch)
    deformed = pos.clone()
    deformed[6:] = 2.0 * deformed[6:] + 1.0
    h_def, x_def = model(h, deformed, edges, faces, batch)
    assert (x_def[:6] - x_out[:6]).abs().max() < 1e-7 and (h_def[:6] - h_out[:6]).abs().max() < 1e-7
    assert (h_def[6:] - h_out[6:]).abs().max() > 1e-3, "the deformed triangle's own output must change"


def test_topology_degree_and_edges() -> None:
    _, faces = icosphere(0)
    faces = torch.tensor(faces.T)
    edges = edges_from_faces(faces, 12)
    assert edges.shape == (2, 60)  # 30 undirected edges, both directions
    assert set(map(tuple, edges.T.tolist())) == set(map(tuple, edges.flip(0).T.tolist()))
    topology = MeshTopology.build(edges, faces, None, 12)
    assert torch.allclose(topology.inv_degree, torch.full((60, 1), 0.2))  # every icosahedron vertex has degree 5
    assert topology.num_graphs == 1


def test_vertex_normals_are_pseudo_vectors() -> None:
    pos, _, faces, _ = sample_meshes()
    normals = vertex_normals(pos, faces)
    assert torch.allclose(normals.norm(dim=-1), torch.ones(len(pos)))
    assert ((normals * pos).sum(-1) > 0).float().mean() > 0.9  # outward on a noisy sphere centred at 0
    q = reflection([0.3, -0.2, 0.5, 0.1])
    assert torch.allclose(vertex_normals(pos @ q.T, faces), -normals @ q.T, atol=1e-5)


def test_bad_inputs_raise_clear_errors() -> None:
    model = make_model("se3")
    pos, edges, faces, batch = sample_meshes()
    h = torch.randn(pos.shape[0], 3)
    with pytest.raises(ValueError, match=r"needs \.T"):
        model(h, pos, edges, faces.T.contiguous(), batch)
    with pytest.raises(ValueError, match="different meshes"):
        model(h, pos, torch.cat([edges, torch.tensor([[0], [50]])], dim=1), faces, batch)
    with pytest.raises(ValueError, match="outside"):
        model(h, pos, edges, faces + 100, batch)
    with pytest.raises(ValueError, match="h must have shape"):
        model(h[:, :2], pos, edges, faces, batch)
    with pytest.raises(ValueError, match="vectors must be"):
        model(h, pos, edges, faces, batch, torch.zeros(pos.shape[0], 3, 1))
    with pytest.raises(ValueError, match="orientation"):
        EMNN(3, 8, 2, 1, orientation="so3")
    with pytest.raises(ValueError, match="sorted by mesh"):
        farthest_point_sampling(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]))


# ------------------------------------------------------------------------------------------------------ hierarchy
def test_fps_on_a_line_matches_hand_computation() -> None:
    """Points 0..9 on a line: start at the farthest from the centroid 4.5 (0 and 9 tie → lowest index 0), then 9, then
    4 (4 and 5 tie at distance 4). ratio 0.3 gives ⌈3.0000000000000004⌉ = 3 samples thanks to the rounding guard."""
    line = torch.zeros(10, 3)
    line[:, 0] = torch.arange(10.0)
    picks = farthest_point_sampling(line, torch.zeros(10, dtype=torch.long), ratio=0.3)
    assert picks.tolist() == [0, 9, 4]


def test_fps_distinct_deterministic_invariant() -> None:
    gen = torch.Generator().manual_seed(0)
    counts = [37, 64, 5]
    pos = torch.randn(sum(counts), 3, generator=gen)
    batch = torch.arange(3).repeat_interleave(torch.tensor(counts))
    picks = farthest_point_sampling(pos, batch)
    assert torch.equal(picks, farthest_point_sampling(pos, batch))
    assert len(set(picks.tolist())) == len(picks)
    assert torch.bincount(batch[picks]).tolist() == [math.ceil(0.25 * n) for n in counts]
    assert torch.equal(batch[picks], batch[picks].sort().values)
    q = reflection([0.1, 0.7, -0.3, 0.2])
    assert torch.equal(farthest_point_sampling(pos @ q.T + 2.0, batch), picks)
    perm = permute_within_meshes(batch, gen)
    assert torch.equal(perm[farthest_point_sampling(pos[perm], batch)], picks)


def clouds(seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Two normalised point clouds (30 and 90 points) with features: (pos, batch, h)."""
    gen = torch.Generator().manual_seed(seed)
    batch = torch.arange(2).repeat_interleave(torch.tensor([30, 90]))
    pos = normalized_positions(torch.randn(120, 3, generator=gen), batch, 2)
    return pos, batch, torch.randn(120, 5, generator=gen)


@pytest.mark.parametrize("max_neighbors", [64, 4])
def test_radius_max_pool_matches_brute_force(max_neighbors: int) -> None:
    pos, batch, h = clouds()
    centres = farthest_point_sampling(pos, batch)
    pooled = radius_max_pool(h, pos, batch, centres, radius=0.5, max_neighbors=max_neighbors)
    for row, c in enumerate(centres.tolist()):
        same = (batch == batch[c]).nonzero().squeeze(1)
        d = (pos[same] - pos[c]).norm(dim=-1)
        nearest = same[d.argsort()[:max_neighbors]]
        inside = nearest[(pos[nearest] - pos[c]).norm(dim=-1) <= 0.5]
        assert torch.allclose(pooled[row], h[inside].amax(0))


def test_knn_interpolate_matches_brute_force_and_copies_at_sources() -> None:
    pos, batch, h = clouds()
    centres = farthest_point_sampling(pos, batch)
    up = knn_interpolate(h[centres], pos[centres], batch[centres], pos, batch, k=3)
    assert torch.allclose(up[centres], h[centres], atol=1e-6)
    for i in range(0, 120, 7):
        same = centres[batch[centres] == batch[i]]
        d = (pos[same] - pos[i]).norm(dim=-1)
        order = d.argsort()[:3]
        w = 1.0 / d[order].square().clamp_min(1e-16)
        assert torch.allclose(up[i], (w[:, None] * h[same[order]]).sum(0) / w.sum(), atol=1e-5)


def test_pooling_and_unpooling_shapes() -> None:
    pos, batch, h = clouds()
    fine = PointLevel(h, pos, batch)
    coarse = Pooling(5, 8)(fine, 2)
    assert coarse.features.shape == (8 + 23, 8) and torch.bincount(coarse.batch).tolist() == [8, 23]
    assert Unpooling(8, 5, 6)(coarse, fine, 2).shape == (120, 6)


def test_hierarchy_is_invariant_and_permutation_equivariant() -> None:
    torch.manual_seed(0)
    model = HierarchicalEMNN(3, 16, 4, 2, level_dims=(8, 16, 16), orientation="o3")
    amplify_coordinate_heads(model)
    pos, edges, faces, batch = sample_meshes()
    h = torch.randn(pos.shape[0], 3)
    h_out, x_out = model(h, pos, edges, faces, batch)
    assert h_out.shape == (pos.shape[0], 4) and x_out.shape == pos.shape
    q = reflection([0.4, 0.1, -0.6, 0.3])
    h_rigid, x_rigid = model(h, pos @ q.T + 1.5, edges, faces, batch)
    assert (h_rigid - h_out).abs().max() < TOL and (x_rigid - (x_out @ q.T + 1.5)).abs().max() < TOL
    perm = permute_within_meshes(batch, torch.Generator().manual_seed(7))
    relabel = torch.empty_like(perm)
    relabel[perm] = torch.arange(len(perm))
    h_perm, _ = model(h[perm], pos[perm], relabel[edges], relabel[faces], batch[perm])
    assert (h_perm - h_out[perm]).abs().max() < TOL


# ------------------------------------------------------------------------------------------------ benchmark data
@pytest.mark.parametrize("subdivisions", [0, 1, 2])
def test_icosphere_is_a_closed_outward_sphere(subdivisions: int) -> None:
    vertices, faces = icosphere(subdivisions)
    assert len(vertices) == 10 * 4**subdivisions + 2 and len(faces) == 20 * 4**subdivisions
    assert np.allclose(np.linalg.norm(vertices, axis=1), 1.0)
    directed = faces[:, [[0, 1], [1, 2], [2, 0]]].reshape(-1, 2)
    assert len({tuple(e) for e in directed.tolist()}) == len(directed)  # consistent orientation: no edge twice
    assert {tuple(e) for e in directed.tolist()} == {tuple(e) for e in directed[:, ::-1].tolist()}  # closed
    a, b, c = (vertices[faces[:, r]] for r in range(3))
    assert np.einsum("ij,ij->i", a, np.cross(b, c)).sum() > 0  # positive signed volume: outward


def test_mesh_dataset_is_deterministic_and_poses_are_rigid() -> None:
    first, again, other = make_meshes(2, seed=3, subdivisions=1), make_meshes(2, seed=3, subdivisions=1), make_meshes(2, 4, 1)
    assert all(torch.equal(a, b) for a, b in zip(first, again)) and not torch.equal(first.pos, other.pos)
    assert first.pos.shape == (2 * len(SHAPES), 42, 3) and first.labels.tolist() == sorted(2 * list(range(len(SHAPES))))
    for group in ("so3", "o3"):
        posed = random_pose(first, group, seed=0)
        exact = "donot_use_mm_for_euclid_dist"
        assert torch.allclose(torch.cdist(posed.pos, posed.pos, compute_mode=exact),
                              torch.cdist(first.pos, first.pos, compute_mode=exact), atol=1e-5)  # fmt: skip
        centred, posed_centred = first.pos - first.pos.mean(1, keepdim=True), posed.pos - posed.pos.mean(1, keepdim=True)
        q = torch.linalg.lstsq(centred.double(), posed_centred.double()).solution
        dets = torch.linalg.det(q)
        assert torch.allclose(dets.abs(), torch.ones(len(dets), dtype=torch.float64), atol=1e-4)
        assert (dets > 0).all() if group == "so3" else (dets < 0).any()


@pytest.mark.parametrize("classifier", ["emnn_o3", "egnn"])
def test_equivariant_classifiers_are_pose_invariant(classifier: str) -> None:
    torch.manual_seed(0)
    model = EMNNClassifier(16, 2, 5, "o3") if classifier == "emnn_o3" else EGNNClassifier(16, 2, 5)
    amplify_coordinate_heads(model)
    meshes = make_meshes(1, seed=0, subdivisions=1)
    index = torch.arange(len(SHAPES))
    logits = model(collate(meshes, index, torch.device("cpu")))
    posed = model(collate(random_pose(meshes, "o3", seed=1), index, torch.device("cpu")))
    assert (posed - logits).abs().max() < TOL


def test_benchmark_runs_every_method_at_smoke_budget() -> None:
    for method in METHODS:
        result = run_method(method, PROFILES["smoke"], 0, EMNNMeshArgs())
        assert all(0.0 <= result[k] <= 1.0 for k in ("test_canonical", "test_so3", "test_o3", "train_o3"))
        assert result["train_time_s"] > 0 and math.isfinite(result["final_loss"])
