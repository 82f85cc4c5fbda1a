"""The rep's report: escaping, filters, deltas, CRM export, atomic writes."""

from __future__ import annotations

import pandas as pd
import pytest

from leadml.report import CRM_COLUMNS, ReportError, build_crm_export, build_report, write_report


def fake_scores(n: int = 12) -> pd.DataFrame:
    rows = []
    for i in range(n):
        stage = "lead" if i % 3 else "prospect"
        rows.append(
            {
                "lead_id": i + 1,
                "as_of": pd.Timestamp("2025-06-01"),
                "stage": stage,
                "p_prospect": None if stage == "prospect" else 0.9 - i * 0.05,
                "p_opportunity": 0.5 - i * 0.02,
                "score": 90 - i * 5,
                "tier": "ABCD"[min(i // 3, 3)],
                "reasons": [
                    {
                        "group": "pricing_page_view",
                        "text": f"Viewed the pricing page {i + 1} times in the last 7 days",
                        "direction": "+",
                        "effect": 0.05,
                    },
                    {"group": "country", "text": "Country: DE", "direction": "-", "effect": -0.01},
                ],
                "model_version": "leadml-prospect:1",
                "name": f"Person {i + 1}",
                "company": "<script>alert(1)</script>" if i == 4 else f"Company {i + 1}",
                "job_title": "CTO",
                "lead_source": "web_form",
                "owner": "Ana" if i % 2 else "Bo",
                "last_activity_at": pd.Timestamp("2025-05-30"),
                "last_activity_type": "web_visit",
            }
        )
    return pd.DataFrame(rows)


def _write(df: pd.DataFrame, path) -> None:
    from leadml.scoring import write_scores

    df.attrs["tier_info"] = {"A": {"conversion_rate": 0.31, "share": 0.1}}
    write_scores(df, path)


def test_fields_are_escaped() -> None:
    html = build_report(fake_scores())
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_owner_top_and_previous(tmp_path) -> None:
    df = fake_scores()
    html = build_report(df, owner="Ana", top=3)
    assert html.count('class="lead"') == 3 and "Person 2" in html and "Person 1<" not in html
    prev = df.assign(score=df["score"] - 4).iloc[1:]
    html = build_report(df, previous=prev)
    assert "▲ +4" in html and ">new<" in html


def test_tier_meaning_comes_from_the_scores_file(tmp_path) -> None:
    _write(fake_scores(), tmp_path / "s.parquet")
    out = write_report(tmp_path / "s.parquet", tmp_path / "r.html")
    text = out.read_text()
    assert "31% of similar leads" in text and "2025-06-01" in text


def test_crm_export_columns_and_reasons() -> None:
    out = build_crm_export(fake_scores(), n_reasons=3)
    assert list(out.columns) == [
        *CRM_COLUMNS,
        "reason_1",
        "reason_2",
        "reason_3",
        "as_of",
        "model_version",
    ]
    assert out.loc[0, "reason_1"] == "+ Viewed the pricing page 1 times in the last 7 days"
    assert out.loc[0, "reason_3"] == ""


def test_write_report_is_atomic_and_refuses_to_overwrite(tmp_path) -> None:
    _write(fake_scores(), tmp_path / "s.parquet")
    write_report(tmp_path / "s.parquet", tmp_path / "r.csv", fmt="csv")
    assert pd.read_csv(tmp_path / "r.csv").shape[0] == 12
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_report(tmp_path / "s.parquet", tmp_path / "r.csv", fmt="csv")
    with pytest.raises(ReportError, match="does not exist"):
        write_report(tmp_path / "nope.parquet", tmp_path / "x.html")
    fake_scores().drop(columns=["tier", "reasons"]).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ReportError, match="missing column\\(s\\) tier, reasons"):
        write_report(tmp_path / "bad.parquet", tmp_path / "x.html")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.parquet", "r.csv", "s.parquet"]
