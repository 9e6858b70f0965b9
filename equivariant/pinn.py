"""A physics-informed network u_θ(x, t) trained on data, the PDE residual and, optionally, the Lie point symmetry loss
of `equivariant.lie_symmetry` (Akhound-Sadegh et al., NeurIPS 2023): loss = data + residual + symmetry_weight · Σ_v
w_v mean (D_Δ[u_θ](Q_v))², each term on its own points."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from equivariant.lie_symmetry import PDE, pde_residual, point_field, symmetry_loss


@dataclass(frozen=True)
class PINNConfig:
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
    symmetry_points: int = 64
    """Collocation points per step used by the symmetry term (it is the most expensive one)."""


class PINN:
    """A tanh MLP u(z) on z = (x, t) fitted by `fit`; `predict` evaluates it.

    :param pde: The PDE (residual and symmetry generators)
    :param config: Network and losses
    :param seed: Seed of the initialisation and of the collocation subsets
    """

    def __init__(self, pde: PDE, config: PINNConfig | None = None, seed: int = 0) -> None:
        self.pde, self.config = pde, config or PINNConfig()
        if self.config.n_layers < 1 or self.config.hidden_dim < 1:
            raise ValueError(f"n_layers and hidden_dim must be positive, got {self.config}")
        self.generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        layers: list[nn.Module] = []
        width = 2
        for _ in range(self.config.n_layers):
            layers += [nn.Linear(width, self.config.hidden_dim), nn.Tanh()]
            width = self.config.hidden_dim
        self.network = nn.Sequential(*layers, nn.Linear(width, 1))
        self.field = point_field(self.network)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=self.config.learning_rate)
        self.steps = 0

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
            terms["symmetry"] = symmetry_loss(self.pde, self.field, collocation[subset], cfg.generator_weights, generators)
        return terms

    def total(self, terms: dict[str, Tensor]) -> Tensor:
        cfg = self.config
        return terms["data"] + cfg.residual_weight * terms["residual"] + cfg.symmetry_weight * terms.get("symmetry", 0.0)

    def fit(self, data_points: Tensor, data_values: Tensor, collocation: Tensor, steps: int) -> list[dict[str, float]]:
        """``steps`` Adam steps; returns the loss terms of every step. A non-finite loss stops with a clear error."""
        if steps < 1:
            raise ValueError(f"steps must be positive, got {steps}")
        history = []
        for _ in range(steps):
            terms = self.losses(data_points, data_values, collocation)
            loss = self.total(terms)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(
                    f"PINN loss is {loss.item()} at step {self.steps}: lower the learning rate (now "
                    f"{self.config.learning_rate:g}) or the loss weights"
                )
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.steps += 1
            history.append({key: value.item() for key, value in terms.items()} | {"loss": loss.item()})
        return history

    @torch.no_grad()
    def predict(self, points: Tensor) -> Tensor:
        """u at ``points`` (N, 2), shape (N,)."""
        return self.network(points).squeeze(1)

    def relative_l2_error(self, points: Tensor, reference: Tensor) -> float:
        """‖u_θ − u_ref‖ / ‖u_ref‖ on ``points``."""
        return float((self.predict(points) - reference).norm() / reference.norm())


__all__ = ["PINN", "PINNConfig"]
