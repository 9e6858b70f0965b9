"""Goal- and horizon-conditioned Gaussian policy of Merlin, GCSL and WGCSL (class ``Policy`` of vineetjain96/merlin
``src/train_offline.py``), with its normalisers.

The policy maps concat(norm(observation), norm(desired_goal), emb(h)) through an MLP to a diagonal Gaussian over
actions in the env's own units: mean = tanh(mu) mapped onto the action box, std = softplus(.) + 1e-5. Training
maximises log pi(a | s, g, h); acting uses the mean (deterministic) or a sample, with h fixed to ``test_horizon``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import Tensor, nn
from torch.distributions import Independent, Normal
from torch.nn import functional as F

from core.networks import SinusoidalEmbedding

#: Keys every goal-conditioned observation must have (gymnasium-robotics GoalEnv convention).
GOAL_KEYS = ("observation", "achieved_goal", "desired_goal")
#: Floor of the normalisers' std, as in the HER normaliser the reference ports (eps = 1e-2).
NORMALIZER_MIN_STD = 1e-2
#: Added to softplus(.) so that the policy's std never reaches zero (as in the reference's ``Policy``).
MIN_STD = 1e-5


def check_goal_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> None:
    """Raise a ValueError unless the spaces are a goal-conditioned Dict of flat Boxes and a bounded Box of actions."""
    if not isinstance(observation_space, spaces.Dict):
        raise ValueError(
            f"Goal-conditioned algorithms need a Dict observation space with keys {', '.join(GOAL_KEYS)} "
            f"(a gymnasium-robotics style GoalEnv), got {observation_space}."
        )
    missing = [key for key in GOAL_KEYS if key not in observation_space.spaces]
    if missing:
        raise ValueError(
            f"The observation space lacks the goal key(s) {', '.join(missing)}; it has {', '.join(observation_space.spaces)}."
        )
    for key in GOAL_KEYS:
        space = observation_space[key]
        if not isinstance(space, spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"observation[{key!r}] must be a flat Box (vector), got {space}.")
    if observation_space["achieved_goal"].shape != observation_space["desired_goal"].shape:
        raise ValueError("achieved_goal and desired_goal must have the same shape.")
    if not isinstance(action_space, spaces.Box) or len(action_space.shape) != 1:
        raise ValueError(f"Goal-conditioned algorithms need a flat Box action space, got {action_space}.")
    if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
        raise ValueError(f"The action space needs finite bounds, got low={action_space.low}, high={action_space.high}.")


class Normalizer(nn.Module):
    """Fixed per-dimension standardisation clip((x - mean) / std, -clip, clip), fitted once from data.

    Plain torch (no MPI, unlike the reference). The statistics are buffers, so they travel with the policy's
    state dict through save/load; ``fitted`` tells whether `fit` ran.

    :param dim: Size of the vectors
    :param clip_range: Normalised values are clipped to [-clip_range, clip_range]
    :param min_std: Floor of the std (the policy's default is the HER normaliser's 1e-2)
    """

    def __init__(self, dim: int, clip_range: float = 5.0, min_std: float = NORMALIZER_MIN_STD) -> None:
        super().__init__()
        self.clip_range = float(clip_range)
        self.min_std = min_std
        self.register_buffer("mean", th.zeros(dim))
        self.register_buffer("std", th.ones(dim))
        self.register_buffer("fitted", th.tensor(False))

    def fit(self, data: np.ndarray) -> None:
        """Set mean and std (floored at ``min_std``) from the rows of ``data``."""
        data = np.asarray(data, dtype=np.float64)
        self.mean.copy_(th.as_tensor(data.mean(axis=0)))
        self.std.copy_(th.as_tensor(np.maximum(data.std(axis=0), self.min_std)))
        self.fitted.fill_(True)

    def forward(self, x: Tensor) -> Tensor:
        return ((x - self.mean) / self.std).clamp(-self.clip_range, self.clip_range)

    def unnormalize(self, x: Tensor) -> Tensor:
        """Inverse of `forward` for values inside the clip range."""
        return x * self.std + self.mean


class GoalGaussianPolicy(BasePolicy):
    """Diagonal Gaussian pi(a | s, g, h) on concat(norm(s), norm(g), emb(h)) (the reference's ``Policy``).

    :param observation_space: Dict space with ``observation``, ``achieved_goal`` and ``desired_goal``
    :param action_space: Bounded Box of actions
    :param lr_schedule: Learning-rate schedule (the optimiser's initial rate)
    :param net_arch: Hidden layer sizes of the MLP (reference: 3 x 256)
    :param activation_fn: Activation of the hidden layers
    :param use_horizon: Condition on the horizon h (Merlin); False drops the embedding input (GCSL, WGCSL)
    :param test_horizon: The horizon fed to the network when acting
    :param horizon_embedding_dim: Size of the sinusoidal horizon embedding
    :param horizon_max_period: Longest period of that embedding (the reference uses the episode length, 50)
    :param clip_range: The normalisers clip to [-clip_range, clip_range]
    :param optimizer_class: Optimiser of the network
    :param optimizer_kwargs: Its keyword arguments, excluding the learning rate
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        use_horizon: bool = True,
        test_horizon: int = 1,
        horizon_embedding_dim: int = 32,
        horizon_max_period: float = 50.0,
        clip_range: float = 5.0,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(observation_space, action_space, optimizer_class=optimizer_class, optimizer_kwargs=optimizer_kwargs)
        check_goal_spaces(observation_space, action_space)
        self.net_arch = [256, 256, 256] if net_arch is None else list(net_arch)
        self.activation_fn = activation_fn
        self.use_horizon = use_horizon
        self.test_horizon = int(test_horizon)
        self.horizon_embedding_dim = horizon_embedding_dim
        self.horizon_max_period = horizon_max_period
        self.clip_range = clip_range
        obs_dim = observation_space["observation"].shape[0]
        goal_dim = observation_space["desired_goal"].shape[0]
        self.action_dim = action_space.shape[0]
        self.obs_normalizer = Normalizer(obs_dim, clip_range)
        self.goal_normalizer = Normalizer(goal_dim, clip_range)
        self.horizon_embedding = SinusoidalEmbedding(horizon_embedding_dim, max_period=horizon_max_period)
        layers: list[nn.Module] = []
        in_dim = obs_dim + goal_dim + (horizon_embedding_dim if use_horizon else 0)
        for width in self.net_arch:
            layers += [nn.Linear(in_dim, width), activation_fn()]
            in_dim = width
        layers.append(nn.Linear(in_dim, 2 * self.action_dim))
        self.net = nn.Sequential(*layers)
        low, high = th.as_tensor(action_space.low, dtype=th.float32), th.as_tensor(action_space.high, dtype=th.float32)
        self.register_buffer("action_centre", (high + low) / 2, persistent=False)
        self.register_buffer("action_half_range", (high - low) / 2, persistent=False)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        # Not BaseModel's: this policy takes no features extractor, so policy.save() / load() round-trips.
        return dict(
            observation_space=self.observation_space,
            action_space=self.action_space,
            lr_schedule=self._dummy_schedule,
            net_arch=self.net_arch,
            activation_fn=self.activation_fn,
            use_horizon=self.use_horizon,
            test_horizon=self.test_horizon,
            horizon_embedding_dim=self.horizon_embedding_dim,
            horizon_max_period=self.horizon_max_period,
            clip_range=self.clip_range,
            optimizer_class=self.optimizer_class,
            optimizer_kwargs=self.optimizer_kwargs,
        )

    def fit_normalizers(self, observations: np.ndarray, goals: np.ndarray) -> None:
        """Fit the observation and goal normalisers once, from all training observations and goals."""
        self.obs_normalizer.fit(observations)
        self.goal_normalizer.fit(goals)

    def distribution(self, observations: Tensor, goals: Tensor, horizons: Tensor) -> Independent:
        """pi(. | s, g, h) for row-aligned raw observations (N, obs_dim), goals (N, goal_dim) and horizons (N,)."""
        inputs = [self.obs_normalizer(observations), self.goal_normalizer(goals)]
        if self.use_horizon:
            inputs.append(self.horizon_embedding(horizons.float()))
        mu, pre_std = self.net(th.cat(inputs, dim=1)).chunk(2, dim=1)
        mean = self.action_centre + self.action_half_range * th.tanh(mu)
        # No argument validation: it costs time every step, and NaNs are caught (and explained) at the loss.
        return Independent(Normal(mean, F.softplus(pre_std) + MIN_STD, validate_args=False), 1, validate_args=False)

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> Tensor:
        return self._predict(obs, deterministic)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> Tensor:
        assert isinstance(observation, dict)
        obs, goal = observation["observation"].float(), observation["desired_goal"].float()
        horizons = th.full((len(obs),), float(self.test_horizon), device=obs.device)
        dist = self.distribution(obs, goal, horizons)
        return dist.mean if deterministic else dist.sample()


MultiInputPolicy = GoalGaussianPolicy
