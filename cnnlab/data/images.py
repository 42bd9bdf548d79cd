"""Safe image decoding: the one place where cnnlab turns bytes into a PIL image.

Datasets, the app's uploads, the Gradio demo and the command line all call
:func:`decode_image`. It accepts anything a person may hand over in one of the formats in
:data:`READABLE_FORMATS` (PNG, JPEG, BMP, GIF, TIFF, WebP and Netpbm PPM/PGM) -- EXIF-rotated
phone photos, palette GIFs, transparent PNGs, CMYK JPEGs, 16-bit scans, 1-bit drawings -- and
returns a plain ``"RGB"`` or ``"L"`` image. Every other format PIL knows (EPS, which would run
Ghostscript, AVIF, JPEG 2000, DDS, PSD...) is refused without even being parsed. Anything it
cannot decode ends in a :class:`~cnnlab.errors.DataError` whose message is cnnlab's own sentence
(what is wrong and what to do), never a PIL exception, a raw library message, a warning or a
traceback.

Limits, all checked from the file header *before* any pixel memory is allocated:

* :data:`MAX_BYTES` (50 MB) per file;
* :data:`MAX_PIXELS` (40 megapixels) per image (decompression bombs);
* :data:`MAX_ASPECT_RATIO` (30): the longer side may be at most 30 times the shorter one.
  Photos (4:3, 16:9), phone panoramas (up to about 10:1) and 360-degree panoramas (2:1) pass;
  a 1 x 1,000,000 strip, which no CNN can use and which resizing to cover a square input
  would turn into gigabytes, does not.

:func:`resize_shorter_then_center_crop` (and :func:`to_model_input`) cut the centre region in
source coordinates and resize only that region, so whatever image a caller passes, nothing
larger than the requested output size is allocated.

PIL's global ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left alone: a truncated file is an error.
"""

from __future__ import annotations

import importlib.util
import io
import re
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageOps

from ..errors import DataError
from ..i18n import _
from .pipeline import adapt_channels, model_stats

ImageSource = Union[bytes, bytearray, str, Path, BinaryIO]

MAX_PIXELS = 40_000_000
MAX_BYTES = 50 * 2**20
#: Longest side / shortest side an image may have (see the module docstring).
MAX_ASPECT_RATIO = 30
#: The formats decode_image reads, as shown in messages; ``_PIL_FORMATS`` are PIL's names for them.
READABLE_FORMATS = "PNG, JPEG, BMP, GIF, TIFF, WebP, PPM/PGM"
_PIL_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM")
# Names shown for formats (PIL's names where these are not the usual ones).
_FORMAT_NAMES = {
    "WEBP": "WebP", "PPM": "PPM/PGM", "MPO": "JPEG", "JPEG2000": "JPEG 2000", "EPS": "EPS/PostScript",
}
RESIZE_MODES = ("shorter_then_center_crop", "stretch")

# Photos that scikit-image ships inside its package (no download needed): name -> file.
_BUNDLED_PHOTOS: dict[str, str] = {
    "astronaut": "astronaut.png",
    "coffee": "coffee.png",
    "chelsea": "chelsea.png",
    "rocket": "rocket.jpg",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "immunohistochemistry": "ihc.png",
    "motorcycle": "motorcycle_left.png",
    "color": "color.png",
    "logo": "logo.png",
    "camera": "camera.png",
    "coins": "coins.png",
    "moon": "moon.png",
    "page": "page.png",
    "text": "text.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
    "brick": "brick.png",
}


# --------------------------------------------------------------------------------------
# Silencing PIL warnings without racing other threads
# --------------------------------------------------------------------------------------

_warn_lock = threading.Lock()
_warn_depth = 0
_warn_ctx: warnings.catch_warnings | None = None


