"""Every contract failure gets a clear, specific error; several failures come in one error."""

from __future__ import annotations

import pandas as pd
import pytest

from leadml.config import ColumnsConfig
from leadml.data.contracts import DataContractError, load_crm, validate


def _tables() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    leads = pd.DataFrame(
        {
            "lead_id": [1, 2, 3],
            "created_at": ["2024-01-01", "2024-01-05", "2024-02-01T10:00:00"],
            "industry": ["software", "retail", "software"],
        }
    )
    events = pd.DataFrame(
        {
            "lead_id": [1, 1, 2],
            "event_type": ["web_visit", "email_open", "demo_request"],
            "occurred_at": ["2024-01-02", "2024-01-03 12:00", "2024-01-06"],
            "value": [30.0, None, None],
        }
    )
    stages = pd.DataFrame(
        {
            "lead_id": [1, 1, 2, 3],
            "stage": ["lead", "prospect", "lead", "lead"],
            "changed_at": ["2024-01-01", "2024-01-10", "2024-01-05", "2024-02-01T10:00:00"],
        }
    )
    return leads, events, stages


def test_valid_tables_are_coerced_once() -> None:
    data = validate(*_tables())
    assert data.leads["lead_id"].dtype == "int64"
    assert data.events["occurred_at"].dtype == "datetime64[ns]"
    assert data.stage_changes["changed_at"].dtype == "datetime64[ns]"
    assert data.events["value"].dtype == "float64"
    assert data.summary()["leads"] == 3
    assert data.end == pd.Timestamp("2024-02-01T10:00:00")


def test_validation_never_changes_the_callers_frames() -> None:
    # validate() coerces timestamps, ids, stages and event types on its own (shallow, under
    # copy-on-write) copies: a notebook's frames stay exactly as they were.
    tables = _tables()
    tables[2]["stage"] = [" Lead", "PROSPECT", "lead ", "Lead"]
    before = [t.copy(deep=True) for t in tables]
    data = validate(*tables)
    assert data.stage_changes["stage"].tolist()[:2] == ["lead", "prospect"]
    assert str(data.events["occurred_at"].dtype).startswith("datetime64")
    for t, b in zip(tables, before, strict=True):
        pd.testing.assert_frame_equal(t, b)


def test_timezone_aware_input_is_converted_to_utc() -> None:
    leads, events, stages = _tables()
    events["occurred_at"] = [
        "2024-01-02T01:00:00+02:00",
        "2024-01-03T00:00:00Z",
        "2024-01-06T00:00:00Z",
    ]
    data = validate(leads, events, stages)
    assert data.events["occurred_at"].iloc[0] == pd.Timestamp("2024-01-01T23:00:00")


def test_string_ids_are_kept_as_strings_and_matched_across_tables() -> None:
    leads, events, stages = _tables()
    for df in (leads, events, stages):
        df["lead_id"] = "L-" + df["lead_id"].astype(str)
    data = validate(leads, events, stages)
    assert data.leads["lead_id"].dtype == "string"
    assert data.events["lead_id"].dtype == "string"


def test_zero_padded_ids_come_back_exactly_as_written(tmp_path) -> None:
    """`00000524` used to come out as `524` and break the CRM import's join (issue 16)."""
    tables = dict(zip(("leads", "events", "stage_changes"), _tables(), strict=True))
    for name, df in tables.items():
        df["lead_id"] = df["lead_id"].map(lambda i: f"{i:08d}")
        df.to_csv(tmp_path / f"{name}.csv", index=False)
    data = load_crm(tmp_path)
    assert data.leads["lead_id"].tolist() == ["00000001", "00000002", "00000003"]
    assert data.events["lead_id"].isin(data.leads["lead_id"]).all()
    # Plain integers stay integers, whether read from CSV or passed in as text.
    plain = [df.assign(lead_id=df["lead_id"].str.lstrip("0")) for df in tables.values()]
    assert validate(*plain).leads["lead_id"].dtype == "int64"


def test_missing_required_column() -> None:
    leads, events, stages = _tables()
    with pytest.raises(DataContractError, match=r"events\.occurred_at: missing required column"):
        validate(leads, events.drop(columns="occurred_at"), stages)


def test_unparseable_timestamp_names_rows_and_example() -> None:
    leads, events, stages = _tables()
    events.loc[2, "occurred_at"] = "2024-13-01"
    with pytest.raises(
        DataContractError,
        match=r"events\.occurred_at: 1 value could not be parsed .*rows 2; e\.g\. '2024-13-01'",
    ):
        validate(leads, events, stages)


