"""How the desktop app copes with a big folder: open time, list scrolling and thumbnails, project save.

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_app_folder.py --images 10000 [--markdown]

Generates N small JPEGs (once, in --folder or a temp dir), then times, in the real MainWindow: opening the folder
(scan + project index + list model), re-opening it (index already on disk), jumping to the last image, scrolling the
list from top to bottom a page at a time with thumbnails decoded for what is visible, and an autosave of the index.
No model is needed. Prints a table; never asserts on time.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from _table import format_table  # noqa: E402


def make_images(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    existing = len(list(folder.glob("*.jpg")))
    rng = np.random.default_rng(0)
    base = (rng.random((96, 128, 3)) * 255).astype(np.uint8)
    for i in range(existing, count):
        Image.fromarray(np.roll(base, i, axis=1)).save(folder / f"img_{i:05d}.jpg", quality=80)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--folder", type=Path, help="reuse/generate the images here (default: a temp folder)")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    from PySide6.QtWidgets import QApplication

    from app.settings import AppSettings
    from app.window import MainWindow

    os.environ.setdefault("MPAE_ANNOTATOR_CONFIG_DIR", tempfile.mkdtemp(prefix="mpae_bench_cfg_"))
    folder = args.folder or Path(tempfile.mkdtemp(prefix="mpae_bench_folder_")) / "images"
    start = time.perf_counter()
    make_images(folder, args.images)
    generate = time.perf_counter() - start
    for stale in (folder / ".mpae" / "project.json",):
        stale.unlink(missing_ok=True)

    app = QApplication.instance() or QApplication([])
    rows = []

    def timed(name: str, action) -> None:
        begin = time.perf_counter()
        action()
        app.processEvents()
        rows.append((name, f"{(time.perf_counter() - begin) * 1000:.0f}"))

    window = MainWindow(AppSettings(), save_settings=False)
    window.resize(1280, 800)
    window.show()
    app.processEvents()
    timed(f"open folder, first time ({args.images} images: scan + index + list)", lambda: window.open_folder(folder))
    timed("open again (index on disk)", lambda: window.open_folder(folder))
    timed("jump to the last image", lambda: window.show_image(window.project.relpaths()[-1]))
    view = window.file_view

    def scroll() -> None:
        bar = view.verticalScrollBar()
        for value in range(0, bar.maximum() + 1, max(1, bar.pageStep())):
            bar.setValue(value)
            app.processEvents()
        window.file_model.wait_for_thumbnails(60_000)
        app.processEvents()

    pages = view.verticalScrollBar().maximum() // max(1, view.verticalScrollBar().pageStep()) + 1
    timed(f"scroll the whole list ({pages} pages) + decode visible thumbnails", scroll)
    window.project._dirty = True  # force a full index write, as after a prediction
    timed("autosave of the project index", window.save_project)
    window.close()

    print(f"generated/reused {args.images} JPEGs in {generate:.1f} s at {folder}")
    print(format_table(["step", "ms"], rows, markdown=args.markdown, text_column=0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
