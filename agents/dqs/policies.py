"""DQS policy: a temperature-conditioned diffusion actor (score network and sampler), a critic ensemble and its
target, in SB3's SACPolicy layout (the policy owns every network; ``actor`` samples actions on its own).

Actions live in [-1, 1]^d (``squash_output=True``): SB3's ``predict`` rescales them to the env's bounds.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, Literal

import torch as th
from gymnasium import spaces
from sb3_contrib.common.torch_layers import BatchRenorm1d
from stable_baselines3.common.policies import BasePolicy, ContinuousCritic
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.torch_layers import (
    BaseFeaturesExtractor,
    CombinedExtractor,
    FlattenExtractor,
    NatureCNN,
    create_mlp,
)
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import Tensor, nn
from torch.nn import functional as F

from agents.dqs.proposal import ProposalNetwork, tanh_log_abs_det_jacobian
from core.networks import SinusoidalEmbedding
from samplers.integrators import ddim_coefficients, make_time_grid, probability_flow_sample
from samplers.schedules import CosineVPSchedule, GeometricVESchedule, NoiseSchedule

ScheduleName = Literal["ve_geometric", "vp_cosine"]
Squash = Literal["tanh", "clip"]
Parameterization = Literal["score", "noise"]
DeterministicMode = Literal["ode", "drift"]

#: Schedule name -> (class, default keyword arguments). VE: the improved mode's sigma_min (the reference's 1e-5 wastes
#: steps of a short sampler, docs/dqs.md) and the reference's sigma_max.
SCHEDULES: dict[str, tuple[type[NoiseSchedule], dict[str, float]]] = {
    "ve_geometric": (GeometricVESchedule, {"sigma_min": 1e-2, "sigma_max": 1.0}),
    "vp_cosine": (CosineVPSchedule, {"s": 0.008, "max_beta": 20.0}),
}
#: Seed of the fixed prior draw used by deterministic predict (drawn on the CPU, so identical on every device).
DETERMINISTIC_PRIOR_SEED = 0


def _split_net_arch(net_arch: dict[str, list[int]], hidden_dim: int, n_blocks: int) -> tuple[list[int] | None, int, int]:
    """SB3's ``{"qf": [...], "pi": [...]}``: the critics' sizes, and the score network's width and residual blocks."""
    unknown = sorted(set(net_arch) - {"qf", "pi"})
    if unknown:
        raise ValueError(f"a dict net_arch takes the keys 'qf' and 'pi', got {unknown}")
    pi = net_arch.get("pi")
    if pi is not None:
        if not pi or len(set(pi)) != 1:
            raise ValueError(f"net_arch['pi'] sets the score network, whose hidden layers share one width: got {pi}")
        hidden_dim, n_blocks = pi[0], len(pi) - 1
    return net_arch.get("qf"), hidden_dim, n_blocks


def make_schedule(name: str, kwargs: dict[str, float] | None = None) -> NoiseSchedule:
    """Build a noise schedule by name; ``kwargs`` override the defaults in `SCHEDULES`."""
    if name not in SCHEDULES:
        raise ValueError(f"Unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}.")
    schedule_class, defaults = SCHEDULES[name]
    return schedule_class(**{**defaults, **(kwargs or {})})


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


