"""Evaluation of generated crystals: the metrics of CDVAE (Xie et al., ICLR 2022, arXiv 2110.06197, §5; reference
txie-93/cdvae `scripts/compute_metrics.py` and `scripts/eval_utils.py`) as DiffCSP (Jiao et al., NeurIPS 2023, arXiv
2309.04475, §4.3) reports them, SymmCD's extra structural rules (reference sibasmarak/SymmCD `scripts/eval_utils.py`
and `scripts/compute_metrics.py`) and symmetry metrics at one spglib tolerance for samples and data alike.

- Validity: structural (every minimum-image distance >= 0.5 Å, volume >= 0.1 Å^3), SymmCD's stricter variant, and
  compositional (SMACT charge neutrality with the Pauling electronegativity test).
- Coverage COV-R / COV-P with the fingerprints of `crystals.fingerprints`.
- Wasserstein distances of density and of the number of elements, valid samples against all test crystals.
- Symmetry: non-P1 share, distinct groups, Jensen-Shannon distance and total variation of the 230-bin space-group
  histograms, top-10 overlap, and the detected-vs-conditioned match rate. SymmCD detected the test set's groups at
  symprec 0.01 but the samples' at 0.1; here `crystals.asu.SYMPREC` (or one stated value) serves both.

The test set's features are cached (`reference_features`): an ``.npz`` loaded without pickle, written atomically, keyed
by dataset, split, symprec, `FEATURES_VERSION` and the source file's SHA-256, in ``$CRYSTALS_CACHE_DIR``.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import smact
from pymatgen.core import Structure
from scipy.spatial.distance import cdist, jensenshannon
from scipy.special import gammaln
from scipy.stats import wasserstein_distance
from smact.screening import pauling_test

from core.io import atomic_write
from crystals.asu import SYMPREC, conventional_cell
from crystals.data import dataset as registered_dataset
from crystals.data import read_crystals, split_path
from crystals.fingerprints import Fingerprints, fingerprint
from crystals.processed import cache_dir

#: Bump when `crystal_features` changes what it computes: every older cache file is then rebuilt.
FEATURES_VERSION = "crystal-features-1"
NUM_SPACE_GROUPS = 230
#: Oxidation-state combinations beyond which a composition fails without being tried (SymmCD and DiffCSP
#: `scripts/eval_utils.py`; CDVAE tried them all).
MAX_OXIDATION_COMBINATIONS = 10**7


@dataclass(frozen=True)
class StructureRules:
    """Structural validity. CDVAE's rule: every pair of atoms at least ``min_distance`` (Å) apart under the minimum
    image, and a volume of at least ``min_volume`` (Å^3). SymmCD's adds: lattice lengths within [``min_length``,
    ``max_length``] (Å) and at most ``max_atoms`` atoms (real carbon crystals exceed 30 atoms, so it is reported
    separately)."""

    min_distance: float = 0.5
    min_volume: float = 0.1
    min_length: float = 1.0
    max_length: float = 40.0
    max_atoms: int = 30

    def __post_init__(self) -> None:
        if not (self.min_distance > 0 and self.min_volume > 0 and 0 < self.min_length < self.max_length):
            raise ValueError(f"StructureRules needs positive distances, volume and 0 < min_length < max_length, got {self}")
        if self.max_atoms < 1:
            raise ValueError(f"max_atoms must be at least 1, got {self.max_atoms}")


@dataclass(frozen=True)
class CoverageThresholds:
    """Coverage cut-offs: Euclidean distance between structure fingerprints and between standardised composition
    fingerprints."""

    structure: float
    composition: float

    def __post_init__(self) -> None:
        if not (self.structure > 0 and self.composition > 0):
            raise ValueError(f"coverage thresholds must be positive, got {self}")


#: CDVAE's cut-offs per dataset (`scripts/compute_metrics.py`, ``COV_Cutoffs``); MP-20's serve its bi/ternary subset.
COVERAGE_THRESHOLDS = {
    "Perov5": CoverageThresholds(0.2, 4.0),
    "Carbon24": CoverageThresholds(0.2, 4.0),
    "MP20BiTernary": CoverageThresholds(0.4, 10.0),
}


def structurally_valid(structure: Structure, rules: StructureRules = StructureRules()) -> bool:
    """CDVAE's structural validity: the volume and every minimum-image distance between two atoms are large enough
    (an empty cell fails, as in SymmCD)."""
    if len(structure) == 0 or not structure.volume >= rules.min_volume:  # also fails a NaN volume
        return False
    if len(structure) < 2:
        return True
    distances = structure.distance_matrix
    np.fill_diagonal(distances, np.inf)
    return bool(distances.min() >= rules.min_distance)


def symmcd_structurally_valid(structure: Structure, rules: StructureRules = StructureRules()) -> bool:
    """SymmCD's structural validity: CDVAE's, plus lattice lengths within bounds and few enough atoms."""
    lengths = structure.lattice.abc
    return (rules.min_length <= min(lengths) and max(lengths) <= rules.max_length and len(structure) <= rules.max_atoms
            and structurally_valid(structure, rules))  # fmt: skip


def compositionally_valid(structure: Structure) -> bool:
    """CDVAE's ``smact_validity`` of the composition reduced by the greatest common divisor of its counts (an empty
    cell fails)."""
    composition = structure.composition.element_composition
    elements = sorted(composition, key=lambda element: element.Z)
    counts = [round(composition[element]) for element in elements]
    if not counts:
        return False
    divisor = math.gcd(*counts)
    return _smact_valid(tuple(element.symbol for element in elements), tuple(count // divisor for count in counts))


@functools.cache
def _smact_valid(symbols: tuple[str, ...], counts: tuple[int, ...]) -> bool:
    """One element, or only metals (an alloy), passes. Otherwise some assignment of oxidation states (SMACT's 2014
    set) must make the composition charge-neutral and pass Pauling's electronegativity test: cations less
    electronegative than anions."""
    if len(symbols) == 1 or all(symbol in smact.metals for symbol in symbols):
        return True
    try:
        elements = [smact.Element(symbol) for symbol in symbols]
    except KeyError:  # smact has no data beyond lawrencium
        return False
    # smact 4.0 defaults to the ICSD-24 oxidation states; CDVAE's smact (2.x) had the set 4.0 keeps as smact14.
    states = [element.oxidation_states_smact14 or [] for element in elements]
    if math.prod(len(options) for options in states) > MAX_OXIDATION_COMBINATIONS:
        return False
    electronegativities = [element.pauling_eneg for element in elements]
    stoichiometries = [(count,) for count in counts]
    for combination in itertools.product(*states):
        # smact 4.0 returns the list of neutral ratios; smact 2.x, which CDVAE unpacks, returned (any, ratios)
        neutral = smact.neutral_ratios(combination, stoichs=stoichiometries, threshold=max(counts))
        if neutral and _pauling_passes(combination, electronegativities):
            return True
    return False


def _pauling_passes(oxidation_states: tuple[int, ...], electronegativities: list[float | None]) -> bool:
    try:
        return bool(pauling_test(oxidation_states, electronegativities))
    except TypeError:  # an element without a Pauling electronegativity: CDVAE lets it pass
        return True


def detected_space_group(structure: Structure, symprec: float = SYMPREC) -> int | None:
    """The space group spglib finds at ``symprec`` (Å) the way the data are labelled (`crystals.asu.conventional_cell`),
    or None where the search fails."""
    try:
        return conventional_cell(structure, symprec)[1].number
    except Exception:  # spglib, the Niggli reduction and the cell refinement raise several types on degenerate cells
        return None


@dataclass(frozen=True, eq=False)
class CrystalFeatures:
    """What the metrics need of n crystals, found at one ``symprec`` (Å): both fingerprints, density (g/cm^3, NaN for
    a cell without volume), number of distinct elements, and the detected space group (1 where the search failed:
    ``symmetry_found`` is then False)."""

    symprec: float
    fingerprints: Fingerprints
    density: np.ndarray
    num_elements: np.ndarray
    space_group: np.ndarray
    symmetry_found: np.ndarray

    def __len__(self) -> int:
        return len(self.density)


def crystal_features(structures: Sequence[Structure], symprec: float = SYMPREC, progress: bool = False) -> CrystalFeatures:
    """The features of every crystal. Only cells with finite numbers and at least `StructureRules.min_volume` are
    fingerprinted; the others count as fingerprint failures, as CDVAE does not construct them."""
    if not symprec > 0:
        raise ValueError(f"symprec must be a positive distance in Å, got {symprec}")
    groups = [detected_space_group(structure, symprec) for structure in structures]
    return CrystalFeatures(
        symprec=float(symprec),
        fingerprints=fingerprint([s if _fingerprintable(s) else None for s in structures], progress),
        density=np.array([float(s.density) if s.volume > 0 else np.nan for s in structures], dtype=float),
        num_elements=np.array([len(s.composition.elements) for s in structures], dtype=np.int64),
        space_group=np.array([group or 1 for group in groups], dtype=np.int64),
        symmetry_found=np.array([group is not None for group in groups], dtype=bool),
    )


def _fingerprintable(structure: Structure) -> bool:
    finite = np.all(np.isfinite(structure.lattice.matrix)) and np.all(np.isfinite(structure.frac_coords))
    return bool(len(structure) > 0 and finite and structure.volume >= StructureRules.min_volume)


def reference_features(name: str, split: str = "test", symprec: float = SYMPREC, data_root: str | os.PathLike | None = None,
                       cache_root: str | os.PathLike | None = None, progress: bool = False) -> CrystalFeatures:  # fmt: skip
    """The features of one split of a registered dataset at ``symprec``: loaded from the cache when its key matches,
    else computed (CrystalNN takes ~0.1 s per crystal) and written to the cache atomically."""
    if not symprec > 0:
        raise ValueError(f"symprec must be a positive distance in Å, got {symprec}")
    source = split_path(name, split, data_root)
    key = {"dataset": registered_dataset(name).name, "split": split, "symprec": float(symprec), "version": FEATURES_VERSION,
           "source_sha256": hashlib.sha256(source.read_bytes()).hexdigest()}  # fmt: skip
    path = Path(cache_root or cache_dir()) / f"{registered_dataset(name).folder}-{split}-features-symprec{symprec:g}.npz"
    cached = _load_features(path, key)
    if cached is not None:
        return cached
    features = crystal_features([row.structure for row in read_crystals(source)], symprec, progress)
    atomic_write(path, lambda tmp: _save_features(features, key, tmp))
    return features


def _save_features(features: CrystalFeatures, key: dict[str, Any], path: Path) -> None:
    arrays = {field.name: getattr(features, field.name) for field in fields(features)
              if field.name not in ("symprec", "fingerprints")}  # fmt: skip
    arrays.update({f"fingerprints_{field.name}": getattr(features.fingerprints, field.name)
                   for field in fields(features.fingerprints)})  # fmt: skip
    with open(path, "wb") as file:
        np.savez(file, key=np.array(json.dumps(key, sort_keys=True)), **arrays)


def _load_features(path: Path, key: dict[str, Any]) -> CrystalFeatures | None:
    """The cached features if ``path`` holds them under ``key``; None (with a warning if a file was there) if not."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        found = json.loads(str(arrays.pop("key")))
    except Exception as error:  # a truncated or foreign file (zipfile, numpy and json raise their own types): rebuild
        warnings.warn(f"rebuilding {path}: it does not load ({type(error).__name__}: {error})", stacklevel=3)
        return None
    if found != key:
        warnings.warn(f"rebuilding {path}: its key {found} is not {key}", stacklevel=3)
        return None
    prints = Fingerprints(**{field.name: arrays.pop(f"fingerprints_{field.name}") for field in fields(Fingerprints)})
    return CrystalFeatures(symprec=key["symprec"], fingerprints=prints, **arrays)


