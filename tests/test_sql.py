"""Databases in and out (:mod:`leadml.data.sql`): ``--data`` as a DuckDB or PostgreSQL URL, table
names and queries from the config, one-line errors, and ``--out-table`` swapped in in one
transaction. PostgreSQL is a real server started from the installed binaries (Debian's
``postgresql`` package; ``make postgres``): missing binaries skip locally and fail under CI."""

from __future__ import annotations

import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from leadml.cli import main
from leadml.config import DatabaseConfig, LeadMLConfig
from leadml.data.contracts import DataContractError, load_crm
from leadml.data.sql import TableWriter, mask_url, open_database, write_table

ROOT = Path(__file__).resolve().parents[1]


def _under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian's layout, else PATH)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL on 127.0.0.1 (trust auth), as ``postgresql://postgres@host:port``.

    ``initdb`` refuses to run as root, so as root the server runs as the ``postgres`` user (or
    ``nobody``) in a directory it owns."""
    bindir = _postgres_bin()
    if bindir is None:
        missing = "PostgreSQL server binaries are not installed (`make postgres` installs them)"
        if _under_ci():
            pytest.fail(f"{missing}; the PostgreSQL tests must run under CI")
        pytest.skip(missing)
    root = Path(tempfile.mkdtemp(prefix="leadml-pg-"))
    prefix: list[str] = []
    if os.getuid() == 0:
        user = next(u for u in ("postgres", "nobody") if _user_exists(u))
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
        prefix = ["runuser", "-u", user, "--"]
    data = root / "data"
    subprocess.run(
        [*prefix, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]
        + ["-E", "UTF8", "--no-sync"],
        check=True,
        capture_output=True,
    )
    for _attempt in range(3):  # another process may take the free port first
        port = _free_port()
        started = subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w"]
            + ["-o", f"-h 127.0.0.1 -p {port} -k {root} -F", "start"],
            capture_output=True,
        )
        if started.returncode == 0:
            break
    else:
        log = (root / "log").read_text(errors="replace")[-2000:]
        pytest.fail(f"PostgreSQL did not start: {started.stderr.decode()}\n{log}")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture
def pg_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    import sqlalchemy as sa

    name = f"leadml_{secrets.token_hex(4)}"
    admin = sa.create_engine(
        postgres_server.replace("postgresql://", "postgresql+psycopg://") + "/postgres",
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield f"{postgres_server}/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
        admin.dispose()


@pytest.fixture(params=["duckdb", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test on an empty DuckDB file and on an empty PostgreSQL database."""
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path / 'crm.duckdb'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(scope="module")
def small_crm():
    from leadml.datasets import make_crm

    return make_crm(n_leads=300, seed=1)


def _load_tables(url: str, crm, names: dict[str, str] | None = None) -> None:
    names = names or {}
    for table in ("leads", "events", "stage_changes"):
        write_table(url, names.get(table, table), getattr(crm, table))


def _tables(url: str) -> list[str]:
    import sqlalchemy as sa

    with open_database(url, read_only=False) as db, db.connect() as conn:
        return sorted(sa.inspect(conn).get_table_names())


def _read(url: str, sql: str) -> pd.DataFrame:
    with open_database(url) as db, db.connect() as conn:
        return db.read(conn, sql)


# --- reading ---------------------------------------------------------------------------------


def test_load_crm_from_a_database_equals_load_crm_from_files(db_url, small_crm, tmp_path) -> None:
    from leadml.datasets import write_crm

    _load_tables(db_url, small_crm)
    from_db = load_crm(db_url)
    from_files = load_crm(write_crm(small_crm, tmp_path / "files", format="csv"))
    for table in ("leads", "events", "stage_changes"):
        pd.testing.assert_frame_equal(getattr(from_db, table), getattr(from_files, table))
    assert from_db.leads["lead_id"].dtype == "int64"  # written as text, read back as the file's


def test_text_ids_and_aware_timestamps_keep_their_meaning(db_url, small_crm) -> None:
    """Zero-padded ids stay text; timestamps with a zone become the same UTC instants."""
    crm = small_crm
    pad = {i: f"{i:06d}" for i in crm.leads["lead_id"]}
    leads = crm.leads.assign(
        lead_id=crm.leads["lead_id"].map(pad),
        created_at=crm.leads["created_at"].dt.tz_localize("UTC").dt.tz_convert("Europe/Berlin"),
    )
    write_table(db_url, "leads", leads)
    for table in ("events", "stage_changes"):
        frame = getattr(crm, table)
        write_table(db_url, table, frame.assign(lead_id=frame["lead_id"].map(pad)))
    got = load_crm(db_url)
    assert pd.api.types.is_string_dtype(got.leads["lead_id"].dtype)
    assert set(got.leads["lead_id"]) == set(pad.values())  # "000001" stays "000001"
    assert got.leads.set_index("lead_id")["created_at"].sort_index().tolist() == (
        crm.leads.assign(lead_id=crm.leads["lead_id"].map(pad))
        .set_index("lead_id")["created_at"]
        .sort_index()
        .tolist()
    )