def test_wrong_type_for_timestamp_column() -> None:
    leads, events, stages = _tables()
    leads["created_at"] = [1.5, 2.5, 3.5]
    with pytest.raises(DataContractError, match=r"leads\.created_at: has dtype float64"):
        validate(leads, events, stages)


def test_non_numeric_event_value() -> None:
    leads, events, stages = _tables()
    events["value"] = ["30", "lots", None]
    with pytest.raises(DataContractError, match=r"events\.value: 1 value not numeric \(rows 1"):
        validate(leads, events, stages)


def test_null_and_duplicate_lead_ids_in_leads() -> None:
    leads, events, stages = _tables()
    leads.loc[1, "lead_id"] = None
    with pytest.raises(DataContractError, match=r"leads\.lead_id: 1 null lead_id \(rows 1\)"):
        validate(leads, events, stages)
    leads, events, stages = _tables()
    leads.loc[2, "lead_id"] = 1
    with pytest.raises(DataContractError, match=r"leads\.lead_id: 1 duplicate lead_id"):
        validate(leads, events, stages)


def test_null_ids_and_timestamps_in_events_and_stage_changes() -> None:
    leads, events, stages = _tables()
    events.loc[0, "lead_id"] = None
    stages.loc[1, "changed_at"] = None
    with pytest.raises(DataContractError) as err:
        validate(leads, events, stages)
    text = str(err.value)
    assert "events.lead_id: 1 null lead_id (rows 0)" in text
    assert "stage_changes.changed_at: 1 null changed_at (rows 1)" in text


def test_events_and_stage_changes_for_unknown_leads() -> None:
    leads, events, stages = _tables()
    events.loc[1, "lead_id"] = 99
    stages.loc[3, "lead_id"] = 42
    with pytest.raises(DataContractError) as err:
        validate(leads, events, stages)
    text = str(err.value)
    assert "events.lead_id: 1 row for 1 unknown lead (rows 1; e.g. '99')" in text
    assert "stage_changes.lead_id: 1 row for 1 unknown lead (rows 3; e.g. '42')" in text


def test_unknown_stage_names() -> None:
    leads, events, stages = _tables()
    stages.loc[1, "stage"] = "MQL"
    with pytest.raises(
        DataContractError,
        match=r"stage_changes\.stage: 1 unknown stage name \('mql'\).*Expected one of",
    ):
        validate(leads, events, stages)


def test_stage_names_are_normalised() -> None:
    leads, events, stages = _tables()
    stages.loc[1, "stage"] = " Prospect "
    assert validate(leads, events, stages).stage_changes["stage"].iloc[1] == "prospect"


def test_stage_change_before_created_at() -> None:
    leads, events, stages = _tables()
    stages.loc[2, "changed_at"] = "2024-01-04"
    with pytest.raises(
        DataContractError,
        match=r"stage_changes\.changed_at: 1 stage change before the lead's created_at",
    ):
        validate(leads, events, stages)


def test_mixed_timezone_aware_and_naive() -> None:
    leads, events, stages = _tables()
    events["occurred_at"] = ["2024-01-02T10:00:00Z", "2024-01-03T10:00:00", "2024-01-06T10:00:00"]
    with pytest.raises(
        DataContractError,
        match=r"events\.occurred_at: mixes timezone-aware and naive timestamps \(1 aware, 2 naive;",
    ):
        validate(leads, events, stages)


def test_empty_tables() -> None:
    leads, events, stages = _tables()
    with pytest.raises(DataContractError) as err:
        validate(leads.iloc[:0], events, stages.iloc[:0])
    assert "leads: is empty" in str(err.value)
    assert "stage_changes: is empty" in str(err.value)


def test_empty_events_table_is_allowed() -> None:
    leads, events, stages = _tables()
    data = validate(leads, events.iloc[:0], stages)
    assert len(data.events) == 0


def test_several_problems_reported_in_one_error() -> None:
    leads, events, stages = _tables()
    leads.loc[2, "lead_id"] = 1  # duplicate, which also orphans lead 3's stage change
    events.loc[0, "occurred_at"] = "yesterday"  # unparseable
    stages.loc[0, "stage"] = "won"  # unknown stage
    with pytest.raises(DataContractError, match=r"^4 problems in the input data") as err:
        validate(leads, events, stages)
    tables = {p.table for p in err.value.problems}
    assert tables == {"leads", "events", "stage_changes"}


