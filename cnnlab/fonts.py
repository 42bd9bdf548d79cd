"""The font a picture's text is drawn with: one that has every character of the text.

Pillow's built-in font has no accented letters (an Italian "città" or "è" is drawn as empty boxes) and
no Chinese. Every picture cnnlab draws (labelled sample grids, the sliding-window frames, the channel
pictures) asks :func:`font` for a size and the text it will draw, and gets:

1. DejaVu Sans, which ships with matplotlib: Latin with its accents, Greek, Cyrillic, the usual
   symbols (× · — … ≥ μ);
2. for characters it lacks (Chinese, Japanese, Korean...), the first font of this machine that has them
   all, looked for among the fonts that usually carry them (Noto Sans CJK, Source Han Sans,
   WenQuanYi, Microsoft YaHei, PingFang, SimHei...) before any other;
3. Pillow's own font, where neither can be read.

Whether a font has a character is read from what it draws: a character it lacks is drawn as its
"missing glyph", the same picture as a non-character (U+FFFF) gets. Results are kept per font and
character, and the machine's fonts are listed once per process.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

from PIL import ImageFont

Font = ImageFont.ImageFont | ImageFont.FreeTypeFont

# file names (lower case, without the separators) of the fonts that usually carry CJK characters,
# most common first: tried before the machine's other fonts
CJK_HINTS = ("notosanscjk", "notosanssc", "notosanstc", "notosansjp", "notosanskr", "sourcehansans", "wqy",
             "msyh", "yahei", "pingfang", "hiragino", "stheiti", "simhei", "simsun", "droidsansfallback",
             "uming", "ukai", "notoserifcjk", "arialuni")
MAX_SIZE = 512  # pixels: bounds what a caller can ask a font to be built at
_NOT_A_CHARACTER = "\uffff"


def font(size: int, text: str = "") -> Font:
    """A font of ``size`` pixels that draws every character of ``text`` (see the module's text)."""
    size = max(1, min(int(size), MAX_SIZE))
    base = base_font_path()
    if base is None:
        return _pillow(size)
    missing = frozenset(c for c in text if not c.isspace() and not _has(base, c))
    if not missing:
        return _load(base, size)
    other = _covering(missing)
    return _load(other, size) if other is not None else _load(base, size)


@lru_cache(maxsize=1)
def base_font_path() -> str | None:
    """matplotlib's DejaVu Sans, found without importing matplotlib; None if it is not there."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
    return str(path) if path.is_file() and _readable(str(path)) else None


@lru_cache(maxsize=1)
def system_fonts() -> tuple[str, ...]:
    """This machine's font files that Pillow can read: the usual CJK fonts first, in CJK_HINTS' order."""
    # lazy: matplotlib's font_manager builds its font list on import; only a text with characters
    # that DejaVu Sans lacks needs the machine's fonts
    from matplotlib import font_manager

    try:
        files = sorted(set(font_manager.findSystemFonts()))
    except (OSError, RuntimeError, ValueError):  # no fc-list, an unreadable fonts folder...
        return ()

    def rank(path: str) -> int:
        name = Path(path).name.lower().replace("-", "").replace("_", "").replace(" ", "")
        return next((i for i, hint in enumerate(CJK_HINTS) if hint in name), len(CJK_HINTS))

    return tuple(p for p in sorted(files, key=rank) if p.lower().endswith((".ttf", ".ttc", ".otf")))


@lru_cache(maxsize=64)
def _covering(missing: frozenset[str]) -> str | None:
    """The first font of this machine that draws every character of ``missing``."""
    for path in system_fonts():
        if _readable(path) and all(_has(path, c) for c in missing):
            return path
    return None


@lru_cache(maxsize=256)
def _readable(path: str) -> bool:
    try:
        ImageFont.truetype(path, 16)
    except (OSError, ValueError, ImportError):  # a damaged file, a format FreeType does not read, no FreeType
        return False
    return True


@lru_cache(maxsize=4096)
def _has(path: str, char: str) -> bool:
    """Whether the font file at ``path`` draws ``char`` (not its missing-glyph box)."""
    drawn, missing = _load(path, 32).getmask(char), _missing_glyph(path)
    return drawn.size != missing[0] or bytes(drawn) != missing[1]


@lru_cache(maxsize=64)
def _missing_glyph(path: str) -> tuple[tuple[int, int], bytes]:
    """The size and pixels of what the font at ``path`` draws for a character it lacks (once per font)."""
    mask = _load(path, 32).getmask(_NOT_A_CHARACTER)
    return mask.size, bytes(mask)


@lru_cache(maxsize=64)
def _load(path: str, size: int) -> Font:
    try:
        return ImageFont.truetype(path, size)
    except (OSError, ValueError, ImportError):
        return _pillow(size)


@lru_cache(maxsize=16)
def _pillow(size: int) -> Font:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()
