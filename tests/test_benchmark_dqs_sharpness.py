"""benchmarks/dqs_sharpness.py: the Boltzmann reference against closed forms, and bad input."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from benchmarks.dqs_sharpness import (
    PolicyView,
    SharpnessArgs,
    main,
    measure_state,
    run_of,
    soft_value_bias_in_t,
    target_sampler_mean_q,
)
from samplers.schedules import GeometricVESchedule


def gaussian_view(c: float, temperature: float, scale: float) -> PolicyView:
    """Q(a) = −c‖a‖² on [−1, 1]², whose Boltzmann policy at T is N(0, T/(2c) I) (the box cuts off < 1e-8 of it at
    c/T = 20), and a Gaussian 'policy' of std ``scale`` times the Boltzmann's."""
    std = math.sqrt(temperature / (2 * c)) * scale

    def sample(n: int) -> torch.Tensor:
        return torch.randn(n, 2) * std

    return PolicyView(temperature, lambda a: -c * a.square().sum(1), sample,
                      lambda n: math.log(2 * math.pi * math.e * std**2), 0.0)  # fmt: skip


@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_the_boltzmann_reference_matches_the_closed_form(scale):
    c, temperature = 2.0, 0.1
    torch.manual_seed(0)
    args = SharpnessArgs(models=[], uniform_samples=2**16, policy_samples=4096)
    result = measure_state(gaussian_view(c, temperature, scale), 2, args, torch.Generator().manual_seed(0))
    exact_entropy = math.log(2 * math.pi * math.e * temperature / (2 * c))  # 2-D Gaussian of variance T/(2c)
    assert result["boltzmann_entropy"] == pytest.approx(exact_entropy, abs=0.05)
    assert result["boltzmann_mean_q"] == pytest.approx(-temperature, rel=0.05)  # E[c‖a‖²] = 2c · T/(2c)
    # a policy s times as wide: E_π[Q] = −s² T, so the gap is (s² − 1) T, and its entropy is 2 log s nats higher
    assert result["q_gap_in_t"] == pytest.approx(scale**2 - 1, abs=0.1)
    assert result["policy_entropy"] - result["boltzmann_entropy"] == pytest.approx(2 * math.log(scale), abs=0.05)
    assert result["effective_sample_size"] > 1000


def test_a_model_outside_a_run_folder_is_refused(tmp_path: Path):
    (tmp_path / "model.zip").write_bytes(b"")
    with pytest.raises(SystemExit, match="names no env_id"):
        run_of(tmp_path / "model.zip")


def test_the_target_driven_sampler_approaches_the_boltzmann_policy_with_many_proposals():
    """With Q = −c‖a‖² the Boltzmann mean of Q is −T; the reverse SDE driven by the self-normalised score target comes
    within a fraction of T of it at K = 4096, and a handful of proposals samples a broader law (a larger gap)."""
    c, temperature = 2.0, 0.1
    view = gaussian_view(c, temperature, 1.0)
    schedule = GeometricVESchedule(sigma_min=1e-2, sigma_max=1.0)
    torch.manual_seed(0)
    gaps = {k: (-temperature - target_sampler_mean_q(view, 2, schedule, 20, True, k, 512)) / temperature
            for k in (2, 4096)}  # fmt: skip
    assert abs(gaps[4096]) < 0.3
    assert gaps[2] > gaps[4096] + 0.3


def test_the_soft_value_bias_vanishes_with_many_uniform_actions():
    """log ∫ exp(−c‖a‖²/T) da = log(πT/c) in 2-D (the box cuts off < 1e-8): the M-action estimate's bias in units of
    T is near 0 at M = 4096 and positive (Jensen) at M = 8."""
    c, temperature = 2.0, 0.1
    view = gaussian_view(c, temperature, 1.0)
    torch.manual_seed(0)
    exact = math.log(math.pi * temperature / c)
    assert abs(soft_value_bias_in_t(view, 2, 4096, exact)[0]) < 0.05
    assert soft_value_bias_in_t(view, 2, 8, exact)[0] > 0.3


@pytest.mark.parametrize("flags", [{"states": 0}, {"target_proposals": [16, 0]}, {"target_states": -1}])
def test_bad_counts_are_refused_before_any_model_is_loaded(tmp_path: Path, flags):
    (tmp_path / "model.zip").write_bytes(b"")  # never read: the counts are checked first
    with pytest.raises(SystemExit, match="counts must be positive"):
        main(SharpnessArgs(models=[tmp_path / "model.zip"], **flags))


def test_a_proposal_near_the_boltzmann_policy_closes_both_estimators_gaps():
    """The model's own estimators as the benchmark measures them: with a tanh-Gaussian proposal near N(0, T/(2c) I)
    (q_phi's role), 8 + 8 score proposals sample as close to the Boltzmann mean as 4096 kernel ones, and the soft
    value from 6 proposal + 2 uniform actions is within 0.2 T of the closed form."""
    from agents.dqs.proposal import TanhGaussian, backup_actions

    c, temperature = 20.0, 0.1
    view = gaussian_view(c, temperature, 1.0)
    std = math.sqrt(temperature / (2 * c))
    schedule = GeometricVESchedule(sigma_min=1e-2, sigma_max=1.0)

    def proposal(rows: int) -> TanhGaussian:
        return TanhGaussian(torch.zeros(rows, 2), torch.full((rows, 2), math.log(1.5 * std)))

    def learned(rows: int, k: int) -> dict:
        distribution = proposal(rows)
        return {"proposal_samples": distribution.rsample(k)[0], "proposal_log_prob": distribution.log_prob}

    torch.manual_seed(0)
    kernel = (-temperature - target_sampler_mean_q(view, 2, schedule, 20, True, 16, 512)) / temperature
    mixed = (-temperature - target_sampler_mean_q(view, 2, schedule, 20, True, 16, 512, 0.5, learned)) / temperature
    assert abs(mixed) < 0.3 and kernel > mixed + 0.5, (kernel, mixed)
    exact = math.log(math.pi * temperature / c)
    bias, _ = soft_value_bias_in_t(view, 2, 8, exact, lambda n: backup_actions(n, 8, 2, torch.device("cpu"), proposal(n), 2))
    assert abs(bias) < 0.2
    assert soft_value_bias_in_t(view, 2, 8, exact)[0] > 1.0
