"""The Train dialog: starts ``python -m training.run train`` as a separate process and follows its run folder.

Training runs in a child process, never in the app: the app stays responsive, a crash in training cannot take the
annotations down, and the exact command is shown so it can be copied to a terminal or a cluster job. The dialog
never imports ``training``; it reads what the run writes (``config.json``, ``metrics.jsonl``, ``checkpoints/``).
Stop sends SIGTERM, which the trainer turns into a resumable checkpoint; a kill follows only after a timeout.
"""
from __future__ import annotations

import logging
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                               QPushButton, QSpinBox, QSplitter, QToolButton, QVBoxLayout, QWidget)

from mpae_core.errors import MissingWeights

from .dialogs import FileField, button_row, command_row, dismiss_button, missing_weights_sentence
from .icons import icon
from .loss_plot import LossPlot
from .run_dialog import RunDialog
from .settings import AppSettings
from .training_output import LAST_STATE, format_command, format_duration, loss_terms, run_checkpoint

logger = logging.getLogger(__name__)

#: The training presets (kept in step with training/presets.py by hand: the app must not import training).
DEFAULT_PRESETS: tuple[str, ...] = ("folder", "synthetic", "cub", "celeba", "partimagenet_ood", "partimagenet_seg")
#: Presets that train from random frozen networks (training/presets.py): no weights files apply to them.
PRESETS_WITHOUT_WEIGHTS = frozenset({"synthetic"})
#: The weights fields, by the command-line option they fill.
WEIGHT_LABELS = {"--backbone-weights": "Backbone weights", "--vgg-weights": "VGG-19 weights"}
#: Evaluation scores drawn unless chosen otherwise (the rest, e.g. foreground-only ones, from the context menu).
EVAL_SERIES = ("nmi", "ari")