class DiffusionActor(BasePolicy):
    """The actor of DQS: a temperature-conditioned score network and the reverse process that samples actions with
    it, a ~ pi_T(a|s) ∝ exp(Q(s, a)/T) as far as the score is learned. It plays SB3's actor role: ``forward`` and
    ``predict`` map observations to actions, and it saves and loads on its own. Argmax-Q over several candidates needs
    the critic, so it is `DiffusionPolicy`'s: the actor's deterministic action is the one of its first fixed prior draw.

    The network is the DQS ScoreMLP on concat(features(s), a_t, emb(t), emb(T)) -> Dense -> GELU -> ``n_blocks`` x
    [h + GELU(Dense(h))] -> Dense(|A|), as ``src/components/mlp.py`` of the reference code
    (vineetjain96/Diffusion_Q_Sampling). Its output is the score itself or the noise prediction, depending on
    ``score_parameterization``; t and the raw temperature T share one 1000-period embedding.

    :param features_extractor: Network mapping observations to a flat feature vector
    :param features_dim: Size of that feature vector
    :param hidden_dim: Width of every hidden layer
    :param n_blocks: Number of residual blocks
    :param embedding_dim: Size of each sinusoidal embedding (t and T)
    :param schedule: Noise schedule name, see `SCHEDULES`
    :param schedule_kwargs: Overrides of the schedule's defaults
    :param sampler_steps: Integration steps of the reverse SDE (and of the PF-ODE of the entropy estimate)
    :param deterministic_steps: Integration steps of deterministic sampling; None: ``sampler_steps``
    :param denoise_last_step: Skip the noise of the final SDE step (the reference adds it)
    :param squash: Map samples into the box with ``"tanh"`` (original DQS) or ``"clip"``
    :param score_parameterization: Network output is the score (``"score"``) or the noise eps (``"noise"``,
        score = -eps / sigma(t))
    :param deterministic_mode: Integrator of deterministic sampling: ``"ode"`` or ``"drift"``
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        hidden_dim: int = 256,
        n_blocks: int = 2,
        embedding_dim: int = 128,
        schedule: ScheduleName = "ve_geometric",
        schedule_kwargs: dict[str, float] | None = None,
        sampler_steps: int = 20,
        deterministic_steps: int | None = None,
        denoise_last_step: bool = True,
        squash: Squash = "clip",
        score_parameterization: Parameterization = "noise",
        deterministic_mode: DeterministicMode = "ode",
        normalize_images: bool = True,
    ) -> None:
        super().__init__(
            observation_space,
            action_space,
            features_extractor=features_extractor,
            normalize_images=normalize_images,
            squash_output=True,
        )
        _check_choice("squash", squash, ("tanh", "clip"))
        _check_choice("score_parameterization", score_parameterization, ("score", "noise"))
        _check_choice("deterministic_mode", deterministic_mode, ("ode", "drift"))
        deterministic_steps = sampler_steps if deterministic_steps is None else deterministic_steps
        if min(sampler_steps, deterministic_steps) < 1:
            raise ValueError("sampler_steps and deterministic_steps must be >= 1")
        self.features_dim = features_dim
        self.hidden_dim = hidden_dim
        self.n_blocks = n_blocks
        self.schedule_name = schedule
        self.schedule_kwargs = schedule_kwargs
        self.schedule = make_schedule(schedule, schedule_kwargs)
        self.sampler_steps = sampler_steps
        self.deterministic_steps = deterministic_steps
        self.denoise_last_step = denoise_last_step
        self.squash = squash
        self.score_parameterization = score_parameterization
        self.deterministic_mode = deterministic_mode
        self.action_dim = get_action_dim(action_space)
        self.embedding = SinusoidalEmbedding(embedding_dim, max_period=1000.0)
        self.input = nn.Linear(features_dim + self.action_dim + 2 * embedding_dim, hidden_dim)
        self.blocks = nn.ModuleList(nn.Linear(hidden_dim, hidden_dim) for _ in range(n_blocks))
        self.output = nn.Linear(hidden_dim, self.action_dim)
        # The temperature the network is conditioned on; set by the algorithm, saved with the weights.
        self.register_buffer("temperature", th.tensor(1.0))

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            features_extractor=self.features_extractor,
            features_dim=self.features_dim,
            hidden_dim=self.hidden_dim,
            n_blocks=self.n_blocks,
            embedding_dim=self.embedding.dim,
            schedule=self.schedule_name,
            schedule_kwargs=self.schedule_kwargs,
            sampler_steps=self.sampler_steps,
            deterministic_steps=self.deterministic_steps,
            denoise_last_step=self.denoise_last_step,
            squash=self.squash,
            score_parameterization=self.score_parameterization,
            deterministic_mode=self.deterministic_mode,
        )
        return data

    # --- the network ----------------------------------------------------------------------------------------------

    def features(self, obs: PyTorchObs) -> Tensor:
        """Flat features of a batch of observations."""
        return self.extract_features(obs, self.features_extractor)

    def network_output(self, features: Tensor, noisy_actions: Tensor, t: Tensor, temperature: Tensor) -> Tensor:
        """Raw network output (the score or the noise prediction) for row-aligned ``features`` (N, F),
        ``noisy_actions`` (N, |A|), ``t`` and ``temperature`` (both (N,))."""
        inputs = [features, noisy_actions, self.embedding(t), self.embedding(temperature)]
        return self.trunk(self.input(th.cat(inputs, dim=1)))

    def trunk(self, pre_activation: Tensor) -> Tensor:
        """Everything after the input layer: GELU, the residual blocks and the output layer.

        GELU is the tanh approximation, the default of ``flax.linen.gelu`` in the reference code (and 4x cheaper
        than the exact erf form on a CPU at acting batch sizes).
        """
        h = F.gelu(pre_activation, approximate="tanh")
        for block in self.blocks:
            h = h + F.gelu(F.linear(h, block.weight, block.bias), approximate="tanh")
        return F.linear(h, self.output.weight, self.output.bias)

    def _input_weights(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The input layer's weight split by input block: features, noisy actions, emb(t), emb(T)."""
        embedding_dim = self.embedding.dim
        action_dim = self.output.out_features
        features_dim = self.input.in_features - action_dim - 2 * embedding_dim
        return th.split(self.input.weight, [features_dim, action_dim, embedding_dim, embedding_dim], dim=1)

    def sampling_terms(self, features: Tensor, temperature: Tensor, times: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The input layer split for a sampler run, so that each step only multiplies the noisy actions.

        The input layer is linear in concat(features, a_t, emb(t), emb(T)): over a run the features and T are fixed
        and t takes only the grid's values, so W_f f + W_T emb(T) + b is computed once per row and W_t emb(t) once
        per grid time. Returns (per-row constant (N, H), per-time term (len(times), H), W_a (H, |A|)); the
        pre-activation of step i is ``constant + time_terms[i] + a_t @ W_a.T``, exactly `network_output`'s up to rounding.
        """
        w_features, w_actions, w_time, w_temperature = self._input_weights()
        constant = th.addmm(self.input.bias, features, w_features.T) + self.embedding(temperature) @ w_temperature.T
        return constant, self.embedding(times) @ w_time.T, w_actions

    # --- the score and the samplers -------------------------------------------------------------------------------

    def score(self, noisy_actions: Tensor, t: Tensor, features: Tensor) -> Tensor:
        """Score grad_a log p_t(a_t | s) at the current temperature (``score_fn`` of the integrators)."""
        output = self.network_output(features, noisy_actions, t, self.temperature.expand(len(noisy_actions)))
        if self.score_parameterization == "score":
            return output
        return self.schedule.score_from_noise(output, t)

    def squash_actions(self, actions: Tensor) -> Tensor:
        """Map integrator output into [-1, 1]."""
        return actions.clamp(-1.0, 1.0) if self.squash == "clip" else th.tanh(actions)

    def integrate(self, prior: Tensor, features: Tensor, method: Literal["sde", "ode", "drift"], steps: int) -> Tensor:
        """Run the reverse process from ``prior`` (row-aligned with ``features``) and squash the result.

        ``"sde"`` and ``"drift"`` are the steps of `samplers.integrators.euler_maruyama` with eta = 1 and 0:
        x <- x - [f(x, t) - g(t)^2 s(x, t)] dt + eta g(t) sqrt(dt) eps. ``"ode"`` takes the DDIM steps of the
        PF-ODE (`samplers.integrators.ddim_coefficients`), which are exact for a constant noise prediction where
        Euler in t contracts the samples on the geometric schedule (docs/dqs.md). Every step evaluates the score at
        its upper time t >= 1/n, never at t = 0 where sigma = 0. The loop is fused for the score network: its input
        layer is split by `sampling_terms`, and the schedule's coefficients are computed once (acting
        is launch-bound: a step is a dozen small kernels, so every one saved counts).
        """
        n = len(prior)
        times = make_time_grid(steps, device=prior.device, dtype=prior.dtype)
        upper, dt = times[:-1], times[:-1] - times[1:]
        constant, time_terms, w_actions = self.sampling_terms(features, self.temperature.expand(n), upper)
        # Step i: x <- x_scale[i] x (- f dt for the SDE) + output_scale[i] * network output (+ noise_scale[i] eps).
        if method == "ode":
            x_scale, eps_scale = ddim_coefficients(self.schedule, times)
            output_scale = eps_scale if self.score_parameterization == "noise" else -eps_scale * self.schedule.sigma(upper)
        else:
            x_scale = th.ones_like(upper)
            output_scale = self.schedule.g(upper) ** 2 * dt  # times the score
            if self.score_parameterization == "noise":  # score = -eps / sigma
                output_scale = -output_scale / self.schedule.sigma(upper)
        noise_scale = (self.schedule.g(upper) * dt.sqrt()).tolist()
        x_scale, output_scale, dt_list = x_scale.tolist(), output_scale.tolist(), dt.tolist()
        x = prior
        for i in range(steps):
            output = self.trunk(th.addmm(constant + time_terms[i], x, w_actions.T))
            if x_scale[i] != 1.0:
                x = x * x_scale[i]
            if method != "ode" and not self.schedule.drift_free:
                x = x - self.schedule.drift(x, upper[i].expand(n)) * dt_list[i]
            x = x + output_scale[i] * output
            if method == "sde" and not (self.denoise_last_step and i == steps - 1):
                x = x + noise_scale[i] * th.randn_like(x)
        return self.squash_actions(x)

    def entropy(self, features: Tensor) -> Tensor:
        """Monte-Carlo estimate of the mean entropy of the actor's policy over the states of ``features``.

        One PF-ODE sample per state with the exact log-density of the DDIM sampler's law
        (`samplers.integrators.probability_flow_sample`): H = -mean log q(a), the entropy of the actions of
        deterministic sampling (the reverse SDE's law agrees with it as far as the score is exact). With a tanh
        squash the log-density of the squashed action includes the Jacobian, as SAC's. With ``"clip"`` it is the
        pre-clip entropy: mass the clip moves onto the box's faces is not accounted for, so it cannot fall with a
        policy that concentrates on a face (docs/dqs.md).
        """
        prior = self.schedule.sample_prior(len(features), self.action_dim, device=features.device, dtype=features.dtype)
        latent, log_density = probability_flow_sample(self.score, prior, self.schedule, self.sampler_steps, context=features)
        if self.squash == "tanh":
            log_density = log_density - tanh_log_abs_det_jacobian(latent)
        return -log_density.mean()

    def sample_actions(self, features: Tensor) -> Tensor:
        """One stochastic sample a ~ pi_T(.|s) per row of ``features`` (reverse SDE, eta = 1), in [-1, 1]."""
        prior = self.schedule.sample_prior(len(features), self.action_dim, device=features.device, dtype=features.dtype)
        return self.integrate(prior, features, "sde", self.sampler_steps)

    def fixed_prior_actions(self, features: Tensor, n: int) -> Tensor:
        """Deterministic sampling: per row of ``features``, the actions integrated (``deterministic_mode``) from the
        first ``n`` of a fixed sequence of prior draws (seeded and shared by every state, so independent of the global
        RNG); n consecutive rows per state."""
        generator = th.Generator().manual_seed(DETERMINISTIC_PRIOR_SEED)
        prior = self.schedule.sample_prior(n, self.action_dim, generator=generator).to(features)
        rows = features.repeat_interleave(n, dim=0)
        return self.integrate(prior.repeat(len(features), 1), rows, self.deterministic_mode, self.deterministic_steps)

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> Tensor:
        return self._predict(obs, deterministic=deterministic)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> Tensor:
        features = self.features(observation)
        return self.fixed_prior_actions(features, 1) if deterministic else self.sample_actions(features)


class EnsembleCritic(ContinuousCritic):
    """SB3's critic ensemble with feature-level access, so that many actions per state reuse one feature pass.

    With ``batch_renorm`` every hidden layer is preceded by sb3-contrib's BatchRenorm1d, as CrossQ's critic (Bhatt et
    al., ICLR 2024, arXiv 1902.05605 §3; sb3-contrib ``crossq/policies.py``): its layers normalise with batch
    statistics only in the joint forward of the critic update (`set_batch_renorm_training`) and with their running
    statistics everywhere else.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        net_arch: list[int],
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        activation_fn: type[nn.Module] = nn.ReLU,
        normalize_images: bool = True,
        n_critics: int = 2,
        share_features_extractor: bool = True,
        batch_renorm: bool = False,
    ) -> None:
        # The parent builds no Q-network (n_critics=0): they are built here, with or without BatchRenorm.
        super().__init__(observation_space, action_space, net_arch, features_extractor, features_dim, activation_fn,
                         normalize_images, n_critics=0, share_features_extractor=share_features_extractor)  # fmt: skip
        self.n_critics = n_critics
        input_dim = features_dim + get_action_dim(action_space)
        normalization: list[type[nn.Module]] | None = [BatchRenorm1d] if batch_renorm else None
        for idx in range(n_critics):
            layers = create_mlp(input_dim, 1, net_arch, activation_fn, pre_linear_modules=normalization)
            q_net = nn.Sequential(*layers)
            self.add_module(f"qf{idx}", q_net)
            self.q_networks.append(q_net)
        self.set_batch_renorm_training(False)

    def train(self, mode: bool = True) -> EnsembleCritic:
        """`nn.Module.train`, except that BatchRenorm layers stay on their running statistics: only
        `set_batch_renorm_training` turns batch statistics on (for the joint forward)."""
        super().train(mode)
        self.set_batch_renorm_training(False)
        return self

    def set_batch_renorm_training(self, mode: bool) -> None:
        """Normalise with (and update) batch statistics (True) or use the running statistics (False)."""
        for module in self.modules():
            if isinstance(module, BatchRenorm1d):
                module.train(mode)

    def features(self, obs: PyTorchObs) -> Tensor:
        """Flat features of a batch of observations."""
        return self.extract_features(obs, self.features_extractor)

    def q_values(self, features: Tensor, actions: Tensor) -> Tensor:
        """Every member's Q for row-aligned features and actions, shape (N, n_critics)."""
        inputs = th.cat([features, actions], dim=1)
        return th.cat([q_net(inputs) for q_net in self.q_networks], dim=1)

    def min_q(self, features: Tensor, actions: Tensor) -> Tensor:
        """Pessimistic ensemble value min_j Q_j, shape (N,)."""
        return self.q_values(features, actions).min(dim=1).values

    def min_q_grouped(self, features: Tensor, actions: Tensor) -> Tensor:
        """min_j Q_j for K actions per state: ``features`` (B, F), ``actions`` (B, K, |A|) -> (B, K); `min_q` on the
        repeated rows, for evaluation only (no autograd), with the ReLUs in place.

        DQS spends most of its time here (soft values and score targets evaluate the critic on M * B and K * B
        rows). Splitting the first layer into a per-state part broadcast over the K actions was measured slower on
        a CPU (2.0 vs 1.4 ms for 4096 rows: a (4096 x 6) matmul and a broadcast add cost more than the concat).
        """
        batch, k, action_dim = actions.shape
        inputs = th.cat([features.repeat_interleave(k, dim=0), actions.reshape(batch * k, action_dim)], dim=1)
        result: Tensor | None = None
        for q_net in self.q_networks:
            h = inputs
            for layer in q_net:
                h = th.relu_(h) if isinstance(layer, nn.ReLU) else layer(h)
            q = h.view(batch, k)
            result = q if result is None else th.minimum(result, q)
        assert result is not None
        return result


