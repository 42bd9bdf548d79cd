"""What a channel responds to (issue 25), the Look inside tab: a convolution's channels, their strongest
validation patches, and an input optimised to excite each beside the same picture for random weights.

Everything is computed by :mod:`cnnlab.features`; the validation images and the arguments a model was
built with come from :mod:`cnnlab.sources`, as for the command line, so the page and
``python -m cnnlab features`` show the same pictures for the same settings (their labels in the page's
language). A computation takes seconds
(a minute for VGG16 at 224): it starts on a button, shows its progress, and is kept per model, layer,
channels and settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pandas as pd
import streamlit as st
import torch
from PIL import Image

from app.common import show_error
from cnnlab.data import InputPipeline
from cnnlab.errors import CnnlabError
from cnnlab.features import (
    DEFAULT_IMAGES, DEFAULT_STEPS, MAX_IMAGES, MAX_STEPS, Optimised, TopPatches, conv_layer, conv_layers, optimise,
    optimised_picture, parse_channels, patches_picture, random_twin, top_patches,
)
from cnnlab.i18n import N_, _, fmt
from cnnlab.sources import ModelSource, build_kwargs, validation_images

METHODS = {"patches": N_("Top patches from the validation images"),
           "optimise": N_("Optimised input, beside random weights")}  # shown through _()
ASKED = "inside-feat-asked"  # session state: the settings of the last Compute, drawn while they stay the same
SEED = 0  # of the optimised pictures and of the random weights: the command line's default
PATCH_TILE = 60  # pixels per patch: nine patches and their labels fit the page at 1280 wide (820 px) unscaled
OPTIMISED_TILE, OPTIMISED_COLUMNS = 104, 4  # four channels, each beside its twin, in one row

# the captions are shown through _()
PATCHES_CAPTION = N_(
    "Each row is one channel of **{layer}**. Its tiles are the parts of the {dataset} validation images that "
    "excite it most, strongest first, at most one per image ({images} images looked through). A tile is the "
    "receptive field of one position of the channel's map: the only pixels that position sees. Below it, the "
    "channel's output there and the image it comes from; blue-grey is where the field reaches past the "
    "image's edge (zero padding). What the tiles have in common is what the channel looks for.")
OPTIMISED_CAPTION = N_(
    "The left picture of each channel is an input changed step by step ({steps} steps of gradient ascent) until "
    "the channel's average output is as large as it gets: the pattern it responds to most, drawn by the network "
    "itself. Random shifts, scaling and rotation at every step and a smooth (Fourier) parametrisation keep it "
    "from turning into pixel noise. Under it (and in the table) the channel's output on it, and how many times its "
    "average on the validation images that is. The right picture is the same method on the same layers with **random "
    "weights**: what the method draws by itself. Only what differs between the two was learnt; Adebayo et al. "
    "(2018) showed that some explanation pictures look the same for a trained and a random network.")
UNTRAINED_CAPTION = N_(":material/warning: This model is untrained: its weights are random, so these "
                       "pictures show nothing learnt. Pick a trained run to see what a network looks for.")
# the table's columns keep English names (the data), their headings are in the reader's language
NUMBER_HEADINGS = {"channel": N_("channel"), "optimised input": N_("optimised input"),
                   "validation mean": N_("validation mean"), "times the mean": N_("times the mean"),
                   "best validation image": N_("best validation image"),
                   "random weights": N_("random weights")}


@dataclass
class ChannelPictures:
    """What one Compute finds. The pictures are drawn from it when shown, in the reader's language (their
    labels are words): a change of language draws them again, it does not compute them again."""

    layer: str
    dataset: str  # where the validation images come from
    images: int  # how many were looked through
    steps: int  # of the optimisation; 0 with the method "patches"
    found: TopPatches
    trained: list[Optimised] | None = None  # with the method "optimise": these weights' optimised inputs
    drawn: list[Optimised] | None = None  # and the random-weights twin's

    def patches(self) -> Image.Image:
        return patches_picture(self.found, [_("{layer}: the {k} strongest positions over {n} {dataset} validation "
                                              "images").format(layer=self.layer, k=len(self.found.channels[0].patches),
                                                               n=fmt(self.images, ","), dataset=self.dataset)],
                               tile=PATCH_TILE)

    def optimised(self) -> Image.Image | None:
        if self.trained is None:
            return None
        return optimised_picture(self.trained, self.drawn, [_("{layer}, {steps} steps").format(
            layer=self.layer, steps=self.steps)], tile=OPTIMISED_TILE, columns=OPTIMISED_COLUMNS)

    def numbers(self) -> pd.DataFrame | None:
        """What each optimised input reaches, against the validation images (with the method "optimise")."""
        return None if self.trained is None else _numbers(self.found, self.trained, self.drawn)


@st.cache_resource(show_spinner=False, max_entries=2)  # its spinner is the caller's: in the reader's language
def validation(ref: str, _source: ModelSource) -> tuple[str, torch.Tensor]:
    """The images a model's channels are searched in, as ``python -m cnnlab features`` takes them: a run's
    own validation split, else digits for a one-channel model and shapes for a three-channel one."""
    return validation_images(_source)


def _stage(bar, text: str, start: float, share: float) -> Callable[[int, int], None]:
    """A progress callback moving ``bar`` from ``start`` over ``share`` of it; at most 20 updates a stage
    (each update is kept with the cached result and replayed)."""
    shown = [-1]

    def progress(done: int, total: int) -> None:
        step = int(20 * done / max(1, total))
        if step != shown[0]:
            shown[0] = step
            bar.progress(min(1.0, start + share * done / max(1, total)),
                         text=_("{stage}: {done} of {total}").format(stage=text, done=done, total=total))
    return progress


@st.cache_data(show_spinner=False, max_entries=16)  # its spinner is the caller's: in the reader's language
def channel_pictures(ref: str, model_id: int, layer: str, channels: tuple[int, ...], method: str, images: int,
                     steps: int, dataset: str, _source: ModelSource, _images: torch.Tensor) -> ChannelPictures:
    """Top patches of ``channels`` over the first ``images`` validation images; with ``method`` "optimise"
    also their optimised inputs beside the random-weights twin's. ``model_id`` tells apart two models
    loaded under one reference (an untrained zoo model loaded again has other weights).

    Not cached per language: what it returns holds no text (the pictures are drawn from it when shown),
    and the progress bar it shows, replayed from the cache in the language of the first computation, is
    emptied at once."""
    src, bar = _source, st.progress(0.0, text=_("Starting…"))
    pipeline = InputPipeline(data_shape=tuple(_images.shape[1:]), model_shape=src.input_shape, mean=src.mean,
                             std=src.std, device=torch.device("cpu"), eval_resize=src.eval_resize)
    share = 1.0 if method == "patches" else 0.2
    try:
        found = top_patches(src.model, layer, list(channels), _images, pipeline, max_images=images,
                            progress=_stage(bar, _("Validation images"), 0.0, share))
        if method == "patches":
            return ChannelPictures(layer, dataset, found.images, 0, found)
        common = dict(steps=steps, seed=SEED)
        trained = optimise(src.model, layer, channels, src.input_shape, src.mean, src.std, reference=found,
                           progress=_stage(bar, _("Optimising, these weights"), 0.2, 0.4), **common)
        twin = random_twin(src.model, SEED, build_kwargs(src))
        drawn = optimise(twin, layer, channels, src.input_shape, src.mean, src.std,
                         progress=_stage(bar, _("Optimising, random weights"), 0.6, 0.4), **common)
        return ChannelPictures(layer, dataset, found.images, steps, found, trained, drawn)
    finally:
        bar.empty()


def _numbers(found: TopPatches, trained: list[Optimised], drawn: list[Optimised]) -> pd.DataFrame:
    """One row per channel: the optimised input's activation, the validation images' mean and best, the
    random-weights picture's. "times the mean" is blank (—) where the mean is not positive: no ratio then."""
    return pd.DataFrame([{
        "channel": o.channel, "optimised input": o.value, "validation mean": o.baseline,
        "times the mean": "—" if o.ratio is None else _("{ratio}x").format(ratio=fmt(o.ratio, ".1f")),
        "best validation image": found.of(o.channel).best(o.objective), "random weights": r.value,
    } for o, r in zip(trained, drawn)])