@contextmanager
def _pil_warnings_silenced() -> Iterator[None]:
    """Ignore PIL's warnings (decompression bomb, odd EXIF, palette transparency) while decoding.

    ``warnings.catch_warnings`` changes process-wide state, so concurrent decoders (the dataset
    thread pool) share one reference-counted context instead of each saving and restoring the
    filters in an interleaved order.
    """
    global _warn_depth, _warn_ctx
    with _warn_lock:
        if _warn_depth == 0:
            _warn_ctx = warnings.catch_warnings()
            _warn_ctx.__enter__()
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
        _warn_depth += 1
    try:
        yield
    finally:
        with _warn_lock:
            _warn_depth -= 1
            if _warn_depth == 0 and _warn_ctx is not None:
                _warn_ctx.__exit__(None, None, None)
                _warn_ctx = None


# --------------------------------------------------------------------------------------
# Reading the bytes
# --------------------------------------------------------------------------------------


def _describe(source: ImageSource) -> str:
    if isinstance(source, (str, Path)):
        return f"'{source}'"
    name = getattr(source, "name", None)
    if isinstance(name, str) and name:
        return f"'{name}'"
    return _("the uploaded file")


def _differing(value: float, limit: float) -> tuple[str, str]:
    """``value`` and ``limit`` as text, with enough decimals that the two visibly differ.

    40.005625 against 40 reads "40.01" and "40", never "40" and "40".
    """
    shown_limit = f"{limit:.6f}".rstrip("0").rstrip(".")
    for decimals in range(0 if value >= 100 else 1, 7):
        shown = f"{value:.{decimals}f}"
        if float(shown) != float(shown_limit):
            return shown, shown_limit
    return f"{value:.6f}", shown_limit


def _megapixels(pixels: int, limit: int, unit: float = 1e6) -> tuple[str, str]:
    """``pixels`` and ``limit`` in megapixels (or in ``unit``), differing visibly."""
    return _differing(pixels / unit, limit / unit)


def _format_name(fmt: str | None) -> str:
    return _FORMAT_NAMES.get(fmt or "", fmt or "image")


# Unreadable formats named in messages: PIL's signature checks for these look at 4 or more
# fixed bytes, so a match is trustworthy (weak ones such as TGA, PCX or CUR are left out; such
# files get the generic "not an image cnnlab can read").
_NAMED_FOREIGN = (
    "AVIF", "JPEG2000", "EPS", "DDS", "ICNS", "ICO", "PSD", "QOI", "FITS", "BLP", "FTEX", "XPM", "WMF",
)
_BMP_HEADER_SIZES = (12, 16, 40, 52, 56, 64, 108, 124)


def _sniff_format(data: bytes) -> str | None:
    """The format whose signature starts ``data`` (PIL's name), or None.

    Only signature checks run (pure functions of the first bytes); no plugin opens the file,
    so an EPS file is named without Ghostscript ever starting.
    """
    head = data[:32]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:2] == b"BM" and len(head) >= 18 and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return "BMP"
    if re.match(rb"P[1-6fF][ \t\r\n#]", head):
        return "PPM"
    if head.startswith(b"%PDF-"):
        return "PDF"
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftyphevc", b"ftypmif1", b"ftypmsf1"):
        return "HEIC"
    Image.init()
    for name in _NAMED_FOREIGN:
        accept = Image.OPEN.get(name, (None, None))[1]
        try:
            if accept is not None and accept(head[:16]):
                return name
        except Exception:  # noqa: BLE001 - a signature check that fails is "not this format"
            continue
    return None


def _byte_sizes(size: int, limit: int) -> tuple[str, str]:
    """``size`` and ``limit`` as "52.4 MB" / "50 MB" (or KB, bytes), differing visibly."""
    unit, name = (2**20, "MB") if limit >= 2**20 else (2**10, "KB") if limit >= 2**10 else (1, "bytes")
    shown, shown_limit = _megapixels(size, limit, unit)
    return f"{shown} {name}", f"{shown_limit} {name}"


