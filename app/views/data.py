"""Data: look at a dataset before training on it — class counts, samples per class, one image's
channels and pixel values, and the augmentation the trainer applies."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from PIL import Image
from torch import Tensor

from app.common import cached_dataset, cached_made, dataset_choices, remember, short_number, show_error
from app.share import setting_shown
from cnnlab.data import DataBundle, DatasetInfo, DatasetStatus, dataset_status, load_dataset, maker
from cnnlab.data.gallery import (
    MAX_GRID_CLASSES,
    MAX_PER_CLASS,
    channel_patch,
    channel_views,
    class_counts,
    count_summary,
    grid_classes,
    mark_patch,
    sample_grid,
    to_pil,
    zoom_patch,
)
from cnnlab.data.pipeline import AUGMENT_DESCRIPTIONS, AUGMENT_LABELS, preview
from cnnlab.errors import CnnlabError
from cnnlab.i18n import N_, _, fmt, language

STORE = "data-form"  # the page's settings, kept for the session across page switches
SPLIT_LABELS = {"train": N_("training"), "val": N_("validation"), "test": N_("test")}  # shown translated
SPLIT_COUNTS = {"train": N_("{n} training"), "val": N_("{n} validation"), "test": N_("{n} test")}
# the grid's caption, one sentence per split (the split's word sits in a different place in each language)
GRID_CAPTIONS = {
    "train": N_("{shown} of {total} classes, {per_class} random training images each (seed {seed})"),
    "val": N_("{shown} of {total} classes, {per_class} random validation images each (seed {seed})"),
    "test": N_("{shown} of {total} classes, {per_class} random test images each (seed {seed})"),
}
# the counts table's headings: the data keys stay English
TABLE_HEADINGS = {"class": N_("class"), "train": N_("train"), "val": N_("val"), "test": N_("test")}
# the dataset picker's words for a dataset's state (the state itself is an English key)
DATA_STATES = {"present": N_("present"), "downloadable": N_("downloadable"), "missing": N_("missing")}
# channel_views' and channel_patch's channel names, as captions and tab names
CHANNEL_CAPTIONS = {"grey": N_("grey (one channel)"), "R": N_("R channel"), "G": N_("G channel"),
                    "B": N_("B channel")}
CHANNEL_TABS = {"grey": N_("grey"), "R": N_("R channel"), "G": N_("G channel"), "B": N_("B channel")}
SHOW_PX = 160  # how wide one channel is drawn
MYDATA_PAGE = "views/mydata.py"  # the Your images page, where a dataset of your own pictures is made


@st.cache_resource(show_spinner=False, max_entries=2)
def _folder(root: str, lang: str):
    """Kept per language (``lang``): a bundle's description and notes are text."""
    return load_dataset("folder", root=root, download=False)


def cached_folder(root: str):
    with st.spinner(_("Loading the folder…")):  # here, not in the decorator: its text is fixed at import
        return _folder(root, language())


def counts_chart(counts: list[dict], splits: list[str]) -> tuple[pd.DataFrame, dict]:
    """The stacked bars of images per class and split, as data and a Vega-Lite spec written out (Altair's schema
    checks cost more than the drawing)."""
    rows = [(r["class"], r["index"], _(SPLIT_LABELS[s]), k, r[s]) for r in counts for k, s in enumerate(splits)]
    df = pd.DataFrame(rows, columns=["class", "index", "split", "split_order", "images"])
    order = [r["class"] for r in counts]
    many = len(order) > 30
    axis = {"labelAngle": -90 if many else -45 if len(order) > 10 else 0, "labelLimit": 140,
            "labelFontSize": 9 if many else 11}
    klass, images, split = _("class"), _("images"), _("split")
    return df, {"mark": "bar", "height": 300, "encoding": {
        "x": {"field": "class", "type": "nominal", "title": klass, "sort": order, "axis": axis},
        "y": {"field": "images", "type": "quantitative", "title": images, "stack": "zero"},
        "color": {"field": "split", "type": "nominal", "title": split,
                  "sort": [_(SPLIT_LABELS[s]) for s in splits], "legend": {"orient": "top"}},
        "order": {"field": "split_order", "type": "quantitative"},
        "tooltip": [{"field": "class", "title": klass}, {"field": "split", "title": split},
                    {"field": "images", "type": "quantitative", "title": images}]}}


