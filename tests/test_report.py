"""benchmarks/report.py renders every committed results file, and docs/benchmarks.md states what it renders: the same
sections with the same numbers in the same order (wording, spacing and table alignment may differ)."""

from __future__ import annotations

import re
from pathlib import Path

from benchmarks import report
from benchmarks.common import DEFAULT_RESULTS_DIR

DOCS = Path(__file__).resolve().parents[1] / "docs"
NUMBER = re.compile(r"[-+−]?\d+(?:[.,]\d+)*(?:[eE][-+]?\d+)?")


def facts(markdown: str) -> dict[str, list[str]]:
    """Per section heading, the numbers of its text in order (dates and machine lines included)."""
    sections: dict[str, list[str]] = {}
    current = ""
    for line in markdown.splitlines():
        if line.startswith("#"):
            current = " ".join(line.split())
            sections.setdefault(current, [])
        else:
            sections.setdefault(current, []).extend(NUMBER.findall(line))
    return sections


def test_docs_benchmarks_states_the_report_of_the_committed_results(tmp_path):
    report.write_report(DEFAULT_RESULTS_DIR, tmp_path)
    rendered, committed = facts((tmp_path / "benchmarks.md").read_text()), facts((DOCS / "benchmarks.md").read_text())
    assert list(rendered) == list(committed), "sections differ: run `python -m benchmarks.report` and commit"
    for heading, numbers in rendered.items():
        assert numbers == committed[heading], (
            f"docs/benchmarks.md section {heading!r} is out of date with benchmarks/results/*.json: run "
            "`python -m benchmarks.report` and commit"
        )


def test_the_comparison_ignores_formatting_but_not_numbers():
    base = "# A\n| x | 1.25 |\n## B\ntext 3 of 4\n"
    assert facts(base) == facts("#  A\n|x|1.25|\n## B\nother words 3, then 4\n")
    assert facts(base) != facts("# A\n| x | 1.26 |\n## B\ntext 3 of 4\n")
