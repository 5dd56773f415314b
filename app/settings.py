"""What the app remembers between sessions: window layout, recent folders, device, last checkpoint, theme.

Kept as one small JSON file in the per-user config folder (appdirs), written atomically, so a crash never leaves a
half-written file and a damaged one is set aside instead of stopping the app. ``MPAE_ANNOTATOR_CONFIG_DIR``
overrides the folder (tests, portable installs). Qt-free.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpae_core.annotation.storage import atomic_write_json

logger = logging.getLogger(__name__)

APP_NAME = "mpae-annotator"
SETTINGS_FILE = "settings.json"
MAX_RECENT = 10
THEMES = ("system", "light", "dark")


def _user_dir(env_var: str, kind: str) -> Path:
    """``$env_var`` if set, else appdirs' per-user ``kind`` ("config" or "data") folder of the app."""
    override = os.environ.get(env_var)
    if override:
        return Path(override)
    import appdirs

    return Path(getattr(appdirs, f"user_{kind}_dir")(APP_NAME, appauthor=False))


def config_dir() -> Path:
    return _user_dir("MPAE_ANNOTATOR_CONFIG_DIR", "config")


def data_dir() -> Path:
    """Per-user data folder (the demo's working copy, training runs started from the app)."""
    return _user_dir("MPAE_ANNOTATOR_DATA_DIR", "data")


@dataclass
class AppSettings:
    recent_folders: list[str] = field(default_factory=list)
    last_checkpoint: str | None = None
    device: str = "auto"
    backbone_weights: str | None = None
    vgg_weights: str | None = None  # VGG-19 weights for training (the Train dialog)
    theme: str = "system"
    window_geometry: str | None = None  # base64 of QMainWindow.saveGeometry()
    window_state: str | None = None  # base64 of QMainWindow.saveState() (docks, toolbars)
    overlay_opacity: float = 0.5
    brush_radius: int = 12
    batch_size: int = 4
    include_subfolders: bool = False  # for folders opened for the first time; a project keeps its own choice

    def add_recent_folder(self, folder: str | os.PathLike) -> None:
        text = str(Path(folder).resolve())
        self.recent_folders = [text] + [f for f in self.recent_folders if f != text][: MAX_RECENT - 1]

    @classmethod
    def load(cls, directory: Path | None = None) -> "AppSettings":
        """The saved settings, or defaults when there are none or they are unreadable (the bad file is kept aside)."""
        path = (directory or config_dir()) / SETTINGS_FILE
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            backup = path.with_suffix(".json.bad")
            logger.warning("Settings file %s is unreadable (%s); starting with defaults, old file kept as %s",
                           path, exc, backup)
            try:
                os.replace(path, backup)
            except OSError:
                pass
            return cls()
        known = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {k: v for k, v in data.items() if k in known}
        settings = cls()
        for key, value in values.items():
            default = getattr(settings, key)
            if default is not None and value is not None and not isinstance(value, type(default)):
                if isinstance(default, float) and isinstance(value, int):
                    value = float(value)
                else:
                    logger.warning("Ignoring setting %s=%r (expected %s)", key, value, type(default).__name__)
                    continue
            setattr(settings, key, value)
        if settings.theme not in THEMES:
            settings.theme = "system"
        settings.recent_folders = [str(f) for f in settings.recent_folders if isinstance(f, str)][:MAX_RECENT]
        return settings

    def save(self, directory: Path | None = None) -> None:
        path = (directory or config_dir()) / SETTINGS_FILE
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path, dataclasses.asdict(self))
        except OSError as exc:  # settings are a convenience: never lose work over them
            logger.warning("Could not save settings to %s: %s", path, exc)
