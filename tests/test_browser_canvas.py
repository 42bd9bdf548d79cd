"""The drawing canvas in Debian's Chromium: a stroke drawn with the mouse on Predict gets an answer; on Look
inside it gets the answer and the feature maps, and the always-visible Clear empties the canvas.

The app runs as in tests/test_browser.py (``serve_app``: `streamlit run`, offline, its own cache),
here with the session's LeNet digits run copied into that cache.
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager

import pytest
from test_browser import CHROMIUM, ERROR_SELECTOR, serve_app, wait_idle

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")


def _stroke(page, canvas) -> None:
    """A "1", top to bottom, drawn with the mouse on the canvas (Fabric.js draws on its upper canvas)."""
    box = canvas.bounding_box()
    x, top = box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.15
    page.mouse.move(x, top)
    page.mouse.down()
    for i in range(1, 21):
        page.mouse.move(x, top + i * box["height"] * 0.035)
    page.mouse.up()


@contextmanager
def digits_page(digits_run, tmp_path, path: str, heading: str, height: int):
    """The app with the digits run, one of its pages open in Chromium: ``(page, its main block)``."""
    from playwright.sync_api import sync_playwright

    cache, _ = digits_run
    shutil.copytree(cache / "runs", tmp_path / "runs")
    with serve_app(tmp_path) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": height})
            page.goto(f"{url}/{path}")
            page.get_by_role("heading", name=heading, level=1).wait_for(timeout=60_000)
            wait_idle(page)
            yield page, page.get_by_test_id("stMainBlockContainer")
        finally:
            browser.close()


def test_a_stroke_on_the_canvas_gets_a_prediction(digits_run, tmp_path):
    from playwright.sync_api import expect

    with digits_page(digits_run, tmp_path, "predict", "Predict", 900) as (page, main):
        main.get_by_text("Draw", exact=True).click()  # the image picker's "Draw" choice
        main.get_by_text("Draw a digit on the canvas").wait_for(timeout=60_000)
        expect(main.get_by_text(" says ")).to_have_count(0)  # a blank canvas: no prediction
        canvas = main.locator("canvas.upper-canvas")
        canvas.wait_for(timeout=60_000)
        _stroke(page, canvas)
        says = main.get_by_text(" says ")
        says.wait_for(timeout=60_000)
        wait_idle(page)
        assert "with probability" in says.inner_text()
        expect(main.get_by_text("like scikit-learn's digits")).to_have_count(1)  # the drawing as the model sees it
        assert page.locator(ERROR_SELECTOR).count() == 0, page.locator(ERROR_SELECTOR).first.inner_text()
        page.screenshot(path=str(tmp_path / "drawing.png"))


def test_look_inside_answers_a_stroke_and_its_clear_button_is_always_there(digits_run, tmp_path):
    from playwright.sync_api import expect

    with digits_page(digits_run, tmp_path, "inside", "Look inside", 720) as (page, main):
        main.get_by_role("radiogroup", name="Image").get_by_text("Draw").click()
        main.get_by_text("Draw a digit on the canvas").wait_for(timeout=60_000)
        clear = main.get_by_role("button", name="Clear the drawing")
        expect(clear).to_be_visible()  # without hovering over the canvas
        canvas = main.locator("canvas.upper-canvas")
        canvas.wait_for(timeout=60_000)
        _stroke(page, canvas)
        main.get_by_text("The network's answer:").wait_for(timeout=60_000)
        page.frame_locator('iframe[title="streamlit_image_coordinates.streamlit_image_coordinates"]').locator(
            "img").wait_for(timeout=60_000)  # the feature maps of the drawing
        wait_idle(page)
        assert page.locator(ERROR_SELECTOR).count() == 0, page.locator(ERROR_SELECTOR).first.inner_text()
        page.screenshot(path=str(tmp_path / "inside-drawing.png"))
        clear.click()
        expect(main.get_by_text("The network's answer:")).to_have_count(0, timeout=60_000)
        main.get_by_text("Draw a digit on the canvas").wait_for(timeout=60_000)
