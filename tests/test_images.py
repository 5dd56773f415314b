"""Tests for mpae_core.images: every image is built in tmp_path, nothing is downloaded."""
from __future__ import annotations

import gc
import os
import pickle
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mpae_core import images
from mpae_core.errors import MPAEError
from mpae_core.images import (
    DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, ImageLoadError, image_size, list_images, load_image,
)

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def _row(im: Image.Image) -> list:
    """Pixels of the first row (Image.getdata is deprecated in Pillow 13)."""
    return [im.getpixel((x, 0)) for x in range(im.width)]


def _close(actual, expected, tol: int = 0) -> bool:
    return all(abs(int(a) - int(e)) <= tol for a, e in zip(actual, expected, strict=True))


def _noise(w: int = 256, h: int = 192) -> Image.Image:
    """Incompressible pixels, so a file cut in half really lacks image data."""
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _saved(tmp_path: Path, name: str, im: Image.Image, expect_mode: str | None = None, **kw) -> Path:
    """Save ``im`` and check Pillow reopens it in ``expect_mode`` (so the test covers that mode)."""
    path = tmp_path / name
    im.save(path, **kw)
    if expect_mode is not None:
        with Image.open(path) as check:
            assert check.mode == expect_mode, f"fixture opened as {check.mode}, not {expect_mode}"
    return path


def _png16_rgb(path: Path, pixels: np.ndarray) -> Path:
    """Write a 16-bit-per-channel RGB PNG by hand (Pillow cannot create one)."""
    h, w, _ = pixels.shape
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))
    return path