def _read_bytes(source: ImageSource, what: str, max_bytes: int) -> bytes:
    """All the bytes of ``source``, refusing missing, empty and oversized files."""
    exact = True
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise DataError(_("{what} does not exist or is not a file.").format(what=what))
        size = path.stat().st_size
        if size > max_bytes:
            shown, limit = _byte_sizes(size, max_bytes)
            raise DataError(_("{what} is too large ({size}); the limit is {limit}.").format(
                what=what, size=shown, limit=limit))
        try:
            data = path.read_bytes()
        except OSError as exc:
            reason = exc.strerror or _("input/output error")
            raise DataError(_("{what} cannot be read ({reason}); check its permissions.").format(
                what=what, reason=reason)) from None
    elif hasattr(source, "read"):
        exact = False  # only max_bytes + 1 bytes are read
        try:
            data = source.read(max_bytes + 1)
        except OSError as exc:
            reason = exc.strerror or _("input/output error")
            raise DataError(_("{what} cannot be read ({reason}); upload it again.").format(
                what=what, reason=reason)) from None
        except ValueError:
            raise DataError(_("{what} cannot be read: the file was already closed; upload it again.").format(
                what=what)) from None
        if isinstance(data, str):
            raise DataError(_("{what} was opened in text mode; open it with 'rb'.").format(what=what))
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise DataError(_("{what} did not give bytes when read; give bytes, a path or a binary file.").format(
                what=what))
        data = bytes(data)
    else:
        raise DataError(_("Cannot decode an image from a {kind}; give bytes, a path or a binary file.").format(
            kind=type(source).__name__))
    if len(data) == 0:
        raise DataError(_("{what} is empty (0 bytes): it is not an image.").format(what=what))
    if len(data) > max_bytes:
        shown, limit = _byte_sizes(len(data), max_bytes)
        if exact:
            raise DataError(_("{what} is too large ({size}); the limit is {limit}. Resize or compress it first.")
                            .format(what=what, size=shown, limit=limit))
        raise DataError(_("{what} is too large (more than {limit}); the limit is {limit}. Resize or compress it "
                          "first.").format(what=what, limit=limit))
    return data


# --------------------------------------------------------------------------------------
# Normalising modes
# --------------------------------------------------------------------------------------


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """16-bit ("I;16*"), 32-bit integer ("I") or float ("F") grayscale as 8-bit "L"."""
    arr = np.asarray(img, dtype=np.float64)
    if img.mode.startswith("I;16"):
        arr = arr / 257.0  # 65535 -> 255
    else:
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if img.mode == "F" and lo >= 0.0 and hi <= 1.0:
            arr = arr * 255.0
        elif lo >= 0.0 and hi <= 255.0:
            pass
        elif lo >= 0.0 and hi <= 65535.0:
            arr = arr / 257.0  # a 16-bit image stored in a 32-bit mode
        else:
            arr = (arr - lo) * (255.0 / max(hi - lo, 1e-12))
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")


def _flatten_alpha(img: Image.Image) -> Image.Image:
    """Composite an image with transparency onto white and return it as "RGB"."""
    rgba = img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _normalise_mode(img: Image.Image, mode: str) -> Image.Image:
    """Any PIL mode as ``mode`` ("RGB" or "L"), with alpha composited onto white."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        img = _high_depth_to_l(img)
    elif img.mode == "P":
        img = _flatten_alpha(img) if "transparency" in img.info else img.convert("RGB")
    elif img.mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        img = _flatten_alpha(img)
    elif img.mode == "1":
        img = img.convert("L")
    elif img.mode not in ("RGB", "L"):
        img = img.convert("RGB")  # CMYK, YCbCr, LAB, HSV
    if img.mode != mode:
        img = img.convert(mode)
    return img


def _exif_transpose(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag; a broken EXIF block leaves the image as stored."""
    try:
        return ImageOps.exif_transpose(img) or img
    except Exception:  # noqa: BLE001 - corrupt EXIF must not make a readable image unreadable
        return img


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


