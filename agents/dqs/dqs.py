"""Diffusion Q-Sampling (DQS; Jain, Akhound-Sadegh & Ravanbakhsh, RLC 2025) as an SB3 off-policy algorithm.

The policy is the Boltzmann distribution pi_T(a|s) ∝ exp(Q(s, a)/T) of the critic, represented by a diffusion model
whose score network regresses Monte-Carlo estimates of the noised score of exp(Q/T) (no likelihoods needed).
``mode="faithful"`` reproduces the reference code; ``mode="improved"`` (default) is the fast and principled variant
of docs/dqs.md. The DQS knobs are the fields of the frozen `DQSConfig`; `MODES` holds the two modes, and constructor
keywords override a mode's values (``DQS("MlpPolicy", env, temperature=0.1)``).
"""

from __future__ import annotations

import functools
import math
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import maybe_make_env
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import (
    DictReplayBufferSamples,
    GymEnv,
    MaybeCallback,
    ReplayBufferSamples,
    Schedule,
)
from stable_baselines3.common.utils import FloatSchedule, get_parameters_by_name, polyak_update, update_learning_rate
from torch import Tensor

from agents.dqs.policies import CnnDiffusionPolicy, DiffusionActor, DiffusionPolicy, EnsembleCritic, MultiInputDiffusionPolicy
from agents.dqs.proposal import ProposalNetwork, backup_actions, importance_log_partition
from core.config import CheckedConfig, fold_config_attributes, with_overrides
from samplers.estimators import mc_score_estimate, softmax_score_estimate

SelfDQS = TypeVar("SelfDQS", bound="DQS")
Mode = Literal["improved", "faithful"]
Batch = ReplayBufferSamples | DictReplayBufferSamples


#: Knobs that configure the policy (its sampler and critics); DQS owns them and passes them on as policy kwargs.
POLICY_KNOBS = ("schedule", "schedule_kwargs", "sampler_steps", "deterministic_steps", "denoise_last_step", "squash",
                "score_parameterization", "deterministic_mode", "n_action_candidates", "n_explore_candidates",
                "crossq_critic")  # fmt: skip
#: Smallest diffusion time of score training with the softmax estimator, whose target divides by sigma(t) > 0.
SOFTMAX_T_MIN = 1e-3
#: Relative temperature tau of ``temperature="auto"``: T = tau * (spread of Q over the action box); docs/dqs.md.
AUTO_RELATIVE_TEMPERATURE = 0.05
#: The knobs that define the temperature rule (a ``DQS.load`` keyword among them resets the stored temperature).
TEMPERATURE_KNOBS = frozenset({"temperature", "final_temperature", "temperature_anneal_steps"})
#: States (one action each) per measurement of the policy's entropy (``train/entropy``).
ENTROPY_STATES = 16
#: Floor of the Q spread in the automatic temperature (keeps T > 0 while the critic is still constant).
MIN_Q_SPREAD = 1e-6
#: Rate of the exponential moving average of the Q spread behind the automatic temperature (per gradient step).
Q_SPREAD_RATE = 0.01
#: Target entropy per action dimension of ``temperature="entropy"`` (SAC's heuristic, -dim(A) in all).
DEFAULT_TARGET_ENTROPY = -1.0
TemperatureRule = Literal["fixed", "relative", "entropy"]


def parse_temperature(temperature: float | str) -> tuple[TemperatureRule, float]:
    """(rule, value) of a ``temperature`` argument: ``("fixed", T)`` for a positive number; ``("relative", tau)`` for
    ``"auto"`` / ``"auto_<tau>"``; ``("entropy", h)`` for ``"entropy"`` / ``"entropy_<h>"``, the target entropy h per
    action dimension of the dual (SAC's -1 by default)."""
    usage = "a positive number, 'auto', 'auto_<tau>' (e.g. 'auto_0.05'), 'entropy' or 'entropy_<h>' (e.g. 'entropy_-1')"
    if isinstance(temperature, str):
        rule, _, number = temperature.partition("_")
        defaults: dict[str, tuple[TemperatureRule, float]] = {
            "auto": ("relative", AUTO_RELATIVE_TEMPERATURE),
            "entropy": ("entropy", DEFAULT_TARGET_ENTROPY),
        }
        if temperature in defaults:
            return defaults[temperature]
        try:
            value = float(number)
        except ValueError:
            value = math.nan
        if (rule == "auto" and value > 0) or (rule == "entropy" and math.isfinite(value)):
            return defaults[rule][0], value
        raise ValueError(f"temperature must be {usage}, got {temperature!r}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be {usage}, got {temperature!r}")
    return "fixed", float(temperature)


