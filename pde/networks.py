"""Physics-informed networks trained on data, the PDE residual and, optionally, the Lie point symmetry loss of
`pde.lie_symmetry` (Akhound-Sadegh et al., NeurIPS 2023): loss = data + residual + symmetry_weight · Σ_v
w_v mean (D_Δ[u_θ](Q_v))², each term on its own points. The DeepONet adds the controls that separate symmetry from
reweighting (a gradient-enhanced residual, gPINN, arXiv 2111.02801; the residual reweighted by 1 + κ Σ_v λ_v²), the
operator's equivariance loss (`pde.equivariance`) and fixed, finite collocation sets (the paper's §4 regime).

* `PINN`: one solution u_θ(x, t), an MLP fitted to data points.
* `PIDeepONet`: a physics-informed DeepONet (Wang, Wang & Perdikaris, Sci. Adv. 2021) over initial conditions,
  u_θ(u₀)(x, t) = b(u₀) · τ(x, t) + β, trained from initial conditions alone (the PDE residual and the symmetry loss
  need no solution): the set-up of Akhound-Sadegh et al. (2023), Section 4, where the number of training initial
  conditions is the supervision.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from core.config import CheckedConfig
from pde.equivariance import equivariance_residuals
from pde.lie_symmetry import (
    PDE,
    Jet,
    SymmetryForm,
    classical_weight,
    jet,
    jet_indices,
    pde_residual,
    pde_residual_of_jet,
    point_field,
    residual_gradient_of_jet,
    symmetry_loss,
    symmetry_loss_of_jet,
)

WEIGHT_CHUNK = 32_768  # points per call of classical_weight over a fixed collocation set


def mlp(in_dim: int, hidden_dim: int, n_layers: int, out_dim: int, activation: type[nn.Module]) -> nn.Sequential:
    """``n_layers`` hidden layers of ``hidden_dim`` with ``activation``, then a linear output layer."""
    if n_layers < 1 or hidden_dim < 1:
        raise ValueError(f"n_layers and hidden_dim must be positive, got {n_layers} and {hidden_dim}")
    layers: list[nn.Module] = []
    for width in [in_dim] + [hidden_dim] * (n_layers - 1):
        layers += [nn.Linear(width, hidden_dim), activation()]
    return nn.Sequential(*layers, nn.Linear(hidden_dim, out_dim))


class PhysicsInformed:
    """What the physics-informed models share: the PDE, the loss weights, Adam and the training step.

    :param pde: The PDE (residual and symmetry generators)
    :param network: The trained parameters
    :param learning_rate: Adam learning rate
    :param weights: Weight of each loss term by name (``residual``, ``symmetry``, ...; 0: off); the data term has
        weight 1
    :param seed: Seed of the random collocation points and subsets
    """

    def __init__(self, pde: PDE, network: nn.Module, learning_rate: float, weights: dict[str, float], seed: int) -> None:
        for name, weight in weights.items():
            if not weight >= 0:
                raise ValueError(f"{name}_weight must be non-negative, got {weight}")
        self.pde, self.network = pde, network
        self.weights = weights
        self.learning_rate = learning_rate
        self.generator = torch.Generator().manual_seed(seed)
        self.optimizer = torch.optim.Adam(network.parameters(), lr=learning_rate)
        self.steps = 0

    def total(self, terms: dict[str, Tensor]) -> Tensor:
        """The weighted sum of the loss terms (the data terms ``data`` / ``initial`` have weight 1)."""
        data = terms["data"] if "data" in terms else terms["initial"]
        return data + sum(weight * terms[name] for name, weight in self.weights.items() if name in terms)

    def step(self, terms: dict[str, Tensor]) -> dict[str, float]:
        """One Adam step on `total`; returns the terms and ``loss`` as floats. A non-finite loss stops with a clear
        error before the parameters change."""
        loss = self.total(terms)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(
                f"{type(self).__name__} loss is {loss.item()} at step {self.steps}: lower the learning rate (now "
                f"{self.learning_rate:g}) or the loss weights"
            )
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.steps += 1
        return {key: value.item() for key, value in terms.items()} | {"loss": loss.item()}


@dataclass(frozen=True)
class SymmetryLossConfig(CheckedConfig):
    """The knobs of the Lie point symmetry loss, shared by the PINN and the physics-informed DeepONet."""

    symmetry_weight: float = 0.0
    """Weight of the symmetry loss (0: off, an ordinary physics-informed network)."""
    generator_weights: dict[str, float] = field(default_factory=dict)
    """Per-generator weights of the symmetry loss (default 1 each)."""
    generators: tuple[str, ...] | None = None
    """Generators in the symmetry loss; None: all of the PDE's."""
    symmetry_form: SymmetryForm = "evolutionary"
    """The symmetry condition penalised: "evolutionary" D_Δ[u](Q_v) (GPS_PINO, arXiv 2502.00373) or "classical"
    pr⁽ⁿ⁾v(Δ)[u] = λ_v Δ[u] (Akhound-Sadegh et al., NeurIPS 2023, §3); `pde.lie_symmetry.symmetry_residuals_at`."""


