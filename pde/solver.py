"""A physics-informed DeepONet solver with the library's API (``learn``, ``save``/``load``, TensorBoard): trained from
initial conditions of a registered PDE problem (`pde.problems`), optionally with the Lie point symmetry loss
(Akhound-Sadegh et al., NeurIPS 2023), and evaluated by the relative L2 error against the reference solver on
held-out initial conditions. ``python train.py --algo pinn --env Burgers --hyperparams symmetry_weight 1.0``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from core.config import require_positive
from core.trainer import Trainer
from pde.networks import DeepONetConfig, PIDeepONet
from pde.problems import PDEProblem, make_pde_problem

TEST_SEED = 12_345  # the held-out initial conditions are the same for every run of a problem


@dataclass(frozen=True)
class PINNSolverConfig(DeepONetConfig):
    """The DeepONet's knobs plus the data and evaluation of a run."""

    train_initial_conditions: int = 16
    """Training initial conditions: the supervision (the paper's x-axis)."""
    augment_copies: int = 0
    """Copies of each training initial condition moved by the problem's finite symmetry transformations (0: none)."""
    sensors: int = 64
    """Grid points where the branch reads an initial condition (a divisor of the problem's grid)."""
    test_initial_conditions: int = 16
    """Held-out initial conditions of the evaluation (the same for every seed)."""
    eval_times: int = 9
    """Evaluation times, equispaced in [0, t_max]."""
    eval_freq: int = 500
    """Gradient steps between evaluations (0: only the final one)."""
    log_interval: int = 100
    """Gradient steps between logged losses."""


class PINNSolver(Trainer):
    """A `PIDeepONet` on a PDE problem with its training and held-out initial conditions.

    :param target: Problem name (``Heat``, ``Burgers``) or a `PDEProblem`
    :param seed: Seed of the training initial conditions, the initialisation and the collocation points (None: 0)
    :param device: "auto", "cpu", "cuda", ...
    :param hyperparams: Fields of `PINNSolverConfig`
    """

    config_class: ClassVar[type] = PINNSolverConfig
    evaluates_at_end = True  # a few hundred network evaluations: the final error is always measured
    selection_metric = "relative_l2"

    def __init__(
        self, target: str | PDEProblem, seed: int | None = None, device: str | torch.device = "auto", **hyperparams: Any
    ) -> None:
        self.problem = make_pde_problem(target) if isinstance(target, str) else target
        super().__init__(self.problem.name, 0 if seed is None else seed, device, "auto", hyperparams)
        cfg = self.config
        require_positive(cfg, ("train_initial_conditions", "sensors", "test_initial_conditions", "eval_times", "log_interval"))
        if cfg.augment_copies < 0 or cfg.eval_freq < 0:
            raise ValueError(f"augment_copies and eval_freq must be >= 0, got {cfg.augment_copies}, {cfg.eval_freq}")
        if self.problem.grid_points % cfg.sensors:
            raise ValueError(f"sensors must divide the problem's {self.problem.grid_points} grid points, got {cfg.sensors}")
        self.stride = self.problem.grid_points // cfg.sensors
        sensors = torch.tensor(self.problem.grid[:: self.stride], dtype=torch.float32)
        self.model = PIDeepONet(self.problem.pde, sensors, self.problem.length, self.problem.t_max, cfg, self.seed,
                                self.device, self.problem.periodic_generators)  # fmt: skip
        rng = np.random.default_rng(self.seed)
        train = self.problem.initial_conditions(cfg.train_initial_conditions, rng)
        train = self.problem.augment(train, cfg.augment_copies, rng)
        self.train_u0 = self._at_sensors(train)
        if cfg.collocation == "fixed":
            self.model.fix_collocation(len(self.train_u0), self.seed)
        self._test: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @property
    def network(self) -> torch.nn.Module:  # type: ignore[override]
        return self.model.network

    @property
    def optimizer(self) -> torch.optim.Optimizer:  # type: ignore[override]
        return self.model.optimizer

    def _at_sensors(self, u0: np.ndarray) -> torch.Tensor:
        return torch.tensor(u0[:, :: self.stride], dtype=torch.float32, device=self.device)

    def test_set(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The held-out initial conditions at the sensors (B, m), the evaluation points (N, 2) on the sensor grid ×
        ``eval_times`` and the reference solution there (B, N); solved once, on first use."""
        if self._test is None:
            cfg, problem = self.config, self.problem
            u0 = problem.initial_conditions(cfg.test_initial_conditions, np.random.default_rng(TEST_SEED))
            times = np.linspace(0.0, problem.t_max, cfg.eval_times)
            reference = problem.solve(u0, times)[:, :, :: self.stride]  # (B, times, m)
            x, t = np.meshgrid(problem.grid[:: self.stride], times)
            points = torch.tensor(np.stack([x.ravel(), t.ravel()], 1), dtype=torch.float32, device=self.device)
            solution = torch.tensor(reference.reshape(len(u0), -1), dtype=torch.float32, device=self.device)
            self._test = self._at_sensors(u0), points, solution
        return self._test

    def evaluate(self) -> dict[str, float]:
        """``relative_l2``: mean over the held-out initial conditions of ‖u_θ − u_ref‖ / ‖u_ref‖ on the evaluation
        grid; ``relative_l2_initial``: the same at t = 0 only; ``mse``: the mean squared error on the grid."""
        u0, points, reference = self.test_set()
        at_zero = points[:, 1] == 0
        return {
            "relative_l2": self.model.relative_l2_error(u0, points, reference),
            "relative_l2_initial": self.model.relative_l2_error(u0, points[at_zero], reference[:, at_zero]),
            "mse": self.model.mean_squared_error(u0, points, reference),
        }

    def train_step(self) -> dict[str, float]:
        """One Adam step on a batch of the training initial conditions; returns the loss terms."""
        terms = self.model.fit(self.train_u0, 1)[-1]
        self.num_timesteps += 1
        return terms

    def _evaluation(self, step: int, progress_bar: bool) -> dict[str, float]:
        return self.evaluate()

    def _state(self) -> dict[str, Any]:
        return {"model_steps": self.model.steps, "generator": self.model.generator.get_state(),
                "collocation_sets": self.model.collocation_sets}  # fmt: skip

    def _load_state(self, state: dict[str, Any]) -> None:
        self.model.generator.set_state(state["generator"])
        self.model.steps = state["model_steps"]
        sets = state.get("collocation_sets")  # absent from checkpoints older than the fixed collocation sets
        if sets is not None:
            self.model.set_collocation(sets)

    @classmethod
    def _from_checkpoint(cls, state: dict[str, Any], target: Any | None, device: str | torch.device) -> PINNSolver:
        """The checkpoint's seed fixes the training initial conditions: the solver is rebuilt with it."""
        config = dict(state["config"])
        for name in ("generators", "equivariance_generators"):  # tuples, saved as lists
            config[name] = None if config.get(name) is None else tuple(config[name])
        return cls(target if target is not None else state["target"], seed=state["seed"], device=device, **config)


__all__ = ["PINNSolver", "PINNSolverConfig"]
