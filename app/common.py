"""Helpers shared by the pages: cached calls into cnnlab and the sidebar."""

from __future__ import annotations

import streamlit as st

from cnnlab.device import describe_device


@st.cache_data(show_spinner=False)
def device_text() -> str:
    return describe_device()


def sidebar_status() -> None:
    with st.sidebar:
        st.caption(f"Device: **{device_text()}**")


def show_error(err: Exception) -> None:
    """A user-facing error as a red box with the message, never a traceback."""
    st.error(str(err), icon="⚠️")
