"""Scenes of typed entities for equivariant networks: the layout of a flat observation, the EGNN that reads it,
and the radially squashed Gaussian whose law commutes with rotations.

A flat observation holds the positions of typed entities (`SetLayout`), e.g. ParticleReach's N particles then N
targets. G is E(d) acting on the whole scene (rotations, reflections, translations) together with the permutations of
the entities within each type. The SB3 features extractors and the equivariant SAC policy built on these live in
`agents.equivariant`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from equivariant.egnn import EGNN, Aggregation
from equivariant.geometry import as_particles


@dataclass(frozen=True)
class SetLayout:
    """How a flat observation stores typed entities: the positions of all type-0 entities, then type 1, and so on,
    each entity as ``spatial_dim`` consecutive coordinates. ParticleReach with N particles is ``SetLayout((N, N))``.
    """

    entity_counts: tuple[int, ...]  # number of entities of each type, in observation order
    spatial_dim: int = 2  # coordinates per entity
    acting_type: int = 0  # type whose entities receive one action vector each, in entity order

    def __post_init__(self) -> None:
        object.__setattr__(self, "entity_counts", tuple(int(count) for count in self.entity_counts))
        if not self.entity_counts or min(self.entity_counts) < 1:
            raise ValueError(f"entity_counts must list at least one positive count per type, got {self.entity_counts}")
        if self.n_entities < 2:
            raise ValueError(f"a scene needs at least 2 entities to form a graph, got {self.entity_counts}")
        if self.spatial_dim < 1:
            raise ValueError(f"spatial_dim must be positive, got {self.spatial_dim}")
        if not 0 <= self.acting_type < self.n_types:
            raise ValueError(f"acting_type must index one of the {self.n_types} entity types, got {self.acting_type}")

    @property
    def n_types(self) -> int:
        return len(self.entity_counts)

    @property
    def n_entities(self) -> int:
        return sum(self.entity_counts)

    @property
    def obs_dim(self) -> int:
        return self.n_entities * self.spatial_dim

    @property
    def acting(self) -> slice:
        """Entity indices of the acting type."""
        start = sum(self.entity_counts[: self.acting_type])
        return slice(start, start + self.entity_counts[self.acting_type])

    @property
    def action_dim(self) -> int:
        return self.entity_counts[self.acting_type] * self.spatial_dim

    def type_one_hot(self) -> Tensor:
        """(n_entities, n_types) one-hot entity types."""
        types = torch.repeat_interleave(torch.arange(self.n_types), torch.tensor(self.entity_counts))
        return F.one_hot(types, self.n_types).float()


@dataclass(frozen=True)
class EGNNConfig:
    """Hyperparameters of the EGNN run on a scene (see `equivariant.egnn.EGNNLayer`)."""

    hidden_dim: int = 32  # width of node features and messages (cost grows ~quadratically: 64 is ~3x slower)
    n_layers: int = 2  # message-passing layers
    attention: bool = True  # gate each message by σ(Linear(m_ij))
    normalize: bool = True  # soft-normalised differences (x_i − x_j)/(‖x_i − x_j‖ + 1): far entities do not dominate
    aggregation: Aggregation = "sum"  # sum keeps a lone near target able to move a particle strongly
    coords_range: float = 15.0  # total tanh bound of the coordinate updates, split over layers (iDEM's default)


def pool_by_type(node_features: Tensor, type_one_hot: Tensor) -> Tensor:
    """Mean of (B, n, k) node features within each entity type, concatenated: (B, n_types * k)."""
    weights = type_one_hot / type_one_hot.sum(dim=0)
    return torch.einsum("bnk,nt->btk", node_features, weights).flatten(1)


class SceneEGNN(nn.Module):
    """EGNN on the fully connected graph of a layout's entities, node features = type one-hot.

    With ``with_actions``, the action vector a_i of each acting entity (zero for the others) enters through
    invariants only: node feature ‖a_i‖² and edge attributes a_i·(x_i − x_j), a_j·(x_i − x_j), a_i·a_j. The outputs
    then transform under G acting jointly on the state and the action.
    """

    def __init__(self, layout: SetLayout, config: EGNNConfig, with_actions: bool = False) -> None:
        super().__init__()
        self.layout = layout
        self.with_actions = with_actions
        self.register_buffer("type_one_hot", layout.type_one_hot(), persistent=False)
        self.egnn = EGNN(
            layout.n_types + int(with_actions),
            config.hidden_dim,
            None,
            config.n_layers,
            n_nodes=layout.n_entities,
            edge_attr_dim=3 if with_actions else 0,
            attention=config.attention,
            normalize=config.normalize,
            coords_range=config.coords_range,
            aggregation=config.aggregation,
        )

    def forward(self, obs: Tensor, actions: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Flat ``obs`` (B, obs_dim) [and ``actions`` (B, action_dim)] → invariant node features h (B, n, hidden) and
        equivariant vectors x_out − x_in (B, n, d)."""
        if (actions is not None) != self.with_actions:
            raise ValueError(f"this SceneEGNN has with_actions={self.with_actions}; pass actions exactly when it is True")
        layout = self.layout
        x = as_particles(obs, layout.n_entities, layout.spatial_dim)
        h = self.type_one_hot.expand(x.shape[0], -1, -1)
        edge_attr = None
        if actions is not None:
            acting = layout.acting
            vectors = as_particles(actions, acting.stop - acting.start, layout.spatial_dim)
            vectors = F.pad(vectors, (0, 0, acting.start, layout.n_entities - acting.stop))
            row, col = self.egnn.edges
            diff = x[:, row] - x[:, col]
            a_row, a_col = vectors[:, row], vectors[:, col]
            edge_attr = torch.stack([(a_row * diff).sum(-1), (a_col * diff).sum(-1), (a_row * a_col).sum(-1)], dim=-1)
            h = torch.cat([h, vectors.square().sum(-1, keepdim=True)], dim=-1)
        h, moved = self.egnn(h, x, edge_attr)
        return h, moved - x


