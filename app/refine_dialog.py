"""Model ▸ Improve from my corrections: runs ``python -m training.run refine`` on the open project and follows it.

Like training, refinement runs in a child process (:class:`~app.run_process.RunProcess`): the window stays
responsive, a crash there cannot touch the annotations, and the command is shown to copy. The command reads the
project from disk (the window saves it first) and writes only a new model into the project's models folder and the
run folder; the project's index, edits and predictions are never written by it.

Stop ends the run after the current step and keeps what was learned (exit 0, a new model); Cancel sends a second
signal and nothing is written (exit 130). Bad input (no corrected image, a missing checkpoint, another number of
parts, a corrected image whose file vanished) makes the command exit 1 with one sentence, which the dialog shows as
it is. When a model was made, ``modelRefined(result)`` carries ``RUN/result.json``; the window loads that model and
calls :meth:`RefineDialog.offer_repredict` with the number of unreviewed images, and the dialog offers
"Re-predict N unreviewed images" (``repredictRequested``) or Later.

Run folders go to the app's data folder (``<data>/runs/refine-<folder>-<time>``) beside the Train dialog's runs,
not into the project: the model that matters is already in ``.mpae/models`` with its provenance (steps, corrected
images, agreement, lineage), while a run folder holds a second copy of it and a log, which would only double the
size of a project folder that people copy and share.
"""
from __future__ import annotations

import json
import logging
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton, QSpinBox, QVBoxLayout, QWidget

from .dialogs import button_row, command_row, dismiss_button, info_label
from .icons import icon
from .loss_plot import LossPlot
from .run_dialog import RunDialog
from .training_output import format_command, format_duration

logger = logging.getLogger(__name__)

#: The refine command's default number of steps (training/refine/loop.py RefineConfig.steps; kept in step by hand).
DEFAULT_STEPS = 600
#: Loss curves drawn unless chosen otherwise: what is optimised, the corrections' term and the MPAE terms.
REFINE_SERIES = ("total", "supervised", "mpae_total")
ERROR_PREFIX = "error: "  # how ``training.run`` prints the one sentence of a refusal
CANCELLED = 130
#: Saving after a Stop evaluates the corrected images and writes the model: allow more than a train step.
STOP_TIMEOUT_S = 120.0


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def refine_run_dir(runs_dir: str | os.PathLike, project_folder: str | os.PathLike) -> Path:
    """A new run folder for refining the project of ``project_folder`` (named after its image folder)."""
    folder = Path(project_folder)
    name = folder.parent.name if folder.name == ".mpae" else folder.name
    return Path(runs_dir) / f"refine-{name or 'project'}-{time.strftime('%Y%m%d-%H%M%S')}"


