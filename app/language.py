"""The app's language: a sidebar picker, ``?lang=it`` in a link, the browser's preferred language at first.

The choice lives in the session (every page, rerun and fragment of it speaks it, through
:func:`cnnlab.i18n.set_language_source`) and in the page's address, so a shared link opens in the same
language. The languages offered are the catalogues in ``cnnlab/locale`` (:func:`cnnlab.i18n.available`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence

import altair as alt
import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from cnnlab import i18n
from cnnlab.i18n import _

CHART_THEME = "cnnlab"  # Altair's theme for every chart of the app: the numbers in the session's language
PARAM = "lang"
KEY = "lang-on"  # the session's language
PICKER = "lang-picker"


def _session_language() -> str | None:
    """The language of the session whose script runs in this thread (None in a background thread)."""
    if get_script_run_ctx(suppress_warning=True) is None:
        return None
    return st.session_state.get(KEY)


def _browser_language() -> str | None:
    try:
        return st.context.locale
    except Exception:  # noqa: BLE001 - no browser behind this session (AppTest): English
        return None


def current() -> str:
    """The session's language: a link's ``?lang=``, else the one chosen before, else the browser's, else English."""
    choices = list(i18n.available())
    linked = st.query_params.get(PARAM)
    if linked in choices:
        st.session_state[KEY] = linked
    if st.session_state.get(KEY) not in choices:
        st.session_state[KEY] = i18n.negotiate(_browser_language(), choices)
    return st.session_state[KEY]


def _picked() -> None:
    """The menu's choice wins over the address's (which then follows it)."""
    code = st.session_state[PICKER]
    st.session_state[KEY] = code
    if code != i18n.SOURCE_LANGUAGE:
        st.query_params[PARAM] = code
    elif PARAM in st.query_params:
        del st.query_params[PARAM]


def apply() -> str:
    """Set the session's language for everything this run shows (call before any text is written)."""
    i18n.set_language_source(_session_language)
    code = current()
    i18n.set_language(code)  # also for the threads this run starts with its context (jobs)
    enable_chart_theme()
    if code != i18n.SOURCE_LANGUAGE:
        if st.query_params.get(PARAM) != code:
            st.query_params[PARAM] = code
    elif PARAM in st.query_params:
        del st.query_params[PARAM]
    return code


def picker() -> None:
    """The sidebar's language menu, each language named in itself."""
    names = i18n.available()
    if len(names) < 2:
        return
    st.session_state[PICKER] = st.session_state[KEY]
    st.sidebar.selectbox(_("Language"), list(names), format_func=names.get, key=PICKER, on_change=_picked)
    for code, problem in i18n.problems().items():
        st.sidebar.warning(_("The {language} catalogue could not be read, so English is shown instead: "
                             "{problem}").format(language=names.get(code, code), problem=problem))


def translated_tabs(labels: Sequence[str], key: str) -> Sequence[Any]:
    """``st.tabs`` of ``labels`` (marked with ``N_``, shown translated) whose open tab survives a change of
    language: the session keeps the open tab's label, and a label of another language is read back as the
    same tab. A switch of tab reruns the page (each page draws only the open tab)."""
    shown = [_(label) for label in labels]
    picked = st.session_state.get(key)
    if isinstance(picked, str) and picked not in shown:
        for code in i18n.available():
            names = [i18n.translations(code).gettext(label) for label in labels]
            if picked in names:
                st.session_state[key] = shown[names.index(picked)]
                break
    return st.tabs(shown, key=key, on_change="rerun")


@lru_cache(maxsize=None)
def chart_locale(code: str) -> dict[str, Any]:
    """The number marks of ``code`` in d3-format's form, which the charts' axes and tooltips use (Vega-Lite's
    ``config.locale.number``): "0,5" and "12,5 %" on an Italian axis."""
    from babel.numbers import get_decimal_symbol, get_group_symbol  # lazy: babel is heavy (once per language)

    percent = i18n.translations(code).gettext("{value}%").replace("{value}", "")
    return {"decimal": get_decimal_symbol(code), "thousands": get_group_symbol(code), "grouping": [3],
            "currency": ["", ""], "percent": percent or "%"}


def enable_chart_theme() -> None:
    """Every Altair chart drawn from now on (the app's and Streamlit's own) writes numbers in the language of
    the session that draws it. Altair's theme is global to the server; the theme reads the language."""
    if alt.theme.active != CHART_THEME:
        alt.theme.register(CHART_THEME, enable=True)(_chart_theme)


def _chart_theme() -> dict[str, Any]:
    """Altair's theme: no size or style of its own (as Streamlit's "none"), the session's number marks. Called
    when a chart is turned into its specification, in the run of the session that draws it."""
    return {"config": {"locale": {"number": chart_locale(i18n.language())}}}
