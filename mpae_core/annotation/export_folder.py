"""Export folders: where an export goes by default, what the folder already holds, and what an export wrote.

Every export (the app's dialog or a batch run) leaves two files in its folder: :data:`MARKER` (``.mpae-export.json``:
when, how many images, whether it finished; it also tells :func:`mpae_core.images.list_images` to skip the folder)
and :data:`FILE_LIST` (one JSON string per line: every file the export wrote, relative to the folder). The next
export into the same folder, once the person agreed to replace the earlier one, deletes the files of that list that
it did not write again (masks of images no longer exported, beside a smaller COCO file), and nothing else: a file
that no export wrote is never deleted.

What an export wrote is measured, not declared: :class:`ExportRecorder` notes each file's size and time before the
export and takes every file that is new or changed afterwards, whatever formats were written. An annotation
project (a ``.mpae`` folder: a batch run's store, or a project someone keeps there) is never looked into nor
deleted from: its files change while an export runs (autosave), and they are a person's work, not an export's.
"""
from __future__ import annotations

import datetime
import enum
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable

from ..output_markers import EXPORT_MARKER
from .project_format import PROJECT_DIRNAME
from .storage import atomic_write, atomic_write_json

logger = logging.getLogger(__name__)

MARKER = EXPORT_MARKER
FILE_LIST = ".mpae-export-files.jsonl"
MARKER_FORMAT = "mpae-export"
MARKER_VERSION = 1
OWN_FILES = frozenset({MARKER, FILE_LIST})
#: Folders whose files are never an export's: annotation projects (mpae_core.annotation.project_format).
PROTECTED_DIRS = frozenset({PROJECT_DIRNAME})
DEFAULT_SUFFIX = "-labels"
SHOWN_ENTRIES = 3  # names quoted when a folder is not empty
SCANNED_ENTRIES = 1000  # at most this many are looked at (the GUI thread asks); more read "and more"


# ----- where -------------------------------------------------------------------------------------------------------
def default_export_folder(images_folder: str | os.PathLike) -> Path:
    """``<parent>/<folder>-labels``, beside the photos rather than among them (a recursive scan, the batch or
    training would otherwise meet the masks); inside them (``labels/``) only when the folder is a drive's root."""
    images = Path(images_folder).expanduser().absolute()
    if images.parent == images:
        return images / DEFAULT_SUFFIX.lstrip("-")
    return images.parent / f"{images.name}{DEFAULT_SUFFIX}"