def coverage(samples: CrystalFeatures, reference: CrystalFeatures, thresholds: CoverageThresholds,
             undecoded: int = 0) -> tuple[float, float]:  # fmt: skip
    """COV-R (the share of reference crystals covered by the samples) and COV-P (the share of samples covered by the
    reference), as CDVAE's `compute_cov` computes them: a crystal is covered when its nearest crystal of the other set
    in structure fingerprint is within the structure cut-off and its nearest in composition fingerprint within the
    composition cut-off (the two nearest need not be the same crystal). Crystals without fingerprints are misses, in
    both denominators, and so are the ``undecoded`` samples (sampled but not turned into a crystal)."""
    gen, ref = samples.fingerprints, reference.fingerprints
    ref_structure, ref_composition = ref.structure[ref.ok], ref.composition[ref.ok]
    gen_structure, gen_composition = gen.structure[gen.ok], gen.composition[gen.ok]
    nearest_structure = np.full(len(ref_structure), np.inf)
    nearest_composition = np.full(len(ref_structure), np.inf)
    covered_samples = 0
    chunk = 2048  # rows of samples per distance matrix, to bound memory on 10,000 x 10,000 comparisons
    for start in range(0, len(gen_structure) if len(ref_structure) else 0, chunk):
        structure = cdist(gen_structure[start : start + chunk], ref_structure)
        composition = cdist(gen_composition[start : start + chunk], ref_composition)
        covered = (structure.min(axis=1) <= thresholds.structure) & (composition.min(axis=1) <= thresholds.composition)
        covered_samples += int(covered.sum())
        nearest_structure = np.minimum(nearest_structure, structure.min(axis=0))
        nearest_composition = np.minimum(nearest_composition, composition.min(axis=0))
    covered_reference = (nearest_structure <= thresholds.structure) & (nearest_composition <= thresholds.composition)
    return float(covered_reference.sum() / len(ref)), float(covered_samples / (len(gen) + undecoded))


