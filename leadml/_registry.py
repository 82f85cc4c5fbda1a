"""Champions from a local SQLite MLflow registry, read without importing MLflow.

``import mlflow`` and its SQLAlchemy store take about three seconds, more than loading both
bundles; a nightly job that only needs "which version is ``champion`` and where are its files"
does not need them. :func:`find_local_version` answers that for the common local setup (the
default ``sqlite:///mlflow.db`` registry with artifacts on the same disk) by reading the
registry's two tables read-only with :mod:`sqlite3`:

- ``registered_model_aliases`` (``name, alias, version``) resolves ``models:/NAME@ALIAS``;
- ``model_versions`` (``name, version, status, current_stage, storage_location``) gives the
  version's artifact directory, whose ``artifacts/bundle`` is the leadml bundle (checked by its
  own checksums when loaded).

Anything else returns ``None`` and the caller goes through MLflow, which then also words the
errors: a remote or non-SQLite registry, a ``runs:/`` URI, an unknown alias or version, a
version not ``READY`` or deleted, artifacts that are not a local directory, or a database whose
tables do not look as expected. So this is a shortcut with MLflow as the reference, never a
second implementation of what MLflow would refuse.
"""

from __future__ import annotations

import os
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

__all__ = ["LocalVersion", "find_local_version", "registry_uri"]

#: MLflow's default tracking (and so registry) URI when none is configured.
DEFAULT_URI = "sqlite:///mlflow.db"
_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))/?$")


@dataclass(frozen=True)
class LocalVersion:
    """A registered model version found in a local registry."""

    name: str
    version: int
    bundle: Path

    @property
    def label(self) -> str:
        """``leadml-prospect:3``, as :func:`leadml.tracking.load_registered_model` names it."""
        return f"{self.name}:{self.version}"


def registry_uri(configured: str | None) -> str:
    """The registry URI MLflow would use: ``$MLFLOW_REGISTRY_URI``, else the tracking URI
    (``$MLFLOW_TRACKING_URI``, else ``configured``, else MLflow's default)."""
    tracking = os.environ.get("MLFLOW_TRACKING_URI") or configured or DEFAULT_URI
    return os.environ.get("MLFLOW_REGISTRY_URI") or tracking


def _sqlite_path(uri: str) -> Path | None:
    # SQLAlchemy's form: sqlite:///relative.db and sqlite:////absolute.db.
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def _local_dir(location: str) -> Path | None:
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    return Path(location) if parsed.scheme == "" else None


def find_local_version(uri: str, configured: str | None = None) -> LocalVersion | None:
    """The bundle directory of ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` in a local
    SQLite registry, or ``None`` when MLflow must answer (module docs).

    Examples
    --------
    >>> find_local_version("runs:/abc/model") is None
    True
    """
    m = _MODEL_URI.match(uri)
    if m is None:
        return None
    db = _sqlite_path(registry_uri(configured))
    if db is None or not db.is_file():
        return None
    name = m["name"]
    try:
        con = sqlite3.connect(f"file:{db.resolve()}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        with con:
            if m["alias"] is not None:
                row = con.execute(
                    "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?",
                    (name, m["alias"]),
                ).fetchone()
                if row is None:
                    return None
                version = int(row[0])
            else:
                version = int(m["version"])
            row = con.execute(
                "SELECT status, current_stage, storage_location FROM model_versions "
                "WHERE name = ? AND version = ?",
                (name, version),
            ).fetchone()
    except (sqlite3.Error, ValueError, TypeError):
        return None  # not the schema we know: MLflow decides
    finally:
        con.close()
    if row is None:
        return None
    status, stage, location = row
    if status != "READY" or stage == "Deleted_Internal" or not location:
        return None
    root = _local_dir(str(location))
    if root is None:
        return None
    bundle = root / "artifacts" / "bundle"
    if not bundle.is_dir():
        return None
    return LocalVersion(name, version, bundle)
