"""The crystal data pipeline (crystals/): site-symmetry labels, the lattice k, crystal -> asymmetric unit -> crystal,
the decoder's projection and failures, the CSV reader and the preprocessing cache. No dataset files are needed; one
optional test reads Carbon-24 when the shared data folder is present."""

import gzip
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure

from core.config import UnknownKeyError
from crystals import asu as asu_module
from crystals import processed as processed_module
from crystals.asu import AsymmetricUnit, decompose
from crystals.data import DATA_DIR_ENV, read_crystals, read_split, split_path
from crystals.decode import DecodeError, DecoderConfig, decode
from crystals.groups import space_group
from crystals.lattice import HEXAGONAL_K0, apply_family_mask, crystal_family, family_mask, k_to_lattice, lattice_to_k
from crystals.processed import PREPROCESSING_VERSION, processed_split
from crystals.site_symmetry import SPACE_GROUP_ELEMENTS, SPACE_GROUP_VECTOR_SIZE, SYMBOLS, label_symbols

SRTIO3 = Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.905), ["Sr", "Ti", "O"],
                                   [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])  # fmt: skip
DIAMOND = Structure.from_spacegroup("Fd-3m", Lattice.cubic(3.567), ["C"], [[0, 0, 0]])  # one orbit
WURTZITE = Structure.from_spacegroup("P6_3mc", Lattice.hexagonal(3.25, 5.21), ["Zn", "O"],
                                     [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.382]])  # fmt: skip
RUTILE = Structure.from_spacegroup("P4_2/mnm", Lattice.tetragonal(4.594, 2.959), ["Ti", "O"],
                                   [[0, 0, 0], [0.305, 0.305, 0]])  # fmt: skip
MONOCLINIC = Structure.from_spacegroup("P2_1/c", Lattice.monoclinic(5.1, 6.2, 7.3, 103.0), ["Si", "O", "O"],
                                       [[0.12, 0.23, 0.34], [0.31, 0.05, 0.44], [0.5, 0, 0]])  # fmt: skip
TRICLINIC = Structure.from_spacegroup("P-1", Lattice.from_parameters(4.1, 5.2, 6.3, 80, 95, 105), ["Na", "Cl"],
                                      [[0.12, 0.23, 0.34], [0.31, 0.45, 0.17]])  # fmt: skip
CRYSTALS = {"cubic SrTiO3": SRTIO3, "diamond (one orbit)": DIAMOND, "hexagonal ZnO": WURTZITE,
            "tetragonal rutile": RUTILE, "monoclinic": MONOCLINIC, "triclinic": TRICLINIC}  # fmt: skip
M3M = ("4/m",) * 3 + ("-3",) * 4 + ("2/m",) * 6 + ("-1",) * 2  # the 15 rows of site symmetry m-3m


@pytest.mark.parametrize("name", CRYSTALS)
def test_crystal_to_asymmetric_unit_and_back_reproduces_it(name):
    crystal = CRYSTALS[name]
    decomposition = decompose(crystal.get_primitive_structure())  # from another cell than the conventional one
    decoded = decode(decomposition.asymmetric_unit)
    assert StructureMatcher().fit(crystal, decoded.structure)
    assert decoded.wyckoff_letters == decomposition.wyckoff_letters and decoded.merged_sites == 0
    assert len(decoded.structure) == decomposition.multiplicities.sum() == len(decomposition.conventional)
    assert np.allclose(decoded.projection_distance, 0, atol=1e-6) and not decoded.label_mismatch.any()
    unit = decomposition.asymmetric_unit  # each label (from the tables) is the symmetry of the site itself
    group = space_group(unit.space_group)
    assert all(np.array_equal(group.site_symmetry(x), s) for x, s in zip(unit.frac_coords, unit.site_symmetry))


def test_one_orbit_crystal_has_one_representative_and_decodes_to_its_whole_cell():
    decomposition = decompose(DIAMOND)
    assert decomposition.wyckoff_letters == ("a",) and list(decomposition.multiplicities) == [8]
    assert len(decomposition.asymmetric_unit.atomic_numbers) == 1
    assert len(decode(decomposition.asymmetric_unit).structure) == 8


