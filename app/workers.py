"""Long work off the GUI thread: loading a checkpoint and predicting a list of images.

Each worker is a QObject moved to its own QThread (see :func:`start_worker`); it talks to the window only through
signals, so the project (not thread-safe) is touched on the GUI thread alone: the prediction worker hands each
``PartPrediction`` back and the window stores it. Cancelling is checked between batches, so a Cancel stops the run
within one batch.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from mpae_core.annotation.records import FileState, FileStamp, compare_file, file_stamp
from mpae_core.annotation.repredict import changed_fraction
from mpae_core.errors import MPAEError
from mpae_core.images import load_image
from mpae_core.inference import Predictor

from .dialogs import missing_weights_sentence
from .model_session import LoadRequest, ModelIdentity, ModelSession

logger = logging.getLogger(__name__)


def start_worker(worker: QObject, parent: QObject | None = None,
                 on_finished: Callable[[], None] | None = None) -> QThread:
    """Run ``worker.run`` in a new QThread that quits and cleans up when the worker emits ``done``; ``on_finished``
    is connected before the thread starts (a worker that fails at once could otherwise finish unnoticed).

    The worker is not ``deleteLater``-ed in its own thread: Qt would delete it while that thread winds down, and
    destroying a PySide object there races the GUI thread's references to its Python wrapper (an intermittent
    segfault under load). Instead a reaper on the calling (GUI) thread keeps the worker and the thread until the
    thread has finished, then lets go of both there."""
    thread = QThread(parent)
    worker.moveToThread(thread)
    thread.started.connect(worker.run)
    # direct: QThread.quit is thread-safe, and a queued call would never run while the GUI thread waits in wait()
    worker.done.connect(thread.quit, Qt.DirectConnection)
    reaper = _WorkerReaper(thread, worker)
    thread.finished.connect(reaper.reap)  # queued: the reaper lives on the calling thread
    if on_finished is not None:
        thread.finished.connect(on_finished)
    thread.start()
    return thread


class _WorkerReaper(QObject):
    """Holds a finished worker thread's objects until the GUI thread lets go of them (see :func:`start_worker`)."""

    _alive: set["_WorkerReaper"] = set()

    def __init__(self, thread: QThread, worker: QObject) -> None:
        super().__init__()
        self._thread: QThread | None = thread
        self._worker: QObject | None = worker
        _WorkerReaper._alive.add(self)

    @Slot()
    def reap(self) -> None:
        thread, self._thread, self._worker = self._thread, None, None  # the worker's wrapper goes here, on this thread
        if thread is not None:
            thread.wait()  # it has emitted finished: returns at once, and deleting a running QThread would abort
            thread.deleteLater()
        _WorkerReaper._alive.discard(self)


class ModelLoadWorker(QObject):
    """Builds a Predictor from a checkpoint and hashes its identity (which part table it fits); a missing backbone
    is reported apart so the app can ask for a file."""

    loaded = Signal(object, object, object)  # Predictor, LoadRequest, ModelIdentity
    failed = Signal(str, str, object)  # error kind ("backbone" | "checkpoint" | "other"), message, request
    done = Signal()

    def __init__(self, request: LoadRequest) -> None:
        super().__init__()
        self.request = request

    @Slot()
    def run(self) -> None:
        from mpae_core.errors import BackboneWeightsError, CheckpointError

        try:
            predictor = ModelSession.build(self.request)
            identity = ModelIdentity.of(predictor.model)
        except BackboneWeightsError as exc:  # worded for the app: its dialog, not command-line options
            message = missing_weights_sentence(exc.missing) if exc.missing is not None else str(exc)
            self.failed.emit("backbone", message, self.request)
        except CheckpointError as exc:
            self.failed.emit("checkpoint", str(exc), self.request)
        except (MPAEError, ValueError) as exc:
            self.failed.emit("other", str(exc), self.request)
        except Exception as exc:  # anything else still must reach the user, not kill the thread silently
            logger.exception("Loading %s failed", self.request.checkpoint)
            self.failed.emit("other", f"Loading '{self.request.checkpoint}' failed: {exc}", self.request)
        else:
            self.loaded.emit(predictor, self.request, identity)
        finally:
            self.done.emit()


@dataclass
class PredictionSummary:
    total: int
    done: int = 0
    failed: int = 0
    cancelled: bool = False
    seconds: float = 0.0


