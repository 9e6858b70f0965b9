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

from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch as th
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import polyak_update
from torch import Tensor, nn
from torch.nn import functional as F

from agents.merlin.base import OfflineGoalAlgorithm
from agents.merlin.policies import GoalGaussianPolicy
from agents.merlin.relabel import GoalBatch
from envs.goal_dataset import GoalDataset

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

    :param policy: The policy model ("MultiInputPolicy")
    :param env: The goal env, or its id
    :param dataset: A `GoalDataset` or a dataset id (loaded lazily)
    :param learning_rate: Adam learning rate
    :param batch_size: Samples per gradient step
    :param max_grad_norm: Gradient-norm clip
    :param max_horizon: Only relabel to goals at most this many steps ahead; None: any later step
    :param noise_model: Noise model whose synthetic data is mixed in ("reverse_play": none)
    :param noise_kwargs: Settings of the noise model
    :param synthetic_ratio: Share of each batch from synthetic data; None: 0.5 with a generating noise model
    :param n_synthetic: Number of synthetic trajectories; None: as many as dataset episodes
    :param cache_dir: Folder of the synthetic-data cache
    :param policy_kwargs: Keyword arguments of `GoalGaussianPolicy`
    :param tensorboard_log: TensorBoard log folder (None: no TensorBoard)
    :param verbose: 0 silent, 1 info
    :param seed: Seed of the pseudo-random generators
    :param device: Torch device
    :param _init_setup_model: Build the networks at creation (False when loading)
    """

    def __init__(
        self,
        policy: str | type[GoalGaussianPolicy],
        env: GymEnv | str | None,
        dataset: GoalDataset | str | None = None,
        learning_rate: float | Schedule = 5e-4,
        batch_size: int = 512,
        max_grad_norm: float = 1.0,
        max_horizon: int | None = None,
        noise_model: str = "reverse_play",
        noise_kwargs: dict[str, Any] | None = None,
        synthetic_ratio: float | None = None,
        n_synthetic: int | None = None,
        cache_dir: str | Path | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        tensorboard_log: str | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        super().__init__(
            policy,
            env,
            dataset=dataset,
            learning_rate=learning_rate,
            batch_size=batch_size,
            max_grad_norm=max_grad_norm,
            her_ratio=1.0,
            use_horizon=False,
            max_horizon=max_horizon,
            noise_model=noise_model,
            noise_kwargs=noise_kwargs,
            synthetic_ratio=synthetic_ratio,
            n_synthetic=n_synthetic,
            cache_dir=cache_dir,
            policy_kwargs=policy_kwargs,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=_init_setup_model,
        )

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


class WGCSL(GCSL):
    """Weighted GCSL: GCSL's likelihood weighted by discount, exponentiated advantage and best-advantage filter.

    Takes GCSL's arguments, plus:

    :param gamma: Discount of V and of the gamma^Delta weight (reference: 1 - 1/T = 0.98)
    :param tau: Polyak coefficient of the value target (reference: polyak 0.9, i.e. tau 0.1)
    :param target_update_interval: Update the value target every this many gradient steps (reference: ``n_batches``)
    :param baw_delta: Rise of the advantage percentile per gradient step
    :param baw_max: Largest advantage percentile
    :param advantage_queue_size: Number of recent advantages the percentile is taken over
    :param value_original_goal_ratio: Share of the value update's goals reset to the episode's desired goal
    :param value_net_arch: Hidden layers of V (same learning rate as the policy)
    """

    def __init__(
        self,
        policy: str | type[GoalGaussianPolicy],
        env: GymEnv | str | None,
        dataset: GoalDataset | str | None = None,
        learning_rate: float | Schedule = 5e-4,
        batch_size: int = 512,
        max_grad_norm: float = 1.0,
        gamma: float = 0.98,
        tau: float = 0.1,
        target_update_interval: int = 5,
        baw_delta: float = 0.15,
        baw_max: float = 80.0,
        advantage_queue_size: int = 50_000,
        value_original_goal_ratio: float = 0.2,
        value_net_arch: list[int] | None = None,
        max_horizon: int | None = None,
        noise_model: str = "reverse_play",
        noise_kwargs: dict[str, Any] | None = None,
        synthetic_ratio: float | None = None,
        n_synthetic: int | None = None,
        cache_dir: str | Path | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        tensorboard_log: str | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        self.gamma = gamma
        self.tau = tau
        self.target_update_interval = target_update_interval
        self.baw_delta = baw_delta
        self.baw_max = baw_max
        self.advantage_queue_size = advantage_queue_size
        self.value_original_goal_ratio = value_original_goal_ratio
        self.value_net_arch = [256, 256, 256] if value_net_arch is None else list(value_net_arch)
        self.baw_percentile = 0.0
        super().__init__(
            policy,
            env,
            dataset=dataset,
            learning_rate=learning_rate,
            batch_size=batch_size,
            max_grad_norm=max_grad_norm,
            max_horizon=max_horizon,
            noise_model=noise_model,
            noise_kwargs=noise_kwargs,
            synthetic_ratio=synthetic_ratio,
            n_synthetic=n_synthetic,
            cache_dir=cache_dir,
            policy_kwargs=policy_kwargs,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=_init_setup_model,
        )

    def _setup_model(self) -> None:
        super()._setup_model()
        obs_dim = self.observation_space["observation"].shape[0]  # type: ignore[index]
        goal_dim = self.observation_space["desired_goal"].shape[0]  # type: ignore[index]
        self.value = GoalValueNetwork(obs_dim, goal_dim, self.value_net_arch).to(self.device)
        self.value_target = GoalValueNetwork(obs_dim, goal_dim, self.value_net_arch).to(self.device)
        self.value_target.load_state_dict(self.value.state_dict())
        self.value_target.requires_grad_(False)
        self.value_optimizer = th.optim.Adam(self.value.parameters(), lr=self.lr_schedule(1))
        self.advantages = AdvantageQueue(self.advantage_queue_size)

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
            advantages = reward + self.gamma * self._values(self.value, next_obs, goals) - self._values(self.value, obs, goals)
        self.advantages.add(advantages.cpu().numpy())
        self.baw_percentile = min(self.baw_percentile + self.baw_delta, self.baw_max)
        threshold = self.advantages.percentile(self.baw_percentile)
        weights = wgcsl_weights(advantages, self.to_tensor(batch.offsets), self.gamma, threshold)
        self._metrics["advantage"].append(advantages.mean().item())
        self._metrics["weight"].append(weights.mean().item())
        self._metrics["baw_threshold"].append(threshold)
        return weights

    def _value_step(self, batch: GoalBatch) -> None:
        """TD(0) on V with 20 % of the goals reset to the episode's goal; clipped target from the Polyak copy."""
        original = self._rng.random(len(batch)) < self.value_original_goal_ratio
        goals = np.where(original[:, None], batch.original_goals, batch.goals)
        obs, next_obs, goals_t = (self.to_tensor(x) for x in (batch.observations, batch.next_observations, goals))
        with th.no_grad():
            reward = self._shifted_reward(batch.next_achieved_goals, goals)
            target = (reward + self.gamma * self._values(self.value_target, next_obs, goals_t)).clamp(
                0.0, 1.0 / (1.0 - self.gamma)
            )
        loss = F.mse_loss(self._values(self.value, obs, goals_t), target)
        self._optimize(loss, self.value_optimizer, list(self.value.parameters()), "value")
        self._metrics["value_loss"].append(loss.item())
        if (self._n_updates + 1) % self.target_update_interval == 0:
            polyak_update(self.value.parameters(), self.value_target.parameters(), self.tau)

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
