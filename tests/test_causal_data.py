"""The synthetic pair data of `causal.data` with its SCMs (`causal.scm`) and mixings (`causal.mixing`): determinism,
counterfactual structure of the pairs, invertible well-conditioned mixing, the cache, the task registry."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from causal import data
from causal.graphs import descendants
from causal.identifiability import non_descendants
from causal.mixing import MAX_CONDITION, invertible_mlp, rotation, well_conditioned_matrix
from causal.scm import linear_scm
from core.cli import run_cli

TASKS = ["chain4-12-34.nonlinear.mlp", "diamond-23-4.linear.rotation", "er5-singletons.nonlinear.mlp.shifted"]


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path / "cache"))


def test_generation_is_deterministic_in_task_and_seed() -> None:
    first, again = data.generate_split(TASKS[0], "val", 0), data.generate_split(TASKS[0], "val", 0)
    for field in ("x", "x_tilde", "z", "z_tilde", "noise", "noise_tilde", "target_index"):
        np.testing.assert_array_equal(getattr(first, field), getattr(again, field))
    assert not np.allclose(first.z, data.generate_split(TASKS[0], "val", 1).z)
    assert not np.allclose(first.z[:100], data.generate_split(TASKS[0], "test", 0).z[:100])
    # the splits of one seed share the SCM and the mixing
    truth = data.ground_truth(TASKS[0], 0)
    test = data.generate_split(TASKS[0], "test", 0)
    np.testing.assert_allclose(truth.mixing(test.z), test.x, atol=1e-5)
    np.testing.assert_allclose(truth.mixing(first.z), first.x, atol=1e-5)


@pytest.mark.parametrize("name", TASKS)
def test_pairs_are_counterfactual(name: str) -> None:
    """Non-target noises are shared and target noises fresh; non-descendants of the targets keep their values and the
    targets and their descendants change."""
    pairs = data.generate_split(name, "val")
    adjacency = data.task(name).adjacency()
    assert pairs.family[0] == () and set(pairs.family[1:]) == set(data.task(name).family)
    masks = pairs.target_masks()
    np.testing.assert_array_equal(pairs.noise_tilde[~masks], pairs.noise[~masks])
    assert (pairs.noise_tilde[masks] != pairs.noise[masks]).all()
    for k, target in enumerate(pairs.family):
        rows = pairs.target_index == k
        kept = sorted(non_descendants(adjacency, target))
        changed = sorted(set(target) | descendants(adjacency, target))
        np.testing.assert_array_equal(pairs.z_tilde[rows][:, kept], pairs.z[rows][:, kept])
        if changed:
            assert (pairs.z_tilde[rows][:, changed] != pairs.z[rows][:, changed]).mean() > 0.99
        assert abs(rows.mean() - 1 / len(pairs.family)) < 0.03  # S uniform on the family ∪ {∅}


def test_intervened_latents_follow_the_intervention_law() -> None:
    for name, mean in [("chain4-1-2-34.linear.mlp", 0.0), ("chain4-1-2-34.linear.mlp.shifted", 2.0)]:
        pairs = data.generate_split(name, "train")
        values = pairs.z_tilde[pairs.target_masks()]
        assert abs(values.mean() - mean) < 0.03 and abs(values.std() - 1.0) < 0.03


def test_linear_weights_are_ilcm_bimodal() -> None:
    adjacency = np.triu(np.ones((30, 30), dtype=bool), k=1)
    scm = linear_scm(adjacency, np.random.default_rng(0))
    weights = np.concatenate([m.layers[0][0][:, 0] for m in scm.mechanisms if m.layers])
    assert abs(np.abs(weights).mean() - 1.0) < 0.05 and abs(np.abs(weights).std() - 0.3) < 0.03
    assert 0.45 < (weights > 0).mean() < 0.55


@pytest.mark.parametrize("name", TASKS)
def test_mixing_is_invertible(name: str) -> None:
    truth, pairs = data.ground_truth(name), data.generate_split(name, "val")
    assert pairs.x.shape == (len(pairs), 16)
    np.testing.assert_allclose(truth.mixing.inverse(pairs.x), pairs.z, atol=1e-3)
    np.testing.assert_allclose(truth.mixing.inverse(pairs.x_tilde), pairs.z_tilde, atol=1e-3)


def test_mixing_conditioning_is_bounded() -> None:
    rng = np.random.default_rng(3)
    mlp = invertible_mlp(4, rng)
    assert len(mlp.weights) == 3 and max(mlp.condition_numbers()) <= MAX_CONDITION
    assert max(np.linalg.cond(well_conditioned_matrix(16, rng)) for _ in range(20)) <= MAX_CONDITION
    # the mixing is nonlinear: a linear fit of x on z leaves a clear residual
    z = rng.standard_normal((4000, 4))
    x = mlp(z)
    design = np.c_[z, np.ones(len(z))]
    residual = x - design @ np.linalg.lstsq(design, x, rcond=None)[0]
    assert residual.var() > 0.05 * x.var()
    rotated = rotation(4, rng)
    (matrix,) = rotated.weights
    np.testing.assert_allclose(matrix @ matrix.T, np.eye(16), atol=1e-10)
    assert np.isclose(np.linalg.det(matrix), 1.0)
    with pytest.raises(ValueError, match="raise the bound"):
        well_conditioned_matrix(16, rng, max_condition=1.5, max_tries=20)


def test_cache_round_trip_without_regenerating(monkeypatch) -> None:
    pairs = data.load_split(TASKS[1], "val", seed=2)
    path = data.cache_path(TASKS[1], "val", seed=2)
    assert path.is_file() and path.parent == data.cache_dir()

    def fail(*args, **kwargs):
        raise AssertionError("regenerated although cached")

    monkeypatch.setattr(data, "generate_split", fail)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cached = data.load_split(TASKS[1], "val", seed=2)
    for field in ("x", "z", "noise_tilde", "target_index"):
        np.testing.assert_array_equal(getattr(cached, field), getattr(pairs, field))
    assert cached.family == pairs.family
    with np.load(path, allow_pickle=False) as stored:  # no pickled objects inside
        assert stored["x"].dtype == np.float32


def test_corrupt_or_mismatched_cache_is_rebuilt(monkeypatch) -> None:
    pairs = data.load_split(TASKS[1], "val")
    path = data.cache_path(TASKS[1], "val")
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.warns(UserWarning, match="does not load"):
        rebuilt = data.load_split(TASKS[1], "val")
    np.testing.assert_array_equal(rebuilt.x, pairs.x)
    monkeypatch.setattr(data, "GENERATOR_VERSION", "causal-pairs-test")
    with pytest.warns(UserWarning, match="its key"):
        data.load_split(TASKS[1], "val")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data.load_split(TASKS[1], "val")  # rewritten under the new key


def test_registry_names_and_did_you_mean() -> None:
    assert data.resolve_task("F2.linear.mlp") == "chain4-12-34.linear.mlp"
    assert data.resolve_task(" P1.NonLinear.Rotation.shifted") == "chain3-2.nonlinear.rotation.shifted"
    spec = data.task("er.linear.mlp")
    assert (spec.graph, spec.num_train, spec.num_val, spec.num_test, spec.dim_x) == ("er5-p0.5-s0", 25_000, 5_000, 5_000, 16)
    assert data.task("f4.linear.mlp").family == ((1, 2), (3,))
    assert len(data.TASKS) == 7 * 2 * 2 * 2
    with pytest.raises(ValueError, match=r"did you mean chain4-12-34\.nonlinear\.mlp"):
        data.resolve_task("chain4-12-34.nonlinaer.mlp")
    with pytest.raises(ValueError, match="did you mean val"):
        data.load_split(TASKS[0], "vall")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mechanism must be one of"):
        data.TaskSpec("x", "chain3", ((0,),), "quadratic", "mlp")  # type: ignore[arg-type]


def test_cli_writes_and_lists(capsys: pytest.CaptureFixture[str]) -> None:
    data.main(data.WriteArgs(task="P2.linear.rotation", seed=1))
    out = capsys.readouterr().out
    assert out.count("chain3-2-23.linear.rotation-seed1-") == 3
    assert data.cache_path("P2.linear.rotation", "test", 1).is_file()
    data.main(data.ListArgs())
    assert "chain3-2-23.nonlinear.mlp" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="unknown task"):
        run_cli(lambda: data.main(data.WriteArgs(task="F9.linear.mlp")))