class PredictionWorker(QObject):
    """Predicts ``items`` (relpath, file) in batches; decoding of the next batch overlaps the model.

    Each file's stamp (size, mtime) is read before it is decoded and travels with its prediction, so a photo
    replaced during the run is flagged as changed instead of being stamped as the file the mask came from."""

    predicted = Signal(str, object, object)  # relpath, PartPrediction, FileStamp | None
    imageFailed = Signal(str, str)  # relpath, one-sentence reason
    progress = Signal(int, int, float, float)  # done (incl. failed), total, images/s, seconds left (-1 unknown)
    finished = Signal(object)  # PredictionSummary
    done = Signal()

    def __init__(self, predictor: Predictor, items: Sequence[tuple[str, Path]], batch_size: int = 4) -> None:
        super().__init__()
        self.predictor = predictor
        self.items = list(items)
        self.batch_size = max(1, int(batch_size))
        self._cancel = threading.Event()

    def cancel(self) -> None:
        """Ask the run to stop; thread-safe, takes effect before the next batch."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @staticmethod
    def _decode(batch: Sequence[tuple[str, Path]]) -> list[tuple[str, object, FileStamp | None]]:
        decoded: list[tuple[str, object, FileStamp | None]] = []
        for relpath, path in batch:
            stamp = file_stamp(path)
            try:
                decoded.append((relpath, load_image(path), stamp))
            except MPAEError as exc:
                decoded.append((relpath, exc, stamp))
            except Exception as exc:  # an unexpected decoder failure is still one image's problem
                decoded.append((relpath, MPAEError(f"Cannot read '{path}': {exc}."), stamp))
        return decoded

    @Slot()
    def run(self) -> None:
        summary = PredictionSummary(total=len(self.items))
        start = time.perf_counter()
        batches = [self.items[i : i + self.batch_size] for i in range(0, len(self.items), self.batch_size)]
        try:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mpae-decode") as pool:
                pending = pool.submit(self._decode, batches[0]) if batches else None
                for index in range(len(batches)):
                    if self._cancel.is_set():
                        summary.cancelled = True
                        break
                    decoded = pending.result()
                    pending = pool.submit(self._decode, batches[index + 1]) if index + 1 < len(batches) else None
                    self._predict(decoded, summary)
                    elapsed = time.perf_counter() - start
                    finished = summary.done + summary.failed
                    rate = finished / elapsed if elapsed > 0 else 0.0
                    left = (summary.total - finished) / rate if rate > 0 else -1.0
                    self.progress.emit(finished, summary.total, rate, left)
                if pending is not None:
                    pending.cancel()
        finally:
            summary.seconds = time.perf_counter() - start
            self.finished.emit(summary)
            self.done.emit()

    def _predict(self, decoded: list[tuple[str, object, FileStamp | None]], summary: PredictionSummary) -> None:
        good = [(relpath, image, stamp) for relpath, image, stamp in decoded if not isinstance(image, Exception)]
        for relpath, error, _stamp in decoded:
            if isinstance(error, Exception):
                summary.failed += 1
                self.imageFailed.emit(relpath, str(error))
        if not good:
            return
        try:
            predictions = self.predictor.predict([image for _, image, _ in good], batch_size=len(good))
        except RuntimeError as exc:  # e.g. CUDA out of memory: these images fail, the run goes on
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if "out of memory" in message.lower():
                message = f"Out of memory on {self.predictor.device} ({message}); lower the batch size in Settings."
            for relpath, _, _ in good:
                summary.failed += 1
                self.imageFailed.emit(relpath, message)
            return
        for (relpath, _, stamp), prediction in zip(good, predictions):
            summary.done += 1
            self._deliver(relpath, prediction, stamp)

    def _deliver(self, relpath: str, prediction, stamp: FileStamp | None) -> None:
        """Hand one prediction to the window (a subclass may measure it first, still on this thread)."""
        self.predicted.emit(relpath, prediction, stamp)


class RepredictWorker(PredictionWorker):
    """A prediction run that also measures how much each new mask differs from the stored one (``changed``, sent
    just before ``predicted`` for the same image), for the "Re-predict N unreviewed images" summary: comparing two
    label maps is image-sized work, so it happens here and not on the GUI thread.

    ``old_predictions`` maps a relpath to a function returning its stored prediction
    (``AnnotationProject.prediction_loader``); an unreadable one counts as entirely changed."""

    changed = Signal(str, float, int)  # relpath, fraction of pixels whose label changed, pixels of the image

    def __init__(self, predictor: Predictor, items: Sequence[tuple[str, Path]],
                 old_predictions: dict[str, Callable[[], object]], batch_size: int = 4) -> None:
        super().__init__(predictor, items, batch_size)
        self.old_predictions = dict(old_predictions)

    def _deliver(self, relpath: str, prediction, stamp: FileStamp | None) -> None:
        load = self.old_predictions.get(relpath)
        try:
            old = load() if load is not None else None
        except (MPAEError, OSError) as exc:
            logger.warning("Comparing the new prediction of %s with the stored one: %s", relpath, exc)
            old = None
        height, width = prediction.image_size
        self.changed.emit(relpath, changed_fraction(old, prediction), int(height) * int(width))
        super()._deliver(relpath, prediction, stamp)


class FileChecker(QObject):
    """Compares many image files with their records (one stat each) on a background thread.

    It gets copies of the records and reports the images whose state differs from the recorded one; the window then
    calls ``project.check_files`` for those few on its own thread, which stats them again and records the result."""

    checked = Signal(object, object)  # the project checked, list[str] of relpaths whose FileState differs

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mpae-file-check")

    def check(self, project) -> None:
        """Queue a check of every annotated image of ``project`` (the project itself is not touched there)."""
        records = [r for r in project.records() if r.has_prediction or r.has_edits]
        self._executor.submit(self._compare, project, Path(project.images_folder), records)

    def _compare(self, project, folder: Path, records: list) -> None:
        differing: list[str] = []
        try:
            for record in records:
                state: FileState = compare_file(folder / record.relpath, record)
                if state is not record.file_state:
                    differing.append(record.relpath)
        finally:
            self.checked.emit(project, differing)

    def shutdown(self) -> None:
        """Wait for a check under way (stats only) and stop the thread."""
        self._executor.shutdown(wait=True)
