"""Offline goal-conditioned behaviour cloning on SB3's `BaseAlgorithm`: the shared machinery of Merlin, GCSL, WGCSL.

The algorithm never steps its env while learning: ``learn(total_timesteps)`` runs that many **gradient steps** on
relabelled samples of a `GoalDataset` (mixed with synthetic trajectories of a noise model), calling
``callback.on_step()`` once per gradient step. The env provides the spaces, the reward function (WGCSL) and
evaluation episodes (`agents.merlin.evaluation.GoalEvalCallback`).

The dataset is not saved with the model; only ``dataset_id`` is. ``load(path, env=env)`` restores a model that acts;
to train it further pass ``dataset=...`` to ``load`` (or the id is reloaded through `envs.datasets`).
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from torch import Tensor

from agents.merlin.noise import make_noise_config, resolve_cache_dir, synthesize
from agents.merlin.policies import GoalGaussianPolicy
from agents.merlin.relabel import GoalBatch, HindsightRelabeler
from core.config import CheckedConfig, fold_config_attributes, with_overrides
from envs.datasets import load_goal_dataset
from envs.goal_dataset import GoalDataset

SelfOfflineGoalAlgorithm = TypeVar("SelfOfflineGoalAlgorithm", bound="OfflineGoalAlgorithm")
#: synthetic_ratio used when a noise model other than reverse play is chosen and synthetic_ratio is None (the
#: reference's ``diffusion_ratio=0.5``, vineetjain96/merlin).
DEFAULT_SYNTHETIC_RATIO = 0.5


def check_dataset(
    dataset: GoalDataset, observation_space: spaces.Dict, action_space: spaces.Box, env_id: str | None = None
) -> None:
    """Raise a ValueError when the dataset was recorded in another env than ``env_id`` (when both are known), when its
    dimensions do not match the env's spaces, or when it holds NaN/inf."""
    if env_id and dataset.env_id and dataset.env_id != env_id:
        raise ValueError(
            f"Dataset {dataset.dataset_id or '(unnamed)'} was collected in {dataset.env_id}, not in {env_id}: train in "
            f"the environment it was collected in, or pass a dataset of {env_id}."
        )
    expected = {
        "observations": ("observation", observation_space["observation"].shape[0]),
        "achieved_goals": ("achieved_goal", observation_space["achieved_goal"].shape[0]),
        "desired_goals": ("desired_goal", observation_space["desired_goal"].shape[0]),
        "actions": ("action", action_space.shape[0]),
    }
    source = f"dataset {dataset.dataset_id!r}" if dataset.dataset_id else "the dataset"
    for name, (key, dim) in expected.items():
        array = getattr(dataset, name)
        if array.ndim != 2 or array.shape[1] != dim:
            collected = f" (collected in {dataset.env_id})" if dataset.env_id else ""
            raise ValueError(
                f"The {name} of {source}{collected} have shape {array.shape}, but the env's {key} has dimension {dim}. "
                "Use the environment the dataset was collected in."
            )
        if not np.isfinite(array).all():
            raise ValueError(f"The {name} of {source} contain NaN or inf.")


