"""The one atomic writer every job uses: whole file or nothing, never a private or stray file."""

from __future__ import annotations

import os
import stat

import pytest

from leadml._io import atomic_path, check_target


def test_success_replaces_the_target_with_normal_permissions(tmp_path) -> None:
    out = tmp_path / "scores.csv"
    out.write_text("old\n")
    with atomic_path(out) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".scores.csv.")
        tmp.write_text("new\n")
    assert out.read_text() == "new\n"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv"]


@pytest.mark.parametrize("error", [RuntimeError("chunk 3 failed"), KeyboardInterrupt()])
def test_a_failure_keeps_the_old_file_and_leaves_nothing_behind(tmp_path, error) -> None:
    out = tmp_path / "scores.parquet"
    out.write_text("good\n")
    with pytest.raises(type(error)), atomic_path(out) as tmp:
        tmp.write_text("half")
        raise error
    assert out.read_text() == "good\n"
    assert [p.name for p in tmp_path.iterdir()] == ["scores.parquet"]


def test_missing_directory_and_existing_target_are_clear_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        with atomic_path(tmp_path / "nope" / "x.csv", make_parents=False):
            pass
    with atomic_path(tmp_path / "new" / "x.csv") as tmp:  # parents made on request
        tmp.write_text("ok")
    assert (tmp_path / "new" / "x.csv").read_text() == "ok"
    (tmp_path / "y.csv").write_text("")
    with pytest.raises(FileExistsError, match="--overwrite"):
        check_target(tmp_path / "y.csv", overwrite=False)
    assert check_target(tmp_path / "y.csv", overwrite=True) == tmp_path / "y.csv"


def test_a_killed_runs_temporaries_are_removed_by_the_next_write(tmp_path) -> None:
    """`kill -9` during a write left a hidden `.scores.csv.*.tmp` forever (issue 16)."""
    out = tmp_path / "scores.csv"
    stale = tmp_path / ".scores.csv.abc123.tmp"
    stale.write_text("half a file")
    other = tmp_path / ".leads.csv.abc123.tmp"  # another file's temporary: not ours to remove
    other.write_text("x")
    with atomic_path(out) as tmp:
        tmp.write_text("lead_id\n")
    assert not stale.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".leads.csv.abc123.tmp", "scores.csv"]
