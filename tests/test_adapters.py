"""Readers for public CRM exports, on tiny hand-written slices in the real formats."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from leadml.data.contracts import DataContractError, validate
from leadml.data.flat import clean_flat
from leadml.data.leakage import check_leakage
from leadml.datasets import (
    BPI2012_LABEL_EQUIVALENT,
    X_EDUCATION_LEAKY,
    X_EDUCATION_SUSPECT,
    load_bpi2012,
    load_x_education,
)

# ---------------------------------------------------------------- X Education

X_HEADER = (
    "Prospect ID,Lead Number,Lead Origin,Lead Source,Do Not Email,Converted,TotalVisits,"
    "Total Time Spent on Website,Last Activity,Specialization,Magazine,Tags,Lead Quality,"
    "Last Notable Activity"
)
X_ROWS = [
    "7927b2df-8bba,660737,API,Olark Chat,No,0,0.0,0,Page Visited on Website,Select,No,"
    "Interested in other courses,Low in Relevance,Modified",
    "2a272436-5132,660728,API,Organic Search,No,0,5.0,674,Email Opened,Select,No,Ringing,,"
    "Email Opened",
    "8cc8c611-a219,660727,Landing Page Submission,Direct Traffic,No,1,2.0,1532,Email Opened,"
    "Business Administration,No,Will revert after reading the email,Might be,Email Opened",
    "0cc2df48-7cf4,660719,Landing Page Submission,google,No,0,1.0,305,Unreachable,"
    "Media and Advertising,No,Ringing,Not Sure,Modified",
    "3256f628-e534,660681,Landing Page Submission,Google,No,1,2.0,1428,Converted to Lead,Select,"
    "No,Will revert after reading the email,Might be,Modified",
    "2058ef08-2858,660680,API,Olark Chat,Yes,0,,0,Olark Chat Conversation,,No,,,Modified",
]


def _write_x(tmp_path: Path, *, trailing_comma: bool = False) -> Path:
    end = ",\r\n" if trailing_comma else "\r\n"
    text = X_HEADER + end + end.join(X_ROWS) + end
    path = tmp_path / "Leads.csv"
    path.write_bytes(text.encode("utf-8"))
    return path


REQUIRED = tuple(X_HEADER.split(","))


@pytest.mark.parametrize("trailing_comma", [False, True])
def test_x_education_reads_crlf_and_trailing_comma_copies(tmp_path: Path, trailing_comma: bool):
    table = load_x_education(_write_x(tmp_path, trailing_comma=trailing_comma), required=REQUIRED)
    assert list(table.columns) == list(REQUIRED)
    assert table["Converted"].dtype == "int64" and table["Converted"].sum() == 2
    assert table["Lead Number"].dtype == "int64"
    assert table["TotalVisits"].isna().sum() == 1
    # Not cleaned: the placeholder and case variant are still there for the flat mode to fix.
    assert (table["Specialization"] == "Select").sum() == 3
    assert set(table["Lead Source"]) >= {"google", "Google"}


def test_x_education_problems_are_reported_at_once(tmp_path: Path) -> None:
    rows = [*X_ROWS, X_ROWS[0].replace(",0,0.0,", ",yes,0.0,")]
    path = tmp_path / "bad.csv"
    path.write_text(X_HEADER + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(DataContractError, match="3 problems") as err:
        load_x_education(path, required=(*REQUIRED, "City"))
    text = str(err.value)
    assert "missing column(s) 'City'" in text
    assert "Converted: 1 value(s) not 0/1 (rows 6; e.g. 'yes')" in text
    assert "Prospect ID: 1 missing or duplicate id(s) (rows 6" in text


def test_x_education_default_requires_the_published_columns(tmp_path: Path) -> None:
    with pytest.raises(DataContractError, match="missing column.*'Country'"):
        load_x_education(_write_x(tmp_path))


def test_x_education_leaky_columns_and_cleaning(tmp_path: Path) -> None:
    table = load_x_education(_write_x(tmp_path), required=REQUIRED)
    clean, plan = clean_flat(table, target="Converted", id_column="Prospect ID")
    assert plan.dropped == {"Magazine": "constant"}
    assert clean["Specialization"].isna().sum() == 4
    assert set(clean["Lead Source"].dropna()) == {
        "Olark Chat",
        "Organic Search",
        "Direct Traffic",
        "Google",
    }
    report = check_leakage(table.drop(columns=["Prospect ID"]), "Converted", n_folds=2)
    present = [c for c in X_EDUCATION_LEAKY if c in table.columns]
    assert set(present) <= set(report.excluded)
    assert "Lead Profile" in X_EDUCATION_SUSPECT


# ---------------------------------------------------------------- BPI Challenge 2012

BPI_HEADER = "case_id,reg_date,amount_req,event_index,activity,lifecycle,timestamp,resource"
REG1 = "2011-10-29T23:30:00.000+02:00"
REG2 = "2011-11-02T10:00:00.000+01:00"
REG3 = "2012-03-14T15:00:00.000+01:00"
BPI_ROWS = [
    # Case 1: submitted in summer time, approved in winter time; O_ACCEPTED logged an hour
    # before A_APPROVED; a work item closes after the approval.
    f"1,{REG1},20000,0,A_SUBMITTED,COMPLETE,{REG1},112",
    f"1,{REG1},20000,1,A_PARTLYSUBMITTED,COMPLETE,2011-10-29T23:30:00.400+02:00,112",
    f"1,{REG1},20000,2,A_PREACCEPTED,COMPLETE,2011-10-30T02:40:00.000+02:00,112",
    f"1,{REG1},20000,3,W_Completeren aanvraag,SCHEDULE,2011-10-30T02:40:00.000+02:00,112",
    f"1,{REG1},20000,4,W_Completeren aanvraag,START,2011-10-30T02:10:00.000+01:00,",
    f"1,{REG1},20000,5,A_ACCEPTED,COMPLETE,2011-10-30T09:00:00.000+01:00,10862",
    f"1,{REG1},20000,6,O_SELECTED,COMPLETE,2011-10-30T09:01:00.000+01:00,10862",
    f"1,{REG1},20000,7,A_FINALIZED,COMPLETE,2011-10-30T09:01:00.000+01:00,10862",
    f"1,{REG1},20000,8,O_CREATED,COMPLETE,2011-10-30T09:01:01.000+01:00,10862",
    f"1,{REG1},20000,9,O_SENT,COMPLETE,2011-10-30T09:01:02.000+01:00,10862",
    f"1,{REG1},20000,10,O_ACCEPTED,COMPLETE,2011-11-08T09:00:00.000+01:00,10629",
    f"1,{REG1},20000,11,A_REGISTERED,COMPLETE,2011-11-08T10:00:00.000+01:00,10629",
    f"1,{REG1},20000,12,A_APPROVED,COMPLETE,2011-11-08T10:00:00.000+01:00,10629",
    f"1,{REG1},20000,13,A_ACTIVATED,COMPLETE,2011-11-08T10:00:00.000+01:00,10629",
    f"1,{REG1},20000,14,W_Valideren aanvraag,COMPLETE,2011-11-08T10:00:05.000+01:00,10629",
    # Case 2: offer sent, then declined -> lost.
    f"2,{REG2},5000,0,A_SUBMITTED,COMPLETE,{REG2},112",
    f"2,{REG2},5000,1,A_PREACCEPTED,COMPLETE,2011-11-02T10:01:00.000+01:00,112",
    f"2,{REG2},5000,2,O_SENT,COMPLETE,2011-11-03T10:00:00.000+01:00,10862",
    f"2,{REG2},5000,3,W_Nabellen offertes,START,2011-11-04T10:00:00.000+01:00,10913",
    f"2,{REG2},5000,4,O_DECLINED,COMPLETE,2011-11-05T10:00:00.000+01:00,10913",
    f"2,{REG2},5000,5,A_DECLINED,COMPLETE,2011-11-05T10:00:00.000+01:00,10913",
    # Case 3: declined straight away -> disqualified.
    f"3,{REG2},1000,0,A_SUBMITTED,COMPLETE,{REG2},112",
    f"3,{REG2},1000,1,A_DECLINED,COMPLETE,2011-11-02T10:00:30.000+01:00,112",
    # Case 4: still open when the log ends.
    f"4,{REG3},9000,0,A_SUBMITTED,COMPLETE,{REG3},112",
    f"4,{REG3},9000,1,A_PREACCEPTED,COMPLETE,2012-03-14T15:04:00.000+01:00,112",
]


def _write_bpi(tmp_path: Path) -> Path:
    path = tmp_path / "events.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8", newline="") as f:
        f.write(BPI_HEADER + "\n" + "\n".join(BPI_ROWS) + "\n")
    return path


def _stages(data, lead_id: int) -> list[tuple[str, str]]:
    sc = data.stage_changes[data.stage_changes["lead_id"] == lead_id]
    return [(s, str(t)) for s, t in zip(sc["stage"], sc["changed_at"], strict=True)]


def test_bpi_funnel_mapping_in_utc(tmp_path: Path) -> None:
    data = load_bpi2012(_write_bpi(tmp_path))
    assert data.leads["lead_id"].tolist() == [1, 2, 3, 4]
    assert str(data.leads.loc[0, "created_at"]) == "2011-10-29 21:30:00"
    assert data.leads["amount_requested"].tolist() == [20000.0, 5000.0, 1000.0, 9000.0]
    assert _stages(data, 1) == [
        ("lead", "2011-10-29 21:30:00"),
        ("prospect", "2011-10-30 00:40:00"),
        ("opportunity", "2011-10-30 08:01:02"),
        ("customer", "2011-11-08 08:00:00"),  # O_ACCEPTED, the first label-equivalent event
    ]
    assert [s for s, _ in _stages(data, 2)] == ["lead", "prospect", "opportunity", "lost"]
    assert [s for s, _ in _stages(data, 3)] == ["lead", "disqualified"]
    assert [s for s, _ in _stages(data, 4)] == ["lead", "prospect"]  # open: no outcome
    reasons = data.stage_changes.set_index(["lead_id", "stage"])["reason"]
    assert reasons[(2, "lost")] == "declined" and reasons[(3, "disqualified")] == "declined"


def test_bpi_events_exclude_labels_and_post_outcome(tmp_path: Path) -> None:
    data = load_bpi2012(_write_bpi(tmp_path))
    ev = data.events
    assert not ev["activity"].isin([*BPI2012_LABEL_EQUIVALENT, "A_SUBMITTED", "A_DECLINED"]).any()
    case1 = ev[ev["lead_id"] == 1]
    # DST: 02:40+02:00 (00:40 UTC) comes before 02:10+01:00 (01:10 UTC) in UTC as in the file.
    assert case1["event_type"].tolist() == [
        "work_complete_application_scheduled",
        "work_complete_application_started",
        "application_accepted",
        "offer_selected",
        "application_finalized",  # same timestamp as O_SELECTED: file order kept
        "offer_created",
        "offer_sent",
    ]
    assert str(case1["occurred_at"].iloc[1]) == "2011-10-30 01:10:00"
    # The work item closed after approval is dropped; O_DECLINED, logged just before the
    # decline at the same instant, is kept (file order decides).
    case2 = ev[ev["lead_id"] == 2]["event_type"].tolist()
    assert case2 == ["offer_sent", "work_call_about_offer_started", "offer_declined"]
    kept = load_bpi2012(_write_bpi(tmp_path), keep_after_outcome=True).events
    assert "work_validate_application_completed" in set(kept["event_type"])
    # The output already satisfies the contract: validating it again changes nothing.
    again = validate(data.leads, data.events, data.stage_changes)
    pd.testing.assert_frame_equal(again.events, data.events)


def test_bpi_bad_logs_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(BPI_HEADER + "\n" + BPI_ROWS[1] + "\n", encoding="utf-8")
    with pytest.raises(DataContractError, match="1 case.*without A_SUBMITTED"):
        load_bpi2012(path)
    path.write_text("case_id,activity\n1,A_SUBMITTED\n", encoding="utf-8")
    with pytest.raises(DataContractError, match="missing column.*'event_index'"):
        load_bpi2012(path)
    path.write_text(BPI_HEADER + "\n" + BPI_ROWS[0].replace(REG1 + ",112", "yesterday,112") + "\n")
    with pytest.raises(DataContractError, match="timestamp: 1 timestamp"):
        load_bpi2012(path)
