"""decode_image on every kind of file a person may upload, bundled photos, to_model_input."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from cnnlab.data import bundled_photos, decode_image, load_bundled_photo, to_model_input
from cnnlab.errors import DataError


def _encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _gradient(w: int = 40, h: int = 30) -> np.ndarray:
    x = np.linspace(0, 255, w, dtype=np.uint8)[None, :, None].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.uint8)[:, None, None].repeat(w, 1)
    return np.concatenate([x, y, np.full_like(x, 128)], axis=2)


def test_png_and_jpeg(tmp_path):
    arr = _gradient()
    png = _encode(Image.fromarray(arr), "PNG")
    img = decode_image(png)
    assert img.mode == "RGB" and img.size == (40, 30) and np.array_equal(np.asarray(img), arr)
    path = tmp_path / "photo.jpg"
    path.write_bytes(_encode(Image.fromarray(arr), "JPEG", quality=95))
    for source in (path, str(path), io.BytesIO(path.read_bytes())):
        img = decode_image(source)
        assert img.mode == "RGB" and img.size == (40, 30)
        assert np.abs(np.asarray(img).astype(int) - arr).mean() < 4
    assert decode_image(path, mode="L").mode == "L"


def test_rgba_composited_on_white():
    rgba = np.zeros((10, 10, 4), dtype=np.uint8)
    rgba[..., 0] = 255  # red
    rgba[:, :5, 3] = 255  # left half opaque, right half transparent
    img = np.asarray(decode_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG")))
    assert img[0, 0].tolist() == [255, 0, 0] and img[0, 9].tolist() == [255, 255, 255]


def test_la_palette_and_palette_transparency():
    la = Image.new("LA", (6, 6), (0, 0))  # black, fully transparent -> white
    assert np.asarray(decode_image(_encode(la, "PNG"), mode="L")).min() == 255
    p = Image.fromarray(_gradient()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    assert decode_image(_encode(p, "PNG")).mode == "RGB"
    pt = Image.new("P", (4, 4), 0)
    pt.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pt.putpixel((0, 0), 1)
    pt.info["transparency"] = 0
    out = np.asarray(decode_image(_encode(pt, "PNG", transparency=0)))
    assert out[0, 0].tolist() == [255, 0, 0] and out[1, 1].tolist() == [255, 255, 255]
    gif = np.asarray(decode_image(_encode(pt, "GIF", transparency=0)))
    assert gif[1, 1].tolist() == [255, 255, 255]


def test_cmyk_jpeg():
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    img = decode_image(_encode(cmyk, "JPEG", quality=95))
    r, g, b = np.asarray(img).reshape(-1, 3).mean(0)
    assert img.mode == "RGB" and r > 200 and g < 60 and b < 60


def test_16bit_png_scaled_to_8bit():
    arr = np.array([[0, 65535], [32896, 257 * 100]], dtype=np.uint16)
    img16 = Image.fromarray(arr)
    img = decode_image(_encode(img16, "PNG"), mode="L")
    assert np.asarray(img).tolist() == [[0, 255], [128, 100]]
    assert np.asarray(decode_image(_encode(img16, "PNG"))).shape == (2, 2, 3)


def test_one_bit_image():
    bw = Image.new("1", (8, 8), 0)
    bw.putpixel((3, 3), 1)
    out = np.asarray(decode_image(_encode(bw, "PNG"), mode="L"))
    assert out[3, 3] == 255 and out[0, 0] == 0


def test_exif_orientation_applied():
    img = Image.fromarray(_gradient(40, 20))  # landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    out = decode_image(_encode(img, "JPEG", exif=exif.tobytes()))
    assert out.size == (20, 40)


@pytest.mark.parametrize(
    "data, words",
    [
        (b"this is a text file, not a picture" * 10, "is not an image cnnlab can read (it reads PNG, JPEG, BMP, GIF, TIFF, WebP, PPM/PGM"),
        (b"", "empty (0 bytes)"),
    ],
)
def test_bad_bytes(data, words):
    with pytest.raises(DataError) as exc:
        decode_image(data)
    assert words in str(exc.value)


def test_truncated_jpeg_and_png(tmp_path):
    rng = np.random.default_rng(0)
    noisy = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    for fmt in ("JPEG", "PNG"):
        data = _encode(noisy, fmt)
        path = tmp_path / f"cut.{fmt.lower()}"
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(DataError, match="truncated") as exc:
            decode_image(path)
        assert "cut." in str(exc.value)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        decode_image(tmp_path / "nope.png")


def test_too_many_pixels_and_too_many_bytes():
    data = _encode(Image.new("RGB", (300, 400)), "PNG")
    with pytest.raises(DataError, match=r"has 0\.12 megapixels \(300x400\); the limit is 0\.1 megapixels"):
        decode_image(data, max_pixels=100_000)
    with pytest.raises(DataError, match="too large"):
        decode_image(data, max_bytes=100)


def test_decompression_bomb_beyond_pil_limit_is_data_error():
    data = _encode(Image.new("1", (20000, 10000)), "PNG")  # 200 megapixels: PIL itself refuses
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError, match=r"has 200 megapixels; the limit is 40 megapixels"):
            decode_image(data)


def test_no_warning_escapes():
    p = Image.new("P", (4, 4), 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decode_image(_encode(p, "PNG", transparency=b"\x00"))


def test_bundled_photos_offline():
    names = bundled_photos()
    assert {"astronaut", "coffee", "chelsea", "camera"} <= set(names)
    assert load_bundled_photo("astronaut").mode == "RGB"
    assert load_bundled_photo("camera").mode == "L"
    with pytest.raises(DataError, match="choose one of"):
        load_bundled_photo("not-a-photo")


def test_to_model_input_shapes_and_normalisation():
    img = Image.fromarray(_gradient(60, 30))
    x = to_model_input(img, (3, 24, 24), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert x.shape == (1, 3, 24, 24) and x.dtype == torch.float32
    assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    gray = to_model_input(img, (1, 28, 28), (0.1307,), (0.3081,), resize="stretch")
    assert gray.shape == (1, 1, 28, 28)
    rgb = to_model_input(img.convert("L"), (3, 16, 16), (0.0,), (1.0,))
    assert rgb.shape == (1, 3, 16, 16) and torch.equal(rgb[0, 0], rgb[0, 1])
    # Centre crop keeps the middle: a 60x30 gradient cropped to 30x30 spans the middle columns only.
    cropped = to_model_input(img, (3, 30, 30), (0.0,), (1.0,))
    assert 0.2 < float(cropped[0, 0, 0, 0]) < 0.3
