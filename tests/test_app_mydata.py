"""AppTest of the Your images page: a three-class dataset built from generated images by upload (a bad
file among them named with its reason), a camera photo, bad names refused with a message, a class
added and an image removed; classes kept in the order typed; then the dataset in the Data page's picker,
and "Train on it" opening the Train page with the small-data settings, trained to the end, its live view
showing only the current training once the dataset changes or another starts."""

from __future__ import annotations

import io

from apphelpers import open_view
from PIL import Image

from cnnlab.data.shapes import generate_shapes

CLASSES = ["circle", "square", "triangle"]


def uploads(per_class: int, fmt: str = "PNG") -> dict[str, list[tuple[str, bytes, str]]]:
    images, labels = generate_shapes(8 * per_class, size=48, seed=4)
    out: dict[str, list[tuple[str, bytes, str]]] = {c: [] for c in CLASSES}
    for i, (x, y) in enumerate(zip(images, labels.tolist())):
        if y < 3 and len(out[CLASSES[y]]) < per_class:
            buf = io.BytesIO()
            Image.fromarray(x.permute(1, 2, 0).numpy()).save(buf, fmt)
            ext = "jpg" if fmt == "JPEG" else fmt.lower()
            out[CLASSES[y]].append((f"{CLASSES[y]}{i}.{ext}", buf.getvalue(), f"image/{'jpeg' if ext == 'jpg' else ext}"))
    return out


def create(at, name: str, classes: str):
    at.text_input(key="mydata-name").set_value(name)
    at.text_area(key="mydata-classes").set_value(classes)
    return at.button(key="mydata-create").click().run()


def build(at, per_class: int = 5):
    """Create 'shapes mine' with three classes and upload ``per_class`` images to each."""
    create(at, "Shapes mine", "circle\nsquare, triangle")
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.selectbox(key="mydata-pick").value == "shapes_mine"
    for c, files in uploads(per_class).items():
        at.radio(key="mydata-class-shapes_mine").set_value(c).run()
        at.file_uploader[0].set_value(files).run()
        assert not at.exception
        assert any(f"Added {per_class} images to '{c}'." == s.value for s in at.success)
    return at