class RefineDialog(RunDialog):
    """Start, follow, stop or cancel one refinement of the open project's model, then offer to re-predict.

    ``project`` is the project folder (``.mpae``); ``checkpoint`` the model to refine (None: the project's);
    ``edited``/``reviewed`` the corrected images the person made (shown, the command counts them again).
    ``command_prefix`` replaces ``[python, "-m", "training.run"]``.
    Signals: ``started()``; ``refineFinished(code)`` (-1: crashed or not started); ``modelRefined(result)`` with
    ``result.json`` when a new model was written; ``repredictRequested()`` when the person asks to re-predict.
    """

    started = Signal()
    refineFinished = Signal(int)
    modelRefined = Signal(dict)
    repredictRequested = Signal()
    CLOSE_QUESTION = ("Refinement is running",
                      "The refinement is still running. Cancel it and close? No model is written.")

    def __init__(self, parent: QWidget | None = None, *, project: str | os.PathLike,
                 checkpoint: str | os.PathLike | None, edited: int, reviewed: int, runs_dir: str | os.PathLike,
                 device: str = "auto", backbone_weights: str | None = None, python: str = sys.executable,
                 command_prefix: Sequence[str] | None = None, extra_env: dict[str, str] | None = None,
                 working_dir: str | os.PathLike | None = None, stop_timeout_s: float = STOP_TIMEOUT_S) -> None:
        super().__init__(parent, python=python, command_prefix=command_prefix, extra_env=extra_env,
                         working_dir=working_dir, stop_timeout_s=stop_timeout_s)
        self.setWindowTitle("Improve the model from your corrections")
        self.setWindowIcon(icon("refine"))
        self.resize(820, 640)
        self.project = Path(project)
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.backbone_weights = backbone_weights
        self._runs_dir = Path(runs_dir)
        self._run_dir = refine_run_dir(self._runs_dir, self.project)
        self.result: dict[str, Any] | None = None
        self._build(edited, reviewed, device)
        self._clock = QTimer(self, interval=1000, timeout=self._show_elapsed)
        self._update_command()
        self._update_buttons()

    # ----- layout ---------------------------------------------------------------------------------------------------
    def _build(self, edited: int, reviewed: int, device: str) -> None:
        model = self.checkpoint.name if self.checkpoint is not None else "the project's model"
        corrected = edited + reviewed
        self.intro = info_label(
            f"Fine-tunes <b>{model}</b> on the {plural(corrected, 'image')} you corrected ({edited} edited, "
            f"{reviewed} reviewed), while keeping its parts consistent on the other images of the project. The new "
            "model is saved in the project's models folder beside the earlier ones (Model ▸ Project models goes "
            "back to any of them); your annotations are not changed.")
        self.intro.setTextFormat(Qt.TextFormat.RichText)
        self.corrected_count = corrected

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, 100000)
        self.steps_spin.setValue(DEFAULT_STEPS)
        self.steps_spin.setToolTip("Optimiser steps; Stop ends earlier and keeps what was learned.")
        self.device_combo = self._device_combo(device)
        row = QHBoxLayout()
        row.addWidget(self.steps_spin)
        row.addWidget(QLabel("Device:"))
        row.addWidget(self.device_combo, 1)
        form.addRow("Steps:", row)
        self.extra_edit = QLineEdit()
        self.extra_edit.setPlaceholderText("advanced: extra arguments, e.g. --seconds 300 --lr 2e-4 --batch-size 8")
        form.addRow("Extra arguments:", self.extra_edit)
        self.command_edit, row = command_row("The command that Start runs; copy it to refine from a terminal instead.")
        form.addRow("Command:", row)

        self.plot = LossPlot(visible=REFINE_SERIES)
        self.plot.setToolTip("Loss of each step: 'supervised' is how far the model is from your corrections, "
                             "'mpae_total' the terms that keep parts consistent. Right-click for more curves.")
        splitter = self._build_shared(self.plot, "Start refines the model; it takes a few minutes on a GPU.",
                                      log_stretch=1)

        self.start_button = QPushButton(icon("refine"), "Start")
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton(icon("stop"), "Stop")
        self.stop_button.setToolTip("End after the current step and keep what was learned as a new model.")
        self.stop_button.clicked.connect(self.stop)
        self.cancel_run_button = QPushButton(icon("cancel"), "Cancel run")
        self.cancel_run_button.setToolTip("End now and keep nothing: no model is written.")
        self.cancel_run_button.clicked.connect(self.cancel_run)
        self.repredict_button = QPushButton(icon("predict_all"), "Re-predict")
        self.repredict_button.setToolTip("Predict again every image nobody edited or reviewed, with the new model; "
                                         "edited and reviewed images are not touched.")
        self.repredict_button.clicked.connect(self._request_repredict)
        self.repredict_button.hide()
        self.close_button = dismiss_button(self, "Close")
        buttons = button_row([self.start_button, self.stop_button, self.cancel_run_button],
                             [self.repredict_button, self.close_button])

        layout = QVBoxLayout(self)
        layout.addWidget(self.intro)
        layout.addLayout(form)
        layout.addWidget(self.error_label)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.progress)
        layout.addWidget(self.status_label)
        layout.addLayout(buttons)
        self.extra_edit.textChanged.connect(self._update_command)
        self.steps_spin.valueChanged.connect(self._update_command)
        self.device_combo.currentTextChanged.connect(self._update_command)

    # ----- state ----------------------------------------------------------------------------------------------------
    def run_dir(self) -> Path:
        return self._run_dir

    def command(self) -> list[str]:
        """The full command line that Start runs (ValueError: the extra arguments have an unclosed quote)."""
        args = [*self._command_prefix, "refine", "--project", str(self.project), "--out", str(self._run_dir),
                "--steps", str(self.steps_spin.value())]
        if self.checkpoint is not None:
            args += ["--checkpoint", str(self.checkpoint)]
        if self.backbone_weights:
            args += ["--backbone-weights", str(self.backbone_weights)]
        device = self.device_combo.currentText().strip()
        if device and device != "auto":
            args += ["--device", device]
        return args + shlex.split(self.extra_edit.text(), posix=os.name != "nt")

    def _update_buttons(self) -> None:
        running = self.is_running()
        stopping = running and (self._run.stop_requested or self._run.cancel_requested)
        for widget in (self.steps_spin, self.device_combo, self.extra_edit):
            widget.setEnabled(not running and self.result is None)
        self.start_button.setVisible(self.result is None)
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running and not stopping)
        self.cancel_run_button.setEnabled(running and not self._run.cancel_requested)
        self.close_button.setText("Later" if self.repredict_button.isVisible() else "Close")

    # ----- start ----------------------------------------------------------------------------------------------------
    def start(self) -> bool:
        """Start refining; False (and a sentence) if it cannot start."""
        if self.is_running() or self.result is not None:
            return False
        try:
            command = self.command()
        except ValueError:
            self._show_error("The extra arguments have an unclosed quote; close it or remove the argument.")
            return False
        self._show_error("")
        self._run_dir = refine_run_dir(self._runs_dir, self.project)  # a new folder for every try
        command = self.command()
        self._update_command()
        self._last_record, self._exit_code = None, None
        self.plot.clear()
        self.log_view.clear()
        self.log_view.appendPlainText(f"$ {format_command(command)}")
        run = self._new_run()
        corrected = plural(self.corrected_count, 'corrected image')
        self._set_status(f"Preparing: loading the model and reading the {corrected}…")
        if not run.start(command, self._run_dir):
            return False  # _on_ended said why
        self._clock.start()
        self._update_buttons()
        self.started.emit()
        return True

    # ----- progress -------------------------------------------------------------------------------------------------
    def _show_elapsed(self) -> None:
        if self._run is None or not self.is_running():
            return
        elapsed = format_duration(self._run.elapsed())
        if self._run.cancel_requested:
            self._set_status(f"Cancelling… ({elapsed})")
        elif self._run.stop_requested:
            self._set_status(f"Stopping after this step and saving what was learned… ({elapsed})")
        elif self._last_record is not None:
            self._set_status(f"Refining from {plural(self.corrected_count, 'corrected image')} · {elapsed} elapsed")

    # ----- stop and cancel ------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """End after the current step; what was learned is saved as a new model."""
        if self._run is not None and self._run.stop():
            self.log_view.appendPlainText("Stop requested: finishing this step, then saving.")
            self._show_elapsed()
            self._update_buttons()

    def cancel_run(self) -> None:
        """End now; no model is written."""
        if self._run is not None and self._run.cancel():
            self.log_view.appendPlainText("Cancel requested: nothing will be saved.")
            self._show_elapsed()
            self._update_buttons()

    # ----- end ------------------------------------------------------------------------------------------------------
    def _on_ended(self, code: int, crashed: bool) -> None:
        run = self._run
        assert run is not None
        self._clock.stop()
        self._exit_code = code
        result = self._read_result() if code == 0 else None
        elapsed = format_duration(run.elapsed())
        if run.start_error is not None:
            self._show_error(run.start_error)
            self._set_status("Not started.", ok=False)
        elif result is not None:
            self.result = result
            self._set_status(self.describe_result(result, elapsed))
        elif code == 0:
            self._set_status(f"The refinement ended without its result file '{self._run_dir / 'result.json'}'; see "
                             "the log.", ok=False)
        elif run.cancel_requested or code == CANCELLED or (run.stop_requested and crashed):
            self._set_status("Cancelled: no model was written; the project is unchanged.")
        else:
            self._show_error(self._refusal() or self._failure("The refinement", crashed, code, elapsed,
                                                              "no model was written"))
            self._set_status("Nothing was changed.", ok=False)
        self._finish_progress(result is not None and not result.get("stopped_early"))
        self.log_view.appendPlainText(self.status_label.text().splitlines()[0])
        self._update_buttons()
        self.refineFinished.emit(code)
        if result is not None:
            self.modelRefined.emit(result)
        self._closed_after_run()

    def _read_result(self) -> dict[str, Any] | None:
        try:
            result = json.loads((self._run_dir / "result.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            logger.warning("No readable result.json in %s: %s", self._run_dir, exc)
            return None
        return result if isinstance(result, dict) and result.get("checkpoint") else None

    def _refusal(self) -> str | None:
        """The command's one sentence saying why it refused (bad input), without its ``error:`` prefix."""
        tail = self._run.stderr_tail if self._run is not None else []
        for line in reversed(tail):
            if line.startswith(ERROR_PREFIX):
                return line[len(ERROR_PREFIX):].strip()
        return None

    @staticmethod
    def describe_result(result: dict[str, Any], elapsed: str = "") -> str:
        """What the run made, in a sentence or two: the new model, steps, and agreement with the corrections."""
        name = Path(str(result.get("checkpoint", "the new model"))).stem
        steps = result.get("steps", 0)
        how = f"Stopped after {plural(steps, 'step')}" if result.get("stopped_early") else \
            f"Done: {plural(steps, 'step')}"
        if elapsed:
            how += f" in {elapsed}"
        corrected = plural(int(result.get("corrected_images", 0)), "corrected image")
        text = f"{how} from {corrected}. New model '{name}' is saved in the project's models folder."
        before, after = result.get("agreement_before"), result.get("agreement_after")
        if isinstance(before, (int, float)) and isinstance(after, (int, float)):
            text += f"\nAgreement with your corrections: {before:.1f} % before, {after:.1f} % now."
            if after < before:  # it learns what carries over to other images, not each corrected pixel
                text += " Your corrected images keep your masks."
        return text

    # ----- re-predict offer -----------------------------------------------------------------------------------------
    def offer_repredict(self, count: int) -> None:
        """After a new model: offer to re-predict the ``count`` images nobody edited or reviewed (Later closes)."""
        self.repredict_button.setText(f"Re-predict {plural(count, 'unreviewed image')}" if count else
                                      "No unreviewed images to re-predict")
        waiting = (f"{plural(count, 'image')} that nobody edited or reviewed still "
                   f"{'shows' if count == 1 else 'show'} the old model's masks." if count else
                   "Every predicted image is edited or reviewed: nothing to re-predict.")
        self.add_status_line(f"The new model is loaded. {waiting}")
        self.repredict_button.setEnabled(count > 0)
        self.repredict_button.setDefault(count > 0)
        self.repredict_button.show()
        self._update_buttons()

    def add_status_line(self, text: str, *, ok: bool = True) -> None:
        """One more line under what the run made (the window says whether it could load the model)."""
        self._set_status(f"{self.status_label.text()}\n{text}", ok=ok)

    def _request_repredict(self) -> None:
        self.repredictRequested.emit()
        self.accept()

    # ----- closing --------------------------------------------------------------------------------------------------
    def _end_for_close(self) -> None:
        self.cancel_run()  # closing keeps nothing: a half-refined model is not what anyone asked for
