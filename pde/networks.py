"""Physics-informed networks trained on data, the PDE residual and, optionally, the Lie point symmetry loss of
`pde.lie_symmetry` (Akhound-Sadegh et al., NeurIPS 2023): loss = data + residual + symmetry_weight · Σ_v
w_v mean (D_Δ[u_θ](Q_v))², each term on its own points.

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

import torch
from torch import Tensor, nn

from core.config import CheckedConfig
from pde.lie_symmetry import (
    PDE,
    Jet,
    SymmetryForm,
    jet,
    jet_indices,
    pde_residual,
    pde_residual_of_jet,
    point_field,
    symmetry_loss,
    symmetry_loss_of_jet,
)


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
    :param residual_weight: Weight of the PDE-residual term
    :param symmetry_weight: Weight of the symmetry loss (0: off)
    :param seed: Seed of the random collocation points and subsets
    """

    def __init__(
        self, pde: PDE, network: nn.Module, learning_rate: float, residual_weight: float, symmetry_weight: float,
        seed: int,
    ) -> None:  # fmt: skip
        for name, weight in {"residual_weight": residual_weight, "symmetry_weight": symmetry_weight}.items():
            if not weight >= 0:
                raise ValueError(f"{name} must be non-negative, got {weight}")
        self.pde, self.network = pde, network
        self.residual_weight, self.symmetry_weight = residual_weight, symmetry_weight
        self.learning_rate = learning_rate
        self.generator = torch.Generator().manual_seed(seed)
        self.optimizer = torch.optim.Adam(network.parameters(), lr=learning_rate)
        self.steps = 0

    def total(self, terms: dict[str, Tensor]) -> Tensor:
        """The weighted sum of the loss terms (the data terms ``data`` / ``initial`` have weight 1)."""
        data = terms["data"] if "data" in terms else terms["initial"]
        return data + self.residual_weight * terms["residual"] + self.symmetry_weight * terms.get("symmetry", 0.0)

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
class PINNConfig(CheckedConfig):
    """Network and optimisation of a PINN."""

    hidden_dim: int = 64
    """Width of every hidden layer."""
    n_layers: int = 4
    """Hidden layers of the MLP."""
    learning_rate: float = 1e-3
    """Adam learning rate."""
    residual_weight: float = 1.0
    """Weight of the PDE-residual term."""
    symmetry_weight: float = 0.0
    """Weight of the symmetry loss (0: an ordinary PINN)."""
    generator_weights: dict[str, float] = field(default_factory=dict)
    """Per-generator weights of the symmetry loss (default 1 each)."""
    generators: tuple[str, ...] | None = None
    """Generators in the symmetry loss; None: all of the PDE's."""
    symmetry_form: SymmetryForm = "evolutionary"
    """The symmetry condition penalised: "evolutionary" D_Δ[u](Q_v) (GPS_PINO, arXiv 2502.00373) or "classical"
    pr⁽ⁿ⁾v(Δ)[u] = λ_v Δ[u] (Akhound-Sadegh et al., NeurIPS 2023, §3); `pde.lie_symmetry.symmetry_residuals_at`."""
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
        super().__init__(pde, network, cfg.learning_rate, cfg.residual_weight, cfg.symmetry_weight, seed)
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
class DeepONetConfig(CheckedConfig):
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
    """Collocation points per initial condition and step in the symmetry loss (its most expensive term)."""
    residual_weight: float = 1.0
    """Weight of the PDE-residual term (the initial-condition term has weight 1)."""
    symmetry_weight: float = 0.0
    """Weight of the symmetry loss (0: an ordinary physics-informed DeepONet)."""
    generator_weights: dict[str, float] = field(default_factory=dict)
    """Per-generator weights of the symmetry loss (default 1 each)."""
    generators: tuple[str, ...] | None = None
    """Generators in the symmetry loss; None: all of the PDE's."""
    symmetry_form: SymmetryForm = "evolutionary"
    """The symmetry condition penalised: "evolutionary" D_Δ[u](Q_v) (GPS_PINO, arXiv 2502.00373) or "classical"
    pr⁽ⁿ⁾v(Δ)[u] = λ_v Δ[u] (Akhound-Sadegh et al., NeurIPS 2023, §3); `pde.lie_symmetry.symmetry_residuals_at`."""


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
    """

    def __init__(
        self, pde: PDE, sensors: Tensor, length: float, t_max: float, config: DeepONetConfig | None = None,
        seed: int = 0, device: str | torch.device = "cpu",
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
        super().__init__(pde, network.to(self.device), cfg.learning_rate, cfg.residual_weight, cfg.symmetry_weight, seed)
        self.sensors, self.length, self.t_max = sensors.float().to(self.device), float(length), float(t_max)
        # x -> kx, t -> 2t/t_max
        self._scale = torch.tensor([2 * math.pi / self.length, 2 / self.t_max], device=self.device)

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

    def losses(self, u0: Tensor) -> dict[str, Tensor]:
        """The loss terms on a batch of initial conditions ``u0`` (B, m) given at the sensors: ``initial`` (MSE of
        u(x, 0) against u₀ on a random subset of sensors), ``residual`` (mean squared PDE residual at random points)
        and, with a symmetry weight, ``symmetry`` (the symmetry loss at other random points, averaged over the batch)."""
        cfg = self.config
        b, m = u0.shape
        index = torch.randint(m, (b, min(cfg.initial_points, m)), generator=self.generator).to(self.device)
        at_zero = torch.stack([self.sensors[index], torch.zeros(index.shape, device=self.device)], dim=-1)
        terms = {"initial": (self(u0, at_zero) - u0.gather(1, index)).square().mean()}
        codes = self.network["branch"](u0)
        points = self._uniform(b, cfg.residual_points)
        jets = self.jets(codes, points, self.pde.derivatives)
        terms["residual"] = pde_residual_of_jet(self.pde, jets, points.reshape(-1, 2)).square().mean()
        if cfg.symmetry_weight > 0:
            generators = list(cfg.generators) if cfg.generators is not None else None
            points = self._uniform(b, cfg.symmetry_points)
            jets = self.jets(codes, points, jet_indices(self.pde))
            terms["symmetry"] = symmetry_loss_of_jet(self.pde, jets, points.reshape(-1, 2), cfg.generator_weights,
                                                     generators, cfg.symmetry_form)  # fmt: skip
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
        history = []
        for _ in range(steps):
            batch = torch.randint(len(initial_conditions), (self.config.ic_batch,), generator=self.generator)
            batch = batch.to(initial_conditions.device)
            history.append(self.step(self.losses(initial_conditions[batch])))
        return history

    @torch.no_grad()
    def predict(self, u0: Tensor, points: Tensor) -> Tensor:
        """u for ``u0`` (B, m) at ``points`` (N, 2): shape (B, N)."""
        return self(u0, points)

    def relative_l2_error(self, u0: Tensor, points: Tensor, reference: Tensor) -> float:
        """Mean over initial conditions of ‖u_θ − u_ref‖ / ‖u_ref‖ on ``points`` (N, 2); ``reference`` is (B, N)."""
        error = (self.predict(u0, points) - reference).norm(dim=1) / reference.norm(dim=1)
        return float(error.mean())


__all__ = ["PINN", "DeepONetConfig", "PIDeepONet", "PINNConfig", "PhysicsInformed", "mlp"]
