"""benchmarks/equivariant.py (tiny runs, records, resuming, sample-efficiency measures) and benchmarks/egnn_throughput.py."""

from __future__ import annotations

import json
import math

import pytest
import torch

import runner.sweep.engine
from benchmarks import equivariant
from benchmarks.egnn_throughput import SYSTEMS, EGNNThroughputArgs, measure_system, with_concatenated_edge_input
from benchmarks.equivariant import EquivariantBenchArgs, RunKey, sample_efficiency, trailing_mean, train_run
from equivariant.egnn import EGNN


def test_smoke_profile_writes_records_results_and_resumes(tmp_path, monkeypatch, local_ray):
    args = EquivariantBenchArgs(profile="smoke", seeds=[0], work_dir=tmp_path / "work", name="equivariant_test",
                                results_dir=tmp_path / "results", allow_dirty=True)  # fmt: skip
    equivariant.main(args)
    records = sorted(path.name for path in (tmp_path / "work" / "smoke" / "records").iterdir())
    assert records == ["sac__egnn_features__seed0.json", "sac__equivariant__seed0.json", "sac__mlp__seed0.json"]

    result = json.loads((tmp_path / "results" / "equivariant_test.json").read_text())
    profile = equivariant.PROFILES["smoke"]
    steps = list(range(profile.eval_freq, profile.steps + 1, profile.eval_freq))
    for variant in equivariant.VARIANTS:
        entry = result["summary"]["sac"][variant]
        assert entry["eval_timesteps"] == steps and entry["seeds"] == [0]
        assert all(0.0 <= rate <= 1.0 for rate in entry["success_mean"])
        assert all(math.isfinite(value) for value in entry["return_mean"])
    assert set(result["sample_efficiency"]["sac"]) == {"egnn_features", "equivariant"}
    assert result["profile_config"]["egnn"]["hidden_dim"] == profile.egnn.hidden_dim

    def must_not_train(*_args, **_kwargs):
        raise AssertionError("a finished run was trained again")

    fit = runner.sweep.engine._fit
    monkeypatch.setattr(runner.sweep.engine, "_fit", must_not_train)
    equivariant.main(args)  # every record exists: only the results are rebuilt
    for path in (tmp_path / "work" / "smoke" / "records").iterdir():
        path.unlink()  # a fresh clone: the records come back from the committed results file
    equivariant.main(args)
    assert json.loads((tmp_path / "results" / "equivariant_test.json").read_text())["runs"] == result["runs"]

    monkeypatch.setattr(runner.sweep.engine, "_fit", fit)
    equivariant.main(EquivariantBenchArgs(**{**vars(args), "variants": ["mlp"], "force": True}))  # only mlp again
    rerun = {run["variant"]: run for run in json.loads((tmp_path / "results" / "equivariant_test.json").read_text())["runs"]}
    before = {run["variant"]: run for run in result["runs"]}
    assert rerun["mlp"]["train_wall_time_s"] != before["mlp"]["train_wall_time_s"]
    assert all(rerun[variant] == before[variant] for variant in ("egnn_features", "equivariant"))


def test_sample_efficiency_on_known_curves():
    assert trailing_mean([1.0, 2.0, 3.0, 4.0], 3).tolist() == [2.0, 3.0]
    assert trailing_mean([1.0, 2.0], 3).tolist() == [1.5]
    steps = [100, 200, 300, 400, 500]
    mlp = {"eval_timesteps": steps, "return_mean": [-10, -9, -8, -7, -6], "success_mean": [0, 0, 0, 0, 0.3]}
    fast = {"eval_timesteps": steps, "return_mean": [-10, -6, -6, -6, -5], "success_mean": [0, 0, 1, 1, 1]}
    slow = {"eval_timesteps": steps, "return_mean": [-20, -20, -20, -20, -20], "success_mean": [0] * 5}
    result = sample_efficiency({"sac": {"mlp": mlp, "equivariant": fast, "egnn_features": slow}}, learning_starts=150)["sac"]
    assert result["equivariant"]["ratio_cap"] == pytest.approx(500 / 400)  # first window after 150 steps: 200-400
    # MLP end return: mean of -8, -7, -6 = -7; the fast curve's 3-evaluation means -7.33, -6, -5.67 reach it at 400.
    assert result["equivariant"]["mlp_end_return"] == pytest.approx(-7.0)
    assert result["equivariant"]["steps_to_mlp_end"] == 400
    assert result["equivariant"]["sample_efficiency_ratio"] == pytest.approx(500 / 400)
    assert result["equivariant"]["end_return_gap"] == pytest.approx(-17 / 3 + 7)
    assert result["equivariant"]["end_success_gap"] == pytest.approx(1.0 - 0.1)
    assert result["egnn_features"]["steps_to_mlp_end"] is None and result["egnn_features"]["sample_efficiency_ratio"] is None


def test_dqs_cannot_train_the_equivariant_policy(tmp_path):
    with pytest.raises(ValueError, match="it is a SAC policy"):
        train_run(RunKey("dqs", "equivariant", 0), equivariant.PROFILES["smoke"], tmp_path)


def test_egnn_throughput_split_matches_concatenated_and_measures():
    torch.manual_seed(0)
    model = EGNN(4, 8, None, 2, n_nodes=5)
    clone = with_concatenated_edge_input(model)
    h, x = torch.randn(3, 5, 4), torch.randn(3, 5, 3)
    for ours, reference in zip(model(h, x), clone(h, x)):
        torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
    pytest.importorskip("egnn_pytorch", reason="egnn-pytorch is an optional benchmark dependency: pip install '.[bench]'")
    row = measure_system("dw4", EGNNThroughputArgs(hidden_dim=8, repeats=1))
    assert set(row["median_samples_per_s"]) == {"ours", "ours_concatenated", "egnn_pytorch"}
    assert row["batch"] == SYSTEMS["dw4"].batch and row["max_abs_diff_split_vs_concatenated"] < 1e-5
    assert row["parameters"]["ours"] == row["parameters"]["ours_concatenated"]
