"""The sorted image list of a run, without masks written by earlier runs."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..images import list_images
from .config import BatchUsageError


# ----- the image list -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageItem:
    """One listed image; ``relpath`` (POSIX) names it in the report, the COCO file and the mask path."""

    index: int  # position in the full sorted list (all ranks)
    relpath: str
    path: str


def collect_images(images: Path, out: Path, recursive: bool) -> list[ImageItem]:
    """The sorted image list, without anything under OUT (when OUT lies inside IMAGES); earlier batch outputs and
    exports elsewhere under IMAGES are skipped by ``list_images`` itself: masks are never annotated as images."""
    try:
        found = list_images(images, recursive=recursive)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise BatchUsageError(str(exc)) from None
    except OSError as exc:
        raise BatchUsageError(f"Cannot list the image folder '{images}': {exc.strerror or exc}.") from None
    out_dir = out.resolve()
    kept = [p for p in found if not p.resolve().is_relative_to(out_dir)]
    if not kept:
        hint = "" if recursive else " (add --recursive to include subfolders)"
        raise BatchUsageError(f"No images found in '{images}'{hint}.")
    return [ImageItem(i, p.relative_to(images).as_posix(), str(p)) for i, p in enumerate(kept)]
