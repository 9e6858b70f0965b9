"""benchmarks/crystals.py: a smoke grid on the tiny crystal data trains, samples and evaluates both models, and its
section renders the table, the targets and both figures."""

from __future__ import annotations

import json

from test_crystal_models import tiny_crystal_root, tiny_crystals  # noqa: F401 (fixtures)

from benchmarks import crystals
from benchmarks.crystals import MODELS, CrystalArgs, summarize, targets


def test_smoke_grid_runs_both_models_and_renders(tiny_crystals, tmp_path, trials_in_this_process):  # noqa: F811
    args = CrystalArgs(profile="smoke", seeds=[0], work_dir=tmp_path / "work", name="crystals_test",
                       results_dir=tmp_path / "results", allow_dirty=True)  # fmt: skip
    crystals.main(args)
    result = json.loads((tmp_path / "results" / "crystals_test.json").read_text())
    assert {(run["env"], run["algo"]) for run in result["runs"]} == {("Carbon24", model) for model in MODELS}
    for run in result["runs"]:
        assert run["samples"]["requested"] == 4 and run["parameters"] > 0 and run["num_timesteps"] == 3
        assert len(run["example_cifs"]) == min(3, run["samples"]["decoded"])
    cells = result["summary"]["Carbon24"]
    assert cells["symmcd"]["parameters"] > cells["diffcsp"]["parameters"]  # the group and site-symmetry inputs
    assert cells["diffcsp"]["space_group_match"] is None and cells["symmcd"]["space_group_match"] is not None
    assert len(targets(cells)) == 7
    section = crystals.render(result, tmp_path / "docs" / "figures")
    assert section.startswith("## SymmCD vs DiffCSP") and "| Carbon24 | test set |" in section
    assert "Targets (Carbon24" in section
    for figure in ("crystals_space_groups.png", "crystals_examples.png"):
        assert (tmp_path / "docs" / "figures" / figure).is_file()


def test_a_run_in_which_nothing_decoded_counts_as_invalid_not_as_missing():
    metrics = {"struct_valid": 1.0, "comp_valid": 1.0, "valid": 1.0, "cov_recall": 0.5, "cov_precision": 1.0,
               "non_p1": 1.0, "space_group_counts": {"221": 4}, "reference_space_group_counts": {"221": 2},
               "reference_non_p1": 1.0, "reference_num_space_groups": 1,
               "reference_num_space_groups_same_size": 1.0}  # fmt: skip
    samples = {"decode_success_rate": 1.0, "nodes_per_crystal": 5.0}
    runs = [{"env": "Perov5", "algo": "diffcsp", "seed": 0, "train_wall_time_s": 60.0, "samples": samples,
             "metrics": metrics},
            {"env": "Perov5", "algo": "diffcsp", "seed": 1, "train_wall_time_s": 60.0,
             "samples": {"decode_success_rate": 0.0, "nodes_per_crystal": 5.0}, "metrics": None}]  # fmt: skip
    cell = summarize(runs)["Perov5"]["diffcsp"]
    assert cell["seeds"] == 2 and cell["struct_valid"]["mean"] == 0.5 and cell["cov_precision"]["mean"] == 0.5
    assert cell["cov_recall"]["mean"] == 0.5 and cell["decode_success_rate"]["mean"] == 0.5  # recall: from seed 0 only
