"""benchmarks/canonical.py: the tiny profile end to end on DW-4 (runs, interleaved timing, targets, restoring)."""

from __future__ import annotations

import json

import pytest

import runner.sweep.engine
from benchmarks import canonical
from samplers.energies import boltzmann_data_dir

needs_data = pytest.mark.skipif(
    not (boltzmann_data_dir() / "dw4_train.npy").is_file(), reason="DW-4 reference data (shared/data/boltzmann) not present"
)


@needs_data
def test_tiny_benchmark_times_modes_interleaved_and_restores(tmp_path, monkeypatch, local_ray):
    args = canonical.CanonicalBenchArgs(tasks=["DW4"], profile="tiny", device="cpu", work_dir=tmp_path / "work",
                                        name="canonical_test", results_dir=tmp_path / "results", allow_dirty=True)  # fmt: skip
    canonical.main(args)
    result = json.loads((tmp_path / "results" / "canonical_test.json").read_text())
    assert sorted(r["mode"] for r in result["runs"]) == sorted(canonical.MODES)
    first = result["runs"][0]
    assert canonical.CanonicalDiffusion.load(first["model_path"]).num_timesteps == first["steps"]  # saved for resampling
    timing = result["sampling_interleaved"]["DW4"]
    rounds = canonical.PROFILES["tiny"].timing_rounds
    assert set(timing["s_per_1000"]) == set(canonical.MODES)
    assert all(len(v) == rounds and min(v) > 0 for v in timing["s_per_1000"].values())
    speed = next(t for t in result["targets"] if "speedup" in t)
    medians = timing["median_s_per_1000"]
    assert speed["timing"] == "interleaved" and speed["speedup"] == pytest.approx(
        medians["equivariant"] / medians["canonical"]
    )

    def must_not_run(*_args, **_kwargs):
        raise AssertionError("finished work was done again")

    for path in sorted((tmp_path / "work").rglob("*.json")):
        path.unlink()  # a fresh clone: everything comes back from the results file
    monkeypatch.setattr(runner.sweep.engine, "_fit", must_not_run)
    monkeypatch.setattr(canonical, "interleaved_sampling_times", must_not_run)
    monkeypatch.setattr(canonical, "_metrics", must_not_run)
    canonical.main(args)
    again = json.loads((tmp_path / "results" / "canonical_test.json").read_text())
    assert again["runs"] == result["runs"] and again["sampling_interleaved"] == result["sampling_interleaved"]
