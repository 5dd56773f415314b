"""How quickly the window shows images, and whether its event loop ever stalls while browsing, filtering or predicting.

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_app_browse.py [--images 4] [--names 10000] [--markdown]

Generates JPEG photos at 0.3, 2, 6 and 12 MP with stored predictions (smooth random logits, 16 parts at 32x32, no
model download), opens them in the real MainWindow (offscreen) and measures per image: the time from ``show_image``
until the screen-sized preview is on screen (painted), and until the full resolution is there. A QTimer probe firing
every 5 ms records the longest gap of the event loop (a stall) while: showing those images one by one, stepping
through them with "D" every 40 ms (key auto-repeat), typing into the name filter over a list of --names images, and
running "Predict all" with a random-weights model while the shown 12 MP image's prediction arrives; and showing a
12 MP image whose edit layer is stored on disk (read on a worker) and one that no model predicted (background under
its edits, at its photo's size). Targets (issue 11): preview <= 150 ms at 12 MP, no stall > 50 ms. Prints a table;
never asserts on time.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
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

SIZES = {"0.3 MP": (640, 480), "2 MP": (1920, 1080), "6 MP": (3000, 2000), "12 MP": (4000, 3000)}
NUM_PARTS = 16


def make_photo(path: Path, width: int, height: int, seed: int) -> None:
    """A photo-like JPEG: smooth colour regions plus fine texture (so the decoder has real work)."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray((rng.random((max(2, height // 64), max(2, width // 64), 3)) * 255).astype(np.uint8))
    pixels = np.asarray(coarse.resize((width, height), Image.BICUBIC), dtype=np.int16)
    pixels = pixels + rng.integers(-12, 13, size=(height, width, 1), dtype=np.int16)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)