def _exif_jpeg(tmp_path: Path, orientation: int) -> Path:
    """40x20 stored image: blue, with a red 10x10 block in the stored top-left corner."""
    im = Image.new("RGB", (40, 20), BLUE)
    im.paste(RED, (0, 0, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _saved(tmp_path, f"o{orientation}.jpg", im, quality=95, exif=exif.tobytes())


# --- EXIF orientation ---------------------------------------------------------------------

@pytest.mark.parametrize("orientation, red_at", [(6, (17, 2)), (8, (2, 37))])  # top-right / bottom-left
def test_exif_orientation_rotates_pixels(tmp_path, orientation, red_at):
    im = load_image(_exif_jpeg(tmp_path, orientation))
    assert im.size == (20, 40)
    for corner in [(2, 2), (17, 2), (2, 37), (17, 37)]:
        assert _close(im.getpixel(corner), RED if corner == red_at else BLUE, 40), corner


def _phone_photo(tmp_path: Path, fmt: str, orientation: int) -> Path:
    """The 40x20 red-corner picture as a HEIC or AVIF with an EXIF orientation, or a skip naming what is missing."""
    if fmt == "HEIF":
        if not images.HEIF_SUPPORTED:
            pytest.skip("pillow-heif is not installed, so HEIC photos are not supported here")
        import pillow_heif

        if not pillow_heif.libheif_info().get("HEIF"):
            pytest.skip("this pillow-heif has no HEVC encoder to write a test HEIC")
    elif ".avif" not in Image.registered_extensions():
        pytest.skip("this Pillow was built without AVIF support")
    im = Image.new("RGB", (40, 20), BLUE)
    im.paste(RED, (0, 0, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = orientation
    suffix = ".heic" if fmt == "HEIF" else ".avif"
    try:
        return _saved(tmp_path, f"phone{orientation}{suffix}", im, format=fmt, quality=95, exif=exif.tobytes())
    except (OSError, KeyError) as exc:
        pytest.skip(f"no {fmt} encoder available here ({exc})")


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
@pytest.mark.parametrize("orientation, red_at", [(6, (17, 2)), (8, (2, 37))])
def test_phone_photos_load_rotated_as_shown(tmp_path, fmt, orientation, red_at):
    path = _phone_photo(tmp_path, fmt, orientation)
    assert image_size(path) == (20, 40)
    im = load_image(path)
    assert im.mode == "RGB" and im.size == (20, 40)
    for corner in [(2, 2), (17, 2), (2, 37), (17, 37)]:
        assert _close(im.getpixel(corner), RED if corner == red_at else BLUE, 40), corner
    assert list_images(tmp_path) == [path]


@pytest.mark.parametrize("orientation, expected", [(1, (40, 20)), (6, (20, 40)), (8, (20, 40))])
def test_image_size_applies_exif(tmp_path, orientation, expected):
    assert image_size(_exif_jpeg(tmp_path, orientation)) == expected


def test_image_size_reads_only_the_header(tmp_path):
    path = _saved(tmp_path, "big.jpg", _noise())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert image_size(path) == (256, 192)  # would fail if pixels were decoded
    with pytest.raises(ImageLoadError):
        load_image(path)


# --- pixel modes -> RGB -------------------------------------------------------------------

def test_mode_1_and_L(tmp_path):
    bw = Image.new("1", (2, 1))
    bw.putpixel((1, 0), 1)
    assert _row(load_image(_saved(tmp_path, "b.png", bw, "1"))) == [(0, 0, 0), WHITE]
    gray = _saved(tmp_path, "g.png", Image.new("L", (2, 2), 77), "L")
    out = load_image(gray)
    assert (out.mode, out.getpixel((1, 1))) == ("RGB", (77, 77, 77))


def test_rgba_and_la_are_composited_over_white(tmp_path):
    rgba = Image.new("RGBA", (3, 1))
    rgba.putdata([(255, 0, 0, 0), (255, 0, 0, 255), (0, 0, 255, 128)])
    out = _row(load_image(_saved(tmp_path, "a.png", rgba, "RGBA")))
    assert out[0] == WHITE and out[1] == RED and _close(out[2], (127, 127, 255), 1)
    la = Image.new("LA", (3, 1))
    la.putdata([(100, 0), (100, 255), (0, 128)])
    out = _row(load_image(_saved(tmp_path, "la.png", la, "LA")))
    assert out[0] == WHITE and out[1] == (100, 100, 100) and _close(out[2], (127, 127, 127), 1)


def test_palette_with_and_without_transparency(tmp_path):
    pal = Image.new("P", (2, 1))
    pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    pal.putdata([0, 1])
    assert _row(load_image(_saved(tmp_path, "p.png", pal, "P"))) == [RED, (0, 255, 0)]
    path = _saved(tmp_path, "pt.png", pal, "P", transparency=1)
    assert _row(load_image(path)) == [RED, WHITE]  # transparent green -> white


def test_cmyk_jpeg(tmp_path):
    cmyk = Image.new("CMYK", (16, 8), (0, 0, 0, 0))
    cmyk.paste((0, 255, 255, 0), (8, 0, 16, 8))
    out = load_image(_saved(tmp_path, "c.jpg", cmyk, "CMYK", quality=95))
    assert out.mode == "RGB"
    assert _close(out.getpixel((2, 4)), WHITE, 8) and _close(out.getpixel((13, 4)), RED, 8)


@pytest.mark.parametrize("mode, fmt", [("I;16", "png"), ("I;16B", "tif")])
def test_16bit_gray_is_scaled_not_clipped(tmp_path, mode, fmt):
    raw = np.array([0, 257, 32768, 65535], dtype=">u2" if mode == "I;16B" else "<u2").tobytes()
    im = Image.frombytes(mode, (4, 1), raw)  # Image.convert("I;16B") would clip to 255
    out = load_image(_saved(tmp_path, f"g16.{fmt}", im, mode))
    values = [p[0] for p in _row(out)]
    assert values[0] == 0 and values[1] == 1 and abs(values[2] - 128) <= 1 and values[3] == 255


def test_16bit_pgm_opens_as_mode_I_and_is_scaled(tmp_path):
    path = tmp_path / "g16.pgm"
    path.write_bytes(b"P5\n3 1\n65535\n" + np.array([0, 32768, 65535], ">u2").tobytes())
    with Image.open(path) as check:
        assert check.mode in ("I", "I;16", "I;16B")
    assert [p[0] for p in _row(load_image(path))] == [0, 128, 255]


def test_32bit_int_uses_full_range(tmp_path):
    im = Image.fromarray(np.array([[0, 65535, 2**30, 2**31 - 1]], dtype=np.int32))
    values = [p[0] for p in _row(load_image(_saved(tmp_path, "i32.tif", im, "I")))]
    assert values == [0, 0, 128, 255]


@pytest.mark.parametrize("data, expected", [([0.0, 0.5, 1.0, -3.0], [0, 128, 255, 0]),
                                            ([0.0, 50.0, 100.0, float("nan")], [0, 128, 255, 0])])
def test_float_images(tmp_path, data, expected):
    im = Image.fromarray(np.array([data], dtype=np.float32))
    assert [p[0] for p in _row(load_image(_saved(tmp_path, "f.tif", im, "F")))] == expected


def test_16bit_rgb_png(tmp_path):
    path = _png16_rgb(tmp_path / "rgb16.png", np.array([[[65535, 0, 32768], [0, 65535, 0]]]))
    out = load_image(path)
    assert out.mode == "RGB" and _close(out.getpixel((0, 0)), (255, 0, 128), 1)
    assert _close(out.getpixel((1, 0)), (0, 255, 0), 1)


def test_ycbcr_and_lab_tiff(tmp_path):
    ycc = Image.new("RGB", (2, 1))
    ycc.putdata([RED, BLUE])
    out = load_image(_saved(tmp_path, "y.tif", ycc.convert("YCbCr"), "YCbCr"))
    assert _close(out.getpixel((0, 0)), RED, 3) and _close(out.getpixel((1, 0)), BLUE, 3)
    lab = Image.new("LAB", (1, 1), (136, 208, 195))  # CIE L*53 a*80 b*67 = sRGB red
    assert _close(load_image(_saved(tmp_path, "l.tif", lab, "LAB")).getpixel((0, 0)), RED, 12)


@pytest.mark.parametrize("mode, value, expected", [
    ("HSV", (0, 255, 255), RED),
    ("La", (100, 128), (227, 227, 227)),  # premultiplied: L=199 at alpha 0.5 over white
    ("RGBa", (100, 0, 0, 128), (227, 127, 127)),
])
def test_in_memory_only_modes(tmp_path, mode, value, expected):  # no file format stores these
    out = images._to_rgb(Image.new(mode, (1, 1), value), tmp_path / "x")
    assert out.mode == "RGB" and _close(out.getpixel((0, 0)), expected, 2)


# --- multi-frame, unicode, handles --------------------------------------------------------

@pytest.mark.parametrize("ext", ["gif", "tif"])
def test_multiframe_uses_first_frame(tmp_path, ext):
    frames = [Image.new("RGB", (8, 8), c) for c in (RED, (0, 255, 0), BLUE)]
    path = tmp_path / f"anim.{ext}"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with Image.open(path) as check:
        assert check.n_frames == 3
    assert _close(load_image(path).getpixel((4, 4)), RED, 2)


def test_unicode_path(tmp_path):
    folder = tmp_path / "ñandú"
    folder.mkdir()
    path = _saved(folder, "鳥 ü.png", Image.new("RGB", (5, 3), RED))
    assert load_image(path).getpixel((0, 0)) == RED
    assert image_size(str(path)) == (5, 3)
    assert list_images(folder) == [path]


def _open_fds_on(path: Path) -> int:
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if os.path.realpath(fd) == str(path.resolve()))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to count open files")
def test_no_file_handles_left_open(tmp_path):
    good = _saved(tmp_path, "good.gif", Image.new("P", (4, 4)), save_all=True,
                  append_images=[Image.new("P", (4, 4), 1)])
    bad = _saved(tmp_path, "bad.png", _noise())
    bad.write_bytes(bad.read_bytes()[:2000])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        load_image(good)
        image_size(good)
        gc.collect()  # an unclosed file would warn when collected
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    with pytest.raises(ImageLoadError) as info:
        load_image(bad)
    assert info.value.__traceback__ is not None  # traceback keeps the loader's frame alive...
    assert _open_fds_on(good) == 0 and _open_fds_on(bad) == 0  # ...but its file is closed


# --- failures -----------------------------------------------------------------------------

def _error(path) -> ImageLoadError:
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    err = info.value
    assert Path(path).name in str(err) and err.path == os.fspath(path)
    assert str(err).startswith("Cannot read") and str(err).count(". ") == 0 and str(err).endswith(".")
    return err


@pytest.mark.parametrize("fmt", ["jpg", "png"])
def test_truncated_files(tmp_path, fmt):
    path = _saved(tmp_path, f"cut.{fmt}", _noise())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    reason = _error(path).reason
    assert "truncated" in reason and "corrupt" not in reason


def test_distinct_reasons_for_each_failure(tmp_path):
    (tmp_path / "text.jpg").write_text("hello, I am not a JPEG\n" * 20)
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "folder.png").mkdir()
    garbled = bytearray(_saved(tmp_path, "garbled.png", _noise()).read_bytes())
    for i in range(100, len(garbled) - 100, 7):
        garbled[i] ^= 0x5A
    (tmp_path / "garbled.png").write_bytes(bytes(garbled))
    cut = _saved(tmp_path, "cut.png", _noise())
    cut.write_bytes(cut.read_bytes()[:3000])
    expected = {"text.jpg": "not an image", "empty.png": "empty", "missing.png": "does not exist",
                "folder.png": "folder", "garbled.png": "corrupt", "cut.png": "truncated"}
    reasons = {name: _error(tmp_path / name).reason for name in expected}
    for name, word in expected.items():
        assert word in reasons[name], (name, reasons[name])
    assert len(set(reasons.values())) == len(reasons)


def test_permission_denied(tmp_path, monkeypatch):
    path = _saved(tmp_path, "locked.png", Image.new("RGB", (2, 2)))
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):  # root ignores file modes: simulate the OS refusing instead
            def refuse(*args, **kwargs):
                raise PermissionError(13, "Permission denied", str(path))
            monkeypatch.setattr(images, "open", refuse, raising=False)
        assert "permission" in _error(path).reason
    finally:
        path.chmod(0o644)


def test_error_is_user_facing_and_picklable(tmp_path):
    err = _error(tmp_path / "nope.jpg")
    assert isinstance(err, MPAEError)  # the app shows every MPAEError message to the user as is
    copy = pickle.loads(pickle.dumps(err))
    assert (str(copy), copy.path, copy.reason) == (str(err), err.path, err.reason)


# --- decompression bombs ------------------------------------------------------------------

def test_max_pixels_limit(tmp_path):
    path = _saved(tmp_path, "ten.png", Image.new("RGB", (10, 10)))
    assert DEFAULT_MAX_PIXELS == 178_956_970
    with pytest.raises(ImageLoadError, match="ten.png") as info:
        load_image(path, max_pixels=99)
    assert "pixels" in info.value.reason
    assert load_image(path, max_pixels=100).size == (10, 10)
    assert load_image(path, max_pixels=None).size == (10, 10)


def test_bomb_refused_before_decoding(tmp_path):
    path = _saved(tmp_path, "bomb.png", _noise())
    path.write_bytes(path.read_bytes()[:3000])  # decoding would report truncation instead
    with pytest.raises(ImageLoadError) as info:
        load_image(path, max_pixels=1000)
    assert "limit" in info.value.reason


def test_pillow_bomb_error_and_warning_are_converted(tmp_path, monkeypatch):
    path = _saved(tmp_path, "ten.png", Image.new("RGB", (10, 10)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40)  # 100 px > 2 x 40: Pillow raises
    with pytest.raises(ImageLoadError, match="too large"):
        load_image(path, max_pixels=None)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 60)  # 60 < 100 px < 120: Pillow warns
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(ImageLoadError, match="too large"):
            load_image(path, max_pixels=None)
    assert Image.MAX_IMAGE_PIXELS == 60  # the loader never changes the global


# --- listing ------------------------------------------------------------------------------

@pytest.fixture()
def tree(tmp_path) -> Path:
    for rel in ["img10.png", "img2.PNG", "img1.jpg", "notes.txt", ".hidden.png", "sub/a.jpeg",
                ".mpae/x.png", "sub/.secret/y.png", "sub2/IMG3.TIF", "sub2/scan.Pgm"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "looks_like.png").mkdir()
    try:
        (tmp_path / "dangling.png").symlink_to(tmp_path / "gone.png")
    except OSError:  # symlinks need privileges on Windows
        pass
    return tmp_path


def test_list_images_flat_natural_order(tree):
    assert [p.name for p in list_images(tree)] == ["img1.jpg", "img2.PNG", "img10.png"]


def test_list_images_recursive_skips_hidden(tree):
    got = [p.relative_to(tree).as_posix() for p in list_images(str(tree), recursive=True)]
    assert got == ["img1.jpg", "img2.PNG", "img10.png", "sub/a.jpeg", "sub2/IMG3.TIF", "sub2/scan.Pgm"]
    assert all(p.is_absolute() == tree.is_absolute() for p in list_images(tree))


def test_list_images_skips_exports_and_batch_outputs_wherever_they_are(tree):
    for rel in ["export/masks/img1.png", "export/.mpae-export.json", "sub/deep/labels/masks/a.png",
                "sub/deep/labels/.mpae-export.json", "runs/out/masks/b.png", "sub/deep/c.jpg"]:
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(b"x")
    (tree / "runs" / "out" / ".mpae-batch").mkdir()
    got = [p.relative_to(tree).as_posix() for p in list_images(tree, recursive=True)]
    assert got == ["img1.jpg", "img2.PNG", "img10.png", "sub/a.jpeg", "sub/deep/c.jpg", "sub2/IMG3.TIF",
                   "sub2/scan.Pgm"]
    assert [p.name for p in list_images(tree / "export")] == []  # the folder itself, opened directly, is listed
    assert [p.name for p in list_images(tree / "export" / "masks")] == ["img1.png"]


def test_list_images_bad_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list_images(tmp_path / "nowhere")
    (tmp_path / "f.png").write_bytes(b"x")
    with pytest.raises(NotADirectoryError, match="f.png"):
        list_images(tmp_path / "f.png")


def test_image_extensions():
    assert {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm"} <= IMAGE_EXTENSIONS
    assert images.HEIF_SUPPORTED == (".heic" in IMAGE_EXTENSIONS)
    assert (".avif" in Image.registered_extensions()) == (".avif" in IMAGE_EXTENSIONS)
    assert all(e.startswith(".") and e == e.lower() for e in IMAGE_EXTENSIONS)


def test_thumbnail_is_bounded_oriented_rgb_and_reports_bad_files(tmp_path):
    thumb = images.load_thumbnail(_exif_jpeg(tmp_path, 6), 10)
    assert thumb.mode == "RGB" and thumb.size == (5, 10)  # 40x20 stored, rotated to 20x40, then bounded by 10
    cmyk = _saved(tmp_path, "cmyk.jpg", Image.new("CMYK", (64, 32), (0, 255, 255, 0)))
    assert images.load_thumbnail(cmyk, 16).size == (16, 8)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ImageLoadError):
        images.load_thumbnail(broken, 16)