def distribution_distances(samples: CrystalFeatures, valid: np.ndarray, reference: CrystalFeatures, count: int = 1000,
                           seed: int = 0) -> dict[str, float | int]:  # fmt: skip
    """Wasserstein distances of density and of the number of elements between ``count`` random valid samples (all of
    them if fewer; CDVAE's `GenEval` refuses fewer than 1,000) and all reference crystals."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    valid_indices = np.flatnonzero(valid)
    chosen = np.random.default_rng(seed).choice(valid_indices, size=min(count, len(valid_indices)), replace=False)
    if len(chosen) == 0:
        return {"wdist_density": math.nan, "wdist_num_elements": math.nan, "distribution_samples": 0}
    return {
        "wdist_density": float(wasserstein_distance(samples.density[chosen], reference.density)),
        "wdist_num_elements": float(wasserstein_distance(samples.num_elements[chosen], reference.num_elements)),
        "distribution_samples": len(chosen),
    }


def space_group_histogram(groups: np.ndarray) -> np.ndarray:
    """The share of crystals in each of the 230 space groups (index 0 is P1)."""
    groups = np.asarray(groups, dtype=np.int64)
    if len(groups) == 0 or groups.min() < 1 or groups.max() > NUM_SPACE_GROUPS:
        raise ValueError(f"space groups must be a non-empty list of numbers in 1..{NUM_SPACE_GROUPS}")
    return np.bincount(groups - 1, minlength=NUM_SPACE_GROUPS) / len(groups)


def _top_groups(histogram: np.ndarray, k: int = 10) -> set[int]:
    """The (up to) ``k`` most frequent groups present; ties go to the lower group number."""
    order = np.lexsort((np.arange(len(histogram)), -histogram))
    return {int(i) + 1 for i in order[:k] if histogram[i] > 0}


def space_group_metrics(sample_groups: np.ndarray, reference_groups: np.ndarray,
                        conditioned: np.ndarray | None = None) -> dict[str, float | int | None]:  # fmt: skip
    """Symmetry of the samples against the reference: non-P1 shares, numbers of distinct groups, the Jensen-Shannon
    distance (base 2, so disjoint histograms give 1; SymmCD's natural-log value is this times sqrt(ln 2)) and total
    variation of the 230-bin histograms, the share of the reference's top-10 groups among the samples' top 10, and
    the share of samples whose detected group is the ``conditioned`` one (None if not conditioned); and both sets'
    counts per group present (``{"number": count}``, string keys as JSON keeps them), for histograms."""
    sample_histogram, reference_histogram = space_group_histogram(sample_groups), space_group_histogram(reference_groups)
    top_reference = _top_groups(reference_histogram)
    match = None
    if conditioned is not None:
        if len(conditioned) != len(sample_groups):
            raise ValueError(f"conditioned has {len(conditioned)} groups for {len(sample_groups)} samples")
        match = float(np.mean(np.asarray(sample_groups) == np.asarray(conditioned)))
    return {
        "non_p1": float(1.0 - sample_histogram[0]),
        "reference_non_p1": float(1.0 - reference_histogram[0]),
        "num_space_groups": int(np.count_nonzero(sample_histogram)),
        "reference_num_space_groups": int(np.count_nonzero(reference_histogram)),
        "reference_num_space_groups_same_size": expected_distinct(reference_groups, len(sample_groups)),
        "space_group_js": float(jensenshannon(sample_histogram, reference_histogram, base=2)),
        "space_group_tv": float(0.5 * np.abs(sample_histogram - reference_histogram).sum()),
        "top10_overlap": len(_top_groups(sample_histogram) & top_reference) / len(top_reference),
        "space_group_match": match,
        "space_group_counts": _counts(sample_groups),
        "reference_space_group_counts": _counts(reference_groups),
    }


def expected_distinct(groups: np.ndarray, size: int) -> float:
    """The expected number of distinct groups among ``size`` crystals drawn without replacement from ``groups``:
    Σ_g 1 − C(N − c_g, size) / C(N, size), so that a sample's count is compared with the data's at its own size (the
    count grows with the number of crystals)."""
    _, counts = np.unique(np.asarray(groups), return_counts=True)
    total = counts.sum()
    if size >= total:
        return float(len(counts))
    possible = total - counts >= size  # elsewhere the group cannot be missed
    rest = np.maximum(total - counts - size, 0)
    log_absent = gammaln(total - counts + 1) - gammaln(rest + 1) - gammaln(total + 1) + gammaln(total - size + 1)
    absent = np.where(possible, np.exp(log_absent), 0.0)
    return float(np.sum(1.0 - absent))


def _counts(groups: np.ndarray) -> dict[str, int]:
    numbers, counts = np.unique(np.asarray(groups, dtype=np.int64), return_counts=True)
    return {str(number): int(count) for number, count in zip(numbers, counts)}


def evaluate_crystals(samples: Sequence[Structure], test: CrystalFeatures | Sequence[Structure], dataset: str, *,
                      symprec: float = SYMPREC, rules: StructureRules = StructureRules(),
                      thresholds: CoverageThresholds | None = None,
                      conditioned_space_groups: Sequence[int] | None = None, num_distribution_samples: int = 1000,
                      undecoded: int = 0, seed: int = 0, progress: bool = False) -> dict[str, Any]:  # fmt: skip
    """Every metric of generated ``samples`` against the ``test`` crystals (or their cached `reference_features`),
    shares as fractions in [0, 1]. ``undecoded`` samples (sampled, but no crystal came out) count as invalid and as
    coverage-precision misses, so validity and COV-P are shares of everything sampled; the symmetry metrics describe
    the crystals that decoded.

    - counts: ``num_samples`` (decoded), ``undecoded``, ``num_reference``, ``fingerprint_failures`` (samples),
      ``reference_fingerprint_failures``,
      ``symmetry_failures`` and ``reference_symmetry_failures`` (group searches that failed: counted as P1),
      ``symprec``;
    - validity: ``struct_valid`` (CDVAE), ``struct_valid_symmcd``, ``comp_valid``, ``valid`` (both CDVAE validities and a
      fingerprint, as in CDVAE);
    - coverage: ``cov_recall``, ``cov_precision`` at the dataset's thresholds (or ``thresholds``), over all samples;
    - ``wdist_density``, ``wdist_num_elements`` over ``distribution_samples`` random valid samples (at most
      ``num_distribution_samples``, drawn with ``seed``) against all test crystals;
    - symmetry over all samples (`space_group_metrics`), ``space_group_match`` if ``conditioned_space_groups`` is given.
    """
    if len(samples) == 0:
        raise ValueError("samples is empty; evaluate at least one crystal")
    if undecoded < 0:
        raise ValueError(f"undecoded must be a count of samples, got {undecoded}")
    name = registered_dataset(dataset).name
    if thresholds is None:
        if name not in COVERAGE_THRESHOLDS:
            raise ValueError(f"no coverage thresholds for {name} (known: {', '.join(COVERAGE_THRESHOLDS)}); "
                             f"pass thresholds=CoverageThresholds(structure, composition)")  # fmt: skip
        thresholds = COVERAGE_THRESHOLDS[name]
    if conditioned_space_groups is not None and len(conditioned_space_groups) != len(samples):
        raise ValueError(f"conditioned_space_groups has {len(conditioned_space_groups)} groups for {len(samples)} samples")
    if num_distribution_samples < 1:
        raise ValueError(f"num_distribution_samples must be at least 1, got {num_distribution_samples}")
    if isinstance(test, CrystalFeatures):
        if test.symprec != symprec:
            raise ValueError(f"the test features were found at symprec {test.symprec}, not {symprec}; use one for both")
        reference = test
    else:
        reference = crystal_features(test, symprec, progress)
    features = crystal_features(samples, symprec, progress)
    struct_valid = np.array([structurally_valid(s, rules) for s in samples])
    comp_valid = np.array([compositionally_valid(s) for s in samples])
    valid = struct_valid & comp_valid & features.fingerprints.ok
    cov_recall, cov_precision = coverage(features, reference, thresholds, undecoded)
    conditioned = None if conditioned_space_groups is None else np.asarray(conditioned_space_groups)
    sampled = len(samples) + undecoded

    def share(passed: np.ndarray) -> float:
        return float(passed.sum() / sampled)

    return {
        "num_samples": len(samples),
        "undecoded": undecoded,
        "num_reference": len(reference),
        "fingerprint_failures": int((~features.fingerprints.ok).sum()),
        "reference_fingerprint_failures": int((~reference.fingerprints.ok).sum()),
        "symmetry_failures": int((~features.symmetry_found).sum()),
        "reference_symmetry_failures": int((~reference.symmetry_found).sum()),
        "symprec": float(symprec),
        "struct_valid": share(struct_valid),
        "struct_valid_symmcd": share(np.array([symmcd_structurally_valid(s, rules) for s in samples])),
        "comp_valid": share(comp_valid),
        "valid": share(valid),
        "cov_recall": cov_recall,
        "cov_precision": cov_precision,
        **distribution_distances(features, valid, reference, num_distribution_samples, seed),
        **space_group_metrics(features.space_group, reference.space_group, conditioned),
    }


def read_cif_folder(folder: str | os.PathLike) -> list[Structure]:
    """The crystals of every ``*.cif`` file in ``folder``, in file-name order; a file that does not parse is an error
    naming it."""
    paths = sorted(Path(folder).glob("*.cif"))
    if not paths:
        raise FileNotFoundError(f"no .cif files in {folder}")
    structures = []
    for path in paths:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pymatgen warns about rounded coordinates and missing symmetry
                structures.append(Structure.from_file(path))
        except Exception as error:  # pymatgen raises several types for a bad CIF
            raise ValueError(f"{path}: the cif does not parse: {type(error).__name__}: {error}") from error
    return structures
