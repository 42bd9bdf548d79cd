"""Datasets made from your own images (cnnlab.data.maker): names, limits, bad files, saving that never
loses what was saved, and the result loading by name, as an image folder and from the command line."""

from __future__ import annotations

import io
import json
import struct
import zlib

import pytest
from PIL import Image

from cnnlab.data import dataset_status, list_datasets, load_dataset, maker
from cnnlab.data.shapes import generate_shapes
from cnnlab.errors import DataError

CLASSES = ["circle", "square", "triangle"]


def shape_pngs(per_class: int, size: int = 48, seed: int = 0) -> dict[str, list[tuple[str, bytes]]]:
    """``per_class`` generated PNG images of each of CLASSES (the shapes' first three classes)."""
    images, labels = generate_shapes(8 * per_class, size=size, seed=seed)
    out: dict[str, list[tuple[str, bytes]]] = {c: [] for c in CLASSES}
    for i, (x, y) in enumerate(zip(images, labels.tolist())):
        if y < len(CLASSES) and len(out[CLASSES[y]]) < per_class:
            buf = io.BytesIO()
            Image.fromarray(x.permute(1, 2, 0).numpy()).save(buf, "PNG")
            out[CLASSES[y]].append((f"{CLASSES[y]}_{i}.png", buf.getvalue()))
    return out


