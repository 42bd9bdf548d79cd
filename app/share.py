"""Links that open the same view: a page's settings that matter live in its URL.

A teacher puts ``http://server:8501/train?model=lenet&dataset=digits&epochs=3&_hide=model,dataset``
on a slide: every student's browser opens the Train page with those settings, and the settings
named in ``_hide`` are fixed and not shown (as TensorFlow Playground's ``_hide`` parameters do).

The one table :data:`SHARED` says which widgets of which page are shareable, under which short
name. Only those are read from a URL, and each value is parsed by the type of the widget's
default, bounded in length, and checked against the widget's options or bounds by
:func:`app.common.remember` before a widget sees it: a link cannot name a file, a run folder or
anything else than a value a person could pick on the page. Paths (an image folder, a lesson file
on the server) are never shareable.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlencode, urlsplit

import streamlit as st

from app.language import PARAM as LANG
from cnnlab import i18n
from cnnlab.i18n import _

HIDE = "_hide"
MAX_VALUE_CHARS = 120  # longer query values are ignored, never parsed
_SEEN = "_share_seen"  # session key: widget key -> (store, default), filled by remember()
_HIDDEN = "_share_hidden"  # session key: page -> the names the link that opened it hides
_PAGE = "_share_page"  # session key: the url path of the page running now

# page url path -> {name in the URL: widget key}. Keys are the ones the pages give remember().
SHARED: dict[str, dict[str, str]] = {
    "architectures": {
        "model": "arch-model", "channels": "arch-c", "height": "arch-h", "width": "arch-w",
        "classes": "arch-k", "depth": "diagram-depth",
    },
    "data": {"dataset": "data-ds", "augment": "data-aug"},
    "train": {
        "model": "train-model", "dataset": "train-data", "epochs": "train-epochs", "batch": "train-batch",
        "optimizer": "train-opt", "lr": "train-lr", "momentum": "train-momentum",
        "nesterov": "train-nesterov", "init": "train-init", "wd": "train-wd", "schedule": "train-sched",
        "step": "train-step", "gamma": "train-gamma", "augment": "train-aug", "subset": "train-subset",
        "seed": "train-seed", "val": "train-val", "valfrac": "train-valfrac", "channels": "train-channels",
        "size": "train-size", "pretrained": "train-pretrained", "freeze": "train-freeze",
    },
    "lessons": {"lesson": "lesson-pick", "budget": "lesson-budget"},
    "inside": {"kind": "inside-kind", "run": "inside-run", "pretrained": "inside-pre", "model": "inside-zoo"},
    "convolution": {
        "op": "conv-op", "input": "conv-input", "digit": "conv-digit", "photo": "conv-photo",
        "size": "conv-photo-size", "numbers": "conv-numbers", "kernel": "conv-kernel",
        "weights": "conv-weights", "bias": "conv-bias", "padding": "conv-padding", "stride": "conv-stride",
        "dilation": "conv-dilation", "groups": "conv-groups", "window": "conv-window",
        "pool_stride": "conv-pool-stride", "pool_padding": "conv-pool-padding",
        "pool_dilation": "conv-pool-dilation", "ceil": "conv-ceil", "count_pad": "conv-count-pad",
        "relu": "conv-relu", "logits": "conv-logits", "kind": "conv-real-kind", "run": "conv-real-run",
        "pretrained": "conv-real-pre", "model": "conv-real-zoo",
    },
    "predict": {"kind": "predict-kind", "run": "predict-run", "pretrained": "predict-pre"},
}
_NAME_OF = {key: name for table in SHARED.values() for name, key in table.items()}  # widget keys are unique


def link_name(key: str) -> str | None:
    """The URL name of a shareable widget key, or None."""
    return _NAME_OF.get(key)


def encode(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value) if not value.is_integer() else str(int(value))
    return str(value)


def parse(raw: Any, like: Any) -> Any:
    """A URL value read as the type of ``like`` (the widget's default); None when it does not read."""
    if isinstance(raw, list):  # AppTest and repeated parameters give lists: the last one counts
        raw = raw[-1] if raw else None
    if not isinstance(raw, str) or len(raw) > MAX_VALUE_CHARS:
        return None
    raw = raw.strip()
    try:
        if isinstance(like, bool):
            return {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}.get(raw.lower())
        if isinstance(like, int):
            return int(raw)
        if isinstance(like, float):
            value = float(raw)
            return value if math.isfinite(value) else None
    except ValueError:
        return None
    return raw if isinstance(like, str) else None


def from_link(key: str, default: Any) -> Any:
    """The value the page's URL gives this widget key (parsed like ``default``), or None."""
    name = link_name(key)
    if name is None or name not in st.query_params:
        return None
    return parse(st.query_params.get_all(name), default)


def seen(key: str, store: str, default: Any) -> None:
    st.session_state.setdefault(_SEEN, {})[key] = (store, default)


def publish(key: str, value: Any, default: Any) -> None:
    """Keep the URL in step with a shareable widget: its value when not the default."""
    name = link_name(key)
    if name is None:
        return
    if value == default or value is None:
        if name in st.query_params:
            del st.query_params[name]
    elif st.query_params.get(name) != encode(value):
        st.query_params[name] = encode(value)


def open_page(page: str) -> None:
    """Called by app/main.py before a page runs: the page whose table applies, and the names the
    link hides on it (read once, when the page is opened with ``_hide``, and kept for the session)."""
    st.session_state[_PAGE] = page
    hidden = st.session_state.setdefault(_HIDDEN, {})
    raw = st.query_params.get(HIDE)
    if raw is not None and page not in hidden:
        names = {n.strip() for n in raw.split(",")[:64]} if len(raw) <= 2000 else set()
        hidden[page] = sorted(names & set(SHARED.get(page, {})))
    if hidden.get(page):
        st.caption(_(":material/lock: The link that opened this page fixes: {names}.").format(
            names=", ".join(hidden[page])))


def hidden_names() -> set[str]:
    """The names the link hid on the current page; put back in the URL so a reload keeps them."""
    page = st.session_state.get(_PAGE)
    hidden = set(st.session_state.get(_HIDDEN, {}).get(page, ()))
    if hidden and st.query_params.get(HIDE) != ",".join(sorted(hidden)):
        st.query_params[HIDE] = ",".join(sorted(hidden))
    return hidden


def setting_shown(key: str) -> bool:
    """Whether a page draws the widget of ``key``: False when the link hid it (its value is fixed)."""
    name = link_name(key)
    return name is None or name not in hidden_names()


def _value(key: str) -> tuple[bool, Any, Any]:
    """(known, current value, default) of a widget key, from this session's state."""
    store, default = st.session_state.get(_SEEN, {}).get(key, (None, None))
    if key in st.session_state:
        return store is not None, st.session_state[key], default
    if store is not None and key in st.session_state.get(store, {}):
        return True, st.session_state[store][key], default
    return False, None, default


def link_for(page: str, hide: list[str] | tuple[str, ...] = (), base: str | None = None) -> str:
    """The link that opens ``page`` with this session's current shareable settings, in the session's language
    (``lang``, left out for English as the address bar does)."""
    params: dict[str, str] = {}
    for name, key in SHARED.get(page, {}).items():
        known, value, default = _value(key)
        if known and (value != default or name in hide) and value is not None:
            params[name] = encode(value)
        elif not known and name in st.query_params:  # not drawn yet in this session: keep the link's
            params[name] = st.query_params[name]
    code = i18n.language()
    if code != i18n.SOURCE_LANGUAGE:
        params[LANG] = code
    if hide:
        params[HIDE] = ",".join(sorted(hide))
    base = base or _base_url()
    path = page if page != "architectures" else ""  # the default page is the bare address
    return f"{base.rstrip('/')}/{path}" + (f"?{urlencode(params, safe=',')}" if params else "")


def _base_url() -> str:
    url = getattr(st.context, "url", None) or ""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}"
    return "http://localhost:8501"


def share_box(page: str) -> None:
    """The sidebar's "Share this view": the link of the page as it is set now, optionally with
    settings hidden from whoever opens it."""
    names = list(SHARED.get(page, {}))
    if not names:
        return
    with st.sidebar.popover(_("Share this view"), icon=":material/link:", width="stretch"):
        st.caption(_("This link opens this page with its current settings on any machine that can reach "
                     "this server (a slide, the class chat). The address bar holds the same settings."))
        fixed = st.session_state.get(_HIDDEN, {}).get(page, [])
        hide = st.multiselect(_("Fixed and hidden for whoever opens it"), names, default=fixed,
                              key=f"share-hide-{page}",
                              help=_("A lesson link can keep students from changing what the lesson is about."))
        st.code(link_for(page, hide), language=None, wrap_lines=True)