@dataclass(frozen=True)
class GoalConfig(CheckedConfig):
    """The knobs of the offline goal-reaching algorithms (Merlin, GCSL; WGCSL adds `WGCSLConfig`'s). SB3's own
    arguments (learning_rate, policy_kwargs, seed, ...) stay constructor arguments; every field is a keyword too."""

    batch_size: int = 512
    """Samples per gradient step (reference 512)."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip of the policy (reference 1.0)."""
    her_ratio: float = 1.0
    """Probability of relabelling a sample's goal to a later achieved goal of its episode."""
    use_horizon: bool = True
    """Condition the policy on the horizon h."""
    test_horizon: int = 1
    """Horizon fed to the policy when acting."""
    max_horizon: int | None = None
    """Only relabel to goals at most this many steps ahead (long episodes); None: any later step."""
    noise_model: str = "reverse_play"
    """"reverse_play" (Merlin), "reverse_model" (Merlin-P) or "stitching" (Merlin-NP), see `agents.merlin.noise`."""
    noise_kwargs: dict[str, Any] = field(default_factory=dict)
    """Settings of the noise model (fields of `ReverseModelConfig` or `StitchingConfig`)."""
    synthetic_ratio: float | None = None
    """Share of each batch drawn from synthetic data; None: 0.5 with a generating noise model, else 0."""
    n_synthetic: int | None = None
    """Number of synthetic trajectories; None: as many as dataset episodes."""
    cache_dir: str | None = None
    """Folder of the synthetic-data cache; None: $DIFFUSION_BASELINES_CACHE/merlin or
    ~/.cache/diffusion-baselines/merlin."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "noise_kwargs", dict(self.noise_kwargs or {}))
        object.__setattr__(self, "cache_dir", None if self.cache_dir is None else str(self.cache_dir))
        object.__setattr__(self, "her_ratio", float(self.her_ratio))
        object.__setattr__(self, "test_horizon", int(self.test_horizon))
        super().__post_init__()
        make_noise_config(self.noise_model, self.noise_kwargs)  # fail early on a bad name or setting
        if not 0.0 <= self.her_ratio <= 1.0:
            raise ValueError(f"her_ratio must be in [0, 1], got {self.her_ratio}.")
        if self.synthetic_ratio is not None and not 0.0 <= self.synthetic_ratio < 1.0:
            raise ValueError(f"synthetic_ratio must be in [0, 1), got {self.synthetic_ratio}.")
        if self.synthetic_ratio and self.noise_model == "reverse_play":
            raise ValueError("synthetic_ratio > 0 needs a noise_model that generates data ('reverse_model' or 'stitching').")


class OfflineGoalAlgorithm(BaseAlgorithm):
    """Goal- (and optionally horizon-) conditioned maximum likelihood on relabelled offline data.

    Each gradient step draws ``batch_size`` samples, a ``synthetic_ratio`` share of them from the synthetic
    trajectories, and minimises -log pi(a_i | s_i, g, h) (subclasses may weight it, see `_sample_weights`).

    :param policy: The policy model ("MultiInputPolicy" or a `GoalGaussianPolicy` subclass)
    :param env: The goal env (Dict observations with observation/achieved_goal/desired_goal), or its id
    :param dataset: The training episodes: a `GoalDataset`, a dataset id (loaded at the first ``learn``) or None
        (for loading a saved model)
    :param learning_rate: Adam learning rate of the policy (a float or a schedule of the remaining progress)
    :param policy_kwargs: Keyword arguments of the policy (e.g. ``net_arch``)
    :param tensorboard_log: TensorBoard log folder (None: no TensorBoard)
    :param verbose: 0 silent, 1 info
    :param seed: Seed of the pseudo-random generators (sampling, networks, noise models)
    :param device: Torch device ("auto", "cpu", "cuda", ...)
    :param _init_setup_model: Build the networks at creation (False when loading)
    :param knobs: Fields of `config_class` (`GoalConfig`), except the ones the algorithm fixes (`fixed_knobs`)
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MultiInputPolicy": GoalGaussianPolicy}
    policy: GoalGaussianPolicy
    #: The frozen dataclass of the algorithm's knobs.
    config_class: ClassVar[type[GoalConfig]] = GoalConfig
    #: Knobs the algorithm sets itself; passing one is an error (GCSL: her_ratio 1, no horizon input).
    fixed_knobs: ClassVar[dict[str, Any]] = {}
    config: GoalConfig

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
        pinned = sorted(set(knobs) & set(self.fixed_knobs))
        if pinned:
            raise ValueError(
                f"{type(self).__name__} fixes {', '.join(f'{k}={self.fixed_knobs[k]!r}' for k in pinned)}: leave it out."
            )
        config = with_overrides(self.config_class(), {**knobs, **self.fixed_knobs}, type(self).__name__)
        super().__init__(
            policy,
            env,
            learning_rate,
            policy_kwargs=policy_kwargs,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            support_multi_env=True,
            seed=seed,
        )
        self.config = config
        self.dataset = dataset
        self.dataset_id = dataset if isinstance(dataset, str) else getattr(dataset, "dataset_id", "")
        self.data_stats: dict[str, float] = {}
        self._samplers: list[tuple[HindsightRelabeler, int]] | None = None
        self._metrics: dict[str, list[float]] = defaultdict(list)
        if _init_setup_model:
            self._setup_model()
            if isinstance(dataset, GoalDataset):
                check_dataset(dataset, self.observation_space, self.action_space, self._env_id())  # type: ignore[arg-type]

    def _setup_model(self) -> None:
        fold_config_attributes(self)  # SB3's load(path, test_horizon=...) sets its keywords as attributes
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        self._rng = np.random.default_rng(self.seed)
        self.policy = self.policy_class(
            self.observation_space,
            self.action_space,
            self.lr_schedule,
            use_horizon=self.config.use_horizon,
            test_horizon=self.config.test_horizon,
            **self.policy_kwargs,
        ).to(self.device)

    def set_test_horizon(self, horizon: int) -> None:
        """Change the horizon fed to the policy when acting. The horizon is an input of the trained network, so one model
        can be evaluated at several horizons (Merlin is sensitive to it, as reviewers of the paper noted) without
        retraining."""
        if not self.config.use_horizon:
            raise ValueError(f"{type(self).__name__} was built with use_horizon=False: it has no horizon input to set.")
        if int(horizon) != horizon or horizon < 1:
            raise ValueError(f"The test horizon must be a positive integer number of steps, got {horizon!r}.")
        self.config = replace(self.config, test_horizon=int(horizon))
        self.policy.test_horizon = int(horizon)

    # --- data -----------------------------------------------------------------------------------------------------

    def _env_id(self) -> str | None:
        """The registered id of the training env, when it has one."""
        specs = self.env.get_attr("spec") if self.env is not None else [None]
        return specs[0].id if specs and specs[0] is not None else None

    def _load_dataset(self) -> GoalDataset:
        """The training dataset, loading it by id on first use (and checking it against the spaces)."""
        dataset = self.dataset if self.dataset is not None else (self.dataset_id or None)
        if dataset is None:
            raise ValueError(
                f"{type(self).__name__} has no dataset to learn from: pass dataset= to the constructor or to load()."
            )
        if isinstance(dataset, str):
            dataset = load_goal_dataset(dataset)
        check_dataset(dataset, self.observation_space, self.action_space, self._env_id())  # type: ignore[arg-type]
        self.dataset, self.dataset_id = dataset, dataset.dataset_id or self.dataset_id
        return dataset

    def _prepare_data(self) -> None:
        """Build the samplers (generating or loading the synthetic data) and fit the normalisers, once."""
        if self._samplers is not None:
            return
        dataset = self._load_dataset()
        cfg = self.config
        config = make_noise_config(cfg.noise_model, cfg.noise_kwargs)
        sources = [dataset]
        self.data_stats = {"n_episodes": float(dataset.n_episodes), "n_transitions": float(dataset.n_transitions)}
        ratio = 0.0
        if config is not None:
            n = cfg.n_synthetic or dataset.n_episodes
            seed = 0 if self.seed is None else self.seed
            cache_dir = resolve_cache_dir(cfg.cache_dir)
            start = time.perf_counter()
            synthetic, stats = synthesize(dataset, cfg.noise_model, config, n, self.action_space, seed, self.device, cache_dir)
            sources.append(synthetic)
            ratio = DEFAULT_SYNTHETIC_RATIO if cfg.synthetic_ratio is None else cfg.synthetic_ratio
            self.data_stats.update(n_synthetic=float(synthetic.n_episodes), synthesis_s=time.perf_counter() - start)
            self.data_stats.update(stats)
            if self.verbose >= 1:
                print(f"{cfg.noise_model}: {synthetic.n_episodes} synthetic trajectories; " + str(stats))
        n_synthetic_samples = round(cfg.batch_size * ratio)
        sizes = [cfg.batch_size - n_synthetic_samples, n_synthetic_samples][: len(sources)]
        self._samplers = [
            (HindsightRelabeler(data, cfg.her_ratio, cfg.max_horizon), size) for data, size in zip(sources, sizes)
        ]
        if not bool(self.policy.obs_normalizer.fitted):
            observations = np.concatenate([data.observations for data in sources])
            goals = np.concatenate([array for data in sources for array in (data.achieved_goals, data.desired_goals)])
            self.policy.fit_normalizers(observations, goals)

    def sample_batch(self) -> GoalBatch:
        """One training batch: the dataset's and the synthetic share, relabelled."""
        assert self._samplers is not None, "call learn() (or _prepare_data()) first"
        return GoalBatch.concatenate([sampler.sample(size, self._rng) for sampler, size in self._samplers if size > 0])

    # --- optimisation ---------------------------------------------------------------------------------------------

    def to_tensor(self, array: np.ndarray) -> Tensor:
        return th.as_tensor(array, dtype=th.float32, device=self.device)

    def _optimize(self, loss: Tensor, optimizer: th.optim.Optimizer, parameters: list[Tensor], name: str) -> float:
        """One clipped Adam step on ``loss``; returns the gradient norm before clipping. NaN/inf losses raise."""
        if not th.isfinite(loss):
            lr = optimizer.param_groups[0]["lr"]
            raise FloatingPointError(
                f"The {name} loss of {type(self).__name__} became {loss.item()} at gradient step {self._n_updates}; "
                f"try a lower learning rate (now {lr:g}) or max_grad_norm (now {self.config.max_grad_norm:g})."
            )
        optimizer.zero_grad()
        loss.backward()
        grad_norm = th.nn.utils.clip_grad_norm_(parameters, self.config.max_grad_norm)
        optimizer.step()
        return float(grad_norm)

    def _sample_weights(self, batch: GoalBatch) -> Tensor | None:
        """Per-sample weights of the likelihood (None: unweighted). WGCSL overrides this."""
        return None

    def _gradient_step(self, batch: GoalBatch) -> None:
        """One policy update on ``batch``; metrics go to ``self._metrics``."""
        weights = self._sample_weights(batch)
        dist = self.policy.distribution(
            self.to_tensor(batch.observations), self.to_tensor(batch.goals), self.to_tensor(batch.horizons)
        )
        log_prob = dist.log_prob(self.to_tensor(batch.actions))
        loss = -(log_prob if weights is None else weights * log_prob).mean()
        grad_norm = self._optimize(loss, self.policy.optimizer, list(self.policy.parameters()), "policy")
        self._metrics["loss"].append(loss.item())
        self._metrics["log_std"].append(dist.base_dist.stddev.log().mean().item())
        self._metrics["grad_norm"].append(grad_norm)

    def _optimizers(self) -> list[th.optim.Optimizer]:
        return [self.policy.optimizer]

    def train(self, gradient_steps: int) -> None:
        """Run ``gradient_steps`` updates of ``config.batch_size`` samples."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self._optimizers())
        for _ in range(gradient_steps):
            self._gradient_step(self.sample_batch())
            self._n_updates += 1

    # --- SB3 loop -------------------------------------------------------------------------------------------------

    def _dump_logs(self) -> None:
        elapsed = max((time.time_ns() - self.start_time) / 1e9, sys.float_info.epsilon)
        self.logger.record("time/fps", int((self.num_timesteps - self._num_timesteps_at_start) / elapsed))
        self.logger.record("time/time_elapsed", int(elapsed), exclude="tensorboard")
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        for key, values in self._metrics.items():
            self.logger.record(f"train/{key}", float(np.mean(values)))
        self._metrics.clear()
        self.logger.dump(step=self.num_timesteps)

    def learn(
        self: SelfOfflineGoalAlgorithm,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 500,
        tb_log_name: str = "OfflineGoal",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfOfflineGoalAlgorithm:
        """Run ``total_timesteps`` gradient steps; log every ``log_interval`` steps (0: never)."""
        if self.env is None:
            raise ValueError(f"{type(self).__name__}.learn needs an env (spaces, rewards, evaluation): pass env= to load().")
        self._prepare_data()
        total_timesteps, callback = self._setup_learn(
            total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar
        )
        for key, value in self.data_stats.items():
            self.logger.record(f"data/{key}", value)
        callback.on_training_start(locals(), globals())
        while self.num_timesteps < total_timesteps:
            self._update_current_progress_remaining(self.num_timesteps, total_timesteps)
            self.train(gradient_steps=1)
            self.num_timesteps += 1
            callback.update_locals(locals())
            if not callback.on_step():
                break
            if log_interval > 0 and self.num_timesteps % log_interval == 0:
                self._dump_logs()
        callback.on_training_end()
        return self

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "dataset", "_samplers", "_rng", "_metrics"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "policy.optimizer"], []
