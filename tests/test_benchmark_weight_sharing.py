"""benchmarks/weight_sharing.py: a smoke grid writes every arm and renders; the prox shares first-layer weights; the
shuffled variant is one fixed pixel permutation of the shifted one, the same on every split."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from benchmarks import weight_sharing
from benchmarks.weight_sharing import (
    ARMS,
    PROFILES,
    VARIANTS,
    WeightSharingArgs,
    digit_splits,
    locality,
    pixel_permutation,
    to_image_layout,
    train_run,
)


def test_smoke_grid_writes_every_arm_and_renders(tmp_path, trials_in_this_process):
    args = WeightSharingArgs(seeds=[0], profile="smoke", work_dir=tmp_path / "work", name="ws_test",
                             results_dir=tmp_path / "results", allow_dirty=True)  # fmt: skip
    weight_sharing.main(args)
    result = json.loads((tmp_path / "results" / "ws_test.json").read_text())
    assert {(run["variant"], run["arm"]) for run in result["runs"]} == {(v, a) for v in VARIANTS for a in ARMS}
    assert all(set(sizes["32"]) == set(ARMS) for sizes in result["summary"].values())
    assert set(result["targets"]) == {"shuffled_margins", "shifted_gap_closed", "filters"}
    section = weight_sharing.render(result, tmp_path / "docs" / "figures")
    assert section.startswith("## Weight-sharing regularisation") and "| shuffled | 32 |" in section
    assert "**Verdict against the targets**" in section
    assert (tmp_path / "docs" / "figures" / "weight_sharing_smoke.png").is_file()


def test_the_prox_leaves_fewer_distinct_first_layer_weights_than_plain_fc():
    profile = replace(PROFILES["smoke"], steps=10)
    config = {"variant": "shuffled", "size": 32, "seed": 0, "profile": profile, "device": "cpu"}
    plain = train_run(config | {"arm": "fc", "strength": 0.0})
    shared = train_run(config | {"arm": "fc_prox", "strength": 1.0})
    assert plain["distinct_per_row"] > 63  # random weights: (almost) all 64 distinct
    assert shared["distinct_per_row"] < plain["distinct_per_row"] / 2
    assert shared["distinct_in_layer"] < plain["distinct_in_layer"]


def test_the_pixel_permutation_is_fixed_and_the_same_on_every_split():
    permutation = pixel_permutation()
    assert np.array_equal(permutation, pixel_permutation()) and sorted(permutation) == list(range(64))
    assert not np.array_equal(permutation, np.arange(64))
    shifted, shuffled = digit_splits("shifted", 64, 64), digit_splits("shuffled", 64, 64)
    assert shifted.permutation is None and np.array_equal(shuffled.permutation, permutation)
    for plain, permuted in ((shifted.train, shuffled.train), (shifted.validation, shuffled.validation),
                            (shifted.test, shuffled.test)):  # fmt: skip
        assert np.array_equal(permuted[0].numpy(), plain[0].numpy()[:, permutation])
        assert np.array_equal(permuted[1].numpy(), plain[1].numpy())
    images = to_image_layout(shuffled.test[0].numpy(), permutation)  # back to the original pixel order
    assert np.array_equal(images, shifted.test[0].numpy().reshape(-1, 8, 8))


def test_locality_is_one_for_a_3x3_kernel_on_a_constant_background_and_low_for_noise():
    kernel = np.full((1, 8, 8), 0.5)
    kernel[0, 7, 0:2], kernel[0, 0, 0:2], kernel[0, 1, 7] = 2.0, -1.0, 3.0  # a 3 x 3 window across the wrap-around
    assert locality(kernel)[0] == pytest.approx(1.0)
    noise = np.random.default_rng(0).normal(size=(200, 8, 8))
    assert locality(noise).mean() < 0.35
    assert np.isnan(locality(np.zeros((1, 8, 8))))[0]
