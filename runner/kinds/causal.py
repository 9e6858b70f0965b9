"""The causal kind: a causal representation learner trained on contrastive pairs of a registered task
(``--algo ilcm --env chain4-12-34.nonlinear.mlp``); timesteps are gradient steps. results.json holds the final and
best evaluations (validation ELBO, target-set accuracy), the encoding's scores against what the task's graph and family
identify on the test split (``metrics``: per R1 block and R0 set informativeness, purity, leakage, sufficiency gap;
DCI; target Jaccard; `causal.models.CausalLearner.theory_metrics`) and that abstraction itself (``abstraction``). The
learners (torch, scikit-learn) are imported on first use, so that `runner.kinds` stays quick to import."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from causal.data import resolve_task
from runner.args import TrainArgs
from runner.hyperparams import CAUSAL_STEPS
from runner.kinds.target_model import TargetModel

if TYPE_CHECKING:
    from causal.models import CausalLearner


class Causal(TargetModel):
    """A learner of causal latents from pairs (``--env F2.linear.mlp``); scored against the task's abstraction."""

    default_budget = CAUSAL_STEPS
    model: CausalLearner

    @classmethod
    def resolve_target(cls, name: str) -> str:
        return resolve_task(name)  # validates the name, suggesting close ones

    def __init__(self, args: TrainArgs, algo: str, algo_class: type[CausalLearner], seed: int) -> None:
        from causal.models import CausalLearner

        if not issubclass(algo_class, CausalLearner):
            raise TypeError(f"{algo_class.__name__} is registered as a causal learner but does not subclass "
                            "causal.models.CausalLearner")  # fmt: skip
        super().__init__(args, algo, algo_class, seed)

    def final_results(self, run_dir: Path) -> dict[str, Any]:
        model = self.model
        return {"final_eval": model.evaluate(), "best_eval": model.best_metrics, "metrics": model.theory_metrics(),
                "abstraction": {"text": str(model.abstraction), **asdict(model.abstraction)},
                "parameters": sum(p.numel() for p in model.network.parameters())}  # fmt: skip
