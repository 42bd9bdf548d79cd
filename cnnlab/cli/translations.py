"""``python -m cnnlab translations update|check``: the catalogues of :mod:`cnnlab.i18n`.

``update`` extracts every marked message of cnnlab and the app (``_()``, ``N_()``, ``ngettext()``) and
every text of the built-in lessons into ``cnnlab/locale/cnnlab.pot``, then merges it into each
language's ``.po`` file (new messages empty, changed ones kept as fuzzy, translations kept).
``check`` counts, per language, what is translated, and lists translations whose ``{placeholders}``
differ from their message's (those would fail when filled in).
"""

from __future__ import annotations

import argparse
import re
import string
from typing import Iterable, Iterator

from .. import i18n
from ..lessons.catalog import builtin_lessons

KEYWORDS = {"_": None, "N_": None, "gettext": None, "ngettext": (1, 2), "pgettext": ((1, "c"), 2)}
ROOT = i18n.LOCALE_DIR.parent.parent
SOURCES = ("cnnlab", "app")  # folders under ROOT whose Python files are read
TEMPLATE = i18n.LOCALE_DIR / f"{i18n.DOMAIN}.pot"


def _python_messages() -> Iterator[tuple[str, int, str | tuple[str, str], list[str], str | None]]:
    from babel.messages.extract import extract_from_dir  # babel's extractor: only this command needs it

    for folder in SOURCES:
        base = ROOT / folder
        if not base.is_dir():
            continue
        for filename, lineno, message, comments, context in extract_from_dir(
                str(base), method_map=[("**.py", "python")], keywords=KEYWORDS, comment_tags=("TRANSLATORS:",)):
            yield f"{folder}/{filename}", lineno, message, comments, context


def _lesson_messages() -> Iterator[tuple[str, int, str, list[str], None]]:
    for lesson in builtin_lessons():
        for text in lesson.texts():
            yield f"cnnlab/lessons/{lesson.name}.toml", 0, text, ["A lesson's text (see cnnlab/lessons/spec.py)."], None


def extract():
    """Every message to translate, as a Babel catalogue."""
    from babel.messages.catalog import Catalog  # babel: only this command needs it

    catalog = Catalog(project="cnnlab", domain=i18n.DOMAIN, charset="utf-8")
    for path, lineno, message, comments, context in [*_python_messages(), *_lesson_messages()]:
        if message and (message if isinstance(message, str) else message[0]):
            catalog.add(message, None, [(path, lineno)], auto_comments=comments, context=context)
    return catalog


def update(languages: Iterable[str] = ()) -> dict[str, int]:
    """Write the template and merge it into every catalogue (and into new ones for ``languages``)."""
    from babel.messages.catalog import Catalog  # babel: only this command needs it
    from babel.messages.pofile import read_po, write_po  # babel: only this command needs it

    template = extract()
    with TEMPLATE.open("wb") as f:
        write_po(f, template, width=100, omit_header=False, sort_output=False)
    counts = {}
    codes = sorted({*(p.stem for p in i18n.LOCALE_DIR.glob("*.po")), *languages})
    for code in codes:
        path = i18n.LOCALE_DIR / f"{code}.po"
        if path.exists():
            with path.open("rb") as f:
                catalog = read_po(f, locale=code, domain=i18n.DOMAIN)
        else:
            catalog = Catalog(locale=code, project="cnnlab", domain=i18n.DOMAIN, charset="utf-8")
        catalog.update(template, no_fuzzy_matching=False, update_header_comment=False)
        with path.open("wb") as f:
            write_po(f, catalog, width=100, ignore_obsolete=True, include_previous=False)
        counts[code] = len(catalog)
    return counts


def placeholders(text: str) -> list[str]:
    """The ``{name...}`` fields of a message, in order of first use (``{{`` and ``}}`` are not fields)."""
    try:
        return sorted({field for _lit, field, _spec, _conv in string.Formatter().parse(text) if field is not None})
    except ValueError:  # an unbalanced brace: the message is not a format string
        return sorted(set(re.findall(r"\{([^{}]*)\}", text)))


def check(code: str) -> dict[str, list[str]]:
    """What is missing, fuzzy, or has placeholders that differ from the message's, in ``code``'s catalogue."""
    from babel.messages.pofile import read_po  # babel: only this command needs it

    with (i18n.LOCALE_DIR / f"{code}.po").open("rb") as f:
        catalog = read_po(f, locale=code, domain=i18n.DOMAIN)
    found: dict[str, list[str]] = {"missing": [], "fuzzy": [], "placeholders": []}
    for message in catalog:
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strs = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.fuzzy:
            found["fuzzy"].append(ids[0])
        elif not all(strs):
            found["missing"].append(ids[0])
        elif any(placeholders(s) != placeholders(ids[-1 if i else 0]) and placeholders(s) != placeholders(ids[0])
                 for i, s in enumerate(strs)):
            found["placeholders"].append(ids[0])
    return found


def _run(args: argparse.Namespace) -> int:
    if args.action == "update":
        for code, n in update(args.add).items():
            print(f"{code}: {n} messages")
        print(f"template: {TEMPLATE}")
        return 0
    worst = 0
    for code in [c for c in i18n.available() if c != i18n.SOURCE_LANGUAGE]:
        found = check(code)
        print(f"{code}: {len(found['missing'])} untranslated, {len(found['fuzzy'])} fuzzy, "
              f"{len(found['placeholders'])} with wrong placeholders")
        for kind in ("missing", "placeholders") if args.verbose else ("placeholders",):
            for msg in found[kind][:50]:
                print(f"  {kind}: {msg[:100]!r}")
        worst = max(worst, 1 if found["missing"] or found["placeholders"] else 0)
    return worst


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("translations", help="extract the messages to translate and check the catalogues",
                       description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("action", choices=["update", "check"])
    p.add_argument("--add", action="append", default=[], metavar="CODE",
                   help="with update: start a catalogue for a new language (e.g. --add fr)")
    p.add_argument("--verbose", "-v", action="store_true", help="with check: list the untranslated messages too")
    p.set_defaults(func=_run)
