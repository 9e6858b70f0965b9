"""Shared test setup: one torch thread (tests are small; threads only add overhead on 2 cores), one local Ray for
every test that runs a sweep or a benchmark (starting Ray takes seconds), and benchmarks' trials run in the test's
process where Ray is not the point. The suite runs on two pytest-xdist workers, each with its own private local Ray
(address="local": the two never join each other)."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import ray
import torch

import benchmarks.common
from runner.sweep import Resources, Trial, load_records, pending_trials
from runner.sweep.engine import record_trial

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def local_ray():
    """A local Ray of two CPUs for the whole session; the sweep engine joins it instead of starting its own."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _run_in_this_process(
    trials: list[Trial],
    run: Callable[[dict[str, Any]], dict[str, Any]],
    sweep_dir: Path,
    resources: Resources,
    after_each: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
    """`runner.sweep.run_trials` without Ray: each pending trial recorded as the engine records it."""
    for trial in pending_trials(trials, sweep_dir):
        record_trial(trial, run, sweep_dir)
        if after_each is not None:
            after_each()
    return load_records(sweep_dir, {trial.name for trial in trials})


@pytest.fixture
def trials_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Benchmarks run their trials in the test's process (tests/test_sweep.py covers the Ray engine; starting Ray and
    a worker per trial takes minutes on a loaded machine)."""
    monkeypatch.setattr(benchmarks.common, "run_trials", _run_in_this_process)
