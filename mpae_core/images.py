"""The one image loader for the whole project (GUI, batch CLI, training datasets).

Every image goes through :func:`load_image`, so every part of the program sees the
same pixels (EXIF orientation applied, RGB, alpha flattened the same way) and fails
with the same readable :class:`ImageLoadError` instead of a raw Pillow traceback.

Phone photos: HEIC/HEIF through pillow-heif (its opener is registered here, so the app,
the batch and training all read them), AVIF through Pillow's own plugin (Pillow 11.3+).
pillow-heif applies a HEIF's rotation itself and resets the EXIF orientation to 1, and
Pillow leaves an AVIF's EXIF orientation to us, so either way the pixels come out as a
viewer shows them, rotated once.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import MPAEError
from .output_markers import is_output_folder

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: Pillow's own hard limit (2 x Image.MAX_IMAGE_PIXELS): larger images are refused as bombs.
DEFAULT_MAX_PIXELS = 178_956_970
_EXIF_ORIENTATION = 0x0112
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "La", "RGBa"})


def _register_heif() -> bool:
    """Let Pillow open HEIC/HEIF files (iPhone photos) when pillow-heif is installed."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        logger.debug("pillow-heif is not installed: HEIC/HEIF photos are not listed")
        return False
    register_heif_opener()
    return True


HEIF_SUPPORTED = _register_heif()
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
    | {ext for ext in (".ppm", ".pgm", ".avif", ".heic", ".heif") if ext in Image.registered_extensions()}
)


class ImageLoadError(MPAEError):
    """A file that cannot be used as an image; the message is one sentence a user can act on."""

    def __init__(self, path: str | os.PathLike, reason: str, advice: str = "re-export or remove it") -> None:
        self.path, self.reason, self.advice = os.fspath(path), reason, advice
        super().__init__(f"Cannot read '{self.path}': {reason}; {advice}.")

    def __reduce__(self):  # keep it picklable (DataLoader workers send errors between processes)
        return type(self), (self.path, self.reason, self.advice)


def _text(exc: BaseException) -> str:
    """Pillow's message without its trailing period, so ours stays one sentence."""
    return str(exc).strip().rstrip(".") or type(exc).__name__


def _with_image(path: str | os.PathLike, use: Callable[[Image.Image], T]) -> T:
    """Open ``path``, run ``use`` on the Pillow image while the file is open, then close it.

    All file-system and Pillow failures become ImageLoadError with a specific reason;
    Pillow raises many exception types for malformed data, hence the broad except.
    """
    p = Path(path)
    if p.is_dir():
        raise ImageLoadError(p, "it is a folder, not an image file", "choose an image file inside it")
    try:
        f = open(p, "rb")
    except FileNotFoundError:
        raise ImageLoadError(p, "the file does not exist", "check the path") from None
    except PermissionError:
        raise ImageLoadError(p, "permission denied", "check the file's read permissions") from None
    except OSError as exc:
        raise ImageLoadError(p, f"the file cannot be opened ({exc.strerror or exc})", "check the path") from exc
    with f:
        if os.fstat(f.fileno()).st_size == 0:
            raise ImageLoadError(p, "the file is empty (0 bytes)")
        try:
            with Image.open(f) as im:
                return use(im)
        except ImageLoadError:
            raise
        except UnidentifiedImageError:
            raise ImageLoadError(p, "it is not an image in a format Pillow can read",
                                 "check that it really is an image or remove it") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageLoadError(p, f"it is too large to decode safely ({_text(exc)})",
                                 "downscale it or raise the pixel limit if you trust the file") from exc
        except EOFError as exc:
            raise ImageLoadError(p, f"the file is truncated ({_text(exc)})") from exc
        except Exception as exc:  # noqa: BLE001 - Pillow's decoders raise OSError, SyntaxError, ValueError, struct.error, ...
            kind = "the file is truncated" if "truncat" in str(exc).lower() else "the image data is corrupt"
            raise ImageLoadError(p, f"{kind} ({_text(exc)})") from exc


def _oriented(im: Image.Image) -> Image.Image:
    """A detached copy of ``im`` rotated as its EXIF Orientation says (what viewers display)."""
    try:
        return ImageOps.exif_transpose(im)
    except Exception as exc:  # noqa: BLE001 - broken EXIF should not make a good image unusable
        logger.warning("Ignoring unreadable EXIF orientation in %s: %s", getattr(im, "filename", "image"), exc)
        return im.copy()


def _high_depth_to_l(im: Image.Image) -> Image.Image:
    """Scale 16/32-bit integer or float grayscale to 8-bit by its bit depth instead of clipping.

    I;16* uses the full 16-bit range (65535 -> 255).  Mode "I" has no recorded depth: values
    within 0..65535 are taken as 16-bit (how Pillow loads 16-bit files), larger as 31-bit.
    Mode "F" is taken as 0..1 when its maximum is <= 1, otherwise divided by its maximum;
    negatives and NaN become 0.
    """
    a = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if im.mode == "F":
        peak = float(a.max(initial=0.0))
        a = a / peak if peak > 1.0 else a
    elif im.mode == "I" and a.max(initial=0) > 65535:
        a = a / (2**31 - 1)
    else:
        a = a / 65535.0
    return Image.fromarray(np.round(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8))