def test_configurable_column_names() -> None:
    leads, events, stages = _tables()
    leads = leads.rename(columns={"lead_id": "id", "created_at": "created"})
    events = events.rename(columns={"lead_id": "id", "occurred_at": "ts"})
    stages = stages.rename(columns={"lead_id": "id", "changed_at": "ts"})
    cols = ColumnsConfig(lead_id="id", created_at="created", occurred_at="ts", changed_at="ts")
    data = validate(leads, events, stages, columns=cols)
    assert data.events["ts"].dtype == "datetime64[ns]"
    with pytest.raises(DataContractError, match=r"leads\.id: missing required column"):
        validate(leads.rename(columns={"id": "lead_id"}), events, stages, columns=cols)


def test_load_crm_reads_csv_and_parquet(tmp_path) -> None:
    leads, events, stages = _tables()
    leads.to_csv(tmp_path / "leads.csv", index=False)
    events.to_parquet(tmp_path / "events.parquet")
    stages.to_csv(tmp_path / "stage_changes.csv", index=False)
    data = load_crm(tmp_path)
    assert len(data.events) == 3


def test_after_read_runs_once_between_the_read_and_the_validation(tmp_path) -> None:
    leads, events, stages = _tables()
    leads.to_csv(tmp_path / "leads.csv", index=False)
    events.to_csv(tmp_path / "events.csv", index=False)
    stages.assign(stage="nonsense").to_csv(tmp_path / "stage_changes.csv", index=False)
    calls: list[str] = []
    with pytest.raises(DataContractError, match="nonsense"):  # read, then refused
        load_crm(tmp_path, after_read=lambda: calls.append("read"))
    assert calls == ["read"]
    (tmp_path / "leads.csv").unlink()
    with pytest.raises(DataContractError, match="no leads"):  # never read: never called
        load_crm(tmp_path, after_read=lambda: calls.append("again"))
    assert calls == ["read"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_event_values_can_be_left_unread(tmp_path, fmt) -> None:
    """``event_values=False`` (a scoring job whose models sum no values): the column is not
    read, so neither held nor checked; read, the same text values are refused."""
    leads, events, stages = _tables()
    leads.to_csv(tmp_path / "leads.csv", index=False)
    stages.to_csv(tmp_path / "stage_changes.csv", index=False)
    junk = events.assign(value=["12", "abc", None])
    if fmt == "csv":
        junk.to_csv(tmp_path / "events.csv", index=False)
    else:
        junk.to_parquet(tmp_path / "events.parquet")
    data = load_crm(tmp_path, event_values=False)
    assert "value" not in data.events.columns and len(data.events) == 3
    with pytest.raises(DataContractError, match=r"1 value not numeric"):
        load_crm(tmp_path)


def test_load_crm_missing_tables(tmp_path) -> None:
    with pytest.raises(DataContractError, match=r"leads: no leads\.parquet or leads\.csv") as err:
        load_crm(tmp_path)
    assert "stage_changes: no stage_changes.parquet" in str(err.value)
    with pytest.raises(DataContractError, match=r"does not exist"):
        load_crm(tmp_path / "nope")


@pytest.mark.parametrize("ids", ["int", "string"])
def test_rows_come_out_sorted_by_lead_then_time_ties_in_input_order(ids: str) -> None:
    """validate's fast (lead, time) order is exactly pandas' stable sort, ties included."""
    import numpy as np

    rng = np.random.default_rng(7)
    n_leads, n = 300, 6_000
    lead_ids = rng.permutation(np.arange(10, 10 + n_leads) * 3)  # sparse, unsorted ids
    created = pd.Timestamp("2024-01-01")
    leads = pd.DataFrame({"lead_id": lead_ids, "created_at": created})
    events = pd.DataFrame(
        {
            "lead_id": rng.choice(lead_ids, n),
            "event_type": rng.choice(["web_visit", "email_open", "form_submit"], n),
            # few distinct times, so many ties within a lead
            "occurred_at": created + pd.to_timedelta(rng.integers(1, 20, n), unit="D"),
            "value": np.arange(n, dtype=float),  # remembers the input row
        }
    )
    stages = pd.DataFrame({"lead_id": lead_ids, "stage": "lead", "changed_at": created})
    if ids == "string":
        for df in (leads, events, stages):
            df["lead_id"] = "L" + df["lead_id"].astype(str)
    data = validate(leads, events, stages)
    expected = data.events.sort_values(["lead_id", "occurred_at"], kind="stable")
    pd.testing.assert_frame_equal(data.events, expected.reset_index(drop=True))
    # ...and the original input order among equal (lead, time): the values still ascend
    keys = data.events[["lead_id", "occurred_at"]]
    runs = data.events.groupby([keys["lead_id"], keys["occurred_at"]], sort=False)["value"]
    assert runs.apply(lambda v: v.is_monotonic_increasing).all()
    assert list(data.leads["lead_id"]) == sorted(data.leads["lead_id"])


def test_rows_already_in_lead_time_order_stay_and_one_late_row_is_caught() -> None:
    """An export sorted by lead and time is kept as is (no copy needed); a single row out of
    time order inside a lead, or a lead out of order, still gets the table sorted."""
    import numpy as np

    created = pd.Timestamp("2024-01-01")
    leads = pd.DataFrame({"lead_id": [1, 2, 3], "created_at": created})
    stages = pd.DataFrame({"lead_id": [1, 2, 3], "stage": "lead", "changed_at": created})
    days = pd.to_timedelta([1, 2, 3, 1, 5, 2, 2, 4], unit="D")
    events = pd.DataFrame(
        {
            "lead_id": [1, 1, 1, 2, 2, 3, 3, 3],
            "event_type": "web_visit",
            "occurred_at": created + days,
            "value": np.arange(8, dtype=float),
        }
    )
    kept = validate(leads, events, stages).events
    assert kept["value"].tolist() == list(range(8))
    for order in ([0, 2, 1, 3, 4, 5, 6, 7], [3, 4, 0, 1, 2, 5, 6, 7]):
        got = validate(leads, events.iloc[order].reset_index(drop=True), stages).events
        assert got["value"].tolist() == list(range(8)), order


def test_number_tables_read_by_batches_equal_arrow_to_pandas(tmp_path) -> None:
    """The batch-by-batch Parquet reader gives exactly ``to_table().to_pandas()``: integers
    with missing values as floats, dictionaries that differ between row groups and files as
    one categorical (values in order of first appearance), missing timestamps and indices."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    from leadml.data.contracts import _numbers_only, parquet_dataset, parquet_frame

    d = tmp_path / "events"
    d.mkdir()
    parts = [
        {"lead_id": [3, 1, 2], "event_type": ["b", "a", None], "n": [1, 2, 3]},
        {"lead_id": [7, 8, 9], "event_type": ["c", "c", "b"], "n": [None, 5, 6]},
        {"lead_id": [4, 5, 6], "event_type": ["a", "d", "a"], "n": [7, 8, 9]},
    ]
    for i, p in enumerate(parts):
        t = pa.table(
            {
                "lead_id": pa.array(p["lead_id"], pa.int64()),
                "event_type": pa.array(p["event_type"]).dictionary_encode(),
                "occurred_at": pa.array(
                    [np.datetime64("2024-01-01", "ns"), None, np.datetime64("2024-02-01", "ns")],
                    pa.timestamp("ns"),
                ),
                "value": pa.array([0.5, None, 2.0]),
                "n": pa.array(p["n"], pa.int64()),
            }
        )
        pq.write_table(t, d / f"part-{i}.parquet", row_group_size=2)
    ds = parquet_dataset(d, ["event_type"])
    assert _numbers_only(ds.schema)
    got = parquet_frame(ds)
    pd.testing.assert_frame_equal(got, ds.to_table().to_pandas(), check_exact=True)
    assert got["n"].dtype == "float64" and got["n"].isna().sum() == 1
    assert list(got["event_type"].cat.categories) == ["b", "a", "c", "d"]
    # Filtered, as one range of leads is read (the first range also takes null ids).
    lead = pads.field("lead_id")
    for where in (lead > 3, (lead <= 2) | lead.is_null(), (lead > 2) & (lead <= 7), lead > 99):
        expected = ds.to_table(filter=where).to_pandas()
        pd.testing.assert_frame_equal(parquet_frame(ds, where), expected, check_exact=True)
    # More levels than int16 codes hold, over several row groups.
    many = [f"type-{i}" for i in range(40_000)]
    pq.write_table(
        pa.table({"event_type": pa.array(many + many[:5]).dictionary_encode()}),
        tmp_path / "many.parquet",
        row_group_size=30_000,
    )
    wide = parquet_dataset(tmp_path / "many.parquet", ["event_type"])
    pd.testing.assert_frame_equal(parquet_frame(wide), wide.to_table().to_pandas())
    # Empty, and a text column: the table path.
    pq.write_table(pa.table({"x": pa.array([], pa.int64())}), tmp_path / "empty.parquet")
    empty = parquet_dataset(tmp_path / "empty.parquet")
    pd.testing.assert_frame_equal(parquet_frame(empty), empty.to_table().to_pandas())
    pq.write_table(pa.table({"x": ["a"]}), tmp_path / "text.parquet")
    assert not _numbers_only(parquet_dataset(tmp_path / "text.parquet").schema)
