"""SB3 features extractors for set-structured observations, and an exactly equivariant SAC policy built on EGNN.

The networks underneath are plain torch (`equivariant.scene`); this module holds what SB3 needs on top of them.

A flat observation holds the positions of typed entities (`SetLayout`), e.g. ParticleReach's N particles then N
targets. G below is E(d) acting on the whole scene (rotations, reflections, translations) together with the
permutations of the entities within each type; actions are one d-vector per *acting* entity (the particles).

What each variant really guarantees (exactly, up to float32 rounding):

* ``EGNNExtractor(entity_features=False)``: G-invariant features. Only right for tasks whose action is global: with
  per-entity actions an invariant actor cannot point an action anywhere, and a critic ``MLP(features(s), a)`` cannot
  relate a to the scene's orientation or to which particle moves (the true symmetry is Q(g·s, g·a) = Q(s, a)).
* ``EGNNExtractor`` (default): those invariant features plus, per acting entity in entity order, its invariant node
  features and its equivariant EGNN vector. With SB3's MLP heads on top, policy and critic are exactly invariant to
  translations and to permutations of the non-acting entities (targets), but NOT equivariant to rotations or to
  particle permutations: the MLP mixes vector coordinates and entity slots freely. The features only make those
  symmetries easy to learn.
* ``DeepSetsExtractor``: baseline with the same layout of features, invariant to permutations of the non-acting
  entities only (no rotation or translation symmetry).
* ``EquivariantSACPolicy``: the actor's law is exactly G-equivariant, π(g·a | g·s) = π(a | s), and its deterministic
  action too; its critics are exactly G-invariant, Q(g·s, g·a) = Q(s, a). It is also translation-invariant, so it
  cannot see an arena boundary (which breaks translations in ParticleReach; the optimal policy never needs it there).

DQS accepts both extractors through ``features_extractor_class``; its score MLP then has the same (non-)symmetry as
SB3's MLP heads. Note that DQS re-initialises every Linear layer of its networks orthogonally, extractors included.
"""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces
from stable_baselines3.common.policies import BaseModel, BasePolicy
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, create_mlp
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from stable_baselines3.sac.policies import LOG_STD_MAX, LOG_STD_MIN, SACPolicy
from torch import Tensor, nn

from equivariant.geometry import as_particles
from equivariant.scene import EGNNConfig, RadialTanhGaussian, SceneEGNN, SetLayout, pool_by_type


def check_layout_spaces(layout: SetLayout, observation_space: spaces.Space, action_space: spaces.Space | None = None) -> None:
    """Raise if the spaces do not hold ``layout``: a flat Box of ``obs_dim`` positions and, if given, a Box of
    ``action_dim`` with one symmetric bound for every coordinate (SB3 rescales actions per coordinate, which
    commutes with rotations only then)."""
    if not isinstance(observation_space, spaces.Box) or observation_space.shape != (layout.obs_dim,):
        raise ValueError(
            f"{layout} needs a flat Box observation of {layout.n_entities} entities x {layout.spatial_dim} coordinates "
            f"= ({layout.obs_dim},), got {observation_space}"
        )
    if action_space is None:
        return
    if not isinstance(action_space, spaces.Box) or action_space.shape != (layout.action_dim,):
        raise ValueError(f"{layout} needs a Box action of shape ({layout.action_dim},), got {action_space}")
    bound = action_space.high.flat[0]
    if not (bound > 0 and (action_space.high == bound).all() and (action_space.low == -bound).all()):
        raise ValueError(f"an equivariant policy needs action bounds [-b, b] equal on every coordinate, got {action_space}")


class EGNNExtractor(BaseFeaturesExtractor):
    """EGNN features of a scene: ``concat(pooled, h_acting, v_acting)`` (module docstring: symmetries).

    * pooled (n_types · hidden): per-type mean of the invariant node features, G-invariant;
    * h_acting (n_acting · hidden): invariant node features of each acting entity, in entity order;
    * v_acting (n_acting · d): EGNN vector x_out − x_in of each acting entity, in entity order (rotation-equivariant,
      translation-invariant).

    :param observation_space: Flat Box of the layout's positions
    :param layout: Entity layout of the observation
    :param egnn: EGNN hyperparameters (defaults: `EGNNConfig`)
    :param entity_features: Append h_acting and v_acting; False gives G-invariant features only
    """

    def __init__(
        self,
        observation_space: spaces.Box,
        layout: SetLayout,
        egnn: EGNNConfig | None = None,
        entity_features: bool = True,
    ) -> None:
        check_layout_spaces(layout, observation_space)
        config = egnn or EGNNConfig()
        n_acting = layout.entity_counts[layout.acting_type]
        per_entity = n_acting * (config.hidden_dim + layout.spatial_dim) if entity_features else 0
        super().__init__(observation_space, layout.n_types * config.hidden_dim + per_entity)
        self.layout = layout
        self.entity_features = entity_features
        self.scene = SceneEGNN(layout, config)

    def forward(self, observations: Tensor) -> Tensor:
        h, vectors = self.scene(observations)
        pooled = pool_by_type(h, self.scene.type_one_hot)
        if not self.entity_features:
            return pooled
        acting = self.layout.acting
        return torch.cat([pooled, h[:, acting].flatten(1), vectors[:, acting].flatten(1)], dim=1)