def _to_rgb(im: Image.Image, path: Path) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB.

    Transparent pixels are composited over WHITE, which is what image viewers and
    browsers show, so annotators see the same picture the user does (black would turn
    dark line art and logos on transparent backgrounds into black blobs).
    """
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        return _high_depth_to_l(im).convert("RGB")
    try:
        if im.mode in _ALPHA_MODES or "transparency" in im.info:
            rgba = (im.convert("LA") if im.mode == "La" else im).convert("RGBA")
            white = Image.new("RGBA", im.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, rgba).convert("RGB")
        return im if im.mode == "RGB" else im.convert("RGB")
    except ValueError as exc:
        raise ImageLoadError(path, f"its pixel mode {im.mode!r} is not supported ({exc})",
                             "convert it to RGB or grayscale") from exc


def load_image(path: str | os.PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Load ``path`` fully into memory as an 8-bit RGB image, EXIF orientation applied.

    Multi-frame files (GIF, TIFF) give their first frame.  Images with more than
    ``max_pixels`` pixels are refused from the header, before any pixel is decoded;
    ``max_pixels=None`` disables this check, though Pillow still refuses files over
    2 x ``Image.MAX_IMAGE_PIXELS`` (this module never changes that global).  Pillow's
    DecompressionBombWarning is left alone (``warnings.catch_warnings`` is not
    thread-safe); if a caller turns it into an error it becomes ImageLoadError too.
    Raises ImageLoadError for any file that cannot be used; no file handle stays open.
    """
    p = Path(path)
    return _to_rgb(_with_image(p, lambda im: _decode(im, p, max_pixels)), p)


def load_thumbnail(path: str | os.PathLike, size: int, *,
                   max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Like :func:`load_image`, at most ``size`` px on the longer side; JPEGs decode at a reduced scale (cheap)."""
    p = Path(path)
    thumb = _to_rgb(_with_image(p, lambda im: _decode(im, p, max_pixels, draft=(2 * size, 2 * size))), p)
    thumb.thumbnail((size, size))
    return thumb


def _decode(im: Image.Image, path: Path, max_pixels: int | None,
            draft: tuple[int, int] | None = None) -> Image.Image:
    """Refuse too many pixels from the header, decode now (so truncation surfaces here), apply EXIF orientation."""
    w, h = im.size
    if max_pixels is not None and w * h > max_pixels:
        raise ImageLoadError(path, f"it has {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,}",
                             "downscale it or pass a larger max_pixels if you trust the file")
    if draft is not None:
        im.draft("RGB", draft)  # JPEG only: decode at 1/2..1/8 scale; other formats ignore it
    im.load()
    return _oriented(im)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) as displayed (after EXIF orientation), from the header only."""

    def size(im: Image.Image) -> tuple[int, int]:
        w, h = im.size
        try:
            orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
        except Exception as exc:  # noqa: BLE001 - same tolerance as _oriented
            logger.warning("Ignoring unreadable EXIF orientation in %s: %s", path, exc)
            orientation = 1
        return (h, w) if orientation in (5, 6, 7, 8) else (w, h)

    return _with_image(path, size)


def _natural_key(rel: Path) -> tuple:
    """Sort key so 'img2' comes before 'img10' (compared per path component, case-insensitive)."""
    parts = tuple(
        tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", part.casefold()))
        for part in rel.parts
    )
    return parts, rel.as_posix()


def list_images(folder: str | os.PathLike, *, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (by extension, any case), naturally sorted.

    Hidden files and folders (name starting with '.') are skipped, so a project's
    ``.mpae/`` folder or macOS ``._x.jpg`` files are never listed, and so are subfolders
    that an export or a batch run wrote (:mod:`.output_markers`): masks are never photos.
    Symlinked folders are not followed when recursing (avoids cycles).
    """
    root = Path(folder)
    if not root.exists():
        raise FileNotFoundError(f"Image folder '{root}' does not exist; check the path.")
    if not root.is_dir():
        raise NotADirectoryError(f"'{root}' is a file, not a folder of images; choose its folder instead.")
    def on_error(exc: OSError) -> None:  # os.walk would otherwise hide an unreadable folder
        if Path(exc.filename) == root:
            raise exc
        logger.warning("Skipping unreadable folder %s: %s", exc.filename, exc.strerror)

    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error):
        dirnames[:] = [d for d in dirnames
                       if recursive and not d.startswith(".") and not is_output_folder(os.path.join(dirpath, d))]
        for name in filenames:
            full = Path(dirpath, name)
            if not name.startswith(".") and full.suffix.lower() in IMAGE_EXTENSIONS and full.is_file():
                found.append(full)
    return sorted(found, key=lambda f: _natural_key(f.relative_to(root)))


def load_preview(path: str | os.PathLike, box: tuple[int, int], *,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[Image.Image, tuple[int, int]]:
    """A quick screen-sized look at ``path`` and its full (width, height) as displayed.

    The image is what :func:`load_image` gives (EXIF orientation, RGB), scaled to fit ``box`` (width, height) and
    never enlarged. JPEGs decode at 1/2..1/8 scale first, several times faster than a full decode, which is what lets
    the app show a 12 MP photo at once and the full resolution a moment later.
    """
    p = Path(path)
    full = image_size(p)
    scale = min(box[0] / full[0], box[1] / full[1], 1.0)
    fit = (max(1, round(full[0] * scale)), max(1, round(full[1] * scale)))

    def decode(im: Image.Image) -> Image.Image:
        stored_fit = fit if im.size == full else (fit[1], fit[0])  # the file stores rotated pixels (EXIF 5-8)
        return _decode(im, p, max_pixels, draft=stored_fit)

    preview = _to_rgb(_with_image(p, decode), p)
    if preview.size != fit:
        preview = preview.resize(fit, Image.BILINEAR, reducing_gap=2.0)
    return preview, full
