"""benchmarks/merlin.py: tiny runs end to end as sweep-engine trials (dataset, training, records, resuming), the
summary and the targets."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import runner.sweep.engine
from benchmarks.merlin import (
    KINDS,
    PROFILES,
    TARGETS,
    TASKS,
    MerlinBenchArgs,
    MerlinProfile,
    check_target,
    deviations,
    main,
    prepare_dataset,
    print_table,
    summarize,
    training_time,
)


@pytest.fixture
def folders(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "datasets"))
    monkeypatch.setenv("DIFFUSION_BASELINES_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_tiny_runs_write_resumable_records(folders, monkeypatch, local_ray):
    profile = PROFILES["tiny"]
    dataset, info = prepare_dataset("PointReach", "random", profile.dataset_episodes)
    assert dataset.n_episodes == profile.dataset_episodes and info["build_s"] > 0
    assert f"--episodes {profile.dataset_episodes} --seed 0" in info["command"]
    with pytest.raises(ValueError, match="has 20 episodes, but the profile needs 30"):
        prepare_dataset("PointReach", "random", 30)  # ids do not say the size: a mismatch must not pass silently

    args = MerlinBenchArgs(methods=["Merlin-NP", "GCSL"], tasks=["PointReach"], kinds=["random"], seeds=[0],
                           profile="tiny", device="cpu", work_dir=folders / "work", name="merlin_test",
                           results_dir=folders / "results", allow_dirty=True)  # fmt: skip
    main(args)
    records = folders / "work" / "tiny" / "records"
    assert sorted(p.name for p in records.iterdir()) == ["PointReach-random__GCSL__seed0.json",
                                                          "PointReach-random__Merlin-NP__seed0.json"]  # fmt: skip
    runs = json.loads((folders / "results" / "merlin_test.json").read_text())["runs"]
    record = next(r for r in runs if r["method"] == "Merlin-NP")
    assert record["steps"] == profile.steps and record["profile"] == "tiny"
    assert record["resolved"] == {"her_ratio": 1.0, "test_horizon": 1, "use_horizon": True}  # the reference tuning, PointReach
    assert 0.0 <= record["final"]["success_rate"] <= 1.0 and record["final"]["final_distance"] >= 0.0
    # One evaluation every eval_freq steps; the best checkpoint is the one with the highest discounted return.
    curve = record["curve"]
    assert [point["step"] for point in curve] == list(range(profile.eval_freq, profile.steps + 1, profile.eval_freq))
    best = max(curve, key=lambda point: point["discounted_return"])
    assert record["best_step"] == best["step"] and record["best"]["discounted_return"] == best["discounted_return"]
    # The run is a train.py run whose evaluation callback wrote evaluations.npz as SB3's EvalCallback does.
    with np.load(Path(record["run_dir"]) / "evaluations.npz") as evaluations:
        assert {"timesteps", "results", "ep_lengths", "successes", "discounted_returns"} <= set(evaluations.files)
        assert evaluations["timesteps"].tolist() == [point["step"] for point in curve]
        assert evaluations["successes"].shape == (len(curve), profile.eval_episodes)
    assert (Path(record["run_dir"]) / "config.yaml").is_file() and (Path(record["run_dir"]) / "model.zip").is_file()
    timing = record["timing"]
    assert timing["noise_generated"] and timing["noise_s"] > 0 and timing["train_s"] > 0
    assert record["data_stats"]["n_synthetic"] == profile.n_synthetic

    assert sorted(r["method"] for r in runs) == ["GCSL", "Merlin-NP"]
    assert next(r for r in runs if r["method"] == "GCSL")["timing"]["noise_s"] is None
    times = training_time(runs)
    assert times["Merlin-NP"]["noise_generations"] == 1 and times["GCSL"]["noise_s"] is None

    def must_not_train(*_args, **_kwargs):
        raise AssertionError("trained")

    monkeypatch.setattr(runner.sweep.engine, "_fit", must_not_train)
    main(args)  # every record exists: nothing is trained
    with pytest.raises(AssertionError, match="trained"):
        main(MerlinBenchArgs(**{**vars(args), "force": True}))  # --force reruns the selected runs


def fake_run(task: str, kind: str, method: str, seed: int, value: float) -> dict[str, Any]:
    """A run record with every metric equal to ``value`` (final) and ``value + 1`` (best)."""
    metrics = {key: value for key in ("success_rate", "final_distance", "discounted_return", "undiscounted_return")}
    return {
        "task": task, "kind": kind, "method": method, "seed": seed, "final": metrics,
        "best": {key: v + 1.0 for key, v in metrics.items()}, "best_step": 10,
        "timing": {"train_s": 1.0, "steps_per_s": 100.0, "noise_s": None, "noise_generated": False},
    }  # fmt: skip


def test_summary_and_targets(capsys):
    merlin_beats_gcsl = TARGETS[0]
    cells = list(itertools.product(TASKS, KINDS))
    runs = [fake_run(task, kind, method, seed, value + seed)
            for task, kind in cells for method, value in (("Merlin", 0.5), ("GCSL", 0.4)) for seed in (0, 1)]  # fmt: skip
    summary = summarize(runs)
    entry = summary["PointReach"]["expert"]["Merlin"]
    assert entry["seeds"] == [0, 1]
    assert entry["final"]["discounted_return"] == pytest.approx({"mean": 1.0, "std": 0.5})
    assert entry["best"]["discounted_return"]["mean"] == pytest.approx(2.0)
    assert list(summary) == list(TASKS) and list(summary["PointReach"]["expert"]) == ["Merlin", "GCSL"]

    assert check_target(merlin_beats_gcsl, summary, "final")["status"] == "met"
    runs[-1]["final"]["discounted_return"] = 5.0  # the last GCSL seed of the last cell now beats Merlin on average
    result = check_target(merlin_beats_gcsl, summarize(runs), "final")
    assert result["status"] == "missed"
    assert [(c["task"], c["kind"]) for c in result["checks"] if not c["met"]] == [cells[-1]]
    incomplete = check_target(merlin_beats_gcsl, summarize(runs[:4]), "final")
    assert incomplete["status"] == "incomplete" and len(incomplete["checks"]) == 1

    success = TARGETS[2]
    fetch = [fake_run("FetchReach", "expert", "Merlin", seed, value) for seed, value in ((0, 1.0), (1, 0.92))]
    assert check_target(success, summarize(fetch), "final")["status"] == "met"  # mean 0.96 >= 0.95
    fetch[1]["final"]["success_rate"] = 0.88
    assert check_target(success, summarize(fetch), "final")["status"] == "missed"

    print_table(summary, [check_target(merlin_beats_gcsl, summary, "final")])
    assert "PointReach  expert  Merlin" in capsys.readouterr().out


def test_profiles_and_deviations():
    assert deviations(PROFILES["gpu"]) == {}
    cpu = deviations(PROFILES["cpu"])
    assert cpu["steps"] == {"profile": PROFILES["cpu"].steps, "reference": 500_000}
    assert cpu["stitching.epochs"] == {"profile": 1, "reference": 100}
    assert "reverse_model.hidden_dim" in cpu and "dataset_episodes" not in cpu
    # The last training evaluation is at the last step, so the final model is a candidate for the best checkpoint.
    assert all(profile.steps % profile.eval_freq == 0 for profile in PROFILES.values())
    with pytest.raises(ValueError, match="got unknown noise_kwargs"):
        MerlinProfile(steps=10, eval_freq=5, eval_episodes=1, noise_kwargs={"stitching": {"epoch": 1}})
    with pytest.raises(ValueError, match="steps must be at least 1"):
        MerlinProfile(steps=0, eval_freq=5, eval_episodes=1)