def test_site_symmetry_labels_of_hand_checked_sites():
    labels = {int(z): label_symbols(s) for z, s in zip(decompose(SRTIO3).asymmetric_unit.atomic_numbers,
                                                         decompose(SRTIO3).asymmetric_unit.site_symmetry)}  # fmt: skip
    assert labels[22] == labels[38] == M3M  # Ti (1b) and Sr (1a): m-3m
    # O at 3c: 4/mmm with the 4-fold along the axis its two Ti neighbours lie on, 2/m on the two other axes and on
    # the face diagonals perpendicular to that axis, no symmetry (only inversion) elsewhere.
    oxygen = decompose(SRTIO3).asymmetric_unit.frac_coords[2]
    four_fold = int(np.flatnonzero(np.isclose(oxygen, 0))[0])
    assert labels[8][four_fold] == "4/m" and sum(symbol == "4/m" for symbol in labels[8]) == 1
    assert sum(symbol == "2/m" for symbol in labels[8]) == 4 and labels[8].count("-1") == 10
    # C in diamond: -43m.
    assert label_symbols(decompose(DIAMOND).asymmetric_unit.site_symmetry[0]) == ("-4",) * 3 + ("3",) * 4 + ("m",) * 6 + (
        "1", "1")  # fmt: skip
    # Zn in wurtzite (2b of P6_3mc): 3m., the 3-fold along c and mirrors normal to a, b and a + b.
    zinc = label_symbols(decompose(WURTZITE).asymmetric_unit.site_symmetry[1])
    assert (zinc[0], zinc[1], zinc[2], zinc[8]) == ("m", "m", "3", "m") and zinc.count("1") == 11
    # A general position of P2_1/c has symmetry 1; its 2a site -1 (inversion holds on every row).
    assert set(map(label_symbols, decompose(MONOCLINIC).asymmetric_unit.site_symmetry)) == {("1",) * 15, ("-1",) * 15}


def test_wyckoff_tables_labels_and_space_group_vectors():
    pm3m, fd3m, hexagonal, p21c = space_group(221), space_group(227), space_group(194), space_group(14)
    assert [p.letter for p in pm3m.wyckoff_positions][:3] == ["a", "b", "c"]
    assert pm3m.wyckoff_positions[-1].multiplicity == pm3m.order == 48
    assert np.array_equal(pm3m.wyckoff_positions[0].labels[0], pm3m.wyckoff_positions[1].labels[0])  # 1a, 1b alike
    assert fd3m.hall_number == 526  # origin choice 2, as pyxtal's tables (spglib's default is choice 1)
    assert np.allclose(fd3m.wyckoff_positions[0].offsets[0], 1 / 8)
    assert hexagonal.wyckoff_positions[0].degrees_of_freedom == 0 and hexagonal.wyckoff_positions[-1].degrees_of_freedom == 3

    def elements(group, direction):
        row = group.vector[7:].reshape(15, len(SPACE_GROUP_ELEMENTS))[direction]
        return {SPACE_GROUP_ELEMENTS[i] for i in np.flatnonzero(row)}

    assert p21c.vector.shape == (SPACE_GROUP_VECTOR_SIZE,) == (397,) and p21c.vector[0] == 1  # P centring
    assert elements(p21c, 1) == {"1", "-1", "2_1", "c"} and elements(p21c, 0) == {"1", "-1"}  # P 1 2_1/c 1
    assert {"4_1", "d", "-4"} <= elements(fd3m, 0) and fd3m.vector[2] == 1  # F 4_1/d -3 2/m
    assert {"6_3", "m", "-6"} <= elements(hexagonal, 2) and elements(hexagonal, 13) == {"1", "-1", "2", "c"}
    assert elements(space_group(76), 2) == {"1", "2_1", "4_1"} and elements(space_group(78), 2) == {"1", "2_1", "4_3"}


@pytest.mark.slow
def test_all_230_groups_build_with_distinct_vectors_and_83_distinct_wyckoff_labels():
    groups = [space_group(number) for number in range(1, 231)]
    positions = [position for group in groups for position in group.wyckoff_positions]
    assert len(positions) == 1731 and len({position.labels[0].tobytes() for position in positions}) == 83
    assert len({group.vector.tobytes() for group in groups}) == 230  # enantiomorphs too: 4_1 is not 4_3


