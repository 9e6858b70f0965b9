"""benchmarks/report.py renders every committed results file, and docs/benchmarks.md is exactly its output."""

from __future__ import annotations

from pathlib import Path

from benchmarks import report

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_docs_benchmarks_is_the_report_of_the_committed_results(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "DOCS", tmp_path)
    monkeypatch.setattr(report, "FIGURES", tmp_path / "figures")
    report.main()
    rendered = (tmp_path / "benchmarks.md").read_text()
    assert rendered == (DOCS / "benchmarks.md").read_text(), (
        "docs/benchmarks.md is out of date with benchmarks/results/*.json: run `python -m benchmarks.report` and commit"
    )