def _layer_label(model: torch.nn.Module, name: str) -> str:
    conv = conv_layer(model, name)
    size = " x ".join(map(str, conv.kernel_size))
    return _("{layer} · {inputs} → {outputs} channels, {size}").format(
        layer=name, inputs=conv.in_channels, outputs=conv.out_channels, size=size)


def settings(source: ModelSource) -> tuple | None:
    """The tab's widgets as the cache key of :func:`channel_pictures` (minus the model and images), or None
    when there is nothing to compute (no convolution, channels that do not exist: said on the page)."""
    convs = conv_layers(source.model)
    if not convs:
        st.info(_("This model has no convolution: pick another to see what its channels respond to."))
        return None
    c1, c2, c3 = st.columns([3, 2, 3])
    layer = c1.selectbox(_("Convolution"), convs, index=len(convs) // 2, key="inside-feat-layer",
                         format_func=lambda n: _layer_label(source.model, n))
    count = conv_layer(source.model, layer).out_channels
    text = c2.text_input(_("Channels (0 to {last})").format(last=count - 1), "0-3",
                         key="inside-feat-channels", help=_("A few channels: 0-7, 3 or 0,2,5-6 (at most 64)."))
    method = c3.radio(_("Method"), list(METHODS), format_func=lambda m: _(METHODS[m]),
                      key="inside-feat-method")
    c4, c5, _space = st.columns([3, 2, 3])
    images = c4.number_input(_("Validation images (at most {most})").format(most=fmt(MAX_IMAGES, ",")), 1,
                             MAX_IMAGES, DEFAULT_IMAGES, step=100, key="inside-feat-images",
                             help=_("The first ones of the split; a small split has fewer."))
    steps = c5.number_input(_("Optimisation steps"), 1, MAX_STEPS, DEFAULT_STEPS, step=16,
                            key="inside-feat-steps", disabled=method != "optimise",
                            help=_("More steps: stronger, more saturated pictures."))
    try:
        channels = parse_channels(text, count, layer)
    except CnnlabError as err:
        show_error(err)
        return None
    return (source.ref, id(source.model), layer, tuple(channels), method, int(images),
            int(steps) if method == "optimise" else 0)


