"""Algorithm registry: one line plugs an algorithm into `train.py`, `--list` and the benchmarks.

Classes are stored as ``"module:Class"`` strings and imported on first use, so listing algorithms stays fast and an
optional dependency only matters when its algorithm is chosen.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import Literal

AlgoKind = Literal["online", "offline", "sampler", "pde", "crystal", "causal"]


@dataclass(frozen=True)
class AlgoSpec:
    """How `train.py` finds and drives one algorithm."""

    name: str  # CLI name, e.g. "sac"
    target: str  # "package.module:ClassName" of the algorithm class
    kind: AlgoKind  # online: a Gym env; offline: a Minari dataset; sampler: an energy; pde: a PDE problem;
    # crystal: a crystal dataset; causal: a task of contrastive pairs (causal.data)
    description: str  # one line for `--list`

    def load_class(self) -> type:
        """Import and return the algorithm class."""
        module_name, _, class_name = self.target.partition(":")
        return getattr(importlib.import_module(module_name), class_name)


ALGOS: dict[str, AlgoSpec] = {}


def register_algo(name: str, target: str, kind: AlgoKind = "online", description: str = "") -> None:
    """Register an algorithm under a CLI name (lower case); re-registering a name is an error."""
    key = name.lower()
    if key in ALGOS:
        raise ValueError(f"Algorithm {key!r} is already registered as {ALGOS[key].target}.")
    ALGOS[key] = AlgoSpec(key, target, kind, description)


def get_algo(name: str) -> AlgoSpec:
    """Look up an algorithm by CLI name, suggesting close names when it is unknown."""
    key = name.lower()
    if key not in ALGOS:
        close = difflib.get_close_matches(key, ALGOS, n=3, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown algorithm {name!r}.{hint} Available: {', '.join(sorted(ALGOS))}.")
    return ALGOS[key]


# Stable-Baselines3 and sb3-contrib baselines.
register_algo("sac", "stable_baselines3:SAC", description="Soft Actor-Critic (SB3)")
register_algo("td3", "stable_baselines3:TD3", description="Twin Delayed DDPG (SB3)")
register_algo("ddpg", "stable_baselines3:DDPG", description="Deep Deterministic Policy Gradient (SB3)")
register_algo("ppo", "stable_baselines3:PPO", description="Proximal Policy Optimization (SB3)")
register_algo("a2c", "stable_baselines3:A2C", description="Advantage Actor-Critic (SB3)")
register_algo("tqc", "sb3_contrib:TQC", description="Truncated Quantile Critics (sb3-contrib)")
register_algo("crossq", "sb3_contrib:CrossQ", description="CrossQ, batch-normalised critics without targets (sb3-contrib)")

# The library's own algorithms.
register_algo("idem", "samplers.idem:IDEM", kind="sampler", description="Iterated Denoising Energy Matching sampler")
register_algo("canonical", "samplers.canonical:CanonicalDiffusion", "sampler", "Diffusion via learned canonicalization")
register_algo("pinn", "pde.solver:PINNSolver", "pde", "Physics-informed DeepONet, optional Lie point symmetry loss")
register_algo("diffcsp", "crystals.models:DiffCSP", "crystal", "DiffCSP: crystal generation by joint diffusion of the cell")
register_algo("symmcd", "crystals.models:SymmCD", "crystal", "SymmCD: crystal generation from the asymmetric unit")
register_algo("ilcm", "causal.models:ILCMLearner", "causal", "ILCM over the task's family of target sets (subset extension)")
register_algo("ilcm-atomic", "causal.models:ILCMAtomic", "causal", "ILCM as released: targets {} and singletons")
register_algo("ilcm-oracle", "causal.models:ILCMOracle", "causal", "ILCM fed each pair's true target set")
register_algo("dvae", "causal.models:DVAE", "causal", "dVAE baseline of ILCM: solution functions without context")
register_algo("betavae", "causal.models:BetaVAE", "causal", "beta-VAE baseline of ILCM on single observations")
register_algo("dqs", "agents.dqs:DQS", description="Diffusion Q-Sampling: a diffusion actor sampling exp(Q/T)")
# Offline goal-conditioned algorithms (learn from a GoalDataset; timesteps are gradient steps).
register_algo("merlin", "agents.merlin:Merlin", kind="offline", description="Merlin: goal-reaching as reversed diffusion")
register_algo("gcsl", "agents.merlin:GCSL", kind="offline", description="Goal-conditioned supervised learning")
register_algo("wgcsl", "agents.merlin:WGCSL", kind="offline", description="Weighted GCSL (advantage-weighted)")
