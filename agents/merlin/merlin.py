"""Merlin (Jain & Ravanbakhsh, ICML 2024): goal-conditioned RL as learning to reverse a diffusion away from goals.

Trajectories that move away from a goal play the forward noising process; a goal- and horizon-conditioned Gaussian
policy learns to undo them by maximum likelihood on hindsight-relabelled (s_i, g, h = j - i) -> a_i samples, one
"denoising step" per env step. The noise model picks the trajectories: the dataset itself (``reverse_play``), a
learned reverse model (``reverse_model``, Merlin-P) or latent nearest-neighbour stitching (``stitching``, Merlin-NP).

``her_ratio`` and ``test_horizon`` were tuned per task and dataset kind in the reference (hard-coded in
vineetjain96/merlin ``src/train_offline.py``); pass a mapping such as ``{"expert": 0.2, "random": 1.0}`` (the
`agents.hyperparams` table does) to select by the kind that the dataset id contains. An id with neither "expert" nor
"random" gets her_ratio 1.0 and test_horizon 1 (the values of the most tasks), with a warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch as th
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule

from agents.merlin.base import OfflineGoalAlgorithm
from agents.merlin.policies import GoalGaussianPolicy
from envs.goal_dataset import GoalDataset

SelfMerlin = TypeVar("SelfMerlin", bound="Merlin")
DATASET_KINDS = ("expert", "random")
#: her_ratio and test_horizon when the dataset kind is unknown.
FALLBACK = {"her_ratio": 1.0, "test_horizon": 1}


def dataset_kind(dataset_id: str) -> str | None:
    """ "expert" or "random" when the dataset id contains it (case-insensitive), else None."""
    matches = [kind for kind in DATASET_KINDS if kind in dataset_id.lower()]
    return matches[0] if len(matches) == 1 else None


def value_for_dataset(value: float | Mapping[str, float], dataset_id: str, name: str) -> float:
    """``value`` itself, or its entry for the dataset's kind when it is a mapping (see the module docstring)."""
    if not isinstance(value, Mapping):
        return value
    kind = dataset_kind(dataset_id)
    if kind in value:
        return value[kind]
    warnings.warn(
        f"Cannot tell whether dataset {dataset_id!r} is {' or '.join(DATASET_KINDS)} to choose {name} from {dict(value)}; "
        f"using {FALLBACK[name]}.",
        stacklevel=3,
    )
    return FALLBACK[name]


class Merlin(OfflineGoalAlgorithm):
    """Merlin: horizon-conditioned goal-reaching policy trained by maximum likelihood on relabelled trajectories.

    :param policy: The policy model ("MultiInputPolicy")
    :param env: The goal env (Dict observations with observation/achieved_goal/desired_goal), or its id
    :param dataset: A `GoalDataset` or a dataset id (loaded lazily through `envs.datasets.load_goal_dataset`)
    :param noise_model: "reverse_play" (Merlin), "reverse_model" (Merlin-P) or "stitching" (Merlin-NP)
    :param her_ratio: Probability of relabelling to a later achieved goal, or a mapping by dataset kind
    :param test_horizon: Horizon input when acting, or a mapping by dataset kind
    :param learning_rate: Adam learning rate (reference 5e-4)
    :param batch_size: Samples per gradient step (reference 512)
    :param max_grad_norm: Gradient-norm clip (reference 1.0)
    :param max_horizon: Only relabel to goals at most this many steps ahead (long episodes); None: any later step
    :param noise_kwargs: Settings of the noise model (`ReverseModelConfig` or `StitchingConfig` fields)
    :param synthetic_ratio: Share of each batch from synthetic data; None: 0.5 with a generating noise model
    :param n_synthetic: Number of synthetic trajectories; None: as many as dataset episodes
    :param cache_dir: Folder of the synthetic-data cache (see `agents.merlin.noise`)
    :param policy_kwargs: Keyword arguments of `GoalGaussianPolicy`
    :param tensorboard_log: TensorBoard log folder (None: no TensorBoard)
    :param verbose: 0 silent, 1 info
    :param seed: Seed of the pseudo-random generators
    :param device: Torch device ("auto", "cpu", "cuda", ...)
    :param _init_setup_model: Build the networks at creation (False when loading)
    """

    def __init__(
        self,
        policy: str | type[GoalGaussianPolicy],
        env: GymEnv | str | None,
        dataset: GoalDataset | str | None = None,
        noise_model: str = "reverse_play",
        her_ratio: float | Mapping[str, float] = 1.0,
        test_horizon: int | Mapping[str, int] = 1,
        learning_rate: float | Schedule = 5e-4,
        batch_size: int = 512,
        max_grad_norm: float = 1.0,
        max_horizon: int | None = None,
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
        dataset_id = dataset if isinstance(dataset, str) else getattr(dataset, "dataset_id", "")
        super().__init__(
            policy,
            env,
            dataset=dataset,
            learning_rate=learning_rate,
            batch_size=batch_size,
            max_grad_norm=max_grad_norm,
            her_ratio=value_for_dataset(her_ratio, dataset_id, "her_ratio"),
            use_horizon=True,
            test_horizon=int(value_for_dataset(test_horizon, dataset_id, "test_horizon")),
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
        self: SelfMerlin,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 500,
        tb_log_name: str = "Merlin",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfMerlin:
        return super().learn(total_timesteps, callback, log_interval, tb_log_name, reset_num_timesteps, progress_bar)
