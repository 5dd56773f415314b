"""Starting the desktop app: the QApplication, theme, main window, and what the command line asked to open.

Kept apart from ``app.main`` so that ``mpae-annotate batch`` and ``info`` never import Qt.
"""
from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

from mpae_core.errors import MPAEError

logger = logging.getLogger(__name__)

DEMO_DIR = Path(__file__).resolve().parents[1] / "resources" / "demo"
DEMO_CHECKPOINT = "demo.safetensors"


def prepare_demo(target: Path | None = None, source: Path = DEMO_DIR) -> tuple[Path, Path]:
    """Copy the demo images to the user's data folder (once; the user's work there is kept) → (images, checkpoint)."""
    from .settings import data_dir

    images, checkpoint = source / "images", source / DEMO_CHECKPOINT
    if not images.is_dir() or not checkpoint.is_file():
        raise MPAEError(f"The demo assets are missing from '{source}' (need images/ and {DEMO_CHECKPOINT}); "
                        "reinstall from a full clone or regenerate them with `python -m training.demo`.")
    target = (target or data_dir() / "demo") / "images"
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(images.iterdir()):
        if path.is_file() and not (target / path.name).exists():
            shutil.copy2(path, target / path.name)
    return target, checkpoint


def run_gui(folder: str | None = None, checkpoint: str | None = None, device: str | None = None,
            demo: bool = False, theme: str | None = None, setup: Callable[[Any], None] | None = None) -> int:
    """Open the window and run the event loop; returns the exit code (128 + the signal's number after a SIGTERM
    or SIGINT, which save everything and quit like the window's Quit). ``setup(window)`` runs before the event loop
    (scripted use: tests drive the app through it)."""
    from PySide6.QtWidgets import QApplication

    from .qt_check import binding_problem
    from .quit_signals import QuitSignals

    problem = binding_problem()
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = launch(folder, checkpoint, device, demo, theme)

    def quit_on_signal(signum: int) -> None:
        window.close()  # saves the project and releases its lock (closeEvent)
        app.exit(128 + signum)

    signals = QuitSignals(quit_on_signal)
    if setup is not None:
        setup(window)
    try:
        code = app.exec()
    finally:
        signals.uninstall()
    del window
    return code


def launch(folder: str | None = None, checkpoint: str | None = None, device: str | None = None,
           demo: bool = False, theme: str | None = None):
    """Create and show the main window with what the command line asked for (needs a QApplication)."""
    from PySide6.QtWidgets import QApplication

    from .settings import AppSettings
    from .theme import apply_theme
    from .window import MainWindow

    app = QApplication.instance()
    app.setApplicationName("MPAE Annotator")
    app.setOrganizationName("mpae-annotator")
    settings = AppSettings.load()
    if device:
        settings.device = device
    if theme:
        settings.theme = theme
    apply_theme(app, settings.theme)
    window = MainWindow(settings)
    window.show()
    if demo:
        window.start_demo()
    else:
        if folder:
            window.open_folder(folder, load_project_checkpoint=checkpoint is None)
        if checkpoint:
            window.load_checkpoint(checkpoint)
    return window
