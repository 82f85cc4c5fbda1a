"""The report in a real headless Chromium (Debian's, installed by `make browser`), driven by
Playwright with real clicks and typing: loads offline without errors, ranks, sorts, filters,
searches, expands, prints, and keeps an XSS payload as text.

Also makes the README screenshot from ``make demo``'s report (``make screenshot`` runs both)::

    .venv/bin/python -m tests.test_report_browser --from data/processed/demo/report.html docs/report.png
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from leadml.report import build_report
from tests.test_report import TIER_INFO, XSS, fake_scores

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
VISIBLE = "tbody.lead:not([hidden])"
# fake_scores: every third lead is a prospect. The page opens on the leads-to-qualify list.
LEADS = [f"Person {i}" for i in (2, 3, 5, 6, 8, 9, 11, 12)]
PROSPECTS = [f"Person {i}" for i in (1, 4, 7, 10)]


def _under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = None
    if not os.path.exists(CHROMIUM):
        missing = f"{CHROMIUM} is not installed (`make browser` installs Debian's chromium)"
    else:
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            missing = "the playwright package is not installed (pip install -e '.[dev]')"
    if missing:
        if _under_ci():
            pytest.fail(f"{missing}; browser tests must run under CI")
        pytest.skip(missing)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Page:
    """A page on a report file, recording everything that should not happen."""

    def __init__(self, browser: Any, html: str, path: Path) -> None:
        path.write_text(html, encoding="utf-8")
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.requests: list[str] = []
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        pg = self.page
        pg.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        pg.on("pageerror", lambda e: self.errors.append(str(e)))
        pg.on("dialog", self._dialog)
        pg.on("request", lambda r: self.requests.append(r.url))
        pg.goto(path.as_uri())
        pg.wait_for_load_state("load")

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def names(self) -> list[str]:
        return self.page.eval_on_selector_all(
            f"{VISIBLE} .who", "els => els.map(e => e.textContent)"
        )

    def shown(self) -> str:
        return self.page.inner_text("#shown")

    def assert_clean(self, uri: str) -> None:
        assert self.errors == [] and self.dialogs == []
        assert self.requests == [uri]  # the file itself and nothing else


@pytest.fixture
def report(browser: Any, tmp_path: Path) -> Iterator[Page]:
    prev = fake_scores().iloc[1:].assign(score=lambda d: d["score"] - 3)
    html = build_report(
        fake_scores(), previous=prev, tier_info=TIER_INFO, horizon_days={"prospect": 30}
    )
    page = Page(browser, html, tmp_path / "report.html")
    yield page
    page.page.close()


def test_loads_ranked_and_offline(report: Page, tmp_path: Path) -> None:
    pg = report.page
    assert report.names() == LEADS
    assert report.shown() == "8"
    assert pg.inner_text(".lede").startswith("Call tier A first: 31% of similar leads")
    assert not pg.is_visible(".list[data-list=prospect]")
    pg.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 10_000
    report.assert_clean((tmp_path / "report.html").as_uri())


def test_clicking_headers_sorts(report: Page) -> None:
    pg = report.page
    pg.click("th[data-key=score] button")  # score: highest first
    assert report.names()[:2] == ["Person 2", "Person 3"]
    assert pg.get_attribute("th[data-key=score]", "aria-sort") == "descending"
    pg.click("th[data-key=score] button")  # again: lowest first
    assert report.names()[:3] == ["Person 12", "Person 11", "Person 9"]
    assert pg.get_attribute("th[data-key=score]", "aria-sort") == "ascending"
    pg.click("th[data-key=name] button")  # natural order: Person 2 before Person 11
    assert report.names()[:3] == ["Person 2", "Person 3", "Person 5"]
    cards = ".tiers:visible .tier[data-only=A] .n"
    assert pg.inner_text(cards) == "2 leads"  # each list's cards count its own rows
    pg.select_option("#stage", "prospect")  # the other call list, ranked on its own
    assert pg.is_visible(".list[data-list=prospect]") and not pg.is_visible(".lede >> nth=0")
    assert pg.inner_text(cards) == "1 prospect"
    assert pg.inner_text(".lede:visible").startswith("Advance tier A first:")
    pg.click("th[data-key=change] button")  # biggest rise first, the new lead last
    assert report.names()[-1] == "Person 1"
    pg.click("th[data-key=rank] button")
    assert report.names() == PROSPECTS
    assert pg.eval_on_selector_all(f"{VISIBLE} td.rank", "els => els.map(e => e.textContent)") == [
        "1",
        "2",
        "3",
        "4",
    ]
    assert report.errors == []


def test_tier_stage_filters_and_search(report: Page) -> None:
    pg = report.page
    for tier in ("B", "C", "D"):  # untick three of the four tier chips
        pg.click(f"#tier-filter label:has(input[value={tier}])")
    assert report.names() == ["Person 2", "Person 3"]
    assert report.shown() == "2"
    pg.select_option("#stage", "prospect")
    assert report.names() == ["Person 1"]
    pg.select_option("#stage", "lead")
    card = ".list[data-list=lead] .tier[data-only=D]"
    pg.click(card)  # a tier card shows only that tier ...
    assert report.names() == ["Person 11", "Person 12"]
    pg.click(card)  # ... and a second click shows all again
    assert report.shown() == "8"

    pg.click("#q")
    pg.keyboard.type("company 1")
    assert report.names() == ["Person 11", "Person 12"]
    pg.fill("#q", "")
    pg.keyboard.type("zzz")
    assert report.names() == [] and pg.is_visible("#empty")
    pg.fill("#q", "")
    assert report.shown() == "8" and not pg.is_visible("#empty")
    assert report.errors == []


def test_xss_payload_stays_text(report: Page, tmp_path: Path) -> None:
    pg = report.page
    pg.click("#q")
    pg.keyboard.type("<script>")
    assert report.names() == ["Person 5"]
    assert pg.inner_text(f"{VISIBLE} .co") == XSS
    pg.click(f"{VISIBLE} tr.row")
    assert XSS in pg.inner_text(f"{VISIBLE} .facts")
    assert pg.evaluate("document.scripts.length") == 1
    report.assert_clean((tmp_path / "report.html").as_uri())


def test_cards_expand_and_print(report: Page) -> None:
    pg = report.page
    first = "tbody.lead:first-of-type"
    assert not pg.is_visible(f"{first} .card")
    pg.click(f"{first} tr.row")
    assert pg.is_visible(f"{first} .card")
    assert pg.get_attribute(f"{first} tr.row", "aria-expanded") == "true"
    assert "Viewed the pricing page 2 times" in pg.inner_text(f"{first} .reasons")
    green = pg.eval_on_selector(
        f"{first} li.pos .track i", "e => getComputedStyle(e).backgroundColor"
    )
    red = pg.eval_on_selector(
        f"{first} li.neg .track i", "e => getComputedStyle(e).backgroundColor"
    )
    assert green == "rgb(21, 128, 61)" and red == "rgb(194, 65, 12)"
    pg.focus(f"{first} tr.row")
    pg.keyboard.press("Enter")
    assert not pg.is_visible(f"{first} .card")
    pg.click("#expand")
    assert pg.locator(".card:visible").count() == 8
    pg.click("#expand")
    assert pg.locator(".card:visible").count() == 0
    pg.emulate_media(media="print")  # printing shows the list's every card, hides the controls
    assert pg.locator(".card:visible").count() == 8 and not pg.is_visible("#q")
    assert report.errors == []


def test_print_this_lead_prints_only_its_row_and_card(report: Page) -> None:
    pg = report.page
    pg.evaluate("() => { window.print = () => { window.printed = (window.printed || 0) + 1; }; }")
    second = f"{VISIBLE} >> nth=1"
    pg.click(f"{second} >> tr.row")
    pg.click(f"{second} >> button.print-one")
    assert pg.evaluate("window.printed") == 1
    assert pg.get_attribute(second, "aria-expanded") is None  # the click did not close the card
    pg.emulate_media(media="print")
    assert pg.locator(".card:visible").count() == 1
    assert "Lead ID\n3" in pg.inner_text(".card:visible")  # Person 3, second in the list
    assert not pg.is_visible("header.top") and not pg.is_visible("button.print-one >> nth=0")
    pg.evaluate("window.dispatchEvent(new Event('afterprint'))")
    assert pg.locator(".card:visible").count() == 8  # an ordinary print again: the whole list
    assert report.errors == []


def test_long_lists_show_a_page_at_a_time(browser: Any, tmp_path: Path) -> None:
    report = Page(browser, build_report(fake_scores(), page_size=5), tmp_path / "r.html")
    pg = report.page
    assert report.names() == LEADS[:5]
    assert pg.inner_text(".count") == "5 of 8 leads shown Show 3 more"
    pg.click("#more")
    assert report.shown() == "8" and not pg.is_visible("#more")
    pg.click("th[data-key=score] button")
    pg.click("th[data-key=score] button")  # lowest first, still all eight shown in order
    assert report.names() == LEADS[::-1]
    pg.click("#q")
    pg.keyboard.type("person 1")  # a new search starts again from one page
    assert report.names() == ["Person 12", "Person 11"]
    pg.fill("#q", "")
    assert report.names() == LEADS[::-1][:5]  # sorted, first page
    report.assert_clean((tmp_path / "r.html").as_uri())
    pg.close()


# --- the README screenshot -------------------------------------------------------------------

_FIRST = "Mateo Leah Ethan Olivia Ingrid Priya Jonas Sofia Lukas Amara Chen Hannah Diego Noor Felix Clara Tomas Aisha Kenji Marta Oskar Yara Pavel Elena Samuel Ines Rafael Mia Arjun Zoe".split()
_LAST = "Taylor Sharma Visser Schneider Russo Patel Becker Rossi Wagner Okafor Wei Müller Alvarez Haddad Novak Dubois Silva Khan Tanaka Kowalski Berg Nassar Ivanov Popescu Mensah Costa Moreau Jensen Rao Fischer".split()
_COMPANIES = [
    "Northwind Logistics GmbH",
    "Brightpath Health",
    "Atlas Quantum AB",
    "Maplefalcon Learning",
    "Horizongreen Wealth",
    "Ironquantum Alliance",
    "Bluecrest Analytics",
    "Veridian Foods",
    "Solstice Retail Group",
    "Kestrel Robotics",
    "Lumen & Co. Architects",
    "Harborview Insurance",
    "Quartz Mobility",
    "Tidewater Energy",
    "Pinecone Software",
    "Orbital Media",
    "Crescent Pharma",
    "Granite Fintech",
    "Aurora Hotels",
    "Nimbus Cloudworks",
    "Redwood Legal LLP",
    "Summit Freight",
    "Cobalt Security",
    "Meridian Telecom",
    "Fjord Outdoor",
    "Saffron Kitchens",
    "Helix Biotech",
    "Polar Data Systems",
    "Citrine Events",
    "Oakridge Manufacturing",
]
_TITLES = [
    "Head of Operations",
    "CTO",
    "VP Sales",
    "IT Manager",
    "Procurement Lead",
    "CFO",
    "Marketing Director",
    "Founder & CEO",
    "Data Engineer",
    "Office Manager",
]
_SOURCES = ["web_form", "webinar", "referral", "paid_search", "trade_show", "content_download"]
_OWNERS = ["Jonas Becker", "Amelia Grant", "Rafael Ortiz"]
_POSITIVE = [
    ("pricing_page_view", "Viewed the pricing page {k} times in the last 7 days"),
    ("demo_request", "Last requested a demo {d} days ago"),
    ("webinar_attended", "Attended a webinar {k} times in the last 30 days"),
    ("email_click", "Clicked a link in an email {k} times in the last 7 days"),
    ("company_size", "Company size: 201-1000"),
    ("industry", "Industry: Software"),
    ("form_submit", "Submitted a form {k} times in the last 30 days"),
    ("content_download", "Last downloaded content {d} days ago"),
]
_NEGATIVE = [
    ("country", "Country: BR"),
    ("web_visit", "Did not visit the website in the last 7 days"),
    ("tenure", "Lead for {t} days"),
    ("email_open", "Last opened an email {d2} days ago"),
    ("job_title", "Job title: Student"),
]
_ACTIVITY = [
    "pricing_page_view",
    "email_click",
    "web_visit",
    "demo_request",
    "webinar_attended",
    "form_submit",
    "email_open",
]


def demo_scores(n: int = 30, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``n`` plausible fake leads in the scorer's schema, and an earlier run to compare with."""
    rng = np.random.default_rng(seed)
    as_of = pd.Timestamp("2025-06-02")
    rows = []
    p_next = np.sort(rng.beta(1.3, 4.0, n))[::-1]
    p_next[:3] = [0.58, 0.47, 0.44]
    for i in range(n):
        stage = "prospect" if rng.random() < 0.25 else "lead"
        p = float(p_next[i])
        score = int(round(100 * p))
        tier = "A" if score >= 40 else "B" if score >= 24 else "C" if score >= 11 else "D"
        k, d, d2, t = (
            rng.integers(2, 6),
            rng.integers(1, 6),
            rng.integers(20, 60),
            rng.integers(150, 400),
        )
        n_pos = 4 if tier in "AB" else int(rng.integers(1, 4))
        pos = rng.choice(len(_POSITIVE), n_pos, replace=False)
        neg = rng.choice(len(_NEGATIVE), 2, replace=False)
        eff_pos = np.sort(rng.uniform(0.005, 0.45 * p + 0.01, n_pos))[::-1]
        eff_neg = np.sort(rng.uniform(0.004, 0.05, 2))[::-1]
        reasons = [
            {
                "group": _POSITIVE[j][0],
                "text": _POSITIVE[j][1].format(k=k, d=d),
                "direction": "+",
                "effect": round(float(e), 4),
            }
            for j, e in zip(pos, eff_pos, strict=True)
        ] + [
            {
                "group": _NEGATIVE[j][0],
                "text": _NEGATIVE[j][1].format(t=t, d2=d2),
                "direction": "-",
                "effect": -round(float(e), 4),
            }
            for j, e in zip(neg, eff_neg, strict=True)
        ]
        rows.append(
            {
                "lead_id": 10_400 + int(rng.integers(0, 9_000)),
                "as_of": as_of,
                "stage": stage,
                "p_prospect": np.nan if stage == "prospect" else p,
                "p_opportunity": p if stage == "prospect" else p * rng.uniform(0.2, 0.45),
                "score": score,
                "tier": tier,
                "reasons": reasons,
                "model_version": "leadml-opportunity:2"
                if stage == "prospect"
                else "leadml-prospect:3",
                "name": f"{_FIRST[i % len(_FIRST)]} {_LAST[(i * 7) % len(_LAST)]}",
                "company": _COMPANIES[i % len(_COMPANIES)],
                "job_title": _TITLES[int(rng.integers(len(_TITLES)))],
                "lead_source": _SOURCES[int(rng.integers(len(_SOURCES)))],
                "owner": _OWNERS[int(rng.integers(len(_OWNERS)))],
                "last_activity_at": as_of - pd.Timedelta(hours=int(rng.integers(3, 24 * 20))),
                "last_activity_type": _ACTIVITY[int(rng.integers(len(_ACTIVITY)))],
            }
        )
    scores = pd.DataFrame(rows)
    previous = scores.drop(index=rng.choice(n, 3, replace=False)).copy()
    previous["score"] = (previous["score"] - rng.integers(-6, 9, len(previous))).clip(0, 100)
    previous["as_of"] = as_of - pd.Timedelta(days=7)
    return scores, previous


