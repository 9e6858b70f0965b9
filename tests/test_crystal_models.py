"""The crystal generators (crystals/batch.py, crystals/models.py, the crystal kind): batches of whole crystals, DiffCSP
and SymmCD learning a tiny dataset, sampling with every crystal accounted for, SymmCD's samples holding the symmetry
of their group, one-line errors and train.py end to end. No dataset files are needed: `write_tiny_crystal_data`
writes a CDVAE-style CSV of five textbook crystals (the contract suite uses it too)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core import Lattice, Structure

from crystals.asu import space_group_number
from crystals.batch import asymmetric_units, niggli_cells
from crystals.data import DATA_DIR_ENV
from crystals.evaluate import main as evaluate_main
from crystals.groups import space_group, wrapped_difference
from crystals.lattice import lattice_to_k
from crystals.models import DiffCSP, SymmCD, SymmCDState
from crystals.processed import CACHE_DIR_ENV, processed_split
from runner.args import TrainArgs
from runner.experiment import train

#: A network small enough for a test: a few milliseconds per step.
TINY_CRYSTAL: dict[str, int] = {"hidden_dim": 16, "n_layers": 1, "n_frequencies": 4, "time_dim": 8, "batch_size": 5,
                                "sampling_steps": 20, "sample_batch_size": 4, "eval_freq": 0}  # fmt: skip
TINY_SYMMCD = {**TINY_CRYSTAL, "condition_embed_dim": 8}
MODELS = {"diffcsp": (DiffCSP, TINY_CRYSTAL), "symmcd": (SymmCD, TINY_SYMMCD)}


def _crystals(scale: float) -> dict[str, Structure]:
    """Cubic perovskite, one-orbit diamond, rock salt, hexagonal wurtzite and tetragonal rutile, lengths × scale."""
    return {
        "srtio3": Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.905 * scale), ["Sr", "Ti", "O"],
                                            [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]]),
        "diamond": Structure.from_spacegroup("Fd-3m", Lattice.cubic(3.567 * scale), ["C"], [[0, 0, 0]]),
        "nacl": Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64 * scale), ["Na", "Cl"],
                                          [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "zno": Structure.from_spacegroup("P6_3mc", Lattice.hexagonal(3.25 * scale, 5.21 * scale), ["Zn", "O"],
                                         [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.382]]),
        "rutile": Structure.from_spacegroup("P4_2/mnm", Lattice.tetragonal(4.594 * scale, 2.959 * scale), ["Ti", "O"],
                                            [[0, 0, 0], [0.305, 0.305, 0]]),
    }  # fmt: skip


def write_tiny_crystal_data(root: Path) -> None:
    """Carbon-24's val split as the five crystals of `_crystals`, its test split as the same stretched by 3 %, in
    ``root/carbon_24/`` (point ``CRYSTALS_DATA_DIR`` at ``root``)."""
    for split, scale in (("val", 1.0), ("test", 1.03)):
        crystals = _crystals(scale)
        frame = pd.DataFrame({"material_id": [f"{name}-{split}" for name in crystals],
                              "cif": [crystal.to(fmt="cif") for crystal in crystals.values()]})  # fmt: skip
        (root / "carbon_24").mkdir(parents=True, exist_ok=True)
        frame.to_csv(root / "carbon_24" / f"{split}.csv")


@pytest.fixture(scope="session")
def tiny_crystal_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("crystals")
    write_tiny_crystal_data(root / "data")
    return root


@pytest.fixture
def tiny_crystals(tiny_crystal_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny dataset as Carbon24, its preprocessing cached once per session."""
    monkeypatch.setenv(DATA_DIR_ENV, str(tiny_crystal_root / "data"))
    monkeypatch.setenv(CACHE_DIR_ENV, str(tiny_crystal_root / "cache"))
    return tiny_crystal_root


