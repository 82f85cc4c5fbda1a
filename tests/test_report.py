"""The rep's report: escaping, owner and top filters, deltas, CRM export, reading, atomic writes."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from leadml.report import (
    CRM_COLUMNS,
    ReportError,
    ReportExistsError,
    build_crm_export,
    build_report,
    crm_columns,
    load_scores,
    write_report,
)

XSS = "<script>alert(1)</script>"
AS_OF = pd.Timestamp("2025-06-01")
TIER_INFO = {
    "A": {"conversion_rate": 0.31, "share": 0.1},
    "B": {"conversion_rate": 0.12, "share": 0.2},
    "C": {"conversion_rate": 0.05, "share": 0.3},
    "D": {"conversion_rate": 0.012, "share": 0.4},
}
REASON_TYPE = pa.list_(
    pa.struct(
        [
            ("group", pa.string()),
            ("text", pa.string()),
            ("direction", pa.string()),
            ("effect", pa.float64()),
        ]
    )
)


def fake_scores(n: int = 12) -> pd.DataFrame:
    """Leads ``Person 1 .. Person n`` ranked in that order; every third one is a prospect,
    owners alternate Bo/Ana, and Person 5's company is an XSS payload."""
    rows = []
    for i in range(n):
        stage = "prospect" if i % 3 == 0 else "lead"
        p = round(0.9 - i * 0.05, 4)
        rows.append(
            {
                "lead_id": i + 1,
                "as_of": AS_OF,
                "stage": stage,
                "p_prospect": np.nan if stage == "prospect" else p,
                "p_opportunity": round(p / 2, 4) if stage == "lead" else p,
                "score": 90 - i * 5,
                "tier": "ABCD"[min(i // 3, 3)],
                "reasons": [
                    {
                        "group": "pricing_page_view",
                        "text": f"Viewed the pricing page {i + 1} times in the last 7 days",
                        "direction": "+",
                        "effect": 0.05,
                    },
                    {
                        "group": "tenure",
                        "text": "Lead for 12 days",
                        "direction": "+",
                        "effect": 0.01,
                    },
                    {"group": "country", "text": "Country: DE", "direction": "-", "effect": -0.012},
                ],
                "model_version": "leadml-opportunity:2"
                if stage == "prospect"
                else "leadml-prospect:3",
                "name": f"Person {i + 1}",
                "company": XSS if i == 4 else f"Company {i + 1}",
                "job_title": "CTO",
                "lead_source": "web_form",
                "owner": "Ana" if i % 2 else "Bo",
                "last_activity_at": pd.Timestamp("2025-05-30 14:00") if i != 7 else pd.NaT,
                "last_activity_type": "pricing_page_view" if i != 7 else None,
            }
        )
    return pd.DataFrame(rows)


def write_parquet(df: pd.DataFrame, path: Path, metadata: dict[str, object] | None = None) -> Path:
    """Write scores exactly as the scorer's schema says: reasons as a list of structs, leadml.*
    JSON key-value metadata."""
    table = pa.Table.from_pandas(df.drop(columns=["reasons"]), preserve_index=False)
    table = table.append_column("reasons", pa.array(list(df["reasons"]), type=REASON_TYPE))
    meta = {f"leadml.{k}".encode(): json.dumps(v).encode() for k, v in (metadata or {}).items()}
    pq.write_table(table.replace_schema_metadata(meta), path)
    return path


PAGE_TAGS = {
    *("html", "head", "meta", "title", "style", "body", "header", "div", "h1", "h3", "p"),
    *("span", "strong", "b", "i", "button", "input", "fieldset", "legend", "label", "select"),
    *("option", "main", "table", "thead", "tbody", "tr", "th", "td", "section", "ul", "li"),
    *("dl", "dt", "dd", "footer", "script"),
}


def start_tags(page: str) -> list[tuple[str, tuple[str, ...]]]:
    """Every element a browser's parser would create, with its attribute names."""
    from html.parser import HTMLParser

    found: list[tuple[str, tuple[str, ...]]] = []

    class Tags(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.append((tag, tuple(a for a, _ in attrs)))

    Tags().feed(page)
    return found


def lead_names(page: str) -> list[str]:
    return re.findall(r'<div class="who"[^>]*>([^<]*)</div>', page)


def test_every_lead_field_is_escaped() -> None:
    df = fake_scores()
    df.loc[1, "name"] = '"><img src=x onerror=alert(2)>'
    df.loc[2, "job_title"] = "</script><script>alert(3)</script>"
    df.at[3, "reasons"] = [{"group": "g", "text": "<b>bold</b>", "direction": "+", "effect": 0.1}]
    page = build_report(df, owner=None)
    assert XSS not in page and "<img" not in page and "<b>bold" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page
    # the page's own markup only: one script, no element that loads or links anything
    tags = start_tags(page)
    assert tags.count(("script", ())) == 1
    assert {t for t, _ in tags} <= PAGE_TAGS
    assert not [a for _, attrs in tags for a in attrs if a in ("src", "href") or a.startswith("on")]
    assert not re.search(r"@import|url\(|https?://", page)


def test_owner_filter_is_case_insensitive_and_ranks_within_the_owner() -> None:
    page = build_report(fake_scores(), owner=" ana ")
    assert lead_names(page) == [f"Person {i}" for i in (2, 4, 6, 8, 10, 12)]
    assert "Leads to call — ana" in page
    assert 'data-rank="1" ' in page and 'data-rank="7" ' not in page
    with pytest.raises(ReportError, match=r"no leads owned by 'Cy'.*'Ana', 'Bo'"):
        build_report(fake_scores(), owner="Cy")
    with pytest.raises(ReportError, match="no owner column"):
        build_report(fake_scores().drop(columns=["owner"]), owner="Ana")


def test_top_n_after_owner_and_ranked_by_score() -> None:
    df = fake_scores().sample(frac=1.0, random_state=3)  # input order must not matter
    assert lead_names(build_report(df, top=3)) == ["Person 1", "Person 2", "Person 3"]
    assert lead_names(build_report(df, owner="Bo", top=2)) == ["Person 1", "Person 3"]
    ties = fake_scores().assign(score=50, p_prospect=0.5, p_opportunity=0.5)
    assert lead_names(build_report(ties.iloc[::-1], top=3)) == ["Person 1", "Person 2", "Person 3"]
    with pytest.raises(ReportError, match="top must be a positive"):
        build_report(df, top=0)


def test_previous_run_gives_arrows_new_and_tier_moves() -> None:
    df = fake_scores()
    prev = df.iloc[1:].copy()
    prev["score"] = prev["score"] - 7
    prev.loc[2, "score"] = df.loc[2, "score"] + 3
    prev.loc[3, "score"] = df.loc[3, "score"]
    prev.loc[4, "tier"] = "A"
    prev["lead_id"] = prev["lead_id"].astype(str)  # a CSV run may read ids as text
    page = build_report(df, previous=prev)
    assert '<span class="new"' in page  # Person 1 is not in the previous run
    assert "▲ +7" in page and "▼ −3" in page and "±0" in page
    assert "(was tier A)" in page
    assert 'data-change="7"' in page and 'data-change="-3"' in page
    assert ">Change</button>" in page
    assert ">Change</button>" not in build_report(df)


def test_tier_cards_show_each_models_own_conversion() -> None:
    """Leads are tiered by the prospect model, prospects by the opportunity model."""
    opp = {
        t: {"conversion_rate": r, "share": 0.25}
        for t, r in zip("ABCD", [0.5, 0.2, 0.1, 0.05], strict=True)
    }
    page = build_report(
        fake_scores(), tier_info_by_model={"prospect": TIER_INFO, "opportunity": opp}
    )
    # One call list per question, each with its own lede, cards and its own model's rates.
    assert '<div class="list" data-list="lead">' in page
    assert '<div class="list" data-list="prospect" hidden>' in page
    assert "Call tier A first:</strong> 31% of similar leads became prospects" in page
    assert "Advance tier A first:</strong> 50% of similar prospects became opportunities" in page
    assert "<b>50%</b> became opportunities" in page and "<b>31%</b> became prospects" in page
    assert '<option value="lead" selected>Leads to qualify (8)</option>' in page
    assert '<option value="prospect">Prospects to advance (4)</option>' in page
    assert "prospect→opportunity model" in page
    # Ranks restart in each list; prospects are laid out only when their list is shown.
    assert re.search(r'data-rank="1" [^>]*data-stage="prospect"', page)
    assert re.search(r'<tbody class="lead" hidden [^>]*data-stage="prospect"', page)
    only_prospect = build_report(fake_scores(), tier_info=TIER_INFO)
    assert "became opportunities" not in only_prospect


def test_header_explains_tiers_and_next_stage() -> None:
    page = build_report(
        fake_scores(),
        tier_info=TIER_INFO,
        horizon_days={"prospect": 30, "opportunity": 60},
    )
    assert (
        "Call tier A first:</strong> 31% of similar leads became prospects within 30 days, "
        "against 1.2% in tier D." in page
    )
    assert "2025-06-01" in page
    assert "leadml-opportunity:2, leadml-prospect:3" in page
    # Cards count their own list: tier A holds leads 2, 3 and prospect 1 (fake_scores).
    assert re.search(r'badge bA">A</span><span class="n">2 leads', page)
    assert re.search(r'badge bA">A</span><span class="n">1 prospect<', page)
    assert re.search(r'badge bD">D</span><span class="n">2 leads', page)
    # next stage: p_prospect for a lead, p_opportunity for a prospect
    assert '<span class="pct">90%</span> <span class="to">→ opportunity' in page
    assert '<span class="pct">85%</span> <span class="to">→ prospect' in page
    assert "chance of becoming a prospect within 30 days" in page
    assert "chance of becoming an opportunity within 60 days" in page
    # without tier info the sentence still says whom to call
    assert "Call tier A first:</strong> the model rates them" in build_report(fake_scores())


def test_only_the_first_page_of_leads_is_laid_out_before_the_script_runs() -> None:
    page = build_report(fake_scores(), page_size=5)
    assert page.count('<tbody class="lead" hidden') == 7
    assert 'data-page="5"' in page and '<button type="button" id="more">' in page
    assert '<button type="button" id="more" hidden>' in build_report(fake_scores())
    with pytest.raises(ReportError, match="page_size must be a positive"):
        build_report(fake_scores(), page_size=0)


def test_card_reasons_have_direction_size_and_facts() -> None:
    page = build_report(fake_scores(3))
    assert '<li class="pos"><span class="rtext">Viewed the pricing page 1 times' in page
    assert '<span class="eff">+5.0 pts</span>' in page and "−1.2 pts" in page
    assert "width:50.0%" in page  # the largest reason fills its half of the track
    assert "Pricing page view · 2025-05-30 (1 day ago)" in page
    # the one-line top reason prefers something the lead did over how long it has existed
    assert re.search(
        r'<td class="why"><span class="clip" [^>]*><span class="dot"></span>Viewed the pricing page',
        page,
    )


def test_the_card_shows_how_the_points_add_up_and_reads_an_80_percent() -> None:
    df = fake_scores(3)
    # Person 1: reasons +5.0, +1.0, -1.2 = +4.8 points; base 84.0 + 4.8 + other 1.2 = 90.
    df["other_points"] = [1.2, np.nan, 0.0]
    df["base_score"] = df["score"] - 4.8 - df["other_points"].fillna(0)
    df.loc[0, "p_opportunity"] = 0.8
    page = build_report(df)
    assert (
        "Score 90 = base 84.0 (a typical lead in this stage) + 4.8 from the reasons above" in page
    )
    assert "+ 1.2 from other factors." in page
    assert "an 80% chance" in page and "a 80%" not in page
    # A row without other_points (an older file) shows no sum rather than a wrong one.
    assert page.count('<p class="adds">') == 2


def test_crm_export_column_order_and_flattened_reasons() -> None:
    df = fake_scores().iloc[::-1]
    out = build_crm_export(df, n_reasons=4)
    assert (
        list(out.columns)
        == [
            *CRM_COLUMNS,
            "reason_1",
            "reason_2",
            "reason_3",
            "reason_4",
            "as_of",
            "model_version",
            "call_list",
            "base_score",
            "other_points",
            "trend",
            "changes",
        ]
        == crm_columns(4)
    )
    # One call list per transition: leads to qualify, prospects to advance.
    by_stage = out.groupby("stage")["call_list"].unique()
    assert {s: list(v) for s, v in by_stage.items()} == {
        s: [{"lead": "qualify", "prospect": "advance"}[s]] for s in by_stage.index
    }
    assert out["base_score"].isna().all()  # a scores file from before the points existed
    assert out["lead_id"].tolist() == list(range(1, 13))  # rank order
    first = out.iloc[0]
    # No leading sign: a spreadsheet would read "+ ..." or "- ..." as a formula.
    assert first["reason_1"] == "Viewed the pricing page 1 times in the last 7 days (+5.0 pts)"
    assert first["reason_3"] == "Country: DE (-1.2 pts)"
    assert first["reason_4"] == ""
    assert first["p_next_stage"] == 0.9 and pd.isna(first["p_prospect"])
    assert first["as_of"] == "2025-06-01T00:00:00Z"
    assert out.loc[1, "p_next_stage"] == 0.85 and out.loc[1, "p_opportunity"] == 0.425
    assert out["score_change"].isna().all()
    prev = fake_scores().assign(score=lambda d: d["score"] - 2)
    assert build_crm_export(df, previous=prev)["score_change"].tolist() == [2] * 12
    # display columns are optional; the column order is not
    bare = build_crm_export(df.drop(columns=["name", "company", "owner"]), n_reasons=1)
    assert list(bare.columns) == crm_columns(1) and (bare["name"] == "").all()


def test_crm_export_is_safe_to_open_in_a_spreadsheet() -> None:
    """Cells a spreadsheet would run as formulas (OWASP: = + - @ tab CR) get an apostrophe."""
    df = fake_scores()
    df.loc[0, "name"] = '=HYPERLINK("http://x")'
    df.loc[1, "company"] = "@SUM(A1)"
    df.loc[2, "owner"] = "-2+3"
    df.loc[3, "name"] = "\tTabbed"
    out = build_crm_export(df, n_reasons=5)
    by_id = out.set_index("lead_id")
    assert by_id.loc[1, "name"] == '\'=HYPERLINK("http://x")'
    assert by_id.loc[2, "company"] == "'@SUM(A1)"
    assert by_id.loc[3, "owner"] == "'-2+3"
    assert by_id.loc[4, "name"] == "'\tTabbed"
    text = out.select_dtypes(exclude="number").to_numpy().ravel().astype(str)
    assert not any(t.startswith(("=", "+", "-", "@", "\t", "\r")) for t in text)


def test_write_report_html_and_csv_from_parquet(tmp_path: Path) -> None:
    scores = write_parquet(
        fake_scores(),
        tmp_path / "scores.parquet",
        {"tier_info": TIER_INFO, "model_versions": "leadml-prospect:3, leadml-opportunity:2"},
    )
    page = write_report(scores, tmp_path / "out" / "report.html", top=5).read_text("utf-8")
    assert "31% of similar leads became prospects in the model's test period" in page
    assert "models leadml-prospect:3, leadml-opportunity:2" in page
    assert len(lead_names(page)) == 5
    csv = write_report(scores, tmp_path / "crm.csv", fmt="csv", owner="Bo")
    text = csv.read_bytes().decode("utf-8")
    assert text.startswith(",".join(crm_columns(5)) + "\n")
    back = pd.read_csv(csv, keep_default_na=False)
    assert back["name"].tolist() == [f"Person {i}" for i in (1, 3, 5, 7, 9, 11)]
    assert back.loc[2, "company"] == XSS  # CSV keeps data as data
    assert oct(csv.stat().st_mode & 0o777) == "0o644"


def test_reads_the_scorers_csv_and_previous_runs(tmp_path: Path) -> None:
    from leadml.serve.contract import write_scores

    df = fake_scores()
    df.attrs.update(tier_info=TIER_INFO, model_versions="leadml-prospect:3")
    write_scores(df, tmp_path / "now.csv")
    write_scores(df, tmp_path / "now.parquet")
    frame, meta = load_scores(tmp_path / "now.parquet")
    assert meta["tier_info"] == TIER_INFO and meta["model_versions"] == "leadml-prospect:3"
    assert frame.loc[0, "reasons"][0]["effect"] == 0.05
    write_parquet(df.assign(score=df["score"] - 1), tmp_path / "before.parquet")
    frame, meta = load_scores(tmp_path / "now.csv")
    assert meta == {}
    assert frame.loc[0, "reasons"][2] == {
        "group": "",
        "text": "Country: DE",
        "direction": "-",
        "effect": pytest.approx(-0.012),
    }
    page = write_report(
        tmp_path / "now.csv", tmp_path / "r.html", previous_path=tmp_path / "before.parquet"
    ).read_text("utf-8")
    assert page.count("▲ +1") == 12 and "Country: DE" in page


def test_refuses_to_overwrite_and_writes_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scores = write_parquet(fake_scores(), tmp_path / "s.parquet")
    out = tmp_path / "r.html"
    out.write_text("keep me")
    with pytest.raises(ReportExistsError, match="already exists; pass --overwrite"):
        write_report(scores, out)
    assert issubclass(ReportExistsError, ValueError) and issubclass(
        ReportExistsError, FileExistsError
    )
    assert out.read_text() == "keep me"

    def boom(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_report(scores, out, overwrite=True)
    monkeypatch.undo()
    assert out.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html", "s.parquet"]  # no temp left
    write_report(scores, out, overwrite=True)
    assert out.read_text("utf-8").startswith("<!doctype html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html", "s.parquet"]


def test_clear_errors_for_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="does not exist; run `leadml score` first"):
        write_report(tmp_path / "nope.parquet", tmp_path / "x.html")
    write_parquet(fake_scores().drop(columns=["tier", "p_prospect"]), tmp_path / "bad.parquet")
    with pytest.raises(ReportError, match=r"missing column\(s\) p_prospect, tier; expected"):
        write_report(tmp_path / "bad.parquet", tmp_path / "x.html")
    with pytest.raises(ReportError, match="missing column\\(s\\) reasons"):
        build_report(fake_scores().drop(columns=["reasons"]))
    (tmp_path / "s.json").write_text("{}")
    with pytest.raises(ReportError, match="expected a .parquet or .csv"):
        write_report(tmp_path / "s.json", tmp_path / "x.html")
    with pytest.raises(ReportError, match="ends in .csv but the format is html; pass --format csv"):
        write_report(tmp_path / "bad.parquet", tmp_path / "x.csv")
    with pytest.raises(ReportError, match="format must be 'html' or 'csv'"):
        write_report(tmp_path / "bad.parquet", tmp_path / "x.pdf", fmt="pdf")
    df = fake_scores()
    df.loc[[2, 5], "score"] = np.nan
    with pytest.raises(ReportError, match=r"2 lead\(s\) have no numeric score \(lead_id 3, 6\)"):
        build_report(df)
    assert not (tmp_path / "x.html").exists()


def test_minimal_scores_and_empty_scores_still_render() -> None:
    bare = fake_scores(4)[
        ["lead_id", "as_of", "stage", "p_prospect", "p_opportunity", "score", "tier", "reasons"]
    ]
    bare.at[0, "reasons"] = []
    page = build_report(bare)
    assert lead_names(page) == ["Lead 1", "Lead 2", "Lead 3", "Lead 4"]
    assert "No reason moved this lead" in page and ">Owner</button>" not in page
    empty = build_report(bare.iloc[:0])
    assert "No leads to call" in empty and 'id="empty">' in empty
