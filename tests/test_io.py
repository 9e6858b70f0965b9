from pathlib import Path

import pytest

from core.io import atomic_write


def test_atomic_write_replaces_whole_file(tmp_path: Path):
    target = tmp_path / "ckpt.zip"
    atomic_write(target, lambda p: p.write_text("old"))
    atomic_write(target, lambda p: p.write_text("new"))
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.zip"]


def test_failed_write_keeps_previous_file_and_no_temp(tmp_path: Path):
    target = tmp_path / "ckpt.zip"
    atomic_write(target, lambda p: p.write_text("old"))

    def crash(path: Path) -> None:
        path.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, crash)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.zip"]