def decode_image(
    source: ImageSource,
    *,
    mode: str = "RGB",
    max_pixels: int = MAX_PIXELS,
    max_bytes: int = MAX_BYTES,
    max_aspect_ratio: float = MAX_ASPECT_RATIO,
    draft: tuple[int, int] | None = None,
) -> Image.Image:
    """Decode a PNG, JPEG, BMP, GIF, TIFF, WebP or PPM/PGM file safely into a loaded PIL image.

    Other formats (EPS, AVIF, JPEG 2000, PSD, ...) are refused without being parsed.

    Args:
        source: raw bytes, a path, or a binary file object (e.g. a Streamlit upload).
        mode: ``"RGB"`` or ``"L"``.
        max_pixels: refuse images with more pixels than this (decompression bombs).
        max_bytes: refuse files larger than this.
        max_aspect_ratio: refuse images whose longer side is more than this many times the
            shorter one (a 1 x 1,000,000 strip). Checked, like ``max_pixels``, from the header
            before any pixels are decoded.
        draft: optional ``(width, height)``; lets JPEG decode at a reduced scale that is
            still at least this large (much faster when the caller shrinks the image anyway).

    Returns:
        A new ``PIL.Image.Image`` of mode ``mode`` with EXIF orientation applied, transparency
        composited onto white, palette/CMYK/1-bit/16-bit converted properly.

    Raises:
        DataError: the source is missing, empty, too large, too elongated, not an image, in an
            unsupported format, truncated or corrupt. The message is cnnlab's own sentence.
    """
    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' or 'L', got {mode!r}")
    what = _describe(source)
    data = _read_bytes(source, what, max_bytes)
    with _pil_warnings_silenced():
        try:
            img = Image.open(io.BytesIO(data), formats=_PIL_FORMATS)
        except Image.DecompressionBombError as exc:
            raise _bomb(what, str(exc), max_pixels) from None
        except MemoryError:
            raise DataError(
                _("{what} is too large to open with the memory available; resize it first.").format(what=what)
            ) from None
        except Exception:  # noqa: BLE001 - UnidentifiedImageError or any plugin error on the header
            raise _unreadable(what, data) from None
        with img:
            width, height = img.size
            fmt = _format_name(img.format)
            names = dict(what=what, width=width, height=height)
            if width <= 0 or height <= 0:
                raise DataError(_("{what} has no pixels ({width}x{height}); download or export it again.").format(
                    **names))
            if width * height > max_pixels:
                shown, limit = _megapixels(width * height, max_pixels)
                raise DataError(_(
                    "{what} has {shown} megapixels ({width}x{height}); the limit is {limit} megapixels. "
                    "Resize it before uploading.").format(shown=shown, limit=limit, **names))
            if max(width, height) > max_aspect_ratio * min(width, height):
                ratio, limit = _differing(max(width, height) / min(width, height), max_aspect_ratio)
                raise DataError(_(
                    "{what} is {width}x{height} pixels: its longer side is {ratio} times its shorter side, "
                    "and cnnlab accepts at most {limit} times. Crop it to a less elongated picture first.").format(
                    ratio=ratio, limit=limit, **names))
            try:
                if draft is not None and img.format in ("JPEG", "MPO"):
                    img.draft("RGB" if mode == "RGB" and img.mode != "CMYK" else img.mode, draft)
                img.load()
            except MemoryError:
                raise DataError(_(
                    "{what} ({width}x{height}) is too large to decode with the memory available; resize it first."
                ).format(**names)) from None
            except Exception as exc:  # noqa: BLE001
                if isinstance(exc, EOFError) or "truncated" in str(exc).lower():
                    raise DataError(_(
                        "{what} is truncated (the file ends before the image data does); download or export it again."
                    ).format(**names)) from None
                raise DataError(_(
                    "{what} is a corrupt {format} file: its pixel data cannot be decoded; download or export it again."
                ).format(format=fmt, **names)) from None
            try:
                out = _normalise_mode(_exif_transpose(img), mode)
                if out is img:
                    out = img.copy()
            except MemoryError:
                raise DataError(_(
                    "{what} ({width}x{height}) is too large to convert with the memory available; resize it first."
                ).format(**names)) from None
            except Exception:  # noqa: BLE001
                raise DataError(_(
                    "{what} uses an image mode cnnlab cannot convert ({mode}); save it as an 8-bit RGB PNG or JPEG."
                ).format(mode=img.mode, **names)) from None
    return out


