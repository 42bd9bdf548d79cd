"""Real-browser test of the training X-ray (issue 25), in Chromium at 1280x720 (a projector): a short
training started on the Train page draws the live gradient heat map; on the Runs page the kernel slider,
moved with the keyboard, shows the first convolution's kernels of another epoch. Every wait is for
something the page shows; the timeouts are safety nets, never a budget the training must fit in."""

from __future__ import annotations

import pytest
import test_browser
from test_browser import CHROMIUM, ERROR_SELECTOR, wait_idle

pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="Debian's chromium is not installed (.ci/run installs it)")
# test_browser's fixtures: the app served offline with its own cache, Chromium, the screenshots' folder
app_url, browser, shots = test_browser.app_url, test_browser.browser, test_browser.shots

# the element right after the one whose text starts with `start`, as Streamlit lays a page out: one element
# container after the other
NEXT_TO = """start => {
    const boxes = [...document.querySelectorAll('[data-testid="stMainBlockContainer"] [data-testid="stElementContainer"]')];
    const i = boxes.findIndex(b => b.innerText.trim().startsWith(start));
    return i >= 0 && i + 1 < boxes.length ? boxes[i + 1] : null;
}"""
# the heat map is drawn: the chart after its title holds painted cells (Vega's SVG rect marks)
HEAT_MAP_DRAWN = f"""() => {{
    const box = ({NEXT_TO})("Gradient norm per layer");
    return !!box && box.querySelectorAll('[data-testid="stVegaLiteChart"] svg g.mark-rect path').length > 0;
}}"""
# the kernels shown: [caption, image source], the image being the element before the caption "C1 ...:"
KERNELS = """() => {
    const boxes = [...document.querySelectorAll('[data-testid="stMainBlockContainer"] [data-testid="stElementContainer"]')];
    const i = boxes.findIndex(b => /^C1 (before training|after epoch \\d+):/.test(b.innerText.trim()));
    const img = i > 0 ? boxes[i - 1].querySelector('img') : null;
    return img ? [boxes[i].innerText.trim(), img.getAttribute('src')] : null;
}"""


def test_the_live_heat_map_appears_and_the_kernel_slider_moves(browser, app_url, shots):
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    page.goto(f"{app_url}/train")
    page.get_by_role("heading", name="Train", level=1).wait_for(timeout=60_000)
    wait_idle(page)
    epochs = page.get_by_role("spinbutton", name="Epochs")
    epochs.fill("2")  # LeNet on the digits: seconds
    epochs.press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Start training").click()
    page.wait_for_function(HEAT_MAP_DRAWN, timeout=300_000)
    page.get_by_text("Gradient norm per layer").first.scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "xray-live.png"))
    assert page.locator(ERROR_SELECTOR).count() == 0, page.locator(ERROR_SELECTOR).first.inner_text()
    page.get_by_text("is on the Runs page").first.wait_for(timeout=300_000)  # the run is saved

    page.goto(f"{app_url}/runs")
    page.get_by_role("heading", name="Runs", level=1).wait_for(timeout=60_000)
    slider = page.get_by_test_id("stSlider").filter(has_text="Kernels at")
    slider.wait_for(timeout=120_000)
    page.wait_for_function(f"() => !!({KERNELS})()", timeout=120_000)
    wait_idle(page, timeout=120_000)
    caption, before = page.evaluate(KERNELS)
    assert caption.startswith("C1 before training: 6 filters of 1 x 5 x 5"), caption
    thumb = slider.get_by_role("slider")
    thumb.scroll_into_view_if_needed()
    thumb.focus()
    thumb.press("ArrowRight")
    page.wait_for_function(f"() => {{ const k = ({KERNELS})(); return !!k && k[0].startsWith('C1 after epoch 1:'); }}",
                           timeout=60_000)
    wait_idle(page)
    caption, after = page.evaluate(KERNELS)
    assert after != before, "the kernels after epoch 1 are drawn as the same picture as before training"
    page.screenshot(path=str(shots / "xray-kernels.png"))
    assert page.locator(ERROR_SELECTOR).count() == 0, page.locator(ERROR_SELECTOR).first.inner_text()
    page.close()