@pytest.fixture(scope="module")
def trained(tiny_crystal_root: Path) -> Iterator[dict[str, tuple[object, float, float]]]:
    """Each model after 200 steps on the tiny data, with its evaluation loss before and after."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(DATA_DIR_ENV, str(tiny_crystal_root / "data"))
        patch.setenv(CACHE_DIR_ENV, str(tiny_crystal_root / "cache"))
        models = {}
        for name, (model_class, tiny) in MODELS.items():
            model = model_class("Carbon24", seed=0, **tiny)
            before = model.evaluate()["loss"]
            model.learn(200)
            models[name] = (model, before, model.evaluate()["loss"])
        yield models


def test_batches_hold_whole_crystals_and_both_models_see_the_same_ones(tiny_crystals):
    split = processed_split("Carbon24", "val")
    units, cells = asymmetric_units(split), niggli_cells(split)
    assert len(units) == len(cells) == 5 and torch.equal(units.space_group, cells.space_group)
    assert units.num_nodes.tolist() == [3, 1, 2, 2, 2]  # SrTiO3, diamond, NaCl, ZnO, rutile: one node per orbit
    assert cells.num_nodes.tolist() == [5, 8, 8, 4, 6]  # every atom of the file's cell (here conventional), reduced
    batch = units.batch(torch.tensor([3, 1]))  # ZnO (Zn, O), then diamond (C)
    assert batch.batch.tolist() == [0, 0, 1] and batch.atomic_numbers.tolist() == [8, 30, 6]
    assert batch.lattice.shape == (2, 3, 3) and batch.site_symmetry.shape == (3, 15)
    drawn = units.random_batch(3, torch.Generator().manual_seed(0))
    assert len(drawn.space_group) == 3 and len(set(drawn.space_group.tolist())) == 3
    assert units.subset(torch.tensor([3, 1])).num_nodes.tolist() == [2, 1]
    with pytest.raises(ValueError, match="size must be positive"):
        units.random_batch(0, torch.Generator())


@pytest.mark.parametrize("name", MODELS)
def test_models_learn_the_tiny_dataset(trained, name):
    model, before, after = trained[name]
    assert model.num_timesteps == 200 and np.isfinite(after)
    assert after < 0.8 * before, f"{name}: evaluation loss {before:.3f} -> {after:.3f} after 200 steps"


@pytest.mark.parametrize("name", MODELS)
def test_every_sampled_crystal_is_a_structure_or_a_counted_failure(trained, name):
    model = trained[name][0]
    generated = model.generate(6, seed=1)
    assert len(generated.structures) + len(generated.failures) == generated.requested == len(generated.nodes) == 6
    assert all(isinstance(structure, Structure) for structure in generated.structures)
    assert len(generated.space_groups) == len(generated.structures) and generated.seconds > 0
    with pytest.warns(UserWarning, match="did not decode") if generated.failures else contextlib.nullcontext():
        structures = model.sample(6, seed=1)
    assert [s.lattice.matrix.tolist() for s in structures] == [s.lattice.matrix.tolist() for s in generated.structures]
    groups = set(model.train_set.space_group.tolist())
    if name == "symmcd":  # groups and node counts from the training crystals only
        assert set(generated.space_groups) <= groups and max(generated.nodes) <= 3
    else:
        assert generated.space_groups == [None] * len(generated.structures) and max(generated.nodes) <= 8
    lengths = np.array([s.lattice.abc for s in generated.structures])  # the clipped x̂₀ keeps cells near the data's
    assert lengths.max() < 20


def _has_symmetry_of(structure: Structure, group_number: int) -> bool:
    """Whether every operation of the group maps the structure onto itself (same element within 1e-3 Å)."""
    group, frac = space_group(group_number), structure.frac_coords
    numbers = np.array([site.specie.Z for site in structure])
    for rotation, translation in zip(group.rotations, group.translations):
        images = frac @ rotation.T + translation
        distances = np.linalg.norm(wrapped_difference(images[:, None] - frac[None]) @ structure.lattice.matrix, axis=-1)
        nearest = distances.argmin(axis=1)
        if distances.min(axis=1).max() > 1e-3 or not np.array_equal(numbers[nearest], numbers):
            return False
    return True


def test_symmcd_decodes_exact_labels_to_crystals_of_their_group_and_samples_hold_their_group(trained):
    model = trained["symmcd"][0]
    data = model.train_set
    exact = SymmCDState(batch=torch.repeat_interleave(torch.arange(len(data)), data.num_nodes),
                        frac_coords=data.frac_coords.float(), space_group=data.space_group,
                        k=lattice_to_k(data.lattice).float(), types=data.atomic_numbers - 1,
                        site_symmetry=data.site_symmetry)  # fmt: skip
    decoded = model._decode(exact)
    assert all(isinstance(structure, Structure) for structure, _ in decoded)
    for structure, group in decoded:
        assert _has_symmetry_of(structure, group) and space_group_number(structure) == group
    generated = model.generate(12, seed=3)
    assert generated.structures, f"no sampled crystal decoded: {generated.failures}"
    assert all(_has_symmetry_of(s, g) for s, g in zip(generated.structures, generated.space_groups))


def test_bad_names_and_knobs_are_one_line_errors(tiny_crystals):
    with pytest.raises(ValueError, match="did you mean Carbon24"):
        SymmCD("Carbon25", **TINY_SYMMCD)
    with pytest.raises(ValueError, match="sampling_steps must lie in"):
        DiffCSP("Carbon24", **{**TINY_CRYSTAL, "sampling_steps": 1001})
    with pytest.raises(ValueError, match="prior must be one of"):
        SymmCD("Carbon24", **{**TINY_SYMMCD, "prior": "uniform"})
    with pytest.raises(TypeError, match="did you mean"):
        DiffCSP("Carbon24", hiden_dim=8)


def test_the_absorbing_prior_trains_and_samples(tiny_crystals):
    model = SymmCD("Carbon24", seed=0, prior="masked", **TINY_SYMMCD).learn(3)
    generated = model.generate(4, seed=0)
    assert len(generated.structures) + len(generated.failures) == 4
    assert model.network.config.type_dim == 95 and model.network.config.site_symmetry_classes == 14


def test_train_py_writes_the_model_samples_and_counts(tiny_crystals, tmp_path):
    hyperparams = {key: str(value) for key, value in TINY_SYMMCD.items()}
    run_dir = train(TrainArgs(algo="symmcd", env="Carbon24", total_timesteps=3, seed=0, n_samples=4, log_dir=tmp_path,
                              hyperparams=hyperparams, progress=False, verbose=0))  # fmt: skip
    results = json.loads((run_dir / "results.json").read_text())
    samples, metrics = results["samples"], results["metrics"]
    assert (run_dir / "model.pt").is_file() and results["num_timesteps"] == 3
    assert samples["requested"] == 4 and len(list((run_dir / "samples").glob("*.cif"))) == samples["decoded"]
    assert samples["nodes_per_crystal"] > 0 and samples["sampling_seconds_per_crystal"] > 0
    assert results["final_eval"]["loss"] > 0 and results["best_eval"]["step"] == 3
    assert SymmCD.load(run_dir / "model.pt").num_timesteps == 3
    assert metrics["num_samples"] + metrics["undecoded"] == 4 and metrics["num_reference"] == 5
    assert 0 <= metrics["struct_valid"] <= 1 and metrics["space_group_match"] is not None
    # the one evaluation command reads the CIFs back and finds the same counts and symmetry
    evaluated = evaluate_main([str(run_dir)])
    assert evaluated["samples"] == samples and json.loads((run_dir / "metrics.json").read_text()) == evaluated
    for key in ("num_samples", "undecoded", "num_space_groups", "non_p1", "space_group_match", "struct_valid"):
        assert evaluated["metrics"][key] == metrics[key], key


def test_the_evaluation_command_fails_in_one_line(tiny_crystals, tmp_path):
    with pytest.raises(SystemExit, match=r"samples\.json not found"):
        evaluate_main([str(tmp_path), "--dataset", "Carbon24"])
    with pytest.raises(SystemExit, match="no dataset"):
        evaluate_main([str(tmp_path)])
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "samples.json").write_text('{"sampled_space_groups": [1], "failures": []}')
    with pytest.raises(SystemExit, match="not a samples index"):
        evaluate_main([str(tmp_path), "--dataset", "Carbon24"])
    (tmp_path / "samples" / "samples.json").write_text(
        '{"sampled_space_groups": [1], "failures": [], "nodes": [1], "seconds": 1.0}'
    )
    with pytest.raises(SystemExit, match="symprec must be a positive"):
        evaluate_main([str(tmp_path), "--dataset", "Carbon24", "--symprec", "0"])
    with pytest.raises(SystemExit, match="1 crystals and 0 failures for 2 sampled"):
        (tmp_path / "samples" / "samples.json").write_text(
            '{"sampled_space_groups": [1], "failures": [], "nodes": [1, 2], "seconds": 1.0}'
        )
        evaluate_main([str(tmp_path), "--dataset", "Carbon24"])
    (tmp_path / "samples" / "samples.json").write_text(
        '{"sampled_space_groups": [1], "failures": [], "nodes": [1], "seconds": 1.0}'
    )
    with pytest.raises(SystemExit, match=r"00000\.cif"):
        evaluate_main([str(tmp_path), "--dataset", "Carbon24"])
