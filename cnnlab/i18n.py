"""The words people read, in their language: gettext catalogues, one file per language.

Every sentence cnnlab or its app shows is written in English in the code, marked for translation
(``_("...")``, ``ngettext(...)``, or ``N_("...")`` for a text kept in a table and translated where it
is shown), and looked up in ``cnnlab/locale/<code>.po`` for the language in use. Adding a language is
adding one file: copy ``cnnlab/locale/cnnlab.pot`` to ``<code>.po`` (a code Babel knows: ``fr``,
``es``, ``pt_BR``...), fill in its ``msgstr`` lines, and the app's language picker lists it.
``python -m cnnlab translations update`` re-extracts the messages after the code changed and merges
them into every catalogue; ``python -m cnnlab translations check`` counts what is untranslated.

Catalogues are compiled when first used (Babel reads the ``.po`` text and writes the binary ``.mo``
form in memory), so there is no build step, and an edited catalogue is read again. A catalogue that
cannot be read is reported by :func:`problems` and its language falls back to English.

Which language is in use: :func:`set_language` sets it for the current thread and what it starts
(a ``ContextVar``); an application may also install a :func:`set_language_source` that answers for
the current request (the Streamlit app reads its session there, so every rerun and fragment speaks
the session's language). The command line stays English unless ``CNNLAB_LANG`` names a language.

Numbers are formatted for the language (:func:`fmt`): ``format(0.125, ".1%")`` is "12.5%" in English
and "12,5 %" in Italian.
"""

from __future__ import annotations

import contextvars
import gettext as _gettext
import io
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "cnnlab"
SOURCE_LANGUAGE = "en"
MAX_CATALOGUE_BYTES = 4 * 1024 * 1024  # a catalogue is text someone may have placed there: bounded
CODE_RE = re.compile(r"[a-z]{2,3}(_[A-Z][a-z]{3})?(_[A-Z]{2})?")

_language: contextvars.ContextVar[str | None] = contextvars.ContextVar("cnnlab_language", default=None)
_source: Callable[[], str | None] | None = None


def N_(message: str) -> str:
    """Mark ``message`` for translation without translating it now (a table's text, translated where shown)."""
    return message


# ---- which languages ----------------------------------------------------------------------------


def _catalogue_path(code: str) -> Path:
    return LOCALE_DIR / f"{code}.po"


def available() -> dict[str, str]:
    """Every language there is a catalogue for, English first: code -> its own name ("Italiano", "中文")."""
    codes = [SOURCE_LANGUAGE] + sorted(p.stem for p in LOCALE_DIR.glob("*.po") if CODE_RE.fullmatch(p.stem))
    return {code: native_name(code) for code in codes}


@lru_cache(maxsize=64)
def native_name(code: str) -> str:
    """A language's name in that language, capitalised as a menu shows it."""
    from babel import Locale, UnknownLocaleError  # babel is heavy: only when a name is asked for

    try:
        name = Locale.parse(code).get_display_name(code) or code
    except (ValueError, UnknownLocaleError):
        return code
    return name[:1].upper() + name[1:]


def negotiate(preferred: str | None, choices: list[str] | None = None) -> str:
    """The first of ``preferred`` (an Accept-Language header or a locale such as "it-IT") that is
    available, else English."""
    choices = choices if choices is not None else list(available())
    for part in (preferred or "").replace("-", "_").split(","):
        tag = part.split(";")[0].strip()
        for code in (tag, tag.split("_")[0].lower()):
            if code in choices:
                return code
    return SOURCE_LANGUAGE


def resolve(code: str | None) -> str:
    """``code`` if a catalogue for it exists (or it is English), else English."""
    return code if code and (code == SOURCE_LANGUAGE or code in available()) else SOURCE_LANGUAGE


# ---- the language in use ------------------------------------------------------------------------


def set_language(code: str | None) -> contextvars.Token:
    """Use ``code`` in this thread (and the threads and tasks it starts with its context)."""
    return _language.set(resolve(code))


def set_language_source(source: Callable[[], str | None] | None) -> None:
    """Ask ``source()`` first for the language in use (it answers None outside a request)."""
    global _source
    _source = source


def language() -> str:
    """The language in use: the installed source's answer, else this context's, else ``CNNLAB_LANG``, else English."""
    if _source is not None:
        found = _source()
        if found:
            return found
    return _language.get() or os.environ.get("CNNLAB_LANG") or SOURCE_LANGUAGE


# ---- catalogues ---------------------------------------------------------------------------------

_problems: dict[str, str] = {}


def problems() -> dict[str, str]:
    """Catalogues that could not be read: language code -> what was wrong."""
    return dict(_problems)


