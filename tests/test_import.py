"""Salesforce and HubSpot imports: hand-written exports in the real layouts (tests/fixtures), round
trips through the writers, the mapping report, and ``leadml import`` as a user runs it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from leadml.cli import main
from leadml.data.contracts import DataContractError, load_crm, validate
from leadml.data.features import _exclusion_reason
from leadml.datasets import (
    import_hubspot,
    import_salesforce,
    make_crm,
    salesforce_id,
    to_hubspot,
    to_salesforce,
)

FIXTURES = Path(__file__).parent / "fixtures"
SF = FIXTURES / "salesforce"
HS = FIXTURES / "hubspot"
PERSONAL = ("ana.silva@gmail.com", "+1 415 555 0101", "1 Main St", "intro, pricing", "blue")


def _stages(data, lead_id) -> list[str]:
    st = data.stage_changes
    return st.loc[st["lead_id"] == lead_id, "stage"].tolist()


def _all_text(data) -> str:
    return "\n".join(
        df.astype("string").to_csv(index=False)
        for df in (data.leads, data.events, data.stage_changes)
    )


@pytest.mark.parametrize(("run", "path"), [(import_salesforce, SF), (import_hubspot, HS)])
def test_fixtures_import_to_valid_tables_without_personal_data(run, path) -> None:
    result = run(path)
    data = result.data
    # The tables pass the contract as leadml reads them back.
    again = validate(data.leads, data.events, data.stage_changes)
    assert len(again.leads) == len(data.leads) > 0
    assert (data.stage_changes.groupby("lead_id")["stage"].first() == "lead").all()
    # No e-mail, phone, street or free text anywhere; display columns are all identifiers.
    text = _all_text(data)
    for value in PERSONAL:
        assert value not in text, value
    assert {"email", "phone", "subject"}.isdisjoint(data.leads.columns)
    assert result.report.identifier_columns == ("name", "company", "owner")
    for col in result.report.identifier_columns:
        assert _exclusion_reason(col, data.leads[col]) is not None, col
    fit = [c for c in data.leads.columns if c not in ("lead_id", "created_at")]
    assert {"industry", "country", "job_title", "lead_source"} <= set(fit)
    assert pd.api.types.is_float_dtype(data.leads["annual_revenue"].dtype)


def test_salesforce_fixture_mapping() -> None:
    result = import_salesforce(SF)
    data, report = result.data, result.report
    ana, bo, cy, di, ed, flo = (f"00Q5g00000A1bC{c}EAF" for c in "defghi")
    assert str(data.leads["lead_id"].dtype) in ("string", "str")
    assert len(data.leads) == 7  # the deleted lead is left out
    assert _stages(data, ana) == ["lead", "prospect", "opportunity", "customer"]
    assert _stages(data, bo) == ["lead", "prospect"]  # duplicate history row dropped
    assert _stages(data, cy) == ["lead", "disqualified"]
    assert _stages(data, di) == ["lead"]  # an unknown status leaves the lead a lead
    assert _stages(data, ed) == ["lead"]  # Working - Contacted is no promotion
    assert _stages(data, flo) == ["lead", "prospect", "opportunity", "lost"]
    st = data.stage_changes.set_index(["lead_id", "stage"])["changed_at"]
    assert st[(ana, "customer")] == pd.Timestamp("2024-04-30 17:00")  # history, not CloseDate
    assert st[(flo, "lost")] == pd.Timestamp("2024-04-21")  # end of CloseDate, no history row
    assert st[(ana, "lead")] == pd.Timestamp("2024-01-05 09:30")  # +0000 read as UTC

    ev = data.events
    kinds = ev.groupby("lead_id", observed=True)["event_type"].apply(list)
    # Call on the converted contact belongs to the lead; campaign response at the end of the
    # day; the open task and the future meeting are not events.
    assert sorted(kinds[ana]) == ["call", "call", "campaign_response", "email", "meeting"]
    assert kinds[bo] == ["email"]
    ed_call = ev[(ev["lead_id"] == ed) & (ev["event_type"] == "call")]
    assert ed_call["occurred_at"].tolist() == [pd.Timestamp("2024-02-13")]  # ActivityDate's end
    assert ed_call["value"].tolist() == [95.0]

    assert report.unmapped[("Lead.Status", "Hot Prospect")] == 1
    assert report.unmapped[("LeadHistory.Status", "Hot Prospect")] == 1
    assert report.unmapped[("OpportunityHistory.StageName", "Legal Hold")] == 1
    assert report.mapped[("LeadHistory.Status", "Closed - Not Converted", "disqualified")] == 1
    assert report.dropped[("Task", "open tasks (planned, not done)")] == 1
    text = report.text()
    assert "'Hot Prospect' (1)" in text and "unmapped" in text
    assert "Email" in text.split("not imported from Lead.csv:")[1].splitlines()[0]


def test_hubspot_fixture_mapping() -> None:
    result = import_hubspot(HS)
    data, report = result.data, result.report
    assert pd.api.types.is_integer_dtype(data.leads["lead_id"].dtype)
    assert _stages(data, 51001) == ["lead", "prospect", "opportunity", "customer"]  # MQL: lead
    assert _stages(data, 51003) == ["lead", "disqualified"]  # Unqualified, at Last Modified
    assert _stages(data, 51004) == ["lead"]  # unknown lifecycle 'Partner'
    assert _stages(data, 51006) == ["lead", "opportunity", "customer"]  # evangelist: customer
    st = data.stage_changes.set_index(["lead_id", "stage"])["changed_at"]
    assert st[(51003, "disqualified")] == pd.Timestamp("2024-03-01 12:00")
    ev = data.events
    assert set(ev.loc[ev["lead_id"] == 51004, "event_type"]) == {"email"}  # '51002;51004'
    assert set(ev["event_type"]) == {"call", "email", "meeting", "incoming_email", "note", "task"}
    assert report.unmapped == {("Lifecycle Stage", "Partner"): 1}
    assert report.dropped[("activities", "for a lead not in the leads export")] == 1
    assert any("planned, not done" in why for _, why in report.dropped)


def test_mapping_overrides_from_a_file_and_errors(tmp_path) -> None:
    mapping = tmp_path / "map.yaml"
    mapping.write_text(
        "lead_status:\n  hot prospect: prospect\nopportunity_stages:\n  Legal Hold: opportunity\n"
        "activity_types:\n  Call: phone_call\n  Email: null\n"
    )
    result = import_salesforce(SF, mapping)
    assert _stages(result.data, "00Q5g00000A1bCgEAF") == ["lead", "prospect"]
    assert not result.report.unmapped
    kinds = set(result.data.events["event_type"])
    assert "phone_call" in kinds and "email" not in kinds and "call" not in kinds
    with pytest.raises(ValueError, match=r"unknown stage.*'won'"):
        import_salesforce(SF, {"lead_status": {"Won": "won"}})
    with pytest.raises(ValueError, match=r"unknown key\(s\) 'lead_statuses'"):
        import_salesforce(SF, {"lead_statuses": {}})


def test_missing_files_and_columns_are_reported_at_once(tmp_path) -> None:
    with pytest.raises(DataContractError, match="no Lead.csv"):
        import_salesforce(tmp_path)
    shutil.copytree(SF, tmp_path / "sf")
    lead = pd.read_csv(tmp_path / "sf" / "Lead.csv", dtype=str)
    lead.drop(columns=["CreatedDate"]).to_csv(tmp_path / "sf" / "Lead.csv", index=False)
    task = pd.read_csv(tmp_path / "sf" / "Task.csv", dtype=str)
    task.drop(columns=["WhoId"]).to_csv(tmp_path / "sf" / "Task.csv", index=False)
    with pytest.raises(DataContractError) as e:
        import_salesforce(tmp_path / "sf")
    message = str(e.value)
    assert "2 problems" in message
    assert "Lead.CreatedDate: missing required column 'CreatedDate' in Lead.csv" in message
    assert "Task.WhoId: missing required column 'WhoId' in Task.csv" in message
    assert "API field names" in message


def test_unparseable_timestamps_name_the_object_and_column(tmp_path) -> None:
    shutil.copytree(HS, tmp_path / "hs")
    path = next((tmp_path / "hs").glob("*contacts*"))
    text = path.read_text().replace("2024-01-10 16:45,2024-03-01", "yesterday,2024-03-01")
    path.write_text(text)
    with pytest.raises(DataContractError, match=r"contacts.Create Date: 1 value.*'yesterday'"):
        import_hubspot(tmp_path / "hs")


def test_salesforce_ids_have_the_case_safe_suffix() -> None:
    # Chunks '00Q5g' (upper case at position 2: bit 4 -> 'E'), '00000', '00001'.
    assert salesforce_id("00Q", 1) == "00Q5g0000000001EAA"
    # 35 is 'Z' in base 62: the last chunk '0000Z' has bit 16 -> 'Q'.
    assert salesforce_id("00Q", 35) == "00Q5g000000000ZEAQ"


@pytest.fixture(scope="module")
def small_crm():
    return make_crm(n_leads=300, seed=1)


def _lead_sequences(st: pd.DataFrame) -> dict[str, list[tuple[str, pd.Timestamp]]]:
    return {
        str(lead): list(zip(g["stage"].astype(str), g["changed_at"], strict=True))
        for lead, g in st.groupby("lead_id", sort=True)
    }


def test_salesforce_round_trip(small_crm, tmp_path) -> None:
    crm = small_crm
    result = import_salesforce(to_salesforce(crm, tmp_path / "sf"))
    data = result.data
    ids = {int(i): salesforce_id("00Q", int(i)) for i in crm.leads["lead_id"]}
    assert sorted(data.leads["lead_id"]) == sorted(ids.values())
    got = data.leads.set_index("lead_id")
    want = crm.leads.set_index(crm.leads["lead_id"].map(ids))
    assert (got["created_at"] == want.loc[got.index, "created_at"]).all()
    for col in ("industry", "country", "lead_source", "job_title"):
        assert [None if pd.isna(v) else v for v in got[col]] == [
            None if pd.isna(v) else str(v) for v in want.loc[got.index, col]
        ], col
    # Every stage change comes back, at its time (the reason aside).
    st = crm.stage_changes.assign(lead_id=crm.stage_changes["lead_id"].map(ids))
    assert _lead_sequences(data.stage_changes) == _lead_sequences(st)
    # Every event comes back, webinars renamed to campaign responses.
    ev = crm.events.assign(
        lead_id=crm.events["lead_id"].map(ids),
        event_type=crm.events["event_type"]
        .astype("string")
        .replace("webinar_attended", "campaign_response"),
    )
    key = ["lead_id", "occurred_at", "event_type"]
    a = data.events[key].astype({"event_type": "string"}).sort_values(key).reset_index(drop=True)
    b = ev[key].astype({"event_type": "string"}).sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    assert not result.report.unmapped and not result.report.out_of_order


def test_hubspot_round_trip(small_crm, tmp_path) -> None:
    crm = small_crm
    result = import_hubspot(to_hubspot(crm, tmp_path / "hs"))
    data = result.data
    assert data.leads["lead_id"].tolist() == crm.leads["lead_id"].tolist()
    # HubSpot keeps the first entry into each funnel stage and the final disqualification.
    st = crm.stage_changes
    first = st[st["stage"].isin(["lead", "prospect", "opportunity", "customer"])]
    first = first.groupby(["lead_id", "stage"], as_index=False)["changed_at"].min()
    last = st.groupby("lead_id").tail(1)
    expected = pd.concat([first, last.loc[last["stage"] == "disqualified", first.columns]])
    expected = expected.sort_values(["lead_id", "changed_at"], kind="stable")
    assert _lead_sequences(data.stage_changes) == _lead_sequences(expected)
    key = ["lead_id", "occurred_at", "event_type"]
    a = data.events[key].astype({"event_type": "string"}).sort_values(key).reset_index(drop=True)
    b = crm.events[key].astype({"event_type": "string"}).sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_dtype=False)


def test_cli_import_writes_tables_and_prints_the_report(tmp_path) -> None:
    out = tmp_path / "crm"
    args = ["import", "--from", "salesforce", "--in", str(SF), "--out", str(out)]
    r = CliRunner().invoke(main, [*args, "--format", "csv"])
    assert r.exit_code == 0, r.output
    assert "'Hot Prospect' (1)" in r.output
    assert r.output.strip().splitlines()[-1] == (
        f"ok: wrote 7 leads, 9 events, 15 stage changes to {out}"
    )
    data = load_crm(out)
    assert len(data.leads) == 7
    again = CliRunner().invoke(main, [*args, "--format", "csv"])
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert CliRunner().invoke(main, [*args, "--format", "csv", "--overwrite"]).exit_code == 0
    hs = CliRunner().invoke(
        main, ["import", "--from", "hubspot", "--in", str(HS), "--out", str(tmp_path / "hs")]
    )
    assert hs.exit_code == 0, hs.output
    assert "ok: wrote 6 leads" in hs.output


def test_cli_import_errors_exit_2_with_one_clear_message(tmp_path) -> None:
    runner = CliRunner()
    empty = tmp_path / "export"
    empty.mkdir()
    r = runner.invoke(
        main, ["import", "--from", "salesforce", "--in", str(empty), "--out", str(tmp_path / "o")]
    )
    assert r.exit_code == 2
    assert r.output.startswith("error: Lead: no Lead.csv in") and "Traceback" not in r.output
    (empty / "Lead.csv").write_text("Id,Status\n00Q5g00000A1bCdEAF,Open\n")
    r = runner.invoke(
        main, ["import", "--from", "salesforce", "--in", str(empty), "--out", str(tmp_path / "o")]
    )
    assert r.exit_code == 2
    assert "Lead.CreatedDate: missing required column 'CreatedDate' in Lead.csv" in r.output
    r = runner.invoke(
        main, ["import", "--from", "salesforce", "--in", str(empty), "--out", str(empty / "o")]
    )
    assert r.exit_code == 2 and "inside the export folder" in r.output
    assert not (tmp_path / "o").exists() and not (empty / "o").exists()


@pytest.mark.slow
@pytest.mark.parametrize("source", ["salesforce", "hubspot"])
def test_train_on_an_imported_export(source, tmp_path, mlflow_uri) -> None:
    write = to_salesforce if source == "salesforce" else to_hubspot
    write(make_crm(n_leads=1500, seed=3), tmp_path / "export")
    runner = CliRunner()
    crm = tmp_path / "crm"
    r = runner.invoke(
        main,
        ["import", "--from", source, "--in", str(tmp_path / "export"), "--out", str(crm)],
    )
    assert r.exit_code == 0, r.output
    assert runner.invoke(main, ["validate", "--data", str(crm)]).exit_code == 0
    config = tmp_path / "fast.yaml"
    config.write_text(
        "model:\n  n_estimators: 60\n  n_jobs: 1\n"
        "timeline:\n  cadence_days: 28\ntraining:\n  n_folds: 3\n"
        "features:\n  identifier_columns: [name, company, owner]\n"
    )
    models = tmp_path / "models"
    r = runner.invoke(
        main,
        ["train", "--data", str(crm), "--config", str(config), "--transition", "prospect"]
        + ["--model-dir", str(models)],
    )
    assert r.exit_code == 0, r.output
    assert (models / "leadml-prospect").is_dir()
    assert "roc_auc" in r.output or "AUC" in r.output