def test_a_huge_company_name_moves_no_other_rows_columns(browser: Any, tmp_path: Path) -> None:
    """A 1 MB company name is cut with an ellipsis (full text on hover): the tier, score and
    reason columns of every row stay where they are without it."""

    def columns(df: pd.DataFrame, name: str) -> list[float]:
        page = Page(browser, build_report(df), tmp_path / name)
        try:
            return page.page.eval_on_selector_all(
                f"{VISIBLE} tr.row td.score, {VISIBLE} tr.row td.why",
                "els => els.map(e => e.getBoundingClientRect().left)",
            )
        finally:
            page.page.close()

    plain = fake_scores()
    huge = plain.copy()
    huge.loc[1, "company"] = "Acme " * 200_000  # 1 MB, on the first lead of the list
    assert columns(huge, "huge.html") == columns(plain, "plain.html")
    page = Page(browser, build_report(huge), tmp_path / "huge2.html")
    try:
        box = page.page.eval_on_selector(
            f"{VISIBLE} .co", "e => [e.scrollWidth > e.clientWidth, e.title.length]"
        )
        assert box == [True, len("Acme " * 200_000)]  # cut on screen, whole on hover
        assert page.errors == []
    finally:
        page.page.close()


def test_reasons_show_their_evidence_and_the_points_add_up(browser: Any, tmp_path: Path) -> None:
    df = fake_scores(3)
    ev = "Past leads with a value from 1 to 3 here: 31% became prospects, against 6.0% overall."
    # Person 2 heads the leads-to-qualify list the page opens on.
    df.at[1, "reasons"] = [{**df.at[1, "reasons"][0], "evidence": ev}, *df.at[1, "reasons"][1:]]
    df["other_points"] = 0.0
    df["base_score"] = df["score"] - 4.8
    page = Page(browser, build_report(df), tmp_path / "ev.html")
    try:
        pg = page.page
        pg.click("tbody.lead:first-of-type tr.row")
        first = pg.locator("tbody.lead:first-of-type ul.reasons li").first
        assert first.get_attribute("title") == ev  # on hover
        assert pg.locator("tbody.lead:first-of-type .ev").first.is_visible()  # and in print
        assert ev in pg.inner_text("tbody.lead:first-of-type .card")
        assert "Score 85 = base 80.2" in pg.inner_text("tbody.lead:first-of-type p.adds")
        assert page.errors == []
    finally:
        pg.close()


