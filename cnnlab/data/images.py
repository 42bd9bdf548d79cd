"""Safe image decoding: the one place where cnnlab turns bytes into a PIL image.

Datasets, the app's uploads, the Gradio demo and the command line all call
:func:`decode_image`. It accepts anything a person may hand over (EXIF-rotated phone photos,
palette GIFs, transparent PNGs, CMYK JPEGs, 16-bit scans, 1-bit drawings) and returns a plain
``"RGB"`` or ``"L"`` image; anything it cannot decode ends in a :class:`~cnnlab.errors.DataError`
whose message says what was wrong, never in a PIL exception, warning or traceback.

PIL's global ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left alone: a truncated file is an error.
"""

from __future__ import annotations

import io
import re
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DataError

ImageSource = Union[bytes, bytearray, str, Path, BinaryIO]

MAX_PIXELS = 40_000_000
MAX_BYTES = 50 * 2**20
READABLE_FORMATS = "PNG, JPEG, BMP, GIF, TIFF, WebP"
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
    return "the uploaded file"


def _megapixels(pixels: float) -> str:
    return f"{pixels / 1e6:.3g}"


def _read_bytes(source: ImageSource, what: str, max_bytes: int) -> bytes:
    """All the bytes of ``source``, refusing missing, empty and oversized files."""
    limit = f"the limit is {max_bytes / 2**20:.3g} MB"
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise DataError(f"{what} does not exist or is not a file.")
        size = path.stat().st_size
        if size > max_bytes:
            raise DataError(f"{what} is too large ({size / 2**20:.3g} MB); {limit}.")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DataError(f"{what} cannot be read: {exc.strerror or exc}.") from None
    elif hasattr(source, "read"):
        try:
            data = source.read(max_bytes + 1)
        except (OSError, ValueError) as exc:
            raise DataError(f"{what} cannot be read: {exc}.") from None
        if isinstance(data, str):
            raise DataError(f"{what} was opened in text mode; open it with 'rb'.")
    else:
        raise DataError(f"Cannot decode an image from a {type(source).__name__}; give bytes, a path or a binary file.")
    if len(data) == 0:
        raise DataError(f"{what} is empty (0 bytes): it is not an image.")
    if len(data) > max_bytes:
        raise DataError(f"{what} is too large (more than {max_bytes / 2**20:.3g} MB); {limit}.")
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
    draft: tuple[int, int] | None = None,
) -> Image.Image:
    """Decode an image file safely into a fully loaded PIL image of mode ``mode``.

    Args:
        source: raw bytes, a path, or a binary file object (e.g. a Streamlit upload).
        mode: ``"RGB"`` or ``"L"``.
        max_pixels: refuse images with more pixels than this (decompression bombs).
        max_bytes: refuse files larger than this.
        draft: optional ``(width, height)``; lets JPEG decode at a reduced scale that is
            still at least this large (much faster when the caller shrinks the image anyway).

    Returns:
        A new ``PIL.Image.Image`` with EXIF orientation applied, transparency composited
        onto white, palette/CMYK/1-bit/16-bit converted properly.

    Raises:
        DataError: the source is missing, empty, too large, not an image, truncated or corrupt.
    """
    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' or 'L', got {mode!r}")
    what = _describe(source)
    data = _read_bytes(source, what, max_bytes)
    with _pil_warnings_silenced():
        try:
            img = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise DataError(f"{what} is not an image PIL can read ({READABLE_FORMATS}).") from None
        except Image.DecompressionBombError as exc:
            found = re.search(r"\((\d+) pixels\)", str(exc))
            size = f"has {_megapixels(int(found.group(1)))} megapixels" if found else "is far too large"
            raise DataError(
                f"{what} {size}, the limit is {_megapixels(max_pixels)} (decompression-bomb protection)."
            ) from None
        except Exception as exc:  # noqa: BLE001 - any plugin error means "cannot read"
            raise DataError(f"{what} is not an image PIL can read ({READABLE_FORMATS}): {exc}.") from None
        with img:
            width, height = img.size
            if width * height > max_pixels:
                raise DataError(
                    f"{what} has {_megapixels(width * height)} megapixels ({width}x{height}), "
                    f"the limit is {_megapixels(max_pixels)}. Resize it before uploading."
                )
            if width == 0 or height == 0:
                raise DataError(f"{what} has no pixels ({width}x{height}).")
            try:
                if draft is not None and img.format == "JPEG":
                    img.draft("RGB" if mode == "RGB" and img.mode != "CMYK" else img.mode, draft)
                img.load()
            except Exception as exc:  # noqa: BLE001
                message = str(exc)
                if "truncated" in message or isinstance(exc, EOFError):
                    raise DataError(
                        f"{what} is truncated (the file ends before the image data does); "
                        "download or export it again."
                    ) from None
                raise DataError(f"{what} is corrupt and cannot be decoded ({img.format} file): {message}.") from None
            try:
                out = _normalise_mode(_exif_transpose(img), mode)
            except Exception as exc:  # noqa: BLE001
                raise DataError(f"{what} uses an image mode cnnlab cannot convert ({img.mode}): {exc}.") from None
            if out is img:
                out = img.copy()
    return out