def export_folder_problem(folder: str | os.PathLike, images_folder: str | os.PathLike | None = None) -> str | None:
    """Why ``folder`` cannot take an export (one sentence), or None."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        return f"The output '{folder}' is a file, not a folder; choose a folder."
    if images_folder is not None and _same(folder, Path(images_folder)):
        return (f"The output folder '{folder}' is the image folder itself; choose another one, e.g. "
                f"'{default_export_folder(images_folder)}'.")
    return None


def _same(a: Path, b: Path) -> bool:
    try:
        return a.expanduser().resolve() == b.expanduser().resolve()
    except OSError:
        return False


# ----- what is there -----------------------------------------------------------------------------------------------
@dataclass
class ExportMarker:
    """The summary of the export a folder holds (the file list is read only when it is needed)."""

    created: str = ""
    images: int = 0
    complete: bool = True
    tool: str = "app"  # "app" (the Export dialog) or "batch"
    source: str = ""  # the image folder exported
    files: int = 0

    def describe(self) -> str:
        """'an earlier export of 12 images (2025-05-01 14:03)', for questions and messages."""
        when = f" ({self.created[:16].replace('T', ' ')})" if self.created else ""
        what = "an earlier export" if self.complete else "an earlier export that did not finish"
        source = " by the batch command" if self.tool == "batch" else ""
        return f"{what}{source} of {self.images} images{when}"


def read_marker(folder: str | os.PathLike) -> ExportMarker | None:
    """The marker of the export ``folder`` holds; None when it holds none (a damaged one reads as unfinished)."""
    path = Path(folder) / MARKER
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return ExportMarker(**{k: data[k] for k in ExportMarker.__dataclass_fields__ if k in data})
    except (OSError, ValueError, TypeError) as exc:
        logger.warning("The export marker %s is unreadable (%s); treating it as an unfinished export", path, exc)
        return ExportMarker(complete=False)


def read_file_list(folder: str | os.PathLike) -> list[str]:
    """The files (relative POSIX paths) that the exports recorded in ``folder`` wrote; unreadable lines are skipped."""
    path = Path(folder) / FILE_LIST
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    files = []
    for line in lines:
        try:
            name = json.loads(line)
        except ValueError:
            continue
        if isinstance(name, str) and _safe_relative(name):
            files.append(name)
    return files


class FolderState(enum.Enum):
    NEW = "new"  # missing or empty: nothing to ask
    EXPORT = "export"  # holds an earlier export (its marker)
    OTHER = "other"  # holds files, none of them known to be an export's


@dataclass
class FolderCheck:
    """What an export folder holds before an export; ``question`` is what to ask the person, if anything."""

    folder: Path
    state: FolderState
    marker: ExportMarker | None = None
    entries: list[str] = field(default_factory=list)  # a few names, for OTHER
    count: int = 0  # top-level entries (SCANNED_ENTRIES + 1: at least that many)

    @property
    def needs_answer(self) -> bool:
        return self.state is not FolderState.NEW

    def question(self) -> str:
        if self.state is FolderState.EXPORT and self.marker is not None:
            return f"'{self.folder}' holds {self.marker.describe()}."
        if self.state is FolderState.OTHER:
            rest = self.count - len(self.entries)
            more = "" if rest <= 0 else (" and many more" if self.count > SCANNED_ENTRIES else f" and {rest} more")
            return f"'{self.folder}' is not empty: it holds {', '.join(self.entries)}{more}."
        return ""

    def consequence(self) -> str:
        """What answering "overwrite" does, in one or two sentences."""
        if self.state is FolderState.EXPORT:
            return ("Overwrite replaces it: files of the earlier export that this one does not write again (such as "
                    "masks of images no longer exported) are deleted, and files of the same name are replaced. "
                    "Files that no export wrote are kept.")
        return ("Exporting there replaces files that have the same names as the export's (masks/…, labels.txt, "
                "coco.json); nothing else is deleted.")


def check_export_folder(folder: str | os.PathLike) -> FolderCheck:
    """What ``folder`` holds, from its top level and marker only (cheap enough for the GUI thread)."""
    folder = Path(folder)
    if not folder.is_dir():
        return FolderCheck(folder, FolderState.NEW)
    marker = read_marker(folder)
    if marker is not None:
        return FolderCheck(folder, FolderState.EXPORT, marker)
    names: list[str] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            names.append(entry.name + ("/" if entry.is_dir(follow_symlinks=False) else ""))
            if len(names) > SCANNED_ENTRIES:
                break
    return FolderCheck(folder, FolderState.OTHER if names else FolderState.NEW,
                       entries=sorted(names, key=str.casefold)[:SHOWN_ENTRIES], count=len(names))


# ----- what an export wrote -----------------------------------------------------------------------------------------
class ExportRecorder:
    """Records the files an export writes into ``folder`` and removes the earlier export's leftovers.

    ``begin()`` before the first file is written, ``finish(complete=...)`` afterwards (also after a cancel or a
    failure: the files written so far are then added to the earlier ones, so a later export still knows them).
    """

    def __init__(self, folder: str | os.PathLike, *, tool: str = "app", source: str | os.PathLike = "") -> None:
        self.folder = Path(folder)
        self.tool, self.source = tool, str(source)
        self.previous_marker = read_marker(self.folder)
        self.previous = read_file_list(self.folder)
        self._before = _snapshot(self.folder)
        self.removed: list[Path] = []
        self.began = False

    def begin(self) -> None:
        """Mark the folder as an export at once (listings skip it from now on), not yet finished."""
        self.folder.mkdir(parents=True, exist_ok=True)
        earlier = self.previous_marker.images if self.previous_marker is not None else 0
        self._write(self.previous, complete=False, images=earlier)
        self.began = True

    def written(self, keep: Iterable[str | os.PathLike] = ()) -> list[str]:
        """Files new or changed since the recorder was made, plus ``keep`` (files this export wrote or owns: the
        exporter's own list, masks a batch re-run skipped), relative to the folder, sorted."""
        after = _snapshot(self.folder)
        changed = {name for name, stat in after.items() if self._before.get(name) != stat}
        for path in keep:
            name = _relative(self.folder, Path(path))
            if name is not None and name in after:
                changed.add(name)
        return sorted(changed)

    def finish(self, *, complete: bool, images: int, keep: Iterable[str | os.PathLike] = (),
               remove_stale: bool = True) -> list[Path]:
        """Record what this export wrote; when it is complete (and ``remove_stale``), delete the earlier export's
        files that it did not write again. Returns the deleted files."""
        written = self.written(keep)
        if not complete or not remove_stale:
            files = sorted(set(self.previous) | set(written))
            self._write(files, complete=complete, images=images)
            return []
        stale = sorted(set(self.previous) - set(written))
        self.removed = _remove_files(self.folder, stale)
        self._write(written, complete=True, images=images)
        if self.removed:
            logger.info("Removed %d files of the earlier export in %s that this one did not write again",
                        len(self.removed), self.folder)
        return self.removed

    def _write(self, files: list[str], *, complete: bool, images: int) -> None:
        lines = "".join(json.dumps(name, ensure_ascii=False) + "\n" for name in files)
        atomic_write(self.folder / FILE_LIST, lambda f: f.write(lines.encode("utf-8")))
        marker = ExportMarker(created=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                              images=images, complete=complete, tool=self.tool, source=self.source, files=len(files))
        atomic_write_json(self.folder / MARKER, {"format": MARKER_FORMAT, "version": MARKER_VERSION,
                                                  **marker.__dict__}, fsync=False)


def _snapshot(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Relative POSIX path → (mtime in ns, size, inode) of every file under ``folder`` but the recorder's own
    (an atomic write makes a new inode, so a rewrite shows even where the clock is coarse)."""
    found: dict[str, tuple[int, int, int]] = {}
    if not folder.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d not in PROTECTED_DIRS)
        for name in filenames:
            full = os.path.join(dirpath, name)
            relative = Path(os.path.relpath(full, folder)).as_posix()
            if relative in OWN_FILES or (name.startswith(".") and name.endswith(".tmp")):
                continue  # the recorder's files and atomic writes in flight
            try:
                stat = os.lstat(full)
            except OSError:
                continue
            found[relative] = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
    return found


def _safe_relative(name: str) -> bool:
    """A relative path that stays inside its folder (a damaged or hostile list must not reach outside)."""
    path = PurePosixPath(name)
    return (bool(name) and not path.is_absolute() and ".." not in path.parts and name not in OWN_FILES
            and not PROTECTED_DIRS.intersection(path.parts)
            and "\\" not in name and name[1:2] != ":")  # no Windows drive ("C:...")


def _relative(folder: Path, path: Path) -> str | None:
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return None


def _remove_files(folder: Path, names: Iterable[str]) -> list[Path]:
    """Delete these files (never folders) under ``folder``, then the folders they leave empty."""
    removed: list[Path] = []
    parents: set[Path] = set()
    for name in names:
        if not _safe_relative(name):
            continue
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            logger.warning("Could not remove %s of an earlier export: %s", path, exc)
            continue
        removed.append(path)
        parents.update(p for p in path.parents if p != folder and folder in p.parents)
    for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        try:
            parent.rmdir()  # only when empty
        except OSError:
            pass
    return removed
