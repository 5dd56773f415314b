"""The sorted image list of a run, without masks written by earlier runs."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..images import list_images
from .config import CACHE_DIR, BatchUsageError


# ----- the image list -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageItem:
    """One listed image; ``relpath`` (POSIX) names it in the report, the COCO file and the mask path."""

    index: int  # position in the full sorted list (all ranks)
    relpath: str
    path: str


def collect_images(images: Path, out: Path, recursive: bool) -> list[ImageItem]:
    """The sorted image list, without anything under OUT (when OUT lies inside IMAGES) or under an earlier batch
    output (a folder holding ``.mpae-batch/``): masks are never annotated as images."""
    try:
        found = list_images(images, recursive=recursive)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise BatchUsageError(str(exc)) from None
    except OSError as exc:
        raise BatchUsageError(f"Cannot list the image folder '{images}': {exc.strerror or exc}.") from None
    out_dir = out.resolve()
    outputs = _OutputFolders(images)
    kept = [p for p in found if not p.resolve().is_relative_to(out_dir) and not outputs.contains(p)]
    if not kept:
        hint = "" if recursive else " (add --recursive to include subfolders)"
        raise BatchUsageError(f"No images found in '{images}'{hint}.")
    return [ImageItem(i, p.relative_to(images).as_posix(), str(p)) for i, p in enumerate(kept)]


class _OutputFolders:
    """Answers "is this file inside a batch output folder under the image root?", one stat per folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._known: dict[Path, bool] = {}

    def contains(self, path: Path) -> bool:
        return any(self._is_output(folder) for folder in path.relative_to(self.root).parents
                   if folder != Path("."))

    def _is_output(self, relative: Path) -> bool:
        if relative not in self._known:
            self._known[relative] = (self.root / relative / CACHE_DIR).is_dir()
        return self._known[relative]


