"""Runs MPAE Annotator (offscreen) through ``app.gui.run_gui``, the app's real start-up and signal handling, for
tests/test_app_processes.py, and reports what it did on stdout, one line at a time:

    python tests/app_driver.py stroke FOLDER
        paints one stroke on the first image as a finished canvas stroke; prints "stroke <edited pixels>"
    python tests/app_driver.py predict FOLDER CHECKPOINT [SECONDS_PER_BATCH]
        predicts every image once the model is loaded (each batch slowed down by SECONDS_PER_BATCH); prints
        "stored <images with a prediction>" whenever the window stored one, "finished <done>" at the end

The tests then send SIGTERM, SIGINT or SIGKILL and read what reached the disk.
"""
from __future__ import annotations

import sys
import time


def say(text: str) -> None:
    print(text, flush=True)


def paint_stroke(window) -> None:
    relpath = window.project.relpaths()[0]
    layer = window.project.edits(relpath)
    layer.stroke(10, 10, 60, 40, 6, 1)
    window.canvas.edited.emit()  # what the canvas emits when a stroke ends
    say(f"stroke {layer.edited_pixels}")


def predict_everything(window, seconds_per_batch: float) -> None:
    predictor = window.session.predictor
    predict = predictor.predict

    def slow_predict(*args, **kwargs):
        time.sleep(seconds_per_batch)
        return predict(*args, **kwargs)

    if seconds_per_batch > 0:
        predictor.predict = slow_predict
    window.file_model.dataChanged.connect(
        lambda *_: say(f"stored {sum(r.has_prediction for r in window.project.records())}"))
    window.predictionFinished.connect(lambda summary: say(f"finished {summary.done}"))
    window.predict_all()


def main(argv: list[str]) -> int:
    from PySide6.QtCore import QTimer

    from app.gui import run_gui

    scenario, folder = argv[0], argv[1]
    checkpoint = argv[2] if len(argv) > 2 else None
    seconds_per_batch = float(argv[3]) if len(argv) > 3 else 0.0

    def setup(window) -> None:
        if scenario == "stroke":
            QTimer.singleShot(0, lambda: paint_stroke(window))
        elif scenario == "predict":
            window.after_model_loaded(lambda: predict_everything(window, seconds_per_batch))
        else:
            raise SystemExit(f"unknown scenario {scenario!r}")
        say("ready")

    return run_gui(folder=folder, checkpoint=checkpoint, setup=setup)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
