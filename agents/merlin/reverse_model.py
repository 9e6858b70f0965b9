"""Merlin-P noise model (vineetjain96/merlin ``src/components/dynamics_model.py``): a learned reverse model generates
trajectories backwards from goal states.

The state is x = [observation, achieved_goal] (so that synthetic data carries its own achieved goals without a
task-specific map from observations to goals, which the reference hard-codes per env).

* Reverse dynamics: a 2-layer GRU reads (x_{t+1}, a_t) and predicts the normalised Delta_t = x_{t+1} - x_t, so that
  x_t = x_{t+1} - Delta_t. A training sequence is an episode read **backwards** from its final state: step k feeds
  (x_{T-k}, a_{T-k-1}), the order in which rollouts query it, with the hidden state carried along. (The reference
  trains the GRU on forward-ordered sequences but carries the hidden state backwards at rollout time.) Inputs and
  targets are standardised per dimension over the whole dataset; the reference standardises per time step, which
  needs equal-length episodes.
* Reverse behaviour model: a BCQ-style conditional VAE of a_t given x_{t+1} (latent 2|A|, KL weight 0.5), decoded
  with z ~ N(0, 1e-3^2) clipped to [-0.5, 0.5].

Rollouts start at dataset final states and take ``rollout_length`` backward steps; trajectories with NaN or inf are
dropped; the rest are reversed into forward order with the start state's achieved goal as desired goal.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from torch import Tensor, nn
from torch.nn import functional as F

from agents.merlin.fitting import fit_minibatches
from agents.merlin.policies import Normalizer
from agents.merlin.relabel import transition_rows
from core.config import CheckedConfig
from envs.goal_dataset import GoalDataset

#: BCQ clips decoder latents to this range.
LATENT_CLIP = 0.5
#: Std floor of the Delta standardisation (the reference adds 1e-6), so that tiny state changes stay resolvable; the
#: inputs keep the policy's floor, so that dimensions constant in the data cannot blow up in rollouts.
DELTA_MIN_STD = 1e-6
#: `generate_reverse_model_data` warns when the dynamics' error ratio (see `dynamics_error_ratio`) exceeds this.
WARN_ERROR_RATIO = 0.5


@dataclass
class ReverseModelConfig(CheckedConfig):
    """Settings of the Merlin-P reverse model (defaults: those of vineetjain96/merlin)."""

    epochs: int = 100  # training passes over the data, for the dynamics and for the VAE
    batch_size: int = 256  # sequences (dynamics) or transitions (VAE) per gradient step
    learning_rate: float = 1e-3  # Adam, both models
    hidden_dim: int = 256  # GRU units per layer and VAE layer width
    n_layers: int = 2  # GRU layers
    kl_weight: float = 0.5  # weight of the VAE's KL term
    latent_noise_std: float = 1e-3  # std of the decoder's latent z when generating
    rollout_length: int | None = None  # backward steps per rollout; None: the longest dataset episode (50 on the benchmark)
    rollout_batch_size: int = 1024  # rollouts generated together


class ReverseDynamics(nn.Module):
    """GRU over backward-ordered (x_{t+1}, a_t) predicting the normalised Delta_t (inputs normalised inside)."""

    def __init__(self, state_dim: int, action_dim: int, hidden_dim: int, n_layers: int) -> None:
        super().__init__()
        self.state_normalizer = Normalizer(state_dim, clip_range=math.inf)
        self.action_normalizer = Normalizer(action_dim, clip_range=math.inf)
        self.delta_normalizer = Normalizer(state_dim, clip_range=math.inf, min_std=DELTA_MIN_STD)
        self.gru = nn.GRU(state_dim + action_dim, hidden_dim, num_layers=n_layers, batch_first=True)
        self.head = nn.Linear(hidden_dim, state_dim)

    def forward(self, next_states: Tensor, actions: Tensor, hidden: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Normalised Delta for sequences (N, L, .) of raw x_{t+1} and a_t; returns it and the final hidden state."""
        inputs = th.cat([self.state_normalizer(next_states), self.action_normalizer(actions)], dim=-1)
        features, hidden = self.gru(inputs, hidden)
        return self.head(features), hidden


class ReverseBehaviourVAE(nn.Module):
    """BCQ's conditional VAE of an action given the state it leads to (actions mapped into the action box)."""

    def __init__(self, state_dim: int, action_space: spaces.Box, hidden_dim: int) -> None:
        super().__init__()
        action_dim = action_space.shape[0]
        self.latent_dim = 2 * action_dim
        self.state_normalizer = Normalizer(state_dim, clip_range=math.inf)
        self.encoder = nn.Sequential(
            nn.Linear(state_dim + action_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim), nn.ReLU()
        )
        self.mean = nn.Linear(hidden_dim, self.latent_dim)
        self.log_std = nn.Linear(hidden_dim, self.latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(state_dim + self.latent_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, action_dim),
        )
        low, high = th.as_tensor(action_space.low, dtype=th.float32), th.as_tensor(action_space.high, dtype=th.float32)
        self.register_buffer("action_centre", (high + low) / 2)
        self.register_buffer("action_half_range", (high - low) / 2)

    def decode(self, next_states: Tensor, z: Tensor) -> Tensor:
        out = self.decoder(th.cat([self.state_normalizer(next_states), z], dim=-1))
        return self.action_centre + self.action_half_range * th.tanh(out)

    def loss(self, next_states: Tensor, actions: Tensor, kl_weight: float) -> Tensor:
        """Reconstruction MSE + kl_weight * KL(q(z | x', a) || N(0, I)) (BCQ's form, means over all entries)."""
        h = self.encoder(th.cat([self.state_normalizer(next_states), actions], dim=-1))
        mean, std = self.mean(h), self.log_std(h).clamp(-4.0, 15.0).exp()
        recon = self.decode(next_states, mean + std * th.randn_like(std))
        kl = -0.5 * (1 + th.log(std.pow(2)) - mean.pow(2) - std.pow(2)).mean()
        return F.mse_loss(recon, actions) + kl_weight * kl


