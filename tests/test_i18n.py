"""Translations (issue 28): every text a person reads is marked for translation, every catalogue
translates every message with the same placeholders, numbers follow the language, and a damaged or
missing catalogue falls back to English."""

from __future__ import annotations

import ast
import re
import sys
from functools import lru_cache
from pathlib import Path

import pytest

from cnnlab import errors, i18n

ROOT = Path(__file__).resolve().parent.parent
MARKERS = {"_", "N_", "gettext", "ngettext", "pgettext"}
LETTERS = re.compile(r"[A-Za-z]{2,}")

# Streamlit, Gradio, Altair and matplotlib calls whose positional text arguments a person reads
UI_CALLS = {
    "title", "header", "subheader", "caption", "markdown", "write", "text", "info", "warning", "error", "success",
    "toast", "button", "download_button", "link_button", "page_link", "selectbox", "multiselect", "slider",
    "select_slider", "checkbox", "radio", "toggle", "number_input", "text_input", "text_area", "file_uploader",
    "camera_input", "color_picker", "expander", "tabs", "metric", "form_submit_button", "progress", "spinner",
    "status", "popover", "segmented_control", "pills", "dialog", "Page", "set_title", "set_xlabel", "set_ylabel",
    "suptitle", "Markdown", "Button", "Error", "Warning", "Info", "Column", "NumberColumn", "TextColumn",
    "ProgressColumn", "LineChartColumn", "BarChartColumn", "ImageColumn", "CheckboxColumn", "SelectboxColumn",
    "LinkColumn", "ListColumn", "show_error", "show_message",
}
# keyword arguments a person reads, whatever the call
TEXT_KEYWORDS = {"label", "help", "placeholder", "caption", "title", "body", "description", "info", "page_title",
                 "text", "tooltip_text", "xlabel", "ylabel"}
OPTION_CALLS = {"radio", "selectbox", "multiselect", "select_slider", "segmented_control", "pills"}
# what is English on purpose: the command line (issue 28: it may stay English) and the code exports write
NOT_TRANSLATED = ("cnnlab/cli/", "cnnlab/bench.py", "cnnlab/__main__.py")


def python_files(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py")
                  if not any(str(p.relative_to(ROOT)).startswith(x) for x in NOT_TRANSLATED))


@lru_cache(maxsize=None)
def user_error_names() -> frozenset[str]:
    """cnnlab's user-facing error classes (those of cnnlab.errors and any class in cnnlab built on them)."""
    names = {n for n, v in vars(errors).items() if isinstance(v, type) and issubclass(v, errors.CnnlabError)}
    trees = [ast.parse(p.read_text()) for p in python_files("cnnlab") + python_files("app")]
    grown = True
    while grown:
        grown = False
        for tree in trees:
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.name not in names and any(
                        (b.id if isinstance(b, ast.Name) else getattr(b, "attr", "")) in names for b in node.bases):
                    names.add(node.name)
                    grown = True
    return frozenset(names)


