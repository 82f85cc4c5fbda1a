"""Tables in a database: ``--data`` as a URL, and ``--out-table`` written in one transaction.

URLs (SQLAlchemy form)
    ``duckdb:///crm.duckdb`` (an embedded DuckDB file; ``duckdb:////abs/path.duckdb``) and
    ``postgresql://user:password@host:5432/db`` (also ``postgresql+psycopg://`` and
    ``postgres://``; the driver is always psycopg 3). Both need ``pip install 'leadml[sql]'``;
    neither library is imported until a URL is used. Messages never show the password.

Reading
    A table by name (``schema.table`` allowed; SQLAlchemy's quoting rule: an all-lowercase name
    matches regardless of case, a name with capitals is matched exactly), or the result of a
    query. DuckDB files are opened read-only, so reading never creates or changes one.

Writing (:class:`TableWriter`, :func:`write_table`)
    Chunks are collected, then written in **one transaction**: ``CREATE TABLE
    <name>__leadml_staging_<hex>``, the rows, ``DROP TABLE <name>`` (if it exists) and ``ALTER
    TABLE ... RENAME`` to ``<name>``, then ``COMMIT``. DDL is transactional in PostgreSQL and in
    DuckDB, so a reader sees the old table or the new one, never half of one, and a run that
    fails (or is killed) at any point leaves the previous table as it was and no staging table
    behind: the server rolls the whole transaction back. (Grants, indexes and views on the old
    table do not carry over to the new one; a view that depends on it makes the ``DROP`` fail and
    the run with it, with the old table intact.)

Types
    ``lead_id`` is text; naive timestamps (UTC by the contract) and aware ones become
    ``timestamp with time zone`` in UTC; integers ``bigint``, floats ``double precision``,
    booleans ``boolean``, categoricals and strings ``text``; ``json_columns`` (the scores'
    ``reasons``) are JSON (``jsonb`` in PostgreSQL, ``JSON`` in DuckDB), NaN written as null.
"""

from __future__ import annotations

import json
import math
import re
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from leadml._json import jsonable

__all__ = [
    "TableWriter",
    "check_table_target",
    "is_database_url",
    "mask_url",
    "open_database",
    "write_table",
]

_INSTALL = "pip install 'leadml[sql]'"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")
#: PostgreSQL truncates identifiers to 63 bytes; the staging suffix needs 24 of them.
_MAX_NAME = 63 - len("__leadml_staging_") - 8


#: Schemes read as databases: the two supported, and common others that get a clear refusal.
#: Any other ``scheme://`` (``s3a://``, ``hdfs://``: Spark's input) stays a path.
_DATABASE_SCHEMES = frozenset(
    ("duckdb", "postgresql", "postgres", "sqlite", "mysql", "mariadb", "mssql", "oracle")
    + ("snowflake", "redshift", "bigquery", "clickhouse", "trino")
)


def is_database_url(data: object) -> bool:
    """Whether ``--data`` names a database (``dialect[+driver]://...``) rather than a directory.

    >>> is_database_url("duckdb:///crm.duckdb"), is_database_url("postgresql+psycopg://h/db")
    (True, True)
    >>> is_database_url("data/raw"), is_database_url("s3a://crm/")
    (False, False)
    """
    scheme, sep, _ = str(data).partition("://")
    return bool(sep) and scheme.split("+", 1)[0].lower() in _DATABASE_SCHEMES


def mask_url(url: str) -> str:
    """The URL with its password hidden, for messages.

    >>> mask_url("postgresql://scorer:s3cret@db:5432/crm")
    'postgresql://scorer:***@db:5432/crm'
    """
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not importable, or not a URL: hide whatever sits between : and @
        return re.sub(r"(//[^/:@]*:)[^@/]*@", r"\1***@", url)


def _driver_url(url: str) -> tuple[str, str]:
    """(the SQLAlchemy URL to connect with, the dialect: ``duckdb`` or ``postgresql``)."""
    scheme = url.split("://", 1)[0].lower()
    if scheme == "duckdb":
        return url, "duckdb"
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        return "postgresql+psycopg://" + url.split("://", 1)[1], "postgresql"
    raise ValueError(
        f"--data {mask_url(url)!r}: unsupported database {scheme!r}; expected "
        "duckdb:///file.duckdb or postgresql://user@host:port/db (or a directory of files)"
    )


def _check_name(name: str, option: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"{option} {name!r} is not a table name; expected letters, digits and underscores, "
            "optionally as schema.table"
        )
    return name


def _split(name: str) -> tuple[str | None, str]:
    schema, _, table = name.rpartition(".")
    return schema or None, table