def intro() -> None:
    """The page's title and what it is for."""
    st.title(_("Data"))
    st.write(_("Look at a dataset before training on it: how many images each class has in the splits the "
               "trainer uses, samples of every class, one image channel by channel down to its pixel values, "
               "and what the augmentation does to it."))


def pick() -> tuple[str, DatasetStatus, bool]:
    """The dataset picker and the way to make one of your own; returns the dataset's name, its status,
    and whether it is made of your images."""
    names, statuses = dataset_choices()
    yours = {n for n in names if maker.is_made(n)}
    ds_key = remember(STORE, "data-ds", "shapes" if "shapes" in names else names[0], options=names)
    if setting_shown(ds_key):
        st.selectbox(_("Dataset"), names, key=ds_key, format_func=lambda n: dataset_label(n, statuses[n], n in yours))
    dataset = st.session_state[ds_key]
    st.page_link(MYDATA_PAGE,
                 label=_("Make a dataset of your own pictures (upload or camera) on the Your images page"),
                 icon=":material/add_photo_alternate:")
    return dataset, statuses[dataset], dataset in yours


def dataset_label(name: str, status: DatasetStatus, yours: bool) -> str:
    """A dataset as the picker shows it: its name and whether it can be used."""
    if not yours:
        state = DATA_STATES.get(status.state)
        return _("{name} — {state}").format(name=name, state=_(state) if state else status.state)
    if status.state == "present":
        return _("{name} — your images").format(name=name)
    return _("{name} — your images, too few to train").format(name=name)


def load(dataset: str, status: DatasetStatus, yours: bool) -> DataBundle:
    """The dataset, if it is on disk; otherwise the page ends with what to do. This page never downloads:
    the Train page (or the command line) does that."""
    bundle = None
    try:
        if yours:
            if status.state == "present":
                bundle = cached_made(dataset, maker.fingerprint())
            else:
                st.info(status.message, icon=":material/add_photo_alternate:")
        elif dataset == "folder":
            root = st.text_input(_("Folder (class subfolders, optionally train/, val/ and test/)"),
                                 key=remember(STORE, "data-root", "")).strip()
            if not root:
                st.info(_("Type the path of a folder with one subfolder per class."), icon=":material/folder_open:")
            else:
                folder = dataset_status("folder", root)
                if folder.state == "present":
                    bundle = cached_folder(root)
                else:
                    st.info(folder.message, icon=":material/folder_off:")
        elif status.state == "present":
            bundle = cached_dataset(dataset)
        else:
            st.info(_("{message} This page shows datasets already on disk; it does not download them.").format(
                message=status.message), icon=":material/cloud_off:")
    except CnnlabError as err:
        bundle = None
        show_error(err, context=_("Could not load {dataset}").format(dataset=dataset))
    if bundle is None:
        st.stop()
    return bundle


def describe(bundle: DataBundle) -> None:
    """The dataset in one line: classes, image size, channels, and its notes."""
    info = bundle.info
    c, h, w = info.input_shape
    text = (_("**{name}**: {classes} classes, {width}x{height} pixels, 1 channel (grey). {description}") if c == 1
            else _("**{name}**: {classes} classes, {width}x{height} pixels, {channels} channels. {description}"))
    st.caption(text.format(name=info.display_name, classes=info.num_classes, width=w, height=h, channels=c,
                           description=info.description))
    for note in bundle.notes:
        st.caption(note)


