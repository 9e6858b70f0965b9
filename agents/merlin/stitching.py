"""Merlin-NP noise model (vineetjain96/merlin ``src/components/representations.py`` and
``src/components/trajectory_stitching.py``): nearest-neighbour trajectory stitching in a learned latent space.

A contrastive encoder (InfoNCE on consecutive states) maps observations to 16-d codes, compared by cosine
similarity. Walks go backwards from dataset final states. At each step the walk's current state queries its
nearest other dataset state (the reference asks a ball tree for 2 neighbours, the first being the state itself):
it **jumps** to that state if their cosine similarity is >= ``threshold`` and the neighbour is not at t = 0 (it
needs a predecessor); otherwise it stays. It then steps back one transition along the trajectory it is on. A walk
ends after ``rollout_length`` steps or at a t = 0 state it cannot jump from (the reference drops such walks; we
keep them as shorter episodes, so that with no jumps the walks reproduce the dataset episodes exactly). The desired
goal of a walk is the achieved goal of its start (final) state.

Neighbours come from an exact search: codes are unit vectors, so the Euclidean nearest neighbour is the largest dot
product, computed for all walks at once with chunked matrix products and a max.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch as th
from torch import Tensor, nn
from torch.nn import functional as F

from agents.merlin.fitting import fit_minibatches
from agents.merlin.policies import Normalizer
from agents.merlin.relabel import transition_rows
from core.config import CheckedConfig
from envs.goal_dataset import GoalDataset

#: Similarity scores held in memory at once by the neighbour search (chunk of walks x dataset states).
SEARCH_CHUNK_ELEMENTS = 1 << 24


@dataclass
class StitchingConfig(CheckedConfig):
    """Settings of the Merlin-NP stitching (defaults: those of vineetjain96/merlin)."""

    threshold: float = 0.9999  # jump when the codes' cosine similarity is at least this (reference --stitching-radius)
    epochs: int = 100  # encoder training passes over the (s_t, s_{t+1}) pairs
    batch_size: int = 256  # pairs per InfoNCE step (the other pairs of the batch are the negatives)
    learning_rate: float = 3e-4  # Adam
    hidden_dim: int = 512  # width of the encoder's 3 hidden layers
    latent_dim: int = 16  # size of the codes
    temperature: float = 0.5  # InfoNCE temperature
    rollout_length: int | None = None  # most backward steps per walk; None: the longest dataset episode


@dataclass
class Jumps:
    """Every jump of a stitching run, as dataset observation rows."""

    from_rows: np.ndarray  # (J,) row of the state the walk was at
    to_rows: np.ndarray  # (J,) row of the neighbour it jumped to
    cosines: np.ndarray  # (J,) cosine similarity of their codes


class ContrastiveEncoder(nn.Module):
    """MLP (3 hidden layers) from normalised observations to codes, trained with InfoNCE on (s_t, s_{t+1})."""

    def __init__(self, obs_dim: int, hidden_dim: int = 512, latent_dim: int = 16) -> None:
        super().__init__()
        self.normalizer = Normalizer(obs_dim, clip_range=math.inf)
        self.net = nn.Sequential(
            nn.Linear(obs_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, latent_dim),
        )

    def forward(self, observations: Tensor) -> Tensor:
        """Unit-norm codes of raw observations."""
        return F.normalize(self.net(self.normalizer(observations)), dim=-1)

    def info_nce(self, observations: Tensor, next_observations: Tensor, temperature: float) -> Tensor:
        """Cross-entropy of each s_t picking its own s_{t+1} among the batch's successors (standard InfoNCE)."""
        logits = self(observations) @ self(next_observations).T / temperature
        return F.cross_entropy(logits, th.arange(len(logits), device=logits.device))


def train_encoder(
    dataset: GoalDataset, config: StitchingConfig, generator: th.Generator, device: th.device
) -> ContrastiveEncoder:
    """Fit the encoder on every transition (s_t, s_{t+1}) of ``dataset``."""
    encoder = ContrastiveEncoder(dataset.observations.shape[1], config.hidden_dim, config.latent_dim).to(device)
    encoder.normalizer.fit(dataset.observations)
    observations = th.as_tensor(dataset.observations, dtype=th.float32, device=device)
    rows = th.as_tensor(transition_rows(dataset), device=device)
    fit_minibatches(
        encoder,
        lambda idx: encoder.info_nce(observations[rows[idx]], observations[rows[idx] + 1], config.temperature),
        len(rows),
        config.epochs,
        config.batch_size,
        config.learning_rate,
        generator,
    )
    return encoder


