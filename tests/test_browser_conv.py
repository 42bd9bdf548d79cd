"""Real-browser tests of the Convolution page (issue 24), in Chromium at 1280x720 (a projector): a click
on a cell of the drawn output grid moves the window there and shows that cell's products; Play steps
through the positions until Pause. Every wait is for something the page shows; the timeouts are safety
nets, never a budget the page must fit in."""

from __future__ import annotations

import pytest
import test_browser
from test_browser import CHROMIUM, ERROR_SELECTOR, wait_idle

from cnnlab.convolution import conv_sandbox, read_input, read_kernel

pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="Debian's chromium is not installed (.ci/run installs it)")
# test_browser's fixtures: the app served offline with its own cache, Chromium, the screenshots' folder
app_url, browser, shots = test_browser.app_url, test_browser.browser, test_browser.shots
GRID = 'iframe[title="streamlit_image_coordinates.streamlit_image_coordinates"]'  # the clickable output grid
# the page's default sandbox, as `python -m cnnlab conv --input digit:3 --kernel vertical_edges --padding 1`
SANDBOX = conv_sandbox(read_input("digit:3"), read_kernel("vertical_edges"), padding=1)
# the position shown above the window, "Output row R, col C (I of N)": I, or null while it is redrawn
POSITION = r"""() => {
    const p = [...document.querySelectorAll('[data-testid="stMarkdownContainer"] p')]
        .find(e => /^Output row \d+, col \d+ \(\d+ of \d+\)$/.test(e.innerText.trim()));
    return p ? parseInt(p.innerText.match(/\((\d+) of/)[1], 10) : null;
}"""


def open_sandbox(browser, url: str):
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    page.goto(f"{url}/convolution")
    page.get_by_role("heading", name="Convolution", level=1).wait_for(timeout=60_000)
    page.get_by_text("Output row 0, col 0").first.wait_for(timeout=60_000)
    wait_idle(page)
    return page


def shown_position(page) -> int | None:
    return page.evaluate(POSITION)


def test_a_click_on_an_output_cell_shows_its_products(browser, app_url, shots):
    page = open_sandbox(browser, app_url)
    grid = page.frame_locator(GRID).locator("img")
    grid.wait_for(timeout=60_000)
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    rows, cols = SANDBOX.output_size
    row, col = 2, 5
    grid.click(position={"x": (col + 0.5) * box["width"] / cols, "y": (row + 0.5) * box["height"] / rows})
    page.get_by_text(f"Output row {row}, col {col}").first.wait_for(timeout=60_000)
    wait_idle(page)
    e = SANDBOX.explain(0, row, col)
    # its products written out (input channel 0: 13x1 + 6x0 + ... = -35), and the products table's numbers
    page.get_by_test_id("stCode").filter(has_text=e.lines()[1]).first.wait_for(timeout=60_000)
    tables = page.get_by_test_id("stTable")  # the window's values, the kernel, the products
    products = tables.nth(2).locator("td").all_inner_texts()
    assert products == [str(int(v)) for r in e.windows[0].products for v in r]
    assert page.get_by_text(f"= {int(e.value)}").count() >= 1  # the sum, bias and result
    assert page.locator(ERROR_SELECTOR).count() == 0
    page.evaluate(r"""() => [...document.querySelectorAll('[data-testid="stMarkdownContainer"] p')]
        .find(e => /^Input \d+x\d+x\d+ . output/.test(e.innerText)).scrollIntoView({block: 'start'})""")
    page.screenshot(path=str(shots / "convolution.png"))
    page.close()


def test_play_steps_through_the_positions_until_pause(browser, app_url, shots):
    page = open_sandbox(browser, app_url)
    assert shown_position(page) == 1
    page.get_by_role("button", name="Play").click()
    for step in (2, 3, 4):  # the window moves on by itself, one position per tick
        page.wait_for_function(f"() => ({POSITION})() >= {step}", timeout=60_000)
    page.get_by_role("button", name="Pause").click()
    page.get_by_role("button", name="Play").wait_for(timeout=60_000)
    wait_idle(page)
    paused = shown_position(page)
    assert paused >= 4
    page.get_by_role("button", name="Next").click()  # paused: Next moves exactly one position
    page.wait_for_function(f"() => ({POSITION})() === {paused + 1}", timeout=60_000)
    wait_idle(page)
    assert shown_position(page) == paused + 1
    assert page.locator(ERROR_SELECTOR).count() == 0
    page.screenshot(path=str(shots / "convolution-paused.png"))
    page.close()
