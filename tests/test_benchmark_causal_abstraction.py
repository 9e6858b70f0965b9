"""benchmarks/causal_abstraction.py: the smoke grid trains every learner and fits PCA-ICA on P2, scores them against
the predicted abstraction, and its section renders the tables, the targets and the R1-vs-R0 verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import causal_abstraction
from benchmarks.causal_abstraction import MODELS, CausalArgs, meets, r1_verdict, targets


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
        *(f"P2 linear: {model} I ≥ 0.9 and Λ ≤ 0.05 on every R0 set, 1/1 seeds" for model in ("ilcm", "ilcm-others")),
        *(f"P2 linear: {model} fails that criterion" for model in ("ilcm-atomic", "betavae")),
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


def _cell(informativeness: list[float], leakage: list[float], disentanglement: float = 0.0) -> dict:
    scores = {"informativeness": informativeness, "leakage": leakage, "leaky": [3] * len(leakage)}
    return {"seeds": list(range(len(leakage))), "safe": {"{z1,z2}": scores}, "blocks": {"{z1}": scores},
            "disentanglement": [disentanglement] * len(leakage)}  # fmt: skip


def test_targets_need_every_seed_and_the_published_setting_within_a_few_points() -> None:
    good, bad = _cell([0.95] * 3, [0.01] * 3), _cell([0.95] * 3, [0.01, 0.2, 0.01])
    rows = {t: met for t, _, met in targets({"F2": {"linear": {"ilcm": good, "ilcm-atomic": bad}}}, seeds=3)}
    assert rows["F2 linear: ilcm I ≥ 0.9 and Λ ≤ 0.05 on every R0 set, 3/3 seeds"] is True
    assert rows["F2 linear: ilcm-atomic fails that criterion"] is True
    two_seeds = {"F2": {"linear": {"ilcm": _cell([0.95] * 2, [0.01] * 2)}}}
    assert [met for _, _, met in targets(two_seeds, seeds=3)] == [None]
    published = {"ilcm": 0.97, "dvae": 0.36, "betavae": 0.10}
    f1 = {model: _cell([1.0] * 3, [0.0] * 3, value) for model, value in published.items()}

    def published_row(cells: dict) -> list[bool | None]:
        return [met for target, _, met in targets({"F1": {"linear.rotation": cells}}, seeds=3) if "README" in target]

    assert published_row(f1) == [True]
    f1["ilcm"] = _cell([1.0] * 3, [0.0] * 3, 0.90)  # 0.09 below the README's 0.99
    assert published_row(f1) == [False]


def test_the_r1_verdict_reads_only_the_learner_not_told_the_order() -> None:
    clean, leaky = _cell([0.95] * 3, [0.01] * 3), _cell([0.95] * 3, [0.3] * 3)
    summary = {"P1": {"linear": {"ilcm-others": leaky, "ilcm": clean}}, "P2": {"linear": {"ilcm-others": clean}}}
    [line] = r1_verdict(summary)
    assert line.startswith("linear, ilcm-others") and "consistent with R0" in line and "ε3" in line
    summary["P1"]["linear"]["ilcm-others"] = clean
    assert "consistent with R1" in r1_verdict(summary)[0]
    summary["P2"]["linear"]["ilcm-others"] = leaky
    assert "undecided" in r1_verdict(summary)[0]
