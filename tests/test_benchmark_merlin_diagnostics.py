"""benchmarks/merlin_sensitivity.py (a tiny sweep end to end, resuming, the summary) and benchmarks/merlin_rooms.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

import runner.sweep.engine
from benchmarks import merlin_rooms
from benchmarks.merlin_sensitivity import SensitivityArgs, main, record_name, summarize


@pytest.fixture
def folders(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "datasets"))
    monkeypatch.setenv("DIFFUSION_BASELINES_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_tiny_sweep_evaluates_every_horizon_and_resumes(folders, monkeypatch, local_ray):
    args = SensitivityArgs(tasks=["PointReach"], kinds=["expert"], her_ratios=[0.0, 1.0], horizons=[1, 7], seeds=[100],
                           profile="tiny", device="cpu", work_dir=folders / "work", results_dir=folders / "results",
                           allow_dirty=True)  # fmt: skip
    main(args)
    result = json.loads((folders / "results" / "merlin_sensitivity_tiny.json").read_text())
    assert len(result["runs"]) == 2 and all(set(r["by_horizon"]) == {"1", "7"} for r in result["runs"])
    assert result["runs"][0]["tuned"] == {"her_ratio": 1.0, "test_horizon": 1}  # the reference tuning, PointReach expert
    cell = result["summary"]["PointReach-expert"]
    assert set(cell["grid"]) == {"0", "1"} and set(cell["grid"]["1"]) == {"1", "7"}

    path = folders / "work" / "tiny" / "sensitivity" / "records" / f"{record_name('PointReach', 'expert', 1.0, 100)}.json"
    path.unlink()  # lost (a fresh clone): restored from the results file, not trained again

    def must_not_train(*_args, **_kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(runner.sweep.engine, "_fit", must_not_train)
    main(args)
    assert path.is_file() and json.loads(path.read_text()) == result["runs"][1]
    with pytest.raises(AssertionError, match="trained again"):  # a horizon the record lacks makes the run pending
        main(SensitivityArgs(**{**vars(args), "horizons": [1, 3]}))


def test_summary_picks_the_best_mean_discounted_return():
    def record(her: float, seed: int, returns: dict[str, float]) -> dict:
        metrics = {h: {"discounted_return": r, "success_rate": r / 40} for h, r in returns.items()}
        return {"task": "PointRooms", "kind": "expert", "her_ratio": her, "seed": seed, "by_horizon": metrics,
                "tuned": {"her_ratio": 0.2, "test_horizon": 1}}  # fmt: skip

    runs = [record(0.2, 0, {"1": 10, "20": 12}), record(0.2, 1, {"1": 12, "20": 20}), record(1.0, 0, {"1": 15, "20": 14}),
            record(1.0, 1, {"1": 15, "20": 14})]  # fmt: skip
    cell = summarize(runs)["PointRooms-expert"]
    assert cell["grid"]["0.2"]["20"]["discounted_return"] == {"mean": 16.0, "std": 4.0, "n": 2}
    assert cell["best"] == {"her_ratio": 0.2, "test_horizon": 20}


def test_room_relations_and_a_tiny_breakdown(folders):
    point = {"same": (np.array([1.0, 1.0]), np.array([3.0, 0.5])), "adjacent": (np.array([1.0, 1.0]), np.array([-2.0, 3.0])),
             "opposite": (np.array([1.0, -1.0]), np.array([-0.5, 0.5]))}  # fmt: skip
    assert {key: merlin_rooms.relation(*pair) for key, pair in point.items()} == {key: key for key in point}
    merlin_rooms.main(merlin_rooms.RoomsArgs(episodes=6, horizons=[1, "steps_left"], profile="tiny", device="cpu",
                                             work_dir=folders / "work", name="rooms_tiny",
                                             results_dir=folders / "results", allow_dirty=True))  # fmt: skip
    runs = json.loads((folders / "results" / "rooms_tiny.json").read_text())["runs"]
    assert [(r["method"], r["test_horizon"]) for r in runs] == [("GCSL", None), ("Merlin", 1), ("Merlin", "steps_left")]
    for r in runs:
        assert sum(r[key]["episodes"] for key in merlin_rooms.RELATIONS) == 6 and 0.0 <= r["success"] <= 1.0
