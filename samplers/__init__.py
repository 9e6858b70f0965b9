"""Diffusion samplers driven by an energy: schedules, score estimators, integrators, iDEM, MCMC and metrics."""

from samplers.energies import ENERGIES, Energy, FunctionEnergy, make_energy
from samplers.estimators import mc_score_estimate, softmax_score_estimate
from samplers.integrators import euler_maruyama, log_likelihood, probability_flow_ode
from samplers.mcmc import mala
from samplers.schedules import CosineVPSchedule, GeometricVESchedule, NoiseSchedule

__all__ = [
    "ENERGIES", "IDEM", "CosineVPSchedule", "Energy", "FunctionEnergy", "GeometricVESchedule", "IDEMConfig",
    "NoiseSchedule", "euler_maruyama", "log_likelihood", "make_energy", "mala", "mc_score_estimate",
    "probability_flow_ode", "softmax_score_estimate",
]  # fmt: skip


def __getattr__(name: str) -> object:
    """Import the iDEM trainer lazily: it depends on equivariant/, which itself builds on samplers.networks."""
    if name in ("IDEM", "IDEMConfig"):
        from samplers import idem

        return getattr(idem, name)
    raise AttributeError(f"module 'samplers' has no attribute {name!r}")
