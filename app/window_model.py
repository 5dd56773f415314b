"""Loading a checkpoint and predicting images in the background (a mixin of ``MainWindow``).

A model predicts into a project only when it fits the project's part table: another number of parts is refused in
one sentence (nothing changes, Predict stays off); a model with the same number of parts that the table was not
made for is used only after the person chose to keep the names or to start a new table. The project records the
checkpoint once a fitting model has predicted. Each prediction is stored with the model's fingerprint and the
image file's stamp as the worker read it.
"""
from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox

from mpae_core.annotation import FileState, ImageStatus, ModelFit, PartTable
from mpae_core.errors import MPAEError

from . import dialogs, safety_dialogs
from .model_session import LoadRequest, ModelIdentity
from .safety_dialogs import ModelChoice, RepredictChoice
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
        self._load_thread = start_worker(worker, self, on_finished=self._on_load_thread_done)
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

    def _on_model_loaded(self, predictor, request: LoadRequest, identity: ModelIdentity) -> None:
        if self._closing:  # the window closed while the model loaded: nobody asked for it any more
            return
        self.session.attach(predictor, request.checkpoint, identity)
        self.settings.last_checkpoint = str(request.checkpoint)
        if request.backbone_weights is not None:
            self.settings.backbone_weights = str(request.backbone_weights)
        self._save_settings()
        self._refresh_device_status()
        self.statusBar().showMessage(f"Loaded {request.checkpoint.name} on {predictor.device}", 5000)
        self._review_model_fit(interactive=True)
        self.modelLoaded.emit(str(request.checkpoint))
        self._update_actions()
        pending, self._after_load = self._after_load, []
        if self._model_refusal is None:
            for callback in pending:
                callback()

    # ================================================================================================ model fit
    def _model_fit(self) -> ModelFit | None:
        """How the loaded model relates to the open project's part table (None: no project or no model)."""
        identity = self.session.identity
        if self.project is None or not self.session.loaded or identity is None:
            return None
        return self.project.model_fit(self.session.num_parts, identity.fingerprint, identity.lineage)

    def _review_model_fit(self, *, interactive: bool) -> None:
        """After a model was loaded (``interactive``: it may ask) or a folder opened: refuse a model with another
        number of parts, ask about one the part table was not made for. Sets ``_model_refusal``."""
        self._model_refusal = None
        fit = self._model_fit()
        if fit is None or self.project.read_only is not None:
            return
        if fit is ModelFit.WRONG_SIZE:
            self._model_refusal = self.project.describe_misfit(self.session.name, self.session.num_parts)
            logger.warning("%s", self._model_refusal)
            self._update_actions()
            if interactive:
                safety_dialogs.refuse_model(self, self._model_refusal)
            else:
                self.statusBar().showMessage(self._model_refusal, 15000)
        elif fit is ModelFit.UNKNOWN and interactive:
            self._ask_about_unknown_model()

    def _ask_about_unknown_model(self) -> bool:
        """Same number of parts, another model: keep the names, start a new part table, or predict nothing."""
        project, identity, name = self.project, self.session.identity, self.session.name
        parts = project.parts
        roots = [parts.display_name(s) for s in range(parts.num_parts) if parts.root(s) == s]
        names = ", ".join(roots[:4]) + (", …" if len(roots) > 4 else "")
        choice = safety_dialogs.ask_unknown_model(self, name, parts.num_parts, names)
        if self.project is not project or self.session.identity is not identity:
            return False  # the window closed or the model changed while the question was open
        if choice is ModelChoice.KEEP_NAMES:
            project.adopt_model(identity.fingerprint)
            self.statusBar().showMessage(f"'{name}' now predicts with this project's part names.", 8000)
        elif choice is ModelChoice.NEW_TABLE:
            project.adopt_model(identity.fingerprint, self._model_part_table(keep_user_labels_of=parts))
            self._on_parts_changed()
            self.parts_panel.refresh()
            self.statusBar().showMessage(f"New part table from '{name}': names and merges replaced, edits kept.", 8000)
        else:
            self._model_refusal = (f"'{name}' is not the model this project's part names were made for; load it "
                                   "again to choose how to use it.")
            self.statusBar().showMessage(self._model_refusal, 15000)
        self._schedule_save()
        self._update_actions()
        return choice is not ModelChoice.CANCEL

    def _explain_prediction_refusal(self) -> None:
        """Disabled Predict buttons say why when the loaded model does not fit the project."""
        for action in (self.act_predict, self.act_predict_all, self.act_repredict_all):
            default = action.property("default_tip")
            if default is None:
                default = action.toolTip()
                action.setProperty("default_tip", default)
            action.setToolTip(self._model_refusal or default)

    def _model_part_table(self, keep_user_labels_of: PartTable | None = None) -> PartTable:
        """The part table the loaded model suggests; the person's own labels (painted values) are carried over."""
        info = self.session.model.info
        table = PartTable.from_model_info(info.part_names, info.part_colors)
        for label in keep_user_labels_of.user_labels if keep_user_labels_of is not None else ():
            value = table.add_user_label(label.name, label.color)
            table.set_user_label_as_background(value, label.as_background)
        return table

    def _settle_model_for_prediction(self) -> bool:
        """Right before a run: whether the loaded model may predict into the project, adopting it when it fits."""
        if self._model_refusal is not None:
            self.statusBar().showMessage(self._model_refusal, 15000)
            return False
        fit = self._model_fit()
        if fit is ModelFit.WRONG_SIZE:  # the project changed since the model was reviewed
            self._review_model_fit(interactive=True)
            return False
        if fit is ModelFit.UNKNOWN:
            return self._ask_about_unknown_model()
        if fit is ModelFit.NO_TABLE:
            self.project.adopt_model(self.session.identity.fingerprint, self._model_part_table())
            self._on_parts_changed()
            self.parts_panel.refresh()
        else:
            self.project.adopt_model(self.session.identity.fingerprint)  # a refinement joins the family
        return True

    def _on_model_failed(self, kind: str, message: str, request: LoadRequest) -> None:
        if self._closing:  # no dialog after the window closed
            return
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
        """Predict in the background every image without a prediction (``only_missing=False``: every image,
        after asking, see :meth:`repredict_all`)."""
        if self.project is None:
            return
        if not only_missing:
            self.repredict_all()
            return
        wanted = [r.relpath for r in self.project.records() if not r.has_prediction]
        if not wanted:
            self.statusBar().showMessage("Every image already has a prediction (Model ▸ Re-predict every image "
                                         "to redo them).", 8000)
            return
        self._start_prediction(wanted)

    def repredict_all(self) -> None:
        """Predict images again after asking: only the untouched ones, or all; edits and reviewed marks are kept."""
        if self.project is None or not self._can_start_prediction():
            return
        records = list(self.project.records())
        edited = sum(r.has_edits for r in records)
        reviewed = sum(r.status is ImageStatus.REVIEWED for r in records)
        untouched = [r.relpath for r in records if not r.has_work]
        project = self.project
        choice = safety_dialogs.ask_repredict(self, len(records), edited, reviewed, len(untouched))
        if self.project is not project or choice is RepredictChoice.CANCEL:
            return
        wanted = untouched if choice is RepredictChoice.UNTOUCHED else [r.relpath for r in records]
        if wanted:
            self._start_prediction(wanted)
        else:
            self.statusBar().showMessage("Every image has edits or a reviewed mark; nothing was re-predicted.", 8000)

    def _can_start_prediction(self) -> bool:
        if self.project is None or not self.session.loaded:
            QMessageBox.information(self, "No model", "Load a checkpoint first (Model ▸ Load checkpoint).")
            return False
        if self._predict_thread is not None:
            self.statusBar().showMessage("A prediction run is already going.", 5000)
            return False
        if self.project.read_only is not None:
            self.statusBar().showMessage(f"This project is read-only here: {self.project.read_only}.", 10000)
            return False
        return True

    def _start_prediction(self, relpaths: list[str], make_worker=None, on_predicted=None) -> bool:
        """Predict ``relpaths`` in the background. ``make_worker(predictor, items, batch_size)`` may build another
        kind of PredictionWorker (with its own signals connected), ``on_predicted`` take its predictions."""
        if not self._can_start_prediction() or not self._settle_model_for_prediction():
            return False
        self._run_fingerprint = self.session.identity.fingerprint
        items = [(r, self.project.image_path(r)) for r in relpaths]
        worker = (make_worker or PredictionWorker)(self.session.predictor, items, batch_size=self.settings.batch_size)
        worker.predicted.connect(on_predicted or self._on_predicted)
        worker.imageFailed.connect(self._on_image_failed)
        worker.progress.connect(self._on_progress)
        worker.finished.connect(self._on_prediction_finished)
        self._predict_worker = worker
        self.progress.setRange(0, len(items))
        self.progress.setValue(0)
        self.rate_label.setText("starting…")
        for widget in (self.progress, self.rate_label, self.cancel_button):
            widget.show()
        self._predict_thread = start_worker(worker, self, on_finished=self._on_predict_thread_done)
        self._update_actions()
        return True

    def cancel_prediction(self, wait: bool = False) -> None:
        """Stop the run after the current batch (``wait``: block until the thread has ended, e.g. on close)."""
        if self._predict_worker is not None:
            self._predict_worker.cancel()
            self.rate_label.setText("cancelling…")
        if wait and self._predict_thread is not None:
            self._predict_thread.wait()
            QApplication.processEvents()

    def _on_predicted(self, relpath: str, prediction, stamp=None) -> None:
        if self.project is None:
            return
        before = self.project.record(relpath) if relpath in self.project else None
        try:
            self.project.set_prediction(relpath, prediction, model=self._run_fingerprint, stamp=stamp)
        except MPAEError as exc:
            self._on_image_failed(relpath, str(exc))
            return
        self.project.set_checkpoint(self.session.checkpoint)  # recorded once a fitting model has predicted
        if before is not None and (before.error or before.file_state is not FileState.UNCHANGED):
            self._remove_problem(relpath)
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
        self.saver.save_in_background()
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

