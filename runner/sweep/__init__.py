"""Sweeps of seeds x envs x hyperparameters on Ray Tune, searches with Optuna, and rliable statistics
(``python -m runner.sweep``). Not imported by `agents` itself, so a single `train.py` run never loads Ray."""

from runner.sweep.engine import (
    Resources,
    SweepSpec,
    Trial,
    load_records,
    pending_trials,
    run_record,
    run_search,
    run_sweep,
    run_train_trial,
    run_trials,
    train_trial,
)
from runner.sweep.report import format_report, sweep_report

__all__ = [
    "Resources",
    "SweepSpec",
    "Trial",
    "format_report",
    "load_records",
    "pending_trials",
    "run_record",
    "run_search",
    "run_sweep",
    "run_train_trial",
    "run_trials",
    "sweep_report",
    "train_trial",
]
