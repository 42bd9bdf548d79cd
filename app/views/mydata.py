"""Your images: make a dataset of your own pictures (files or the camera), saved as an ordinary image
folder under data/, then train on it like any other dataset."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app.common import show_error
from cnnlab.data import maker
from cnnlab.errors import CnnlabError
from cnnlab.i18n import _, fmt, ngettext

NEW = ""  # the "new dataset" choice of the picker
PICK = "mydata-pick"  # the dataset being filled (a widget key)
NONCE = "mydata-nonce"  # bumped after files are added: a fresh, empty uploader and camera
REPORT = "mydata-report"  # ("ok" | "error", message, [refused reasons][, files refused]) of the last action, shown once
HANDOFF = "train-handoff"  # read (once) by the Train page: the dataset to select, with small-data settings
IMAGE_TYPES = ["png", "jpg", "jpeg", "bmp", "gif", "tif", "tiff", "webp", "ppm", "pgm"]
GRID = 8  # newest images shown per class
DONE = "mydata-done"  # the ids of the uploaded files already added: each is added once


def _create() -> None:
    name = st.session_state.get("mydata-name", "")
    classes = maker.parse_class_list(st.session_state.get("mydata-classes", ""))
    try:
        made = maker.create_dataset(name, classes, title=name)
    except CnnlabError as err:  # shown by the page, where it draws the report
        st.session_state[REPORT] = ("error", err, [])
        return
    st.session_state[PICK] = made.key
    st.session_state["mydata-name"] = st.session_state["mydata-classes"] = ""
    text = _("Created '{key}' in {folder} with the classes {classes}. Now add images to each class.").format(
        key=made.key, folder=made.root, classes=", ".join(made.classes))
    st.session_state[REPORT] = ("ok", text, [])


def _add_class(key: str) -> None:
    classes = maker.parse_class_list(st.session_state.get("mydata-newclass", ""))
    try:
        if not classes:
            raise CnnlabError(_("Type the name of the class to add."))
        made = maker.create_dataset(key, classes)
    except CnnlabError as err:
        st.session_state[REPORT] = ("error", err, [])
        return
    st.session_state["mydata-newclass"] = ""
    st.session_state[REPORT] = ("ok", _("'{key}' now has the classes {classes}.").format(
        key=key, classes=", ".join(made.classes)), [])


def _add_files(key: str, class_: str, widget: str) -> None:
    """The uploader's or the camera's new files go into the class at once; the widget is then renewed
    (emptied) so the same files are not added twice."""
    value = st.session_state.get(widget)
    files = value if isinstance(value, list) else [value] if value is not None else []
    done = st.session_state.setdefault(DONE, set())
    files = [f for f in files if getattr(f, "file_id", None) not in done]  # a change event repeated
    if not files:
        return
    done.update(getattr(f, "file_id", None) for f in files)
    try:
        # the excess over the class's limit is refused by count, before a byte of it is read
        have = maker.read_made(key).counts.get(class_, 0)
        room = max(0, maker.MAX_IMAGES_PER_CLASS - have)
        files, excess = files[:room], files[room:]
        over = [_over_limit(excess, class_, have, room)] if excess else []
        report = maker.add_images(key, class_, ((f.name, f.getvalue) for f in files))  # read one at a time
    except CnnlabError as err:
        st.session_state[REPORT] = ("error", err, [])
    else:
        st.session_state[REPORT] = ("ok" if report.saved else "refused", report.headline(),
                                    over + [r.reason for r in report.refused], len(excess) + len(report.refused))
    st.session_state[NONCE] = st.session_state.get(NONCE, 0) + 1


def _over_limit(excess: list, class_: str, have: int, room: int) -> str:
    """Why the files beyond the class's limit were not added, and what to do with them."""
    return ngettext(
        "{n} file not added ({names}): '{name}' held {have} images and a class holds at most {most}, so "
        "only the first {room} of the {total} were taken. Start another class or dataset for the others.",
        "{n} files not added ({names}): '{name}' held {have} images and a class holds at most {most}, so "
        "only the first {room} of the {total} were taken. Start another class or dataset for the others.",
        len(excess)).format(n=len(excess), names=_names(excess), name=class_, have=have,
                            most=maker.MAX_IMAGES_PER_CLASS, room=room, total=room + len(excess))


def _names(files, shown: int = 3) -> str:
    names = ", ".join(f"'{f.name}'" for f in files[:shown])
    if len(files) <= shown:
        return names
    return _("{names} and {more} more").format(names=names, more=len(files) - shown)