def per_class_counts(bundle: DataBundle) -> list[str]:
    """How many images each class has in each split; returns the splits that have any."""
    info = bundle.info
    st.subheader(_("Images per class"))
    counts = class_counts(bundle)
    splits = [s for s in ("train", "val", "test") if any(r[s] for r in counts)]
    train = count_summary(counts, "train")
    total = sum(count_summary(counts, s)["total"] for s in splits)
    m1, m2, m3, m4 = st.columns(4)
    m1.metric(_("Total images"), short_number(total), help=" + ".join(
        _(SPLIT_COUNTS[s]).format(n=fmt(count_summary(counts, s)["total"], ",")) for s in splits))
    m2.metric(_("Training images"), short_number(train["total"]),
              help=_("{n} images in the training split.").format(n=fmt(train["total"], ",")))
    m3.metric(_("Min per class"), short_number(train["min"]),
              help=_("Fewest training images of one class: {classes}").format(classes=first_ten(train["min_classes"])))
    m4.metric(_("Max per class"), short_number(train["max"]),
              help=_("Most training images of one class: {classes}").format(classes=first_ten(train["max_classes"])))
    st.caption(f"{balance(train)} {splits_used(info.source)}")
    st.vega_lite_chart(*counts_chart(counts, splits), width="stretch")
    with st.expander(_("The counts as a table")):
        st.dataframe([{k: r[k] for k in ("class", *splits)} for r in counts], hide_index=True, width="stretch",
                     column_config={k: st.column_config.Column(_(TABLE_HEADINGS[k])) for k in ("class", *splits)})
    return splits


def first_ten(classes: list[str]) -> str:
    """Class names for a help text: the first ten, then an ellipsis."""
    return ", ".join(classes[:10]) + (" …" if len(classes) > 10 else "")


def balance(train: dict) -> str:
    """Whether every class has as many training images."""
    if train["balanced"]:
        return _("Balanced: every class has the same number of training images.")
    return _("Not balanced: the training split has {least} to {most} images per class.").format(
        least=fmt(train["min"], ","), most=fmt(train["max"], ","))


def splits_used(source: str) -> str:
    """Where the splits come from, by the dataset's source."""
    if source == "embedded":
        return _("These are the splits training uses (validation: a stratified hold-out of the training data).")
    if source == "yours":
        return _("These are the splits training uses (validation: about 20% of every class, each image held out "
                 "or not by a hash of its name, so adding images never moves one a run trained on).")
    return _("These are the splits training uses.")


def samples(bundle: DataBundle, dataset: str, splits: list[str]) -> None:
    """A grid of random images of every class (a page of classes at a time when there are many)."""
    info = bundle.info
    h, w = info.input_shape[1:]
    st.subheader(_("Samples of every class"))
    g1, g2, g3, g4 = st.columns(4)
    grid_split = g1.selectbox(_("Split"), splits, format_func=lambda s: _(SPLIT_LABELS[s]),
                              key=remember(STORE, "data-grid-split", "train"))
    per_class = g2.slider(_("Samples per class"), 1, MAX_PER_CLASS, key=remember(STORE, "data-grid-n", 8))
    grid_seed = g3.number_input(_("Seed"), 0, 2**31 - 1, key=remember(STORE, "data-grid-seed", 0),
                                help=_("Which samples are picked: change it to see others."))
    first = 0
    if info.num_classes > MAX_GRID_CLASSES:
        starts = list(range(0, info.num_classes, MAX_GRID_CLASSES))
        first = g4.selectbox(_("Classes"), starts, key=f"data-grid-first-{dataset}",
                             format_func=lambda s: _("{first}–{last} of {total}").format(
                                 first=s + 1, last=min(s + MAX_GRID_CLASSES, info.num_classes), total=info.num_classes))
    try:
        shown = grid_classes(info.num_classes, first)
        grid = sample_grid(getattr(bundle, grid_split), info.classes, per_class=int(per_class),
                           size=64 if max(h, w) >= 48 else 48, seed=int(grid_seed), first=first)
        st.image(grid, caption=_(GRID_CAPTIONS[grid_split]).format(
            shown=len(shown), total=info.num_classes, per_class=per_class, seed=grid_seed))
    except CnnlabError as err:
        show_error(err, context=_("Could not draw the grid"))