# ----- the dialog -----------------------------------------------------------------------------------------------------
class TrainDialog(RunDialog):
    """Configure, start, follow and stop a training run; offers the resulting checkpoint to the caller.

    ``command_prefix`` replaces ``[python, "-m", "training.run"]`` (tests run a fake trainer script with it).
    ``settings`` (the app's) prefills the backbone and VGG-19 weights fields, and remembers the files chosen there.
    Signals: ``started()`` when the process is running, ``trainingFinished(exit_code)`` when it ended (-1 for a
    crash or a failed start), ``checkpointChosen(path)`` when the user loads the run's checkpoint. (Not named
    ``finished``: QDialog already has ``finished(int)`` for its own close result.)
    """

    started = Signal()
    trainingFinished = Signal(int)
    checkpointChosen = Signal(str)
    CLOSE_QUESTION = ("Training is running",
                      "Training is still running. Stop it and close? A resumable checkpoint is saved.")

    def __init__(self, parent: QWidget | None = None, *, data_folder: str | os.PathLike | None = None,
                 runs_dir: str | os.PathLike | None = None, presets: Sequence[str] | None = None,
                 device: str = "auto",
                 python: str = sys.executable, extra_env: dict[str, str] | None = None,
                 command_prefix: Sequence[str] | None = None, working_dir: str | os.PathLike | None = None,
                 stop_timeout_s: float = 15.0, settings: AppSettings | None = None) -> None:
        super().__init__(parent, python=python, command_prefix=command_prefix, extra_env=extra_env,
                         working_dir=working_dir, stop_timeout_s=stop_timeout_s)
        self.setWindowTitle("Train a model")
        self.setWindowIcon(icon("train"))
        self.resize(860, 720)
        self._python = python
        self._runs_dir = Path(runs_dir) if runs_dir is not None else Path.home() / "mpae-runs"
        self._epoch_steps: float | None = None
        self._run_dir_auto = True
        self._settings = settings

        self._build(list(presets) if presets else list(DEFAULT_PRESETS), data_folder, device)
        self._update_command()
        self._update_buttons()

    # ----- layout ---------------------------------------------------------------------------------------------------
    def _build(self, presets: list[str], data_folder: str | os.PathLike | None, device: str) -> None:
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)

        self.data_edit = QLineEdit(str(data_folder) if data_folder else "")
        self.data_edit.setPlaceholderText("folder of training images (synthetic: generated here if empty)")
        form.addRow("Data folder:", self._with_browse(self.data_edit, self._browse_data))

        self.preset_combo = QComboBox()
        self.preset_combo.addItems(presets)
        self.preset_combo.setCurrentIndex(presets.index("folder") if "folder" in presets else 0)
        self.preset_combo.setToolTip("The reference recipe (model size, K, epochs, learning rate) to train with; "
                                     "'folder' suits any folder of images.")
        form.addRow("Preset:", self.preset_combo)

        self.run_edit = QLineEdit(str(self._fresh_run_dir()))
        self.run_edit.setToolTip("Where config.json, metrics.jsonl and checkpoints/ are written.")
        form.addRow("Run folder:", self._with_browse(self.run_edit, self._browse_run))

        remembered = self._settings or AppSettings()
        self.backbone_field = FileField("DINOv2 backbone weights", remembered.backbone_weights,
                                        placeholder="empty: the download cache (needs internet the first time)")
        self.backbone_field.setToolTip("model.safetensors of timm/vit_base_patch14_reg4_dinov2.lvd142m, for presets "
                                       "that start from the pretrained DINOv2 backbone ('synthetic' needs none).")
        self.vgg_field = FileField("VGG-19 weights", remembered.vgg_weights,
                                   placeholder="empty: the download cache (needs internet the first time)")
        self.vgg_field.setToolTip("model.safetensors of timm/vgg19.tv_in1k: the perceptual loss of training.")
        form.addRow(WEIGHT_LABELS["--backbone-weights"] + ":", self.backbone_field)
        form.addRow(WEIGHT_LABELS["--vgg-weights"] + ":", self.vgg_field)
        self._weight_fields = {"--backbone-weights": self.backbone_field, "--vgg-weights": self.vgg_field}

        self.device_combo = self._device_combo(device)
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(0, 100000)
        self.epochs_spin.setSpecialValueText("preset")
        self.epochs_spin.setToolTip("Number of epochs; 'preset' (0) keeps the preset's.")
        row = QHBoxLayout()
        row.addWidget(self.device_combo, 1)
        row.addWidget(QLabel("Epochs:"))
        row.addWidget(self.epochs_spin)
        form.addRow("Device:", row)

        self.resume_check = QCheckBox("Resume from the run folder's last checkpoint")
        form.addRow("", self.resume_check)

        self.extra_edit = QLineEdit()
        self.extra_edit.setPlaceholderText("advanced: extra arguments, e.g. --batch-size 16 --lr 1e-4 --amp bf16")
        form.addRow("Extra arguments:", self.extra_edit)

        self.command_edit, row = command_row("The command that Start runs; copy it to train from a terminal instead.")
        form.addRow("Command:", row)

        self.plot = LossPlot()
        self.eval_plot = LossPlot(visible=EVAL_SERIES, log_y=False, x_label="step · test scores in %")
        self.eval_plot.setMinimumWidth(200)
        self.eval_plot.setToolTip("Test-set scores after each evaluation (presets with part labels).")
        self.eval_plot.hide()  # shown with the first evaluation; a folder of photos has none
        plots = QSplitter(Qt.Orientation.Horizontal)
        plots.addWidget(self.plot)
        plots.addWidget(self.eval_plot)
        plots.setStretchFactor(0, 3)
        plots.setStretchFactor(1, 2)
        splitter = self._build_shared(plots, "Choose the data and a preset, then Start.", log_stretch=2)
        self.progress_label = QLabel()  # tqdm's live line
        self.progress_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress_label.hide()

        self.start_button = QPushButton(icon("train"), "Start")
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton(icon("stop"), "Stop")
        self.stop_button.setToolTip("Stop training; a resumable checkpoint is saved first.")
        self.stop_button.clicked.connect(self.stop)
        self.load_button = QPushButton(icon("load"), "Load this checkpoint")
        self.load_button.clicked.connect(self._load_checkpoint)
        self.close_button = dismiss_button(self, "Close")
        buttons = button_row([self.start_button, self.stop_button], [self.load_button, self.close_button])

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error_label)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.progress)
        layout.addWidget(self.progress_label)
        layout.addWidget(self.status_label)
        layout.addLayout(buttons)

        for edit in (self.data_edit, self.extra_edit, self.backbone_field.edit, self.vgg_field.edit):
            edit.textChanged.connect(self._update_command)
        self.run_edit.textChanged.connect(self._run_dir_edited)
        self.run_edit.textEdited.connect(lambda _: setattr(self, "_run_dir_auto", False))
        self.preset_combo.currentTextChanged.connect(self._preset_changed)
        self.device_combo.currentTextChanged.connect(self._update_command)
        self.epochs_spin.valueChanged.connect(self._update_command)
        self.resume_check.toggled.connect(self._update_command)

    def _with_browse(self, edit: QLineEdit, slot) -> QHBoxLayout:
        row = QHBoxLayout()
        row.addWidget(edit, 1)
        button = QToolButton()
        button.setIcon(icon("open_folder"))
        button.setToolTip("Browse…")
        button.clicked.connect(slot)
        row.addWidget(button)
        return row

    def _browse_data(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Training images", self.data_edit.text())
        if folder:
            self.data_edit.setText(folder)

    def _browse_run(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Run folder", str(self.run_dir().parent))
        if folder:
            self._run_dir_auto = False
            self.run_edit.setText(folder)

    def _fresh_run_dir(self) -> Path:
        preset = self.preset_combo.currentText() if hasattr(self, "preset_combo") else "folder"
        return self._runs_dir / f"{preset}-{time.strftime('%Y%m%d-%H%M%S')}"

    def _preset_changed(self) -> None:
        if self._run_dir_auto:
            self.run_edit.setText(str(self._fresh_run_dir()))
        self._update_command()
        self._update_buttons()

    def _weights_apply(self) -> bool:
        """Whether the preset loads pretrained weights (the weights fields matter), unlike the random 'synthetic'."""
        return self.preset_combo.currentText() not in PRESETS_WITHOUT_WEIGHTS

    def _run_dir_edited(self) -> None:
        can_resume = (self.run_dir() / LAST_STATE).is_file()
        self.resume_check.setEnabled(can_resume and not self.is_running())
        if not can_resume:
            self.resume_check.setChecked(False)
        self._update_command()

    # ----- state ----------------------------------------------------------------------------------------------------
    def run_dir(self) -> Path:
        return Path(self.run_edit.text().strip()).expanduser()

    @property
    def _stop_requested(self) -> bool:
        return self._run is not None and self._run.stop_requested

    def extra_arguments(self) -> list[str]:
        """The advanced line split like a shell would; raises ValueError on an unclosed quote."""
        return shlex.split(self.extra_edit.text(), posix=os.name != "nt")

    def command(self) -> list[str]:
        """The full command line that Start runs."""
        args = [*self._command_prefix, "train", "--preset", self.preset_combo.currentText()]
        data = self.data_edit.text().strip()
        if data:
            args += ["--data-root", str(Path(data).expanduser())]
        args += ["--out", str(self.run_dir())]
        device = self.device_combo.currentText().strip()
        if device and device != "auto":
            args += ["--device", device]
        for option, field in self._weight_fields.items():
            if field.path() is not None and self._weights_apply():
                args += [option, str(field.path())]
        if self.epochs_spin.value() > 0:
            args += ["--epochs", str(self.epochs_spin.value())]
        if self.resume_check.isChecked():
            args.append("--resume")
        args += self.extra_arguments()
        return args

    def _update_buttons(self) -> None:
        running = self.is_running()
        for widget in (self.data_edit, self.preset_combo, self.run_edit, self.device_combo, self.epochs_spin,
                       self.extra_edit):
            widget.setEnabled(not running)
        for field in self._weight_fields.values():
            field.setEnabled(not running and self._weights_apply())
        self.resume_check.setEnabled(not running and (self.run_dir() / LAST_STATE).is_file())
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running and not self._stop_requested)
        self.load_button.setEnabled(not running and self._exit_code is not None
                                    and run_checkpoint(self.run_dir()) is not None)

    # ----- start ----------------------------------------------------------------------------------------------------
    def _validate(self) -> str | None:
        """One sentence saying what blocks a start, or None."""
        try:
            self.extra_arguments()
        except ValueError:
            return "The extra arguments have an unclosed quote; close it or remove the argument."
        data = self.data_edit.text().strip()
        preset = self.preset_combo.currentText()
        if not data:
            return "Choose the data folder to train on (for 'synthetic', an empty folder where it is generated)."
        if preset != "synthetic" and not Path(data).expanduser().is_dir():
            return f"The data folder '{data}' does not exist; choose a folder of training images."
        for option, field in self._weight_fields.items():
            if self._weights_apply() and field.path() is not None and not field.path().is_file():
                return (f"The {WEIGHT_LABELS[option]} file '{field.path()}' does not exist; choose the file, or "
                        "empty the field to use the download cache.")
        if not self.run_edit.text().strip():
            return "Choose a run folder where the checkpoints will be written."
        run_dir = self.run_dir()
        if run_dir.exists() and not run_dir.is_dir():
            return f"The run folder '{run_dir}' is a file; choose a folder."
        if not self.resume_check.isChecked() and (run_dir / LAST_STATE).exists():
            return (f"The run folder '{run_dir}' already holds a training run; tick Resume to continue it or "
                    "choose a new run folder.")
        return None

    def start(self) -> bool:
        """Start training with the current settings; False (and a message) if something blocks it."""
        if self.is_running():
            return False
        problem = self._validate()
        self._show_error(problem or "")
        if problem:
            return False
        command = self.command()
        run_dir = self.run_dir()
        self._remember_weights()
        self._reset_run_state()
        self.plot.clear()
        self.eval_plot.clear()
        self.eval_plot.hide()
        self.log_view.clear()
        self._append_log(f"$ {format_command(command)}")

        run = self._new_run()
        run.transient.connect(self._show_transient)
        self._set_status(f"Training in {run_dir}…")
        self._update_buttons()
        if run.start(command, run_dir):
            self._update_buttons()
            self.started.emit()
            return True
        return False  # _on_ended reported why

    def _reset_run_state(self) -> None:
        self._exit_code = None
        self._epoch_steps = None
        self._last_record = None
        self.progress_label.clear()
        self.progress_label.hide()

    # ----- output and metrics ---------------------------------------------------------------------------------------
    def _append_log(self, line: str) -> None:
        self.log_view.appendPlainText(line)

    def _show_transient(self, text: str) -> None:
        self.progress_label.setText(text)
        self.progress_label.show()

    def poll_metrics(self) -> int:
        """Read the run's new metrics lines into the plot and progress bar; returns how many records arrived."""
        return self._run.poll() if self._run is not None else 0

    def _take_record(self, record: dict[str, Any]) -> None:
        step = record.get("step")
        if isinstance(step, (int, float)) and record.get("kind", "train") == "eval":
            epoch = record.get("epoch")
            if isinstance(epoch, (int, float)) and epoch > 0:
                self._epoch_steps = step / epoch
            scores = loss_terms(record)
            self._append_log(f"evaluation after epoch {epoch}: "
                             + ", ".join(f"{k} {v:.2f}" for k, v in scores.items()))
            for key, value in scores.items():
                self.eval_plot.add_point(key, step, value)
            self.eval_plot.setVisible(bool(scores))
            return
        super()._take_record(record)

    def _steps_per_epoch(self) -> float | None:
        return self._epoch_steps

    # ----- stop -----------------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the trainer to stop (SIGTERM: it saves a resumable checkpoint); kill it if it is still alive after
        the timeout. On Windows terminate() cannot signal a console process, so the kill is what stops it there."""
        if self._run is None or not self._run.stop():
            return
        self.status_label.setText("Stopping: the trainer is saving a resumable checkpoint…")
        self._append_log("Stop requested (SIGTERM).")
        self._update_buttons()

    # ----- end ------------------------------------------------------------------------------------------------------
    def _on_ended(self, code: int, crashed: bool) -> None:
        run = self._run
        assert run is not None
        if run.start_error is not None:
            self._finish(-1, run.start_error, ok=False)
            return
        elapsed = format_duration(run.elapsed())
        missing = None
        if run.stop_requested:
            if run.killed:
                self._append_log(f"Still running after {run.stop_timeout_s:.0f} s: killed.")
                message = (f"Stopped by force after {run.stop_timeout_s:.0f} s; the last checkpoint saved "
                           "before that can still be resumed.")
            else:
                message = f"Stopped after {elapsed}; tick Resume and Start to continue this run."
        elif code == 0:
            message = f"Training finished in {elapsed}."
        else:
            missing = self._missing_weights()
            message = self._failure("Training", crashed, code, elapsed) if missing is None else self._advice(missing)
        self._finish(code, message, ok=run.stop_requested or code == 0)
        if missing is not None:
            self._weight_fields[missing.option].edit.setFocus()  # the field to fill (enabled again by _finish)

    def _missing_weights(self) -> MissingWeights | None:
        """The pretrained weights the run stopped for want of (from its error output), if that is why."""
        missing = MissingWeights.from_message("\n".join(self._run.stderr_tail if self._run is not None else []))
        return missing if missing is not None and missing.option in self._weight_fields else None

    @staticmethod
    def _advice(missing: MissingWeights) -> str:
        """Missing weights in this dialog's terms: its fields, not the command line's options."""
        return (f"Training could not start: {missing_weights_sentence(missing)} Download model.safetensors from "
                f"{missing.url} (on any machine with internet), choose it in '{WEIGHT_LABELS[missing.option]}' "
                "above, and Start again.")

    def _remember_weights(self) -> None:
        """The weights files chosen here become the app's remembered ones (the backbone file also loads models)."""
        if self._settings is None:
            return
        if self.backbone_field.text():
            self._settings.backbone_weights = self.backbone_field.text()
        if self.vgg_field.text():
            self._settings.vgg_weights = self.vgg_field.text()

    def _finish(self, code: int, message: str, *, ok: bool) -> None:
        self._exit_code = code
        checkpoint = run_checkpoint(self.run_dir())
        if checkpoint is not None:
            message += f"\nCheckpoint: {checkpoint}"
            self.load_button.setToolTip(str(checkpoint))
        self._set_status(message, ok=ok)
        self._finish_progress(code == 0 and not self._stop_requested)
        self.progress_label.clear()
        self.progress_label.hide()
        self._append_log(message.splitlines()[0])
        logger.info("Training ended with code %s: %s", code, message.splitlines()[0])
        self._update_buttons()
        self.trainingFinished.emit(code)
        self._closed_after_run()

    def _load_checkpoint(self) -> None:
        checkpoint = run_checkpoint(self.run_dir())
        if checkpoint is None:
            self._show_error(f"The run folder '{self.run_dir()}' has no checkpoint; train first.")
            self._update_buttons()
            return
        self.checkpointChosen.emit(str(checkpoint))
        self.accept()

    # ----- closing --------------------------------------------------------------------------------------------------
    def _end_for_close(self) -> None:
        self.stop()  # a resumable checkpoint is saved first
