"""The font a picture's text is drawn with (cnnlab.fonts): every character of the text drawn, not its
missing-glyph box. Pillow's own font has no accented letters and no Chinese, so an Italian label or a
class named '猫' came out as empty boxes. The Chinese cases need a CJK font on the machine (.ci/run
installs fonts-wqy-microhei); they are skipped, with that reason, where there is none."""

from __future__ import annotations

import pytest
import torch
from PIL import ImageChops

from cnnlab import fonts
from cnnlab.data import TensorSplit
from cnnlab.data.gallery import sample_grid


def drawn_by(font, text: str) -> bool:
    """Whether ``font`` draws every character of ``text`` (the test's own reading: each character's
    picture differs from the non-character's)."""
    missing = font.getmask("\uffff")
    return all(font.getmask(c).size != missing.size or bytes(font.getmask(c)) != bytes(missing)
               for c in text if not c.isspace())


CJK = fonts._covering(frozenset("猫狗通道")) is not None
needs_cjk = pytest.mark.skipif(not CJK, reason="no CJK font on this machine (.ci/run installs fonts-wqy-microhei)")


def test_pillows_own_font_lacks_the_accents_the_chosen_one_has_them():
    italian = "città è già più — … ≥ μ ×"
    assert not drawn_by(fonts._pillow(16), italian)  # why this module exists
    assert fonts.base_font_path() is not None  # matplotlib's DejaVu Sans, a requirement of cnnlab
    assert drawn_by(fonts.font(16, italian), italian)
    assert fonts.font(16, "channel 3") is fonts.font(16, "mean 0.5")  # one font object per size, kept


@needs_cjk
@pytest.mark.parametrize("text", ["通道 3", "均值 0.25", "猫", "日本語", "平均 città"])
def test_a_text_with_characters_dejavu_lacks_gets_a_font_that_has_them(text):
    font = fonts.font(18, text)
    assert drawn_by(font, text), (text, font.path)
    assert font.size == 18


def test_a_character_no_font_has_still_gets_a_font_and_sizes_are_bounded():
    assert fonts.font(16, "\U0010fffd").size == 16  # a private-use character: drawn as a box, never an error
    assert fonts.font(10 ** 9, "a").size == fonts.MAX_SIZE and fonts.font(-3, "a").size == 1


def test_damaged_or_unreadable_font_files_are_passed_over(tmp_path, monkeypatch):
    damaged = tmp_path / "NotoSansCJK-Regular.ttc"  # named as the best candidate, but not a font
    damaged.write_bytes(b"\x00\x01\x00\x00 not a font")
    good = fonts.base_font_path()
    monkeypatch.setattr(fonts, "system_fonts", lambda: (str(damaged), str(tmp_path / "gone.ttf"), good))
    fonts._covering.cache_clear()
    try:
        assert fonts._covering(frozenset("Ω")) == good  # DejaVu Sans has omega; the two before it are skipped
        assert fonts._covering(frozenset("\U0010fffd")) is None
    finally:
        fonts._covering.cache_clear()


def test_the_usual_cjk_fonts_come_first():
    ranked = fonts.system_fonts()
    names = [p.lower() for p in ranked]
    hinted = [i for i, n in enumerate(names) if any(h in n.replace("-", "").replace("_", "") for h in fonts.CJK_HINTS)]
    assert hinted == list(range(len(hinted)))  # every hinted font before every other


@needs_cjk
def test_a_class_named_in_chinese_is_written_in_the_sample_grid():
    split = TensorSplit(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.tensor([0, 0, 1, 1]))
    named = sample_grid(split, ["猫", "狗"], per_class=1, size=32)
    boxes = sample_grid(split, ["\uffff", "\uffff"], per_class=1, size=32)  # what a font without them draws
    assert named.size == boxes.size
    assert ImageChops.difference(named.convert("RGB"), boxes.convert("RGB")).getbbox() is not None

