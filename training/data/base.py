"""What every dataset shares: clear layout errors, portable relative paths, and the corrupt-image policy.

Policy for an image that cannot be read (``mpae_core.images.ImageLoadError``): in training it is logged once per
process with the file and the reason, counted, and the next sample is used instead, so one bad JPEG does not end an
epoch; in evaluation it is raised, because a metric silently computed on fewer images is wrong.  Any other failure
of a sample (a malformed annotation, a bug) is raised as :class:`DatasetEntryError`, one sentence naming the sample's
file, so that it reads the same when it happens in a DataLoader worker process.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path, PureWindowsPath
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from mpae_core.errors import MPAEError
from mpae_core.images import ImageLoadError, load_image

from .reference_pixels import read_rgb
from .transforms import AugmentConfig, eval_transform, train_transform

logger = logging.getLogger(__name__)


class DatasetLayoutError(MPAEError, FileNotFoundError):
    """A dataset file or folder is missing; the message names the path and the layout that was expected."""


class DatasetFormatError(MPAEError, ValueError):
    """A dataset file exists but its content does not have the expected format."""


class DatasetEntryError(DatasetFormatError):
    """One sample cannot be loaded for a reason other than an unreadable image; the message names its file."""


def require_dir(path: Path, dataset: str, what: str, advice: str) -> Path:
    """``path`` if it is a folder, else DatasetLayoutError naming it and what belongs there."""
    if not path.is_dir():
        state = "is a file, not a folder" if path.exists() else "does not exist"
        raise DatasetLayoutError(f"{dataset}: expected the folder {path} ({what}), but it {state}; {advice}.")
    return path


def require_file(path: Path, dataset: str, what: str, advice: str) -> Path:
    """``path`` if it is a file, else DatasetLayoutError naming it and the format it should have."""
    if not path.is_file():
        state = "is a folder, not a file" if path.exists() else "does not exist"
        raise DatasetLayoutError(f"{dataset}: expected {path} ({what}), but it {state}; {advice}.")
    return path


def relative_path(name: str, source: Path | None = None) -> Path:
    """A relative file name from an annotation file as a native Path, whichever OS wrote it.

    Both '/' and '\\' separate folders (``PureWindowsPath`` parses both), so a JSON written on Windows
    (``n01440764\\n01440764_1.JPEG``) works on Linux.  The cost: a POSIX file name that contains a backslash
    cannot be named, which no dataset here does.  Absolute names are refused: they would escape the dataset root.
    """
    parsed = PureWindowsPath(name.strip())
    if parsed.anchor or not parsed.parts:
        where = f" in {source}" if source is not None else ""
        raise DatasetFormatError(f"The image name {name!r}{where} must be a non-empty path relative to the dataset "
                                 "folder; fix the annotation file.")
    return Path(*parsed.parts)


def read_lines(path: Path) -> list[tuple[int, str]]:
    """(1-based line number, stripped text) of the non-blank lines of a UTF-8 text file (a BOM is tolerated)."""
    with open(path, encoding="utf-8-sig") as f:
        return [(n, line.strip()) for n, line in enumerate(f, start=1) if line.strip()]


def format_error(dataset: str, path: Path, line_no: int, line: str, expected: str) -> DatasetFormatError:
    return DatasetFormatError(f"{dataset}: line {line_no} of {path} is {line[:80]!r}; expected {expected}.")


class ImageDataset(Dataset):
    """Base class: subclasses list their images and add labels; this loads, transforms and applies the policy.

    Items are dicts with 'image' ([3, S, S] float, ImageNet-normalised), 'index' (the sample actually returned,
    which differs from the requested one when a corrupt image was skipped) and 'path' (str), plus what
    :meth:`labels` and, in evaluation (``train=False``), :meth:`eval_extras` add.
    """

    dataset_name = "dataset"
    #: consecutive unreadable samples tolerated before training gives up
    max_substitutions = 16
    #: decode with OpenCV, as the reference's loaders do (the benchmarks); else with the project's loader
    opencv_decode = False

    def __init__(self, image_size: int, train: bool, augment: AugmentConfig | None = None) -> None:
        self.image_size = image_size
        self.train = train
        self.augment = augment or AugmentConfig()
        self.transform = train_transform(image_size, self.augment) if train else eval_transform(image_size)
        # Shared memory, so skips made inside DataLoader worker processes are counted in the parent too.
        self._skips = torch.zeros(1, dtype=torch.int64).share_memory_()
        self._known_bad: set[int] = set()  # per process: warn once per file

    # --- subclass hooks ---------------------------------------------------------------------------------------
    def __len__(self) -> int:
        raise NotImplementedError

    def image_path(self, index: int) -> Path:
        raise NotImplementedError

    def load(self, index: int) -> tuple[Image.Image, tuple[int, int]]:
        """The image to transform and the (width, height) of the file as loaded (the keypoint frame)."""
        if self.opencv_decode:
            image = Image.fromarray(read_rgb(self.image_path(index)))
        else:
            image = load_image(self.image_path(index))
        return image, image.size

    def labels(self, index: int) -> dict[str, Any]:
        """Per-sample labels returned in training and evaluation (cheap; no extra file reads)."""
        return {}

    def eval_extras(self, index: int, size: tuple[int, int]) -> dict[str, Any]:
        """Evaluation targets (keypoints, masks, ...) for an image whose file is ``size`` = (width, height)."""
        return {}

    # --- loading ----------------------------------------------------------------------------------------------
    @property
    def skipped(self) -> int:
        """How many times an unreadable image was replaced by another sample (all worker processes together)."""
        return int(self._skips.item())

    def _item(self, index: int) -> dict[str, Any]:
        try:
            return self._unchecked_item(index)
        except (MPAEError, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of one sample must name its file, also from a worker
            raise DatasetEntryError(f"{self.dataset_name}: sample {index} ({self.image_path(index)}) cannot be "
                                    f"loaded ({type(exc).__name__}: {exc}); fix or remove its entry.") from exc

    def _unchecked_item(self, index: int) -> dict[str, Any]:
        image, size = self.load(index)
        item: dict[str, Any] = {"image": self.transform(image), "index": index, "path": str(self.image_path(index))}
        item.update(self.labels(index))
        if not self.train:
            item.update(self.eval_extras(index, size))
        return item

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"{self.dataset_name}: index {index} is out of range for {n} samples.")
        index %= n
        if not self.train:
            return self._item(index)  # evaluation: an unreadable image raises ImageLoadError naming the file
        tried = min(self.max_substitutions, n)
        for step in range(tried):
            candidate = (index + step) % n
            if candidate not in self._known_bad:
                try:
                    return self._item(candidate)
                except ImageLoadError as exc:
                    self._known_bad.add(candidate)
                    logger.warning("%s: skipping unreadable training image %s (%s); using the next sample instead.",
                                   self.dataset_name, exc.path, exc.reason)
            self._skips += 1
        raise ImageLoadError(self.image_path(index),
                             f"it and the {tried - 1} samples after it in the {self.dataset_name} training set are "
                             "all unreadable (see the warnings above)",
                             "check that the dataset is complete and readable")


def dataset_root(root: str | os.PathLike) -> Path:
    """The dataset root as a Path (``~`` expanded), so messages show the folder the user meant."""
    return Path(root).expanduser()