def test_table_names_and_queries_come_from_the_config(db_url, small_crm) -> None:
    names = {"leads": "crm_leads", "events": "crm_events", "stage_changes": "crm_stages"}
    _load_tables(db_url, small_crm, names)
    tables = DatabaseConfig(
        leads="crm_leads",
        stage_changes="crm_stages",
        events_query="SELECT * FROM crm_events WHERE event_type <> 'email_open'",
    )
    got = load_crm(db_url, database=tables)
    assert len(got.leads) == len(small_crm.leads)
    assert "email_open" not in set(got.events["event_type"])
    expected = small_crm.events[small_crm.events["event_type"] != "email_open"]
    assert len(got.events) == len(expected)
    # Under the default names nothing is found: the leads table is named in the error.
    with pytest.raises(DataContractError, match=r"leads: no table 'leads' in "):
        load_crm(db_url)


def test_config_rejects_table_names_that_are_not_names() -> None:
    from leadml.config import ConfigError

    with pytest.raises(ConfigError, match=r"database\.leads: .*not a table name"):
        LeadMLConfig().with_overrides({"database": {"leads": "leads; DROP TABLE x"}})
    with pytest.raises(ConfigError, match=r"database\.events_query: .*empty query"):
        LeadMLConfig().with_overrides({"database": {"events_query": "  "}})
    cfg = LeadMLConfig().with_overrides({"database": {"leads": "crm.leads"}})
    assert cfg.database.leads == "crm.leads"


def test_a_missing_table_names_the_table_and_the_url_without_its_password(
    postgres_server, pg_url, small_crm
) -> None:
    secret_url = pg_url.replace("postgres@", "postgres:s3cret@")  # trust auth ignores it
    write_table(secret_url, "leads", small_crm.leads)
    r = CliRunner().invoke(main, ["validate", "--data", secret_url])
    assert r.exit_code == 2, r.output
    assert "no table 'stage_changes' in postgresql://postgres:***@127.0.0.1" in r.output
    assert "s3cret" not in r.output
    # A missing events table under its default name is no engagement yet, as for files.
    assert "'events'" not in r.output


def test_a_failing_query_is_a_problem_of_its_table(tmp_path, small_crm) -> None:
    url = f"duckdb:///{tmp_path / 'crm.duckdb'}"
    _load_tables(url, small_crm)
    bad = DatabaseConfig(events_query="SELECT * FROM no_such_table")
    with pytest.raises(DataContractError, match=r"events: the query database\.events_query failed"):
        load_crm(url, database=bad)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///crm.db", "unsupported database 'sqlite'"),
        ("duckdb:///{tmp}/nope.duckdb", "DuckDB file '{tmp}/nope.duckdb' does not exist"),
        ("postgresql://scorer:s3cret@127.0.0.1:{port}/crm", "cannot connect to postgresql"),
    ],
)
def test_bad_urls_are_one_line_errors(url, expected, tmp_path) -> None:
    port = _free_port()  # nothing listens there
    url = url.format(tmp=tmp_path, port=port)
    r = CliRunner().invoke(main, ["validate", "--data", url])
    assert r.exit_code == 2, r.output
    assert r.output.startswith("error: "), r.output
    assert expected.format(tmp=tmp_path, port=port) in r.output
    assert "s3cret" not in r.output and "Traceback" not in r.output
    assert not (tmp_path / "nope.duckdb").exists()  # reading never creates a database


def test_a_missing_driver_says_what_to_install(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "duckdb_engine", None)
    with pytest.raises(ValueError, match=r"duckdb is not installed .*pip install 'leadml\[sql\]'"):
        load_crm(f"duckdb:///{tmp_path / 'crm.duckdb'}")


def test_mask_url_hides_passwords() -> None:
    assert mask_url("postgresql://u:pw@h:5/db") == "postgresql://u:***@h:5/db"
    assert "pw" not in mask_url("postgresql+psycopg://u:pw@h/db")


# --- writing ---------------------------------------------------------------------------------


def _frame(n: int, version: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": np.arange(n),
            "as_of": pd.Timestamp("2025-06-01 12:00"),
            "score": np.full(n, version),
            "p": np.linspace(0, 1, n),
            "tier": pd.Categorical(["A"] * n),
            "reasons": [[{"group": "web", "effect": 0.1 * version, "evidence": None}]] * n,
        }
    )