def _remove(key: str, class_: str) -> None:
    name = st.session_state.get("mydata-remove-file")
    try:
        maker.remove_image(key, class_, name)
    except CnnlabError as err:
        st.session_state[REPORT] = ("error", err, [])
    else:
        text = _("Removed {image} from '{name}'.").format(image=name, name=class_)
        st.session_state[REPORT] = ("ok", text, [])


@st.cache_data(show_spinner=False, max_entries=2000)
def _thumb(path: str, mtime: int):
    """One image as a small square (cached by path and modification time)."""
    return maker.thumbnail(Path(path), 96)


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def _grid(made: maker.MadeDataset) -> None:
    for c in made.classes:
        try:
            files = maker.image_files(made.key, c)
        except CnnlabError:  # the folder went away meanwhile
            continue
        n = len(files)
        if n > GRID:
            st.markdown(ngettext("**{name}** · {n} image (the newest {shown})",
                                 "**{name}** · {n} images (the newest {shown})", n).format(
                name=c, n=n, shown=GRID))
        else:
            st.markdown(ngettext("**{name}** · {n} image", "**{name}** · {n} images", n).format(
                name=c, n=n))
        if not files:
            st.caption(_("No images yet."))
            continue
        shown, thumbs = [], []
        for p in files[-GRID:]:
            try:
                thumbs.append(_thumb(str(p), _mtime(p)))
            except CnnlabError:  # a file damaged on disk since: not drawn (training skips it too)
                continue
            shown.append(p)
        if thumbs:
            st.image(thumbs, width=72, caption=[p.stem for p in shown])


def intro() -> None:
    """The page's title, what it is for, and the limits."""
    st.title(_("Your images"))
    st.write(_("Make a dataset of your own pictures: name the classes, add images to each one from files "
               "or the camera, then train a CNN on it and look inside it like on any other dataset. It is "
               "saved as an ordinary image folder (`data/<name>/<class>/0001.png`), so it is listed on the "
               "**Data** and **Train** pages and on the command line "
               "(`python -m cnnlab train --data <name>`)."))
    st.caption(_("Limits: {limits} Every class needs at least {least} images to train; aim for {aim} or "
                 "more, from different angles and backgrounds.").format(
        limits=maker.limits_text(), least=maker.MIN_IMAGES_TO_TRAIN, aim=maker.RECOMMENDED_PER_CLASS))


def last_report() -> None:
    """What the last action (a callback, before this rerun) did, shown once."""
    report = st.session_state.pop(REPORT, None)
    if not report:
        return
    kind, text, details, *refused = report
    refused = refused[0] if refused else len(details)
    if kind == "error":
        show_error(text, context=_("Not done"))
    else:
        (st.success if kind == "ok" else st.warning)(text)
    if details:
        st.warning(ngettext("{n} file refused (the others were kept):\n\n{reasons}",
                            "{n} files refused (the others were kept):\n\n{reasons}", refused).format(
            n=refused, reasons="\n".join(f"- {d}" for d in details)))