def _bomb(what: str, error: str, max_pixels: int) -> DataError:
    """The error for an image PIL refuses as a decompression bomb (its pixel count read from PIL's message)."""
    found = re.search(r"\((\d+) pixels\)", error)
    if found:
        shown, limit = _megapixels(int(found.group(1)), max_pixels)
        return DataError(_("{what} has {shown} megapixels; the limit is {limit} megapixels (decompression-bomb "
                           "protection). Resize it before uploading.").format(what=what, shown=shown, limit=limit))
    limit = _megapixels(max_pixels + 1, max_pixels)[1]
    return DataError(_("{what} has far too many pixels; the limit is {limit} megapixels (decompression-bomb "
                       "protection). Resize it before uploading.").format(what=what, limit=limit))


def _unreadable(what: str, data: bytes) -> DataError:
    """The error for a file that no readable format's plugin could open."""
    found = _sniff_format(data)
    if found is None:
        return DataError(_(
            "{what} is not an image cnnlab can read (it reads {formats} files); save it as PNG or JPEG and try again."
        ).format(what=what, formats=READABLE_FORMATS))
    if found not in _PIL_FORMATS:
        return DataError(_(
            "{what} is an image in the {format} format, which cnnlab does not read (unsupported format; it reads "
            "{formats}). Convert it to PNG or JPEG and try again.").format(
            what=what, format=_format_name(found), formats=READABLE_FORMATS))
    return DataError(_(
        "{what} looks like a {format} file but is corrupt: its header cannot be read; download or export it again."
    ).format(what=what, format=_format_name(found)))


