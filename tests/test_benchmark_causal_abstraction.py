"""benchmarks/causal_abstraction.py: the smoke grid trains every learner and fits PCA-ICA on P2, scores them against
the predicted abstraction, and its section renders the tables, the targets and the R1-vs-R0 verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import causal_abstraction
from benchmarks.causal_abstraction import MODELS, CausalArgs, meets


def test_smoke_grid_runs_every_model_and_renders(tmp_path, monkeypatch, trials_in_this_process) -> None:
    monkeypatch.setenv("CAUSAL_CACHE_DIR", str(tmp_path / "cache"))
    args = CausalArgs(profile="smoke", seeds=[0], work_dir=tmp_path / "work", name="causal_test",
                      results_dir=tmp_path / "results", allow_dirty=True)  # fmt: skip
    causal_abstraction.main(args)
    result = json.loads((tmp_path / "results" / "causal_test.json").read_text())
    assert {run["algo"] for run in result["runs"]} == set(MODELS)
    assert [run["ica_converged"] for run in result["runs"] if run["algo"] == "pca-ica"] == [False]  # Gaussian latents
    cells = result["summary"]["P2"]["linear"]
    assert set(cells) == set(MODELS)
    for model, cell in cells.items():
        assert set(cell["blocks"]) == {"{z1}", "{z2,z3}"} and set(cell["safe"]) == {"{z1}", "{z2}"}
        assert (cell["target_jaccard"][0] is None) == (model in ("betavae", "ilcm-oracle", "pca-ica"))
    assert len(cells) == 7
    assert [target for target, _, _ in result["targets"]] == [
        f"P2 linear: {model} I ≥ 0.9 and Λ ≤ 0.05 on every R0 set, 1/1 seeds" for model in ("ilcm", "ilcm-others")
    ]
    others = next(run for run in result["runs"] if run["algo"] == "ilcm-others")
    assert "context: others" in (Path(others["run_dir"]) / "config.yaml").read_text()
    section = causal_abstraction.render(result, tmp_path / "figures")
    assert section.startswith("## Causal abstractions from contrastive pairs")
    assert "Predicted: R1 blocks {z1}, {z2,z3}; R0 sets {z1}, {z2}." in section
    assert "| linear | pca-ica | 1 |" in section and "not measured (P1 and P2 both needed)" in section


def test_the_criterion_needs_every_set_in_every_seed() -> None:
    good = {"informativeness": [0.95, 0.97], "leakage": [0.01, 0.04]}
    assert meets({"safe": {"{z1}": good}}) and meets({})
    assert not meets({"safe": {"{z1}": good, "{z2}": {"informativeness": [0.95, 0.89], "leakage": [0.0, 0.0]}}})
    with pytest.raises(SystemExit, match="unknown models"):
        causal_abstraction.causal_trials(CausalArgs(models=["ica"]), causal_abstraction.PROFILES["smoke"])
