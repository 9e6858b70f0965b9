"""The sweep engine on a local Ray: grid trials are ordinary train.py runs, an interrupted sweep resumes without
redoing finished trials, a search runs several seeds per trial, rliable statistics match hand computations, and a bad
--grid key gets the error of --hyperparams."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tyro
from scipy.stats import trim_mean

from core.cli import RunFailed
from runner.args import TrainArgs
from runner.sweep import (
    Resources,
    SweepSpec,
    format_report,
    run_search,
    run_sweep,
    run_train_trial,
    run_trials,
    sweep_report,
    train_trial,
)
from runner.sweep.engine import _absolute
from runner.sweep.stats import improvement_probabilities, interval_estimates, score_matrix

ROOT = Path(__file__).resolve().parents[1]
TINY = {"learning_starts": "100", "batch_size": "32", "policy_kwargs": "{'net_arch': [16, 16]}"}


def spec(tmp_path: Path, seeds: list[int]) -> SweepSpec:
    return SweepSpec(algo=["sac"], env=["Pendulum"], seeds=seeds, total_timesteps=200, hyperparams=TINY, eval_freq=100,
                     eval_episodes=1, max_concurrent=2, sweep_root=tmp_path, log_dir=tmp_path / "runs")  # fmt: skip


def test_a_grid_sweep_writes_ordinary_runs_and_resumes_without_redoing_trials(tmp_path, local_ray):
    first = run_sweep(spec(tmp_path, [0]))  # as if interrupted after the first trial
    assert [r["seed"] for r in first] == [0]
    records = run_sweep(spec(tmp_path, [0, 1]))
    runs = sorted((tmp_path / "runs" / "sac").iterdir())
    assert len(runs) == 2, "the finished trial was not trained again"
    assert {r["seed"] for r in records} == {0, 1} and all(r["env"] == "Pendulum-v1" for r in records)
    for run in runs:
        assert {"config.yaml", "results.json", "evaluations.npz", "model.zip"} <= {p.name for p in run.iterdir()}
    assert all(r["eval_timesteps"] == [100, 200] and np.isfinite(r["final_return"]) for r in records)
    report = sweep_report(tmp_path / "sweep", reps=200)
    assert report["cells"]["Pendulum-v1"]["sac"]["seeds"] == 2 and "IQM" in report["aggregates"]["sac"]
    assert Path(report["figures"]["learning_curves"]).is_file() and "IQM" in format_report(report)


def test_a_sweep_runs_a_pde_trial_through_its_kind(tmp_path, local_ray):
    pde = SweepSpec(algo=["pinn"], env=["Heat"], seeds=[0], total_timesteps=3, eval_episodes=1, max_concurrent=1,
                    hyperparams={"hidden_dim": "8", "latent_dim": "4", "residual_points": "16", "eval_freq": "0"},
                    sweep_root=tmp_path, log_dir=tmp_path / "runs")  # fmt: skip
    [record] = run_sweep(pde)
    assert record["env"] == "Heat" and record["num_timesteps"] == 3
    assert 0 < record["final_eval"]["relative_l2"] < 10 and (tmp_path / "runs" / "pinn").is_dir()


def test_a_sweep_name_with_other_settings_is_refused_not_reported_as_the_new_one(tmp_path):
    from runner.sweep.engine import grid_trials, pending_trials, trial_fingerprint

    first = _absolute(spec(tmp_path, [0]))
    (trial,) = grid_trials(first)
    records = first.sweep_dir / "records"
    records.mkdir(parents=True)
    (records / f"{trial.name}.json").write_text(json.dumps({"seed": 0, "trial_fingerprint": trial_fingerprint(trial.config)}))
    (first.sweep_dir / "sweep.json").write_text("the first sweep")
    assert pending_trials([trial], first.sweep_dir) == []  # the same settings resume
    quieter = replace(first, log_dir=tmp_path / "elsewhere", threads_per_trial=2)
    assert trial_fingerprint(grid_trials(quieter)[0].config) == trial_fingerprint(trial.config)
    for changed in (replace(first, total_timesteps=300), replace(first, hyperparams={**TINY, "gamma": "0.5"})):
        with pytest.raises(ValueError, match="ran with other settings than these"):
            run_sweep(changed)
    assert (first.sweep_dir / "sweep.json").read_text() == "the first sweep"
    (records / f"{trial.name}.json").write_text('{"seed": 0, "final_ret')
    with pytest.raises(ValueError, match=r"\.json is not a readable trial record .* delete it"):
        pending_trials([trial], first.sweep_dir)


def test_a_search_runs_every_seed_in_each_trial(tmp_path, local_ray):
    records = run_search(spec(tmp_path, [0, 1]), [["learning_rate", "loguniform", "1e-4", "1e-3"]], n_trials=2,
                         pruner="none")  # fmt: skip
    assert len(records) == 2
    for record in records:
        assert record["seeds"] == [0, 1] and len(record["run_dirs"]) == 2
        assert record["mean_final_return"] == pytest.approx(np.mean(record["final_returns"]))
        assert 1e-4 <= float(record["params"]["learning_rate"]) <= 1e-3
    assert records[0]["mean_final_return"] >= records[1]["mean_final_return"]


def test_rliable_iqm_matches_a_hand_computation_and_its_interval_shrinks_with_seeds():
    rng = np.random.default_rng(0)
    few, many = rng.normal(size=(4, 3)), rng.normal(size=(64, 3))
    estimates = interval_estimates({"few": few, "many": many}, reps=500)
    assert estimates["few"]["IQM"][0] == pytest.approx(trim_mean(few.ravel(), 0.25))
    assert estimates["few"]["mean"][0] == pytest.approx(few.mean())
    width = {name: est["IQM"][2] - est["IQM"][1] for name, est in estimates.items()}
    assert width["many"] < 0.5 * width["few"]
    assert "optimality gap" not in estimates["few"]  # only for normalised scores


def test_probability_of_improvement_of_separated_and_of_equal_scores():
    rng = np.random.default_rng(0)
    low, high = rng.normal(size=(5, 2)), 10.0 + rng.normal(size=(5, 2))
    separated = improvement_probabilities({"high": high, "low": low}, reps=200)
    assert separated["high > low"] == (1.0, 1.0, 1.0) and separated["low > high"][0] == 0.0
    point, lo, hi = improvement_probabilities({"a": low, "b": low.copy()}, reps=200)["a > b"]
    assert point == pytest.approx(0.5) and lo <= 0.5 <= hi  # ties count one half
    noisy = {"a": rng.normal(size=(5, 2)), "b": rng.normal(size=(5, 2))}
    estimates = []
    for global_seed in (1, 2):  # rliable's paired bootstrap draws from NumPy's global generator: its state must not matter
        np.random.seed(global_seed)
        estimates.append(improvement_probabilities(noisy, reps=50))
    assert estimates[0] == estimates[1]


def test_score_matrix_pairs_seeds_and_normalises():
    records = [{"algo": "a", "env": e, "seed": s, "final_return": 10.0 * s + i} for i, e in enumerate("xy") for s in (0, 1)]
    records.append({"algo": "a", "env": "x", "seed": 2, "final_return": 99.0})  # seed 2 lacks env y: dropped
    scores, envs = score_matrix(records, references={"x": (0.0, 10.0), "y": (1.0, 11.0)})
    assert envs == ["x", "y"]
    np.testing.assert_allclose(scores["a"], [[0.0, 0.0], [1.0, 1.0]])


def test_a_bad_grid_key_gets_the_hyperparams_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "runner.sweep", "run", "--algo", "sac", "--env", "Pendulum", "--seeds", "0",
         "--grid", "learning_rat", "1e-3", "3e-4", "--sweep-root", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "got unknown hyperparameters 'learning_rat' (did you mean learning_rate" in result.stderr
    assert not (tmp_path / "sweep" / "records").exists()


def test_an_invalid_grid_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="got unknown hyperparameters 'gama'"):
        run_sweep(spec(tmp_path, [0]), grid={"gama": ("0.9",)})
    assert not (tmp_path / "sweep").exists()


def test_a_failing_trial_fails_the_sweep_with_its_cause_and_leaves_no_record(tmp_path, local_ray):
    args = TrainArgs(algo="sac", env="Pendulum", total_timesteps=100, hyperparams={"gamma": "1.5"}, log_dir=tmp_path,
                     progress=False, verbose=0)  # fmt: skip
    finished = []
    with pytest.raises(RunFailed, match=r"1 trial\(s\) failed .*first: bad: .*gamma.*\(its log: "):
        run_trials([train_trial("bad", args, {})], run_train_trial, tmp_path / "sweep", Resources(max_concurrent=1),
                   after_each=lambda: finished.append(1))  # fmt: skip
    assert not (tmp_path / "sweep" / "records" / "bad.json").exists() and not finished  # the hook is for finished ones


def test_sweeps_refuse_resources_and_empty_grids_in_one_line(tmp_path):
    trial = train_trial("t", TrainArgs(algo="sac", env="Pendulum", total_timesteps=10), {})
    bad = {"--threads-per-trial must be a positive integer": Resources(threads_per_trial=0),
           "--max-concurrent must be a positive integer": Resources(max_concurrent=0)}  # fmt: skip
    for message, resources in bad.items():
        with pytest.raises(ValueError, match=message):
            run_trials([trial], run_train_trial, tmp_path, resources)
    with pytest.raises(ValueError, match="the sweep has no trials: pass at least one --seeds value"):
        run_sweep(spec(tmp_path, []))
    with pytest.raises(ValueError, match="a search needs --trials >= 1"):
        run_search(spec(tmp_path, [0]), None, n_trials=0)


def test_an_interrupted_sweep_exits_130_instead_of_reporting_a_partial_table(tmp_path, monkeypatch):
    from runner.sweep import engine

    monkeypatch.setattr(engine, "_fit", lambda *args, **kwargs: None)  # Tune returned on Ctrl-C before any record
    with pytest.raises(SystemExit) as exit_info:
        run_sweep(spec(tmp_path, [0, 1]))
    assert exit_info.value.code == 130


def test_a_report_with_a_bad_reference_or_key_fails_and_keeps_the_last_report(tmp_path):
    from runner.sweep.__main__ import Report, main

    records = tmp_path / "records"
    records.mkdir()
    (records / "a.json").write_text(json.dumps({"algo": "sac", "env": "Pendulum-v1", "seed": 0, "final_return": -200.0}))
    main(Report(tmp_path, reps=50))
    before = (tmp_path / "report" / "report.json").read_text()
    with pytest.raises(ValueError, match="LOW and HIGH must be finite and differ"):
        main(Report(tmp_path, reference=[["Pendulum", "-100", "-100"]], reps=50))
    with pytest.raises(ValueError, match=r"no record .* has a numeric 'mean_eval_return'"):
        main(Report(tmp_path, key="mean_eval_return", reps=50))
    assert (tmp_path / "report" / "report.json").read_text() == before
    with pytest.raises(SystemExit):
        tyro.cli(Report, args=[str(tmp_path), "--key", "bogus"])


def test_ray_local_sweeps_never_join_a_registered_cluster_and_bad_clusters_say_why(monkeypatch):
    from runner.sweep import engine

    calls = []
    monkeypatch.setattr(engine.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(engine.ray, "init", lambda **kwargs: calls.append(kwargs))
    assert engine._start_ray(Resources(threads_per_trial=1), 2) and calls[-1]["address"] == "local"
    with pytest.raises(ConnectionError, match=r"no Ray cluster answers at --address 127\.0\.0\.1:1 .*ray start --head"):
        engine._start_ray(Resources(address="127.0.0.1:1"), 1)

    def refused(**kwargs):
        try:
            raise RuntimeError("RPC error: InvalidAuthToken: Authentication token is missing or incorrect")
        except RuntimeError as cause:
            raise ConnectionError("Failed to connect to Ray cluster at 127.0.0.1:6390") from cause

    monkeypatch.setattr(engine.ray, "init", refused)
    monkeypatch.setattr(engine, "_check_reachable", lambda address: None)
    with pytest.raises(ConnectionError, match=r"requires token authentication .* RAY_AUTH_MODE=token"):
        engine._start_ray(Resources(address="127.0.0.1:6390"), 1)
