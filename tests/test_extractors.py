"""Set extractors and the equivariant SAC policy: symmetry of every output under random scene transformations, the
radial squashed Gaussian's density, SAC and DQS integration, save/load, bad input."""

from __future__ import annotations

import functools
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from equivariance_checks import amplify_coordinate_heads
from gymnasium import spaces
from hypothesis import given, settings
from hypothesis import strategies as st
from stable_baselines3 import SAC
from torch import Tensor

from agents.dqs import DQS
from agents.equivariant import DeepSetsExtractor, EGNNExtractor, EquivariantActor, EquivariantSACPolicy, InvariantCritic
from envs.particle_reach import ParticleReachEnv
from equivariant.scene import EGNNConfig, RadialTanhGaussian, SetLayout

N = 3
LAYOUT = SetLayout((N, N))
SMALL = EGNNConfig(hidden_dim=16, n_layers=2)
TINY = EGNNConfig(hidden_dim=8, n_layers=1)  # for training runs
OBS_SPACE = spaces.Box(-1.0, 1.0, (4 * N,), np.float32)
ACTION_SPACE = spaces.Box(-1.0, 1.0, (2 * N,), np.float32)
TOL = 1e-5


class SceneTransform:
    """g = (orthogonal q, translation, particle order, target order) acting on flat observations and actions."""

    def __init__(self, angle: float, reflect: bool, shift: tuple[float, float], particles: list[int], targets: list[int]):
        c, s = math.cos(angle), math.sin(angle)
        q = torch.tensor([[c, -s], [s, c]])
        self.q = q @ torch.diag(torch.tensor([1.0, -1.0])) if reflect else q
        self.shift = torch.tensor(shift)
        self.particles = torch.tensor(particles)
        self.order = torch.cat([self.particles, N + torch.tensor(targets)])

    def obs(self, obs: Tensor) -> Tensor:
        return ((obs.view(-1, 2 * N, 2)[:, self.order] @ self.q.T) + self.shift).flatten(1)

    def vectors(self, vectors: Tensor) -> Tensor:
        """Per-particle vectors (B, N·2): permuted with the particles and rotated, not translated."""
        return (vectors.view(-1, N, 2)[:, self.particles] @ self.q.T).flatten(1)

    def blocks(self, blocks: Tensor) -> Tensor:
        """Per-particle invariant blocks (B, N·k): permuted only."""
        return blocks.view(blocks.shape[0], N, -1)[:, self.particles].flatten(1)


transforms = st.builds(
    SceneTransform,
    angle=st.floats(0.0, 2.0 * math.pi),
    reflect=st.booleans(),
    shift=st.tuples(st.floats(-2.0, 2.0), st.floats(-2.0, 2.0)),
    particles=st.permutations(range(N)),
    targets=st.permutations(range(N)),
)


def observations(batch: int = 8) -> Tensor:
    return torch.rand(batch, 4 * N, generator=torch.Generator().manual_seed(0)) * 2 - 1


def unit_ball_actions(batch: int = 8) -> Tensor:
    actions = torch.randn(batch, N, 2, generator=torch.Generator().manual_seed(1))
    return (actions / (1 + actions.norm(dim=-1, keepdim=True))).flatten(1)


@functools.cache
def egnn_extractor(entity_features: bool) -> EGNNExtractor:
    torch.manual_seed(0)
    return amplify_coordinate_heads(EGNNExtractor(OBS_SPACE, LAYOUT, SMALL, entity_features=entity_features), 0.3).eval()


@functools.cache
def actor_and_critic() -> tuple[EquivariantActor, InvariantCritic]:
    torch.manual_seed(0)
    actor = amplify_coordinate_heads(EquivariantActor(OBS_SPACE, ACTION_SPACE, LAYOUT, SMALL), 0.3).eval()
    critic = amplify_coordinate_heads(InvariantCritic(OBS_SPACE, ACTION_SPACE, LAYOUT, SMALL, [32], n_critics=2), 0.3).eval()
    return actor, critic


def max_error(a: Tensor, b: Tensor) -> float:
    return (a - b).abs().max().item()


@settings(max_examples=25, deadline=None)
@given(g=transforms)
def test_egnn_extractor_features_are_invariant_and_vectors_equivariant(g: SceneTransform):
    obs = observations()
    hidden, n_types = SMALL.hidden_dim, LAYOUT.n_types
    with torch.no_grad():
        out, moved = egnn_extractor(True)(obs), egnn_extractor(True)(g.obs(obs))
        invariant, moved_invariant = egnn_extractor(False)(obs), egnn_extractor(False)(g.obs(obs))
    assert out.shape == (8, egnn_extractor(True).features_dim) == (8, n_types * hidden + N * (hidden + 2))
    pooled, h_acting, vectors = out.split([n_types * hidden, N * hidden, N * 2], dim=1)
    moved_pooled, moved_h, moved_vectors = moved.split([n_types * hidden, N * hidden, N * 2], dim=1)
    assert vectors.abs().max() > 0.05, "EGNN vectors too small for the equivariance check to mean anything"
    assert max_error(moved_pooled, pooled) < TOL
    assert max_error(moved_h, g.blocks(h_acting)) < TOL
    assert max_error(moved_vectors, g.vectors(vectors)) < TOL
    assert invariant.shape == (8, n_types * hidden) and max_error(moved_invariant, invariant) < TOL


