"""Diffusion samplers driven by an energy: schedules, score estimators, integrators, iDEM, canonicalized diffusion,
MCMC and metrics."""

from samplers.canonical import CanonicalConfig, CanonicalDiffusion
from samplers.energies import ENERGIES, Energy, FunctionEnergy, make_energy
from samplers.estimators import mc_score_estimate, softmax_score_estimate
from samplers.idem import IDEM, IDEMConfig
from samplers.integrators import euler_maruyama, log_likelihood, probability_flow_ode
from samplers.mcmc import mala
from samplers.schedules import CosineVPSchedule, GeometricVESchedule, NoiseSchedule

__all__ = [
    "ENERGIES", "IDEM", "CanonicalConfig", "CanonicalDiffusion", "CosineVPSchedule", "Energy", "FunctionEnergy",
    "GeometricVESchedule", "IDEMConfig", "NoiseSchedule", "euler_maruyama", "log_likelihood", "make_energy", "mala",
    "mc_score_estimate", "probability_flow_ode", "softmax_score_estimate",
]  # fmt: skip
