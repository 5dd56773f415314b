"""The project's own models: checkpoints refined from its corrections, kept in ``AnnotationProject.models_dir``.

Refinement (``python -m training.run refine``) writes each new model there as ``<name>.safetensors`` and never
deletes an older one, so a person can go back to any earlier model; the app lists the folder for its model menu.
Names are file names, so they are checked and made unique here, once, for every writer.
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..checkpoint import checkpoint_metadata
from ..errors import MPAEError

logger = logging.getLogger(__name__)

MODEL_SUFFIX = ".safetensors"
_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f]')


@dataclass(frozen=True)
class ProjectModel:
    """One checkpoint of the project's models folder, described from its header (no weights read)."""

    path: Path
    name: str
    provenance: dict[str, Any] = field(default_factory=dict)
    modified_ns: int = 0


def check_model_name(name: str) -> str:
    """A model name usable as a file name on every system, or ValueError saying why not."""
    text = str(name).strip()
    if text.endswith(MODEL_SUFFIX):
        text = text[: -len(MODEL_SUFFIX)]
    if not text or text in (".", "..") or _UNSAFE.search(text) or text.startswith("."):
        raise ValueError(f"'{name}' cannot be a model name: use letters, digits, spaces, '-' or '_' (no slashes, "
                         "no leading dot).")
    return text


def new_model_path(folder: str | os.PathLike, name: str) -> Path:
    """``<folder>/<name>.safetensors``, or ``<name>-2``, ``-3``... when that file exists: never overwrite a model."""
    folder = Path(folder)
    base = check_model_name(name)
    candidate, number = folder / f"{base}{MODEL_SUFFIX}", 2
    while candidate.exists():
        candidate, number = folder / f"{base}-{number}{MODEL_SUFFIX}", number + 1
    return candidate


def list_models(folder: str | os.PathLike) -> list[ProjectModel]:
    """The models in ``folder`` (a project's ``models_dir``), oldest first; files that are not MPAE checkpoints are
    skipped with a log line."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    models = []
    for path in folder.glob(f"*{MODEL_SUFFIX}"):
        if path.name.startswith("."):
            continue  # a temporary file of an atomic write in progress
        try:
            metadata = checkpoint_metadata(path)
            provenance = json.loads(metadata.get("provenance") or "{}")
            modified = path.stat().st_mtime_ns
        except (MPAEError, OSError, ValueError) as exc:
            logger.warning("Skipping %s in the models folder: %s", path, exc)
            continue
        models.append(ProjectModel(path, path.name[: -len(MODEL_SUFFIX)], provenance, modified))
    return sorted(models, key=lambda m: (m.modified_ns, m.name))