def test_deep_sets_extractor_is_permutation_symmetric_but_not_rotation_invariant():
    torch.manual_seed(0)
    extractor = DeepSetsExtractor(OBS_SPACE, LAYOUT, hidden_dim=16)
    obs = observations()
    permuted = SceneTransform(0.0, False, (0.0, 0.0), [2, 0, 1], [1, 2, 0])
    rotated = SceneTransform(1.0, False, (0.0, 0.0), [0, 1, 2], [0, 1, 2])
    with torch.no_grad():
        out, moved, turned = extractor(obs), extractor(permuted.obs(obs)), extractor(rotated.obs(obs))
    assert out.shape == (8, extractor.features_dim) == (8, (2 + N) * 16)
    pooled, blocks = out.split([32, N * 16], dim=1)
    moved_pooled, moved_blocks = moved.split([32, N * 16], dim=1)
    assert max_error(moved_pooled, pooled) < TOL and max_error(moved_blocks, permuted.blocks(blocks)) < TOL
    assert max_error(turned, out) > 1e-3


@settings(max_examples=25, deadline=None)
@given(g=transforms)
def test_equivariant_actor_law_and_mean_transform_with_the_scene(g: SceneTransform):
    actor, _ = actor_and_critic()
    obs, actions = observations(), unit_ball_actions()
    with torch.no_grad():
        law, moved_law = actor.distribution(obs), actor.distribution(g.obs(obs))
        deterministic, moved_deterministic = actor(obs, deterministic=True), actor(g.obs(obs), deterministic=True)
        log_prob, moved_log_prob = law.log_prob(actions.view(-1, N, 2)), moved_law.log_prob(g.vectors(actions).view(-1, N, 2))
    assert deterministic.abs().max() > 0.05, "actions too small for the equivariance check to mean anything"
    assert max_error(moved_deterministic, g.vectors(deterministic)) < TOL
    assert max_error(moved_law.log_std.flatten(1), g.blocks(law.log_std.flatten(1))) < TOL
    assert max_error(moved_log_prob, log_prob) < 1e-4  # log-densities are O(10): relative error ~1e-6


@settings(max_examples=25, deadline=None)
@given(g=transforms)
def test_invariant_critic_is_invariant_jointly_in_state_and_action(g: SceneTransform):
    _, critic = actor_and_critic()
    obs, actions = observations(), unit_ball_actions()
    with torch.no_grad():
        values, moved = critic(obs, actions), critic(g.obs(obs), g.vectors(actions))
        turned_action_only = critic(obs, SceneTransform(1.0, False, (0.0, 0.0), [0, 1, 2], [0, 1, 2]).vectors(actions))
    assert len(values) == 2 and values[0].shape == (8, 1)
    for value, moved_value, other in zip(values, moved, turned_action_only):
        assert max_error(moved_value, value) < TOL
        assert max_error(other, value) > 1e-4, "Q must depend on the action relative to the scene"


@pytest.mark.parametrize("d", [2, 3])
def test_radial_tanh_gaussian_density_is_the_change_of_variables(d: int):
    gen = torch.Generator().manual_seed(0)
    mean, log_std = torch.randn(1, 1, d, generator=gen, dtype=torch.float64), torch.full((1, 1, 1), -0.3, dtype=torch.float64)
    law = RadialTanhGaussian(mean, log_std)
    u = torch.randn(d, generator=gen, dtype=torch.float64)
    actions = (torch.tanh(u.norm()) / u.norm() * u).view(1, 1, d)
    jacobian = torch.autograd.functional.jacobian(lambda v: torch.tanh(v.norm()) / v.norm() * v, u)
    log_gauss = torch.distributions.Normal(mean.flatten(), log_std.exp().flatten()).log_prob(u).sum()
    assert law.log_prob(actions).item() == pytest.approx((log_gauss - torch.linalg.slogdet(jacobian)[1]).item(), rel=1e-9)


