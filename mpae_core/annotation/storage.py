"""Atomic file writes and the small binary formats of the annotation store.

Every file of a project or an export is written to a temporary file in the same folder and moved into place with
``os.replace``, so a crash or a full disk leaves either the old file or the new one, never half of one.
"""
from __future__ import annotations

import io
import json
import logging
import os
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np
from PIL import Image

from ..errors import MPAEError

logger = logging.getLogger(__name__)


def _process_umask() -> int:
    """The umask, read once at import (setting it to read it is not thread-safe later)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Mode of new files: what ``open()`` would give (0666 minus the umask), not mkstemp's private 0600, so exports and
#: project files can be read by the other tools and users they are made for.
NEW_FILE_MODE = 0o666 & ~_process_umask()


Commit = Callable[[str], None]


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None], *, fsync: bool = False,
                 commit: Commit | None = None) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then move it over ``path`` in one step.

    The file gets the permissions a plain ``open()`` would give (or keeps those of the file it replaces).
    ``commit(tmp)``, when given, moves the temporary file into place instead of ``os.replace`` (it may also drop it,
    e.g. when a newer version of the file was written meanwhile)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:  # an existing file keeps its mode; a new one gets the usual 0666 & ~umask
            mode = path.stat().st_mode & 0o7777
        except OSError:
            mode = NEW_FILE_MODE
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as f:
            write(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        if commit is None:
            os.replace(tmp, path)
        else:
            commit(tmp)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = False,
                       commit: Commit | None = None) -> Path:
    return atomic_write(path, lambda f: f.write(data), fsync=fsync, commit=commit)


def atomic_write_json(path: str | os.PathLike, obj: Any, *, fsync: bool = True, indent: int | None = 1,
                      commit: Commit | None = None) -> Path:
    """JSON (UTF-8, non-ASCII kept readable) written atomically; the project index is fsynced by default."""
    data = json.dumps(obj, ensure_ascii=False, indent=indent).encode("utf-8")
    return atomic_write_bytes(path, data, fsync=fsync, commit=commit)


def write_png(path: str | os.PathLike, image: Image.Image, *, compress_level: int = 1,
              commit: Commit | None = None) -> Path:
    """PNG written atomically; level 1 because label masks compress well even at the fastest level.

    8-bit maps use zlib's run-length strategy: on a 640x480 part mask it is ~20 % faster than the default and the
    file ~30 % smaller (label maps are long runs of one byte). Other modes keep the default, which also finds the
    2-byte repeats of 16-bit layers."""
    strategy = zlib.Z_RLE if image.mode in ("P", "L") else zlib.Z_DEFAULT_STRATEGY
    return atomic_write(path, lambda f: image.save(f, format="PNG", compress_level=compress_level,
                                                   compress_type=strategy), commit=commit)


def write_uint16_png(path: str | os.PathLike, array: np.ndarray, *, commit: Commit | None = None) -> Path:
    """A [H, W] uint16 array as a 16-bit grayscale PNG (the edit layer on disk)."""
    if array.dtype != np.uint16 or array.ndim != 2:
        raise ValueError(f"Expected a 2-D uint16 array for '{path}', got {array.dtype} {array.shape}.")
    return write_png(path, Image.fromarray(array), commit=commit)


def read_uint16_png(path: str | os.PathLike) -> np.ndarray:
    """Read back a 16-bit PNG written by :func:`write_uint16_png`; damaged files raise MPAEError."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("I;16", "I"):
                raise ValueError(f"it is a {im.mode} image, not a 16-bit label layer")
            array = np.asarray(im)
    except (OSError, ValueError, SyntaxError) as exc:
        raise MPAEError(f"Cannot read the edit layer '{path}': {exc}; delete it to drop that image's edits.") from exc
    if array.min(initial=0) < 0 or array.max(initial=0) > 65535:
        raise MPAEError(f"Cannot read the edit layer '{path}': values outside 0..65535; delete it to drop that "
                        "image's edits.")
    return array.astype(np.uint16, copy=False)


def write_npz(path: str | os.PathLike, *, compressed: bool = True, **arrays: np.ndarray) -> Path:
    """Arrays as an .npz file; ``compressed=False`` for data zlib cannot shrink (float32 logits), which only costs
    time to try."""
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return atomic_write_bytes(path, buffer.getvalue())


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All arrays of an .npz file (no pickles: a project folder from elsewhere cannot run code)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise MPAEError(f"Cannot read the prediction file '{path}': {exc}; predict that image again.") from exc


class StreamedTextFile:
    """A UTF-8 text file written piece by piece into a temporary file beside ``path`` and moved into place by
    :meth:`close`, so readers never see half of it; :meth:`abort` drops it and leaves ``path`` as it was."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        self._file = os.fdopen(fd, "w", encoding="utf-8", newline="\n")

    def write(self, text: str) -> None:
        self._file.write(text)

    def close(self) -> Path:
        self._file.close()
        try:
            os.replace(self._tmp, self.path)
        except BaseException:
            Path(self._tmp).unlink(missing_ok=True)
            raise
        return self.path

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        Path(self._tmp).unlink(missing_ok=True)
