"""runner/sweep/runs.py: a sweep trial killed mid-run resumes from its newest checkpoint (an SB3 model with its replay
buffer, a gradient-step model bit for bit), its record joins the segments' evaluation curves, a finished but
unrecorded run is not trained again, and a trial without checkpoints starts over."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from pde.solver import PINNSolver
from runner.args import TrainArgs
from runner.sweep.engine import SweepSpec, record_trial, run_search, run_train_trial, train_trial, trial_fingerprint
from runner.sweep.runs import segments, segments_record, train_resumably

SAC_TINY = {"learning_starts": "50", "batch_size": "16", "policy_kwargs": "{'net_arch': [16, 16]}"}
PINN_TINY = {"hidden_dim": "8", "latent_dim": "4", "residual_points": "16", "eval_freq": "5"}


def sac_args(tmp_path: Path, **changes: object) -> TrainArgs:
    args = TrainArgs(algo="sac", env="Pendulum", total_timesteps=300, seed=0, eval_freq=100, eval_episodes=1,
                     save_freq=100, save_replay_buffer=True, hyperparams=SAC_TINY, log_dir=tmp_path, progress=False,
                     verbose=0)  # fmt: skip
    return replace(args, **changes)


def kill_after(run_dir: Path, steps: int) -> None:
    """Make a finished run look killed (SIGKILL) right after its checkpoint at ``steps``: no results, no final model,
    no later checkpoint."""
    for name in ("results.json", "model.zip", "model.pt", "replay_buffer.pkl"):
        (run_dir / name).unlink(missing_ok=True)
    for path in (run_dir / "checkpoints").glob("*"):
        number = "".join(ch for ch in path.stem if ch.isdigit())
        if number and int(number) > steps:
            path.unlink()


def test_a_killed_off_policy_run_resumes_with_its_buffer_and_joins_the_evaluations(tmp_path):
    home = tmp_path / "trial"
    [first] = train_resumably(sac_args(tmp_path), home)
    kill_after(first, 200)
    runs = train_resumably(sac_args(tmp_path), home)
    assert runs[0] == first and len(runs) == 2 and len(segments(home)) == 2
    record = segments_record(runs)
    assert record["num_timesteps"] == 300 and record["resumed_at"] == [200] and record["run_dir"] == str(runs[1])
    assert record["eval_timesteps"] == [100, 200, 300]  # the first segment's up to 200, then the resumed one's
    assert np.isfinite(record["final_return"])
    # the resumed segment loaded the checkpoint and its replay buffer (200 transitions, then 100 more)
    from stable_baselines3 import SAC

    assert SAC.load(runs[1] / "model.zip").num_timesteps == 300
    # a finished segment whose record was never written is taken as it is
    assert train_resumably(sac_args(tmp_path), home) == runs and len(segments(home)) == 2


def test_a_gradient_step_model_resumes_bit_for_bit(tmp_path):
    args = TrainArgs(algo="pinn", env="Heat", total_timesteps=20, seed=0, eval_episodes=1, save_freq=10,
                     hyperparams=PINN_TINY, log_dir=tmp_path, progress=False, verbose=0)  # fmt: skip
    [straight] = train_resumably(args, tmp_path / "straight")
    [killed] = train_resumably(args, tmp_path / "killed")
    kill_after(killed, 10)
    runs = train_resumably(args, tmp_path / "killed")
    assert len(runs) == 2 and segments_record(runs)["resumed_at"] == [10]
    resumed, uninterrupted = PINNSolver.load(runs[1] / "model.pt"), PINNSolver.load(straight / "model.pt")
    assert resumed.num_timesteps == uninterrupted.num_timesteps == 20
    for a, b in zip(resumed.network.state_dict().values(), uninterrupted.network.state_dict().values()):
        assert torch.equal(a, b)


def test_without_checkpoints_a_killed_trial_starts_over_as_an_ordinary_run(tmp_path):
    args = sac_args(tmp_path, save_freq=0, total_timesteps=100)
    [first] = train_resumably(args, tmp_path / "trial")
    assert first.parent == tmp_path / "sac" and not (tmp_path / "trial").exists()
    kill_after(first, 0)
    [second] = train_resumably(args, tmp_path / "trial")
    assert second != first and (second / "results.json").is_file()
    # an off-policy run that saves no replay buffer cannot resume either
    [third] = train_resumably(replace(args, save_freq=50, save_replay_buffer=False), tmp_path / "trial")
    assert third.parent == tmp_path / "sac"


def test_a_run_killed_after_its_last_checkpoint_or_whose_final_results_failed_only_writes_them(tmp_path):
    args = TrainArgs(algo="pinn", env="Heat", total_timesteps=20, seed=0, eval_episodes=1, save_freq=10,
                     hyperparams=PINN_TINY, log_dir=tmp_path, progress=False, verbose=0)  # fmt: skip
    home = tmp_path / "trial"
    [first] = train_resumably(args, home)
    kill_after(first, 20)  # killed while evaluating at the end: iter_20.pt is there, results.json is not
    runs = train_resumably(args, home)
    assert len(runs) == 2 and segments_record(runs)["num_timesteps"] == 20
    assert segments_record(runs)["resumed_at"] == [20] and segments_record(runs)["final_eval"]["relative_l2"] > 0
    # a final evaluation that failed is not a finished run: its model is resumed with 0 steps
    results = json.loads((runs[1] / "results.json").read_text())
    (runs[1] / "results.json").write_text(json.dumps(results | {"final_eval": "failed: OSError: disk full"}))
    again = train_resumably(args, home)
    assert len(segments(home)) == 3 and again[-1] not in runs and isinstance(segments_record(again)["final_eval"], dict)


def test_a_trial_runs_in_its_sweeps_folder_and_how_it_is_kept_is_not_what_it_trains(tmp_path):
    kept = train_trial("t", sac_args(tmp_path), {})
    plain = train_trial("t", sac_args(tmp_path, save_freq=-1, save_replay_buffer=False), {})
    assert trial_fingerprint(kept.config) == trial_fingerprint(plain.config)
    trial = train_trial("t", sac_args(tmp_path / "runs", total_timesteps=100), {"seed": 0})
    record = record_trial(trial, run_train_trial, tmp_path / "sweep")
    assert record["seed"] == 0 and record["eval_timesteps"] == [100]
    assert Path(record["run_dir"]).is_relative_to(tmp_path / "sweep" / "trials" / "t")
    assert json.loads((tmp_path / "sweep" / "records" / "t.json").read_text()) == record


def test_a_run_started_from_an_outside_model_is_its_own_record(tmp_path):
    [first] = train_resumably(sac_args(tmp_path, save_freq=0, total_timesteps=100), tmp_path / "unused")
    args = sac_args(tmp_path, save_freq=0, total_timesteps=100, trained_agent=first / "model.zip")
    [second] = train_resumably(args, tmp_path / "unused")
    record = segments_record([second])
    assert record["num_timesteps"] == 200 and "segments" not in record and record["eval_timesteps"] == [200]


def test_a_search_refuses_checkpoints_it_would_never_resume(tmp_path):
    spec = SweepSpec(algo=["sac"], env=["Pendulum"], seeds=[0], save_freq=100, sweep_root=tmp_path)
    with pytest.raises(ValueError, match="--save-freq resumes the trials of `run`"):
        run_search(spec, None, n_trials=1)
