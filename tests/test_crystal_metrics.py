"""Evaluation metrics of generated crystals (crystals.metrics, crystals.fingerprints) on hand-checked structures built
with pymatgen: validity, coverage, distribution distances, symmetry metrics, the cached test-set features and the CIF
folder reader. No dataset files are needed."""

import itertools

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from core.config import UnknownKeyError
from crystals import metrics as metrics_module
from crystals.asu import SYMPREC
from crystals.fingerprints import COMPOSITION_FINGERPRINT_SIZE, STRUCTURE_FINGERPRINT_SIZE
from crystals.metrics import (
    CoverageThresholds,
    StructureRules,
    compositionally_valid,
    coverage,
    crystal_features,
    detected_space_group,
    distribution_distances,
    evaluate_crystals,
    expected_distinct,
    read_cif_folder,
    reference_features,
    space_group_metrics,
    structurally_valid,
    symmcd_structurally_valid,
)

SRTIO3 = Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.905), ["Sr", "Ti", "O"],
                                   [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])  # fmt: skip
DIAMOND = Structure.from_spacegroup("Fd-3m", Lattice.cubic(3.567), ["C"], [[0, 0, 0]])
NACL2 = Structure(Lattice.cubic(5.0), ["Na", "Cl", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]])
TOO_CLOSE = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]])  # 0.2 Å apart
NO_VOLUME = Structure(Lattice.cubic(0.4), ["C"], [[0, 0, 0]])  # 0.064 Å^3: not fingerprinted
EMPTY = Structure(Lattice.cubic(4.0), [], [])
PEROVSKITE_THRESHOLDS = CoverageThresholds(0.2, 4.0)


def _random_triclinic(seed: int) -> Structure:
    """Three atoms at random positions in a random oblique cell: no symmetry beyond the identity."""
    rng = np.random.default_rng(seed)
    lattice = Lattice.from_parameters(*rng.uniform(4.5, 6.5, 3), *rng.uniform(70, 110, 3))
    return Structure(lattice, ["Li", "Mg", "O"], rng.uniform(0, 1, (3, 3)))


@pytest.fixture(scope="module")
def features():
    """Features of the hand-checked crystals, computed once (CrystalNN is the slow part)."""
    return {name: crystal_features(crystals) for name, crystals in {
        "srtio3": [SRTIO3], "diamond": [DIAMOND], "both": [SRTIO3, DIAMOND], "srtio3_and_no_volume": [SRTIO3, NO_VOLUME],
    }.items()}  # fmt: skip


def test_structural_validity_cdvae_rule_and_symmcd_extras():
    assert structurally_valid(SRTIO3) and structurally_valid(DIAMOND) and structurally_valid(NACL2)
    assert not structurally_valid(TOO_CLOSE) and not symmcd_structurally_valid(TOO_CLOSE)
    assert not structurally_valid(NO_VOLUME)
    supercell = SRTIO3.make_supercell([2, 2, 2], in_place=False)  # 40 atoms: valid for CDVAE, too many for SymmCD
    assert structurally_valid(supercell) and not symmcd_structurally_valid(supercell)
    long_cell = Structure(Lattice.tetragonal(4.0, 41.0), ["C"], [[0, 0, 0]])
    assert structurally_valid(long_cell) and not symmcd_structurally_valid(long_cell)
    assert symmcd_structurally_valid(long_cell, StructureRules(max_length=50.0))
    assert structurally_valid(TOO_CLOSE, StructureRules(min_distance=0.1))
    with pytest.raises(ValueError, match="min_length < max_length"):
        StructureRules(min_length=50.0)


def test_compositional_validity_smact(monkeypatch):
    assert compositionally_valid(SRTIO3)  # Sr2+ Ti4+ 3 O2-
    assert compositionally_valid(DIAMOND)  # one element
    assert compositionally_valid(Structure(Lattice.cubic(3.0), ["Cu", "Zn"], [[0, 0, 0], [0.5, 0.5, 0.5]]))  # alloy
    assert not compositionally_valid(NACL2)  # Na+ cannot balance two Cl-
    assert compositionally_valid(SRTIO3.make_supercell([1, 1, 2], in_place=False))  # reduced to SrTiO3 first
    monkeypatch.setattr(metrics_module, "MAX_OXIDATION_COMBINATIONS", 1)
    metrics_module._smact_valid.cache_clear()
    try:
        assert not compositionally_valid(SRTIO3)  # too many oxidation-state combinations: fails untried
    finally:
        metrics_module._smact_valid.cache_clear()


def test_detected_space_groups_and_the_p1_share_of_a_random_triclinic_cell():
    assert detected_space_group(SRTIO3) == 221 and detected_space_group(DIAMOND) == 227
    triclinic = [_random_triclinic(seed) for seed in range(3)]
    assert [detected_space_group(s) for s in triclinic] == [1, 1, 1]
    result = space_group_metrics(np.array([1, 1, 1, 221]), np.array([221, 227]))
    assert result["non_p1"] == 0.25 and result["reference_non_p1"] == 1.0 and result["num_space_groups"] == 2