@dataclass(frozen=True)
class DQSConfig(CheckedConfig):
    """DQS's own knobs (the SB3 ones are constructor arguments, as in SAC). The defaults are ``mode="improved"``, the
    fast and principled variant of docs/dqs.md; `MODES` holds both modes. Every field is also a `DQS` keyword."""

    #: Knobs added after benchmark runs were recorded, each with the value that behaves as DQS did before it existed.
    #: A fingerprint of the defaults (`benchmarks.dqs_mujoco.defaults_fingerprint`) leaves a knob out at that value,
    #: so adding an opt-in knob does not invalidate those runs.
    NEUTRAL_KNOBS: ClassVar[dict[str, Any]] = {"crossq_critic": False}

    learning_starts: int = 1_000
    """Uniform-random steps before learning (faithful 10000). SB3 SAC's 100 learns SB3's IdentityEnvBox test in 400
    steps (1000 cannot), but learned Pendulum worse in a one-seed trial (docs/dqs.md §5)."""
    critic_learning_rate: float | Schedule | None = None
    """Learning rate of the critics; None: the same as ``learning_rate`` (faithful 1e-3)."""
    policy_delay: int = 2
    """Update the score network every this many critic updates, as TD3 (faithful 1)."""
    ema_decay: float = 0.99
    """Actions are sampled with an exponential moving average of the score network's weights with this decay, as
    Diffusion-QL; 0 samples with the trained weights (faithful)."""
    schedule: Literal["ve_geometric", "vp_cosine"] = "ve_geometric"
    """Noise schedule."""
    schedule_kwargs: dict[str, float] = field(default_factory=lambda: {"sigma_min": 1e-2, "sigma_max": 1.0})
    """Schedule parameters (faithful sigma_min 1e-5). Changing ``schedule`` alone resets them to that schedule's
    defaults."""
    sampler_steps: int = 20
    """Reverse-SDE steps per sample (faithful 500)."""
    deterministic_steps: int | None = 10
    """Steps of deterministic predict (PF-ODE, or the drift in faithful mode); None: ``sampler_steps`` (faithful).
    10 DDIM steps from 4 draws act 2x faster than 20 from 10 and returned as much or more on HalfCheetah and Pendulum;
    fewer steps returned more on HalfCheetah but less on Pendulum (docs/dqs.md §4.11)."""
    denoise_last_step: bool = True
    """Omit the noise of the last SDE step (faithful False, as the reference)."""
    squash: Literal["tanh", "clip"] = "clip"
    """Map samples into the box by clipping (the score is then learned for the box-restricted Boltzmann density), or
    by ``"tanh"`` after sampling (faithful; not part of the modelled density)."""
    score_parameterization: Literal["score", "noise"] = "noise"
    """The network predicts the noise, an eps-MSE = weight h(t), or the score with weight h(t) + 1e-3 (faithful)."""
    score_estimator: Literal["mc", "softmax"] = "softmax"
    """Score targets: the gradient-free posterior-mean estimator with proposals truncated to the action box, or the
    iDEM estimator through grad Q (``"mc"``, faithful)."""
    n_mc_samples: int = 16
    """Monte-Carlo samples K per score target (faithful 1000)."""
    score_proposal_fraction: float = 0.5
    """Share of the K score-target proposals drawn from the learned proposal q_phi(a|s) instead of the noising kernel,
    all weighted by their mixture density (softmax estimator only; faithful 0: kernel only)."""
    backup: Literal["hard", "soft"] = "soft"
    """``"soft"``: y = r + gamma V_soft(s'), V_soft = T log of the box integral of exp(Q'/T), estimated by importance
    sampling (``soft_value_proposal``); ``"hard"``: y = r + gamma min_j Q'_j(s', a') with a' ~ pi_T (faithful, no
    entropy term)."""
    soft_value_proposal: Literal["learned", "uniform"] = "learned"
    """Actions of the soft value's importance sampling: ``"learned"`` draws them from q_phi(a|s') mixed with a
    uniform share (``backup_uniform_fraction``); ``"uniform"`` draws a Latin hypercube on the box (faithful)."""
    backup_uniform_fraction: float = 0.25
    """Uniform (Latin-hypercube) share of the soft value's M actions with the learned proposal: a defensive mixture
    component, and the actions the automatic temperature measures Q's spread on."""
    temperature: float | str = "auto"
    """Temperature T of pi_T ∝ exp(Q/T): a number (T0 of the annealing rule), or ``"auto"`` / ``"auto_<tau>"``: the
    scale-free rule T = tau * s_Q, s_Q a moving average of the spread (std) of the target critic over the action box
    at the batch's next states, so T means the same when returns grow from 10 to 10,000 (docs/dqs.md; tau = 0.05);
    or ``"entropy"`` / ``"entropy_<h>"``: SAC's dual on log T, driving the learned proposal's entropy to h per action
    dimension (-1), from T = 1. Faithful 1.0."""
    deterministic_mode: Literal["ode", "drift"] = "ode"
    """Integrator of deterministic predict from fixed prior draws: DDIM steps of the PF-ODE, or the noise-free
    reverse-SDE drift (the reference's requested evaluation; faithful)."""
    n_action_candidates: int = 4
    """Fixed prior draws of deterministic predict, argmax-Q among them (faithful 1)."""
    n_backup_samples: int = 8
    """Actions M per next state of the soft backup."""
    final_temperature: float | None = None
    """Final temperature T1 of the exponential annealing of a fixed temperature; None keeps T constant."""
    temperature_anneal_steps: int = 1_000_000
    """Gradient steps over which T goes from T0 to T1 (geometrically)."""
    entropy_freq: int = 1000
    """Log ``train/entropy``, the measured entropy of the acting policy on 16 states, every this many gradient
    steps; 0 never."""
    n_explore_candidates: int = 1
    """Stochastic samples per exploration step, argmax-Q among them when > 1."""
    crossq_critic: bool = False
    """CrossQ's critic (Bhatt et al., ICLR 2024, arXiv 1902.05605): BatchRenorm layers, no target critics (the
    backup evaluates the critics themselves, so ``tau`` and ``target_update_interval`` have no effect), and one joint
    forward of the batch's (s, a) and the backup's (s', a') rows, which share the batch statistics."""

    def __post_init__(self) -> None:
        super().__post_init__()
        rule, _ = self.temperature_rule
        if rule != "fixed" and self.final_temperature is not None:
            raise ValueError(f"final_temperature anneals a fixed temperature; it cannot be combined with {self.temperature!r}")
        if self.entropy_freq < 0:
            raise ValueError(f"entropy_freq must be >= 0 (0: never), got {self.entropy_freq}")
        if self.soft_value_proposal not in ("learned", "uniform"):
            raise ValueError(f"soft_value_proposal must be 'learned' or 'uniform', got {self.soft_value_proposal!r}")
        for name in ("score_proposal_fraction", "backup_uniform_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.score_estimator == "mc" and self.score_proposal_fraction > 0:
            raise ValueError("score_proposal_fraction applies to score_estimator='softmax'; set it to 0 with 'mc'")
        if self.n_mc_samples - self.n_score_proposals < 1 or (
            self.learned_backup and self.n_backup_samples - self.n_backup_uniform < 1
        ):
            raise ValueError(
                "the fractions leave no kernel proposal among the n_mc_samples or no learned proposal among the "
                "n_backup_samples: lower score_proposal_fraction or backup_uniform_fraction, or raise the counts"
            )
        if rule == "relative" and self.n_backup_uniform < 2:
            raise ValueError(
                "temperature='auto' measures Q's spread on at least 2 uniform backup actions per state: raise "
                f"backup_uniform_fraction * n_backup_samples (now {self.backup_uniform_fraction} * {self.n_backup_samples})"
            )

    @property
    def n_score_proposals(self) -> int:
        """Score-target proposals per buffer action drawn from q_phi (the rest from the kernel)."""
        return round(self.score_proposal_fraction * self.n_mc_samples)

    @property
    def learned_backup(self) -> bool:
        """Whether the soft value samples from q_phi."""
        return self.backup == "soft" and self.soft_value_proposal == "learned"

    @property
    def n_backup_uniform(self) -> int:
        """Uniform actions among the soft value's M per next state."""
        return round(self.backup_uniform_fraction * self.n_backup_samples) if self.learned_backup else self.n_backup_samples

    @property
    def uses_proposal(self) -> bool:
        """Whether an estimator or the temperature's entropy dual needs the learned proposal q_phi (else it is not
        built)."""
        return self.learned_backup or self.n_score_proposals > 0 or self.temperature_rule[0] == "entropy"

    @functools.cached_property
    def temperature_rule(self) -> tuple[TemperatureRule, float]:
        """(rule, value) of `temperature` (`parse_temperature`): parsed once, where the value enters, and validated
        there with the config's other fields."""
        return parse_temperature(self.temperature)


#: The two modes: ``"improved"`` (the defaults) and ``"faithful"``, the reference code (Jain et al. 2025, and the
#: reference repository's src/agent/dqs.py and configs).
MODES: dict[str, DQSConfig] = {
    "improved": DQSConfig(),
    "faithful": DQSConfig(
        learning_starts=10_000, critic_learning_rate=1e-3, policy_delay=1, ema_decay=0.0,
        schedule_kwargs={"sigma_min": 1e-5, "sigma_max": 1.0}, sampler_steps=500, denoise_last_step=False,
        squash="tanh", score_parameterization="score", score_estimator="mc", n_mc_samples=1000,
        score_proposal_fraction=0.0, backup="hard", soft_value_proposal="uniform", temperature=1.0,
        deterministic_mode="drift", deterministic_steps=None, n_action_candidates=1,
    ),
}  # fmt: skip


def resolve_config(mode: Mode, **overrides: Any) -> DQSConfig:
    """The mode's configuration with ``overrides`` (fields of `DQSConfig`); a clear error names unknown keys. A new
    ``schedule`` without ``schedule_kwargs`` takes that schedule's defaults, not the mode's parameters."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}")
    base = MODES[mode]
    if overrides.get("schedule", base.schedule) != base.schedule and "schedule_kwargs" not in overrides:
        overrides["schedule_kwargs"] = {}
    return with_overrides(base, overrides, "DQS")


def _first_rows(observations: Any, n: int) -> Any:
    """The first ``n`` rows of a batch of observations (a tensor, or a dict of tensors)."""
    if isinstance(observations, dict):
        return {key: value[:n] for key, value in observations.items()}
    return observations[:n]


def check_action_space(action_space: spaces.Space) -> None:
    """Raise a ValueError unless the action space is a bounded Box (the score is learned on [-1, 1]^d). SB3's own
    algorithms assert on unsupported spaces; a ValueError here also says what to use instead."""
    if not isinstance(action_space, spaces.Box):
        raise ValueError(
            f"DQS supports only continuous Box action spaces with finite bounds, got {action_space}. "
            "For discrete actions use DQN or PPO (train.py --algo ppo)."
        )
    if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
        raise ValueError(
            f"DQS needs finite action bounds, got low={action_space.low}, high={action_space.high}. Wrap the environment "
            "so that it declares the physical action range, e.g. gymnasium.wrappers.RescaleAction over a bounded Box."
        )


class DQS(OffPolicyAlgorithm):
    """Diffusion Q-Sampling: off-policy actor-critic whose actor samples exp(Q/T) with a learned diffusion model.

    Each gradient step updates the critic ensemble first, then regresses the score network onto score targets of
    exp(Q/T) computed from the updated online critic, as in the reference code (vineetjain96/Diffusion_Q_Sampling).

    :param policy: The policy model (MlpPolicy, CnnPolicy, MultiInputPolicy)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param mode: ``"improved"`` (default) or ``"faithful"``: the `DQSConfig` of `MODES` that the knobs start from
    :param learning_rate: Learning rate of the score network (Adam), a float or a schedule of the remaining progress
    :param buffer_size: Size of the replay buffer
    :param batch_size: Minibatch size of each gradient step
    :param tau: Polyak coefficient of the target critics
    :param gamma: Discount factor
    :param train_freq: Update the model every ``train_freq`` steps (or ``(n, "episode")``)
    :param gradient_steps: Gradient steps after each rollout (-1: as many as environment steps)
    :param action_noise: Optional extra action noise (not needed: sampling is stochastic)
    :param replay_buffer_class: Replay buffer class (e.g. ``HerReplayBuffer``); ``None`` selects automatically
    :param replay_buffer_kwargs: Keyword arguments of the replay buffer
    :param optimize_memory_usage: Memory-efficient replay buffer variant
    :param n_steps: n-step returns (only with the default replay buffer)
    :param target_update_interval: Polyak-update the target critics every this many gradient steps
    :param stats_window_size: Window size of the rollout statistics
    :param tensorboard_log: TensorBoard log folder (None: no TensorBoard)
    :param policy_kwargs: Policy keyword arguments (network sizes, features extractor)
    :param verbose: 0 silent, 1 info (also prints the resolved configuration), 2 debug
    :param seed: Seed of the pseudo-random generators
    :param device: Torch device ("auto", "cpu", "cuda", ...)
    :param _init_setup_model: Build the networks at creation (False when loading)
    :param knobs: Fields of `DQSConfig` (``temperature``, ``backup``, ``sampler_steps``, ...) overriding the mode's
        values; the sampler knobs among them reach the policy, not ``policy_kwargs``
    """

    config_class: ClassVar[type] = DQSConfig

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": DiffusionPolicy,
        "CnnPolicy": CnnDiffusionPolicy,
        "MultiInputPolicy": MultiInputDiffusionPolicy,
    }
    policy: DiffusionPolicy
    actor: DiffusionActor
    actor_target: DiffusionActor
    critic: EnsembleCritic
    critic_target: EnsembleCritic | None
    proposal: ProposalNetwork | None
    config: DQSConfig
    mode: Mode

    def __init__(
        self,
        policy: str | type[DiffusionPolicy],
        env: GymEnv | str,
        mode: Mode = "improved",
        learning_rate: float | Schedule = 3e-4,
        buffer_size: int = 1_000_000,
        batch_size: int = 256,
        tau: float = 0.005,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 1,
        gradient_steps: int = 1,
        action_noise: ActionNoise | None = None,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        optimize_memory_usage: bool = False,
        n_steps: int = 1,
        target_update_interval: int = 1,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
        **knobs: Any,
    ) -> None:
        config = resolve_config(mode, **knobs)
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma}")
        if buffer_size < 1 or batch_size < 1:
            raise ValueError(f"buffer_size and batch_size must be positive, got {buffer_size} and {batch_size}")
        clashes = sorted(set(POLICY_KNOBS) & set(policy_kwargs or {}))
        if clashes:
            raise ValueError(f"Set {', '.join(clashes)} as DQS arguments, not in policy_kwargs.")
        if env is not None:
            env = maybe_make_env(env, verbose)
            check_action_space(env.action_space)
        super().__init__(
            policy,
            env,
            learning_rate,
            buffer_size,
            config.learning_starts,
            batch_size,
            tau,
            gamma,
            train_freq,
            gradient_steps,
            action_noise,
            replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs,
            optimize_memory_usage=optimize_memory_usage,
            n_steps=n_steps,
            policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            seed=seed,
            sde_support=False,
            supported_action_spaces=(spaces.Box,),
            support_multi_env=True,
        )
        self.mode = mode
        self.config = config
        self.target_update_interval = target_update_interval
        # Moving average of the spread of Q over the action box (automatic temperature; None until measured).
        self.q_spread: float | None = None
        if _init_setup_model:
            self._setup_model()

    @property
    def dqs_config(self) -> dict[str, Any]:
        """The mode and the resolved `DQSConfig`, as a dict."""
        return {"mode": self.mode, **asdict(self.config)}

    def _setup_model(self) -> None:
        fold_config_attributes(self, shared=("learning_starts",))  # SB3's load(path, temperature=...)
        # The sampler knobs reach the policy through its kwargs, without entering the stored policy_kwargs (so that
        # DQS.load(path, policy_kwargs=...) compares the user's own kwargs, as SB3 does).
        user_kwargs = self.policy_kwargs
        self.policy_kwargs = {**user_kwargs, **{key: getattr(self.config, key) for key in POLICY_KNOBS},
                              "use_proposal": self.config.uses_proposal}  # fmt: skip
        try:
            super()._setup_model()
        finally:
            self.policy_kwargs = user_kwargs
        self._create_aliases()
        self._setup_temperature()
        if self.critic_target is not None:
            self.batch_norm_stats = get_parameters_by_name(self.critic, ["running_"])
            self.batch_norm_stats_target = get_parameters_by_name(self.critic_target, ["running_"])
        critic_lr = self.config.critic_learning_rate
        self.own_critic_lr_schedule = None if critic_lr is None else FloatSchedule(critic_lr)
        update_learning_rate(self.critic.optimizer, self.critic_lr_schedule(1.0))
        self.policy.set_temperature(self.temperature_at(self._n_updates))
        if self.verbose >= 1:
            print("DQS configuration: " + ", ".join(f"{key}={value}" for key, value in self.dqs_config.items()))

    def _create_aliases(self) -> None:
        self.actor = self.policy.actor
        self.actor_target = self.policy.actor_target
        self.critic = self.policy.critic
        self.critic_target = self.policy.critic_target
        self.proposal = self.policy.proposal

    @property
    def critic_lr_schedule(self) -> Schedule:
        """The critics' learning-rate schedule: their own (``critic_learning_rate``), else SB3's ``lr_schedule``
        itself, so that replacing ``model.lr_schedule`` (as SB3's tests do) reaches the critics too."""
        return self.lr_schedule if self.own_critic_lr_schedule is None else self.own_critic_lr_schedule

    @property
    def automatic_temperature(self) -> bool:
        """Whether T follows the scale-free rule (``temperature="auto"``)."""
        return self.temperature_rule == "relative"

    def _setup_temperature(self) -> None:
        """Parse the temperature rule once; the entropy dual gets log T (from T = 1) and its optimiser, as SAC's."""
        self.temperature_rule, self.temperature_value = self.config.temperature_rule
        self.log_temperature: Tensor | None = None
        self.temperature_optimizer: th.optim.Optimizer | None = None
        if self.temperature_rule == "entropy":
            self.log_temperature = th.zeros(1, device=self.device, requires_grad=True)
            self.temperature_optimizer = th.optim.Adam([self.log_temperature], lr=self.lr_schedule(1))

    def temperature_at(self, n_updates: int) -> float:
        """T = tau * s_Q (relative; s_Q = 1 before the first measurement), exp(log T) of the entropy dual, or the
        annealing rule T(n) = exp(log T0 + (log T1 - log T0) min(n / N_T, 1)) after n agent updates, as in the
        reference code."""
        if self.temperature_rule == "relative":
            return self.temperature_value * max(1.0 if self.q_spread is None else self.q_spread, MIN_Q_SPREAD)
        if self.log_temperature is not None:
            return float(self.log_temperature.detach().exp())
        cfg = self.config
        if cfg.final_temperature is None:
            return float(cfg.temperature)
        progress = min(n_updates / cfg.temperature_anneal_steps, 1.0) if cfg.temperature_anneal_steps > 0 else 1.0
        log_t0, log_t1 = math.log(cfg.temperature), math.log(cfg.final_temperature)
        return math.exp(log_t0 + (log_t1 - log_t0) * progress)

    # --- losses ---------------------------------------------------------------------------------------------------

    def _track_q_spread(self, box_q: Tensor) -> None:
        """Update s_Q, the moving average of the spread of Q' over the action box: the root mean square over states of
        the standard deviation of Q'(s', a) over that state's uniform actions (unbiased variance; automatic
        temperature)."""
        spread = float(box_q.var(dim=1).mean().sqrt())
        self.q_spread = spread if self.q_spread is None else (1 - Q_SPREAD_RATE) * self.q_spread + Q_SPREAD_RATE * spread

    def backup_actions(self, next_observations: Any, n: int) -> tuple[Tensor, Tensor]:
        """The soft value's M actions for each of the ``n`` next states, (n, M, |A|), and their log proposal densities
        (n, M), uniform actions last (`agents.dqs.proposal.backup_actions`)."""
        cfg = self.config
        proposal = self.proposal.distribution(next_observations) if cfg.learned_backup else None  # type: ignore[union-attr]
        return backup_actions(n, cfg.n_backup_samples, self.policy.action_dim, self.device, proposal, cfg.n_backup_uniform)

    def _next_actions(self, next_observations: Any, n: int) -> tuple[Tensor, Tensor | None]:
        """The actions the backup evaluates at each of the ``n`` next states, (n, M', |A|): the soft value's M
        (`backup_actions`; with a soft backup or the automatic temperature), then, for the hard backup, one
        a' ~ pi_T; and the soft value's log proposal densities (n, M), None without them."""
        actions, log_proposal = [], None
        if self.config.backup == "soft" or self.automatic_temperature:
            soft_actions, log_proposal = self.backup_actions(next_observations, n)
            actions.append(soft_actions)
        if self.config.backup == "hard":
            features = self.actor_target.features(next_observations)
            actions.append(self.actor_target.sample_actions(features).unsqueeze(1))
        return th.cat(actions, dim=1), log_proposal

    def _next_state_value(self, next_q: Tensor, log_proposal: Tensor | None, temperature: float) -> Tensor:
        """Backed-up value of s' (shape (B, 1)) from min_j Q_j at the `_next_actions` (B, M'): at a' ~ pi_T, the last
        column ("hard"), or V_soft(s') ("soft"). With the automatic temperature it also updates the Q spread, from
        the soft value's uniform actions."""
        if self.automatic_temperature:
            assert log_proposal is not None
            m = log_proposal.shape[1]
            self._track_q_spread(next_q[:, m - self.config.n_backup_uniform : m])
        if self.config.backup == "hard":
            return next_q[:, -1:]
        # V_soft = T log ∫_box exp(Q/T) da ≈ T (logsumexp_m [Q(s', a_m)/T - log q(a_m|s')] - log M), a_m ~ q.
        return temperature * importance_log_partition(next_q / temperature, log_proposal).unsqueeze(1)

    def _joint_q_values(self, data: Batch, next_actions: Tensor) -> tuple[Tensor, Tensor]:
        """CrossQ's joint forward (Bhatt et al. 2024, §3): the batch's (s, a) and every (s', a'_m) through the
        critics as one batch with BatchRenorm normalising by its statistics, so that the Q-values of both come from
        the same normalisation. Returns Q_j(s, a) (B, n_critics), with gradients, and min_j Q_j(s', a'_m) (B, M'),
        detached."""
        n, m = next_actions.shape[:2]
        features = self.critic.features(data.observations)
        next_features = self.critic.features(data.next_observations).repeat_interleave(m, dim=0)
        self.critic.set_batch_renorm_training(True)
        try:
            q_all = self.critic.q_values(th.cat([features, next_features]), th.cat([data.actions, next_actions.flatten(0, 1)]))
        finally:
            self.critic.set_batch_renorm_training(False)
        return q_all[:n], q_all[n:].detach().min(dim=1).values.view(n, m)

    def _critic_loss(self, data: Batch, temperature: float) -> Tensor:
        """0.5 sum_j MSE(Q_j(s, a), y), every member regressing onto the same target y (as SB3's SAC); the target
        critics evaluate the backup, or with ``crossq_critic`` the critics themselves in `_joint_q_values`."""
        with th.no_grad(), th.profiler.record_function("dqs/critic_target"):
            next_actions, log_proposal = self._next_actions(data.next_observations, len(data.actions))
            if self.critic_target is not None:
                next_features = self.critic_target.features(data.next_observations)
                next_q = self.critic_target.min_q_grouped(next_features, next_actions)
        if self.critic_target is None:
            q, next_q = self._joint_q_values(data, next_actions)
        else:
            q = self.critic.q_values(self.critic.features(data.observations), data.actions)
        with th.no_grad():
            discounts = data.discounts if data.discounts is not None else self.gamma
            target = data.rewards + (1.0 - data.dones) * discounts * self._next_state_value(next_q, log_proposal, temperature)
        return 0.5 * (q - target).pow(2).mean(dim=0).sum()

    def score_proposals(self, observations: Any, k: int) -> dict[str, Any]:
        """The learned share of the score target's proposals for each state of ``observations``: ``k`` draws of
        q_phi(a|s) and its density, as keyword arguments of `softmax_score_estimate` (none when k = 0)."""
        if k == 0:
            return {}
        distribution = self.proposal.distribution(observations)  # type: ignore[union-attr]
        return {"proposal_samples": distribution.rsample(k)[0], "proposal_log_prob": distribution.log_prob}

    def _score_loss(self, data: Batch, critic_features: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
        """Denoising regression of the score network onto MC targets of grad log p_t for exp(Q/T) (reference code:
        ``src/components/score_estimator.py`` and ``src/agent/dqs.py``), the softmax targets with part of their
        proposals from q_phi (`score_proposals`).

        One noised point a_t = alpha(t) a + sigma(t) eps per buffer action, t ~ U(t_min, 1). Returns (loss, mean
        norm of the score targets).
        """
        actions, schedule = data.actions, self.policy.schedule
        n = len(actions)
        features = self.actor.features(data.observations)  # trains the actor's own features extractor
        t_min = SOFTMAX_T_MIN if self.config.score_estimator == "softmax" else 0.0
        t = t_min + (1.0 - t_min) * th.rand(n, device=self.device)
        sigma = schedule.sigma(t).unsqueeze(1)
        noisy_actions = schedule.noised(actions, t, th.randn_like(actions))

        def energy(a: Tensor, context: Tensor) -> Tensor:
            return -self.critic.min_q(context, a) / temperature

        def grouped_energy(a: Tensor, context: None) -> Tensor:
            # The estimator evaluates all n * K proposals in one call, K consecutive rows per state.
            return -self.critic.min_q_grouped(critic_features, a.view(n, -1, a.shape[1])).view(-1) / temperature

        with th.profiler.record_function("dqs/score_target"):
            if self.config.score_estimator == "mc":  # differentiates the energy: rows with their own context
                target = mc_score_estimate(
                    energy, noisy_actions, t, schedule, self.config.n_mc_samples, context=critic_features
                )
            else:
                with th.no_grad():
                    proposals = self.score_proposals(data.observations, self.config.n_score_proposals)
                n_kernel = self.config.n_mc_samples - self.config.n_score_proposals
                target = softmax_score_estimate(
                    grouped_energy, noisy_actions, t, schedule, n_kernel, bounds=(-1.0, 1.0), **proposals
                )
        output = self.actor.network_output(features, noisy_actions, t, self.actor.temperature.expand(n))
        if self.config.score_parameterization == "noise":
            # score = -eps / sigma, so sigma^2 |score - S|^2 = |eps_theta + sigma S|^2: an eps-prediction MSE.
            loss = (output + sigma * target).pow(2).mean()
        else:
            weight = schedule.score_loss_weight(t)
            loss = (weight * (output - target).pow(2).mean(dim=1)).mean()
        return loss, target.norm(dim=1).mean()

    def _proposal_loss(self, data: Batch, critic_features: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
        """SAC's actor loss at alpha = T for q_phi, E_{a ~ q_phi}[T log q_phi(a|s) - min_j Q_j(s, a)] with a
        reparameterised sample (Haarnoja et al. 2018, arXiv 1801.01290, eq. 12): q_phi then approaches exp(Q/T) from
        the mode-seeking side. Returns (loss, entropy estimate -mean log q_phi)."""
        distribution = self.proposal.distribution(data.observations)  # type: ignore[union-attr]
        actions, log_q = distribution.rsample(1)
        q = self.critic.min_q(critic_features, actions[:, 0])
        return (temperature * log_q[:, 0] - q).mean(), -log_q.detach().mean()

    def _measure_entropy(self, data: Batch) -> float:
        """The measured entropy of the acting policy on the batch's first `ENTROPY_STATES` states (a diagnostic)."""
        with th.no_grad(), th.profiler.record_function("dqs/entropy"):
            observations = _first_rows(data.observations, ENTROPY_STATES)
            return float(self.actor_target.entropy(self.actor_target.features(observations)))

    def _finite(self, loss: float, name: str, data: Batch) -> float:
        """``loss`` if finite; else a FloatingPointError naming the step and the likely cause (the batch's env data,
        else the learning rate), raised before the optimiser step could spread NaN into the networks."""
        if math.isfinite(loss):
            return loss
        fields = {"observations": data.observations, "next_observations": data.next_observations,
                  "actions": data.actions, "rewards": data.rewards}  # fmt: skip
        bad = [key for key, value in fields.items()
               if not all(th.isfinite(v).all() for v in (value.values() if isinstance(value, dict) else [value]))]  # fmt: skip
        cause = (
            f"the replay buffer holds non-finite {', '.join(bad)}: the environment returned NaN or inf"
            if bad
            else f"the networks diverged: lower the learning rate (now {self.lr_schedule(self._current_progress_remaining):g})"
        )
        raise FloatingPointError(
            f"DQS {name} loss is {loss} at gradient step {self._n_updates} ({self.num_timesteps} env steps): {cause}."
        )

    # --- SB3 hooks ------------------------------------------------------------------------------------------------

    def train(self, gradient_steps: int, batch_size: int = 256) -> None:
        self.policy.set_training_mode(True)
        self._update_learning_rate([net.optimizer for net in (self.actor, self.proposal) if net is not None])
        critic_lr = self.critic_lr_schedule(self._current_progress_remaining)
        update_learning_rate(self.critic.optimizer, critic_lr)
        metrics: dict[str, list[float]] = defaultdict(list)
        for _ in range(gradient_steps):
            start = time.perf_counter()
            data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            temperature = self.temperature_at(self._n_updates)
            self.policy.set_temperature(temperature)

            critic_loss = self._critic_loss(data, temperature)
            metrics["critic_loss"].append(self._finite(critic_loss.item(), "critic", data))  # before any NaN step
            self.critic.optimizer.zero_grad()
            critic_loss.backward()
            self.critic.optimizer.step()

            self._n_updates += 1
            if self._n_updates % self.config.policy_delay == 0:
                with th.no_grad():
                    critic_features = self.critic.features(data.observations)
                actor_loss, target_norm = self._score_loss(data, critic_features, temperature)
                metrics["actor_loss"].append(self._finite(actor_loss.item(), "score", data))
                self.actor.optimizer.zero_grad()
                actor_loss.backward()
                self.actor.optimizer.step()
                polyak_update(self.actor.parameters(), self.actor_target.parameters(), 1.0 - self.config.ema_decay)
                metrics["score_target_norm"].append(target_norm.item())
                if self.proposal is not None:
                    proposal_loss, proposal_entropy = self._proposal_loss(data, critic_features, temperature)
                    metrics["proposal_loss"].append(self._finite(proposal_loss.item(), "proposal", data))
                    self.proposal.optimizer.zero_grad()
                    proposal_loss.backward()
                    self.proposal.optimizer.step()
                    metrics["proposal_entropy"].append(proposal_entropy.item())
                    if self.temperature_optimizer is not None:  # SAC's dual: lower T while q_phi is above the target
                        target_entropy = self.temperature_value * self.policy.action_dim
                        temperature_loss = self.log_temperature * (proposal_entropy - target_entropy)
                        self.temperature_optimizer.zero_grad()
                        temperature_loss.backward()
                        self.temperature_optimizer.step()
            if self.critic_target is not None and self._n_updates % self.target_update_interval == 0:
                polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
                # Running BatchNorm statistics are copied, as SAC does (none in an MLP critic).
                polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)
            if self.config.entropy_freq and self._n_updates % self.config.entropy_freq == 0:
                metrics["entropy"].append(self._measure_entropy(data))
            metrics["update_ms"].append(1e3 * (time.perf_counter() - start))

        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/temperature", temperature)
        if self.q_spread is not None:
            self.logger.record("train/q_spread", self.q_spread)
        self.policy.set_temperature(self.temperature_at(self._n_updates))  # acting uses the current temperature
        self.logger.record("train/critic_learning_rate", critic_lr)
        for key, values in metrics.items():
            self.logger.record(f"train/{key}", float(np.mean(values)))

    def _setup_learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        reset_num_timesteps: bool = True,
        tb_log_name: str = "run",
        progress_bar: bool = False,
    ) -> tuple[int, BaseCallback]:
        result = super()._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)
        for key, value in self.dqs_config.items():  # the resolved configuration, as TensorBoard text once per run
            self.logger.record(f"config/{key}", str(value), exclude=("stdout", "log", "json", "csv"))
        return result

    def learn(
        self: SelfDQS,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "DQS",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfDQS:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

    @classmethod
    def load(cls: type[SelfDQS], path: Any, env: GymEnv | None = None, device: th.device | str = "auto",
             custom_objects: dict[str, Any] | None = None, print_system_info: bool = False, force_reset: bool = True,
             **kwargs: Any) -> SelfDQS:  # fmt: skip
        """SB3's load. The policy acts at the temperature stored with its weights (the one source of truth), unless a
        temperature knob is passed (``temperature=``, ``final_temperature=``, ``temperature_anneal_steps=``): then at
        the temperature of the new configuration."""
        if "crossq_critic" in kwargs:
            raise ValueError("crossq_critic changes the critics' layers and cannot change on load: train a new model")
        model = super().load(path, env, device, custom_objects, print_system_info, force_reset, **kwargs)
        if kwargs.keys() & TEMPERATURE_KNOBS:
            model.policy.set_temperature(model.temperature_at(model._n_updates))
        return model

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "actor", "actor_target", "critic", "critic_target", "proposal",
                "own_critic_lr_schedule", "batch_norm_stats", "batch_norm_stats_target", "log_temperature",
                "temperature_optimizer"]  # fmt: skip

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        optimizers = ["actor.optimizer", "critic.optimizer"] + (["proposal.optimizer"] if self.proposal is not None else [])
        if self.temperature_optimizer is None:
            return ["policy", *optimizers], []
        return ["policy", *optimizers, "temperature_optimizer"], ["log_temperature"]