def _name(func: ast.AST) -> str:
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def is_marked(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and _name(node.func) in MARKERS


def bare_text(node: ast.AST) -> str | None:
    """The English of ``node`` when it is text a person would read that no marker wraps: a literal,
    an f-string, ``"...".format()``, or a sum of them."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value if LETTERS.search(node.value) else None
    if isinstance(node, ast.JoinedStr):
        text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
        return text if LETTERS.search(text) else None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return bare_text(node.func.value)
    if isinstance(node, ast.BinOp):
        return bare_text(node.left) or bare_text(node.right)
    if isinstance(node, ast.IfExp):
        return bare_text(node.body) or bare_text(node.orelse)
    return None


def unmarked(path: Path) -> list[str]:
    """Each text in ``path`` a person reads that is not marked for translation, as 'file:line: text'."""
    tree = ast.parse(path.read_text())
    rel = path.relative_to(ROOT)
    found: list[str] = []
    in_app = rel.parts[0] == "app"

    def flag(node: ast.AST) -> None:
        text = bare_text(node)
        if text is not None:
            found.append(f"{rel}:{node.lineno}: {text[:70]!r}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) \
                and _name(node.exc.func) in user_error_names():
            for arg in node.exc.args:
                flag(arg)
        if not in_app and isinstance(node, ast.Call) and _name(node.func) == "error":  # a lesson reader's error
            for arg in node.args:
                flag(arg)
        if not in_app or not isinstance(node, ast.Call) or is_marked(node):
            continue
        name = _name(node.func)
        if name in UI_CALLS:
            for arg in node.args:
                flag(arg)
                if name == "tabs" and isinstance(arg, (ast.List, ast.Tuple)):
                    for element in arg.elts:
                        flag(element)
        for kw in node.keywords:
            if kw.arg in TEXT_KEYWORDS:
                flag(kw.value)
        if name in OPTION_CALLS and not any(kw.arg == "format_func" for kw in node.keywords):
            options = node.args[1] if len(node.args) > 1 else next(
                (kw.value for kw in node.keywords if kw.arg == "options"), None)
            if isinstance(options, (ast.List, ast.Tuple)):
                for element in options.elts:
                    flag(element)
    return found


def test_every_text_a_person_reads_is_marked_for_translation():
    found = [line for folder in ("app", "cnnlab") for p in python_files(folder) for line in unmarked(p)]
    assert not found, (f"{len(found)} texts are not marked for translation (wrap them in _(), or N_() in a table "
                       "and _() where shown):\n" + "\n".join(found[:80]))


def test_a_marker_gets_one_literal_never_an_f_string():
    """Extraction reads the literal inside _(): an f-string or a sum would never be found in a catalogue."""
    found = []
    for p in python_files("app") + python_files("cnnlab"):
        for node in ast.walk(ast.parse(p.read_text())):
            if is_marked(node) and node.args and isinstance(node.args[0], (ast.JoinedStr, ast.BinOp)):
                found.append(f"{p.relative_to(ROOT)}:{node.lineno}")
    assert not found, "f-strings or sums inside _(): " + ", ".join(found)


def test_the_lint_catches_what_it_should(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    page = tmp_path / "app" / "page.py"
    page.parent.mkdir()
    page.write_text('import streamlit as st\nfrom cnnlab.i18n import _\n'
                    'st.title("Architectures")\n'               # bare: flagged
                    'st.title(_("Architectures"))\n'            # marked
                    'st.caption(f"{n} layers")\n'               # f-string: flagged
                    'st.slider(_("Depth"), 1, 5, help="How deep")\n'  # help: flagged
                    'st.tabs([_("Maps"), "Kernels"])\n'         # one tab flagged
                    'st.radio(_("Kind"), ["zoo model", "run"])\n'  # options shown as they are: flagged
                    'st.radio(_("Kind"), ["zoo", "run"], format_func=lambda k: _(K[k]))\n'
                    'st.markdown("**" + _("Model") + "**")\n'
                    'st.html("<style>p {color: red}</style>")\n'
                    'raise DataError(f"no file {p}")\n')        # a user error: flagged
    found = unmarked(page)
    assert sorted(int(line.split(":")[1]) for line in found) == [3, 5, 6, 7, 8, 8, 12], found


# ---- the catalogues ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def extracted():
    from cnnlab.cli.translations import extract

    return extract()


@pytest.mark.parametrize("code", ["it", "zh"])
def test_every_message_is_translated_in_each_catalogue(extracted, code):
    from cnnlab.cli.translations import check

    from babel.messages.pofile import read_po

    with (i18n.LOCALE_DIR / f"{code}.po").open("rb") as f:
        catalog = read_po(f, locale=code)
    translated = {m.id if isinstance(m.id, str) else m.id[0] for m in catalog
                  if m.id and not m.fuzzy and all(m.string if isinstance(m.string, tuple) else (m.string,))}
    missing = [m.id if isinstance(m.id, str) else m.id[0] for m in extracted
               if m.id and (m.id if isinstance(m.id, str) else m.id[0]) not in translated]
    assert not missing, (f"{len(missing)} messages have no {code} translation (python -m cnnlab translations update, "
                         "then translate them in cnnlab/locale/{code}.po):\n" + "\n".join(map(repr, missing[:40])))
    assert check(code)["placeholders"] == []


def test_placeholders_are_compared_by_name():
    from cnnlab.cli.translations import placeholders

    assert placeholders("{best.name} reached {best.value:.1%}, {{literal}}") == ["best.name", "best.value"]
    assert placeholders("{n} immagini") == placeholders("{n} images")


# ---- the language in use and numbers ------------------------------------------------------------


def test_numbers_follow_the_language(speak):
    speak("en")
    assert (i18n.fmt(0.125, ".1%"), i18n.fmt(1234567, ","), i18n.fmt(3.14159, ".2f")) == ("12.5%", "1,234,567", "3.14")
    speak("it")
    assert (i18n.fmt(0.125, ".1%"), i18n.fmt(1234567, ","), i18n.fmt(3.14159, ".2f")) == ("12,5 %", "1.234.567", "3,14")
    assert i18n.fmt(0.000123, ".3g") == "0,000123" and i18n.fmt(1e-9, ".3g") == "1e-09"
    speak("zh")
    assert i18n.fmt(0.125, ".1%") == "12.5%"


def test_the_language_is_negotiated_from_the_browser():
    choices = ["en", "it", "zh"]
    assert i18n.negotiate("it-IT,it;q=0.9,en;q=0.8", choices) == "it"
    assert i18n.negotiate("zh-CN", choices) == "zh"
    assert i18n.negotiate("fr-FR,de", choices) == "en"
    assert i18n.negotiate(None, choices) == "en"


def test_a_translation_is_used_and_an_unknown_message_stays_english(speak):
    speak("it")
    assert i18n.gettext("Language") != "Language"
    assert i18n.gettext("a message nobody wrote") == "a message nobody wrote"
    speak("xx")
    assert i18n.language() == "en"


def test_a_damaged_catalogue_falls_back_to_english(tmp_path, monkeypatch, speak):
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path)
    (tmp_path / "fr.po").write_bytes(b'msgid "Language"\nmsgstr "Langue\n\x00\xff broken')
    assert "fr" in i18n.available()
    speak("fr")
    assert i18n.gettext("Language") == "Language"
    assert "fr" in i18n.problems()
    (tmp_path / "fr.po").write_text('msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
                                    'msgid "Language"\nmsgstr "Langue"\n', encoding="utf-8")
    assert i18n.gettext("Language") == "Langue"  # an edited catalogue is read again
    assert "fr" not in i18n.problems()


def test_an_oversized_catalogue_is_not_read(tmp_path, monkeypatch, speak):
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path)
    monkeypatch.setattr(i18n, "MAX_CATALOGUE_BYTES", 100)
    (tmp_path / "fr.po").write_text('msgid "Language"\nmsgstr "Langue"\n' + "#\n" * 100, encoding="utf-8")
    speak("fr")
    assert i18n.gettext("Language") == "Language"
    assert "more than the 100 a catalogue may have" in i18n.problems()["fr"]


def test_adding_a_language_is_adding_one_file(tmp_path, monkeypatch, speak):
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path)
    (tmp_path / "es.po").write_text('msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
                                    'msgid "Language"\nmsgstr "Idioma"\n', encoding="utf-8")
    assert i18n.available() == {"en": "English", "es": "Español"}
    speak("es")
    assert i18n.gettext("Language") == "Idioma"