def test_fingerprints_have_the_reference_sizes(features):
    prints = features["both"].fingerprints
    assert prints.structure.shape == (2, STRUCTURE_FINGERPRINT_SIZE)
    assert prints.composition.shape == (2, COMPOSITION_FINGERPRINT_SIZE) and prints.ok.all()
    assert np.isfinite(prints.structure).all() and np.isfinite(prints.composition).all()
    assert features["both"].space_group.tolist() == [221, 227] and features["both"].num_elements.tolist() == [3, 1]
    assert features["both"].density == pytest.approx([SRTIO3.density, DIAMOND.density])


def test_coverage_of_a_set_against_itself_and_against_a_far_set(features):
    assert coverage(features["both"], features["both"], PEROVSKITE_THRESHOLDS) == (1.0, 1.0)
    assert coverage(features["srtio3"], features["diamond"], PEROVSKITE_THRESHOLDS) == (0.0, 0.0)
    assert coverage(features["srtio3"], features["both"], PEROVSKITE_THRESHOLDS) == (0.5, 1.0)
    # a crystal without a fingerprint is a miss in the denominator
    assert not features["srtio3_and_no_volume"].fingerprints.ok[1]
    assert coverage(features["srtio3_and_no_volume"], features["srtio3"], PEROVSKITE_THRESHOLDS) == (1.0, 0.5)
    assert coverage(features["srtio3"], features["srtio3_and_no_volume"], PEROVSKITE_THRESHOLDS) == (0.5, 1.0)


def test_space_group_histogram_distances():
    same = space_group_metrics(np.array([221, 221, 227]), np.array([227, 221, 221]))
    assert same["space_group_js"] == pytest.approx(0.0, abs=1e-12) and same["space_group_tv"] == 0.0
    assert same["top10_overlap"] == 1.0 and same["space_group_match"] is None
    disjoint = space_group_metrics(np.array([1, 2]), np.array([221, 227]))
    assert disjoint["space_group_js"] == pytest.approx(1.0) and disjoint["space_group_tv"] == pytest.approx(1.0)
    assert disjoint["top10_overlap"] == 0.0
    matched = space_group_metrics(np.array([221, 1, 227]), np.array([221]), conditioned=np.array([221, 225, 227]))
    assert matched["space_group_match"] == pytest.approx(2 / 3) and matched["top10_overlap"] == 1.0
    assert matched["space_group_counts"] == {"1": 1, "221": 1, "227": 1}
    assert matched["reference_space_group_counts"] == {"221": 1}
    with pytest.raises(ValueError, match=r"1\.\.230"):
        space_group_metrics(np.array([0]), np.array([1]))


def test_the_expected_number_of_groups_at_a_sample_size_matches_enumeration():
    groups = np.array([1, 1, 1, 2, 2, 3, 4, 4, 4, 4])
    for size in (1, 3, 6):
        exact = np.mean([len(set(chosen)) for chosen in itertools.combinations(groups, size)])
        assert expected_distinct(groups, size) == pytest.approx(exact)
    assert expected_distinct(groups, 10) == expected_distinct(groups, 50) == 4.0
    assert space_group_metrics(np.array([1, 2, 3]), groups)["reference_num_space_groups_same_size"] == pytest.approx(
        expected_distinct(groups, 3)
    )


def test_distribution_distances_use_at_most_count_valid_samples(features):
    both = features["both"]
    result = distribution_distances(both, np.array([True, True]), both, count=1000)
    assert result == {"wdist_density": 0.0, "wdist_num_elements": 0.0, "distribution_samples": 2}
    result = distribution_distances(both, np.array([True, False]), features["diamond"], count=1)
    assert result["distribution_samples"] == 1 and result["wdist_num_elements"] == 2.0
    assert np.isnan(distribution_distances(both, np.array([False, False]), both)["wdist_density"])


def test_evaluate_crystals_reports_every_metric(features):
    samples = [SRTIO3, DIAMOND, TOO_CLOSE, NACL2]
    result = evaluate_crystals(samples, features["both"], "Perov5", conditioned_space_groups=[221, 227, 1, 1])
    assert result["num_samples"] == 4 and result["num_reference"] == 2 and result["symprec"] == SYMPREC
    assert result["struct_valid"] == 0.75 and result["struct_valid_symmcd"] == 0.75 and result["comp_valid"] == 0.75
    assert result["valid"] == 0.5 and result["fingerprint_failures"] == 0 and result["symmetry_failures"] == 0
    assert result["reference_symmetry_failures"] == 0 and result["reference_fingerprint_failures"] == 0
    assert result["cov_recall"] == 1.0 and result["cov_precision"] == 0.5  # NaCl-like samples are far from both
    assert result["distribution_samples"] == 2 and result["wdist_density"] == 0.0
    assert result["space_group_match"] == 0.5 and result["reference_non_p1"] == 1.0
    result = evaluate_crystals([SRTIO3, EMPTY], [SRTIO3], "Perov5")  # test crystals given as structures
    assert result["cov_recall"] == 1.0 and result["cov_precision"] == 0.5 and result["fingerprint_failures"] == 1
    assert result["struct_valid"] == 0.5 and result["comp_valid"] == 0.5 and result["symmetry_failures"] == 1


