"""iDEM trainer: learning on a small mixture, exact resume, CLI integration and input errors."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from samplers.energies import BOLTZMANN_DIR_ENV, GaussianMixtureEnergy, boltzmann_data_dir
from samplers.idem import IDEM, SampleBuffer
from samplers.metrics import x_w2_unaligned

ROOT = Path(__file__).resolve().parents[1]
MIXTURE_MEANS = [[-3.0, -3.0], [-3.0, 3.0], [3.0, -3.0], [3.0, 3.0]]
TINY = dict(
    sigma_min=1e-3, sigma_max=4.0, num_mc_samples=64, batch_size=128, inner_steps=25, samples_per_refresh=256,
    buffer_size=512, init_samples=256, integration_steps=100, hidden_dim=64, n_layers=2, learning_rate=2e-3,
    lr_plateau_patience=None, max_score_norm=20.0, loss_weighting="none", eval_freq=0, log_interval=1000,
)  # fmt: skip


def mixture() -> GaussianMixtureEnergy:
    return GaussianMixtureEnergy(MIXTURE_MEANS, stds=0.5)


def test_training_lowers_w2_to_the_target():
    energy = mixture()
    reference = energy.sample(1000, generator=torch.Generator().manual_seed(0))
    model = IDEM(energy, seed=0, **TINY)
    before = x_w2_unaligned(model.sample(1000), reference)
    model.learn(300)
    after = x_w2_unaligned(model.sample(1000), reference)
    assert after < 0.6 * before, (before, after)
    assert model.energy_evaluations == 300 * 128 * 64


def test_pdem_variant_trains_without_buffer():
    model = IDEM(mixture(), seed=0, **{**TINY, "use_buffer": False})
    model.learn(30)
    assert model.buffer.size == TINY["init_samples"]  # never refreshed


def test_checkpoint_resume_is_exact(tmp_path: Path):
    straight = IDEM(mixture(), seed=1, **TINY).learn(60)
    first = IDEM(mixture(), seed=1, **TINY).learn(30)
    first.save(tmp_path / "ckpt.pt")
    torch.manual_seed(999)  # the checkpoint restores the RNG, whatever happened since
    resumed = IDEM.load(tmp_path / "ckpt.pt", target=mixture()).learn(30, reset_num_timesteps=False)
    assert resumed.num_timesteps == 60
    for a, b in zip(straight.network.state_dict().values(), resumed.network.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_unknown_hyperparameter_and_target_are_rejected():
    with pytest.raises(ValueError, match="iDEM got unknown hyperparameters"):
        IDEM(mixture(), num_mc_sample=3)
    with pytest.raises(ValueError, match="Did you mean 'DW4'"):
        IDEM("DW-4x")
    with pytest.raises(ValueError, match="particle system"):
        IDEM(mixture(), network="egnn")


def test_nan_loss_is_reported_clearly():
    energy = mixture()
    model = IDEM(energy, seed=0, **TINY)
    with torch.no_grad():
        next(model.network.parameters()).fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="iDEM loss is nan"):
        model.learn(1)


def test_missing_reference_data_disables_evaluation_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(BOLTZMANN_DIR_ENV, str(tmp_path))
    model = IDEM("DW4", seed=0, num_mc_samples=8, batch_size=8, integration_steps=3, samples_per_refresh=8,
                 init_samples=8, inner_steps=2, hidden_dim=8, n_layers=1, eval_freq=2)  # fmt: skip
    with pytest.warns(UserWarning, match="evaluation disabled: reference samples not found"):
        model.learn(4)
    assert model.num_timesteps == 4 and model.best_metrics == {}


def test_buffer_is_fifo():
    buffer = SampleBuffer(capacity=4, dim=1, device=torch.device("cpu"))
    buffer.add(torch.arange(3.0)[:, None])
    buffer.add(torch.arange(3.0, 6.0)[:, None])
    assert buffer.size == 4
    assert sorted(buffer.data.squeeze(1).tolist()) == [2.0, 3.0, 4.0, 5.0]


def test_train_py_runs_idem_on_dw4(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "train.py", "--algo", "idem", "--env", "DW4", "-n", "4", "--seed", "0", "--num-threads", "1",
         "--log-dir", str(tmp_path), "--no-progress", "--eval-freq", "4", "--n-samples", "64", "--hyperparams",
         "num_mc_samples", "16", "batch_size", "16", "integration_steps", "5", "samples_per_refresh", "16",
         "inner_steps", "2", "eval_samples", "32", "hidden_dim", "16"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "idem").iterdir()
    samples = np.load(run_dir / "samples.npy")
    assert samples.shape == (64, 8)
    np.testing.assert_allclose(samples.reshape(64, 4, 2).mean(1), 0.0, atol=1e-4)  # zero centre of mass
    assert (run_dir / "model.pt").is_file()
    results = json.loads((run_dir / "results.json").read_text())
    if (boltzmann_data_dir() / "dw4_val.npy").is_file():
        assert (run_dir / "checkpoints" / "best.pt").is_file() and "energy_w2" in results["final_eval"]
    else:
        assert results["final_eval"].startswith("skipped: reference samples not found")
    assert list(run_dir.glob("events.out.tfevents.*"))
    loaded = IDEM.load(run_dir / "model.pt")
    assert loaded.num_timesteps == 4 and loaded.config.hidden_dim == 16


class _WritesAMarker:
    """Unpickling this object creates the file ``path``: what a crafted checkpoint could do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_loading_never_unpickles_code(tmp_path: Path):
    marker = tmp_path / "executed"
    torch.save({"target": "DW4", "config": _WritesAMarker(marker)}, tmp_path / "crafted.pt")
    with pytest.raises(ValueError, match=r"IDEM cannot load .* never unpickled"):
        IDEM.load(tmp_path / "crafted.pt")
    assert not marker.exists()


