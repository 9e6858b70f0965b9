"""CSPNet: invariance to lattice rotations and reflections, origin shifts and periodic images, permutation
equivariance, independence of the crystals of a batch, the complete-graph edges, sizes of the published networks,
gradients and input validation."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import Tensor

from equivariant.cspnet import CSPNet, CSPNetConfig, CSPNetOutput, PeriodicFourierFeatures, crystal_edges

SMALL = CSPNetConfig(type_dim=5, hidden_dim=16, n_layers=2, n_frequencies=4, time_dim=8)
SMALL_SYMMCD = dataclasses.replace(
    SMALL, lattice_out_dim=6, condition_dim=7, condition_hidden_dim=8, condition_embed_dim=6, node_feature_dim=4,
    site_symmetry_rows=3, site_symmetry_classes=5, site_symmetry_rank=2,
)  # fmt: skip
FULL_RANK = dataclasses.replace(SMALL_SYMMCD, site_symmetry_rank=0)
CONFIGS = {"diffcsp": SMALL, "symmcd": SMALL_SYMMCD, "full_rank_site_symmetry": FULL_RANK}
BATCH = torch.tensor([0, 2, 1, 0, 2, 2, 0, 2])  # crystals of 3, 1 and 4 atoms, interleaved
NUM_CRYSTALS = 3


def make_inputs(config: CSPNetConfig, seed: int = 0) -> dict[str, Tensor]:
    """A float64 batch of three crystals with every input the config takes."""
    gen = torch.Generator().manual_seed(seed)
    n_atoms = BATCH.shape[0]
    lattice_noise = torch.randn(NUM_CRYSTALS, 3, 3, generator=gen, dtype=torch.float64)
    inputs = {
        "types": torch.randn(n_atoms, config.type_dim, generator=gen, dtype=torch.float64).softmax(-1),
        "frac_coords": torch.rand(n_atoms, 3, generator=gen, dtype=torch.float64),
        "lattices": 3 * torch.eye(3, dtype=torch.float64) + lattice_noise,  # well conditioned
        "batch": BATCH.clone(),
        "t": torch.tensor([3.0, 250.0, 900.0], dtype=torch.float64),
    }
    if config.condition_dim:
        inputs["condition"] = torch.randn(NUM_CRYSTALS, config.condition_dim, generator=gen, dtype=torch.float64)
    if config.node_feature_dim:
        inputs["node_features"] = torch.randn(n_atoms, config.node_feature_dim, generator=gen, dtype=torch.float64)
    return inputs


def make_net(config: CSPNetConfig) -> CSPNet:
    torch.manual_seed(0)
    return CSPNet(config).double()


def assert_outputs_close(actual: CSPNetOutput, expected: CSPNetOutput) -> None:
    for name, got, want in zip(CSPNetOutput._fields, actual, expected):
        if want is None:
            assert got is None, name
        else:
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9, msg=lambda m, name=name: f"{name}: {m}")


def random_orthogonal(seed: int, reflect: bool) -> Tensor:
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    q = q * torch.sign(torch.linalg.det(q))  # a rotation
    return q @ torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)) if reflect else q


@pytest.mark.parametrize("name", CONFIGS)
def test_shapes(name: str) -> None:
    config = CONFIGS[name]
    out = make_net(config)(**make_inputs(config))
    n_atoms = BATCH.shape[0]
    lattice_shape = (NUM_CRYSTALS, 3, 3) if config.lattice_out_dim == 9 else (NUM_CRYSTALS, config.lattice_out_dim)
    assert out.lattice.shape == lattice_shape
    assert out.coordinates.shape == (n_atoms, 3)
    assert out.types.shape == (n_atoms, config.type_dim)
    if config.site_symmetry_rows:
        assert out.site_symmetry.shape == (n_atoms, config.site_symmetry_rows, config.site_symmetry_classes)
    else:
        assert out.site_symmetry is None


@pytest.mark.parametrize("reflect", [False, True], ids=["rotation", "reflection"])
@pytest.mark.parametrize("name", CONFIGS)
def test_lattice_rotation_invariance(name: str, reflect: bool) -> None:
    """L → L Qᵀ per crystal (f unchanged): all outputs invariant, except DiffCSP's 3×3 lattice output, which → · Qᵀ."""
    config = CONFIGS[name]
    net, inputs = make_net(config), make_inputs(config)
    rotations = torch.stack([random_orthogonal(seed, reflect) for seed in range(NUM_CRYSTALS)])
    out = net(**inputs)
    turned = net(**{**inputs, "lattices": inputs["lattices"] @ rotations.transpose(1, 2)})
    if config.lattice_out_dim == 9:
        out = out._replace(lattice=out.lattice @ rotations.transpose(1, 2))
    assert_outputs_close(turned, out)


