"""How fast the app answers in a real browser: ``python benchmarks/ui.py``.

Starts the app (offline, its own cache with one trained run and one saved lesson result) and Debian's
Chromium, warms every page once, then times what a class waits for, each beside its goal:

- every page until it is interactive (its title shown and Streamlit's "running" indicator gone): 2 s;
- a saved lesson opened from disk (its conclusion shown): 2 s;
- a click on a confusion-matrix cell until its images appear: 3 s; also timed once cold, the first click
  on the run's matrix made as soon as the matrix shows (what a click needs is prepared in the background
  from then on, so this first click waits only for what is left of that);
- a stroke drawn with the mouse on Look inside's canvas (the digits run) until the input picture and the
  feature maps (and the Grad-CAM, when its tab is drawn) show the new drawing and nothing of the previous run
  is left on the page (the network's answer is drawn in the same run): 1 s.

A benchmark, not a test: the figures depend on the machine and on what else runs (it prints the load);
the best of ``--repeat`` tries counts, as timeit does.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
PAGES = [("", "Architectures"), ("data", "Data"), ("mydata", "Your images"), ("inside", "Look inside"),
         ("convolution", "Convolution"), ("train", "Train"), ("transfer", "Transfer learning"),
         ("lessons", "Lessons"), ("runs", "Runs"), ("predict", "Predict")]
PAGE_GOAL_S, LESSON_GOAL_S, CELL_GOAL_S, DRAW_GOAL_S = 2.0, 2.0, 3.0, 1.0
IDLE = '[data-testid="stStatusWidget"]'
# what Look inside shows from a drawing, a fingerprint of each: the input as the model sees it, the feature maps'
# grid (a component's frame, same origin) and the Grad-CAM picture (when its tab is drawn)
DRAWN = """() => {
    const picture = start => [...document.querySelectorAll('[data-testid="stImageContainer"]')]
        .find(c => c.innerText.trim().startsWith(start));
    const input = picture('Input as the model sees it'), cam = picture('Grad-CAM');
    const frame = document.querySelector('iframe[title^="streamlit_image_coordinates"]');
    const grid = frame && frame.contentDocument && frame.contentDocument.querySelector('img');
    return [input ? input.querySelector('img').src : '', grid ? grid.src.length + grid.src.slice(-80) : '',
            cam ? cam.querySelector('img').src : ''];
}"""
QUIET = f"""() => !document.querySelector('[data-stale="true"], {IDLE}')"""
# every one changed since ``before`` (the Grad-CAM only if it was there), and the run is over: no element is left
# from the previous run (stale: not yet sent again, as the top-5 chart until it comes) and no running indicator
REDRAWN = f"""before => {{
    const [input, grid, cam] = ({DRAWN})();
    return input !== '' && input !== before[0] && grid !== '' && grid !== before[1]
        && (before[2] === '' || cam !== before[2]) && ({QUIET})();
}}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(cache: Path) -> None:
    """One trained LeNet run and one saved lesson result, in a cache of their own (about a minute)."""
    env = {**os.environ, "CNNLAB_CACHE": str(cache), "CNNLAB_OFFLINE": "1"}
    # the run last: the Runs page opens on the newest run, and its matrix is what is clicked
    for args in (["lesson", "learning-rate", "--set", "epochs=1"],
                 ["train", "--model", "lenet", "--data", "digits", "--epochs", "2"]):
        subprocess.run([sys.executable, "-m", "cnnlab", *args], cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@contextmanager
def serve(cache: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "CNNLAB_CACHE": str(cache), "CNNLAB_OFFLINE": "1",
           "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.headless", "true",
                             "--server.port", str(port), "--server.address", "127.0.0.1"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def interactive(page, heading: str) -> None:
    page.get_by_role("heading", name=heading, level=1).wait_for(timeout=120_000)
    page.wait_for_selector(IDLE, state="detached", timeout=120_000)


def best_of(repeat: int, once: Callable[[], float]) -> float:
    return min(once() for _ in range(repeat))


def time_page(browser, url: str, path: str, heading: str) -> float:
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    t0 = time.perf_counter()
    page.goto(f"{url}/{path}")
    interactive(page, heading)
    seconds = time.perf_counter() - t0
    page.close()
    return seconds


def opened(browser, url: str, path: str, heading: str):
    """A new 1280x720 tab on ``path``, once interactive."""
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    page.goto(f"{url}/{path}")
    interactive(page, heading)
    return page


def time_lesson(browser, url: str) -> float:
    page = opened(browser, url, "lessons", "Lessons")
    t0 = time.perf_counter()
    page.get_by_text("6. The learning rate").first.click()
    page.get_by_text(re.compile(r"^With lr 0\.1 the network reached")).first.wait_for(timeout=120_000)
    seconds = time.perf_counter() - t0
    page.close()
    return seconds


def time_cell(browser, url: str) -> float:
    page = opened(browser, url, "runs", "Runs")
    page.get_by_text("Confusion matrix").first.wait_for(timeout=120_000)
    page.wait_for_selector(IDLE, state="detached", timeout=120_000)
    charts = page.get_by_test_id("stVegaLiteChart")
    page.locator("g.mark-text.role-mark text").first.wait_for(timeout=120_000)
    found = [charts.nth(i) for i in range(charts.count())
             if charts.nth(i).locator("g.mark-text.role-mark text").count() == 100]  # 10 x 10 counts
    if not found:
        raise RuntimeError("the Runs page shows no 10-class confusion matrix")
    matrix = found[0]
    t0 = time.perf_counter()
    matrix.locator("g.mark-rect.role-mark path").nth(11).click()  # true 1, predicted 1: a full cell
    page.get_by_text(re.compile(r"validation image #\d+")).first.wait_for(timeout=120_000)
    seconds = time.perf_counter() - t0
    page.close()
    return seconds


def stroke(page, canvas, start: tuple[float, float], end: tuple[float, float]) -> float:
    """A mouse stroke on ``canvas`` from ``start`` to ``end`` (fractions of its width and height); returns the
    moment the button is released, when the canvas sends the drawing."""
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    (x0, y0), (x1, y1) = ((box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in (start, end))
    page.mouse.move(x0, y0)
    page.mouse.down()
    for i in range(1, 21):
        page.mouse.move(x0 + (x1 - x0) * i / 20, y0 + (y1 - y0) * i / 20)
    released = time.perf_counter()
    page.mouse.up()
    return released


def settled(page) -> list[str]:
    """What Look inside shows once two looks half a second apart agree (the grid's frame loads its picture
    after the run)."""
    last = None
    while True:
        page.wait_for_function(QUIET, timeout=120_000)
        now = page.evaluate(DRAWN)
        if now == last:
            return now
        last = now
        page.wait_for_timeout(500)


def time_drawing(browser, url: str) -> float:
    """A "1" drawn first (the maps appear), then the bar of a "7": from that stroke's end until the page shows
    it (:data:`REDRAWN`)."""
    page = opened(browser, url, "inside", "Look inside")
    main = page.get_by_test_id("stMainBlockContainer")
    main.get_by_test_id("stRadio").get_by_text("Draw", exact=True).click()  # the image picker's choice
    main.get_by_text("on the canvas").first.wait_for(timeout=120_000)  # the drawing's hint: the canvas is there
    page.wait_for_function(QUIET, timeout=120_000)  # and the photo's maps (tables drawn on canvases too) are gone
    canvas = main.locator('[class*="st-key-inside-canvas"] canvas').last.element_handle()  # Fabric.js's upper one
    for attempt in range(5):  # just shown, the canvas may not listen yet: the "1" (not timed) is drawn again
        stroke(page, canvas, (0.5, 0.2), (0.5, 0.85))
        try:
            page.wait_for_function(REDRAWN, arg=["", "", ""], timeout=20_000)
            break
        except PlaywrightTimeout:
            if attempt == 4:
                raise
    before = settled(page)
    t0 = stroke(page, canvas, (0.25, 0.2), (0.75, 0.2))
    page.wait_for_function(REDRAWN, arg=before, timeout=120_000)
    seconds = time.perf_counter() - t0
    page.close()
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="tries per interaction; the best counts")
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium")
    if chromium is None:
        print("error: Debian's chromium is needed (apt-get install chromium).", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        print("preparing a run and a lesson result…", file=sys.stderr)
        prepare(cache)
        with serve(cache) as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            first_cell = time_cell(browser, url)  # cold: the run's mistakes are prepared from the matrix on
            for path, heading in PAGES:  # warm: imports, caches, the first run of each page
                time_page(browser, url, path, heading)
            tries: dict[str, list[float]] = {path: [] for path, _ in PAGES}
            for _ in range(args.repeat):  # round after round: a burst of other work spreads over all the pages
                for path, heading in PAGES:
                    tries[path].append(time_page(browser, url, path, heading))
            rows = [(f"page {heading}", min(tries[path]), PAGE_GOAL_S) for path, heading in PAGES]
            rows.append(("a saved lesson opened", best_of(args.repeat, lambda: time_lesson(browser, url)), LESSON_GOAL_S))
            rows.append(("a confusion cell clicked", best_of(args.repeat, lambda: time_cell(browser, url)), CELL_GOAL_S))
            rows.append(("the first click, cold", first_cell, CELL_GOAL_S))
            rows.append(("a drawing's answer and maps", best_of(args.repeat, lambda: time_drawing(browser, url)),
                         DRAW_GOAL_S))
            browser.close()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"the app in Chromium at 1280x720, best of {args.repeat}, {os.cpu_count()} CPUs, load {load:.1f}")
    for name, seconds, goal in rows:
        print(f"  {name:<28} {seconds:6.2f} s   goal {goal:.0f} s   {'meets' if seconds <= goal else 'SLOWER'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