def _compile(path: Path) -> _gettext.NullTranslations:
    """Read a ``.po`` file and compile it in memory; fuzzy and empty entries stay untranslated."""
    from babel.messages.mofile import write_mo  # babel is heavy: only when a catalogue is used
    from babel.messages.pofile import read_po  # with write_mo above: only when a catalogue is used

    size = path.stat().st_size
    if size > MAX_CATALOGUE_BYTES:
        raise ValueError(f"{size:,} bytes, more than the {MAX_CATALOGUE_BYTES:,} a catalogue may have")
    with path.open("rb") as f:
        catalog = read_po(f, locale=path.stem, domain=DOMAIN)
    buf = io.BytesIO()
    write_mo(buf, catalog, use_fuzzy=False)
    buf.seek(0)
    return _gettext.GNUTranslations(buf)


@lru_cache(maxsize=16)
def _translations_at(path: str, stamp: tuple[int, int]) -> _gettext.NullTranslations:
    code = Path(path).stem
    try:
        found = _compile(Path(path))
    except Exception as err:  # noqa: BLE001 - a damaged catalogue must not take the app down
        _problems[code] = f"{path}: {err}"
        return _gettext.NullTranslations()
    _problems.pop(code, None)
    return found


def translations(code: str) -> _gettext.NullTranslations:
    """The compiled catalogue of ``code`` (read again when its file changes); English has none."""
    path = _catalogue_path(code)
    if code == SOURCE_LANGUAGE or not CODE_RE.fullmatch(code):
        return _gettext.NullTranslations()
    try:
        st = path.stat()
    except OSError:
        return _gettext.NullTranslations()
    return _translations_at(str(path), (st.st_mtime_ns, st.st_size))


def gettext(message: str) -> str:
    """``message`` in the language in use (English when it has no translation)."""
    code = language()
    if code == SOURCE_LANGUAGE or not message:
        return message
    return translations(code).gettext(message)


_ = gettext


def pgettext(context: str, message: str) -> str:
    """``message`` in a ``context`` that tells two uses of the same English apart (a "Run" button and a
    "Run" picker: ``pgettext("noun", "Run")``)."""
    code = language()
    if code == SOURCE_LANGUAGE or not message:
        return message
    return translations(code).pgettext(context, message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The singular or plural form for ``n``, by the language's own plural rule."""
    code = language()
    if code == SOURCE_LANGUAGE:
        return singular if n == 1 else plural
    return translations(code).ngettext(singular, plural, n)


def either(items: list[Any]) -> str:
    """"a or b or c" in the language in use, each "or" a whole message."""
    text = str(items[0])
    for item in items[1:]:
        text = gettext("{first} or {second}").format(first=text, second=item)
    return text


# ---- numbers ------------------------------------------------------------------------------------

_SPEC_RE = re.compile(r"(?P<comma>,)?(?:\.(?P<digits>\d+))?(?P<kind>[%fg])?")


def fmt(value: Any, spec: str = "") -> str:
    """``format(value, spec)`` with the language's decimal and grouping marks ("12,5 %" in Italian).

    The specs lessons and pages use are ``.Nf``, ``,.Nf``, ``,``, ``.N%`` and ``.Ng``; anything else, and
    every spec in English, is Python's own ``format``.
    """
    code = language()
    m = _SPEC_RE.fullmatch(spec)
    plain = type(value) in (int, float) or (type(value).__module__ == "numpy" and hasattr(value, "item"))
    if code == SOURCE_LANGUAGE or m is None or not spec or not plain or isinstance(value, bool):
        return format(value, spec)  # English, another spec, or a value that formats itself (points, "n/a")
    return _localised(float(value) if m["kind"] in ("%", "f", "g") else value, m, code)


def _localised(value: Any, m: re.Match, code: str) -> str:
    from babel.numbers import format_decimal  # babel is heavy: only when a number is formatted in a translation

    kind, digits = m["kind"], m["digits"]
    grouping = bool(m["comma"]) or kind == "%"
    if kind == "g":
        text = format(value, f".{digits or 6}g")
        if "e" in text or "inf" in text or "nan" in text:
            return text
        decimals = len(text.split(".")[1]) if "." in text else 0
    else:
        if kind == "%":
            value = value * 100
        decimals = int(digits) if digits is not None else (6 if kind == "f" else 0)
    if value != value or value in (float("inf"), float("-inf")):
        return format(value, "")
    pattern = ("#,##0" if grouping else "0") + ("." + "0" * decimals if decimals else "")
    number = format_decimal(value, format=pattern, locale=code)
    return gettext("{value}%").format(value=number) if kind == "%" else number