@pytest.mark.parametrize("name", CONFIGS)
def test_origin_shift_and_periodic_image_invariance(name: str) -> None:
    """f → (f + t_b) mod 1 with a shift t_b per crystal, and f → f + n_i with integer n_i per atom, change nothing."""
    config = CONFIGS[name]
    net, inputs = make_net(config), make_inputs(config)
    gen = torch.Generator().manual_seed(5)
    shifts = torch.rand(NUM_CRYSTALS, 3, generator=gen, dtype=torch.float64)[BATCH]
    images = torch.randint(-3, 4, (BATCH.shape[0], 3), generator=gen).to(torch.float64)
    out = net(**inputs)
    assert_outputs_close(net(**{**inputs, "frac_coords": (inputs["frac_coords"] + shifts) % 1.0}), out)
    assert_outputs_close(net(**{**inputs, "frac_coords": inputs["frac_coords"] + images}), out)


def test_absolute_coordinates_break_only_origin_shift_invariance() -> None:
    """SymmCD's ψ(f_i) input makes the outputs depend on the origin, but not on periodic images or lattice rotations."""
    config = dataclasses.replace(SMALL_SYMMCD, absolute_coordinates=True)
    net, inputs = make_net(config), make_inputs(config)
    out = net(**inputs)
    shifted = net(**{**inputs, "frac_coords": (inputs["frac_coords"] + 0.3) % 1.0})
    assert not torch.allclose(shifted.coordinates, out.coordinates)
    assert_outputs_close(net(**{**inputs, "frac_coords": inputs["frac_coords"] - 2.0}), out)
    rotations = torch.stack([random_orthogonal(seed, reflect=True) for seed in range(NUM_CRYSTALS)])
    assert_outputs_close(net(**{**inputs, "lattices": inputs["lattices"] @ rotations.transpose(1, 2)}), out)


@pytest.mark.parametrize("name", CONFIGS)
def test_permutation_equivariance(name: str) -> None:
    """Reordering the atoms (within and across crystals) reorders the per-atom outputs and leaves the lattice output."""
    config = CONFIGS[name]
    net, inputs = make_net(config), make_inputs(config)
    perm = torch.randperm(BATCH.shape[0], generator=torch.Generator().manual_seed(3))
    per_atom = ("types", "frac_coords", "batch", "node_features")
    permuted = net(**{key: value[perm] if key in per_atom else value for key, value in inputs.items()})
    out = net(**inputs)
    site_symmetry = None if out.site_symmetry is None else out.site_symmetry[perm]
    assert_outputs_close(permuted, CSPNetOutput(out.lattice, out.coordinates[perm], out.types[perm], site_symmetry))


