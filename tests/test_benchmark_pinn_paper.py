"""benchmarks/pinn_paper.py: a smoke grid of both studies runs end to end and renders its tables and verdict; each
arm's settings (fixed collocation sets of N_r, 5 N_r for the larger control, the controls' weights); the verdict
reads the seeds' spread and the controls."""

from __future__ import annotations

import json

import pytest

from benchmarks import pinn_paper
from benchmarks.pinn_paper import PaperBenchArgs, arm_settings, paper_verdict, summarise


def test_smoke_grid_runs_both_studies_and_renders(tmp_path, trials_in_this_process):
    args = PaperBenchArgs(problems=["Heat"], seeds=[0], profile="smoke", arms=["plain", "classical", "equivariance"],
                          work_dir=tmp_path / "work", name="paper_test", results_dir=tmp_path / "results",
                          allow_dirty=True)  # fmt: skip
    pinn_paper.main(args)
    records = {path.stem for path in (tmp_path / "work" / "smoke" / "records").iterdir()}
    assert records == {"Heat__paper__nr16__plain__seed0", "Heat__paper__nr16__classical__seed0",
                       "Heat__equivariance__ics2__plain__seed0", "Heat__equivariance__ics2__equivariance__seed0"}  # fmt: skip
    result = json.loads((tmp_path / "results" / "paper_test.json").read_text())
    assert all(run["final"]["mse"] > 0 for run in result["runs"])
    assert result["summary"]["paper"]["Heat"]["16"]["classical"]["mse"]["ratio_to_plain"] > 0
    section = pinn_paper.render(result, tmp_path / "figures")
    assert "| Heat | 16 |" in section and "| Heat | 2 |" in section and "**Verdict.**" in section


def test_each_arm_sets_its_knobs():
    profile = pinn_paper.PROFILES["cpu"]
    paper = {arm: arm_settings("paper", "Heat", 500, arm, profile) for arm in pinn_paper.ARMS["paper"]}
    assert all(s["collocation"] == "fixed" and s["train_initial_conditions"] == 16 for s in paper.values())
    assert paper["plain"]["residual_points_per_ic"] == 500 and paper["plain_5x"]["residual_points_per_ic"] == 2_500
    assert paper["classical"]["symmetry_form"] == "classical" and paper["evolutionary"]["symmetry_form"] == "evolutionary"
    assert paper["gpinn"]["gradient_weight"] == paper["classical"]["symmetry_weight"] == profile.symmetry_weight
    reweighted = paper["reweighted"]  # the classical arm's loss in expectation: κ = symmetry weight / residual weight
    assert reweighted["residual_reweighting"] == pytest.approx(profile.symmetry_weight / reweighted["residual_weight"])
    both = arm_settings("equivariance", "Burgers", 4, "equivariance_augmentation", profile)
    assert both["train_initial_conditions"] == 4 and both["equivariance_weight"] > 0 and both["augment_copies"] > 0
    assert "collocation" not in both  # fresh points every step, as in benchmarks.pinn_symmetry
    with pytest.raises(ValueError, match="unknown arm"):
        arm_settings("paper", "Heat", 500, "equivariance", profile)


def entry(mse: float, spread: float = 0.01) -> dict:
    return {"mse": {"mean": mse, "std": spread, "ratio_to_plain": mse}}


def test_the_verdict_needs_a_gain_beyond_the_spread_and_names_matching_controls():
    runs = [{"study": "paper", "problem": "Heat", "level": 500, "arm": arm, "seed": seed, "steps": 10,
             "train_wall_time_s": 1.0, "final": {"mse": mse + 0.01 * seed, "relative_l2": 0.5, "relative_l2_initial": 0.4}}
            for arm, mse in (("plain", 1.0), ("classical", 0.5), ("evolutionary", 1.0), ("reweighted", 0.5))
            for seed in (0, 1, 2)]  # fmt: skip
    by_level = summarise(runs)["paper"]["Heat"]
    assert by_level["500"]["classical"]["mse"]["ratio_to_plain"] == pytest.approx(0.51 / 1.01)
    verdict = paper_verdict("Heat", by_level)
    assert "not from symmetry" in verdict and "matched by residual × (1 + κΣλ²)" in verdict
    assert "+ evolutionary" not in verdict  # within the seeds' spread: no gain
    assert "**reproduced**" in paper_verdict("Heat", {"500": {"plain": entry(1.0), "classical": entry(0.5),
                                                             "gpinn": entry(0.9)}})  # fmt: skip
    assert "not reproduced" in paper_verdict("Heat", {"500": {"plain": entry(1.0), "classical": entry(0.99)}})
