"""The project index on disk: its name, format version, where it lives, and upgrades of older versions."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from ..errors import MPAEError

logger = logging.getLogger(__name__)

PROJECT_FORMAT = "mpae-annotator-project"
PROJECT_VERSION = 2
PROJECT_DIRNAME = ".mpae"
INDEX_NAME = "project.json"


def find_project_dir(path: str | Path) -> Path | None:
    """The project folder for ``path`` (an image folder, a project folder or its project.json), or None."""
    p = Path(path)
    for candidate in (p.parent if p.name == INDEX_NAME else p, p / PROJECT_DIRNAME):
        if (candidate / INDEX_NAME).is_file():
            return candidate
    return None


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 2 derives an image's status from facts and names "export as background" apart from "don't care".

    v1 stored the status itself, so a reviewed image that then failed to predict became "error"; here its review
    becomes a flag of its own. A v1 part table's ``ignored`` meant "export as background".
    """
    images = []
    for record in data.get("images", []):
        record = dict(record)
        record["reviewed"] = record.pop("status", None) == "reviewed"
        images.append(record)
    parts = data.get("parts")
    if parts is not None:
        slots = [{**{k: v for k, v in s.items() if k != "ignored"}, "as_background": bool(s.get("ignored", False))}
                 for s in parts.get("slots", [])]
        parts = {**parts, "slots": slots}
    return {**data, "images": images, "parts": parts, "model_family": []}


#: Upgrades of older index versions: MIGRATIONS[v] turns a version-v index dict into a version v + 1 one.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2}


def upgrade(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """Check the format and bring an older index up to the current version, or say why it cannot be."""
    if data.get("format") != PROJECT_FORMAT:
        raise MPAEError(f"'{path}' is not an MPAE Annotator project index (format {data.get('format')!r}); choose "
                        "the folder of a project made by this app.")
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise MPAEError(f"'{path}' has no valid format version ({version!r}); restore it from a backup.")
    if version > PROJECT_VERSION:
        raise MPAEError(f"'{path}' was written by a newer MPAE Annotator (project format {version}, this version "
                        f"reads up to {PROJECT_VERSION}); update the app to open it.")
    while version < PROJECT_VERSION:
        migrate = MIGRATIONS.get(version)
        if migrate is None:
            raise MPAEError(f"'{path}' uses project format {version}, which this version cannot upgrade (it reads "
                            f"formats {min([PROJECT_VERSION, *MIGRATIONS])}..{PROJECT_VERSION}); create the project "
                            "again.")
        data = migrate(data)
        version += 1
        data["format_version"] = version
        logger.info("Upgraded %s to project format %d", path, version)
    return data