@pytest.mark.parametrize("name", CONFIGS)
def test_crystals_of_a_batch_are_independent(name: str) -> None:
    """Changing every input of crystal 1 changes its outputs and no other crystal's."""
    config = CONFIGS[name]
    net, inputs = make_net(config), make_inputs(config)
    other = make_inputs(config, seed=1)
    changed = dict(inputs)
    atoms = BATCH == 1
    for key in ("types", "frac_coords", "node_features"):
        if key in inputs:
            changed[key] = torch.where(atoms.unsqueeze(-1), other[key], inputs[key])
    for key in ("lattices", "t", "condition"):
        if key in inputs:
            changed[key] = inputs[key].clone()
            changed[key][1] = other[key][1]
    out, out_changed = net(**inputs), net(**changed)
    for name_, before, after in zip(CSPNetOutput._fields, out, out_changed):
        if before is None:
            continue
        rows = torch.arange(NUM_CRYSTALS) != 1 if name_ == "lattice" else ~atoms
        torch.testing.assert_close(after[rows], before[rows], rtol=1e-12, atol=1e-12)
        assert not torch.allclose(after[~rows], before[~rows]), name_


def test_moving_one_atom_changes_its_whole_crystal() -> None:
    """The invariance tests are not vacuous: a relative move reaches every output of the crystal through the messages."""
    net, inputs = make_net(SMALL_SYMMCD), make_inputs(SMALL_SYMMCD)
    moved = inputs["frac_coords"].clone()
    moved[0] += torch.tensor([0.1, -0.2, 0.05], dtype=torch.float64)
    out, out_moved = net(**inputs), net(**{**inputs, "frac_coords": moved})
    crystal = BATCH == 0
    for before, after in ((out.coordinates, out_moved.coordinates), (out.types, out_moved.types)):
        assert ((after - before)[crystal].abs().amax(-1) > 1e-6).all()
    assert (out_moved.lattice[0] - out.lattice[0]).abs().max() > 1e-6


def test_edges_are_all_pairs_of_each_crystal_with_self_pairs() -> None:
    edges = crystal_edges(BATCH, NUM_CRYSTALS)
    expected = {(i, j) for i in range(len(BATCH)) for j in range(len(BATCH)) if BATCH[i] == BATCH[j]}
    assert edges.shape == (2, sum(n * n for n in (3, 1, 4)))
    assert set(map(tuple, edges.T.tolist())) == expected
    assert (edges[0].diff() >= 0).all()  # grouped by receiver


def test_messages_by_parts_equal_the_mlp_on_the_concatenated_input() -> None:
    """φ_m's first Linear, summed from per-atom, per-crystal and per-edge parts, is the reference's φ_m(cat(...))."""
    net, inputs = make_net(SMALL), make_inputs(SMALL)
    graph = net._graph(inputs["frac_coords"], inputs["lattices"], inputs["batch"])
    layer = net.layers[0]
    h = torch.randn(BATCH.shape[0], SMALL.hidden_dim, dtype=torch.float64)
    receiver, sender = graph.edges
    concatenated = torch.cat([h[receiver], h[sender], graph.lattice_gram[graph.edge_crystal], graph.fourier], dim=-1)
    torch.testing.assert_close(layer._messages(h, graph), layer.edge_mlp(concatenated))


def test_fourier_features_are_periodic_and_start_at_frequency_one() -> None:
    fourier = PeriodicFourierFeatures(3)
    d = torch.rand(10, 3, dtype=torch.float64)
    features = fourier(d)
    assert features.shape == (10, 18)
    torch.testing.assert_close(fourier(d + torch.tensor([1.0, -2.0, 5.0], dtype=torch.float64)), features)
    torch.testing.assert_close(features[:, 0], torch.sin(2 * torch.pi * d[:, 0]))  # axis 0, k = 1
    torch.testing.assert_close(features[:, 9 + 8], torch.cos(2 * torch.pi * 3 * d[:, 2]))  # cos, axis 2, k = 3