def write_screenshot(out: Path, report: Path | None = None) -> Path:
    """Render a report in Chromium with its first lead open and save a PNG: ``report`` (the
    README's: ``make demo``'s ``report.html``, so the picture shows what the product writes), or
    a hand-made one when not given."""
    from playwright.sync_api import sync_playwright

    if report is not None:
        html = report.read_text(encoding="utf-8")
    else:
        scores, previous = demo_scores()
        tier_info = {
            "A": {"conversion_rate": 0.31, "share": 0.1},
            "B": {"conversion_rate": 0.14, "share": 0.2},
            "C": {"conversion_rate": 0.06, "share": 0.3},
            "D": {"conversion_rate": 0.015, "share": 0.4},
        }
        html = build_report(
            scores,
            previous=previous,
            tier_info=tier_info,
            horizon_days={"prospect": 30, "opportunity": 60},
        )
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        page_path = Path(tmp) / "report.html"
        page_path.write_text(html, encoding="utf-8")
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = b.new_page(viewport={"width": 1280, "height": 960})
        pg.goto(page_path.as_uri())
        pg.click("tbody.lead:first-of-type tr.row")
        pg.mouse.move(0, 0)
        pg.screenshot(path=str(out))
        b.close()
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    source = None
    if args[:1] == ["--from"]:
        source, args = Path(args[1]), args[2:]
    print(write_screenshot(Path(args[0] if args else "docs/report.png"), source))
