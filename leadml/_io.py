"""Atomic file output: a job writes its whole file or nothing."""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "check_target", "exists_error", "remove_stale_temps"]


def exists_error(target: str | Path) -> FileExistsError:
    """The one message for an output that exists and may not be replaced."""
    return FileExistsError(f"{str(target)!r} already exists; pass --overwrite to replace it")


def check_target(
    path: str | Path,
    overwrite: bool,
    *,
    must_be_file: bool = False,
    inputs: Iterable[str | Path | None] = (),
) -> Path:
    """The output path, after refusing to replace an existing file without ``overwrite``.

    The one home of that rule (every writer calls it before doing any work). With
    ``must_be_file`` a directory is refused and the parent directory must exist. An output that
    is one of the run's ``inputs`` (a file, or an existing file inside an input directory such
    as a model bundle or the data folder) is refused even with ``overwrite``.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "leads.csv").write_text("lead_id")
    >>> check_target(d / "leads.csv", True, inputs=[d])
    Traceback (most recent call last):
    ...
    ValueError: --out ... is an input of this run (...); write the output elsewhere (--overwrite never replaces an input)
    """
    p = Path(path)
    here = p.resolve()
    for given in inputs:
        if given is None or "://" in str(given):
            continue
        src = Path(given).resolve()
        if here == src or (src.is_dir() and here.is_relative_to(src) and here.exists()):
            raise ValueError(
                f"--out {str(p)!r} is an input of this run ({str(given)!r}); write the output "
                "elsewhere (--overwrite never replaces an input)"
            )
    if must_be_file and p.is_dir():
        raise IsADirectoryError(f"--out {str(p)!r} is a directory; expected a file name")
    if p.exists() and not overwrite:
        raise exists_error(p)
    if must_be_file and not p.parent.is_dir():
        raise FileNotFoundError(f"output directory {str(p.parent)!r} does not exist")
    return p


def remove_stale_temps(target: Path) -> list[Path]:
    """Remove the hidden temporaries (``.name.xxxx.tmp``) an earlier, killed write of ``target``
    left beside it; returns what was removed. (Two runs writing one file at once are not
    supported anyway: the last rename would win.)"""
    removed = []
    for old in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        if old.is_file():
            old.unlink(missing_ok=True)
            removed.append(old)
    return removed


@contextmanager
def atomic_path(path: str | Path, *, make_parents: bool = True) -> Iterator[Path]:
    """A temporary file beside ``path`` that replaces ``path`` only when the block succeeds.

    The temporary sits in the same directory (so the final ``os.replace`` is atomic on one file
    system) and is hidden (``.name.xxxx.tmp``). On any exception, including ``KeyboardInterrupt``,
    it is removed and ``path`` is left as it was. The committed file gets the permissions an
    ordinary write would give it (``mkstemp`` alone would leave it private, 0600).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "scores.csv"
    >>> with atomic_path(out) as tmp:
    ...     _ = tmp.write_text("lead_id\\n1\\n")
    >>> out.read_text()
    'lead_id\\n1\\n'
    """
    target = Path(path)
    if make_parents:
        target.parent.mkdir(parents=True, exist_ok=True)
    elif not target.parent.is_dir():
        raise FileNotFoundError(f"output directory {str(target.parent)!r} does not exist")
    remove_stale_temps(target)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
