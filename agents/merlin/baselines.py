"""GCSL and WGCSL on Merlin's data pipeline, so that they can be given the same (synthetic) data.

* GCSL (Ghosh et al., ICLR 2021): maximum likelihood of a_i given (s_i, g = achieved goal at a later step j), with no
  horizon input. Here the Gaussian policy and the uniform upper-triangular pairs of Merlin, her_ratio 1.
* WGCSL (Yang et al., ICLR 2022): GCSL with per-sample weights
  w = gamma^Delta * clip(exp(A), 0, 10) * eps(A), A = (r(ag_{i+1}, g) + 1) + gamma V(s_{i+1}, g) - V(s_i, g),
  eps(A) = 1 if A >= q else 0.05, where the goal sits Delta = j - i - 1 steps after s_{i+1} and q is the
  ``baw_percentile``-th percentile of a queue of recent advantages. As in the reference (``YangRui2015/AWGCSL``,
  ``supervised_sampler.py``, method ``gamma_exp_adv_clip10_baw``): the percentile starts at 0 and rises by
  ``baw_delta`` per update up to ``baw_max`` = 80 (``baw_delta`` 0.15 on Point/Reacher/Sawyer/FetchReach, 0.01 on
  FetchPush/Pick/Slide and HandReach), the queue holds 50,000 advantages, V is learned by TD with a Polyak target
  (polyak 0.9 every ``n_batches`` updates) on the relabelled goals with 20 % of them reset to the episode's goal, and
  the TD target is clipped to [0, 1 / (1 - gamma)]. Unlike the reference, whose policy is deterministic (weighted
  MSE) and whose "V" is Q(s, pi(s, g), g), the policy here is Merlin's Gaussian (weighted NLL) and V(s, g) is a
  state-value network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from stable_baselines3.common.type_aliases import MaybeCallback
from stable_baselines3.common.utils import polyak_update
from torch import Tensor, nn
from torch.nn import functional as F

from agents.merlin.base import GoalConfig, OfflineGoalAlgorithm
from agents.merlin.relabel import GoalBatch

SelfGCSL = TypeVar("SelfGCSL", bound="GCSL")
SelfWGCSL = TypeVar("SelfWGCSL", bound="WGCSL")
#: WGCSL's clip of exp(A) and the weight of samples below the advantage threshold (fixed in the reference).
WEIGHT_CLIP = 10.0
BELOW_THRESHOLD_WEIGHT = 0.05


def wgcsl_weights(advantages: Tensor, offsets: Tensor, gamma: float, threshold: float) -> Tensor:
    """w = gamma^Delta * clip(exp(A), 0, 10) * (1 if A >= threshold else 0.05), elementwise; in [0, 10]."""
    best_advantage = th.where(advantages >= threshold, 1.0, BELOW_THRESHOLD_WEIGHT)
    return gamma**offsets * advantages.exp().clamp(0.0, WEIGHT_CLIP) * best_advantage


class AdvantageQueue:
    """Ring buffer of the most recent advantages, for WGCSL's percentile threshold."""

    def __init__(self, size: int) -> None:
        self.values = np.zeros(size)
        self.n = 0
        self.position = 0

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)[-len(self.values) :]
        index = (self.position + np.arange(len(values))) % len(self.values)
        self.values[index] = values
        self.position = (self.position + len(values)) % len(self.values)
        self.n = min(self.n + len(values), len(self.values))

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.values[: self.n], q))