@pytest.mark.parametrize(("family", "parameters", "group"), [
    ("triclinic", (4.1, 5.2, 6.3, 80, 95, 105), 2),
    ("monoclinic", (3, 4, 5, 90, 100, 90), 14),
    ("orthorhombic", (3, 4, 5, 90, 90, 90), 62),
    ("tetragonal", (3, 3, 5, 90, 90, 90), 136),
    ("hexagonal", (3, 3, 5, 90, 90, 120), 194),
    ("cubic", (4, 4, 4, 90, 90, 90), 225),
])  # fmt: skip
def test_lattice_k_round_trips_every_family_and_its_mask_fixes_the_right_components(family, parameters, group):
    lattice = Lattice.from_parameters(*parameters)
    k = lattice_to_k(torch.tensor(lattice.matrix))
    back = Lattice(k_to_lattice(k).numpy())
    assert np.allclose(back.abc, lattice.abc, atol=1e-9) and np.allclose(back.angles, lattice.angles, atol=1e-7)
    assert crystal_family(group) == family
    mask, bias = family_mask(torch.tensor([group]))
    fixed = {"triclinic": [], "monoclinic": [0, 2], "orthorhombic": [0, 1, 2], "tetragonal": [0, 1, 2, 3],
             "hexagonal": [0, 1, 2, 3], "cubic": [0, 1, 2, 3, 4]}[family]  # fmt: skip
    assert torch.nonzero(mask[0] == 0).flatten().tolist() == fixed
    assert torch.allclose(k[fixed], bias[0, fixed], atol=1e-12)  # the cell obeys its family's constraints
    assert torch.allclose(apply_family_mask(k[None], torch.tensor([group]))[0], k, atol=1e-12)
    # A random k, masked, is a lattice of the family.
    random_k = apply_family_mask(torch.randn(1, 6, dtype=torch.float64), torch.tensor([group]))
    masked = Lattice(k_to_lattice(random_k)[0].numpy())
    constrained = {"monoclinic": [0, 2], "orthorhombic": [0, 1, 2], "tetragonal": [0, 1, 2], "hexagonal": [0, 1],
                   "cubic": [0, 1, 2]}.get(family, [])  # fmt: skip
    assert np.allclose(np.array(masked.angles)[constrained], np.array(lattice.angles)[constrained])


def test_hexagonal_bias_is_gamma_120():
    assert math.isclose(math.tanh(2 * HEXAGONAL_K0), -0.5)
    with pytest.raises(ValueError, match=r"1\.\.230"):
        crystal_family(231)
    with pytest.raises(ValueError, match="singular"):
        lattice_to_k(torch.zeros(3, 3))


def _noisy(asu: AsymmetricUnit, scale: float, seed: int = 0) -> AsymmetricUnit:
    rng = np.random.default_rng(seed)
    coords = asu.frac_coords + scale * rng.standard_normal(asu.frac_coords.shape)
    return AsymmetricUnit(asu.space_group, asu.lattice, asu.atomic_numbers, coords, asu.site_symmetry)


def test_decoder_projects_a_perturbed_coordinate_onto_the_nearest_legal_position():
    for crystal in (SRTIO3, WURTZITE, RUTILE):
        decoded = decode(_noisy(decompose(crystal).asymmetric_unit, 0.01))
        assert StructureMatcher().fit(crystal, decoded.structure)  # special coordinates restored, free ones kept
        assert 0 < decoded.projection_distance.max() < 0.5
    # Equal labels (Sr at 1a, Ti at 1b): position decides. Put Ti's coordinate next to 1a: it goes to 1a and lands
    # on Sr, which the decoder reports instead of dropping an atom.
    unit = decompose(SRTIO3).asymmetric_unit
    coords = np.array([[0, 0, 0], [0.02, 0.98, 0.01], unit.frac_coords[2]])
    swapped = AsymmetricUnit(221, unit.lattice, unit.atomic_numbers, coords, unit.site_symmetry)
    with pytest.raises(DecodeError, match="Z=38 and Z=22 coincide"):
        decode(swapped)