def one_image(bundle: DataBundle, dataset: str) -> Tensor:
    """One training image, channel by channel, and a small patch of it as numbers; returns the image."""
    info = bundle.info
    h, w = info.input_shape[1:]
    st.subheader(_("One image, channel by channel"))
    n_train = len(bundle.train)
    i1, i2, i3 = st.columns([2, 1, 1])
    idx = i1.slider(_("Training image"), 0, n_train - 1, key=remember(STORE, f"data-idx-{dataset}", 0))
    size = min(8, h, w)
    px = i2.slider(_("Patch x (column)"), 0, w - size, key=remember(STORE, f"data-px-{dataset}", (w - size) // 2))
    py = i3.slider(_("Patch y (row)"), 0, h - size, key=remember(STORE, f"data-py-{dataset}", (h - size) // 2))
    image = bundle.train.images[idx]
    label = info.classes[int(bundle.train.labels[idx])]
    try:
        views = channel_views(image)
        scale = max(1, SHOW_PX // max(h, w))
        cols = st.columns(len(views) + 2)
        cols[0].image(mark_patch(image, px, py, size, scale=scale), width=SHOW_PX,
                      caption=_("{label} (image {index}); red: the patch").format(label=label, index=idx))
        for col, (name, view) in zip(cols[1:], views):
            col.image(view.resize((w * scale, h * scale), Image.NEAREST), width=SHOW_PX,
                      caption=_(CHANNEL_CAPTIONS[name]))
        cols[-1].image(zoom_patch(image, px, py, size, scale=max(1, SHOW_PX // size)), width=SHOW_PX,
                       caption=_("the {size}x{size} patch at x={x}, y={y}").format(size=size, x=px, y=py))
        pixel_values(image, px, py, size)
    except CnnlabError as err:
        show_error(err, context=_("Could not show the image's channels"))
    return image


def pixel_values(image: Tensor, px: int, py: int, size: int) -> None:
    """The patch's numbers, one table per channel."""
    st.caption(_("Pixel values of the patch (0 = dark, 255 = bright); rows are y, columns x."))
    patches = channel_patch(image, px, py, size)
    names = [_(CHANNEL_TABS[name]) for name, _rows in patches]
    cols = st.tabs(names) if len(patches) > 1 else [st.container()]  # one table at a time: never clipped
    for col, (name, rows) in zip(cols, patches):
        df = pd.DataFrame(rows, index=[str(py + r) for r in range(size)], columns=[str(px + k) for k in range(size)])
        if len(patches) == 1:
            col.markdown(f"**{names[0]}**")
        # narrow columns: the whole patch fits a third of the page at 1280x720, no horizontal scrolling
        narrow = {"_index": st.column_config.TextColumn(width=30),
                  **{c: st.column_config.NumberColumn(width=30) for c in df.columns}}
        col.dataframe(df, column_config=narrow)


def augmentation(image: Tensor, info: DatasetInfo) -> None:
    """The same image through the trainer's own batch augmentation, seven times."""
    h, w = info.input_shape[1:]
    st.subheader(_("Augmentation"))
    a1, a2 = st.columns([3, 1])
    aug_key = remember(STORE, "data-aug", "cifar" if "cifar" in AUGMENT_LABELS else "none", options=list(AUGMENT_LABELS))
    if setting_shown(aug_key):
        a1.selectbox(_("Augmentation"), list(AUGMENT_LABELS), format_func=lambda k: _(AUGMENT_LABELS[k]), key=aug_key)
    augment = st.session_state[aug_key]
    aug_seed = a2.number_input(_("Seed"), 0, 2**31 - 1, key=remember(STORE, "data-aug-seed", 0),
                               help=_("The random generator of the augmentation, as a training run's seed."))
    st.caption(_("{description} The same image as above, at its stored size {width}x{height}, through the "
                 "trainer's own batch augmentation (the Train page shows it at the model's input size).").format(
        description=_(AUGMENT_DESCRIPTIONS.get(augment, "")), width=w, height=h))
    try:
        shots = [to_pil(image)] + preview(image, augment, 7, seed=int(aug_seed))
        st.image([s.resize((96, 96), Image.NEAREST if max(h, w) <= 96 else Image.BILINEAR) for s in shots],
                 caption=[_("original")] + [f"#{i + 1}" for i in range(7)])
    except CnnlabError as err:
        show_error(err, context=_("Could not preview the augmentation"))


intro()
dataset, status, yours = pick()
bundle = load(dataset, status, yours)
describe(bundle)
splits = per_class_counts(bundle)
samples(bundle, dataset, splits)
image = one_image(bundle, dataset)
augmentation(image, bundle.info)
