"""The names that mark a folder as this program's output, so image listings never take masks for photos.

An export folder holds :data:`EXPORT_MARKER` (written by :mod:`mpae_core.annotation.export_folder`), a batch output
:data:`BATCH_CACHE_DIR` (``mpae_core.batch.config.CACHE_DIR``). :func:`mpae_core.images.list_images` skips every
subfolder that holds either, wherever it lies, so the app's scan, the batch CLI and training's folder preset agree.
"""
from __future__ import annotations

import os
from pathlib import Path

EXPORT_MARKER = ".mpae-export.json"
BATCH_CACHE_DIR = ".mpae-batch"
OUTPUT_MARKERS = (EXPORT_MARKER, BATCH_CACHE_DIR)


def is_output_folder(folder: str | os.PathLike) -> bool:
    """True for a folder that an export or a batch run of this program wrote."""
    return any(os.path.lexists(Path(folder, marker)) for marker in OUTPUT_MARKERS)