def _states(dataset: GoalDataset) -> np.ndarray:
    """x = [observation, achieved_goal] for every observation row."""
    return np.concatenate([dataset.observations, dataset.achieved_goals], axis=1)


class BackwardSequences(NamedTuple):
    """Every episode's last ``rollout_length`` transitions read backwards (step k is t = T_e − 1 − k), padded."""

    next_states: np.ndarray  # (episodes, rollout_length, state_dim): x_{t+1}, the GRU's input
    actions: np.ndarray  # (episodes, rollout_length, action_dim): a_t
    states: np.ndarray  # (episodes, rollout_length, state_dim): x_t, what the reverse dynamics predicts
    mask: np.ndarray  # (episodes, rollout_length): False where t < 0 (padding of short episodes)


def backward_sequences(dataset: GoalDataset, rollout_length: int, episodes: np.ndarray | None = None) -> BackwardSequences:
    """The training sequences of the reverse dynamics (of ``episodes``, default all), in rollout order."""
    states = _states(dataset)
    episodes = np.arange(dataset.n_episodes) if episodes is None else np.asarray(episodes)
    t = dataset.lengths[episodes, None] - 1 - np.arange(rollout_length)[None, :]
    mask = t >= 0
    t = np.maximum(t, 0)
    rows = dataset.obs_index(episodes[:, None], t)
    return BackwardSequences(states[rows + 1], dataset.actions[dataset.action_index(episodes[:, None], t)], states[rows], mask)


def train_reverse_dynamics(
    dataset: GoalDataset, config: ReverseModelConfig, rollout_length: int, generator: th.Generator, device: th.device
) -> ReverseDynamics:
    """Fit the GRU on every episode's last min(T, rollout_length) transitions, read backwards (masked MSE)."""
    states, actions = _states(dataset), dataset.actions
    model = ReverseDynamics(states.shape[1], actions.shape[1], config.hidden_dim, config.n_layers).to(device)
    transitions = transition_rows(dataset)
    model.state_normalizer.fit(states)
    model.action_normalizer.fit(actions)
    model.delta_normalizer.fit(states[transitions + 1] - states[transitions])
    sequences = backward_sequences(dataset, rollout_length)

    def tensor(x: np.ndarray) -> Tensor:
        return th.as_tensor(x, dtype=th.float32, device=device)

    next_states, step_actions = tensor(sequences.next_states), tensor(sequences.actions)
    targets = model.delta_normalizer(tensor(sequences.next_states - sequences.states))
    weights = tensor(sequences.mask)

    def loss_fn(indices: Tensor) -> Tensor:
        predictions, _ = model(next_states[indices], step_actions[indices])
        squared = (predictions - targets[indices]).pow(2).mean(dim=-1)
        return (squared * weights[indices]).sum() / weights[indices].sum()

    fit_minibatches(model, loss_fn, dataset.n_episodes, config.epochs, config.batch_size, config.learning_rate, generator)
    return model


@th.no_grad()
def dynamics_error_ratio(model: ReverseDynamics, dataset: GoalDataset, rollout_length: int, n_episodes: int = 256) -> float:
    """Squared error of the reverse dynamics' x_t over the backward sequences of up to ``n_episodes`` episodes (evenly
    spaced, teacher-forced as in training), divided by that of predicting no motion (x_t = x_{t+1}). About 0 for an
    accurate model, about 1 for one that learned nothing: its rollouts are then no trajectories of the environment."""
    episodes = np.unique(np.linspace(0, dataset.n_episodes - 1, min(n_episodes, dataset.n_episodes)).astype(int))
    sequences = backward_sequences(dataset, rollout_length, episodes)
    device = next(model.parameters()).device
    next_states = th.as_tensor(sequences.next_states, dtype=th.float32, device=device)
    deltas, _ = model(next_states, th.as_tensor(sequences.actions, dtype=th.float32, device=device))
    predicted = (next_states - model.delta_normalizer.unnormalize(deltas)).cpu().numpy()
    mask = sequences.mask
    model_error = np.square(predicted - sequences.states)[mask].sum()
    copy_error = np.square(sequences.next_states - sequences.states)[mask].sum()
    return float(model_error / max(copy_error, np.finfo(np.float64).tiny))


