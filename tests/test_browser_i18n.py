"""The app in Chinese at 1280x720 in Chromium (issue 28): CJK text is wider than English per character
and breaks differently, so every page is checked for labels, tabs, buttons, metrics and navigation
cut off, and for its translated title."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from test_browser import CHROMIUM, ERROR_SELECTOR, PAGES, TRUNCATED_METRICS, app_url, browser, wait_idle  # noqa: F401

from cnnlab import i18n


def cjk_font() -> bool:
    """Whether fontconfig (which Chromium draws with) has a font for Chinese. Without one every
    character is an empty box, and a box's width is not the character's: the check would measure
    nothing a class sees."""
    fc_list = shutil.which("fc-list")
    return bool(fc_list and subprocess.run([fc_list, ":lang=zh"], capture_output=True, text=True).stdout.strip())


pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
    pytest.mark.skipif(CHROMIUM is not None and not cjk_font(),
                       reason="no CJK font for Chromium (.ci/run installs fonts-wqy-microhei)"),
]

# text that is cut: wider than its box where the box hides what overflows (an ellipsis or a clip)
CUT_TEXT = """() => [...document.querySelectorAll(
        '[data-testid="stWidgetLabel"] p, [data-testid="stTab"] p, button p, [data-testid="stMetricLabel"] p, '
        + '[data-testid="stMetricValue"], [data-testid="stSidebarNav"] span, [data-testid="stExpander"] summary p, '
        + 'h1, h2, h3')]
    .filter(e => e.checkVisibility() && e.innerText.trim())
    .filter(e => {
        for (let x = e; x && x !== document.body; x = x.parentElement) {
            const s = getComputedStyle(x);
            if ((s.overflowX === 'hidden' || s.overflowX === 'clip' || s.textOverflow === 'ellipsis')
                && x.scrollWidth > x.clientWidth + 1) return true;
        }
        return false;
    })
    .map(e => e.innerText.trim().slice(0, 60))"""


@pytest.mark.parametrize("path,heading", PAGES)
def test_every_page_reads_in_chinese_at_1280x720_with_nothing_cut_off(browser, app_url, path, heading):  # noqa: F811
    title = i18n.translations("zh").gettext(heading)
    assert title != heading
    page = browser.new_page(viewport={"width": 1280, "height": 720}, locale="zh-CN")
    page.goto(f"{app_url}/{path}?lang=zh")
    page.get_by_role("heading", name=title, level=1).wait_for(timeout=60_000)
    page.wait_for_timeout(1000)
    wait_idle(page)
    assert page.locator(ERROR_SELECTOR).count() == 0, page.locator(ERROR_SELECTOR).first.inner_text()
    assert page.evaluate(TRUNCATED_METRICS) == []
    assert page.evaluate(CUT_TEXT) == []
    page.close()


def test_the_browser_language_is_the_first_choice(browser, app_url):  # noqa: F811
    """A browser that prefers Italian gets the app in Italian without asking; the address then says so."""
    page = browser.new_page(viewport={"width": 1280, "height": 720}, locale="it-IT")
    page.goto(f"{app_url}/data")
    page.get_by_role("heading", name=i18n.translations("it").gettext("Data"), level=1).wait_for(timeout=60_000)
    wait_idle(page)
    assert "lang=it" in page.url
    page.close()