def _log_one_minus_tanh_squared(r: Tensor) -> Tensor:
    """log(1 − tanh²(r)) = 2 (log 2 − r − softplus(−2r)), stable for large r."""
    return 2.0 * (math.log(2.0) - r - F.softplus(-2.0 * r))


class RadialTanhGaussian:
    """Per-entity isotropic Gaussian u_i ~ N(μ_i, σ_i² I_d), squashed radially: a_i = tanh(‖u_i‖) u_i / ‖u_i‖.

    SB3's per-coordinate tanh does not commute with rotations; isotropic noise and a radial squash do, so the law of a
    transforms like μ (an equivariant μ and invariant σ give an equivariant policy), and a stays in the open unit ball
    (inside the box [-1, 1]^d). The radial map g(r) u/r has Jacobian eigenvalues g'(r) once and g(r)/r (d − 1) times:
    log p(a) = log N(u) − Σ_i [log(1 − tanh² r_i) + (d − 1) log(tanh(r_i) / r_i)], r_i = ‖u_i‖.

    :param mean: μ, shape (B, n, d)
    :param log_std: log σ, shape (B, n, 1)
    """

    def __init__(self, mean: Tensor, log_std: Tensor) -> None:
        self.mean = mean
        self.log_std = log_std

    @staticmethod
    def _radius(u: Tensor) -> Tensor:
        return u.square().sum(-1, keepdim=True).clamp_min(1e-12).sqrt()

    def _squash(self, u: Tensor) -> Tensor:
        r = self._radius(u)
        return torch.tanh(r) / r * u

    def _log_prob_pre_squash(self, u: Tensor) -> Tensor:
        """log p(a) of a = squash(u), shape (B,)."""
        d = u.shape[-1]
        z = (u - self.mean) * torch.exp(-self.log_std)
        log_gauss = -0.5 * z.square() - self.log_std - 0.5 * math.log(2.0 * math.pi)
        r = self._radius(u)
        log_det = _log_one_minus_tanh_squared(r) + (d - 1) * torch.log(torch.tanh(r) / r)
        return log_gauss.sum(dim=(1, 2)) - log_det.sum(dim=(1, 2))

    def sample(self) -> tuple[Tensor, Tensor]:
        """Reparameterised sample a (B, n, d) and its log-density (B,)."""
        u = self.mean + torch.exp(self.log_std) * torch.randn_like(self.mean)
        return self._squash(u), self._log_prob_pre_squash(u)

    def mode(self) -> Tensor:
        """The squashed mean, the deterministic action (B, n, d)."""
        return self._squash(self.mean)

    def log_prob(self, actions: Tensor) -> Tensor:
        """log p(a) for actions (B, n, d) strictly inside the unit ball (norms are clamped to 1 − 1e-6)."""
        rho = self._radius(actions).clamp(max=1.0 - 1e-6)
        return self._log_prob_pre_squash(actions * (torch.atanh(rho) / rho))