class DeepSetsExtractor(BaseFeaturesExtractor):
    """Deep Sets baseline (Zaheer et al. 2017): e_i = φ(x_i, type_i) per entity; features
    ``concat(per-type mean of e, e of each acting entity in entity order)``. Invariant to permutations of the
    non-acting entities; no rotation or translation symmetry.

    :param observation_space: Flat Box of the layout's positions
    :param layout: Entity layout of the observation
    :param hidden_dim: Width of φ and of each embedding
    :param entity_features: Append the acting entities' embeddings; False gives permutation-invariant features only
    """

    def __init__(
        self, observation_space: spaces.Box, layout: SetLayout, hidden_dim: int = 64, entity_features: bool = True
    ) -> None:
        check_layout_spaces(layout, observation_space)
        n_acting = layout.entity_counts[layout.acting_type]
        super().__init__(observation_space, (layout.n_types + (n_acting if entity_features else 0)) * hidden_dim)
        self.layout = layout
        self.entity_features = entity_features
        self.register_buffer("type_one_hot", layout.type_one_hot(), persistent=False)
        self.phi = nn.Sequential(
            nn.Linear(layout.spatial_dim + layout.n_types, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, hidden_dim), nn.SiLU()
        )

    def forward(self, observations: Tensor) -> Tensor:
        x = as_particles(observations, self.layout.n_entities, self.layout.spatial_dim)
        embeddings = self.phi(torch.cat([x, self.type_one_hot.expand(x.shape[0], -1, -1)], dim=-1))
        pooled = pool_by_type(embeddings, self.type_one_hot)
        if not self.entity_features:
            return pooled
        return torch.cat([pooled, embeddings[:, self.layout.acting].flatten(1)], dim=1)


class EquivariantActor(BasePolicy):
    """SAC actor whose action law is G-equivariant: per acting entity, mean = its EGNN vector, log σ = Linear(h_i)
    (invariant), law `RadialTanhGaussian`. Same interface as SB3's SAC ``Actor`` (without gSDE).

    :param observation_space: Flat Box of the layout's positions
    :param action_space: Box of one d-vector per acting entity, bounds [-b, b]
    :param layout: Entity layout of the observation
    :param egnn: EGNN hyperparameters
    """

    def __init__(self, observation_space: spaces.Box, action_space: spaces.Box, layout: SetLayout, egnn: EGNNConfig) -> None:
        super().__init__(observation_space, action_space, squash_output=True)
        self.layout = layout
        self.egnn = egnn
        self.scene = SceneEGNN(layout, egnn)
        self.log_std = nn.Linear(egnn.hidden_dim, 1)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        # Not BasePolicy's: this actor takes no features extractor, so policy.save() / load() round-trips.
        return {"observation_space": self.observation_space, "action_space": self.action_space, "layout": self.layout,
                "egnn": self.egnn}  # fmt: skip

    def distribution(self, obs: PyTorchObs) -> RadialTanhGaussian:
        """The action law at each observation."""
        h, vectors = self.scene(preprocess_obs(obs, self.observation_space))
        acting = self.layout.acting
        log_std = self.log_std(h[:, acting]).clamp(LOG_STD_MIN, LOG_STD_MAX)
        return RadialTanhGaussian(vectors[:, acting], log_std)

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> Tensor:
        law = self.distribution(obs)
        actions = law.mode() if deterministic else law.sample()[0]
        return actions.flatten(1)

    def action_log_prob(self, obs: PyTorchObs) -> tuple[Tensor, Tensor]:
        actions, log_prob = self.distribution(obs).sample()
        return actions.flatten(1), log_prob

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> Tensor:
        return self(observation, deterministic)