def _skimage_data_dir() -> Path | None:
    """scikit-image's data folder, found without importing it; None when it is not installed."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).resolve().parent / "data"


def bundled_photos() -> list[str]:
    """Names of the photos that ship inside scikit-image (usable offline, no download)."""
    folder = _skimage_data_dir()
    if folder is None:
        return []
    return [name for name, file in _BUNDLED_PHOTOS.items() if (folder / file).is_file()]


def load_bundled_photo(name: str) -> Image.Image:
    """One of :func:`bundled_photos` as a PIL image: "L" for grayscale photos, else "RGB"."""
    available = bundled_photos()
    if name not in available:
        if available:
            raise DataError(_("No bundled photo named {name!r}; choose one of {names}.").format(
                name=name, names=", ".join(available)))
        raise DataError(_("No bundled photo named {name!r}; install scikit-image (pip install scikit-image).").format(
            name=name))
    path = _skimage_data_dir() / _BUNDLED_PHOTOS[name]  # type: ignore[operator]
    with _pil_warnings_silenced(), Image.open(path) as probe:
        gray = probe.mode in ("L", "1", "I;16", "I", "F", "LA")
    return decode_image(path, mode="L" if gray else "RGB")


def resize_shorter_then_center_crop(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale so the image covers ``size`` = (height, width), then cut the centre (torchvision's Resize+CenterCrop).

    The centre region is chosen in source coordinates and only that region is resized
    (``Image.resize(box=...)``; a large shrink first averages blocks of the region, aligned
    as ``reducing_gap=3`` would align them on the whole image). The pixels are those of resizing
    the whole image and cropping (to within one level of float rounding), but nothing larger
    than the ``size`` output is allocated: a 1 x 1,000,000 image is not first scaled to
    224 x 224,000,000, and a 6000 x 4000 photo is only read in its centre square.
    """
    out_h, out_w = int(size[0]), int(size[1])
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"size must be two positive integers (height, width), got {size!r}")
    w, h = img.size
    if w <= 0 or h <= 0:
        raise DataError(_("Cannot resize an image with no pixels ({w}x{h}).").format(w=w, h=h))
    scale = max(out_w / w, out_h / h)
    # The size the whole image would be scaled to (never allocated), and the crop inside it.
    new_w, new_h = max(out_w, round(w * scale)), max(out_h, round(h * scale))
    left, top = (new_w - out_w) // 2, (new_h - out_h) // 2
    if (new_w, new_h) == (w, h):
        return img.crop((left, top, left + out_w, top + out_h))
    sx, sy = w / new_w, h / new_h
    box = (left * sx, top * sy, (left + out_w) * sx, (top + out_h) * sy)
    try:
        if scale < 0.5:
            # Shrinking a lot: first average fx x fy blocks (what ``reducing_gap=3`` does), with
            # the blocks aligned to the whole image's grid so the pixels match resize-then-crop.
            fx, fy = max(1, int(sx / 3.0)), max(1, int(sy / 3.0))
            if fx > 1 or fy > 1:
                margin_x, margin_y = sx + fx, sy + fy  # the bilinear support plus one block
                x0 = max(0, int(box[0] - margin_x) // fx * fx)
                y0 = max(0, int(box[1] - margin_y) // fy * fy)
                x1 = min(w, -(-int(box[2] + margin_x + 1) // fx) * fx)
                y1 = min(h, -(-int(box[3] + margin_y + 1) // fy) * fy)
                img = img.reduce((fx, fy), box=(x0, y0, x1, y1))
                box = ((box[0] - x0) / fx, (box[1] - y0) / fy, (box[2] - x0) / fx, (box[3] - y0) / fy)
        return img.resize((out_w, out_h), Image.Resampling.BILINEAR, box=box)
    except MemoryError:
        raise DataError(_("Not enough memory to resize a {w}x{h} image to {out_w}x{out_h}.").format(
            w=w, h=h, out_w=out_w, out_h=out_h)) from None


_GREY_MODES = ("L", "1", "I", "F", "I;16", "I;16L", "I;16B", "I;16N", "LA", "La")


def to_model_input(
    img: Image.Image,
    input_shape: tuple[int, int, int],
    mean: Sequence[float],
    std: Sequence[float],
    resize: str = "shorter_then_center_crop",
    eval_resize: float = 1.0,
) -> torch.Tensor:
    """A PIL image as a normalised ``1 x C x H x W`` float tensor for a model of ``input_shape``.

    The per-image side of :mod:`cnnlab.data.pipeline`: the geometry is done here on the PIL image
    (only the centre region is resized, see :func:`resize_shorter_then_center_crop`), then the
    channels are adapted and the image normalised by the pipeline's own rules (1 -> 3 repeats,
    RGB -> grey takes the luma as the trainer does). ``mean``/``std`` are the model-space
    statistics (one value per model channel, or one for all; anything else is refused, see
    :func:`cnnlab.data.pipeline.model_stats`). ``resize`` is ``"shorter_then_center_crop"``
    (keeps the aspect ratio) or ``"stretch"``; ``eval_resize`` > 1 first resizes to that many
    times the input size and cuts the centre (ImageNet weights: 256 then 224, ``256 / 224``).
    """
    channels, height, width = input_shape
    if channels not in (1, 3):
        raise ValueError(f"input_shape must have 1 or 3 channels, got {channels}")
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    if not eval_resize >= 1.0:
        raise ValueError(f"eval_resize must be at least 1, got {eval_resize}")
    m, s = (torch.tensor(v).view(1, channels, 1, 1) for v in model_stats(mean, std, channels))
    img = _normalise_mode(img, "L" if channels == 1 and img.mode in _GREY_MODES else "RGB")
    if resize == "stretch":
        if img.size != (width, height):
            img = img.resize((width, height), Image.Resampling.BILINEAR)
    elif eval_resize != 1.0:
        cover_h, cover_w = round(height * eval_resize), round(width * eval_resize)
        img = resize_shorter_then_center_crop(img, (cover_h, cover_w))
        top, left = (cover_h - height) // 2, (cover_w - width) // 2  # as the batch path's centre_crop
        img = img.crop((left, top, left + width, top + height))
    else:
        img = resize_shorter_then_center_crop(img, (height, width))
    depth = 1 if img.mode == "L" else 3
    arr = np.asarray(img, dtype=np.uint8).reshape(height, width, depth)
    x = torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0).unsqueeze(0)
    return (adapt_channels(x, channels) - m) / s