def test_radial_tanh_gaussian_samples_stay_in_the_ball_with_consistent_log_probs():
    torch.manual_seed(0)
    law = RadialTanhGaussian(torch.randn(64, N, 2) * 3, torch.randn(64, N, 1) * 0.5)
    actions, log_prob = law.sample()
    # Inside the closed ball (float32 tanh rounds to 1 beyond r ≈ 9); log p comes from u, so it stays finite there.
    assert actions.norm(dim=-1).max() <= 1.0 + 1e-6 and torch.isfinite(log_prob).all()
    near_boundary = actions.norm(dim=-1).max(dim=1).values < 0.999  # float32 atanh is ill-conditioned at the rim
    np.testing.assert_allclose(law.log_prob(actions)[near_boundary], log_prob[near_boundary], rtol=1e-3, atol=1e-3)
    assert law.mode().norm(dim=-1).max() <= 1.0 + 1e-6


def tiny_sac(policy, env: gym.Env, policy_kwargs: dict) -> SAC:
    return SAC(policy, env, learning_starts=100, batch_size=8, policy_kwargs=policy_kwargs, seed=0)


@pytest.mark.parametrize(
    ("policy", "policy_kwargs"),
    [
        (
            "MlpPolicy",
            {"features_extractor_class": EGNNExtractor, "features_extractor_kwargs": {"layout": LAYOUT, "egnn": TINY}},
        ),
        ("MlpPolicy", {"features_extractor_class": DeepSetsExtractor, "features_extractor_kwargs": {"layout": LAYOUT}}),
        (EquivariantSACPolicy, {"layout": LAYOUT, "egnn": TINY}),
    ],
    ids=["egnn-features", "deep-sets", "equivariant"],
)
def test_sac_trains_and_save_load_keeps_deterministic_actions(policy, policy_kwargs, tmp_path):
    env = ParticleReachEnv(n_particles=N)
    model = tiny_sac(policy, env, {**policy_kwargs, "net_arch": [16]})
    model.learn(200)
    assert model._n_updates == 100
    obs = np.stack([env.reset(seed=seed)[0] for seed in range(5)])
    model.save(tmp_path / "model")
    loaded = SAC.load(tmp_path / "model", env=env)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])


def test_equivariant_policy_alone_round_trips_through_save_and_load(tmp_path):
    model = tiny_sac(EquivariantSACPolicy, ParticleReachEnv(n_particles=N), {"layout": LAYOUT, "egnn": SMALL})
    model.policy.save(tmp_path / "policy.pth")
    loaded = EquivariantSACPolicy.load(tmp_path / "policy.pth")
    obs = observations(4).numpy()
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], model.policy.predict(obs, deterministic=True)[0])
    assert loaded.layout == LAYOUT and loaded.egnn == SMALL
    model.actor.save(tmp_path / "actor.pth")  # the actor alone too, as SB3's policies
    actor = EquivariantActor.load(tmp_path / "actor.pth")
    np.testing.assert_array_equal(actor.predict(obs, deterministic=True)[0], model.actor.predict(obs, deterministic=True)[0])


def test_dqs_accepts_the_extractors():
    env = ParticleReachEnv(n_particles=N)
    for extractor, kwargs in ((EGNNExtractor, {"layout": LAYOUT, "egnn": TINY}), (DeepSetsExtractor, {"layout": LAYOUT})):
        policy_kwargs = {
            "features_extractor_class": extractor,
            "features_extractor_kwargs": kwargs,
            "net_arch": [16],
            "score_hidden_dim": 16,
            "embedding_dim": 8,
        }
        model = DQS("MlpPolicy", env, learning_starts=20, batch_size=8, sampler_steps=4, policy_kwargs=policy_kwargs, seed=0)
        model.learn(30)
        assert isinstance(model.critic.features_extractor, extractor)
        assert model.policy.actor.features_extractor is not model.critic.features_extractor
        assert model.predict(env.reset(seed=0)[0], deterministic=True)[0].shape == (2 * N,)


def test_bad_input_is_rejected_with_a_clear_message():
    with pytest.raises(ValueError, match="at least 2 entities"):
        SetLayout((1,))
    with pytest.raises(ValueError, match="acting_type"):
        SetLayout((3, 3), acting_type=2)
    with pytest.raises(ValueError, match=r"flat Box observation of 8 entities x 2 coordinates = \(16,\)"):
        EGNNExtractor(OBS_SPACE, SetLayout((4, 4)))
    lopsided = spaces.Box(np.array([-1.0, -2.0] * N, np.float32), np.array([1.0, 2.0] * N, np.float32))
    with pytest.raises(ValueError, match="equal on every coordinate"):
        EquivariantSACPolicy(OBS_SPACE, lopsided, lambda _: 1e-3, layout=LAYOUT)
    with pytest.raises(ValueError, match="gSDE"):
        SAC(EquivariantSACPolicy, ParticleReachEnv(n_particles=N), use_sde=True, policy_kwargs={"layout": LAYOUT})
    with pytest.raises(ValueError, match="pass actions exactly"):
        actor_and_critic()[0].scene(observations(), unit_ball_actions())
