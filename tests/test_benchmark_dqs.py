"""benchmarks/dqs_exploration.py on benchmarks/dqs_mujoco.py's grid (sweep-engine trials): tiny runs, success rates,
records, resuming."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import runner.sweep.engine
from benchmarks import dqs_exploration
from benchmarks.dqs_exploration import ExplorationArgs


def test_exploration_grid_records_success_rates_and_resumes(tmp_path, monkeypatch, local_ray):
    args = ExplorationArgs(envs=["PointMaze_UMaze"], seeds=[0], steps=200, eval_freq=100, eval_episodes=1,
                           work_dir=tmp_path / "work", name="exploration_test", results_dir=tmp_path / "results",
                           allow_dirty=True)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 200 steps stay below learning_starts: random actions only
        dqs_exploration.run(args)
    result = json.loads((tmp_path / "results" / "exploration_test.json").read_text())
    assert sorted((r["algo"], r["steps"]) for r in result["runs"]) == [("dqs", 200), ("sac", 200)]
    for run in result["runs"]:
        assert run["eval_timesteps"] == [100, 200] and len(run["eval_success_rates"]) == 2
        config = (Path(run["run_dir"]) / "config.yaml").read_text()  # the maze's overrides reached the run
        assert "continuing_task: false" in config and "replay_buffer_class: null" in config
    summary = result["summary"]["PointMaze_UMaze"]["dqs"]
    assert {"final_iqm", "mean_eval_iqm", "final_success_mean", "mean_success_mean"} <= set(summary)

    def must_not_train(*_args, **_kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(runner.sweep.engine, "_fit", must_not_train)
    dqs_exploration.run(args)  # every record exists: only the results are rebuilt
    for path in (tmp_path / "work" / "cpu" / "records").iterdir():
        path.unlink()  # a fresh clone: the records come back from the committed results file
    dqs_exploration.run(args)
    assert json.loads((tmp_path / "results" / "exploration_test.json").read_text())["runs"] == result["runs"]


def test_a_dqs_record_trained_with_other_defaults_is_rerun_and_sb3_records_are_kept():
    """The MuJoCo and maze grids rerun a DQS record whose defaults fingerprint differs from today's (or that has none:
    written before the fingerprint), and keep SB3 records, whose defaults are SB3's."""
    from benchmarks.dqs_mujoco import defaults_fingerprint, ran_other_defaults

    today = defaults_fingerprint("dqs", "HalfCheetah")
    assert today == defaults_fingerprint("dqs", "HalfCheetah-v5") != defaults_fingerprint("dqs", "Hopper")
    assert defaults_fingerprint("sac", "HalfCheetah") is None
    assert not ran_other_defaults({"algo": "sac", "env": "HalfCheetah"})
    assert ran_other_defaults({"algo": "dqs", "env": "HalfCheetah"})
    assert ran_other_defaults({"algo": "dqs", "env": "HalfCheetah", "defaults": "0123456789ab"})
    assert not ran_other_defaults({"algo": "dqs", "env": "HalfCheetah", "defaults": today})


def test_a_knob_at_its_neutral_value_is_left_out_of_the_defaults_fingerprint(monkeypatch):
    """An opt-in knob added after runs were recorded (``DQSConfig.NEUTRAL_KNOBS``) does not change the fingerprint
    at the value that behaves as before it existed; counted without that entry, or at another value, it does."""
    from agents.dqs import DQSConfig
    from benchmarks.dqs_mujoco import defaults_fingerprint

    today = defaults_fingerprint("dqs", "HalfCheetah")
    assert DQSConfig.NEUTRAL_KNOBS == {"crossq_critic": False}
    monkeypatch.setattr(DQSConfig, "NEUTRAL_KNOBS", {})
    assert defaults_fingerprint("dqs", "HalfCheetah") != today
    monkeypatch.setattr(DQSConfig, "NEUTRAL_KNOBS", {"crossq_critic": True})
    assert defaults_fingerprint("dqs", "HalfCheetah") != today
