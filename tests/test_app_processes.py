"""The app as a real process (tests/app_driver.py, offscreen): SIGTERM and SIGINT save everything and quit cleanly,
and after a kill -9 the last stroke (made a second before) and the predictions of a long run are still there."""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import make_predicted_project, tiny_model
from mpae_core.annotation import AnnotationProject
from mpae_core.checkpoint import save_checkpoint
from test_app_window import make_folder

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGTERM/SIGKILL to a child process are POSIX signals")

ROOT = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).resolve().parent / "app_driver.py"
START_TIMEOUT = 120  # importing torch and Qt and loading a model on a busy machine


class App:
    """The driver in a subprocess, with its stdout lines in a queue."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen", HF_HUB_OFFLINE="1",
                   MPAE_ANNOTATOR_CONFIG_DIR=str(tmp_path / "config"), MPAE_ANNOTATOR_DATA_DIR=str(tmp_path / "data"),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        self.process = subprocess.Popen([sys.executable, str(DRIVER), *args], cwd=ROOT, env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.strip())
        self.lines.put("")  # end of output

    def wait_for(self, prefix: str, timeout: float = START_TIMEOUT, accept=lambda line: True) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line == "" and self.process.poll() is not None:
                break
            if line.startswith(prefix) and accept(line):
                return line
        self.process.kill()
        raise AssertionError(f"no '{prefix}' line from the app; stderr:\n{self.process.stderr.read()}")

    def stop(self, signum: int, timeout: float = 60) -> int:
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()

    def stderr(self) -> str:
        return self.process.stderr.read()


def index_on_disk(folder: Path) -> dict[str, dict]:
    """The index exactly as written (no adoption of files it lacks): relpath -> record."""
    data = json.loads((folder / ".mpae" / "project.json").read_text())
    return {record["path"]: record for record in data["images"]}


@pytest.fixture
def painted_folder(tmp_path) -> Path:
    folder = tmp_path / "images"
    make_predicted_project(folder).close()
    return folder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_checkpoint(tiny_model(seed=3), tmp_path_factory.mktemp("ckpt") / "tiny.safetensors",
                           embed_backbone=True)


def test_sigterm_right_after_a_stroke_saves_it_and_quits_cleanly(tmp_path, painted_folder):
    app = App(tmp_path, "stroke", str(painted_folder))
    painted = int(app.wait_for("stroke").split()[1])
    code = app.stop(signal.SIGTERM)  # well before the 0.5 s "soon" save
    assert code == 128 + signal.SIGTERM, app.stderr()
    assert index_on_disk(painted_folder)["img_00.png"]["edits"] is True
    reopened = AnnotationProject.open(painted_folder)
    assert reopened.read_only is None  # the lock was given back
    assert reopened.edits("img_00.png").edited_pixels == painted
    reopened.close()


def test_a_stroke_made_a_second_before_a_kill_9_survives(tmp_path, painted_folder):
    app = App(tmp_path, "stroke", str(painted_folder))
    painted = int(app.wait_for("stroke").split()[1])
    time.sleep(1.0)
    assert app.stop(signal.SIGKILL) == -signal.SIGKILL
    assert index_on_disk(painted_folder)["img_00.png"]["edits"] is True
    copy = AnnotationProject.open(painted_folder, write=False)
    assert copy.edits("img_00.png").edited_pixels == painted


def test_sigint_during_a_prediction_run_saves_every_stored_prediction(tmp_path, checkpoint):
    folder = make_folder(tmp_path / "photos", count=30, broken=False)
    app = App(tmp_path, "predict", str(folder), str(checkpoint), "0.15")
    stored = int(app.wait_for("stored", accept=lambda line: int(line.split()[1]) >= 6).split()[1])
    code = app.stop(signal.SIGINT)
    assert code == 128 + signal.SIGINT, app.stderr()
    index = index_on_disk(folder)
    predicted = {relpath for relpath, record in index.items() if record["prediction"]}
    assert stored <= len(predicted) < 30
    files = {p.relative_to(folder / ".mpae" / "predictions").as_posix()[: -len(".npz")]
             for p in (folder / ".mpae" / "predictions").rglob("*.npz")}
    assert files == predicted  # nothing left for the next start to adopt


def test_a_kill_9_during_a_long_run_loses_at_most_the_last_seconds(tmp_path, checkpoint):
    folder = make_folder(tmp_path / "photos", count=40, broken=False)
    app = App(tmp_path, "predict", str(folder), str(checkpoint), "0.15")
    history = []  # (seconds, images stored then)

    def record(line: str) -> bool:
        history.append((time.monotonic(), int(line.split()[1])))
        return history[-1][0] - history[0][0] > 3.0

    app.wait_for("stored", accept=record)
    killed = time.monotonic()
    assert app.stop(signal.SIGKILL) == -signal.SIGKILL
    on_disk = sum(record["prediction"] for record in index_on_disk(folder).values())
    # saved on a clock: what was stored 2.5 s before the kill (1.5 s clock + writing, with room for a busy machine)
    expected = max(count for seconds, count in history if seconds <= killed - 2.5)
    assert on_disk >= expected > 0, f"the index lists {on_disk} predictions; stored before the kill: {history}"
    assert history[-1][1] < 40, "the run ended before the kill; slow it down"
    reopened = AnnotationProject.open(folder)  # what was stored since the last save is adopted
    assert sum(r.has_prediction for r in reopened.records()) >= history[-1][1]
    reopened.close()