def test_decoder_fails_loudly_on_coinciding_sites_and_merges_only_when_asked():
    unit = decompose(DIAMOND).asymmetric_unit
    twice = AsymmetricUnit(227, unit.lattice, np.array([6, 6]), np.array([[0.13, 0.12, 0.12], [0.87, 0.88, 0.88]]),
                           np.repeat(unit.site_symmetry, 2, axis=0))  # two representatives of one orbit  # fmt: skip
    with pytest.raises(DecodeError, match="coincide"):
        decode(twice)
    merged = decode(twice, DecoderConfig(merge_duplicates=True))
    assert len(merged.structure) == 8 and merged.merged_sites == 8
    # A general-position label with a coordinate on a special point: its orbit collapses.
    general = space_group(227).wyckoff_positions[-1].labels[:1]
    with pytest.raises(DecodeError, match="special point"):
        decode(AsymmetricUnit(227, unit.lattice, np.array([6]), np.array([[0.125, 0.125, 0.125]]), general))
    # A label no position has (here 4-fold rows in P2_1/c) maps to the nearest unless bounded.
    mono = decompose(MONOCLINIC).asymmetric_unit
    odd = mono.site_symmetry.copy()
    odd[:, :3] = SYMBOLS.index("4")
    assert decode(AsymmetricUnit(14, mono.lattice, mono.atomic_numbers, mono.frac_coords, odd)).label_mismatch.min() >= 3
    with pytest.raises(DecodeError, match="max_label_mismatch=1"):
        decode(AsymmetricUnit(14, mono.lattice, mono.atomic_numbers, mono.frac_coords, odd),
               DecoderConfig(max_label_mismatch=1))  # fmt: skip
    with pytest.raises(DecodeError, match="empty"):
        decode(AsymmetricUnit(14, mono.lattice, np.zeros(0, int), np.zeros((0, 3)), np.zeros((0, 15), int)))


def test_bad_asymmetric_units_and_configs_are_refused_where_they_enter():
    unit = decompose(SRTIO3).asymmetric_unit
    with pytest.raises(ValueError, match=r"1\.\.230"):
        AsymmetricUnit(0, unit.lattice, unit.atomic_numbers, unit.frac_coords, unit.site_symmetry)
    with pytest.raises(ValueError, match="site_symmetry entries"):
        AsymmetricUnit(221, unit.lattice, unit.atomic_numbers, unit.frac_coords, unit.site_symmetry + 13)
    with pytest.raises(ValueError, match="finite"):
        AsymmetricUnit(221, unit.lattice, unit.atomic_numbers, unit.frac_coords * np.nan, unit.site_symmetry)
    with pytest.raises(ValueError, match="duplicate_tolerance"):
        DecoderConfig(duplicate_tolerance=0)
    with pytest.raises(ValueError, match="symprec"):
        decompose(SRTIO3, symprec=0)


def _cif_csv(path: Path, crystals: dict[str, Structure], bad_row: bool = False) -> Path:
    """A CDVAE-style CSV: an unnamed index column, material_id, cif (P1, written by pymatgen) and a property."""
    import pandas as pd

    frame = pd.DataFrame({"material_id": list(crystals), "cif": [s.to(fmt="cif") for s in crystals.values()],
                          "heat_ref": np.arange(len(crystals), dtype=float)})  # fmt: skip
    if bad_row:
        frame.loc[len(frame)] = ["broken-1", "data_x\n_cell_length_a 3\nloop_\n_atom_site_label\n", 0.0]
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as handle:
            frame.to_csv(handle)
    else:
        frame.to_csv(path)
    return path


def test_csv_reader_reads_plain_and_gzipped_files(tmp_path):
    crystals = {"18517": SRTIO3, "mp-1": WURTZITE}
    for path in (tmp_path / "perov_5" / "val.csv", tmp_path / "mpts_52" / "test.csv.gz"):
        rows = read_crystals(_cif_csv(path, crystals))
        assert [row.material_id for row in rows] == list(crystals)
        assert all(StructureMatcher().fit(row.structure, crystals[row.material_id]) for row in rows)
    assert len(read_split("MPTS52", "test", tmp_path, limit=1)) == 1


