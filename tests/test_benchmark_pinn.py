"""benchmarks/pinn_symmetry.py: a smoke grid writes records and results, resumes without training again, and the
summary compares each method with the plain PINN."""

from __future__ import annotations

import json

import pytest

import runner.sweep.engine
from benchmarks import pinn_symmetry
from benchmarks.pinn_symmetry import PINNBenchArgs, summarise


def test_smoke_grid_writes_records_results_and_resumes(tmp_path, monkeypatch, local_ray):
    args = PINNBenchArgs(problems=["Heat"], seeds=[0], profile="smoke", work_dir=tmp_path / "work", name="pinn_test",
                         results_dir=tmp_path / "results", allow_dirty=True)  # fmt: skip
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
    section = pinn_symmetry.render(result, tmp_path / "docs" / "figures")
    assert "| Heat | 2 |" in section and (tmp_path / "docs" / "figures" / "pinn_symmetry_smoke.png").is_file()

    def must_not_train(*_args, **_kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(runner.sweep.engine, "_fit", must_not_train)
    for path in (tmp_path / "work" / "smoke" / "records").iterdir():
        path.unlink()  # a fresh clone: the records come back from the committed results file
    pinn_symmetry.main(args)
    assert json.loads((tmp_path / "results" / "pinn_test.json").read_text())["runs"] == result["runs"]


def test_summary_ratio_weight_labels_and_unknown_method():
    trials = [("pinn", 0, 0.4, 1.0, 0.0), ("pinn", 1, 0.6, 3.0, 0.0), ("symmetry", 0, 0.25, 5.0, 1.0),
              ("symmetry", 0, 0.75, 5.0, 10.0)]  # fmt: skip
    runs = [{"problem": "Heat", "budget": 2, "method": method, "seed": seed, "final": {"relative_l2": value},
             "steps": 10, "train_wall_time_s": seconds, "config": {"symmetry_weight": weight}}
            for method, seed, value, seconds, weight in trials]  # fmt: skip
    profile = pinn_symmetry.PROFILES["smoke"]
    entry = summarise(runs, profile)["Heat"]["2"]
    assert entry["pinn"]["mean"] == pytest.approx(0.5) and entry["symmetry"]["ratio_to_pinn"] == pytest.approx(0.5)
    assert entry["symmetry_w10"]["ratio_to_pinn"] == pytest.approx(1.5)  # another weight is its own row
    assert entry["symmetry_w10"]["symmetry_weight"] == 10.0 and entry["pinn"]["symmetry_weight"] == 0.0
    assert entry["pinn"]["seconds_per_step"] == pytest.approx(0.2) and entry["symmetry"]["seconds_per_step"] == 0.5
    with pytest.raises(ValueError, match="unknown method"):
        pinn_symmetry.method_overrides("lie", profile, 1.0)


def test_the_weight_sweep_adds_symmetry_trials_at_the_smallest_budget_only(monkeypatch):
    captured = {}

    def capture(grid, _resources):
        captured["trials"] = grid.trials
        return []

    monkeypatch.setattr(pinn_symmetry, "run_grid", capture)
    profile = pinn_symmetry.PROFILES["cpu"]
    pinn_symmetry.main(PINNBenchArgs(problems=["Heat"], seeds=[0]))
    names = {trial.name for trial in captured["trials"]}
    extra = {f"Heat__ics{min(profile.budgets)}__symmetry_w{w:g}__seed0" for w in profile.weight_sweep}
    assert extra and extra <= names and len(names) == len(profile.budgets) * len(pinn_symmetry.METHODS) + len(extra)