def _skimage_data_dir() -> Path | None:
    try:
        import skimage
    except ImportError:
        return None
    return Path(skimage.__file__).resolve().parent / "data"


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
        hint = f"choose one of {', '.join(available)}" if available else "install scikit-image (pip install scikit-image)"
        raise DataError(f"No bundled photo named {name!r}; {hint}.")
    path = _skimage_data_dir() / _BUNDLED_PHOTOS[name]  # type: ignore[operator]
    with _pil_warnings_silenced(), Image.open(path) as probe:
        gray = probe.mode in ("L", "1", "I;16", "I", "F", "LA")
    return decode_image(path, mode="L" if gray else "RGB")


def resize_shorter_then_center_crop(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale so the image covers ``size`` = (height, width), then cut the centre (torchvision's Resize+CenterCrop)."""
    out_h, out_w = size
    w, h = img.size
    scale = max(out_w / w, out_h / h)
    new_w, new_h = max(out_w, round(w * scale)), max(out_h, round(h * scale))
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=3.0 if scale < 0.5 else None)
    left, top = (new_w - out_w) // 2, (new_h - out_h) // 2
    return img.crop((left, top, left + out_w, top + out_h))


def to_model_input(
    img: Image.Image,
    input_shape: tuple[int, int, int],
    mean: Sequence[float],
    std: Sequence[float],
    resize: str = "shorter_then_center_crop",
) -> torch.Tensor:
    """A PIL image as a normalised ``1 x C x H x W`` float tensor for a model of ``input_shape``.

    Channels are converted as needed (RGB to L, L to RGB); ``resize`` is
    ``"shorter_then_center_crop"`` (keeps the aspect ratio) or ``"stretch"``.
    """
    channels, height, width = input_shape
    if channels not in (1, 3):
        raise ValueError(f"input_shape must have 1 or 3 channels, got {channels}")
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    img = _normalise_mode(img, "L" if channels == 1 else "RGB")
    if resize == "stretch":
        if img.size != (width, height):
            img = img.resize((width, height), Image.Resampling.BILINEAR)
    else:
        img = resize_shorter_then_center_crop(img, (height, width))
    arr = np.asarray(img, dtype=np.uint8).reshape(height, width, channels)
    x = torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)
    m = _per_channel(mean, channels, "mean")
    s = _per_channel(std, channels, "std")
    return ((x - m) / s).unsqueeze(0)


def _per_channel(values: Sequence[float], channels: int, what: str) -> torch.Tensor:
    vals = [float(v) for v in values]
    if len(vals) == 1:
        vals = vals * channels
    elif len(vals) != channels:
        vals = [sum(vals) / len(vals)] * channels  # RGB statistics for a grayscale model, or vice versa
    t = torch.tensor(vals).view(channels, 1, 1)
    if what == "std" and bool((t <= 0).any()):
        raise ValueError(f"std must be positive, got {values}")
    return t
