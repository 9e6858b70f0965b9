"""benchmarks/pinn_symmetry.py: a smoke grid writes records and results, resumes without training again, and the
summary compares each method with the plain PINN."""

from __future__ import annotations

import json

import pytest

import agents.sweep.engine
import benchmarks.common
from benchmarks import pinn_symmetry, report
from benchmarks.pinn_symmetry import PINNBenchArgs, summarise


def test_smoke_grid_writes_records_results_and_resumes(tmp_path, monkeypatch, local_ray):
    monkeypatch.setattr(benchmarks.common, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(pinn_symmetry, "RESULTS_DIR", tmp_path / "results")
    args = PINNBenchArgs(problems=["Heat"], seeds=[0], profile="smoke", work_dir=tmp_path / "work", name="pinn_test")
    pinn_symmetry.main(args)
    records = sorted(path.name for path in (tmp_path / "work" / "smoke" / "records").iterdir())
    assert records == [f"Heat__ics2__{method}__seed0.json" for method in ("augmentation", "pinn", "symmetry")]
    result = json.loads((tmp_path / "results" / "pinn_test.json").read_text())
    entry = result["summary"]["Heat"]["2"]
    assert set(entry) == {"pinn", "symmetry", "augmentation"} and entry["symmetry"]["ratio_to_pinn"] > 0
    by_method = {run["method"]: run for run in result["runs"]}
    assert [point["step"] for point in by_method["pinn"]["curve"]] == [2, 4]
    assert by_method["symmetry"]["config"]["symmetry_weight"] == 1.0
    assert by_method["augmentation"]["config"]["augment_copies"] == 3
    monkeypatch.setattr(report, "DOCS", tmp_path / "docs")
    monkeypatch.setattr(report, "FIGURES", tmp_path / "docs" / "figures")
    section = report.pinn_symmetry(result)
    assert "| Heat | 2 |" in section and (tmp_path / "docs" / "figures" / "pinn_symmetry_smoke.png").is_file()

    def must_not_train(*_args, **_kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(agents.sweep.engine, "_fit", must_not_train)
    for path in (tmp_path / "work" / "smoke" / "records").iterdir():
        path.unlink()  # a fresh clone: the records come back from the committed results file
    pinn_symmetry.main(args)
    assert json.loads((tmp_path / "results" / "pinn_test.json").read_text())["runs"] == result["runs"]


def test_summary_ratio_and_unknown_method():
    trials = [("pinn", 0, 0.4, 1.0), ("pinn", 1, 0.6, 3.0), ("symmetry", 0, 0.25, 5.0)]
    runs = [{"problem": "Heat", "budget": 2, "method": method, "seed": seed, "final": {"relative_l2": value},
             "steps": 10, "train_wall_time_s": seconds} for method, seed, value, seconds in trials]  # fmt: skip
    entry = summarise(runs)["Heat"]["2"]
    assert entry["pinn"]["mean"] == pytest.approx(0.5) and entry["symmetry"]["ratio_to_pinn"] == pytest.approx(0.5)
    assert entry["pinn"]["seconds_per_step"] == pytest.approx(0.2) and entry["symmetry"]["seconds_per_step"] == 0.5
    with pytest.raises(ValueError, match="unknown method"):
        pinn_symmetry.method_overrides("lie", pinn_symmetry.PROFILES["smoke"])
