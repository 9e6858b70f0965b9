"""benchmarks/dqs_acting.py: a trained model's acting cost and return per sampler setting, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.dqs import DQS
from benchmarks.dqs_acting import ActingArgs, main


def test_every_setting_gets_a_cost_ratio_and_the_same_evaluation_episodes(tmp_path: Path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("algo: dqs\nenv_id: Pendulum-v1\n")
    small = {"net_arch": [32, 32], "score_hidden_dim": 32, "embedding_dim": 16}
    model = DQS("MlpPolicy", "Pendulum-v1", learning_starts=50, batch_size=16, seed=0, policy_kwargs=small)
    model.learn(60).save(run / "model.zip")
    main(ActingArgs(model=run / "model.zip", steps=[4, 1], candidates=[2], episodes=2, calls=2, repeats=1, name="acting",
                    results_dir=tmp_path / "results", allow_dirty=True))  # fmt: skip
    result = json.loads((tmp_path / "results" / "acting.json").read_text())
    rows = {(row["deterministic_steps"], row["n_action_candidates"]): row for row in result["settings"]}
    assert set(rows) == {(4, 2), (1, 2)}
    for row in rows.values():
        assert row["ratio_to_sac"] == pytest.approx(row["median_predict_ms"] / result["sac_median_predict_ms"])
        assert len(row["returns"]) == 2 and all(-2000 < r < 0 for r in row["returns"])


@pytest.mark.parametrize("flags", [{"steps": [0]}, {"episodes": 0}])
def test_bad_counts_and_missing_models_are_refused(tmp_path: Path, flags):
    with pytest.raises(SystemExit, match="no model file"):
        main(ActingArgs(model=tmp_path / "missing.zip"))
    (tmp_path / "model.zip").write_bytes(b"")
    with pytest.raises(SystemExit, match="must be positive"):
        main(ActingArgs(model=tmp_path / "model.zip", **flags))