def test_undecoded_samples_count_as_invalid_and_uncovered(features):
    result = evaluate_crystals([SRTIO3, DIAMOND], features["both"], "Perov5", undecoded=2)
    assert result["num_samples"] == 2 and result["undecoded"] == 2
    assert result["struct_valid"] == 0.5 and result["valid"] == 0.5 and result["cov_precision"] == 0.5
    assert result["cov_recall"] == 1.0 and result["non_p1"] == 1.0  # symmetry of the crystals that decoded
    assert coverage(features["both"], features["both"], PEROVSKITE_THRESHOLDS, undecoded=6) == (1.0, 0.25)


def test_evaluate_crystals_rejects_bad_arguments(features):
    reference = features["both"]
    with pytest.raises(UnknownKeyError, match="Perov5"):
        evaluate_crystals([SRTIO3], reference, "Perov55")
    with pytest.raises(ValueError, match="no coverage thresholds for MPTS52"):
        evaluate_crystals([SRTIO3], reference, "MPTS52")
    with pytest.raises(ValueError, match=r"symprec 0\.1, not 0\.01"):
        evaluate_crystals([SRTIO3], reference, "Perov5", symprec=0.01)
    with pytest.raises(ValueError, match="2 groups for 1 samples"):
        evaluate_crystals([SRTIO3], reference, "Perov5", conditioned_space_groups=[221, 221])
    with pytest.raises(ValueError, match="samples is empty"):
        evaluate_crystals([], reference, "Perov5")
    with pytest.raises(ValueError, match="undecoded must be a count"):
        evaluate_crystals([SRTIO3], reference, "Perov5", undecoded=-1)
    with pytest.raises(ValueError, match="num_distribution_samples"):
        evaluate_crystals([SRTIO3], reference, "Perov5", num_distribution_samples=0)
    with pytest.raises(ValueError, match="thresholds must be positive"):
        CoverageThresholds(0.0, 4.0)


def _write_split(path, crystals):
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({"material_id": [str(i) for i in range(len(crystals))], "cif": [s.to(fmt="cif") for s in crystals]})
    frame.to_csv(path)


def test_reference_features_are_cached_and_rebuilt_when_the_key_changes(tmp_path, monkeypatch):
    data, cache = tmp_path / "data", tmp_path / "cache"
    _write_split(data / "perov_5" / "test.csv", [SRTIO3, DIAMOND])
    builds = []
    compute = metrics_module.crystal_features
    monkeypatch.setattr(metrics_module, "crystal_features", lambda *a: builds.append(a[1]) or compute(*a))
    first = reference_features("Perov5", data_root=data, cache_root=cache)
    again = reference_features("Perov5", data_root=data, cache_root=cache)
    assert len(builds) == 1 and len(again) == 2 and again.symprec == SYMPREC  # same key: loaded
    assert np.array_equal(again.fingerprints.structure, first.fingerprints.structure)
    assert again.space_group.tolist() == [221, 227] and again.fingerprints.ok.all()
    monkeypatch.setattr(metrics_module, "FEATURES_VERSION", "newer")
    with pytest.warns(UserWarning, match="its key"):
        reference_features("Perov5", data_root=data, cache_root=cache)
    _write_split(data / "perov_5" / "test.csv", [SRTIO3])  # another source file
    with pytest.warns(UserWarning, match="its key"):
        assert len(reference_features("Perov5", data_root=data, cache_root=cache)) == 1
    (path,) = cache.iterdir()
    path.write_bytes(b"not an npz file")
    with pytest.warns(UserWarning, match="does not load"):
        reference_features("Perov5", data_root=data, cache_root=cache)
    reference_features("Perov5", symprec=0.01, data_root=data, cache_root=cache)  # another symprec, another file
    assert builds == [SYMPREC] * 4 + [0.01] and len(list(cache.iterdir())) == 2


def test_read_cif_folder(tmp_path):
    for name, structure in {"00": SRTIO3, "01": DIAMOND}.items():
        structure.to(filename=str(tmp_path / f"{name}.cif"))
    crystals = read_cif_folder(tmp_path)
    assert [s.composition.reduced_formula for s in crystals] == ["SrTiO3", "C"]
    (tmp_path / "02.cif").write_text("data_broken\n_cell_length_a 3\n")
    with pytest.raises(ValueError, match=r"02\.cif: the cif does not parse"):
        read_cif_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no \.cif files"):
        read_cif_folder(tmp_path / "empty")