def train_reverse_behaviour(
    dataset: GoalDataset, action_space: spaces.Box, config: ReverseModelConfig, generator: th.Generator, device: th.device
) -> ReverseBehaviourVAE:
    """Fit the VAE of a_t given x_{t+1} on every transition."""
    states = _states(dataset)
    model = ReverseBehaviourVAE(states.shape[1], action_space, config.hidden_dim).to(device)
    model.state_normalizer.fit(states)
    next_states = th.as_tensor(states[transition_rows(dataset) + 1], dtype=th.float32, device=device)
    actions = th.as_tensor(dataset.actions, dtype=th.float32, device=device)
    fit_minibatches(
        model,
        lambda idx: model.loss(next_states[idx], actions[idx], config.kl_weight),
        len(actions),
        config.epochs,
        config.batch_size,
        config.learning_rate,
        generator,
    )
    return model


@th.no_grad()
def reverse_rollouts(
    dynamics: ReverseDynamics,
    behaviour: ReverseBehaviourVAE,
    start_states: Tensor,
    rollout_length: int,
    latent_noise_std: float,
    generator: th.Generator,
) -> tuple[Tensor, Tensor]:
    """Backward rollouts from ``start_states`` (B, state_dim): states (B, L + 1, .) and actions (B, L, .), both in
    forward order (the start states last)."""
    states, actions = [start_states], []
    x, hidden = start_states, None
    for _ in range(rollout_length):
        z = th.randn(len(x), behaviour.latent_dim, generator=generator).to(x) * latent_noise_std
        a = behaviour.decode(x, z.clamp(-LATENT_CLIP, LATENT_CLIP))
        delta, hidden = dynamics(x[:, None], a[:, None], hidden)
        x = x - dynamics.delta_normalizer.unnormalize(delta[:, 0])
        states.append(x)
        actions.append(a)
    return th.stack(states[::-1], dim=1), th.stack(actions[::-1], dim=1)


def generate_reverse_model_data(
    dataset: GoalDataset,
    action_space: spaces.Box,
    config: ReverseModelConfig,
    start_episodes: np.ndarray,
    seed: int,
    device: th.device,
) -> tuple[GoalDataset, dict[str, float]]:
    """Train the reverse model on ``dataset`` and roll it out backwards from the final states of ``start_episodes``.

    Returns the finite trajectories as a `GoalDataset` and statistics (``n_dropped``: rollouts with NaN/inf;
    ``dynamics_error_ratio``: see `dynamics_error_ratio`, with a warning above `WARN_ERROR_RATIO`).
    """
    generator = th.Generator().manual_seed(seed)
    rollout_length = config.rollout_length or int(dataset.lengths.max())
    dynamics = train_reverse_dynamics(dataset, config, rollout_length, generator, device)
    error_ratio = dynamics_error_ratio(dynamics, dataset, rollout_length)
    if error_ratio > WARN_ERROR_RATIO:
        warnings.warn(
            f"The Merlin-P reverse dynamics predicts x_t with {error_ratio:.0%} of the squared error of predicting no "
            f"motion on its own training episodes ({config.epochs} epochs, width {config.hidden_dim}): its rollouts will "
            "hardly be trajectories of the environment and may hurt the policy. Train it longer or wider "
            "(noise_kwargs={'epochs': ..., 'hidden_dim': ...}).",
            stacklevel=2,
        )
    behaviour = train_reverse_behaviour(dataset, action_space, config, generator, device)
    all_states = _states(dataset)
    obs_dim = dataset.observations.shape[1]
    trajectories, action_seqs = [], []
    for starts in np.array_split(start_episodes, max(1, math.ceil(len(start_episodes) / config.rollout_batch_size))):
        x0 = th.as_tensor(all_states[dataset.obs_index(starts, dataset.lengths[starts])], dtype=th.float32, device=device)
        states, actions = reverse_rollouts(dynamics, behaviour, x0, rollout_length, config.latent_noise_std, generator)
        trajectories.append(states.cpu().numpy())
        action_seqs.append(actions.cpu().numpy())
    states, actions = np.concatenate(trajectories), np.concatenate(action_seqs)
    finite = np.isfinite(states).all(axis=(1, 2)) & np.isfinite(actions).all(axis=(1, 2))
    states, actions = states[finite], actions[finite]
    if len(states) == 0:
        raise FloatingPointError("Every reverse-model rollout diverged (NaN/inf); train longer or shorten rollout_length.")
    goals = np.repeat(states[:, -1:, obs_dim:], rollout_length + 1, axis=1)
    synthetic = GoalDataset(
        observations=states[..., :obs_dim].reshape(-1, obs_dim),
        achieved_goals=states[..., obs_dim:].reshape(-1, goals.shape[-1]),
        desired_goals=goals.reshape(-1, goals.shape[-1]),
        actions=actions.reshape(-1, actions.shape[-1]),
        lengths=np.full(len(states), rollout_length),
        dataset_id=dataset.dataset_id,
        env_id=dataset.env_id,
    )
    return synthetic, {"n_dropped": float((~finite).sum()), "dynamics_error_ratio": error_ratio}
