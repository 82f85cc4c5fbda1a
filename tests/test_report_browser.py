"""The report in a real headless Chromium (Debian's, installed by `make browser`), driven by
Playwright: loads cleanly, sorts, filters, searches, and keeps an XSS payload as text."""

from __future__ import annotations

import os
import shutil

import pytest

from leadml.report import build_report
from tests.test_report import fake_scores

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
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


@pytest.fixture
def page(tmp_path):
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; `make browser` installs it")
        pytest.skip("chromium not installed (run `make browser`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        dialogs: list[str] = []
        pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        path = tmp_path / "report.html"
        path.write_text(build_report(fake_scores(12)), encoding="utf-8")
        pg.goto(path.as_uri())
        yield pg, errors, dialogs
        browser.close()


def _visible_names(pg) -> list[str]:
    return pg.eval_on_selector_all(
        "tbody.lead:not(.hidden) .who", "els => els.map(e => e.textContent)"
    )


def test_report_in_a_real_browser(page, tmp_path) -> None:
    pg, errors, dialogs = page
    names = _visible_names(pg)
    assert names == [f"Person {i}" for i in range(1, 13)]  # ranked by score
    assert pg.inner_text("#count") == "12"

    pg.click("th[data-key=score]")  # first click: highest first (already), second: lowest first
    pg.click("th[data-key=score]")
    assert _visible_names(pg)[:2] == ["Person 12", "Person 11"]
    pg.click("th[data-key=name]")
    assert _visible_names(pg)[0] == "Person 1"

    pg.select_option("#tier", "A")
    assert sorted(_visible_names(pg)) == ["Person 1", "Person 2", "Person 3"]
    pg.select_option("#tier", "")
    pg.select_option("#stage", "prospect")
    assert set(_visible_names(pg)) == {"Person 1", "Person 4", "Person 7", "Person 10"}
    pg.select_option("#stage", "")
    pg.fill("#q", "company 1")
    assert set(_visible_names(pg)) == {"Person 1", "Person 10", "Person 11", "Person 12"}
    pg.fill("#q", "")
    pg.type("#q", "<script>")
    assert _visible_names(pg) == ["Person 5"]
    assert pg.inner_text("tbody.lead:not(.hidden) .co") == "<script>alert(1)</script>"

    pg.click("tbody.lead:not(.hidden) tr.row")
    assert pg.is_visible("tbody.lead:not(.hidden) .card")
    assert "Viewed the pricing page" in pg.inner_text("tbody.lead:not(.hidden) .reasons")
    pg.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 10_000
    assert errors == [] and dialogs == []