def test_the_preset_follows_the_device_and_the_caller_wins():
    on_cpu = IDEM("DW4", device="cpu", num_mc_samples=8)
    assert on_cpu.preset == "cpu" and on_cpu.config.integration_steps == 200 and on_cpu.config.num_mc_samples == 8
    reference = IDEM("DW4", device="cpu", preset="reference")
    assert reference.preset == "reference" and reference.config.integration_steps == 1000
    with pytest.raises(ValueError, match="preset must be"):
        IDEM("DW4", preset="fast")


def test_sampling_shows_its_progress_per_network_evaluation(capsys: pytest.CaptureFixture[str]):
    model = IDEM(mixture(), seed=0, **{**TINY, "integration_steps": 7})
    assert model.sample(70, batch_size=32, progress_bar=True).shape == (70, 2)
    assert "sampling 70" in (bar := capsys.readouterr().err) and "/21 " in bar  # 3 chunks x 7 steps
    assert not model.network._forward_hooks  # the counting hook is removed (TINY samples from the network)
    model.sample(70, batch_size=32)
    assert capsys.readouterr().err == ""


def test_the_end_of_learn_evaluation_is_reused_as_the_final_one():
    model = IDEM(mixture(), seed=0, **{**TINY, "eval_freq": 10, "eval_samples": 64, "integration_steps": 20})
    model.learn(10)
    samples, metrics = model.latest_evaluation(64)
    assert samples.shape == (64, 2) and metrics == model.evaluate(samples=samples, reference=model.reference_samples(64))
    assert model.latest_evaluation(65) is None  # another sample count samples afresh
    model.learn(5, reset_num_timesteps=False)  # the end of learn evaluates again, at step 15
    assert model.latest_evaluation(64)[0] is not samples
    model.config = replace(model.config, eval_freq=0)
    model.learn(1, reset_num_timesteps=False)  # no evaluation at step 16: nothing to reuse
    assert model.latest_evaluation(64) is None