def test_page_builds_a_three_class_dataset_by_upload(data_dir):
    from cnnlab.data import load_dataset

    at = open_view("mydata")
    assert at.title[0].value == "Your images"
    assert any("at most 500 images per class" in c.value and "20 MB" in c.value for c in at.caption)  # the limits
    build(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Classes": "3", "Images": "15", "Fewest in a class": "5"}
    assert len(at.image) == 3  # one row of thumbnails per class
    assert "Images so far: circle 5 · square 5 · triangle 5" in [c.value for c in at.caption]
    assert any("python -m cnnlab train --data shapes_mine" in c.value for c in at.code)
    assert sorted(p.name for p in (data_dir / "shapes_mine" / "triangle").iterdir()) == [f"000{i}.png" for i in range(1, 6)]
    bundle = load_dataset("folder", root=data_dir / "shapes_mine", progress=False)
    assert bundle.info.classes == CLASSES and len(bundle.train) + len(bundle.val) == 15

    at.switch_page("views/data.py").run()  # listed in the Data page's picker at once
    box = at.selectbox(key="data-ds")
    assert "shapes_mine — your images" in box.options
    box.set_value("shapes_mine").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Total images"] == "15" and metrics["Training images"] == "12"


def test_a_bad_file_is_named_and_the_others_kept(data_dir):
    at = open_view("mydata")
    create(at, "mixed", "good, other")
    files = uploads(3)["circle"] + [("notes.jpg", b"this is text, not a photo", "image/jpeg"),
                                     ("cut.png", uploads(1)["square"][0][1][:60], "image/png")]
    at.file_uploader[0].set_value(files).run()
    assert not at.exception
    assert [s.value for s in at.success] == ["Added 3 images to 'good'."]
    warning = at.warning[0].value
    assert "2 files refused (the others were kept)" in warning
    assert "'notes.jpg' is not an image cnnlab can read" in warning and "'cut.png'" in warning
    assert len(list((data_dir / "mixed" / "good").glob("*.png"))) == 3
    at.file_uploader[0].set_value(files[-1:]).run()  # only bad files: nothing added, said so
    assert not at.success and at.warning[0].value == "No image was added to 'good'."
    assert "'cut.png'" in at.warning[-1].value


def test_uploads_over_the_class_limit_are_refused_by_count_before_being_read(data_dir, monkeypatch):
    from cnnlab.data import maker

    monkeypatch.setattr(maker, "MAX_IMAGES_PER_CLASS", 3)
    real, given = maker.add_images, []

    def spy(key, class_, files, data_root=None):
        files = list(files)
        given.append([name for name, _ in files])
        assert all(callable(data) for _, data in files)  # the bytes are read one at a time, inside
        return real(key, class_, files, data_root)

    monkeypatch.setattr(maker, "add_images", spy)
    at = open_view("mydata")
    assert any("at most 20 datasets, 2 GB of stored images in all" in c.value for c in at.caption)
    create(at, "full", "a, b")
    files = uploads(5)["circle"]
    at.file_uploader[0].set_value(files[:2]).run()
    at.file_uploader[0].set_value(files[2:]).run()  # three more, room for one
    assert not at.exception
    assert given == [[files[0][0], files[1][0]], [files[2][0]]]  # the other two never reached the maker
    assert [s.value for s in at.success] == ["Added 1 image to 'a'."]
    warning = at.warning[-1].value
    assert "2 files refused (the others were kept)" in warning
    assert f"2 files not added ('{files[3][0]}', '{files[4][0]}'): 'a' held 2 images and a class holds at most 3" in warning
    assert sorted(p.name for p in (data_dir / "full" / "a").iterdir()) == ["0001.png", "0002.png", "0003.png"]
    assert any("In use: 1 of 20 datasets" in c.value for c in at.caption)


def test_camera_photos_are_added_to_the_class(data_dir):
    at = open_view("mydata")
    create(at, "camera", "me, not me")
    at.radio(key="mydata-class-camera").set_value("not me").run()
    at.toggle(key="mydata-camera-on").set_value(True).run()
    shot = uploads(1, fmt="JPEG")["circle"][0]
    at.camera_input[0].set_value(("photo.jpg", shot[1], "image/jpeg")).run()
    assert not at.exception
    assert any("Added 1 image to 'not me'." == s.value for s in at.success)
    assert at.camera_input[0].value is None  # a fresh camera for the next photo
    at.camera_input[0].set_value(("photo.jpg", shot[1], "image/jpeg")).run()
    assert sorted(p.name for p in (data_dir / "camera" / "not me").iterdir()) == ["0001.png", "0002.png"]


BAD = [  # (name, classes, what the message says)
    ("mnist", "a, b", "already has"),
    ("../up", "a, b", "can only hold letters"),
    ("fine", "cat, Cat", "named twice"),
    ("fine", "only one", "at least 2 classes"),
    ("fine", "ok, ../../etc", "'/'"),
]


def test_bad_names_are_refused_with_a_message(data_dir):
    at = open_view("mydata")
    for name, classes, message in BAD:
        create(at, name, classes)
        assert not at.exception
        assert at.error and message in at.error[0].value, (name, classes, [e.value for e in at.error])
        assert not data_dir.exists() or not any(data_dir.iterdir())  # nothing was made
        assert at.selectbox(key="mydata-pick").value == ""  # still on "New dataset"


def test_add_a_class_and_remove_an_image(data_dir):
    at = open_view("mydata")
    build(at, per_class=2)
    at.text_input(key="mydata-newclass").set_value("star").run()
    at.button(key="mydata-addclass").click().run()
    assert not at.exception and "now has the classes circle, square, triangle, star" in at.success[0].value
    assert (data_dir / "shapes_mine" / "star").is_dir()
    assert any("star (0 images)" in i.value for i in at.info)  # not ready: says which class lacks images
    at.radio(key="mydata-class-shapes_mine").set_value("circle").run()
    at.selectbox(key="mydata-remove-file").set_value("0002.png").run()
    at.button(key="mydata-remove").click().run()
    assert [p.name for p in (data_dir / "shapes_mine" / "circle").iterdir()] == ["0001.png"]
    assert any("Removed 0002.png" in s.value for s in at.success)


def test_classes_stay_in_the_order_typed(data_dir):
    at = open_view("mydata")
    create(at, "fruit", "pear\napple, Fig")
    assert not at.exception
    assert at.success[0].value.endswith("with the classes pear, apple, Fig. Now add images to each class.")
    assert at.radio(key="mydata-class-fruit").options == ["pear", "apple", "Fig"]
    assert "Images so far: pear 0 · apple 0 · Fig 0" in [c.value for c in at.caption]
    at.text_input(key="mydata-newclass").set_value("banana").run()
    at.button(key="mydata-addclass").click().run()
    assert "'fruit' now has the classes pear, apple, Fig, banana." == at.success[0].value
    assert at.radio(key="mydata-class-fruit").options == ["pear", "apple", "Fig", "banana"]
    assert [m.value for m in at.markdown if m.value.startswith("**")][:4] == [
        f"**{c}** · 0 images" for c in ("pear", "apple", "Fig", "banana")]  # the thumbnails' rows


def train_one_epoch(at):
    """Start one epoch on the Train page as it is, and wait for the job's end; returns the job."""
    from cnnlab.jobs import get_manager

    at.number_input(key="train-epochs").set_value(1).run()
    at.button(key="train-start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    job = get_manager().get(at.session_state["train-job"])
    assert job.wait(timeout=300), "training did not finish"  # a safety net: one epoch of a dozen images
    at.run()
    assert job.state == "finished", job.message
    return job


def live_texts(at) -> list[str]:
    return [e.value for e in (*at.info, *at.success, *at.warning, *at.caption)]


def test_train_on_it_opens_the_train_page_with_small_data_settings_and_trains(data_dir):
    at = build(open_view("mydata"))
    at.button(key="mydata-train").click().run()
    assert not at.exception
    assert at.title[0].value == "Train"
    assert at.selectbox(key="train-data").value == "shapes_mine"
    assert at.selectbox(key="train-model").value == "cifar_resnet"
    assert at.text_input(key="train-size").value == "32"
    assert at.selectbox(key="train-aug").value == "cifar"
    assert at.selectbox(key="train-made-size").value == 32
    assert any("Settings for a small image folder applied" in m.value for m in at.markdown)
    assert any("Hold-out: about 20% of every class (seed 0), 3 validation images" in c.value
               and "circle 4/1" in c.value for c in at.caption)  # as maker.holdout splits 0001..0005.png
    # 3 validation images: every one is 33 points of accuracy, and the page says so
    assert any(w.value.startswith("Only 3 validation images: each is 33 points of accuracy") for w in at.warning)
    at.switch_page("views/train.py").run()  # AppTest follows a switch made by the script for one run only
    assert at.selectbox(key="train-model").value == "cifar_resnet"  # the settings stay
    job = train_one_epoch(at)
    assert job.config.dataset == "shapes_mine" and job.config.data_options == {"image_size": 32}
    assert any("Runs" in s.value for s in at.success)
    # an ended job says which one it is, and its run
    assert f"This is job #{job.id}, cifar_resnet on shapes_mine, which has ended (finished); its run {job.run_id} " \
           "is on the **Runs** page. A training you start replaces it here." in [i.value for i in at.info]


def test_the_live_view_shows_only_the_current_training(data_dir):
    """Another dataset (picked on the Train page, or "Train on it" on a new one) clears the live view of an
    ended job; a new training then shows only its own progress, curves and messages."""
    at = build(open_view("mydata"), per_class=4)
    at.button(key="mydata-train").click().run()
    at.switch_page("views/train.py").run()
    first = train_one_epoch(at)
    assert any(first.run_id in t for t in live_texts(at))

    at.selectbox(key="train-data").set_value("shapes").run()  # another dataset on the Train page
    assert not at.exception
    assert at.selectbox(key="train-live-job").value is None
    assert "No training on shapes yet" in at.info[-1].value
    assert not any(first.run_id in t or "on shapes_mine ·" in t for t in live_texts(at))  # no old message or caption
    assert not at.get("vega_lite_chart")  # no old curves

    at.selectbox(key="train-live-job").set_value(first.id).run()  # an earlier job can still be picked
    assert any(first.run_id in t for t in live_texts(at)) and at.get("vega_lite_chart")

    at.switch_page("views/mydata.py").run()  # a second dataset of your own, then "Train on it"
    create(at, "second", "b, a")
    for c, (_, files) in zip(["b", "a"], uploads(4).items()):
        at.radio(key="mydata-class-second").set_value(c).run()
        at.file_uploader[0].set_value(files).run()
    at.button(key="mydata-train").click().run()
    at.switch_page("views/train.py").run()
    assert at.selectbox(key="train-data").value == "second"
    assert "No training on second yet" in at.info[-1].value
    assert not any(first.run_id in t or "on shapes_mine ·" in t for t in live_texts(at)) and not at.get("vega_lite_chart")
    second = train_one_epoch(at)
    texts = live_texts(at)
    assert at.selectbox(key="train-live-job").value == second.id
    assert any(second.run_id in t for t in texts) and any("cifar_resnet on second ·" in t for t in texts)
    assert not any(first.run_id in t or "on shapes_mine" in t for t in texts)
