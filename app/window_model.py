"""Loading a checkpoint and predicting images in the background (a mixin of ``MainWindow``)."""
from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox

from mpae_core.annotation import PartTable
from mpae_core.errors import MPAEError

from . import dialogs
from .model_session import LoadRequest
from .workers import ModelLoadWorker, PredictionSummary, PredictionWorker, start_worker

logger = logging.getLogger(__name__)


class ModelMixin:
    """Model loading and prediction runs; results reach the project on the GUI thread through signals."""

    # ================================================================================================ model
    def choose_checkpoint(self) -> None:
        start = self.settings.last_checkpoint or ""
        path, _ = QFileDialog.getOpenFileName(self, "Load an MPAE checkpoint", start,
                                              "MPAE checkpoints (*.safetensors *.pth *.pt);;All files (*)")
        if path:
            self.load_checkpoint(path)

    def load_checkpoint(self, path: str | Path, backbone_weights: str | Path | None = None) -> bool:
        """Load on a worker thread; ``modelLoaded`` or ``modelFailed`` follows. The old model is freed first."""
        if self._load_thread is not None:
            self.statusBar().showMessage("A model is already loading; wait for it to finish.", 5000)
            return False
        if self._predict_thread is not None:
            self.statusBar().showMessage("Cancel the running prediction before switching models.", 5000)
            return False
        weights = backbone_weights or self.settings.backbone_weights
        request = LoadRequest(Path(path), device=self.settings.device,
                              backbone_weights=Path(weights) if weights else None)
        self.session.unload()
        self._refresh_device_status()
        self.device_label.setText(f"Loading {Path(path).name}…")
        worker = ModelLoadWorker(request)
        worker.loaded.connect(self._on_model_loaded)
        worker.failed.connect(self._on_model_failed)
        self._load_worker = worker  # PySide deletes an unreferenced QObject, and its run would never start
        self._load_thread = start_worker(worker, self)
        self._load_thread.finished.connect(self._on_load_thread_done)
        self._update_actions()
        return True

    def after_model_loaded(self, callback) -> None:
        """Run ``callback`` once the model that is loading now is ready (at once if one is loaded and idle)."""
        if self._load_thread is None and self.session.loaded:
            callback()
        else:
            self._after_load.append(callback)

    def _on_load_thread_done(self) -> None:
        self._load_thread = None
        self._load_worker = None
        self._refresh_device_status()
        self._update_actions()

    def _on_model_loaded(self, predictor, request: LoadRequest) -> None:
        self.session.attach(predictor, request.checkpoint)
        self.settings.last_checkpoint = str(request.checkpoint)
        if request.backbone_weights is not None:
            self.settings.backbone_weights = str(request.backbone_weights)
        self._save_settings()
        self._refresh_device_status()
        parts = self.project.parts if self.project is not None else None
        if parts is not None and parts.num_parts and parts.num_parts != self.session.num_parts:  # 0: takes them
            QMessageBox.warning(
                self, "Checkpoint does not fit this project",
                f"'{request.checkpoint.name}' has {self.session.num_parts} part slots, but this project's part "
                f"table has {parts.num_parts}; its predictions cannot be stored here. Load the project's checkpoint "
                "or open another folder.")
        self.statusBar().showMessage(f"Loaded {request.checkpoint.name} on {predictor.device}", 5000)
        self.modelLoaded.emit(str(request.checkpoint))
        self._update_actions()
        pending, self._after_load = self._after_load, []
        for callback in pending:
            callback()

    def _on_model_failed(self, kind: str, message: str, request: LoadRequest) -> None:
        self._refresh_device_status()
        if kind == "backbone":
            chosen = dialogs.ask_backbone_weights(self, message)
            if chosen is not None:
                QTimer.singleShot(0, lambda: self.load_checkpoint(request.checkpoint, backbone_weights=chosen))
                return
        else:
            QMessageBox.critical(self, "Cannot load the checkpoint", message)
        self._after_load = []
        self.modelFailed.emit(message)

    def set_device(self, device: str) -> None:
        """Use another device; a loaded model is reloaded there (and its old memory freed)."""
        self.settings.device = device
        self._save_settings()
        for action in self.device_group.actions():
            action.setChecked(action.data() == device)
        if self.session.loaded and self.session.checkpoint is not None:
            self.load_checkpoint(self.session.checkpoint)

    def _refresh_device_status(self) -> None:
        if self._load_thread is None:
            self.device_label.setText(self.session.describe())

    # ================================================================================================ prediction
    def predict_current(self) -> None:
        if self.current is not None:
            self._start_prediction([self.current])

    def predict_all(self, only_missing: bool = True) -> None:
        """Predict in the background every image without a prediction (or every image)."""
        if self.project is None:
            return
        records = list(self.project.records())
        wanted = [r.relpath for r in records if not only_missing or not r.has_prediction]
        if not wanted:
            self.statusBar().showMessage("Every image already has a prediction (Model ▸ Re-predict every image "
                                         "to redo them).", 8000)
            return
        self._start_prediction(wanted)

    def _start_prediction(self, relpaths: list[str]) -> None:
        if self.project is None or not self.session.loaded:
            QMessageBox.information(self, "No model", "Load a checkpoint first (Model ▸ Load checkpoint).")
            return
        if self._predict_thread is not None:
            self.statusBar().showMessage("A prediction run is already going.", 5000)
            return
        if self.project.parts is None or not self.project.parts.num_parts:  # none yet, or imported labels only
            info = self.session.model.info
            self.project.adopt_model("", PartTable.from_model_info(info.part_names, info.part_colors))
            self._on_parts_changed()
        self.project.set_checkpoint(self.session.checkpoint)
        items = [(r, self.project.image_path(r)) for r in relpaths]
        worker = PredictionWorker(self.session.predictor, items, batch_size=self.settings.batch_size)
        worker.predicted.connect(self._on_predicted)
        worker.imageFailed.connect(self._on_image_failed)
        worker.progress.connect(self._on_progress)
        worker.finished.connect(self._on_prediction_finished)
        self._predict_worker = worker
        self.progress.setRange(0, len(items))
        self.progress.setValue(0)
        self.rate_label.setText("starting…")
        for widget in (self.progress, self.rate_label, self.cancel_button):
            widget.show()
        self._predict_thread = start_worker(worker, self)
        self._predict_thread.finished.connect(self._on_predict_thread_done)
        self._update_actions()

    def cancel_prediction(self, wait: bool = False) -> None:
        """Stop the run after the current batch (``wait``: block until the thread has ended, e.g. on close)."""
        if self._predict_worker is not None:
            self._predict_worker.cancel()
            self.rate_label.setText("cancelling…")
        if wait and self._predict_thread is not None:
            self._predict_thread.wait()
            QApplication.processEvents()

    def _on_predicted(self, relpath: str, prediction) -> None:
        if self.project is None:
            return
        try:
            self.project.set_prediction(relpath, prediction)
        except MPAEError as exc:
            self._on_image_failed(relpath, str(exc))
            return
        self.file_model.refresh(relpath)
        if not self._counts_timer.isActive():  # counts are O(images): at most once a second during a run
            self._counts_timer.start()
        self._schedule_save()
        if relpath == self.current:
            self._show_annotation()
            self._update_actions()

    def _on_image_failed(self, relpath: str, message: str) -> None:
        if self.project is None:
            return
        self.project.set_error(relpath, message)
        self.file_model.refresh(relpath)
        self._add_problem(relpath, message)
        self._schedule_save()

    def _on_progress(self, done: int, total: int, rate: float, left: float) -> None:
        self.progress.setValue(done)
        eta = "" if left < 0 else f" · {int(left // 60)}:{int(left % 60):02d} left"
        self.rate_label.setText(f"{rate:.1f} images/s{eta}")

    def _on_prediction_finished(self, summary: PredictionSummary) -> None:
        for widget in (self.progress, self.rate_label, self.cancel_button):
            widget.hide()
        what = "Cancelled" if summary.cancelled else "Done"
        failed = f", {summary.failed} failed (see Problems)" if summary.failed else ""
        self.statusBar().showMessage(f"{what}: {summary.done} of {summary.total} images predicted{failed} in "
                                     f"{summary.seconds:.1f} s", 10000)
        self.save_project()
        self._refresh_counts()
        self.predictionFinished.emit(summary)

    def _on_predict_thread_done(self) -> None:
        self._predict_thread = None
        self._predict_worker = None
        self._update_actions()

    @property
    def loading(self) -> bool:
        return self._load_thread is not None

    @property
    def predicting(self) -> bool:
        return self._predict_thread is not None

