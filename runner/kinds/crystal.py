"""The crystal kind: a generative model of crystals trained on a registered dataset (``--algo symmcd --env Carbon24``);
timesteps are gradient steps. At the end it writes ``--n-samples`` sampled crystals as CIFs under samples/ and simple
counts into results.json: how many decoded, nodes and atoms per crystal, sampling seconds per crystal and the space
groups spglib finds in the samples. The crystal modules (pymatgen, spglib) are imported on first use, so that
`runner.kinds` stays quick to import for the other kinds."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.io import atomic_write
from runner.args import TrainArgs
from runner.kinds.target_model import TargetModel

if TYPE_CHECKING:
    from crystals.models import CrystalModel, Generated


class Crystal(TargetModel):
    """A crystal generator trained on a dataset (``--env Perov5``); writes samples/*.cif and counts at the end."""

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
        from pymatgen.io.cif import CifWriter

        model, n = self.model, self.args.n_samples
        results: dict[str, Any] = {"final_eval": model.evaluate(), "best_eval": model.best_metrics}
        if n <= 0:
            return results
        generated = model.generate(n, progress_bar=self.args.verbose > 0)
        for index, structure in enumerate(generated.structures):
            atomic_write(run_dir / "samples" / f"{index:05d}.cif", lambda path, s=structure: CifWriter(s).write_file(path))
        if generated.failures:
            text = "\n".join(generated.failures) + "\n"
            atomic_write(run_dir / "samples" / "failures.txt", lambda path: path.write_text(text))
        results["samples"] = sample_counts(generated, model.config.symprec)
        # The evaluation of the samples against the test split (crystals.metrics: validity, COV, EMDs, symmetry
        # metrics) joins results["samples"] here once it lands.
        return results


def sample_counts(generated: Generated, symprec: float) -> dict[str, Any]:
    """Counts of a sampling run: decoded crystals (the rest failed, with their reasons in samples/failures.txt),
    nodes per sampled crystal (what the network sees), atoms per decoded crystal, sampling seconds per crystal and
    the space groups spglib finds at ``symprec`` (P1 where it finds none); where the model sampled a group, how often
    the decoded crystal shows exactly that group."""
    from crystals.asu import space_group_number

    n, structures = generated.requested, generated.structures
    detected = [space_group_number(structure, symprec) for structure in structures]
    sampled = [(found, group) for found, group in zip(detected, generated.space_groups) if group is not None]
    return {
        "requested": n,
        "decoded": len(structures),
        "decode_success_rate": len(structures) / n,
        "failure_reasons": dict(Counter(reason.split(":")[0] for reason in generated.failures)),
        "nodes_per_crystal": sum(generated.nodes) / n,
        "atoms_per_crystal": sum(len(s) for s in structures) / len(structures) if structures else None,
        "sampling_seconds_per_crystal": generated.seconds / n,
        "symprec": symprec,
        "distinct_space_groups": len(set(detected)),
        "non_p1_fraction": sum(number != 1 for number in detected) / len(detected) if detected else None,
        "sampled_space_group_match": sum(f == g for f, g in sampled) / len(sampled) if sampled else None,
    }