def test_diffcsp_preset_has_the_reference_parameter_count() -> None:
    """Parameters of jiaor17/DiffCSP's CSPNet (``diffcsp/pl_modules/cspnet.py``, hidden 512, 6 layers, 128 frequencies,
    100 types, time 256, layer norm on), counted layer by layer from the reference code."""

    def linear(n_in: int, n_out: int, bias: bool = True) -> int:
        return n_in * n_out + (n_out if bias else 0)

    hidden, fourier = 512, 6 * 128
    layer = (linear(2 * hidden + 9 + fourier, hidden) + linear(hidden, hidden)  # edge_mlp
             + linear(2 * hidden, hidden) + linear(hidden, hidden) + 2 * hidden)  # node_mlp, layer_norm  # fmt: skip
    reference = (linear(100, hidden) + linear(hidden + 256, hidden) + 6 * layer + 2 * hidden
                 + linear(hidden, 3, bias=False) + linear(hidden, 9, bias=False) + linear(hidden, 100))  # fmt: skip
    assert sum(p.numel() for p in CSPNet(CSPNetConfig.diffcsp()).parameters()) == reference


def test_gradients_reach_every_parameter() -> None:
    config = dataclasses.replace(SMALL_SYMMCD, absolute_coordinates=True)
    net, inputs = make_net(config), make_inputs(config)
    gen = torch.Generator().manual_seed(9)
    loss = sum((out * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum() for out in net(**inputs))
    loss.backward()
    silent = [name for name, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not silent


def test_float32_and_scalar_time() -> None:
    net = CSPNet(SMALL)
    inputs = {key: value.float() if value.is_floating_point() else value for key, value in make_inputs(SMALL).items()}
    out = net(**{**inputs, "t": torch.tensor(10.0)})
    torch.testing.assert_close(out.coordinates, net(**{**inputs, "t": torch.full((3,), 10.0)}).coordinates)
    assert out.coordinates.dtype == torch.float32


BAD_INPUTS = [
    ("frac_coords", lambda x: x[:, :2], r"frac_coords must have shape \(N, 3\), got \(8, 2\)"),
    ("lattices", lambda x: x[:, :2], r"lattices must have shape \(B, 3, 3\), got \(3, 2, 3\)"),
    ("types", lambda x: x[:, :4], r"types must have shape \(8, 5\), got \(8, 4\)"),
    ("batch", lambda x: x[:5], r"batch must be a \(8,\) int64 tensor of crystal indices, got torch.int64 \(5,\)"),
    ("batch", lambda x: x.int(), r"batch must be a \(8,\) int64 tensor .* got torch.int32"),
    ("batch", lambda x: x + 1, r"batch indexes crystals outside \[0, 3\)"),
    ("batch", lambda x: x.clamp(max=1), r"crystals \[2\] have no atoms"),
    ("t", lambda x: x[:2], r"t must have shape \(\) or \(3,\) for 3 lattices, got \(2,\)"),
    ("condition", lambda x: x[:, :3], r"condition must have shape \(3, 7\), got \(3, 3\)"),
    ("condition", lambda x: None, r"condition must have shape \(3, 7\), got None"),
    ("node_features", lambda x: x[:4], r"node_features must have shape \(8, 4\), got \(4, 4\)"),
]


@pytest.mark.parametrize(("key", "corrupt", "message"), BAD_INPUTS)
def test_mis_shaped_inputs_are_refused(key: str, corrupt, message: str) -> None:
    inputs = make_inputs(SMALL_SYMMCD)
    with pytest.raises(ValueError, match=message):
        make_net(SMALL_SYMMCD)(**{**inputs, key: corrupt(inputs[key])})


def test_inputs_the_config_lacks_are_refused() -> None:
    inputs = make_inputs(SMALL)
    with pytest.raises(ValueError, match=r"takes no condition \(condition dim 0\), got shape \(3, 2\)"):
        make_net(SMALL)(**inputs, condition=torch.zeros(3, 2, dtype=torch.float64))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("hidden_dim", 0, "hidden_dim must be a positive integer"), ("condition_dim", -1, "condition_dim must be a non-negative"),
     ("time_dim", 7, "time_dim must be even and at least 4"), ("n_layers", 2.0, "n_layers must be a positive integer")],
)  # fmt: skip
def test_bad_config_is_refused(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CSPNetConfig(**{field: value})
