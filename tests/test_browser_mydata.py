"""Real-browser test of the Your images page: in Chromium, build a three-class dataset from generated
images by upload (and a photo from Chromium's fake camera), then train on it for one epoch from the
Train page, see the run finish, and open its mistakes (a click on the confusion matrix shows the
images of that cell with their Grad-CAM). Every wait is for something the page shows; timeouts are safety
nets, never a budget the work must fit in."""

from __future__ import annotations

import re

import pytest
from PIL import Image
from test_browser import CHROMIUM, ERROR_SELECTOR, serve_app, wait_idle

from cnnlab.data.shapes import generate_shapes

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
CLASSES = ["circle", "square", "triangle"]
# the page shows exactly one chart whose text marks are n whole counts: the confusion matrix
ONE_MATRIX = """(n) => [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')].filter(c => {
    const t = [...c.querySelectorAll('g.mark-text.role-mark text')].map(e => e.textContent);
    return t.length === n && t.every(x => /^[0-9]+$/.test(x));
}).length === 1"""
PER_CLASS = 5


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The app with its own empty cache and data folder: ``(url, data folder)``."""
    cache = tmp_path_factory.mktemp("browser-mydata-cache")
    data = tmp_path_factory.mktemp("browser-mydata-data")
    with serve_app(cache, CNNLAB_DATA=str(data)) as url:
        yield url, data


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
        yield b
        b.close()


def generated_images(folder) -> dict[str, list[str]]:
    """PER_CLASS PNG files of each class, drawn by the shapes generator, in ``folder``."""
    images, labels = generate_shapes(8 * PER_CLASS, size=48, seed=7)
    out: dict[str, list[str]] = {c: [] for c in CLASSES}
    for i, (x, y) in enumerate(zip(images, labels.tolist())):
        if y < len(CLASSES) and len(out[CLASSES[y]]) < PER_CLASS:
            path = folder / f"{CLASSES[y]}_{i}.png"
            Image.fromarray(x.permute(1, 2, 0).numpy()).save(path)
            out[CLASSES[y]].append(str(path))
    return out


VIDEO_PLAYS = """() => {
    const v = document.querySelector('[data-testid="stCameraInput"] video');
    return !!v && v.readyState >= 2 && v.videoWidth > 0;
}"""


def pick_class(page, name: str) -> None:
    """Choose the class images go to, and wait until the page shows its uploader."""
    page.locator('[data-testid="stRadio"] label').filter(has_text=re.compile(rf"^{name}$")).click()
    page.get_by_text(f"Images of '{name}'").wait_for(timeout=60_000)
    wait_idle(page)


def test_build_a_dataset_by_upload_and_camera_then_train_on_it(browser, app, tmp_path):
    from playwright.sync_api import expect

    url, data = app
    files = generated_images(tmp_path)
    (tmp_path / "notes.jpg").write_text("not a picture")
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, permissions=["camera"])
    page = context.new_page()
    page.goto(f"{url}/mydata")
    page.get_by_role("heading", name="Your images", level=1).wait_for(timeout=60_000)
    wait_idle(page)
    page.get_by_role("textbox", name="Name").fill("browser shapes")
    page.get_by_role("textbox", name=re.compile("Classes")).fill("\n".join(CLASSES))
    page.get_by_role("button", name="Create dataset").click()
    page.get_by_text("Created 'browser_shapes'").wait_for(timeout=60_000)
    wait_idle(page)

    for c in CLASSES:
        pick_class(page, c)
        extra = [str(tmp_path / "notes.jpg")] if c == "square" else []
        uploader = page.locator('[data-testid="stFileUploader"]').filter(has_text=f"Images of '{c}'")
        uploader.locator('input[type="file"]').set_input_files(files[c] + extra)
        page.get_by_text(f"Added {PER_CLASS} images to '{c}'.").wait_for(timeout=60_000)
        if extra:  # the refused file is named with its reason, the others were kept
            page.get_by_text("'notes.jpg' is not an image cnnlab can read").wait_for(timeout=60_000)
        wait_idle(page)
    assert (data / "browser_shapes" / "square").is_dir()
    assert sorted(p.name for p in (data / "browser_shapes" / "square").iterdir()) == \
        [f"{i:04d}.png" for i in range(1, PER_CLASS + 1)]

    # a photo from Chromium's fake camera (its test pattern) into the triangles
    pick_class(page, "triangle")
    page.get_by_text("Use the camera").click()
    take = page.get_by_role("button", name=re.compile("Take photo", re.I))
    take.wait_for(timeout=60_000)
    page.wait_for_function(VIDEO_PLAYS, timeout=120_000)  # the fake camera's stream shows frames
    expect(take).to_be_enabled(timeout=60_000)
    take.click()
    page.get_by_text("Added 1 image to 'triangle'.").wait_for(timeout=60_000)
    wait_idle(page)
    assert len(list((data / "browser_shapes" / "triangle").glob("*.png"))) == PER_CLASS + 1
    page.get_by_text(f"Images so far: circle {PER_CLASS} · square {PER_CLASS} · triangle {PER_CLASS + 1}").wait_for()
    expect(page.get_by_role("radio", name="triangle")).to_be_checked()
    page.screenshot(path=str(tmp_path / "mydata.png"), full_page=True)
    assert page.locator(ERROR_SELECTOR).count() == 0, page.locator(ERROR_SELECTOR).first.inner_text()

    page.get_by_role("button", name="Train on it").click()
    page.get_by_role("heading", name="Train", level=1).wait_for(timeout=60_000)
    page.get_by_text("Settings for a small image folder applied").wait_for(timeout=60_000)
    wait_idle(page)
    epochs = page.get_by_role("spinbutton", name="Epochs")
    epochs.fill("1")
    epochs.press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Start training").click()
    done = page.get_by_text(re.compile(r"is on the Runs page")).first
    done.wait_for(timeout=300_000)
    page.screenshot(path=str(tmp_path / "trained.png"), full_page=True)
    body = page.locator("body").inner_text()
    assert "cifar_resnet on browser_shapes" in body  # the start event's caption
    assert page.locator(ERROR_SELECTOR).count() == 0, page.locator(ERROR_SELECTOR).first.inner_text()

    # its mistakes: the Runs page's confusion matrix, a click on its fullest cell, the images with Grad-CAM
    page.goto(f"{url}/runs")
    page.get_by_text("Confusion matrix").first.wait_for(timeout=120_000)
    wait_idle(page)
    # the confusion matrix: the chart whose text marks are one whole count per cell (the X-ray's bars below it
    # carry percentages)
    page.get_by_test_id("stVegaLiteChart").locator("g.mark-text.role-mark text").first.wait_for(timeout=60_000)
    # wait for exactly one such chart: once, in a full run under load, two charts had the counts when read
    page.wait_for_function(ONE_MATRIX, arg=len(CLASSES) ** 2, timeout=60_000)
    charts = page.get_by_test_id("stVegaLiteChart")
    texts = [charts.nth(i).locator("g.mark-text.role-mark text").evaluate_all("els => els.map(e => e.textContent)")
             for i in range(charts.count())]
    (i_matrix,) = [i for i, t in enumerate(texts) if len(t) == len(CLASSES) ** 2 and all(x.isdigit() for x in t)]
    matrix = charts.nth(i_matrix)
    counts = [int(t) for t in texts[i_matrix]]
    assert len(counts) == len(CLASSES) ** 2 and sum(counts) > 0, counts
    fullest = max(range(len(counts)), key=counts.__getitem__)
    matrix.locator("g.mark-rect.role-mark path").nth(fullest).click()
    page.get_by_text(re.compile(r"validation image #\d+")).first.wait_for(timeout=120_000)
    wait_idle(page)
    true, predicted = CLASSES[fullest // len(CLASSES)], CLASSES[fullest % len(CLASSES)]
    expect(page.get_by_text(f"True {true}, predicted {predicted}")).to_have_count(1, timeout=60_000)
    # every image of the cell (up to the 8 shown) with its Grad-CAM; they stream in one after the other
    expect(page.get_by_text(re.compile(rf"Grad-CAM of {predicted}"))).to_have_count(min(counts[fullest], 8),
                                                                                 timeout=60_000)
    page.screenshot(path=str(tmp_path / "mistakes.png"), full_page=True)
    assert page.locator(ERROR_SELECTOR).count() == 0, page.locator(ERROR_SELECTOR).first.inner_text()
    context.close()