def draw(source: ModelSource, result: ChannelPictures, steps: int) -> None:
    """The pictures, each with what it shows in words."""
    optimised = result.optimised()
    if optimised is not None:
        st.image(optimised, width="content")
        st.caption(_(OPTIMISED_CAPTION).format(steps=steps))
        table = result.numbers()
        plain = [c for c in table.columns[1:] if c != "times the mean"]  # numbers, at 3 decimals
        headings = {c: st.column_config.Column(_(NUMBER_HEADINGS[c])) for c in ("channel", "times the mean")}
        numbers = {c: st.column_config.NumberColumn(_(NUMBER_HEADINGS[c]), format="%.3f") for c in plain}
        st.dataframe(table, hide_index=True, width="content", column_config={**headings, **numbers})
        st.markdown(_("**The same channels' top patches**"))
    st.image(result.patches(), width="content")
    st.caption(_(PATCHES_CAPTION).format(layer=result.layer, dataset=result.dataset,
                                         images=result.images))
    if source.kind == "zoo":
        st.caption(_(UNTRAINED_CAPTION))


def channel_tab(source: ModelSource) -> None:
    """The tab: settings, a Compute button, then the pictures while the settings stay those computed."""
    st.write(_("Which pattern makes one channel of a convolution respond? Two answers: the pieces of "
               "validation images that excite it most, and an input optimised to excite it, beside the same "
               "picture for the same layers with random weights."))
    asked = settings(source)
    if asked is None:
        return
    if st.button(_("Compute"), type="primary", icon=":material/play_arrow:", key="inside-feat-go"):
        st.session_state[ASKED] = asked
    if st.session_state.get(ASKED) != asked:
        st.caption(_("Press **Compute**: a few seconds for small models, about a minute for VGG16 at 224."))
        return
    try:
        with st.spinner(_("Loading the validation images…")):
            dataset, images = validation(source.ref, source)
        with st.spinner(_("Looking for what the channels respond to…")):
            result = channel_pictures(*asked, dataset, _source=source, _images=images)
    except (CnnlabError, RuntimeError, ValueError) as err:  # torch's complaints too: a message, not a trace
        show_error(err)
        return
    draw(source, result, asked[-1])
