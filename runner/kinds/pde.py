"""The PDE kind: a physics-informed solver of a named PDE problem (``--algo pinn --env Burgers``); timesteps are
gradient steps, and the final evaluation is the relative L2 error on held-out initial conditions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pde.problems import make_pde_problem
from pde.solver import PINNSolver
from runner.kinds.target_model import TargetModel


class PDE(TargetModel):
    """A physics-informed solver of a PDE problem (``--env Burgers``); timesteps are gradient steps, and the final
    evaluation is the relative L2 error on held-out initial conditions."""

    default_budget = 2_000
    model: PINNSolver

    @classmethod
    def resolve_target(cls, name: str) -> str:
        return make_pde_problem(name).name  # validates the name, suggesting close ones

    def final_results(self, run_dir: Path) -> dict[str, Any]:
        return {"final_eval": self.model.evaluate(), "best_eval": self.model.best_metrics}