def make(name: str = "my shapes", per_class: int = 5) -> maker.MadeDataset:
    maker.create_dataset(name, CLASSES)
    key = maker.dataset_key(name)
    for c, files in shape_pngs(per_class).items():
        report = maker.add_images(key, c, files)
        assert len(report.saved) == per_class and not report.refused
    return maker.read_made(key)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (a decompression bomb's header), with valid CRCs."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


# --------------------------------------------------------------------------- loading what was made


def test_made_dataset_loads_by_name_and_as_an_image_folder(data_dir):
    made = make()
    assert made.key == "my_shapes" and made.title == "my shapes" and made.root == data_dir / "my_shapes"
    assert made.classes == CLASSES and made.counts == {c: 5 for c in CLASSES} and made.ready
    assert sorted(p.name for p in (data_dir / "my_shapes" / "square").iterdir()) == [f"000{i}.png" for i in range(1, 6)]

    names = [s.name for s in list_datasets()]
    assert names[:3] == ["shapes", "digits", "my_shapes"]  # right after the embedded ones
    status = dataset_status("my_shapes")
    assert status.state == "present" and "3 classes, 15 images" in status.message

    bundle = load_dataset("my_shapes", progress=False)
    assert bundle.info.name == "my_shapes" and bundle.info.source == "yours" and bundle.info.classes == CLASSES
    assert bundle.info.input_shape == (3, maker.DEFAULT_IMAGE_SIZE, maker.DEFAULT_IMAGE_SIZE)
    assert len(bundle.train) == 12 and len(bundle.val) == 3  # 20% of every class held out
    assert bundle.train.class_counts(3) == [4, 4, 4] and bundle.val.class_counts(3) == [1, 1, 1]

    # the same folder as an ordinary image folder: the same images (split by the folder's own shuffle)
    folder = load_dataset("folder", root=data_dir / "my_shapes", image_size=maker.DEFAULT_IMAGE_SIZE, progress=False)
    assert folder.info.classes == CLASSES

    def images(b):
        return sorted((int(y), x.numpy().tobytes()) for s in (b.train, b.val) for x, y in zip(s.images, s.labels))

    assert images(folder) == images(bundle)
    # the stored pixels are the generated ones (PNG is lossless; 48 px is below the stored size)
    stored = Image.open(data_dir / "my_shapes" / "circle" / "0001.png")
    assert stored.size == (48, 48) and stored.mode == "RGB"


def test_command_line_makes_lists_and_trains_on_it(tmp_path, data_dir, capsys):
    from cnnlab.cli import main

    photos = tmp_path / "photos"
    for c, files in shape_pngs(4).items():
        (photos / c).mkdir(parents=True)
        for name, data in files:
            (photos / c / name).write_bytes(data)
    (photos / "square" / "notes.jpg").write_text("not a picture")
    argv = ["datasets", "make", "cli_shapes"] + [a for c in CLASSES for a in ("--class", c, str(photos / c))]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "square: added 4, refused 1" in out and "'notes.jpg' is not an image" in out
    assert "python -m cnnlab train --data cli_shapes" in out
    assert main(["datasets"]) == 0
    assert any(line.split()[:3] == ["cli_shapes", "yours", "present"] for line in capsys.readouterr().out.splitlines())

    tiny = ["--model", "lenet_color", "--epochs", "1", "--max-steps", "2", "--batch-size", "4", "--no-tensorboard",
            "--data-option", "image_size=32"]
    assert main(["train", "--data", "cli_shapes", *tiny]) == 0
    out = capsys.readouterr().out
    assert "on cli_shapes (9 train / 3 val images)" in out and "run id:" in out
    assert main(["train", "--data", "folder", "--data-root", str(data_dir / "cli_shapes"), *tiny]) == 0
    assert "on folder (9 train / 3 val images)" in capsys.readouterr().out


ORDER = ["triangle", "circle", "square"]  # as a teacher typed them: not alphabetical


def test_classes_keep_the_order_they_were_named_through_loading_and_training(data_dir):
    maker.create_dataset("ordered", ORDER)
    pngs = shape_pngs(4)
    for n, c in enumerate(ORDER, start=2):  # 2, 3 and 4 images: each label's count tells its class
        assert len(maker.add_images("ordered", c, pngs[c][:n]).saved) == n
    made = maker.read_made("ordered")
    assert made.classes == ORDER and maker.class_order(made.root) == ORDER
    bundle = load_dataset("ordered", image_size=32, progress=False)
    assert bundle.info.classes == ORDER
    assert [a + b for a, b in zip(bundle.train.class_counts(3), bundle.val.class_counts(3))] == [2, 3, 4]
    folder = load_dataset("folder", root=data_dir / "ordered", image_size=32, progress=False)
    assert folder.info.classes == ORDER  # the same labels as an ordinary image folder
    assert [a + b for a, b in zip(folder.train.class_counts(3), folder.val.class_counts(3))] == [2, 3, 4]
    assert maker.create_dataset("ordered", ["apple", "Banana"]).classes == [*ORDER, "apple", "Banana"]


def test_a_run_names_the_classes_in_the_order_they_were_named(data_dir, capsys):
    from cnnlab.cli import main
    from cnnlab.runs import load_run

    maker.create_dataset("ordered_run", ORDER)
    for c in ORDER:
        maker.add_images("ordered_run", c, shape_pngs(2)[c])
    tiny = ["--model", "lenet_color", "--epochs", "1", "--max-steps", "1", "--batch-size", "4", "--no-tensorboard",
            "--data-option", "image_size=32"]
    assert main(["train", "--data", "ordered_run", *tiny]) == 0
    run_id = capsys.readouterr().out.split("run id:")[1].split()[0]
    assert load_run(run_id).meta["classes"] == ORDER


def test_a_dataset_made_before_the_order_was_kept_stays_sorted(data_dir):
    """A version 1 manifest listed the classes sorted and its runs learnt that order: it stays, also after
    the manifest is rewritten; a hand-made class folder comes after the named ones; a bad list is ignored."""
    made = make("legacy", per_class=2)
    manifest = made.root / maker.MANIFEST
    old = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**old, "cnnlab_dataset": 1, "classes": ["triangle", "square", "circle"]}))
    assert maker.read_made("legacy").classes == CLASSES
    maker.add_images("legacy", "square", shape_pngs(1)["square"])  # rewrites the manifest
    assert json.loads(manifest.read_text())["classes"] == CLASSES and maker.read_made("legacy").classes == CLASSES
    (made.root / "by hand").mkdir()
    assert maker.read_made("legacy").classes == [*CLASSES, "by hand"]
    manifest.write_text(json.dumps({**old, "classes": ["square", 3]}))  # not a list of names: the sorted folders
    assert maker.read_made("legacy").classes == ["by hand", *CLASSES]


def test_a_class_with_too_few_images_says_which(data_dir):
    maker.create_dataset("few", ["a", "b"])
    maker.add_images("few", "a", shape_pngs(2)["circle"])
    maker.add_images("few", "b", shape_pngs(1)["square"])
    status = dataset_status("few")
    assert status.state == "missing" and "b (1 image)" in status.message
    with pytest.raises(DataError, match=r"at least 2 images in every class.*b \(1 image\)"):
        load_dataset("few", progress=False)