class Database:
    """An open SQLAlchemy engine on one URL (from :func:`open_database`), disposed on exit."""

    def __init__(self, url: str, *, read_only: bool):
        self.url = url
        self.shown = mask_url(url)
        driver_url, self.dialect = _driver_url(url)
        try:
            import sqlalchemy as sa
            from sqlalchemy.pool import NullPool

            if self.dialect == "duckdb":
                import duckdb_engine  # noqa: F401  (registers the dialect)
            else:
                import psycopg  # noqa: F401
        except ImportError as e:
            lib = "duckdb" if self.dialect == "duckdb" else "psycopg"
            raise ValueError(f"{lib} is not installed ({e.name}): {_INSTALL}") from None
        args: dict[str, Any] = {}
        if self.dialect == "duckdb":
            path = sa.engine.make_url(driver_url).database or ""
            if path in ("", ":memory:"):
                raise ValueError(
                    f"--data {self.shown!r}: name a DuckDB file, e.g. duckdb:///crm.duckdb"
                )
            if read_only:
                if not Path(path).is_file():
                    raise ValueError(f"--data {self.shown!r}: DuckDB file {path!r} does not exist")
                args["read_only"] = True
        # NullPool: every connection closes when released, so a DuckDB file is unlocked as soon
        # as a read is over (the writer opens it again in the same process).
        self.engine = sa.create_engine(driver_url, poolclass=NullPool, connect_args=args)

    def connect(self) -> Any:
        """A connection, or a one-line ``ValueError`` when the server cannot be reached."""
        import sqlalchemy as sa

        try:
            return self.engine.connect()
        except (sa.exc.DBAPIError, OSError) as e:
            raise ValueError(f"cannot connect to {self.shown}: {_first_line(e)}") from None

    def quote(self, name: str) -> str:
        prep = self.engine.dialect.identifier_preparer
        return ".".join(prep.quote(part) for part in name.split("."))

    def has_table(self, conn: Any, name: str) -> bool:
        import sqlalchemy as sa

        schema, table = _split(name)
        return bool(sa.inspect(conn).has_table(table, schema=schema))

    def read(self, conn: Any, sql: str) -> pd.DataFrame:
        """The result of ``sql`` as a DataFrame (DuckDB: its own fast path over Arrow); a query
        the database refuses is a ``ValueError`` with the database's first line."""
        import sqlalchemy as sa

        if self.dialect == "duckdb":
            import duckdb

            try:
                frame = conn.connection.driver_connection.execute(sql).df()
            except duckdb.Error as e:
                conn.rollback()  # an aborted transaction refuses everything until then
                raise ValueError(_first_line(e)) from None
            # ENUM columns arrive as categoricals; the contract reads text, as from a file.
            for col in frame.columns:
                if isinstance(frame[col].dtype, pd.CategoricalDtype):
                    frame[col] = frame[col].astype("string")
            return frame
        try:
            return pd.read_sql_query(sa.text(sql), conn)
        except sa.exc.DBAPIError as e:
            conn.rollback()
            raise ValueError(_first_line(e)) from None

    def dispose(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.dispose()


def open_database(url: str, *, read_only: bool = True) -> Database:
    """Open ``url`` (module docs) for reading (a DuckDB file must exist) or writing.

    Raises ``ValueError`` with one line for an unsupported URL or a missing driver; a server
    that cannot be reached fails on :meth:`Database.connect`.
    """
    return Database(url, read_only=read_only)


def _first_line(e: BaseException) -> str:
    orig = getattr(e, "orig", None) or e
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__


def _to_json(v: Any) -> Any:
    """A value of a JSON column as plain Python (lists, dicts, numbers; NaN as None)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return jsonable(v)


def _sql_frame(frame: pd.DataFrame, json_columns: Iterable[str], id_column: str) -> pd.DataFrame:
    """``frame`` with the module's type mapping applied to its values (module docs, Types)."""
    out = pd.DataFrame(index=range(len(frame)))
    as_json = set(json_columns)
    for col in frame.columns:
        s = frame[col].reset_index(drop=True)
        if col in as_json:
            out[col] = pd.Series([_to_json(v) for v in s], dtype=object)
        elif col == id_column:
            out[col] = s.astype("string").astype(object).where(s.notna(), None)
        elif isinstance(s.dtype, pd.DatetimeTZDtype):
            out[col] = s.dt.tz_convert("UTC")
        elif pd.api.types.is_datetime64_dtype(s.dtype):
            out[col] = s.dt.tz_localize("UTC")
        elif isinstance(s.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(s.dtype):
            out[col] = s.astype("string").astype(object).where(s.notna(), None)
        else:
            out[col] = s
    return out


def _column_type(s: pd.Series, dialect: str, is_json: bool) -> Any:
    import sqlalchemy as sa

    if is_json:
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return JSONB(none_as_null=True)
        return sa.JSON(none_as_null=True)
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return sa.DateTime(timezone=True)
    if pd.api.types.is_bool_dtype(s.dtype):
        return sa.Boolean
    if pd.api.types.is_integer_dtype(s.dtype):
        return sa.BigInteger
    if pd.api.types.is_float_dtype(s.dtype):
        return sa.Double
    return sa.Text


def check_table_target(url: str, name: str, overwrite: bool) -> None:
    """Refuse, before any work, a table name that is not one, or an existing table without
    ``overwrite``; also checks that the database answers (one-line ``ValueError``\\s)."""
    _check_name(name, "--out-table")
    with open_database(url, read_only=False) as db, db.connect() as conn:
        if not overwrite and db.has_table(conn, name):
            raise FileExistsError(
                f"table {name!r} already exists in {db.shown}; pass --overwrite to replace it"
            )


class TableWriter:
    """Chunks in, one table out, in one transaction (module docs, Writing).

    ``write`` collects converted chunks; ``commit`` creates the staging table, inserts the rows,
    swaps it in and commits; leaving the ``with`` block without a commit writes nothing.
    ``columns`` (a frame, its rows unused) gives the table's columns when no chunk has rows.
    """

    def __init__(
        self,
        url: str,
        name: str,
        *,
        overwrite: bool = False,
        json_columns: Iterable[str] = (),
        id_column: str = "lead_id",
        columns: pd.DataFrame | None = None,
    ):
        self.url = url
        self.name = _check_name(name, "--out-table")
        if len(_split(name)[1]) > _MAX_NAME:
            raise ValueError(f"--out-table {name!r}: at most {_MAX_NAME} characters")
        self.overwrite = overwrite
        self.json_columns = tuple(json_columns)
        self.id_column = id_column
        self._chunks: list[pd.DataFrame] = []
        self._columns = columns.iloc[:0] if columns is not None else None

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._chunks.clear()

    def write(self, chunk: pd.DataFrame) -> None:
        if self._columns is None:
            self._columns = chunk.iloc[:0]
        self._chunks.append(_sql_frame(chunk, self.json_columns, self.id_column))

    def commit(self) -> str:
        """Write the collected rows as the table (module docs); returns ``name``."""
        import sqlalchemy as sa

        empty = self._columns if self._columns is not None else pd.DataFrame()
        rows = (
            pd.concat(self._chunks, ignore_index=True)
            if self._chunks
            else _sql_frame(empty, self.json_columns, self.id_column)
        )
        schema, table = _split(self.name)
        staging = f"{table}__leadml_staging_{secrets.token_hex(4)}"
        with open_database(self.url, read_only=False) as db:
            cols = [
                sa.Column(str(c), _column_type(rows[c], db.dialect, c in self.json_columns))
                for c in rows.columns
            ]
            target = sa.Table(staging, sa.MetaData(), *cols, schema=schema)
            with db.connect() as conn:
                try:
                    with conn.begin():
                        target.create(conn)
                        self._insert(db, conn, target, rows)
                        if db.has_table(conn, self.name):
                            if not self.overwrite:
                                raise FileExistsError(
                                    f"table {self.name!r} already exists in {db.shown}; pass "
                                    "--overwrite to replace it"
                                )
                            conn.exec_driver_sql(f"DROP TABLE {db.quote(self.name)}")
                        qualified = f"{schema}.{staging}" if schema else staging
                        conn.exec_driver_sql(
                            f"ALTER TABLE {db.quote(qualified)} RENAME TO {db.quote(table)}"
                        )
                except sa.exc.DBAPIError as e:
                    raise ValueError(
                        f"could not write table {self.name!r} in {db.shown} (nothing was "
                        f"changed): {_first_line(e)}"
                    ) from None
        self._chunks.clear()
        return self.name

    def _insert(self, db: Database, conn: Any, target: Any, rows: pd.DataFrame) -> None:
        """The rows into the (empty, just created) staging table."""
        if not len(rows):
            return
        if db.dialect == "duckdb":
            raw = conn.connection.driver_connection
            view = f"_leadml_rows_{secrets.token_hex(4)}"
            rows = rows.copy()
            for c in self.json_columns:  # DuckDB reads JSON from its text
                rows[c] = [None if v is None else json.dumps(v) for v in rows[c]]
            raw.register(view, rows)
            try:
                names = ", ".join(db.quote(str(c)) for c in rows.columns)
                qualified = f"{target.schema}.{target.name}" if target.schema else target.name
                conn.exec_driver_sql(
                    f"INSERT INTO {db.quote(qualified)} ({names}) SELECT {names} FROM {view}"
                )
            finally:
                raw.unregister(view)
            return
        # SQLAlchemy's JSONB type serialises the json columns' lists and dicts itself.
        records = rows.astype(object).where(rows.notna(), None).to_dict("records")
        conn.execute(target.insert(), records)


def write_table(
    url: str,
    name: str,
    frame: pd.DataFrame,
    *,
    overwrite: bool = False,
    json_columns: Iterable[str] = (),
    id_column: str = "lead_id",
) -> str:
    """Write ``frame`` as table ``name`` in one transaction (:class:`TableWriter`).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> url = f"duckdb:///{pathlib.Path(tempfile.mkdtemp()) / 'crm.duckdb'}"
    >>> frame = pd.DataFrame({"lead_id": [7, 8], "score": [91, 40]})
    >>> write_table(url, "scores", frame)
    'scores'
    >>> with open_database(url) as db, db.connect() as conn:
    ...     db.read(conn, "SELECT lead_id, score FROM scores ORDER BY score").values.tolist()
    [['8', 40], ['7', 91]]
    """
    with TableWriter(
        url, name, overwrite=overwrite, json_columns=json_columns, id_column=id_column
    ) as w:
        w.write(frame)
        return w.commit()
