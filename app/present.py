"""Presentation mode (``?present=1`` or the sidebar switch): the app on a projector at 1280x720.

Body text at 20 px (every size Streamlit gives in rem grows with it: captions about 17.5 px), chart text
scaled to at least 16 px, the sidebar collapsed at the start. The mode lives in the page's address, so a link
on a slide opens every page in it."""

from __future__ import annotations

import streamlit as st

from cnnlab.i18n import _

PARAM = "present"
# rem-based sizes follow the root font size; charts draw their text in pixels, so they are scaled as a whole
CSS = """<style>
html { font-size: 20px; }
[data-testid="stTab"] p, [data-testid^="stBaseButton"] p { font-size: 1rem; }
[data-testid="stVegaLiteChart"], [data-testid="stArrowVegaLiteChart"] { zoom: 1.35; }
[data-testid="stMainBlockContainer"] { max-width: 100%; padding-left: 2rem; padding-right: 2rem; }
</style>"""


def presenting() -> bool:
    """On when the address says so (a link) or the switch was turned on in this session: switching pages
    clears the address's settings, the session keeps the mode."""
    if st.query_params.get(PARAM) == "1":
        st.session_state["present-on"] = True
    return bool(st.session_state.get("present-on", False))


def sidebar_state() -> str:
    """For ``st.set_page_config``: collapsed on a projector, Streamlit's own choice otherwise."""
    return "collapsed" if presenting() else "auto"


def _switched() -> None:
    on = bool(st.session_state.get("present-toggle"))
    st.session_state["present-on"] = on
    if on:
        st.query_params[PARAM] = "1"
    elif PARAM in st.query_params:
        del st.query_params[PARAM]


def apply() -> None:
    """The projector's styles when presenting (and the mode kept in the address), and the sidebar switch."""
    on = presenting()
    if on:
        st.html(CSS)
        if st.query_params.get(PARAM) != "1":
            st.query_params[PARAM] = "1"
    st.session_state["present-toggle"] = on
    st.sidebar.toggle(_("Presentation mode"), key="present-toggle", on_change=_switched,
                      help=_("Larger text and charts for a projector at 1280x720; the sidebar starts collapsed. "
                             "Links keep it (present=1)."))
