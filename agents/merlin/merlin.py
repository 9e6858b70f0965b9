"""Merlin (Jain & Ravanbakhsh, ICML 2024): goal-conditioned RL as learning to reverse a diffusion away from goals.

Trajectories that move away from a goal play the forward noising process; a goal- and horizon-conditioned Gaussian
policy learns to undo them by maximum likelihood on hindsight-relabelled (s_i, g, h = j - i) -> a_i samples, one
"denoising step" per env step. The noise model picks the trajectories: the dataset itself (``reverse_play``), a
learned reverse model (``reverse_model``, Merlin-P) or latent nearest-neighbour stitching (``stitching``, Merlin-NP).

``her_ratio`` and ``test_horizon`` were tuned per task and dataset kind in the reference (hard-coded in
vineetjain96/merlin ``src/train_offline.py``); pass a mapping such as ``{"expert": 0.2, "random": 1.0}`` (the
`runner.hyperparams` table does) to select by the kind that the dataset id contains. An id with neither "expert" nor
"random" gets her_ratio 1.0 and test_horizon 1 (the values of the most tasks), with a warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

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

    Its knobs are the fields of `GoalConfig` (``noise_model``, ``her_ratio``, ``test_horizon``, ``batch_size``, ...);
    ``her_ratio`` and ``test_horizon`` may also be mappings by dataset kind (module docstring).

    :param policy: The policy model ("MultiInputPolicy")
    :param env: The goal env (Dict observations with observation/achieved_goal/desired_goal), or its id
    :param dataset: A `GoalDataset` or a dataset id (loaded lazily through `envs.datasets.load_goal_dataset`)
    :param learning_rate: Adam learning rate (reference 5e-4)
    :param policy_kwargs: Keyword arguments of `GoalGaussianPolicy`
    :param tensorboard_log: TensorBoard log folder (None: no TensorBoard)
    :param verbose: 0 silent, 1 info
    :param seed: Seed of the pseudo-random generators
    :param device: Torch device ("auto", "cpu", "cuda", ...)
    :param _init_setup_model: Build the networks at creation (False when loading)
    :param knobs: Fields of `GoalConfig` (``use_horizon`` is fixed: Merlin conditions on the horizon)
    """

    fixed_knobs: ClassVar[dict[str, Any]] = {"use_horizon": True}

    def __init__(
        self,
        policy: str | type[GoalGaussianPolicy],
        env: GymEnv | str | None,
        dataset: GoalDataset | str | None = None,
        learning_rate: float | Schedule = 5e-4,
        policy_kwargs: dict[str, Any] | None = None,
        tensorboard_log: str | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
        **knobs: Any,
    ) -> None:
        dataset_id = dataset if isinstance(dataset, str) else getattr(dataset, "dataset_id", "")
        for name in ("her_ratio", "test_horizon"):
            if name in knobs:
                knobs[name] = value_for_dataset(knobs[name], dataset_id, name)
        super().__init__(
            policy,
            env,
            dataset=dataset,
            learning_rate=learning_rate,
            policy_kwargs=policy_kwargs,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=_init_setup_model,
            **knobs,
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
