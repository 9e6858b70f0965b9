"""Additive-noise structural causal models over a DAG of `causal.graphs`, z_i = m_i(z_Pa(i)) + s_i ε_i with ε ~ N(0, I),
and the counterfactual pairs of weakly supervised causal representation learning (Brehmer et al., NeurIPS 2022, arXiv
2203.16437, §2): a perfect intervention on S resamples z̃_i = μ + ε̃_i with fresh noise for i ∈ S and recomputes the
other latents from their parents with the same noise ε_i (reference Qualcomm-AI-research/weakly-supervised-causal-
representation-learning `ws_crl/causal/scm.py::FixedOrderSCM.sample_weakly_supervised`; there the kept noise also gets
a 1e-9 jitter, here the pair is exactly counterfactual).

Two mechanisms:

* ``linear``: z_j = ε_j + Σ_i w_ij z_i over the parents, w_ij = sign(N)(1 + 0.3 N') with N, N' independent standard
  normals — ILCM's scaling experiment (`FixedGraphLinearANM` with ``causal_effects: bimodal``, unit noise scale).
* ``nonlinear``: z_i = MLP_i(z_Pa(i)) + 0.5 ε_i, MLP_i a fixed random tanh network with two hidden layers of 16 units
  and a linear output; a root has no mechanism and keeps unit scale, z_i = ε_i, so that intervening on it with N(0, 1)
  does not change its law (as in the linear model).

Latents are 0-indexed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from causal.graphs import parents, topological_order, validate_dag

Mechanism = Literal["linear", "nonlinear"]
HIDDEN_UNITS = 16
NONLINEAR_NOISE_SCALE = 0.5


@dataclass(frozen=True, eq=False)
class NodeMechanism:
    """m_i: a tanh MLP over the parents' values given by its layers (weight, bias); the last layer is linear. One
    layer is a linear mechanism; no layers is a root (m_i = 0)."""

    layers: tuple[tuple[np.ndarray, np.ndarray], ...]

    def __call__(self, parent_values: np.ndarray) -> np.ndarray:
        if not self.layers:
            return np.zeros(len(parent_values))
        hidden = parent_values
        for k, (weight, bias) in enumerate(self.layers):
            hidden = hidden @ weight + bias
            if k < len(self.layers) - 1:
                hidden = np.tanh(hidden)
        return hidden[:, 0]


@dataclass(frozen=True, eq=False)
class AdditiveSCM:
    """z_i = m_i(z_Pa(i)) + noise_scale[i] ε_i over ``adjacency``; perfect interventions set z̃_i = μ + ε̃_i."""

    adjacency: np.ndarray
    mechanisms: tuple[NodeMechanism, ...]
    noise_scale: np.ndarray  # (n,)

    @property
    def num_latents(self) -> int:
        return len(self.adjacency)

    def solve(self, noise: np.ndarray, intervened: np.ndarray | None = None, intervention_mean: float = 0.0) -> np.ndarray:
        """The latents (N, n) of noises (N, n) in topological order; where ``intervened`` (N, n) bool is set, the
        latent is ``intervention_mean + noise`` instead, cut from its parents."""
        z = np.zeros_like(noise, dtype=np.float64)
        for i in topological_order(self.adjacency):
            z[:, i] = self.mechanisms[i](z[:, parents(self.adjacency, i)]) + self.noise_scale[i] * noise[:, i]
            if intervened is not None:
                z[:, i] = np.where(intervened[:, i], intervention_mean + noise[:, i], z[:, i])
        return z

    def sample_pairs(self, target_masks: np.ndarray, rng: np.random.Generator,
                     intervention_mean: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """One counterfactual pair per row of ``target_masks`` (N, n) bool: (z, z̃, ε, ε̃), ε̃ fresh on the targets
        and equal to ε elsewhere."""
        noise = rng.standard_normal(target_masks.shape)
        noise_tilde = np.where(target_masks, rng.standard_normal(target_masks.shape), noise)
        return self.solve(noise), self.solve(noise_tilde, target_masks, intervention_mean), noise, noise_tilde


def linear_scm(adjacency: np.ndarray, rng: np.random.Generator) -> AdditiveSCM:
    """ILCM's linear-Gaussian SCM: z_j = ε_j + Σ w_ij z_i, w_ij = sign(N)(1 + 0.3 N')."""
    adjacency = validate_dag(adjacency)
    mechanisms = []
    for j in range(len(adjacency)):
        k = len(parents(adjacency, j))
        weights = np.sign(rng.standard_normal((k, 1))) * (1.0 + 0.3 * rng.standard_normal((k, 1)))
        mechanisms.append(NodeMechanism(((weights, np.zeros(1)),) if k else ()))
    return AdditiveSCM(adjacency, tuple(mechanisms), np.ones(len(adjacency)))


def nonlinear_scm(adjacency: np.ndarray, rng: np.random.Generator) -> AdditiveSCM:
    """z_i = MLP_i(z_Pa(i)) + 0.5 ε_i (roots: z_i = ε_i). Weights are N(0, 1/fan-in) times a gain of 2 on the
    hidden layers, so the tanh units leave their linear range on inputs of unit scale; biases N(0, 0.5²)."""
    adjacency = validate_dag(adjacency)
    mechanisms, scales = [], []
    for i in range(len(adjacency)):
        k = len(parents(adjacency, i))
        if not k:
            mechanisms.append(NodeMechanism(()))
            scales.append(1.0)
            continue
        layers = []
        for fan_in, fan_out, gain in [(k, HIDDEN_UNITS, 2.0), (HIDDEN_UNITS, HIDDEN_UNITS, 2.0), (HIDDEN_UNITS, 1, 1.0)]:
            weight = gain * rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)
            layers.append((weight, 0.5 * rng.standard_normal(fan_out)))
        mechanisms.append(NodeMechanism(tuple(layers)))
        scales.append(NONLINEAR_NOISE_SCALE)
    return AdditiveSCM(adjacency, tuple(mechanisms), np.array(scales))


def make_scm(adjacency: np.ndarray, mechanism: Mechanism, rng: np.random.Generator) -> AdditiveSCM:
    """The SCM of the named mechanism family, its weights drawn from ``rng``."""
    builders = {"linear": linear_scm, "nonlinear": nonlinear_scm}
    if mechanism not in builders:
        raise ValueError(f"mechanism must be one of {', '.join(builders)}, got {mechanism!r}")
    return builders[mechanism](adjacency, rng)