class InvariantCritic(BaseModel):
    """Ensemble of G-invariant Q-functions: Q_k(s, a) = MLP_k(per-type mean of h), h from a `SceneEGNN` that sees the
    actions through invariants. Same call interface as SB3's ``ContinuousCritic``: ``critic(obs, actions)`` returns a
    tuple of (B, 1) values.

    :param observation_space: Flat Box of the layout's positions
    :param action_space: Box of one d-vector per acting entity
    :param layout: Entity layout of the observation
    :param egnn: EGNN hyperparameters
    :param net_arch: Hidden sizes of each Q head
    :param activation_fn: Activation of the heads
    :param n_critics: Number of Q-functions
    """

    def __init__(
        self,
        observation_space: spaces.Box,
        action_space: spaces.Box,
        layout: SetLayout,
        egnn: EGNNConfig,
        net_arch: list[int],
        activation_fn: type[nn.Module] = nn.ReLU,
        n_critics: int = 2,
    ) -> None:
        super().__init__(observation_space, action_space)
        self.scenes = nn.ModuleList(SceneEGNN(layout, egnn, with_actions=True) for _ in range(n_critics))
        in_dim = layout.n_types * egnn.hidden_dim
        self.q_heads = nn.ModuleList(nn.Sequential(*create_mlp(in_dim, 1, net_arch, activation_fn)) for _ in range(n_critics))

    def forward(self, obs: Tensor, actions: Tensor) -> tuple[Tensor, ...]:
        obs = preprocess_obs(obs, self.observation_space)
        values = []
        for scene, head in zip(self.scenes, self.q_heads):
            h, _ = scene(obs, actions)
            values.append(head(pool_by_type(h, scene.type_one_hot)))
        return tuple(values)


class EquivariantSACPolicy(SACPolicy):
    """SAC policy with an exactly G-equivariant actor (`EquivariantActor`) and G-invariant critics (`InvariantCritic`).

    Use ``SAC(EquivariantSACPolicy, env, policy_kwargs=dict(layout=SetLayout((N, N))))``.

    :param observation_space: Flat Box of the layout's positions
    :param action_space: Box of one d-vector per acting entity, bounds [-b, b] equal on every coordinate
    :param lr_schedule: Learning-rate schedule
    :param layout: Entity layout of the observation
    :param egnn: EGNN hyperparameters of the actor and of each critic (defaults: `EGNNConfig`)
    :param net_arch: Hidden sizes of each critic's Q head (SB3 convention: a list, or a dict with key "qf")
    :param activation_fn: Activation of the Q heads
    :param use_sde: Must be False (gSDE's state-dependent noise matrix is not equivariant)
    :param optimizer_class: Optimiser of actor and critics
    :param optimizer_kwargs: Its keyword arguments, excluding the learning rate
    :param n_critics: Number of Q-functions
    """

    def __init__(
        self,
        observation_space: spaces.Box,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        layout: SetLayout,
        egnn: EGNNConfig | None = None,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        use_sde: bool = False,
        optimizer_class: type[torch.optim.Optimizer] = torch.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        n_critics: int = 2,
    ) -> None:
        if use_sde:
            raise ValueError("EquivariantSACPolicy does not support gSDE: create SAC with use_sde=False")
        check_layout_spaces(layout, observation_space, action_space)
        # Set before SACPolicy.__init__, which builds the networks through make_actor / make_critic.
        self.layout = layout
        self.egnn = egnn or EGNNConfig()
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch=net_arch,
            activation_fn=activation_fn,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            n_critics=n_critics,
        )

    def make_actor(self, features_extractor: BaseFeaturesExtractor | None = None) -> EquivariantActor:
        return EquivariantActor(self.observation_space, self.action_space, self.layout, self.egnn).to(self.device)

    def make_critic(self, features_extractor: BaseFeaturesExtractor | None = None) -> InvariantCritic:
        return InvariantCritic(
            self.observation_space,
            self.action_space,
            self.layout,
            self.egnn,
            net_arch=self.critic_kwargs["net_arch"],
            activation_fn=self.activation_fn,
            n_critics=self.critic_kwargs["n_critics"],
        ).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {
            "observation_space": self.observation_space,
            "action_space": self.action_space,
            "lr_schedule": self._dummy_schedule,
            "layout": self.layout,
            "egnn": self.egnn,
            "net_arch": self.net_arch,
            "activation_fn": self.activation_fn,
            "optimizer_class": self.optimizer_class,
            "optimizer_kwargs": self.optimizer_kwargs,
            "n_critics": self.critic_kwargs["n_critics"],
        }