def test_an_interrupted_write_leaves_the_previous_table_and_no_staging(db_url, monkeypatch) -> None:
    write_table(db_url, "scores", _frame(5, version=1), json_columns=["reasons"])
    seen_inside: list[int] = []
    real = TableWriter._insert

    def insert_then_fail(self, db, conn, target, rows):
        real(self, db, conn, target, rows)
        assert len(_tables_in(conn)) == 2  # the staging table exists inside the transaction
        if db.dialect == "postgresql":  # another reader still sees the whole previous table
            seen_inside.append(int(_read(db_url, "SELECT count(*) AS n FROM scores")["n"][0]))
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(TableWriter, "_insert", insert_then_fail)
    with pytest.raises(RuntimeError, match="killed mid-write"):
        write_table(
            db_url, "scores", _frame(9, version=2), overwrite=True, json_columns=["reasons"]
        )
    assert seen_inside == ([5] if db_url.startswith("postgresql") else [])
    assert _tables(db_url) == ["scores"]  # no staging table behind
    after = _read(db_url, "SELECT * FROM scores ORDER BY lead_id")
    assert len(after) == 5 and set(after["score"]) == {1}


def _tables_in(conn) -> list[str]:
    import sqlalchemy as sa

    return sa.inspect(conn).get_table_names()


def test_a_table_is_replaced_only_with_overwrite_and_types_map_cleanly(db_url) -> None:
    write_table(db_url, "scores", _frame(5, version=1), json_columns=["reasons"])
    with pytest.raises(FileExistsError, match=r"table 'scores' already exists in .*--overwrite"):
        write_table(db_url, "scores", _frame(3, version=2), json_columns=["reasons"])
    write_table(db_url, "scores", _frame(3, version=2), overwrite=True, json_columns=["reasons"])
    assert _tables(db_url) == ["scores"]
    got = _read(db_url, "SELECT * FROM scores ORDER BY lead_id")
    assert got["lead_id"].tolist() == ["0", "1", "2"] and set(got["score"]) == {2}
    assert got["as_of"].dt.tz is not None
    assert (got["as_of"].dt.tz_convert("UTC") == pd.Timestamp("2025-06-01 12:00", tz="UTC")).all()
    reasons = [json.loads(r) if isinstance(r, str) else r for r in got["reasons"]]
    assert reasons[0] == [{"group": "web", "effect": 0.2, "evidence": None}]
    kinds = _read(
        db_url,
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = 'scores' ORDER BY ordinal_position",
    ).set_index("column_name")["data_type"]
    kinds = kinds.str.lower()
    assert kinds["lead_id"] in ("text", "varchar")
    assert kinds["as_of"] == "timestamp with time zone"
    assert kinds["score"] == "bigint" and kinds["p"] in ("double precision", "double")
    assert kinds["tier"] in ("text", "varchar")
    assert kinds["reasons"] in ("jsonb", "json")


def test_out_table_is_refused_without_a_database_and_with_a_bad_name(tmp_path) -> None:
    runner = CliRunner()
    r = runner.invoke(main, ["score", "--data", str(tmp_path), "--out-table", "scores"])
    assert r.exit_code == 2 and "writes into the --data database" in r.output, r.output
    url = f"duckdb:///{tmp_path / 'crm.duckdb'}"
    r = runner.invoke(main, ["score", "--data", url, "--out-table", "x; drop table y"])
    assert r.exit_code == 2 and "is not a table name" in r.output, r.output
    r = runner.invoke(main, ["score", "--data", url, "--out", "a.parquet", "--out-table", "s"])
    assert r.exit_code == 2 and "one of them" in r.output, r.output
    r = runner.invoke(main, ["score", "--data", url, "--out-table", "s", "--engine", "spark"])
    assert r.exit_code == 2 and "--out-table is written by the local engine" in r.output


def test_build_writes_the_same_features_to_a_table_as_to_a_file(tmp_path, small_crm) -> None:
    url = f"duckdb:///{tmp_path / 'crm.duckdb'}"
    _load_tables(url, small_crm)
    as_of = "2025-03-01"
    runner = CliRunner()
    base = ["build", "--data", url, "--as-of", as_of]
    r = runner.invoke(main, [*base, "--out", str(tmp_path / "features.parquet")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, [*base, "--out-table", "features"])
    assert r.exit_code == 0, r.output
    assert "to table features in duckdb:///" in r.output
    r = runner.invoke(main, [*base, "--out-table", "features"])
    assert r.exit_code == 2 and "already exists" in r.output, r.output
    file = pd.read_parquet(tmp_path / "features.parquet")
    table = _read(url, "SELECT * FROM features")
    assert list(table.columns) == list(file.columns)
    table = table.assign(lead_id=table["lead_id"].astype("int64")).sort_values("lead_id")
    file = file.sort_values("lead_id")
    assert table["lead_id"].tolist() == file["lead_id"].tolist()
    for col in file.columns:
        a, b = table[col].reset_index(drop=True), file[col].reset_index(drop=True)
        if pd.api.types.is_numeric_dtype(b.dtype):
            np.testing.assert_allclose(a.astype(float), b.astype(float), rtol=0, atol=0)
        elif pd.api.types.is_datetime64_any_dtype(b.dtype):
            assert (a.dt.tz_convert("UTC").dt.tz_localize(None) == b).all(), col
        else:
            assert a.fillna("<NA>").tolist() == b.astype(object).fillna("<NA>").tolist(), col


# --- end to end ------------------------------------------------------------------------------


@pytest.fixture
def fast_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "fast.yaml"
    path.write_text(
        "timeline: {cadence_days: 28}\n"
        "model: {n_jobs: 1, n_estimators: 150}\n"
        "training: {n_folds: 3}\n"
    )
    return path


def _reasons(value) -> list:
    if isinstance(value, str):
        value = json.loads(value)
    return [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in dict(r).items()}
        for r in value
    ]


