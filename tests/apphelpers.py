"""Opening the Streamlit app (or one of its views) in AppTest, for the page tests."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

MAIN = str(Path(__file__).resolve().parent.parent / "app" / "main.py")


def open_view(view: str | None = None, timeout: float = 120) -> AppTest:
    """Run app/main.py, switch to ``app/views/<view>.py`` if given, and check nothing raised."""
    at = AppTest.from_file(MAIN, default_timeout=timeout)
    at.run()
    if view:
        at.switch_page(f"views/{view}.py").run()
    assert not at.exception, at.exception
    return at