@th.no_grad()
def encode(encoder: ContrastiveEncoder, observations: np.ndarray, device: th.device, chunk: int = 65536) -> Tensor:
    """Codes (N, latent_dim) of all ``observations``, on ``device`` (where the neighbour search then runs)."""
    x = th.as_tensor(observations, dtype=th.float32)
    return th.cat([encoder(part.to(device)) for part in x.split(chunk)])


def nearest_other(codes: Tensor, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the most similar other row of ``codes`` (unit vectors) and their cosine similarity."""
    chunk = max(1, SEARCH_CHUNK_ELEMENTS // len(codes))
    neighbours, cosines = [], []
    for part in np.array_split(rows, math.ceil(len(rows) / chunk)):
        query = th.as_tensor(part, device=codes.device)
        similarity = codes[query] @ codes.T
        similarity[th.arange(len(part), device=codes.device), query] = -math.inf  # not the state itself
        best = similarity.max(dim=1)
        neighbours.append(best.indices.cpu().numpy())
        cosines.append(best.values.cpu().numpy())
    return np.concatenate(neighbours), np.concatenate(cosines)


def stitch(
    dataset: GoalDataset, codes: Tensor, start_episodes: np.ndarray, threshold: float, rollout_length: int
) -> tuple[GoalDataset, Jumps]:
    """Walk backwards from the final states of ``start_episodes`` (one walk each, all vectorised), stitching on
    ``codes`` (unit vectors, one per observation row); returns the walks in forward order and the jumps taken."""
    row_episode = np.repeat(np.arange(dataset.n_episodes), dataset.lengths + 1)
    row_step = np.arange(len(dataset.observations)) - dataset.obs_offsets[row_episode]
    n = len(start_episodes)
    obs_rows = np.full((n, rollout_length + 1), -1)  # obs_rows[w, k]: the k-th state of walk w, counted backwards
    action_rows = np.full((n, rollout_length), -1)
    obs_rows[:, 0] = dataset.obs_index(start_episodes, dataset.lengths[start_episodes])
    n_steps = np.zeros(n, dtype=np.int64)
    active = np.arange(n)
    jumps: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for k in range(rollout_length):
        if len(active) == 0:
            break
        current = obs_rows[active, k]
        neighbour, cosine = nearest_other(codes, current)
        jump = (cosine >= threshold) & (row_step[neighbour] > 0)
        jumps.append((current[jump], neighbour[jump], cosine[jump]))
        position = np.where(jump, neighbour, current)
        moves = row_step[position] > 0
        active, previous = active[moves], position[moves] - 1
        obs_rows[active, k + 1] = previous
        action_rows[active, k] = dataset.action_index(row_episode[previous], row_step[previous])
        n_steps[active] += 1
    obs_order = [obs_rows[w, n_steps[w] :: -1] for w in range(n)]
    action_order = [action_rows[w, n_steps[w] - 1 :: -1] for w in range(n)]
    all_obs, all_actions = np.concatenate(obs_order), np.concatenate(action_order)
    goal_rows = np.repeat(obs_rows[:, 0], n_steps + 1)
    walks = GoalDataset(
        observations=dataset.observations[all_obs],
        achieved_goals=dataset.achieved_goals[all_obs],
        desired_goals=dataset.achieved_goals[goal_rows],
        actions=dataset.actions[all_actions],
        lengths=n_steps,
        dataset_id=dataset.dataset_id,
        env_id=dataset.env_id,
    )
    return walks, Jumps(*(np.concatenate(parts) for parts in zip(*jumps)))


def generate_stitched_data(
    dataset: GoalDataset, config: StitchingConfig, start_episodes: np.ndarray, seed: int, device: th.device
) -> tuple[GoalDataset, dict[str, float]]:
    """Train the encoder on ``dataset`` and stitch one walk per entry of ``start_episodes``.

    Returns the walks and statistics: ``n_jumps``, ``jump_rate`` (jumps per step) and ``mean_length``.
    """
    encoder = train_encoder(dataset, config, th.Generator().manual_seed(seed), device)
    codes = encode(encoder, dataset.observations, device)
    walks, jumps = stitch(
        dataset, codes, start_episodes, config.threshold, config.rollout_length or int(dataset.lengths.max())
    )
    n_jumps = len(jumps.cosines)
    stats = {"n_jumps": float(n_jumps), "jump_rate": n_jumps / walks.n_transitions, "mean_length": float(walks.lengths.mean())}
    return walks, stats
