"""Reading tensors from weight files without ever unpickling code.

``.safetensors`` is read with safetensors; anything else goes through ``torch.load(weights_only=True)``, which
refuses pickled objects other than tensors and plain containers. A file that is plainly something else (a photo, a
text, a zip of other things) is named as such first, so choosing the wrong file says "not a checkpoint" instead of
a library's complaint about its bytes.
"""
from __future__ import annotations

import os
import pickle
import struct
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .errors import CheckpointError, brief_error


def read_state_dict(
    path: str | os.PathLike, *, what: str = "checkpoint", error: type[Exception] = CheckpointError
) -> dict[str, torch.Tensor]:
    """All tensors of a weight file, on the CPU; ``error`` with one clear sentence when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise error(f"Cannot open {what} '{path}': no such file; check the path.")
    kind = not_a_weights_file(path)
    if kind is not None:
        noun, advice = (("a checkpoint", "choose a .safetensors or .pth file made by MPAE or this app")
                        if what == "checkpoint" else
                        (f"a file of {what}", f"choose the {what} file (.safetensors, .pth or .bin)"))
        raise error(f"'{path}' is not {noun} (it is {kind}); {advice}.")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise error(
                f"Cannot read {what} '{path}': the safetensors file is truncated or corrupt ({brief_error(exc)}); "
                "download or export it again."
            ) from exc
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower():
            raise error(
                f"Cannot read {what} '{path}': it contains Python objects other than tensors, which are refused "
                "for safety; re-save it as a plain state_dict."
            ) from exc
        raise error(f"Cannot read {what} '{path}': the file is corrupt ({brief_error(exc)}); "
                    "download it again.") from exc
    except Exception as exc:  # torch.load raises many types for bytes that are not a checkpoint
        raise error(
            f"Cannot read {what} '{path}': the file is truncated or not a PyTorch/safetensors checkpoint "
            f"({brief_error(exc)}); download it again."
        ) from exc
    for key in ("state_dict", "model"):  # common wrappers around a state_dict
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise error(f"Cannot read {what} '{path}': it does not hold a state_dict of tensors.")
    return state


# ----- what a file is, when it is not weights -------------------------------------------------------------------
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
)
_ISO_MEDIA = {b"heic": "a HEIC image", b"heix": "a HEIC image", b"mif1": "a HEIF image", b"avif": "an AVIF image",
              b"isom": "an MP4 video", b"mp41": "an MP4 video", b"mp42": "an MP4 video", b"qt  ": "a QuickTime video"}
SNIFF_BYTES = 4096
SAFETENSORS_MAX_HEADER = 100_000_000  # the safetensors library's own limit


def not_a_weights_file(path: str | os.PathLike) -> str | None:
    """What ``path`` is when it plainly cannot hold weights ("a JPEG image", "a text file", ...), else None.

    None for everything a checkpoint can start with: a safetensors header, a zip holding a PyTorch archive (also
    a truncated one, told by its first entry's name) and a pickle (legacy ``torch.save``), so damaged checkpoints
    keep their precise "truncated" messages.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(SNIFF_BYTES)
    except OSError:
        return None  # the reader that follows reports unreadable files
    if not head:
        return "an empty file (0 bytes)"
    if len(head) >= 9 and head[8:9] == b"{" and 2 <= struct.unpack("<Q", head[:8])[0] <= SAFETENSORS_MAX_HEADER:
        return None  # a safetensors header (a truncated file included)
    if head.startswith(b"PK\x03\x04"):
        return None if _is_torch_zip(path, head) else "a ZIP archive that holds no PyTorch checkpoint"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return None  # a pickle: torch.load(weights_only=True) decides
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "a WebP image"
    if head[4:8] == b"ftyp":
        return _ISO_MEDIA.get(head[8:12], "an ISO media file (image or video)")
    if head.startswith(b"BM") and len(head) >= 14 and struct.unpack("<I", head[2:6])[0] == path.stat().st_size:
        return "a BMP image"
    if b"\x00" not in head:
        try:
            head.decode("utf-8")
            return "a text file"
        except UnicodeDecodeError as exc:
            if exc.start >= len(head) - 3:  # a character cut by the sniffing window
                return "a text file"
    return "neither a safetensors nor a PyTorch file"


def _is_torch_zip(path: Path, head: bytes) -> bool:
    """A PyTorch archive (``<name>/data.pkl`` inside), also when truncated: then its first entry tells."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("data.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        if len(head) < 30:
            return False
        name_length = struct.unpack("<H", head[26:28])[0]
        return head[30 : 30 + name_length].endswith(b"data.pkl")
