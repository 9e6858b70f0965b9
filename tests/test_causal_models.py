"""The causal learners as trainers (causal/models.py) and their runner kind (runner/kinds/causal.py): a short training
raises the validation ELBO and infers the target sets, a run stopped midway resumes on the same schedule bit for bit,
train.py writes results.json with the theory metrics and the abstraction, and bad names and knobs are one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from causal.ilcm import recipe_phase
from causal.models import CausalLearner, ILCMAtomic, ILCMLearner, target_agreement
from core.cli import run_cli
from runner.args import TrainArgs
from runner.experiment import train

TASK = "chain3-2-23.linear.rotation"  # P2: z1 → z2 → z3 with targets {z2}, {z2, z3}
TINY = {"hidden_units": 8, "hidden_layers": 1, "batch_size": 16, "eval_pairs": 64, "eval_freq": 0, "metric_pairs": 300}


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAUSAL_CACHE_DIR", str(tmp_path / "cache"))


def test_short_training_raises_the_elbo_and_infers_the_target_sets() -> None:
    model = ILCMLearner(TASK, seed=0, hidden_units=32, eval_pairs=1000, eval_freq=0)
    before = model.evaluate()
    after = model.learn(1500).evaluate()
    assert after["negative_elbo"] < before["negative_elbo"] - 50.0
    assert after["target_jaccard"] > 0.8 > before["target_jaccard"]  # chance: about 1/3 of exact sets
    assert model.best_metrics["step"] == 1500.0


def test_target_agreement_is_invariant_to_relabelling_the_latents() -> None:
    true = np.array([[0, 0, 0], [0, 1, 0], [0, 1, 1], [1, 0, 0]], dtype=bool)
    relabelled = true[:, [2, 0, 1]]
    assert target_agreement(relabelled, true) == (1.0, 1.0)
    jaccard, accuracy = target_agreement(np.zeros_like(true), true)
    assert jaccard == accuracy == 0.25  # only the empty set agrees


def test_a_stopped_run_resumes_on_the_same_schedule(tmp_path: Path) -> None:
    model = ILCMLearner(TASK, seed=0, **TINY)
    model.learn(10, stop=lambda: model.num_timesteps >= 4)  # as train.py's Ctrl-C after 4 steps
    assert model.num_timesteps == 4 and model.config.schedule_steps == 10
    assert model.phase(4) == recipe_phase(0.4)
    model.save(tmp_path / "model.pt")
    assert torch.load(tmp_path / "model.pt", weights_only=True)["config"]["schedule_steps"] == 10
    resumed = ILCMLearner.load(tmp_path / "model.pt")
    np.testing.assert_array_equal(resumed.encode(model.val_pairs.x[:50]), model.encode(model.val_pairs.x[:50]))
    resumed.learn(6, reset_num_timesteps=False)
    uninterrupted = ILCMLearner(TASK, seed=0, **TINY).learn(10)
    assert resumed.config.schedule_steps == 10 and resumed.num_timesteps == 10
    for a, b in zip(resumed.network.state_dict().values(), uninterrupted.network.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_train_py_writes_the_metrics_and_the_abstraction(tmp_path: Path) -> None:
    args = TrainArgs(algo="ilcm", env="P2.linear.rotation", total_timesteps=20, seed=0, log_dir=tmp_path / "runs",
                     progress=False, verbose=0, hyperparams={k: str(v) for k, v in TINY.items()})  # fmt: skip
    run_dir = train(args)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["num_timesteps"] == 20 and not results["interrupted"]
    assert {"negative_elbo", "target_jaccard", "target_accuracy"} <= set(results["final_eval"])
    metrics = results["metrics"]
    assert [block["block"] for block in metrics["blocks"]] == [[0], [1, 2]]  # R1 of chain3 with {z2}, {z2, z3}
    assert [block["block"] for block in metrics["safe"]] == [[0], [1]]  # R0: {z1} and the R2 latent z2
    assert 0.0 <= metrics["safe"][0]["informativeness"] <= 1.0 and metrics["target_jaccard"] is not None
    assert "R1 blocks (topological order): B1 = {z1}, B2 = {z2,z3}" in results["abstraction"]["text"]
    assert list(run_dir.glob("events.out.tfevents.*")) and (run_dir / "config.yaml").is_file()
    resumed = train(TrainArgs(algo="ilcm", env="P2.linear.rotation", total_timesteps=5, seed=0, log_dir=tmp_path / "runs",
                              trained_agent=run_dir / "model.pt", progress=False, verbose=0))  # fmt: skip
    assert json.loads((resumed / "results.json").read_text())["num_timesteps"] == 25


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ILCMLearner("chain5-singletons.linear.mlp"), "unknown task"),
        (lambda: ILCMLearner(TASK, famliy="atomic"), "did you mean family"),
        (lambda: CausalLearner(TASK, family="subsets"), "family must be one of"),
        (lambda: ILCMAtomic(TASK, context="ordered"), "ILCMAtomic fixes context='others'"),
        (lambda: CausalLearner(TASK, restarts=0), "restarts must be positive"),
        (lambda: train(TrainArgs(algo="ilcm", env="F7.linear.mlp", log_dir=Path("/nonexistent"))), "unknown task"),
    ],
)
def test_bad_names_and_knobs_are_one_line_errors(make, message: str) -> None:
    with pytest.raises(SystemExit) as error:
        run_cli(make)
    text = str(error.value)
    assert text.startswith("error: ") and message in text and "\n" not in text
