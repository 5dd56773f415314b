"""Corrections teach the model (a mixin of ``MainWindow``): Model ▸ Improve from my corrections, re-predicting the
images nobody touched with the refined model, and Model ▸ Project models to go back to any earlier one.

Refinement runs ``python -m training.run refine`` in a child process (:class:`~app.refine_dialog.RefineDialog`);
the command reads the project from disk, so the window saves it first, and it writes only a new model into the
project's models folder. The window then loads that model through its normal loading path: the model records the
fingerprints it descends from, so the project accepts its slots as the ones it named (no "unknown model" question).

Re-prediction touches only images that are neither edited nor reviewed, with the window's prediction run and a
:class:`~app.workers.RepredictWorker`, which also measures off the GUI thread how much each mask changed. An image
that gets edited or reviewed while the run goes on keeps its prediction too. The summary says how many masks changed
and how many pixels.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QActionGroup
from PySide6.QtWidgets import QMenu, QMessageBox

from mpae_core.annotation import ImageStatus
from mpae_core.annotation.models import ProjectModel, list_models

from .icons import icon
from .refine_dialog import RefineDialog, plural
from .settings import data_dir
from .workers import PredictionSummary, RepredictWorker

logger = logging.getLogger(__name__)

REFINE_TIP = ("Fine-tune the model on the images you edited or reviewed, then re-predict the images nobody touched "
              "(your edits and reviewed images are kept)")


@dataclass
class RepredictReport:
    """What one "Re-predict N unreviewed images" run did, for its summary."""

    total: int  # images asked for
    model: str = ""
    images: int = 0  # stored with the new model's prediction
    changed_images: int = 0  # whose label map changed
    changed_pixels: float = 0.0  # pixels whose label changed (measured on maps of at most 512 px, scaled up)
    pixels: int = 0  # pixels of the stored images
    kept: int = 0  # edited or reviewed during the run: their prediction was not replaced
    failed: int = 0
    cancelled: bool = False

    @property
    def changed_share(self) -> float:
        return self.changed_pixels / self.pixels if self.pixels else 0.0

    def describe(self, edited: int, reviewed: int) -> str:
        """The summary: images whose masks changed, pixels changed, and what was left alone."""
        done = f"Re-predicted {plural(self.images, 'unreviewed image')}"
        if self.model:
            done += f" with '{self.model}'"
        if self.cancelled:
            done += f" (cancelled: {self.total - self.images - self.failed - self.kept} not re-predicted)"
        lines = [done + "."]
        if self.images:
            lines.append(f"Masks changed on {self.changed_images} of them; {self.changed_pixels:,.0f} pixels changed "
                         f"({self.changed_share:.1%} of their pixels).")
        untouched = [plural(count, noun) for count, noun in ((edited, "edited image"), (reviewed, "reviewed image"))
                     if count]
        if untouched:
            lines.append(f"Not touched: your {' and '.join(untouched)}.")
        if self.kept:
            lines.append(f"{plural(self.kept, 'image')} you edited or reviewed during the run kept "
                         f"{'its' if self.kept == 1 else 'their'} earlier prediction.")
        if self.failed:
            lines.append(f"{plural(self.failed, 'image')} could not be read (see Problems).")
        return "\n".join(lines)


def model_label(model: ProjectModel) -> str:
    """A project model in the menu: when it was made, its steps and corrected images ('29 Nov 15:40 · 300 steps ·
    4 corrected images'), or its name and file time when it has no refinement provenance."""
    provenance = model.provenance
    try:
        made = datetime.fromisoformat(str(provenance["created"]))
    except (KeyError, ValueError):
        made = datetime.fromtimestamp(model.modified_ns / 1e9) if model.modified_ns else None
    when = made.strftime("%d %b %H:%M") if made is not None else model.name
    if "steps" not in provenance:
        return f"{model.name} ({when})"
    corrected = int(provenance.get("corrected_images", 0))
    return f"{when} · {plural(int(provenance['steps']), 'step')} · {plural(corrected, 'corrected image')}"


def _same_file(a: Path | None, b: Path | None) -> bool:
    if a is None or b is None:
        return False
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return a == b


class RefineMixin:
    """Model ▸ Improve from my corrections, its re-prediction and Model ▸ Project models.

    ``refine_command_prefix``/``refine_extra_env``/``refine_stop_timeout_s`` are for tests (a stand-in for
    ``python -m training.run``)."""

    refine_command_prefix: list[str] | None = None
    refine_extra_env: dict[str, str] = {}

    def _build_refine_actions(self) -> None:
        self._status_counts: dict[ImageStatus, int] = {}
        self.refine_dialog: RefineDialog | None = None
        self.repredict_box: QMessageBox | None = None
        self._repredict: RepredictReport | None = None
        self._repredict_changes: dict[str, tuple[float, int]] = {}
        self._loading_refined = False  # the refined model is loading: a failure is told in the dialog too
        self.modelFailed.connect(self._on_refined_model_failed)
        self.act_refine = self._action("Improve from my &corrections…", self.show_refine, None, "refine",
                                       tip=REFINE_TIP)
        self.act_refine.setProperty("default_tip", self.act_refine.toolTip())

    def _add_refine_menu(self, menu: QMenu) -> None:
        menu.addAction(self.act_refine)
        self.models_menu = menu.addMenu(icon("models"), "Project &models")
        self.models_menu.setToolTipsVisible(True)
        self.models_menu.aboutToShow.connect(self._fill_models_menu)

    # ================================================================================================ enabled state
    def _refresh_counts(self) -> None:
        super()._refresh_counts()  # type: ignore[misc]
        self._update_refine_action()

    def _corrected_images(self) -> int:
        """Edited or reviewed images: the last counts, or at least the current image when it just got work."""
        counts = self._status_counts
        known = counts.get(ImageStatus.EDITED, 0) + counts.get(ImageStatus.REVIEWED, 0)
        if not known and self.project is not None and self.current in self.project:
            return int(self.project.record(self.current).has_work)
        return known

    def _refine_refusal(self) -> str | None:
        """Why Improve from my corrections cannot run now (None: it can)."""
        if self.project is None:
            return "Open a folder first: refinement learns from your corrected images."
        if self.project.read_only is not None:
            return f"This project is read-only here: {self.project.read_only}."
        if not self.session.loaded:
            return "Load the model you annotate with first (Model ▸ Load checkpoint)."
        if self._model_refusal is not None:
            return self._model_refusal
        if self.loading or self.predicting:
            return "Wait until the model has loaded and no prediction is running."
        if not self._corrected_images():
            return "Edit or review at least one image first: refinement learns from your corrections."
        return None

    def _update_refine_action(self) -> None:
        reason = self._refine_refusal()
        self.act_refine.setEnabled(reason is None)
        self.act_refine.setToolTip(reason or self.act_refine.property("default_tip"))

    # ================================================================================================ refine
    def show_refine(self) -> RefineDialog | None:
        """Save the project, then open the refine dialog over the window (it returns at once; the dialog is kept as
        ``refine_dialog`` while open)."""
        self._status_counts = self.project.status_counts() if self.project is not None else {}
        reason = self._refine_refusal()
        if reason is not None:
            self.statusBar().showMessage(reason, 10000)
            return None
        if not self.save_project():  # the refine command reads the project from disk
            QMessageBox.warning(self, "Cannot refine", "The project could not be saved, so the refinement would not "
                                "see your latest corrections; see the status bar, fix it and try again.")
            return None
        counts = self._status_counts
        dialog = RefineDialog(self, project=self.project.project_dir, checkpoint=self.session.checkpoint,
                              edited=counts[ImageStatus.EDITED], reviewed=counts[ImageStatus.REVIEWED],
                              runs_dir=data_dir() / "runs", device=self.settings.device,
                              backbone_weights=self.settings.backbone_weights,
                              command_prefix=self.refine_command_prefix, extra_env=self.refine_extra_env)
        dialog.modelRefined.connect(self._on_model_refined)
        dialog.repredictRequested.connect(self.repredict_untouched)
        dialog.finished.connect(self._on_refine_dialog_closed)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.setWindowModality(Qt.WindowModality.WindowModal)
        self.refine_dialog = dialog
        dialog.open()
        return dialog

    def _on_refine_dialog_closed(self, _result: int) -> None:
        self.refine_dialog = None

    def _on_model_refined(self, result: dict) -> None:
        """A new model was written: load it as any model is loaded, then offer to re-predict the untouched images."""
        path = Path(str(result["checkpoint"]))
        if self.load_checkpoint(path):
            self._loading_refined = True
            self.after_model_loaded(self._offer_repredict)
        elif self.refine_dialog is not None:
            self.refine_dialog.add_status_line(f"{self.statusBar().currentMessage()} Load it later from Model ▸ "
                                               "Project models.", ok=False)
        self._update_actions()

    def _on_refined_model_failed(self, message: str) -> None:
        if self._loading_refined and self.refine_dialog is not None:
            self.refine_dialog.add_status_line(f"The new model could not be loaded: {message}", ok=False)
        self._loading_refined = False

    def _offer_repredict(self) -> None:
        self._loading_refined = False
        if self.refine_dialog is not None and self.project is not None:
            self.refine_dialog.offer_repredict(len(self.project.untouched_relpaths()))

    # ================================================================================================ re-predict
    def repredict_untouched(self) -> bool:
        """Predict again, with the loaded model, every image nobody edited or reviewed; a summary follows."""
        if self.project is None or not self.session.loaded:
            return False
        relpaths = self.project.untouched_relpaths()
        if not relpaths:
            self.statusBar().showMessage("Every predicted image is edited or reviewed: nothing to re-predict.", 8000)
            return False
        old = {relpath: self.project.prediction_loader(relpath) for relpath in relpaths}

        def make_worker(predictor, items, batch_size: int) -> RepredictWorker:
            worker = RepredictWorker(predictor, items, old, batch_size=batch_size)
            worker.changed.connect(self._on_repredict_changed)
            worker.finished.connect(self._on_repredict_finished)
            return worker

        self._repredict = RepredictReport(total=len(relpaths), model=Path(self.session.name).stem)
        self._repredict_changes.clear()
        if not self._start_prediction(relpaths, make_worker, self._on_repredicted):
            self._repredict = None
            return False
        return True

    def _on_repredict_changed(self, relpath: str, fraction: float, pixels: int) -> None:
        self._repredict_changes[relpath] = (fraction, pixels)

    def _on_repredicted(self, relpath: str, prediction, stamp=None) -> None:
        """Store one new prediction unless a person edited or reviewed the image since the run started."""
        fraction, pixels = self._repredict_changes.pop(relpath, (1.0, 0))
        report = self._repredict
        if self.project is None or relpath not in self.project or report is None:
            return
        if self.project.record(relpath).has_work:
            report.kept += 1
            return
        self._on_predicted(relpath, prediction, stamp)
        if self.project.record(relpath).error is None:  # stored (a refused one is listed in Problems)
            report.images += 1
            report.changed_images += fraction > 0
            report.changed_pixels += fraction * pixels
            report.pixels += pixels
        else:
            report.failed += 1

    def _on_repredict_finished(self, summary: PredictionSummary) -> None:
        report, self._repredict = self._repredict, None
        self._repredict_changes.clear()
        if report is None or self.project is None:
            return
        report.failed += summary.failed
        report.cancelled = summary.cancelled
        counts = self.project.status_counts()
        text = report.describe(counts[ImageStatus.EDITED], counts[ImageStatus.REVIEWED])
        logger.info("%s", text.replace("\n", " "))
        box = QMessageBox(QMessageBox.Icon.Information, "Re-prediction done", text,
                          QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(lambda _result: setattr(self, "repredict_box", None))
        self.repredict_box = box
        box.open()
        self.repredictFinished.emit(report)

    # ================================================================================================ project models
    def project_models(self) -> list[tuple[Path, str]]:
        """(checkpoint, menu label) of the project's models, newest first, then the model(s) it started from."""
        if self.project is None:
            return []
        models = list_models(self.project.models_dir)
        entries = [(m.path, model_label(m)) for m in reversed(models)]
        starts = [self.project.checkpoint, *(m.provenance.get("refined_from") for m in models)]
        for start in starts:
            path = Path(start) if start else None
            if path is None or not path.is_file() or any(_same_file(path, known) for known, _ in entries):
                continue
            entries.append((path, f"Started from: {path.name}"))
        return entries

    def _fill_models_menu(self) -> None:
        menu = self.models_menu
        menu.clear()
        entries = self.project_models()
        if not entries:
            text = "(open a folder first)" if self.project is None else \
                "(none yet: Model ▸ Improve from my corrections makes one)"
            menu.addAction(text).setEnabled(False)
            return
        busy = self.loading or self.predicting
        group = QActionGroup(menu)
        for path, label in entries:
            action = menu.addAction(label)
            action.setCheckable(True)
            action.setChecked(_same_file(path, self.session.checkpoint))
            action.setData(str(path))
            action.setToolTip("Wait for the model loading or prediction run to end." if busy else str(path))
            action.setEnabled(not busy)
            action.triggered.connect(lambda _=False, p=path: self.switch_model(p))
            group.addAction(action)

    def switch_model(self, path: str | Path) -> bool:
        """Load one of the project's models (nothing is predicted again unless asked)."""
        path = Path(path)
        if _same_file(path, self.session.checkpoint):
            return False
        if not self.load_checkpoint(path):
            return False
        self.statusBar().showMessage(f"Loading {path.name}; the masks stay as they are until you predict again.",
                                     8000)
        return True