def _kill_mid_write(url: str, args: list[str]) -> subprocess.CompletedProcess:
    """``leadml score`` in a child process that SIGKILLs itself once the staging table holds
    every row, inside the transaction, before the swap."""
    code = (
        "import os, signal, sys\n"
        "import leadml.data.sql as sql\n"
        "real = sql.TableWriter._insert\n"
        "def insert_then_die(self, *a):\n"
        "    real(self, *a)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "sql.TableWriter._insert = insert_then_die\n"
        "from leadml.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=600
    )


@pytest.mark.slow
def test_end_to_end_through_a_database(db_url, tmp_path, fast_yaml, mlflow_uri) -> None:
    """CRM loaded into the database -> validate -> train -> score into a table, equal to the
    file scorer; a run killed mid-write leaves the previous table as it was."""
    from leadml.datasets import make_crm
    from leadml.serve.contract import read_scores

    crm = make_crm(n_leads=3000, seed=11)
    _load_tables(db_url, crm)
    runner = CliRunner()

    r = runner.invoke(main, ["validate", "--data", db_url])
    assert r.exit_code == 0, r.output
    assert r.output.startswith(f"ok: {len(crm.leads):,} leads")

    models = tmp_path / "models"
    # Both models on the server, the prospect model alone on DuckDB (the database is the test).
    both = db_url.startswith("postgresql")
    transitions = ["prospect", "opportunity"] if both else ["prospect"]
    train = ["train", "--data", db_url, "--config", str(fast_yaml)]
    r = runner.invoke(
        main,
        [*train, "--transition", "all" if both else "prospect", "--model-dir", str(models)],
    )
    assert r.exit_code == 0, r.output
    spec = [x for t in transitions for x in ("--model", str(models / f"leadml-{t}"))]
    as_of = str((crm.end - pd.Timedelta(days=14)).floor("D"))
    score = ["score", "--data", db_url, "--as-of", as_of, "--config", str(fast_yaml), *spec]
    r = runner.invoke(main, [*score, "--out-table", "scores"])
    assert r.exit_code == 0, r.output
    assert "-> table scores in " in r.output
    r = runner.invoke(main, [*score, "--out", str(tmp_path / "scores.parquet")])
    assert r.exit_code == 0, r.output

    file = read_scores(tmp_path / "scores.parquet")
    table = _read(db_url, "SELECT * FROM scores")
    assert len(table) == len(file) > 100
    assert list(table.columns) == list(file.columns)
    table = table.assign(lead_id=table["lead_id"].astype("int64"))
    table = table.set_index("lead_id").loc[file["lead_id"]].reset_index()
    assert table["lead_id"].tolist() == file["lead_id"].tolist()  # one row per scored lead
    for col in ("score", "tier", "stage", "model_version"):
        assert table[col].tolist() == file[col].tolist(), col
    for col in ("p_prospect", "base_score", "other_points", *(["p_opportunity"] if both else [])):
        np.testing.assert_allclose(table[col], file[col], rtol=0, atol=1e-12, err_msg=col)
    assert (table["as_of"].dt.tz_convert("UTC").dt.tz_localize(None) == file["as_of"]).all()
    assert [_reasons(v) for v in table["reasons"]] == [_reasons(v) for v in file["reasons"]]

    # A second run (another as_of) killed mid-write: the first run's table is untouched.
    later = str(pd.Timestamp(as_of) + pd.Timedelta(days=7))
    args = [*score, "--as-of", later, "--out-table", "scores", "--overwrite"]
    killed = _kill_mid_write(db_url, args)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert _tables(db_url) == ["events", "leads", "scores", "stage_changes"]
    again = _read(db_url, "SELECT * FROM scores")
    again = again.assign(lead_id=again["lead_id"].astype("int64"))
    again = again.set_index("lead_id").loc[file["lead_id"]].reset_index()
    pd.testing.assert_frame_equal(again, table)
