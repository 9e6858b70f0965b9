"""The sampler kind: a diffusion sampler trained from an energy (``--algo idem --env DW4``); at the end it writes
samples.npy and their metrics against the reference samples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from core.io import atomic_write
from runner.args import TrainArgs
from runner.kinds.target_model import TargetModel
from samplers.base import BaseSampler
from samplers.energies import make_energy


class Sampler(TargetModel):
    """A sampler trained from an energy target (``--env DW4``); writes samples.npy and their metrics at the end."""

    default_budget = 10_000
    model: BaseSampler

    @classmethod
    def resolve_target(cls, name: str) -> str:
        make_energy(name)  # validates the name, suggesting close ones
        return name

    def __init__(self, args: TrainArgs, algo: str, algo_class: type[BaseSampler], seed: int) -> None:
        if not issubclass(algo_class, BaseSampler):
            raise TypeError(
                f"{algo_class.__name__} is registered as a sampler but does not subclass samplers.base.BaseSampler"
            )
        super().__init__(args, algo, algo_class, seed)
        self.config["preset"] = self.model.preset
        self._check_reference_size(args.n_samples)

    def _check_reference_size(self, n: int) -> None:
        """Fail before training, not after it, when the final evaluation could not compare ``n`` samples (a reference
        split smaller than ``n``); a reference missing on this machine only skips that evaluation."""
        if n <= 0:
            return
        try:
            self.model.reference_samples(n)
        except FileNotFoundError:
            return
        except ValueError as error:
            raise ValueError(f"--n-samples {n}: {error}; pass a smaller --n-samples") from None

    def final_results(self, run_dir: Path) -> dict[str, Any]:
        model, n = self.model, self.args.n_samples
        results: dict[str, Any] = {"energy_evaluations": model.energy_evaluations, "best_eval": model.best_metrics}
        if n <= 0:
            return results
        latest = model.latest_evaluation(n)  # the end of learn evaluated: reuse its samples and metrics
        samples = model.sample(n, progress_bar=self.args.verbose > 0).cpu() if latest is None else latest[0]
        atomic_write(run_dir / "samples.npy", lambda p: np.save(p, samples.numpy()))
        if latest is not None:
            results["final_eval"] = latest[1]
            return results
        try:
            results["final_eval"] = model.evaluate(samples=samples, reference=model.reference_samples(n))
        except FileNotFoundError as error:
            results["final_eval"] = f"skipped: {error}"
            print(f"Final evaluation skipped: {error}")
        return results