@dataclass(frozen=True)
class PINNConfig(SymmetryLossConfig):
    """Network and optimisation of a PINN."""

    hidden_dim: int = 64
    """Width of every hidden layer."""
    n_layers: int = 4
    """Hidden layers of the MLP."""
    learning_rate: float = 1e-3
    """Adam learning rate."""
    residual_weight: float = 1.0
    """Weight of the PDE-residual term."""
    symmetry_points: int = 64
    """Collocation points per step used by the symmetry term (it is the most expensive one)."""


class PINN(PhysicsInformed):
    """A tanh MLP u(z) on z = (x, t) fitted by `fit`; `predict` evaluates it.

    :param pde: The PDE (residual and symmetry generators)
    :param config: Network and losses
    :param seed: Seed of the initialisation and of the collocation subsets
    """

    def __init__(self, pde: PDE, config: PINNConfig | None = None, seed: int = 0) -> None:
        self.config = cfg = config or PINNConfig()
        torch.manual_seed(seed)
        network = mlp(2, cfg.hidden_dim, cfg.n_layers, 1, nn.Tanh)
        weights = {"residual": cfg.residual_weight, "symmetry": cfg.symmetry_weight}
        super().__init__(pde, network, cfg.learning_rate, weights, seed)
        self.field = point_field(self.network)

    def losses(self, data_points: Tensor, data_values: Tensor, collocation: Tensor) -> dict[str, Tensor]:
        """The loss terms: ``data`` (MSE on the data), ``residual`` (mean squared PDE residual on ``collocation``) and,
        with a symmetry weight, ``symmetry`` (on a random subset of ``collocation``)."""
        cfg = self.config
        terms = {
            "data": (self.network(data_points).squeeze(1) - data_values).square().mean(),
            "residual": pde_residual(self.pde, self.field, collocation).square().mean(),
        }
        if cfg.symmetry_weight > 0:
            subset = torch.randperm(len(collocation), generator=self.generator)[: cfg.symmetry_points]
            generators = list(cfg.generators) if cfg.generators is not None else None
            terms["symmetry"] = symmetry_loss(self.pde, self.field, collocation[subset], cfg.generator_weights, generators,
                                              cfg.symmetry_form)  # fmt: skip
        return terms

    def fit(self, data_points: Tensor, data_values: Tensor, collocation: Tensor, steps: int) -> list[dict[str, float]]:
        """``steps`` Adam steps; returns the loss terms of every step. A non-finite loss stops with a clear error."""
        if steps < 1:
            raise ValueError(f"steps must be positive, got {steps}")
        return [self.step(self.losses(data_points, data_values, collocation)) for _ in range(steps)]

    @torch.no_grad()
    def predict(self, points: Tensor) -> Tensor:
        """u at ``points`` (N, 2), shape (N,)."""
        return self.network(points).squeeze(1)

    def relative_l2_error(self, points: Tensor, reference: Tensor) -> float:
        """‖u_θ − u_ref‖ / ‖u_ref‖ on ``points``."""
        return float((self.predict(points) - reference).norm() / reference.norm())