def test_bad_name_missing_data_and_corrupt_cif_are_one_line_errors(tmp_path, monkeypatch):
    with pytest.raises(UnknownKeyError, match="did you mean Perov5") as error:
        split_path("Perov", "val", tmp_path)
    assert "\n" not in str(error.value)
    with pytest.raises(UnknownKeyError, match="did you mean val"):
        split_path("Perov5", "vla", tmp_path)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=f"set {DATA_DIR_ENV}") as error:
        read_split("Carbon24", "val")
    assert "\n" not in str(error.value)
    path = _cif_csv(tmp_path / "carbon_24" / "val.csv", {"ok-1": DIAMOND}, bad_row=True)
    with pytest.raises(ValueError, match=r"row 1 \(material_id broken-1\): the cif does not parse") as error:
        read_crystals(path)
    assert "\n" not in str(error.value)


def test_processed_split_is_cached_and_rebuilt_when_its_key_differs(tmp_path, monkeypatch):
    _cif_csv(tmp_path / "data" / "perov_5" / "val.csv", {"1": SRTIO3, "2": RUTILE})
    builds = []
    build = processed_module.build_processed_split
    monkeypatch.setattr(processed_module, "build_processed_split", lambda *a: builds.append(a[2]) or build(*a))
    monkeypatch.setenv(processed_module.CACHE_DIR_ENV, str(tmp_path / "cache"))
    first = processed_split("Perov5", "val", data_root=tmp_path / "data")
    assert len(first) == 2 and first.num_nodes.tolist() == [3, 2] and first.num_atoms.tolist() == [5, 6]
    assert first.lattice_k.shape == (2, 6) and first.site_symmetry.shape == (5, 15) and first.skipped == []
    assert StructureMatcher().fit(decode(first.asymmetric_unit(1)).structure, RUTILE)
    (path,) = (tmp_path / "cache").iterdir()
    assert torch.load(path, weights_only=True)["key"]["version"] == PREPROCESSING_VERSION
    processed_split("Perov5", "val", data_root=tmp_path / "data")
    assert len(builds) == 1  # same key: loaded
    state = torch.load(path, weights_only=True)
    state["key"] = {**state["key"], "version": "older"}
    torch.save(state, path)
    with pytest.warns(UserWarning, match="rebuilding"):
        again = processed_split("Perov5", "val", data_root=tmp_path / "data")
    assert len(builds) == 2 and again.key["version"] == PREPROCESSING_VERSION
    path.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="does not load"):
        processed_split("Perov5", "val", data_root=tmp_path / "data")
    processed_split("Perov5", "val", symprec=0.01, data_root=tmp_path / "data")  # another symprec, another file
    assert len(builds) == 4 and builds[-1]["symprec"] == 0.01 and len(list((tmp_path / "cache").iterdir())) == 2


def test_a_crystal_spglib_cannot_read_is_skipped_with_its_reason(monkeypatch, tmp_path):
    _cif_csv(tmp_path / "perov_5" / "val.csv", {"1": SRTIO3})

    def refuse(structure, symprec):
        raise ValueError("spglib found no space group")

    monkeypatch.setattr(processed_module, "decompose", refuse)
    with pytest.warns(UserWarning, match="did not decompose"):
        split = processed_split("Perov5", "val", data_root=tmp_path, cache_root=tmp_path / "cache")
    assert len(split) == 0 and split.skipped == [["1", "spglib found no space group"]]
    assert asu_module.SYMPREC == 0.1


SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "crystals"


@pytest.mark.skipif(not (SHARED / "carbon_24" / "val.csv").is_file(), reason="the shared crystal data is absent")
def test_carbon24_val_rows_round_trip():
    rows = read_split("Carbon24", "val", SHARED, limit=50)
    matched = sum(StructureMatcher().fit(row.structure, decode(decompose(row.structure).asymmetric_unit).structure)
                  for row in rows)  # fmt: skip
    assert matched == len(rows) == 50
