"""A physics-informed DeepONet solver with the library's API (``learn``, ``save``/``load``, TensorBoard): trained from
initial conditions of a registered PDE problem (`pde.problems`), optionally with the Lie point symmetry loss
(Akhound-Sadegh et al., NeurIPS 2023), and evaluated by the relative L2 error against the reference solver on
held-out initial conditions. ``python train.py --algo pinn --env Burgers --hyperparams symmetry_weight 1.0``."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from stable_baselines3.common.logger import Logger
from tqdm.auto import tqdm

from core.io import atomic_write
from pde.networks import DeepONetConfig, PIDeepONet
from pde.problems import PDEProblem, make_pde_problem

SelfSolver = TypeVar("SelfSolver", bound="PINNSolver")
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


class PINNSolver:
    """A `PIDeepONet` on a PDE problem with its training and held-out initial conditions.

    :param target: Problem name (``Heat``, ``Burgers``) or a `PDEProblem`
    :param seed: Seed of the training initial conditions, the initialisation and the collocation points
    :param device: Accepted for the common API; the solver runs on the CPU (its batches are small)
    :param hyperparams: Fields of `PINNSolverConfig`
    """

    config_class: ClassVar[type] = PINNSolverConfig

    def __init__(
        self, target: str | PDEProblem, seed: int | None = None, device: str | torch.device = "auto", **hyperparams: Any
    ) -> None:
        unknown = set(hyperparams) - {f.name for f in fields(PINNSolverConfig)}
        if unknown:
            raise ValueError(f"unknown PINN hyperparameters {sorted(unknown)}; see pde.solver.PINNSolverConfig")
        self.problem = make_pde_problem(target) if isinstance(target, str) else target
        self.config = cfg = replace(PINNSolverConfig(), **hyperparams)
        for name in ("train_initial_conditions", "sensors", "test_initial_conditions", "eval_times", "log_interval"):
            if getattr(cfg, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(cfg, name)}")
        if cfg.augment_copies < 0 or cfg.eval_freq < 0:
            raise ValueError(f"augment_copies and eval_freq must be >= 0, got {cfg.augment_copies}, {cfg.eval_freq}")
        if self.problem.grid_points % cfg.sensors:
            raise ValueError(f"sensors must divide the problem's {self.problem.grid_points} grid points, got {cfg.sensors}")
        self.seed = 0 if seed is None else seed
        self.device = torch.device("cpu")
        self.stride = self.problem.grid_points // cfg.sensors
        sensors = torch.tensor(self.problem.grid[:: self.stride], dtype=torch.float32)
        self.model = PIDeepONet(self.problem.pde, sensors, self.problem.length, self.problem.t_max, cfg, self.seed)
        rng = np.random.default_rng(self.seed)
        train = self.problem.initial_conditions(cfg.train_initial_conditions, rng)
        train = self.problem.augment(train, cfg.augment_copies, rng)
        self.train_u0 = self._at_sensors(train)
        self.num_timesteps = 0
        self.best_metrics: dict[str, float] = {}
        self._test: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._logger = Logger(folder=None, output_formats=[])

    def _at_sensors(self, u0: np.ndarray) -> torch.Tensor:
        return torch.tensor(u0[:, :: self.stride], dtype=torch.float32)

    def set_logger(self, logger: Logger) -> None:
        self._logger = logger

    @property
    def logger(self) -> Logger:
        return self._logger

    def test_set(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The held-out initial conditions at the sensors (B, m), the evaluation points (N, 2) on the sensor grid ×
        ``eval_times`` and the reference solution there (B, N); solved once, on first use."""
        if self._test is None:
            cfg, problem = self.config, self.problem
            u0 = problem.initial_conditions(cfg.test_initial_conditions, np.random.default_rng(TEST_SEED))
            times = np.linspace(0.0, problem.t_max, cfg.eval_times)
            reference = problem.solve(u0, times)[:, :, :: self.stride]  # (B, times, m)
            x, t = np.meshgrid(problem.grid[:: self.stride], times)
            points = torch.tensor(np.stack([x.ravel(), t.ravel()], 1), dtype=torch.float32)
            self._test = self._at_sensors(u0), points, torch.tensor(reference.reshape(len(u0), -1), dtype=torch.float32)
        return self._test

    def evaluate(self) -> dict[str, float]:
        """``relative_l2``: mean over the held-out initial conditions of ‖u_θ − u_ref‖ / ‖u_ref‖ on the evaluation
        grid; ``relative_l2_initial``: the same at t = 0 only."""
        u0, points, reference = self.test_set()
        at_zero = points[:, 1] == 0
        return {
            "relative_l2": self.model.relative_l2_error(u0, points, reference),
            "relative_l2_initial": self.model.relative_l2_error(u0, points[at_zero], reference[:, at_zero]),
        }

    def learn(
        self: SelfSolver, total_timesteps: int, progress_bar: bool = False, reset_num_timesteps: bool = True,
        checkpoint_dir: str | Path | None = None, checkpoint_freq: int = 0, stop: Callable[[], bool] | None = None,
    ) -> SelfSolver:  # fmt: skip
        """``total_timesteps`` gradient steps, or fewer once ``stop()`` is true (checked between steps). Logs the loss
        terms as ``train/*`` every ``log_interval`` steps and ``eval/*`` every ``eval_freq`` steps and at the end;
        with ``checkpoint_dir``, writes ``iter_<steps>.pt`` every ``checkpoint_freq`` steps."""
        cfg = self.config
        if reset_num_timesteps:
            self.num_timesteps = 0
        end = self.num_timesteps + total_timesteps
        start_time, start_step = time.perf_counter(), self.num_timesteps
        with tqdm(total=total_timesteps, disable=not progress_bar, desc="PINN") as bar:
            while self.num_timesteps < end and not (stop is not None and stop()):
                terms = self.model.fit(self.train_u0, 1)[-1]
                self.num_timesteps = step = self.num_timesteps + 1
                bar.update(1)
                if step % cfg.log_interval == 0 or step == end:
                    for key, value in terms.items():
                        self.logger.record(f"train/{key}", value)
                    self.logger.record("time/fps", (step - start_step) / max(time.perf_counter() - start_time, 1e-9))
                    self.logger.dump(step)
                if (cfg.eval_freq and step % cfg.eval_freq == 0) or step == end:
                    self._evaluate_and_log(step)
                if checkpoint_dir is not None and checkpoint_freq and step % checkpoint_freq == 0:
                    self.save(Path(checkpoint_dir) / f"iter_{step}.pt")
        return self

    def _evaluate_and_log(self, step: int) -> None:
        metrics = self.evaluate()
        for key, value in metrics.items():
            self.logger.record(f"eval/{key}", value)
        self.logger.dump(step)
        if metrics["relative_l2"] < self.best_metrics.get("relative_l2", math.inf):
            self.best_metrics = {**metrics, "step": float(step)}

    def save(self, path: str | Path) -> Path:
        """Atomically write the configuration, parameters, optimiser and counters (tensors and plain values only)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "problem": self.problem.name, "seed": self.seed, "config": asdict(self.config),
            "network": self.model.network.state_dict(), "optimizer": self.model.optimizer.state_dict(),
            "num_timesteps": self.num_timesteps, "model_steps": self.model.steps, "best_metrics": self.best_metrics,
            "generator": self.model.generator.get_state(),
        }  # fmt: skip
        return atomic_write(path, lambda tmp: torch.save(state, tmp))

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "auto") -> PINNSolver:
        """A solver saved by `save`, ready to evaluate or train on (read with ``weights_only=True``)."""
        state = torch.load(Path(path), weights_only=True)
        config = state["config"]
        config["generators"] = None if config["generators"] is None else tuple(config["generators"])
        solver = cls(state["problem"], seed=state["seed"], device=device, **config)
        solver.model.network.load_state_dict(state["network"])
        solver.model.optimizer.load_state_dict(state["optimizer"])
        solver.model.generator.set_state(state["generator"])
        solver.num_timesteps, solver.model.steps = state["num_timesteps"], state["model_steps"]
        solver.best_metrics = state["best_metrics"]
        return solver


__all__ = ["PINNSolver", "PINNSolverConfig"]