@dataclass(frozen=True)
class DeepONetConfig(SymmetryLossConfig):
    """Networks, batch and losses of a physics-informed DeepONet. Widths and depth are the set-up of
    Akhound-Sadegh et al. (2023) (7 × 100 ELU branch and trunk); the batch sizes are chosen for a CPU."""

    hidden_dim: int = 100
    """Width of the branch and trunk hidden layers."""
    n_layers: int = 7
    """Hidden layers of the branch and of the trunk."""
    latent_dim: int = 100
    """Dimension p of b(u₀) and τ(x, t)."""
    learning_rate: float = 1e-3
    """Adam learning rate."""
    ic_batch: int = 16
    """Initial conditions per step (drawn with replacement from the training set)."""
    initial_points: int = 64
    """Sensor points per initial condition and step in the initial-condition loss."""
    residual_points: int = 64
    """Collocation points per initial condition and step in the PDE-residual loss."""
    symmetry_points: int = 16
    """Collocation points per initial condition and step of the symmetry, gradient-enhanced and equivariance terms
    (the expensive ones)."""
    residual_weight: float = 1.0
    """Weight of the PDE-residual term (the initial-condition term has weight 1)."""
    collocation: Literal["fresh", "fixed"] = "fresh"
    """Where the interior points come from: "fresh" uniform points at every step, or "fixed" finite sets of
    ``residual_points_per_ic`` points per training initial condition drawn once (`PIDeepONet.fix_collocation`), from
    which every step draws its points: the regime of Akhound-Sadegh et al. (NeurIPS 2023, §4, Table 1)."""
    residual_points_per_ic: int = 0
    """N_r, the size of each training initial condition's fixed collocation set (with collocation="fixed" only)."""
    gradient_weight: float = 0.0
    """Weight of the gradient-enhanced term mean ‖∇_(x,t) Δ‖² (gPINN, Yu et al., 2022, arXiv 2111.02801) at the
    symmetry term's points (0: off)."""
    residual_reweighting: float = 0.0
    """κ: each squared residual weighted by 1 + κ Σ_v w_v λ_v(x, t)², where pr v(Δ) = λ_v Δ, over the symmetry term's
    generators and weights (`pde.lie_symmetry.classical_weight`); at κ = symmetry_weight / residual_weight this is the
    classical form's loss in expectation, computed without it (0: off)."""
    equivariance_weight: float = 0.0
    """Weight of the operator's infinitesimal equivariance loss (`pde.equivariance`; 0: off)."""
    equivariance_generators: tuple[str, ...] | None = None
    """Relations of the equivariance loss: generators whose flow keeps the periodic domain (and "superposition" for
    a linear PDE); None: all the problem's."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.residual_reweighting >= 0:
            raise ValueError(f"residual_reweighting must be non-negative, got {self.residual_reweighting}")
        fixed = self.collocation == "fixed"
        if (self.residual_points_per_ic > 0) != fixed or self.residual_points_per_ic < 0:
            raise ValueError(
                f"residual_points_per_ic must be positive with collocation='fixed' and 0 with 'fresh', got "
                f"{self.residual_points_per_ic} with {self.collocation!r}"
            )
        if self.equivariance_generators is not None and not self.equivariance_generators:
            raise ValueError("equivariance_generators must name at least one relation (None: all the problem's)")


class PIDeepONet(PhysicsInformed):
    """u_θ(u₀)(x, t) = b(u₀) · τ(x, t) + β on a periodic domain [0, length) × [0, t_max].

    The branch b reads u₀ at the ``sensors``; the trunk τ reads (cos kx, sin kx, 2t/t_max − 1) with k = 2π/length, so
    every output is exactly periodic in x (no boundary loss) and its x- and t-derivatives, which the residual and the
    symmetry loss read, come from autograd through that embedding.

    :param pde: The PDE (residual and symmetry generators)
    :param sensors: Positions (m,) in [0, length) where the branch reads the initial condition
    :param length: Period of the domain in x
    :param t_max: End of the time interval
    :param config: Networks, batch and losses
    :param seed: Seed of the initialisation and of the random points
    :param device: Where the networks live and the batches are computed (the random points are drawn on the CPU
        generator and moved, so a run draws the same points on every device)
    :param periodic_generators: The relations the equivariance loss may use (`pde.equivariance`): the PDE's
        generators whose flow keeps the periodic domain, and "superposition" for a linear PDE (the problem's list)
    """

    def __init__(
        self, pde: PDE, sensors: Tensor, length: float, t_max: float, config: DeepONetConfig | None = None,
        seed: int = 0, device: str | torch.device = "cpu", periodic_generators: tuple[str, ...] = (),
    ) -> None:  # fmt: skip
        self.config = cfg = config or DeepONetConfig()
        if sensors.ndim != 1 or len(sensors) < 2:
            raise ValueError(f"sensors must be a 1-D tensor of at least 2 positions, got shape {tuple(sensors.shape)}")
        if not (length > 0 and t_max > 0):
            raise ValueError(f"length and t_max must be positive, got {length} and {t_max}")
        torch.manual_seed(seed)
        network = nn.ModuleDict({
            "branch": mlp(len(sensors), cfg.hidden_dim, cfg.n_layers, cfg.latent_dim, nn.ELU),
            "trunk": mlp(3, cfg.hidden_dim, cfg.n_layers, cfg.latent_dim, nn.ELU),
        })  # fmt: skip
        network.register_parameter("bias", nn.Parameter(torch.zeros(())))
        self.device = torch.device(device)
        weights = {"residual": cfg.residual_weight, "symmetry": cfg.symmetry_weight, "gradient": cfg.gradient_weight,
                   "equivariance": cfg.equivariance_weight}  # fmt: skip
        super().__init__(pde, network.to(self.device), cfg.learning_rate, weights, seed)
        self.sensors, self.length, self.t_max = sensors.float().to(self.device), float(length), float(t_max)
        # x -> kx, t -> 2t/t_max
        self._scale = torch.tensor([2 * math.pi / self.length, 2 / self.t_max], device=self.device)
        self.symmetry_generators = list(cfg.generators) if cfg.generators is not None else None
        self.equivariance_relations = cfg.equivariance_generators or periodic_generators
        if cfg.equivariance_weight > 0:
            self._check_equivariance(periodic_generators)
        #: With collocation="fixed": each training initial condition's points, (n, N_r, 2) (`fix_collocation`), and
        #: with residual_reweighting the weight Σ_v w_v λ_v² at each of them, (n, N_r), a function of the point only.
        self.collocation_sets: Tensor | None = None
        self.collocation_weights: Tensor | None = None

    def _check_equivariance(self, periodic_generators: tuple[str, ...]) -> None:
        """The equivariance loss needs relations compatible with the periodic domain and equispaced sensors over one
        period (its x-derivatives of u₀ are spectral)."""
        outside = sorted(set(self.equivariance_relations) - set(periodic_generators))
        if outside or not self.equivariance_relations:
            raise ValueError(f"equivariance_generators must be among {sorted(periodic_generators)}, got "
                             f"{outside or 'none'}")  # fmt: skip
        spacing = self.length / len(self.sensors)
        grid = torch.arange(len(self.sensors), device=self.device) * spacing
        if not torch.allclose(self.sensors, grid, rtol=0, atol=1e-5 * spacing):
            raise ValueError("the equivariance loss needs sensors equispaced over one period, starting at x = 0")

    def fix_collocation(self, n_initial_conditions: int, seed: int) -> Tensor:
        """Draw the fixed collocation sets once: ``residual_points_per_ic`` uniform points of the domain for each of
        the ``n_initial_conditions`` training initial conditions, from a stream of their own (numpy, seeded with
        (seed, 1)): a set depends on the seed and N_r only, and a larger N_r's sets begin with a smaller one's.
        Returns them, (n, N_r, 2)."""
        cfg = self.config
        if cfg.collocation != "fixed":
            raise ValueError(f"fix_collocation needs collocation='fixed', got {cfg.collocation!r}")
        if n_initial_conditions < 1:
            raise ValueError(f"n_initial_conditions must be positive, got {n_initial_conditions}")
        unit = np.random.default_rng([seed, 1]).random((cfg.residual_points_per_ic, n_initial_conditions, 2))
        sets = torch.tensor(unit.transpose(1, 0, 2) * [self.length, self.t_max], dtype=torch.float32)
        self.set_collocation(sets)
        return sets

    def set_collocation(self, sets: Tensor) -> None:
        """Use the fixed collocation sets ``sets`` (n, N_r, 2) (drawn by `fix_collocation`, or restored from a
        checkpoint); with residual_reweighting their weights are computed here once, in chunks (the cost of
        `classical_weight` is mostly per call, not per point)."""
        self.collocation_sets = sets.to(self.device)
        self.collocation_weights = None
        if self.config.residual_reweighting > 0:
            flat = self.collocation_sets.reshape(-1, 2)
            self.collocation_weights = torch.cat([self._classical_weight(chunk) for chunk in flat.split(WEIGHT_CHUNK)]
                                                 ).reshape(sets.shape[:2])  # fmt: skip

    @torch.no_grad()
    def _classical_weight(self, points: Tensor) -> Tensor:
        """Σ_v w_v λ_v² at ``points`` (N, 2) over the symmetry term's generators (a function of the points only)."""
        return classical_weight(self.pde, points, self.config.generator_weights, self.symmetry_generators)

    def _trunk(self, z: Tensor) -> Tensor:
        """τ at points z (..., 2). The scales are a tensor, not Python floats: a Python scalar times a selected
        coordinate loses its dtype in torch.func's forward-over-reverse derivatives (torch 2.13: "double != float")."""
        w = z * self._scale.to(z)
        features = torch.stack([w[..., 0].cos(), w[..., 0].sin(), w[..., 1] - 1], dim=-1)
        return self.network["trunk"](features)

    def jets(self, codes: Tensor, points: Tensor, indices: Iterable[tuple[int, ...]]) -> Jet:
        """The partial derivatives ∂^index u for branch codes ``codes`` (B, p) at their ``points`` (B, n, 2), flattened
        to (B·n,) each. u is linear in the trunk, so its derivatives are the trunk's (taken once for all codes, on one
        batch of points) dotted with the codes."""
        b, n, _ = points.shape
        trunk = jet(self._trunk, indices, points.reshape(b * n, 2))
        rows = codes.repeat_interleave(n, dim=0)
        bias = self.network.get_parameter("bias")
        return {index: (value * rows).sum(-1) + (bias if not any(index) else 0) for index, value in trunk.items()}

    def __call__(self, u0: Tensor, points: Tensor) -> Tensor:
        """u for initial conditions ``u0`` (B, m) at ``points`` (B, N, 2) or (N, 2) shared: shape (B, N)."""
        codes = self.network["branch"](u0)
        trunk = self._trunk(points)
        trunk = trunk.expand(len(u0), *trunk.shape[-2:]) if trunk.ndim == 2 else trunk
        return torch.einsum("bnp,bp->bn", trunk, codes) + self.network.get_parameter("bias")

    def _uniform(self, b: int, n: int) -> Tensor:
        """``n`` uniform points of the domain for each of ``b`` initial conditions, (b, n, 2)."""
        unit = torch.rand(b, n, 2, generator=self.generator).to(self.device)
        return unit * torch.tensor([self.length, self.t_max], device=self.device)

    def _interior(self, n: int, rows: Tensor | None, b: int) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
        """``n`` interior points for each of ``b`` initial conditions, (b, n, 2), and where they are in the fixed
        sets (rows and columns, None for fresh points): fresh uniform ones, or with collocation="fixed" drawn with
        replacement from the fixed sets of the training ``rows`` (b,) (a whole set, in its order, when n is at least
        its size)."""
        if self.config.collocation == "fresh":
            return self._uniform(b, n), None
        if rows is None or self.collocation_sets is None:
            raise ValueError("collocation='fixed' needs fix_collocation() and the training rows of the batch")
        size = self.collocation_sets.shape[1]
        if n >= size:
            columns = torch.arange(size, device=self.device).expand(b, size)
        else:
            columns = torch.randint(size, (b, n), generator=self.generator).to(self.device)
        where = (rows.to(self.device)[:, None], columns)
        return self.collocation_sets[where], where

    def losses(self, u0: Tensor, rows: Tensor | None = None) -> dict[str, Tensor]:
        """The loss terms on a batch of initial conditions ``u0`` (B, m) given at the sensors: ``initial`` (MSE of
        u(x, 0) against u₀ on a random subset of sensors), ``residual`` (mean squared PDE residual, reweighted with
        ``residual_reweighting``) and, where weighted, ``symmetry``, ``gradient`` (gPINN) and ``equivariance`` at
        other points, averaged over the batch. The points are fresh, or with collocation="fixed" drawn from the fixed
        sets of the training ``rows`` (B,) that ``u0`` comes from."""
        cfg = self.config
        b, m = u0.shape
        index = torch.randint(m, (b, min(cfg.initial_points, m)), generator=self.generator).to(self.device)
        at_zero = torch.stack([self.sensors[index], torch.zeros(index.shape, device=self.device)], dim=-1)
        terms = {"initial": (self(u0, at_zero) - u0.gather(1, index)).square().mean()}
        codes = self.network["branch"](u0)
        points, where = self._interior(cfg.residual_points, rows, b)
        jets = self.jets(codes, points, self.pde.derivatives)
        squared = pde_residual_of_jet(self.pde, jets, points.reshape(-1, 2)).square()
        if cfg.residual_reweighting > 0:
            fixed = self.collocation_weights
            weight = self._classical_weight(points.reshape(-1, 2)) if fixed is None or where is None else fixed[where]
            squared = squared * (1 + cfg.residual_reweighting * weight.reshape(-1))
        terms["residual"] = squared.mean()
        if not any(self.weights[name] > 0 for name in ("symmetry", "gradient", "equivariance")):
            return terms
        points, _ = self._interior(cfg.symmetry_points, rows, b)
        if cfg.symmetry_weight > 0 or cfg.gradient_weight > 0:
            jets = self.jets(codes, points, jet_indices(self.pde))
        if cfg.symmetry_weight > 0:
            terms["symmetry"] = symmetry_loss_of_jet(self.pde, jets, points.reshape(-1, 2), cfg.generator_weights,
                                                     self.symmetry_generators, cfg.symmetry_form)  # fmt: skip
        if cfg.gradient_weight > 0:
            terms["gradient"] = residual_gradient_of_jet(self.pde, jets, points.reshape(-1, 2)).square().sum(1).mean()
        if cfg.equivariance_weight > 0:
            terms["equivariance"] = equivariance_residuals(self, self.pde, self.equivariance_relations, u0, points,
                                                           self.sensors, self.length).sum()  # fmt: skip
        return terms

    def fit(self, initial_conditions: Tensor, steps: int) -> list[dict[str, float]]:
        """``steps`` Adam steps on batches of ``initial_conditions`` (n, m) drawn with replacement; returns the loss
        terms of every step."""
        if steps < 1:
            raise ValueError(f"steps must be positive, got {steps}")
        if initial_conditions.ndim != 2 or initial_conditions.shape[1] != len(self.sensors):
            raise ValueError(
                f"initial_conditions must be (n, {len(self.sensors)}) values at the sensors, got "
                f"{tuple(initial_conditions.shape)}"
            )
        fixed = self.collocation_sets
        if self.config.collocation == "fixed" and (fixed is None or len(fixed) != len(initial_conditions)):
            raise ValueError(f"collocation='fixed' needs fix_collocation({len(initial_conditions)}, seed) for the "
                             "training initial conditions first")  # fmt: skip
        history = []
        for _ in range(steps):
            batch = torch.randint(len(initial_conditions), (self.config.ic_batch,), generator=self.generator)
            batch = batch.to(initial_conditions.device)
            history.append(self.step(self.losses(initial_conditions[batch], batch)))
        return history

    @torch.no_grad()
    def predict(self, u0: Tensor, points: Tensor) -> Tensor:
        """u for ``u0`` (B, m) at ``points`` (N, 2): shape (B, N)."""
        return self(u0, points)

    def relative_l2_error(self, u0: Tensor, points: Tensor, reference: Tensor) -> float:
        """Mean over initial conditions of ‖u_θ − u_ref‖ / ‖u_ref‖ on ``points`` (N, 2); ``reference`` is (B, N)."""
        error = (self.predict(u0, points) - reference).norm(dim=1) / reference.norm(dim=1)
        return float(error.mean())

    def mean_squared_error(self, u0: Tensor, points: Tensor, reference: Tensor) -> float:
        """Mean of (u_θ − u_ref)² over initial conditions and ``points`` (N, 2), the metric of Akhound-Sadegh et al.
        (NeurIPS 2023, Table 1); ``reference`` is (B, N)."""
        return float((self.predict(u0, points) - reference).square().mean())


__all__ = ["PINN", "DeepONetConfig", "PIDeepONet", "PINNConfig", "PhysicsInformed", "SymmetryLossConfig", "mlp"]
