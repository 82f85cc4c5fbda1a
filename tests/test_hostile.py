"""Hostile input at the command line: every case ends with exit 2, an `error:` naming the table,
column and rows with a fix, no traceback; time-insane rows never reach training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from leadml.cli import main
from leadml.data.contracts import DataContractError, validate

LEADS = (
    "lead_id,created_at,industry\n1,2024-01-01T09:00:00Z,software\n2,2024-01-02T09:00:00Z,retail\n"
)
EVENTS = (
    "lead_id,event_type,occurred_at,value\n"
    "1,web_visit,2024-01-03T10:00:00Z,30\n"
    "2,email_open,2024-01-04T10:00:00Z,\n"
)
STAGES = (
    "lead_id,stage,changed_at\n"
    "1,lead,2024-01-01T09:00:00Z\n"
    "2,lead,2024-01-02T09:00:00Z\n"
    "1,prospect,2024-01-05T09:00:00Z\n"
)


def _crm(tmp_path, **tables: str | bytes):
    d = tmp_path / "crm"
    d.mkdir()
    for name, text in {"leads": LEADS, "events": EVENTS, "stage_changes": STAGES, **tables}.items():
        path = d / f"{name}.csv"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
    return d


def _validate(d, *extra: str):
    return CliRunner().invoke(main, ["validate", "--data", str(d), *extra])


def _refused(r, *needles: str) -> str:
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    assert r.output.startswith("error:") or "\nerror:" in r.output or "Error:" in r.output
    for n in needles:
        assert n in r.output, r.output
    return r.output


def test_the_reference_export_is_valid(tmp_path) -> None:
    r = _validate(_crm(tmp_path))
    assert r.exit_code == 0, r.output
    assert r.output.startswith("ok: 2 leads, 2 events")


def test_an_event_dated_next_year_is_refused_unless_the_export_is_that_late(tmp_path) -> None:
    events = EVENTS + "1,webinar,2025-02-01T10:00:00Z,\n"
    d = _crm(tmp_path, events=events)
    out = _refused(
        _validate(d), "events.occurred_at", "dated more than 7 days after", "rows 2", "--now"
    )
    assert "2025-02-01" in out
    # Declaring the export instant: the row is then known history, not the future.
    assert _validate(d, "--now", "2025-03-01T00:00:00Z").exit_code == 0
    # With --now, anything after it in any table is a problem, with no slack.
    _refused(_validate(d, "--now", "2024-01-04T12:00:00Z"), "stage_changes.changed_at")
    _refused(_validate(d, "--now", "not a time"), "--now", "ISO-8601")


def test_events_may_trail_the_newest_lead_by_a_few_days(tmp_path) -> None:
    """Engagement keeps arriving between the last new lead and the export."""
    events = EVENTS + "1,web_visit,2024-01-10T10:00:00Z,\n"
    assert _validate(_crm(tmp_path, events=events)).exit_code == 0


def test_placeholder_and_epoch_dates_name_table_column_and_rows(tmp_path) -> None:
    leads = LEADS + "3,9999-12-31T00:00:00Z,retail\n4,1900-01-01T00:00:00Z,retail\n"
    stages = STAGES + "3,lead,2024-01-02T09:00:00Z\n4,lead,1970-01-01T00:00:00Z\n"
    out = _refused(_validate(_crm(tmp_path, leads=leads, stage_changes=stages)))
    assert "leads.created_at: 1 timestamp outside the years 1677-2262 (rows 2" in out
    assert "9999-12-31" in out


def test_before_1970_is_a_problem(tmp_path) -> None:
    leads = LEADS + "3,1969-12-31T00:00:00Z,retail\n"
    stages = STAGES + "3,lead,2024-01-02T09:00:00Z\n"
    _refused(
        _validate(_crm(tmp_path, leads=leads, stage_changes=stages)),
        "leads.created_at: 1 row dated before 1970 (rows 2",
    )


def test_non_utf8_bytes_name_the_line_and_how_to_convert(tmp_path) -> None:
    leads = (LEADS + "3,2024-01-02T09:00:00Z,caf\u00e9s\n").encode("latin-1")
    stages = STAGES + "3,lead,2024-01-02T09:00:00Z\n"
    _refused(
        _validate(_crm(tmp_path, leads=leads, stage_changes=stages)),
        "leads: leads.csv is not UTF-8 text (line 4, data row 3: byte 0xe9)",
        "iconv",
    )


@pytest.mark.parametrize("sep", [";", "\t"])
def test_semicolon_and_tab_separated_exports_are_read(tmp_path, sep) -> None:
    tables = {n: t.replace(",", sep) for n, t in (("leads", LEADS), ("events", EVENTS))}
    r = _validate(_crm(tmp_path, **tables))
    assert r.exit_code == 0, r.output


def test_a_zero_byte_file_is_empty_not_unparseable(tmp_path) -> None:
    out = _refused(_validate(_crm(tmp_path, events=b"")), "events: events.csv is empty (0 bytes)")
    assert "No columns to parse" not in out


def test_mixed_zones_show_the_odd_rows(tmp_path) -> None:
    events = EVENTS + "".join(f"1,web_visit,2024-01-0{d}T10:00:00Z,\n" for d in (5, 6, 7))
    events += "2,web_visit,2024-01-05 10:00:00,\n"  # the one naive row: line 7, data row 5
    out = _refused(_validate(_crm(tmp_path, events=events)), "events.occurred_at")
    assert "(rows 5; e.g. '2024-01-05 10:00:00')" in out
    assert "the rows shown are the naive ones" in out


@pytest.mark.parametrize("bad", ["inf", "-inf", "1e400"])
def test_infinite_values_are_refused_with_rows(tmp_path, bad) -> None:
    events = EVENTS + f"1,web_visit,2024-01-05T10:00:00Z,{bad}\n"
    _refused(
        _validate(_crm(tmp_path, events=events)),
        "events.value: 1 value infinite or too large",
        "rows 2",
    )


def test_training_never_sees_a_future_row() -> None:
    """Outside `leadml validate` an event dated after the export is accepted but can neither
    move the data end nor open label windows that have no outcome yet."""
    from leadml.data.trainset import build_training_set

    leads = pd.DataFrame({"lead_id": [1, 2], "created_at": ["2024-01-01", "2024-03-01"]})
    events = pd.DataFrame(
        {"lead_id": [1, 1], "event_type": ["a", "b"], "occurred_at": ["2024-01-02", "2025-09-01"]}
    )
    stages = pd.DataFrame(
        {"lead_id": [1, 2], "stage": ["lead", "lead"], "changed_at": ["2024-01-01", "2024-03-01"]}
    )
    data = validate(leads, events, stages)
    assert data.end == pd.Timestamp("2024-03-01")
    ts = build_training_set(data, "prospect")
    assert ts.frame["as_of"].max() <= data.end - pd.Timedelta(days=30)
    with pytest.raises(DataContractError, match="dated more than 7 days after"):
        validate(leads, events, stages, strict_future=True)
    # After the machine's clock is a problem whatever the export time.
    late = events.assign(occurred_at=["2024-01-02", "2199-01-01"])
    with pytest.raises(DataContractError, match="after the export .this machine's clock"):
        validate(leads, late, stages, now="2199-06-01")


@pytest.mark.slow
def test_names_as_crms_write_them_train_score_and_read_as_written(crm, fast_config) -> None:
    """JSON characters, spaces and non-ASCII in event types and column names (LightGBM refuses
    them in feature names), and a vocabulary beyond the cap folded into one 'other' type."""
    from leadml.model.training import train
    from leadml.serve.scoring import score

    c = crm.columns
    weird = 'Webinar: Q3 "launch" [EU], {café}'
    events = crm.events.copy()
    events[c.event_type] = events[c.event_type].astype(str).replace({"demo_request": weird})
    leads = crm.leads.rename(columns={"industry": "Source: channel [CRM]"})
    data = validate(leads, events, crm.stage_changes)
    cfg = fast_config.with_overrides({"features": {"max_event_types": 5}})
    with pytest.warns(UserWarning, match="8 event types; the 4 most frequent are features"):
        result = train(data, "prospect", cfg)
    spec = result.model.spec
    assert spec.event_types[-1] == "other event types" and len(spec.event_types) == 5
    assert "Source: channel [CRM]" in spec.names
    # Types folded into "other" still count: the other type's counts are not all zero.
    scores = score(data, data.end, {"prospect": result.model}, cfg)
    assert len(scores) > 0 and scores["score"].between(0, 100).all()
    texts = {r["text"] for rs in scores["reasons"] for r in rs}
    assert any("Source: channel [CRM]" in t or "Source channel" in t for t in texts), texts


def _unwritable_dir():
    """A directory even root cannot write to (sysfs), or skip."""
    import os

    d = "/sys/kernel"
    if not os.path.isdir(d):
        pytest.skip("no sysfs here")
    try:
        open(f"{d}/leadml-probe", "w").close()  # noqa: SIM115
    except OSError:
        return d
    pytest.skip("sysfs is writable here")


def test_an_unwritable_output_directory_is_a_one_line_error(tmp_path) -> None:
    target = f"{_unwritable_dir()}/leadml-out"
    r = CliRunner().invoke(main, ["synth", "--leads", "50", "--out", target])
    _refused(r, "error: cannot write or read", "leadml-out", "Check the permissions")
    r = CliRunner().invoke(
        main,
        [
            "build",
            "--data",
            str(_crm(tmp_path)),
            "--as-of",
            "2024-01-06",
            "--out",
            f"{target}.parquet",
        ],
    )
    _refused(r, "error: cannot write or read")


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda s: s.replace("leaf_value=", "leaf_value=abc ", 1),  # a non-number
        lambda s: s.replace("split_feature=", "split_feature=9999 ", 1),  # bad feature index
        lambda s: s.replace("num_leaves=", "num_leaves=40", 1),  # arrays of the wrong length
        lambda s: s[:200],  # truncated
    ],
)
def test_a_malformed_model_text_with_valid_checksums_is_an_error_not_an_abort(
    tmp_path, corrupt
) -> None:
    """LightGBM aborts the process (exit 134) on some of these; the bundle loader checks first."""
    import hashlib
    import json

    import lightgbm as lgb

    from leadml.model.bundle import BundleError, load_bundle, save_bundle
    from leadml.model.stage import Calibration, StageModel
    from tests.test_explain import make_frame, make_spec

    X, y = make_frame(500, seed=0)
    params = {"objective": "binary", "num_leaves": 4, "verbosity": -1, "num_threads": 1}
    booster = lgb.train(params, lgb.Dataset(X, y, categorical_feature=["industry"]), 5)
    model = StageModel(booster, Calibration(), (0.5, 0.3, 0.1), make_spec(), "prospect", "y")
    d = save_bundle(model, tmp_path / "m")
    text = (d / "model.txt").read_text()
    (d / "model.txt").write_text(corrupt(text))
    sums = {
        n: hashlib.sha256((d / n).read_bytes()).hexdigest() for n in ("model.txt", "bundle.json")
    }
    (d / "checksums.json").write_text(json.dumps(sums))
    with pytest.raises(BundleError, match="model.txt is not a valid LightGBM model"):
        load_bundle(d)
    r = CliRunner().invoke(
        main,
        [
            "score",
            "--data",
            str(_crm(tmp_path)),
            "--model",
            str(d),
            "--out",
            str(tmp_path / "s.csv"),
        ],
    )
    _refused(r, "model.txt is not a valid LightGBM model")
    assert not (tmp_path / "s.csv").exists()


def test_identifiers_under_other_names_never_become_features(crm) -> None:
    """By value (e-mails, web addresses, phone numbers) and by what the name says a person is
    (a rep, a first name with many values), whatever the column is called."""
    from leadml.data.features import IdentifierColumnsExcluded, make_feature_spec

    n = len(crm.leads)
    rng = np.random.default_rng(0)
    firsts = np.array([f"Name{i:03d}" for i in range(300)])
    leads = crm.leads.assign(
        contact_info=[f"person{i}@example.com" for i in range(n)],
        site=[f"https://example{i}.com/about" for i in range(n)],
        direct_line=[f"+44 20 7946 {i % 10_000:04d}" for i in range(n)],
        assigned_rep=rng.choice(["Ann Lee", "Bo Chen", "Cy Diaz"], n),
        first=rng.choice(firsts, n),
        first_touch=rng.choice(["ads", "seo", "event"], n),  # an attribute, kept
    )
    data = validate(leads, crm.events, crm.stage_changes)
    with pytest.warns(IdentifierColumnsExcluded) as caught:
        spec = make_feature_spec(data)
    said = str(caught[0].message)
    for col in ("contact_info", "site", "direct_line", "assigned_rep", "first"):
        assert col not in spec.names and col in said
    assert "first_touch" in spec.names
    assert "e-mail addresses" in said and "web addresses" in said and "phone numbers" in said


def test_training_on_an_empty_events_table_warns_loudly(crm) -> None:
    """Valid (a CRM may have no tracking yet) but suspicious: a model of attributes only."""
    from leadml.data.features import NoEventsWarning, make_feature_spec

    data = validate(crm.leads, crm.events.iloc[:0], crm.stage_changes)
    with pytest.warns(NoEventsWarning, match="events table: it has no rows"):
        spec = make_feature_spec(data, None)
    assert spec.event_types == ()