def test_only_folders_with_a_manifest_are_listed_and_a_damaged_one_is_ignored(data_dir):
    (data_dir / "MNIST" / "raw").mkdir(parents=True)
    (data_dir / "handmade" / "x").mkdir(parents=True)  # a folder a person made: train it as 'folder'
    make("mine", per_class=2)
    assert [m.key for m in maker.list_made()] == ["mine"]
    (data_dir / "mine" / maker.MANIFEST).write_text("{not json")
    made = maker.read_made("mine")
    assert made.classes == CLASSES and made.total == 6 and "could not be read" in made.notes[0]
    with pytest.raises(DataError, match="Unknown dataset 'mien'.*Did you mean 'mine'"):
        load_dataset("mien")


# --------------------------------------------------------------------------- bad files


def test_bad_files_are_named_with_their_reason_and_the_rest_kept(data_dir):
    good = shape_pngs(2)["circle"]
    truncated = good[0][1][: len(good[0][1]) // 2]
    maker.create_dataset("bad_files", ["circle", "other"])
    report = maker.add_images("bad_files", "circle", [
        good[0], ("cut.png", truncated), ("letter.jpg", b"Dear class,\nthis is text.\n"),
        ("bomb.png", png_header_only(100_000, 100_000)), ("empty.png", b""), good[1],
    ])
    assert [p.name for p in report.saved] == ["0001.png", "0002.png"]
    reasons = {r.name: r.reason for r in report.refused}
    assert set(reasons) == {"cut.png", "letter.jpg", "bomb.png", "empty.png"}
    assert reasons["cut.png"].startswith("'cut.png' is") and ("truncated" in reasons["cut.png"] or "corrupt" in reasons["cut.png"])
    assert "'letter.jpg' is not an image cnnlab can read" in reasons["letter.jpg"]
    assert "'bomb.png'" in reasons["bomb.png"] and "megapixels" in reasons["bomb.png"]
    assert "empty" in reasons["empty.png"]
    assert "Refused 4" in report.message()
    assert maker.read_made("bad_files").counts["circle"] == 2


def test_size_and_count_limits_refuse_before_decoding(data_dir, monkeypatch):
    maker.create_dataset("limits", ["a", "b"])
    decoded = []
    real = maker.prepare_image
    monkeypatch.setattr(maker, "prepare_image", lambda data, name: decoded.append(name) or real(data, name))
    huge = ("huge.jpg", b"\xff\xd8\xff" + bytes(maker.MAX_FILE_BYTES))
    report = maker.add_images("limits", "a", [huge])
    assert not report.saved and "'huge.jpg' is 20.0 MB; the limit is 20 MB" in report.refused[0].reason

    monkeypatch.setattr(maker, "MAX_IMAGES_PER_CLASS", 3)
    decoded.clear()
    files = shape_pngs(5)["circle"]
    report = maker.add_images("limits", "a", files)
    assert len(report.saved) == 3 and len(report.refused) == 2
    assert "is full (3 images, the limit)" in report.refused[0].reason
    assert decoded == [name for name, _ in files[:3]]  # the refused ones were never decoded


def test_big_photos_are_stored_scaled_down_without_metadata(data_dir):
    photo = Image.new("RGB", (1200, 800), (10, 200, 30))
    exif = Image.Exif()
    exif[0x010F] = "Phone maker"
    buf = io.BytesIO()
    photo.save(buf, "JPEG", exif=exif)
    maker.create_dataset("photos", ["green", "other"])
    saved = maker.add_images("photos", "green", [("IMG_0001.JPG", buf.getvalue())]).saved
    stored = Image.open(saved[0])
    assert stored.format == "PNG" and stored.size == (384, 256) and not stored.getexif()


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("name, message", [
    ("", "Give the dataset a name"),
    ("2fruits", "must start with a letter"),
    ("../etc", "can only hold letters"),
    ("a/b", "can only hold letters"),
    ("mnist", "already has"),
    ("folder", "already has"),
    ("x" * 41, "at most 40"),
])
def test_bad_dataset_names(name, message):
    with pytest.raises(DataError, match=message):
        maker.dataset_key(name)


def test_dataset_names_are_normalised():
    assert maker.dataset_key("  My Fruits-2 ") == "my_fruits_2"


@pytest.mark.parametrize("name, message", [
    ("", "empty"),
    ("   ", "empty"),
    ("..", "cannot start or end with '.'"),
    ("../../etc", "'/'"),
    ("a\\b", "'\\\\\\\\'"),
    (".hidden", "cannot start"),
    ("tab\there", "'\\\\t'"),
    ("nul", "Windows reserves"),
    ("COM1.txt", "Windows reserves"),
    ("y" * 41, "at most 40"),
])
def test_bad_class_names(name, message):
    with pytest.raises(DataError, match=message):
        maker.class_name(name)


def test_class_lists_are_checked_as_a_whole():
    assert maker.class_names(["gatto", " cane ", "猫"]) == ["gatto", "cane", "猫"]
    assert maker.parse_class_list("apple\nbanana, pear,,\n") == ["apple", "banana", "pear"]
    with pytest.raises(DataError, match="named twice"):
        maker.class_names(["Cat", "cat"])
    with pytest.raises(DataError, match="at least 2 classes"):
        maker.class_names(["alone"])
    with pytest.raises(DataError, match="at most 10 classes"):
        maker.class_names([f"c{i}" for i in range(11)])
    with pytest.raises(DataError, match="named twice"):
        maker.class_names(["Apple"], existing=["apple", "pear"])


def test_a_folder_not_made_here_is_never_taken_over(data_dir):
    (data_dir / "hymenoptera" / "ants").mkdir(parents=True)
    (data_dir / "hymenoptera" / "ants" / "a.jpg").write_bytes(b"precious")
    with pytest.raises(DataError, match="already exists and was not made here"):
        maker.create_dataset("hymenoptera", ["ants", "bees"])
    assert (data_dir / "hymenoptera" / "ants" / "a.jpg").read_bytes() == b"precious"


# --------------------------------------------------------------------------- saving safely


def test_adding_again_never_loses_what_was_saved(data_dir):
    made = make("keep", per_class=2)
    before = {p: p.read_bytes() for c in CLASSES for p in maker.image_files("keep", c)}
    (made.root / "circle" / "0003.png").write_bytes(before[made.root / "circle" / "0001.png"])  # e.g. another session
    made = maker.create_dataset("keep", ["circle", "star"])  # a class that exists and a new one
    assert made.classes == ["circle", "square", "triangle", "star"] and made.counts["square"] == 2  # added last
    saved = maker.add_images("keep", "circle", shape_pngs(2, seed=1)["circle"]).saved
    assert [p.name for p in saved] == ["0004.png", "0005.png"]
    assert all(p.read_bytes() == data for p, data in before.items())
    with pytest.raises(DataError, match="at most 10 classes"):
        maker.create_dataset("keep", [f"extra{i}" for i in range(7)])
    assert maker.read_made("keep").total == 9


def test_an_interrupted_save_leaves_whole_images_only(data_dir, monkeypatch):
    make("interrupted", per_class=2)
    files = shape_pngs(3, seed=2)["square"]
    real_link = maker._link_new
    calls = []

    def crash_on_second(tmp, folder, start):
        calls.append(tmp)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the server stopped in the middle of a save
        return real_link(tmp, folder, start)

    monkeypatch.setattr(maker, "_link_new", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        maker.add_images("interrupted", "square", files)
    folder = data_dir / "interrupted" / "square"
    assert sorted(p.name for p in folder.glob("*.png")) == ["0001.png", "0002.png", "0003.png"]
    assert all(Image.open(p).size == (48, 48) for p in folder.glob("*.png"))  # whole files
    assert len(list(folder.glob(".*.tmp"))) == 1  # the complete temporary copy, hidden from loaders
    bundle = load_dataset("interrupted", progress=False)  # 2 + 3 + 2 whole images, the hidden copy ignored
    split = maker.holdout_counts(maker.read_made("interrupted"), 0.2)
    assert sum(map(sum, split)) == 7 and (len(bundle.train), len(bundle.val)) == tuple(map(sum, zip(*split)))
    monkeypatch.setattr(maker, "_link_new", real_link)
    assert len(maker.add_images("interrupted", "square", files[:1]).saved) == 1
    assert not list(folder.glob(".*.tmp"))  # cleaned by the next save


def test_a_full_disk_is_a_clear_message_and_keeps_what_was_saved(data_dir, monkeypatch):
    make("disk", per_class=2)
    real_fsync = maker.os.fsync
    calls = []

    def fail_second(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(maker.os, "fsync", fail_second)
    with pytest.raises(DataError, match="No space left on device.*Images already saved are kept"):
        maker.add_images("disk", "triangle", shape_pngs(3, seed=3)["triangle"])
    folder = data_dir / "disk" / "triangle"
    assert sorted(p.name for p in folder.iterdir()) == ["0001.png", "0002.png", "0003.png"]


# --------------------------------------------------------------------------- training suggestions


def test_the_holdout_is_the_one_the_page_shows_and_what_the_loader_uses(data_dir):
    made = make("shown", per_class=6)
    for fraction, seed in ((0.2, 0), (0.5, 0), (0.2, 7), (0.0, 0)):
        split = maker.holdout(made, fraction, seed)
        bundle = load_dataset("shown", val_fraction=fraction, seed=seed, progress=False)
        counts = maker.holdout_counts(made, fraction, seed)
        assert counts == [(len(t), len(v)) for t, v in split.values()]
        assert bundle.train.class_counts(3) == [t for t, _ in counts]
        assert bundle.val.class_counts(3) == [v for _, v in counts]
        for c, (train, val) in split.items():
            assert sorted([*train, *val]) == sorted(made.files[c]) and not set(train) & set(val)
            if fraction:
                assert train and val  # every class keeps at least one file on each side
    # which files: the validation images are exactly the held-out files' pixels
    bundle = load_dataset("shown", val_fraction=0.5, seed=0, progress=False)
    split = maker.holdout(made, 0.5, 0)
    held = [made.root / c / n for c, (_, val) in split.items() for n in val]
    decoded = load_dataset("folder", root=made.root, image_size=64, progress=False, val_fraction=0.0)
    by_pixels = {x.numpy().tobytes(): path for x, path in zip(decoded.train.images, sorted(
        (made.root / c / n for c in made.classes for n in made.files[c]), key=lambda p: (p.parent.name, p.name)))}
    assert sorted(str(by_pixels[x.numpy().tobytes()]) for x in bundle.val.images) == sorted(map(str, held))


def pixels(split) -> set[bytes]:
    return {x.numpy().tobytes() for x in split.images}


@pytest.mark.parametrize("seed", [0, 3])
def test_adding_images_never_moves_a_training_image_into_validation(data_dir, seed):
    made = make("growing", per_class=5)
    before = load_dataset("growing", seed=seed, progress=False)
    split_before = maker.holdout(made, 0.2, seed)
    for k, extra in enumerate((1, 1, 3, 8)):  # one image at a time, then more at once
        for c, files in shape_pngs(extra, seed=10 + k).items():
            assert len(maker.add_images("growing", c, files).saved) == extra
        made = maker.read_made("growing")
        after = load_dataset("growing", seed=seed, progress=False)
        split_after = maker.holdout(made, 0.2, seed)
        for c in CLASSES:
            old_train, old_val = map(set, split_before[c])
            new_train, new_val = map(set, split_after[c])
            assert old_train <= new_train, f"{c}: {sorted(old_train & new_val)} moved from train to validation"
            assert new_val <= old_val | (set(made.files[c]) - old_train - old_val)  # new, or held out before
        assert not pixels(before.train) & pixels(after.val)  # what a run trained on is never validated on
        before, split_before = after, split_after


def test_made_datasets_are_read_once_until_they_change(data_dir):
    made = make("cached", per_class=2)
    assert maker.read_made("cached") is made and maker.list_made()[0] is made  # nothing changed: no listing
    assert maker.is_made("cached") and not maker.is_made("mnist") and not maker.is_made("nothing_here")
    stamp = maker.fingerprint()
    assert maker.fingerprint() == stamp
    # a file copied in by hand (not through add_images) is seen: its class folder's time changed
    (made.root / "circle" / "0009.png").write_bytes((made.root / "circle" / "0001.png").read_bytes())
    assert maker.fingerprint() != stamp
    again = maker.read_made("cached")
    assert again is not made and again.counts["circle"] == 3 and "0009.png" in again.files["circle"]
    assert again.bytes == sum(p.stat().st_size for c in CLASSES for p in (made.root / c).iterdir())
    stamp = maker.fingerprint()
    maker.remove_image("cached", "circle", "0009.png")
    assert maker.fingerprint() != stamp and maker.read_made("cached").counts["circle"] == 2


def test_the_number_of_datasets_and_their_bytes_are_capped(data_dir, monkeypatch):
    assert f"at most {maker.MAX_DATASETS} datasets, 2 GB of stored images in all" in maker.limits_text()
    monkeypatch.setattr(maker, "MAX_DATASETS", 2)
    make("one", per_class=2)
    maker.create_dataset("two", ["a", "b"])
    with pytest.raises(DataError, match=r"already 2 datasets made here \(the limit is 2\)"):
        maker.create_dataset("three", ["a", "b"])
    maker.create_dataset("two", ["c"])  # adding a class to one that exists is not a new dataset
    assert not (data_dir / "three").exists()

    used = maker.disk_usage()
    assert used == maker.read_made("one").bytes > 0
    monkeypatch.setattr(maker, "MAX_TOTAL_BYTES", used + 100)  # room for no image of 48x48
    read = []
    files = [(name, (lambda d=data: read.append(d) or d)) for name, data in shape_pngs(3)["circle"]]
    report = maker.add_images("two", "a", files)
    assert not report.saved and len(report.refused) == 3
    assert "'circle_" in report.refused[0].reason and "would hold more than" in report.refused[0].reason
    assert "delete a dataset you no longer need" in report.refused[-1].reason
    assert len(read) == 1  # the first was read (and found too big); the others refused before reading
    assert maker.read_made("two").total == 0


def test_files_over_the_class_limit_are_never_read(data_dir, monkeypatch):
    monkeypatch.setattr(maker, "MAX_IMAGES_PER_CLASS", 2)
    maker.create_dataset("lazy", ["a", "b"])
    read = []
    files = [(name, (lambda n=name, d=data: read.append(n) or d)) for name, data in shape_pngs(5)["circle"]]
    report = maker.add_images("lazy", "a", files)
    assert len(report.saved) == 2 and len(report.refused) == 3 and read == [n for n, _ in files[:2]]


def test_an_image_is_written_once_then_linked(data_dir, monkeypatch):
    maker.create_dataset("direct", ["a", "b"])
    written = []
    real = maker.atomic_write_text
    monkeypatch.setattr(maker, "atomic_write_text", lambda path, text: written.append(path.name) or real(path, text))
    replaced = []
    real_replace = maker.os.replace
    monkeypatch.setattr(maker.os, "replace", lambda a, b: replaced.append(str(b)) or real_replace(a, b))
    report = maker.add_images("direct", "a", shape_pngs(2)["circle"])
    assert [p.name for p in report.saved] == ["0001.png", "0002.png"]
    assert written == [maker.MANIFEST]  # only the manifest goes through a renamed temporary
    assert all(r.endswith(maker.MANIFEST) for r in replaced)
    assert not list((data_dir / "direct" / "a").glob(".*"))  # no temporary left


def test_suggestions_are_valid_train_configs():
    from cnnlab.train import TrainConfig

    small = maker.suggest_training([100, 100, 100])
    config = TrainConfig(dataset="mine", **small.settings).validate()
    assert config.model == "cifar_resnet" and config.input_size == 32 and config.augment != "none"
    assert config.data_options == {"image_size": 32} and config.val_split == "holdout" and 10 <= config.epochs <= 60
    transfer = maker.suggest_training([30, 30], transfer_model="resnet18_transfer")
    config = TrainConfig(dataset="mine", **transfer.settings).validate()
    assert transfer.transfer and config.pretrained and config.freeze == "features"
    assert config.data_options == {"image_size": 224}
    assert maker.train_command("mine", small).startswith("python -m cnnlab train --data mine --model cifar_resnet")


def test_a_made_dataset_in_another_data_folder_loads_with_root(tmp_path):
    other = tmp_path / "usb_stick"
    maker.create_dataset("elsewhere", ["a", "b"], data_root=other)
    for c, files in zip(["a", "b"], shape_pngs(2).values()):
        assert len(maker.add_images("elsewhere", c, files, data_root=other).saved) == 2
    assert dataset_status("elsewhere", other).state == "present"
    assert load_dataset("elsewhere", root=other, progress=False).info.classes == ["a", "b"]
    with pytest.raises(DataError, match="Unknown dataset 'elsewhere'"):
        load_dataset("elsewhere")  # not in the default data folder
