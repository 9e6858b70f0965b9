"""benchmarks/common.py and benchmarks/render.py: a results file goes where its benchmark is told, is refused from
uncommitted code unless --allow-dirty, and then says so in its section of docs/benchmarks.md."""

from __future__ import annotations

import json

import pytest

import benchmarks.common
from benchmarks.common import ResultsArgs, source_commit, write_results
from benchmarks.render import DIRTY_NOTE, Section


def test_a_dirty_tree_is_refused_in_one_line_naming_allow_dirty(monkeypatch):
    monkeypatch.setattr(benchmarks.common, "git_commit", lambda: "abc123-dirty")
    with pytest.raises(SystemExit) as refusal:
        source_commit(allow_dirty=False)
    message = str(refusal.value)
    assert "--allow-dirty" in message and "\n" not in message
    assert source_commit(allow_dirty=True) == "abc123-dirty"
    monkeypatch.setattr(benchmarks.common, "git_commit", lambda: "abc123")
    assert source_commit(allow_dirty=False) == "abc123"


def test_results_go_to_the_results_dir_and_record_whether_the_tree_was_dirty(tmp_path, monkeypatch):
    monkeypatch.setattr(benchmarks.common, "git_commit", lambda: "abc123-dirty")
    with pytest.raises(SystemExit, match="--allow-dirty"):
        write_results("bench", {"value": 1}, ResultsArgs(results_dir=tmp_path))
    assert not (tmp_path / "bench.json").exists()
    path = write_results("bench", {"value": 1}, ResultsArgs(results_dir=tmp_path, allow_dirty=True))
    record = json.loads(path.read_text())
    assert path == tmp_path / "bench.json" and record["dirty"] is True and record["git_commit"] == "abc123-dirty"
    assert record["value"] == 1 and record["benchmark"] == "bench"


def test_a_section_notes_results_from_uncommitted_code_under_its_heading(tmp_path):
    section = Section(("bench",), lambda result, figures: f"## Bench\n\nvalue {result['value']}")
    clean = {"value": 1, "git_commit": "abc123", "dirty": False}
    assert section.text(clean, tmp_path) == "## Bench\n\nvalue 1"
    assert section.text({**clean, "dirty": True}, tmp_path) == f"## Bench\n\n{DIRTY_NOTE}\n\nvalue 1"
    # files written before "dirty" was recorded say it by their commit
    assert section.text({"value": 1, "git_commit": "abc123-dirty"}, tmp_path).splitlines()[2] == DIRTY_NOTE


def test_a_rejected_record_leaves_the_results_file_even_outside_this_runs_grid(tmp_path, monkeypatch):
    """A benchmark run on a subset of its grid (e.g. one seed) restores every committed record; a record that ``stale``
    rejects (trained with other defaults) must not stay in the rewritten results file beside the new ones, while
    ``rerun`` (e.g. --force) only selects among the grid's trials."""
    from benchmarks.common import BenchmarkGrid, run_grid
    from runner.sweep import Resources, Trial

    monkeypatch.setattr(benchmarks.common, "git_commit", lambda: "abc123")
    out = ResultsArgs(results_dir=tmp_path / "results")
    committed = [{"seed": 0, "defaults": "today"}, {"seed": 1, "defaults": "old"}, {"seed": 2, "defaults": "today"}]
    write_results("bench", {"profile": "cpu", "profile_config": {}, "runs": committed}, out)
    grid = BenchmarkGrid(name="bench", out=out, profile="cpu", settings={}, sweep_dir=tmp_path / "sweep",
                         trials=[Trial("seed0", {})], run=lambda config: {}, record_name=lambda r: f"seed{r['seed']}",
                         results=lambda runs: {"runs": sorted(runs, key=lambda r: r["seed"])})  # fmt: skip
    finished = run_grid(grid, Resources(), stale=lambda record: record["defaults"] != "today")
    assert finished == [committed[0]]  # its record was restored, nothing ran
    kept = json.loads(out.results_path("bench").read_text())["runs"]
    assert kept == [committed[0], committed[2]]
    run_grid(grid, Resources(), rerun=lambda record: record["seed"] == 2)  # not a trial of this grid: kept
    assert json.loads(out.results_path("bench").read_text())["runs"] == kept