def _policy_level_temperature(
    module: nn.Module, state_dict: dict[str, Tensor], prefix: str, *args: Any, **kwargs: Any
) -> None:
    """Load a checkpoint written before the actors held the temperature (before 2026-12-08: one policy-level
    ``temperature`` buffer) into both actors."""
    temperature = state_dict.pop(prefix + "temperature", None)
    if temperature is not None:
        for actor in ("actor", "actor_target"):
            state_dict.setdefault(f"{prefix}{actor}.temperature", temperature.clone())


class DiffusionPolicy(BasePolicy):
    """Policy of DQS: samples a ~ pi_T(a|s) ∝ exp(Q(s, a)/T) by integrating the reverse SDE of a learned score.

    ``actor`` is the trained score network and ``actor_target`` the copy that samples (the algorithm keeps it an
    exponential moving average of ``actor``, or an exact copy).

    Stochastic predict integrates the reverse SDE (eta = 1) from a fresh prior draw. Deterministic predict is
    noise-free and independent of the global RNG: it integrates from ``n_action_candidates`` fixed prior draws
    (seeded, shared by every state) with the PF-ODE (``"ode"``) or the noise-free reverse-SDE drift (``"drift"``)
    and, with more than one candidate, returns the one with the highest min-ensemble Q.

    :param observation_space: Observation space
    :param action_space: Bounded Box action space
    :param lr_schedule: Learning-rate schedule (the optimisers' initial rate)
    :param net_arch: Hidden layer sizes of each critic, or SB3's dict ``{"qf": critic sizes, "pi": score network}``,
        where ``pi`` (equal widths) sets ``score_hidden_dim`` = its width and ``score_n_blocks`` = its length - 1
    :param activation_fn: Activation of the critics
    :param n_critics: Number of critics in the ensemble
    :param score_hidden_dim: Width of the score network
    :param score_n_blocks: Residual blocks of the score network
    :param embedding_dim: Size of the time and temperature embeddings
    :param schedule: Noise schedule name, see `SCHEDULES`
    :param schedule_kwargs: Overrides of the schedule's defaults
    :param sampler_steps: Integration steps of the reverse SDE (and of the PF-ODE of the entropy estimate)
    :param deterministic_steps: Integration steps of deterministic predict; None: ``sampler_steps``
    :param denoise_last_step: Skip the noise of the final SDE step (the reference adds it)
    :param squash: Map samples into the box with ``"tanh"`` (original DQS) or ``"clip"``
    :param score_parameterization: Network output is the score (``"score"``) or the noise eps (``"noise"``,
        score = -eps / sigma(t)); the noise predictor's output layer starts at zero, everything else is orthogonal
    :param deterministic_mode: Integrator of deterministic predict: ``"ode"`` or ``"drift"``
    :param n_action_candidates: Fixed prior draws of deterministic predict (argmax-Q over them when > 1)
    :param n_explore_candidates: Stochastic samples per state; when > 1 stochastic predict returns the one with the
        highest Q (greedier exploration; the samples then no longer follow pi_T)
    :param use_proposal: Also build ``proposal``, the learned tanh-Gaussian q_phi(a|s) of the algorithm's estimators
        (`agents.dqs.proposal`; an MLP with the critics' sizes); it does not act
    :param crossq_critic: Critics with BatchRenorm layers and no target critics (CrossQ's critic, `EnsembleCritic`);
        ``critic_target`` is then None
    :param features_extractor_class: Features extractor (one per network, never shared)
    :param features_extractor_kwargs: Its keyword arguments
    :param normalize_images: Divide image observations by 255
    :param share_features_extractor: Must be False: the score network and the critics always learn their own features
    :param optimizer_class: Optimiser of the score network and of the critics
    :param optimizer_kwargs: Its keyword arguments, excluding the learning rate
    """

    actor: DiffusionActor
    actor_target: DiffusionActor
    critic: EnsembleCritic
    critic_target: EnsembleCritic | None
    proposal: ProposalNetwork | None

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        n_critics: int = 2,
        score_hidden_dim: int = 256,
        score_n_blocks: int = 2,
        embedding_dim: int = 128,
        schedule: ScheduleName = "ve_geometric",
        schedule_kwargs: dict[str, float] | None = None,
        sampler_steps: int = 20,
        deterministic_steps: int | None = None,
        denoise_last_step: bool = True,
        squash: Squash = "clip",
        score_parameterization: Parameterization = "noise",
        deterministic_mode: DeterministicMode = "ode",
        n_action_candidates: int = 4,
        n_explore_candidates: int = 1,
        use_proposal: bool = False,
        crossq_critic: bool = False,
        features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        share_features_extractor: bool = False,
    ) -> None:
        if share_features_extractor:
            raise ValueError(
                "DQS networks never share a features extractor (the score network and the critics learn their own): "
                "pass share_features_extractor=False"
            )
        if isinstance(net_arch, dict):
            net_arch, score_hidden_dim, score_n_blocks = _split_net_arch(net_arch, score_hidden_dim, score_n_blocks)
        super().__init__(
            observation_space,
            action_space,
            features_extractor_class,
            features_extractor_kwargs,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            squash_output=True,
            normalize_images=normalize_images,
        )
        if min(n_action_candidates, n_explore_candidates) < 1:
            raise ValueError("n_action_candidates and n_explore_candidates must be >= 1")
        self.net_arch = [256, 256] if net_arch is None else net_arch
        self.activation_fn = activation_fn
        self.n_critics = n_critics
        self.score_hidden_dim = score_hidden_dim
        self.score_n_blocks = score_n_blocks
        self.embedding_dim = embedding_dim
        # The actors' sampler settings (`DiffusionActor` keywords): each actor holds and uses them; the policy keeps
        # them only to build its actors and to save its own constructor arguments.
        self.sampler_kwargs: dict[str, Any] = dict(
            schedule=schedule,
            schedule_kwargs=schedule_kwargs,
            sampler_steps=sampler_steps,
            deterministic_steps=deterministic_steps,
            denoise_last_step=denoise_last_step,
            squash=squash,
            score_parameterization=score_parameterization,
            deterministic_mode=deterministic_mode,
        )
        self.n_action_candidates = n_action_candidates
        self.n_explore_candidates = n_explore_candidates
        self.use_proposal = use_proposal
        self.crossq_critic = crossq_critic
        self.action_dim = get_action_dim(action_space)
        self._build(lr_schedule)
        self.register_load_state_dict_pre_hook(_policy_level_temperature)

    def _build(self, lr_schedule: Schedule) -> None:
        self.actor = self.make_actor()
        self.actor.optimizer = self.optimizer_class(self.actor.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)
        self.actor_target = self.make_actor()
        self.actor_target.load_state_dict(self.actor.state_dict())
        self.actor_target.set_training_mode(False)
        self.critic = self.make_critic()
        self.critic.optimizer = self.optimizer_class(self.critic.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)
        self.critic_target = None if self.crossq_critic else self.make_critic()
        if self.critic_target is not None:
            self.critic_target.load_state_dict(self.critic.state_dict())
            self.critic_target.set_training_mode(False)
        # Built last, so that the other networks start from the same weights with or without it.
        self.proposal = self.make_proposal() if self.use_proposal else None
        if self.proposal is not None:
            self.proposal.optimizer = self.optimizer_class(
                self.proposal.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs
            )

    def _orthogonal_init(self, module: nn.Module) -> nn.Module:
        """Orthogonal weights with gain sqrt(2) and zero biases on every layer, as the reference code's networks
        (vineetjain96/Diffusion_Q_Sampling ``src/components/mlp.py`` and ``src/agent/critic.py``)."""
        module.apply(partial(self.init_weights, gain=math.sqrt(2)))
        return module.to(self.device)

    def make_actor(self) -> DiffusionActor:
        kwargs = self._update_features_extractor({"normalize_images": self.normalize_images})
        network = DiffusionActor(
            self.observation_space,
            self.action_space,
            hidden_dim=self.score_hidden_dim,
            n_blocks=self.score_n_blocks,
            embedding_dim=self.embedding_dim,
            **self.sampler_kwargs,
            **kwargs,
        )
        network = self._orthogonal_init(network)
        if network.score_parameterization == "noise":
            # An untrained noise predictor then predicts no noise: the first policy samples the (clipped) prior.
            nn.init.zeros_(network.output.weight)
        return network

    def make_critic(self) -> EnsembleCritic:
        kwargs = self._update_features_extractor({"normalize_images": self.normalize_images})
        critic = EnsembleCritic(
            self.observation_space,
            self.action_space,
            net_arch=self.net_arch,
            activation_fn=self.activation_fn,
            n_critics=self.n_critics,
            share_features_extractor=False,
            batch_renorm=self.crossq_critic,
            **kwargs,
        )
        return self._orthogonal_init(critic)

    def make_proposal(self) -> ProposalNetwork:
        """The proposal q_phi: SB3's SAC actor on its own features extractor, with the critics' hidden sizes and
        SB3's default initialisation (as SAC's)."""
        kwargs = self._update_features_extractor({"normalize_images": self.normalize_images})
        proposal = ProposalNetwork(
            self.observation_space, self.action_space, net_arch=self.net_arch, activation_fn=self.activation_fn, **kwargs
        )
        return proposal.to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            net_arch=self.net_arch,
            activation_fn=self.activation_fn,
            n_critics=self.n_critics,
            score_hidden_dim=self.score_hidden_dim,
            score_n_blocks=self.score_n_blocks,
            embedding_dim=self.embedding_dim,
            **self.sampler_kwargs,
            n_action_candidates=self.n_action_candidates,
            n_explore_candidates=self.n_explore_candidates,
            use_proposal=self.use_proposal,
            crossq_critic=self.crossq_critic,
            lr_schedule=self._dummy_schedule,
            optimizer_class=self.optimizer_class,
            optimizer_kwargs=self.optimizer_kwargs,
            features_extractor_class=self.features_extractor_class,
            features_extractor_kwargs=self.features_extractor_kwargs,
        )
        return data

    # --- acting -----------------------------------------------------------------------------------------------------

    @property
    def schedule(self) -> NoiseSchedule:
        """The noise schedule of the score networks."""
        return self.actor_target.schedule

    @property
    def temperature(self) -> Tensor:
        """The temperature T the score networks are conditioned on (saved with their weights; `set_temperature`)."""
        return self.actor_target.temperature

    def set_temperature(self, temperature: float) -> None:
        """Condition both score networks on ``temperature`` (the algorithm's rule decides it)."""
        for actor in (self.actor, self.actor_target):
            actor.temperature.fill_(temperature)

    def _best_of(self, observation: PyTorchObs, candidates: Tensor, n: int) -> Tensor:
        """Per state, the candidate with the highest min-ensemble Q; ``candidates`` holds n consecutive rows per state."""
        q = self.critic.min_q_grouped(self.critic.features(observation), candidates.view(-1, n, self.action_dim))
        best = q.argmax(dim=1)
        return candidates.view(-1, n, self.action_dim)[th.arange(len(best), device=best.device), best]

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> Tensor:
        return self._predict(obs, deterministic=deterministic)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> Tensor:
        features = self.actor_target.features(observation)
        if deterministic:
            n = self.n_action_candidates
            actions = self.actor_target.fixed_prior_actions(features, n)
        else:
            n = self.n_explore_candidates
            actions = self.actor_target.sample_actions(features.repeat_interleave(n, dim=0))
        return actions if n == 1 else self._best_of(observation, actions, n)

    def set_training_mode(self, mode: bool) -> None:
        """Set the trained networks' mode (the targets always stay in evaluation mode). A network already in that mode
        is skipped: SB3 calls this on every predict, and walking every submodule cost 0.35 ms of a 4 ms predict."""
        for network in (self.actor, self.critic, self.proposal):
            if network is not None and network.training != mode:
                network.set_training_mode(mode)
        self.training = mode


MlpPolicy = DiffusionPolicy


class MultiInputDiffusionPolicy(DiffusionPolicy):
    """`DiffusionPolicy` for Dict observations: each network flattens and concatenates the keys (CombinedExtractor)."""

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        features_extractor_class: type[BaseFeaturesExtractor] = CombinedExtractor,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            observation_space, action_space, lr_schedule, features_extractor_class=features_extractor_class, **kwargs
        )


MultiInputPolicy = MultiInputDiffusionPolicy


class CnnDiffusionPolicy(DiffusionPolicy):
    """`DiffusionPolicy` for image observations: each network has its own NatureCNN features extractor."""

    def __init__(
        self,
        observation_space: spaces.Box,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        features_extractor_class: type[BaseFeaturesExtractor] = NatureCNN,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            observation_space, action_space, lr_schedule, features_extractor_class=features_extractor_class, **kwargs
        )


CnnPolicy = CnnDiffusionPolicy