def pick() -> str:
    """The dataset to fill; choosing a new one shows its form and ends the page there."""
    made_all = {m.key: m for m in maker.list_made()}
    if made_all:
        used = sum(m.bytes for m in made_all.values())
        st.caption(_("In use: {datasets} of {most} datasets, {used} MB of {total} MB of images.").format(
            datasets=len(made_all), most=maker.MAX_DATASETS, used=fmt(used / 2**20, ",.1f"),
            total=fmt(maker.MAX_TOTAL_BYTES // 2**20, ",")))
    if st.session_state.get(PICK) not in (NEW, *made_all):
        st.session_state[PICK] = NEW
    st.subheader(_("1. The dataset"))
    key = st.selectbox(_("Dataset"), [NEW, *made_all], key=PICK,
                       # the option is a key that never changes; only its label is translated
                       format_func=lambda k: _("New dataset…") if k == NEW else
                       k if made_all[k].title in (k, "") else f"{k} ({made_all[k].title})")
    if key == NEW:
        new_dataset_form()
        st.stop()
    return key


def new_dataset_form() -> None:
    """A name and the classes; the button creates the folders (:func:`_create`)."""
    c1, c2 = st.columns([1, 2])
    c1.text_input(_("Name"), key="mydata-name", placeholder=_("fruits"),
                  help=_("Letters a-z, digits and _ (spaces become _); it names the folder data/<name>/ "
                         "and the dataset in every picker."))
    label = _("Classes (one per line, or separated by commas; {least} to {most})").format(
        least=maker.MIN_CLASSES, most=maker.MAX_CLASSES)
    c2.text_area(label, key="mydata-classes", placeholder=_("apple\nbanana\npear"), height=110)
    st.button(_("Create dataset"), key="mydata-create", type="primary", on_click=_create)


def open_dataset(key: str) -> maker.MadeDataset:
    """The dataset as it is on disk now; one removed meanwhile ends the page with a message."""
    try:
        return maker.read_made(key)
    except CnnlabError as err:
        show_error(err, context=_("Could not open the dataset {key}").format(key=key))
        st.stop()


def overview(made: maker.MadeDataset) -> None:
    """Its classes, images and folder, and a way to add a class while there is room."""
    for note in made.notes:
        st.caption(note)
    m1, m2, m3 = st.columns(3)
    m1.metric(_("Classes"), len(made.classes))
    m2.metric(_("Images"), made.total)
    m3.metric(_("Fewest in a class"), min(made.counts.values()) if made.counts else 0)
    st.caption(_("Saved in `{folder}`.").format(folder=made.root))
    if len(made.classes) < maker.MAX_CLASSES:
        with st.expander(_("Add a class")):
            a1, a2 = st.columns([3, 1], vertical_alignment="bottom")
            a1.text_input(_("New class name"), key="mydata-newclass")
            a2.button(_("Add class"), key="mydata-addclass", on_click=_add_class, args=(made.key,))


def add_images(made: maker.MadeDataset) -> None:
    """Files or camera photos into one class, added as soon as they arrive; and a way to remove one."""
    key = made.key
    st.subheader(_("2. Add images"))
    if not made.classes:
        st.info(_("This dataset has no classes yet: add some above."))
        st.stop()
    # the options are the class names themselves (never translated)
    class_ = st.radio(_("Class"), made.classes, horizontal=True, key=f"mydata-class-{key}")
    st.caption(_("Images so far: {counts}").format(
        counts=" · ".join(f"{c} {made.counts.get(c, 0)}" for c in made.classes)))
    nonce = st.session_state.get(NONCE, 0)
    full = made.counts.get(class_, 0) >= maker.MAX_IMAGES_PER_CLASS
    if full:
        st.info(_("'{name}' holds {most} images, the limit.").format(
            name=class_, most=maker.MAX_IMAGES_PER_CLASS))
    u1, u2 = st.columns(2)
    upload_key = f"mydata-up-{key}-{class_}-{nonce}"
    u1.file_uploader(_("Images of '{name}' (several at once)").format(name=class_), type=IMAGE_TYPES,
                     accept_multiple_files=True, key=upload_key, on_change=_add_files,
                     args=(key, class_, upload_key), disabled=full,
                     max_upload_size=maker.MAX_FILE_BYTES // 2**20,
                     help=_("They are added as soon as they are uploaded."))
    with u2:
        if st.toggle(_("Use the camera"), key="mydata-camera-on",
                     help=_("Your browser asks for permission first; each photo you take is added to the "
                            "class.")):
            camera_key = f"mydata-cam-{key}-{class_}-{nonce}"
            st.camera_input(_("A photo of '{name}'").format(name=class_), key=camera_key,
                            on_change=_add_files, args=(key, class_, camera_key), disabled=full)
    remove_control(key, class_)


def remove_control(key: str, class_: str) -> None:
    """Pick one image of the class and remove it (:func:`_remove`)."""
    try:
        files = maker.image_files(key, class_)
    except CnnlabError as err:
        show_error(err, context=_("Could not list the images"))
        files = []
    if files:
        with st.expander(_("Remove an image of '{name}'").format(name=class_)):
            r1, r2 = st.columns([3, 1], vertical_alignment="bottom")
            r1.selectbox(_("Image"), [p.name for p in reversed(files)], key="mydata-remove-file")
            r2.button(_("Remove"), key="mydata-remove", on_click=_remove, args=(key, class_))


def train_on_it(made: maker.MadeDataset) -> None:
    """The hand-off to the Train page with small-data settings, and the same from the command line."""
    key = made.key
    st.subheader(_("4. Train on it"))
    if not made.ready:
        st.info(_("Every class needs at least {least} images before training; still too few in: "
                  "{classes}.").format(least=maker.MIN_IMAGES_TO_TRAIN, classes=", ".join(made.missing())))
        return
    st.write(_("The **Train** page opens with '{key}' selected and settings for a small dataset: a small "
               "CNN at 32x32, augmentation on, about 20% of every class held out for validation (each image "
               "by a hash of its name: adding images later never moves one a run trained on into "
               "validation).").format(key=key))
    if st.button(_("Train on it"), key="mydata-train", type="primary"):
        st.session_state[HANDOFF] = key
        st.switch_page("views/train.py")
    st.caption(_("The same from the command line:"))
    st.code(maker.train_command(key, maker.suggest_training(list(made.counts.values()))), language="bash",
            wrap_lines=True)


intro()
last_report()
made = open_dataset(pick())
overview(made)
add_images(made)
st.subheader(_("3. What you have"))
_grid(made)
train_on_it(made)