class GoalValueNetwork(nn.Module):
    """V(s, g): an MLP on the normalised observation and goal."""

    def __init__(self, obs_dim: int, goal_dim: int, net_arch: list[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_dim = obs_dim + goal_dim
        for width in net_arch:
            layers += [nn.Linear(in_dim, width), nn.ReLU()]
            in_dim = width
        self.net = nn.Sequential(*layers, nn.Linear(in_dim, 1))

    def forward(self, normalized_obs: Tensor, normalized_goals: Tensor) -> Tensor:
        return self.net(th.cat([normalized_obs, normalized_goals], dim=1)).squeeze(1)


class GCSL(OfflineGoalAlgorithm):
    """Goal-conditioned supervised learning: Merlin's pipeline with her_ratio 1 and no horizon input.

    Takes `OfflineGoalAlgorithm`'s arguments; its knobs are the fields of `GoalConfig` except ``her_ratio`` and
    ``use_horizon``, which GCSL fixes.
    """

    fixed_knobs: ClassVar[dict[str, Any]] = {"her_ratio": 1.0, "use_horizon": False}

    def learn(
        self: SelfGCSL,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 500,
        tb_log_name: str = "GCSL",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfGCSL:
        return super().learn(total_timesteps, callback, log_interval, tb_log_name, reset_num_timesteps, progress_bar)


@dataclass(frozen=True)
class WGCSLConfig(GoalConfig):
    """GCSL's knobs plus WGCSL's weighting and value learning (module docstring; defaults from the reference)."""

    gamma: float = 0.98
    """Discount of V and of the gamma^Delta weight (reference: 1 - 1/T = 0.98)."""
    tau: float = 0.1
    """Polyak coefficient of the value target (reference: polyak 0.9, i.e. tau 0.1)."""
    target_update_interval: int = 5
    """Update the value target every this many gradient steps (reference: ``n_batches``)."""
    baw_delta: float = 0.15
    """Rise of the advantage percentile per gradient step."""
    baw_max: float = 80.0
    """Largest advantage percentile."""
    advantage_queue_size: int = 50_000
    """Number of recent advantages the percentile is taken over."""
    value_original_goal_ratio: float = 0.2
    """Share of the value update's goals reset to the episode's desired goal."""
    value_net_arch: list[int] = field(default_factory=lambda: [256, 256, 256])
    """Hidden layers of V (same learning rate as the policy)."""


class WGCSL(GCSL):
    """Weighted GCSL: GCSL's likelihood weighted by discount, exponentiated advantage and best-advantage filter.

    Takes GCSL's arguments; its knobs are the fields of `WGCSLConfig`.
    """

    config_class: ClassVar[type[GoalConfig]] = WGCSLConfig
    config: WGCSLConfig
    #: The current advantage percentile of the best-advantage filter; rises by baw_delta per update.
    baw_percentile: float = 0.0

    def _setup_model(self) -> None:
        super()._setup_model()
        obs_dim = self.observation_space["observation"].shape[0]  # type: ignore[index]
        goal_dim = self.observation_space["desired_goal"].shape[0]  # type: ignore[index]
        self.value = GoalValueNetwork(obs_dim, goal_dim, self.config.value_net_arch).to(self.device)
        self.value_target = GoalValueNetwork(obs_dim, goal_dim, self.config.value_net_arch).to(self.device)
        self.value_target.load_state_dict(self.value.state_dict())
        self.value_target.requires_grad_(False)
        self.value_optimizer = th.optim.Adam(self.value.parameters(), lr=self.lr_schedule(1))
        self.advantages = AdvantageQueue(self.config.advantage_queue_size)

    def _optimizers(self) -> list[th.optim.Optimizer]:
        return [self.policy.optimizer, self.value_optimizer]

    def _shifted_reward(self, achieved_goals: np.ndarray, goals: np.ndarray) -> Tensor:
        """r + 1 from the env's ``compute_reward`` (sparse -1/0 rewards become 0/1)."""
        assert self.env is not None
        rewards = self.env.env_method("compute_reward", achieved_goals, goals, None, indices=0)[0]
        return self.to_tensor(np.asarray(rewards)) + 1.0

    def _values(self, network: GoalValueNetwork, observations: Tensor, goals: Tensor) -> Tensor:
        return network(self.policy.obs_normalizer(observations), self.policy.goal_normalizer(goals))

    def _sample_weights(self, batch: GoalBatch) -> Tensor:
        obs, next_obs = self.to_tensor(batch.observations), self.to_tensor(batch.next_observations)
        goals = self.to_tensor(batch.goals)
        with th.no_grad():
            reward = self._shifted_reward(batch.next_achieved_goals, batch.goals)
            advantages = (
                reward + self.config.gamma * self._values(self.value, next_obs, goals) - self._values(self.value, obs, goals)
            )
        self.advantages.add(advantages.cpu().numpy())
        self.baw_percentile = min(self.baw_percentile + self.config.baw_delta, self.config.baw_max)
        threshold = self.advantages.percentile(self.baw_percentile)
        weights = wgcsl_weights(advantages, self.to_tensor(batch.offsets), self.config.gamma, threshold)
        self._metrics["advantage"].append(advantages.mean().item())
        self._metrics["weight"].append(weights.mean().item())
        self._metrics["baw_threshold"].append(threshold)
        return weights

    def _value_step(self, batch: GoalBatch) -> None:
        """TD(0) on V with 20 % of the goals reset to the episode's goal; clipped target from the Polyak copy."""
        original = self._rng.random(len(batch)) < self.config.value_original_goal_ratio
        goals = np.where(original[:, None], batch.original_goals, batch.goals)
        obs, next_obs, goals_t = (self.to_tensor(x) for x in (batch.observations, batch.next_observations, goals))
        with th.no_grad():
            reward = self._shifted_reward(batch.next_achieved_goals, goals)
            gamma = self.config.gamma
            target = (reward + gamma * self._values(self.value_target, next_obs, goals_t)).clamp(0.0, 1.0 / (1.0 - gamma))
        loss = F.mse_loss(self._values(self.value, obs, goals_t), target)
        self._optimize(loss, self.value_optimizer, list(self.value.parameters()), "value")
        self._metrics["value_loss"].append(loss.item())
        if (self._n_updates + 1) % self.config.target_update_interval == 0:
            polyak_update(self.value.parameters(), self.value_target.parameters(), self.config.tau)

    def _gradient_step(self, batch: GoalBatch) -> None:
        super()._gradient_step(batch)  # the policy, weighted with the advantages of the current V
        self._value_step(batch)

    def learn(
        self: SelfWGCSL,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 500,
        tb_log_name: str = "WGCSL",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfWGCSL:
        return super().learn(total_timesteps, callback, log_interval, tb_log_name, reset_num_timesteps, progress_bar)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "advantages"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "policy.optimizer", "value", "value_target", "value_optimizer"], []
