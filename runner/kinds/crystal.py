"""The crystal kind: a generative model of crystals trained on a registered dataset (``--algo symmcd --env Carbon24``);
timesteps are gradient steps. At the end it writes ``--n-samples`` sampled crystals under samples/ (CIFs and
samples.json, `crystals.evaluate.write_samples`) and puts into results.json what sampling cost and how much decoded
(``samples``) and the metrics of the samples against the dataset's test split (``metrics``: validity, coverage,
property distances, symmetry; `crystals.evaluate.evaluate_generated`). The crystal modules (pymatgen, spglib) are
imported on first use, so that `runner.kinds` stays quick to import for the other kinds."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.args import TrainArgs
from runner.kinds.target_model import TargetModel

if TYPE_CHECKING:
    from crystals.models import CrystalModel


class Crystal(TargetModel):
    """A crystal generator trained on a dataset (``--env Perov5``); writes samples/ and their metrics at the end."""

    default_budget = 2_500
    model: CrystalModel

    @classmethod
    def resolve_target(cls, name: str) -> str:
        from crystals.data import dataset

        return dataset(name).name  # validates the name, suggesting close ones

    def __init__(self, args: TrainArgs, algo: str, algo_class: type[CrystalModel], seed: int) -> None:
        from crystals.models import CrystalModel

        if not issubclass(algo_class, CrystalModel):
            raise TypeError(f"{algo_class.__name__} is registered as a crystal model but does not subclass "
                            f"crystals.models.CrystalModel")  # fmt: skip
        super().__init__(args, algo, algo_class, seed)
        self.config["preset"] = self.model.preset

    def final_results(self, run_dir: Path) -> dict[str, Any]:
        from crystals.evaluate import evaluate_generated, sample_counts, write_samples

        model, n, progress = self.model, self.args.n_samples, self.args.verbose > 0
        results: dict[str, Any] = {"final_eval": model.evaluate(), "best_eval": model.best_metrics,
                                   "parameters": sum(p.numel() for p in model.network.parameters())}  # fmt: skip
        if n <= 0:
            return results
        generated = model.generate(n, progress_bar=progress)
        write_samples(run_dir / "samples", generated)
        results["samples"] = sample_counts(generated)
        results["metrics"] = evaluate_generated(generated, self.target, model.config.symprec, progress=progress)
        return results