def smooth_logits(seed: int):
    """[K + 1, 32, 32] logits with blob-shaped parts, like a trained model's (not per-pixel noise)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, NUM_PARTS + 1, 4, 4, generator=generator) * 4
    logits = torch.nn.functional.interpolate(coarse, (32, 32), mode="bicubic", align_corners=False)[0]
    return logits + 0.1 * torch.randn(NUM_PARTS + 1, 32, 32, generator=generator)


def make_photo_project(folder: Path, per_size: int) -> dict[str, list[str]]:
    """Photos of every size with stored predictions; returns size name -> relpaths."""
    from mpae_core.annotation import AnnotationProject
    from mpae_core.inference import PartPrediction

    folder.mkdir(parents=True, exist_ok=True)
    names: dict[str, list[str]] = {}
    for s, (label, (width, height)) in enumerate(SIZES.items()):
        names[label] = []
        for i in range(per_size):
            name = f"{s}_{label.replace(' ', '').replace('.', '_')}_{i:02d}.jpg"
            if not (folder / name).is_file():
                make_photo(folder / name, width, height, seed=100 * s + i)
            names[label].append(name)
    project = AnnotationProject.open(folder) if (folder / ".mpae").exists() else AnnotationProject.create(folder)
    project.scan()
    for label, relpaths in names.items():
        width, height = SIZES[label]
        for i, relpath in enumerate(relpaths):
            if project.prediction(relpath) is None:
                project.set_prediction(relpath, PartPrediction.from_logits(smooth_logits(i), (height, width)))
    project.close()  # saves, and lets the window take the project's write lock
    return names


def make_name_folder(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tiny = Image.new("RGB", (8, 8), (120, 90, 60))
    for i in range(len(list(folder.glob("*.jpg"))), count):
        tiny.save(folder / f"img_{i:05d}.jpg", quality=70)


class StallProbe:
    """A 5 ms QTimer whose largest gap between two firings is the longest time the event loop was blocked, with the
    CPU time the GUI thread itself used in that gap (the rest it spent waiting: for the CPU, or for the GIL)."""

    def __init__(self) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.timer = QTimer(interval=5, timerType=Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self._tick)
        self.last = self.last_cpu = 0.0
        self.worst = self.worst_cpu = 0.0

    def _tick(self) -> None:
        now, cpu = time.perf_counter(), time.thread_time()
        if now - self.last > self.worst:
            self.worst, self.worst_cpu = now - self.last, cpu - self.last_cpu
        self.last, self.last_cpu = now, cpu

    def start(self) -> None:
        self.worst = self.worst_cpu = 0.0
        self.last, self.last_cpu = time.perf_counter(), time.thread_time()
        self.timer.start()

    def stop(self) -> tuple[float, float]:
        """(longest gap, GUI-thread CPU time in it), in ms."""
        self.timer.stop()
        return self.worst * 1000, self.worst_cpu * 1000


def stall_text(stall: tuple[float, float]) -> str:
    return f"{stall[0]:.0f} ({stall[1]:.0f})"


def spin(app, seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.001)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4, help="photos per size")
    parser.add_argument("--names", type=int, default=10_000, help="images in the folder the filter is typed over")
    parser.add_argument("--folder", type=Path, help="reuse/generate the photos here (default: a temp folder)")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    from PySide6.QtWidgets import QApplication

    from app.settings import AppSettings
    from app.window import MainWindow

    os.environ.setdefault("MPAE_ANNOTATOR_CONFIG_DIR", tempfile.mkdtemp(prefix="mpae_bench_cfg_"))
    os.environ.setdefault("MPAE_ANNOTATOR_DATA_DIR", tempfile.mkdtemp(prefix="mpae_bench_data_"))
    root = args.folder or Path(tempfile.mkdtemp(prefix="mpae_bench_browse_"))
    started = time.perf_counter()
    names = make_photo_project(root / "photos", args.images)
    make_name_folder(root / "names", args.names)
    print(f"generated/reused the photos and {args.names} names in {time.perf_counter() - started:.1f} s at {root}")

    load_start = os.getloadavg()[0]
    app = QApplication.instance() or QApplication([])
    window = MainWindow(AppSettings(), save_settings=False)
    window.resize(1400, 900)
    window.show()
    spin(app, 0.3)
    probe = StallProbe()
    rows = []

    unpredicted = "9_new_12MP.jpg"  # a photo no model has seen: scanned in as a new image
    if not (root / "photos" / unpredicted).is_file():
        shutil.copy(root / "photos" / names["12 MP"][0], root / "photos" / unpredicted)
    window.open_folder(root / "photos", load_project_checkpoint=False)
    window.wait_for_display(60_000)
    marks: dict[str, float] = {}

    def on_preview(relpath: str) -> None:
        window.canvas.viewport().repaint()  # "on screen": painted, not only handed to the canvas
        marks.setdefault(relpath, time.perf_counter())

    window.display.previewShown.connect(on_preview)
    for label, relpaths in names.items():
        previews, fulls = [], []
        probe.start()
        for relpath in relpaths:
            marks.clear()
            begin = time.perf_counter()
            window.show_image(relpath)
            window.wait_for_display(60_000)
            window.canvas.viewport().repaint()
            fulls.append(time.perf_counter() - begin)
            previews.append(marks.get(relpath, fulls[-1] + begin) - begin)
            spin(app, 0.05)
        one_by_one = probe.stop()
        window.show_image(relpaths[0])
        window.wait_for_display(60_000)
        probe.start()
        for _ in range(3 * len(relpaths)):  # "D" held: key auto-repeat every 40 ms over this size's images
            window.next_image() if window.current != relpaths[-1] else window.show_image(relpaths[0])
            spin(app, 0.04)
        window.wait_for_display(60_000)
        stepping = probe.stop()
        rows.append([f"{label} {SIZES[label][0]}x{SIZES[label][1]}", f"{1000 * statistics.median(previews):.0f}",
                     f"{1000 * max(previews):.0f}", f"{1000 * statistics.median(fulls):.0f}",
                     stall_text(max(one_by_one, stepping))])

    # a 12 MP image with stored edits (its layer is read on a worker), and one without a prediction
    edited = names["12 MP"][-1]
    window.project.edits(edited).brush(2000, 1500, 400, 3)
    window.save_project()
    window.open_folder(root / "photos", load_project_checkpoint=False)  # a fresh project: no layer cached
    window.wait_for_display(60_000)
    for label, relpath in (("12 MP with stored edits", edited), ("12 MP without a prediction", unpredicted)):
        spin(app, 0.2)
        marks.clear()
        probe.start()
        begin = time.perf_counter()
        window.show_image(relpath)
        window.wait_for_display(60_000)
        window.canvas.viewport().repaint()
        full = time.perf_counter() - begin
        stall = probe.stop()
        preview = marks.get(relpath, full + begin) - begin
        rows.append([label, f"{1000 * preview:.0f}", f"{1000 * preview:.0f}", f"{1000 * full:.0f}", stall_text(stall)])
    window.project.clear_edits(edited)  # the folder can be reused (--folder) for the next run
    window.save_project()

    # "Predict all" with a random-weights model while the shown 12 MP image's prediction arrives
    from mpae_core.backbone import resolve_backbone
    from mpae_core.checkpoint import save_checkpoint
    from mpae_core.config import MPAEConfig
    from mpae_core.model import MPAE

    cfg = MPAEConfig(backbone="vit_small_patch14_reg4_dinov2", backbone_kwargs={"depth": 2}, num_parts=NUM_PARTS,
                     group_size=2)
    model = MPAE(cfg, resolve_backbone(cfg.backbone, cfg.image_size, allow_random=True, **cfg.backbone_kwargs))
    checkpoint = save_checkpoint(model, root / "random.safetensors", embed_backbone=True)
    window.show_image(names["12 MP"][-1])
    window.wait_for_display(60_000)
    from app import safety_dialogs

    # the answers the window would ask for: keep the part names for this model, predict every image again
    safety_dialogs.ask_unknown_model = lambda *args: safety_dialogs.ModelChoice.KEEP_NAMES
    safety_dialogs.ask_repredict = lambda *args: safety_dialogs.RepredictChoice.ALL
    loaded = []
    window.modelLoaded.connect(loaded.append)
    window.load_checkpoint(checkpoint)
    while not loaded or window.loading:
        app.processEvents()
        time.sleep(0.005)
    done = []
    window.predictionFinished.connect(done.append)
    probe.start()
    window.predict_all(only_missing=False)
    while not done or window.predicting:
        app.processEvents()
        time.sleep(0.001)
    window.wait_for_display(60_000)
    predicting = probe.stop()
    summary = done[0]
    rows.append([f"Predict all ({summary.done} photos, 0.3-12 MP), the shown 12 MP one re-shown", "", "", "",
                 stall_text(predicting)])

    # typing into the name filter over many names: nothing may open, no keystroke may stall the loop
    window.open_folder(root / "names", load_project_checkpoint=False)
    window.wait_for_display(60_000)
    current = window.current
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    window.filter_edit.setFocus()
    spin(app, 0.2)
    probe.start()
    for text in ("img_0", "img_00", "img_001", "img_0012", "img_00123"):
        window.filter_edit.clear()
        spin(app, 0.3)
        for char in text:
            QTest.keyClick(window.filter_edit, char)
            spin(app, 0.2)  # slower than the filter's pause, so every keystroke refilters the whole list
        QTest.keyClick(window.filter_edit, Qt.Key.Key_Backspace)
        spin(app, 0.2)
    typing = probe.stop()
    opened = window.current != current
    rows.append([f"typing in the name filter ({args.names} names; an image opened: {'yes' if opened else 'no'})",
                 "", "", "", stall_text(typing)])

    window.close()
    load_end = os.getloadavg()[0]

    print(f"{os.cpu_count()} CPUs, load average {load_start:.1f} at the start, {load_end:.1f} at the end")
    print(format_table(["browsing", "preview ms (median)", "preview ms (max)", "full res ms (median)",
                        "longest stall ms (GUI-thread CPU in it)"], rows, markdown=args.markdown, text_column=0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
