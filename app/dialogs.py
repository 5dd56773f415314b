"""Small dialogs: keyboard shortcuts (built from the window's actions, so never out of date), About, and the
"backbone weights missing" prompt that lets the user point at a local file instead of downloading."""
from __future__ import annotations

import platform
from pathlib import Path
from typing import Iterable

from PySide6.QtGui import QAction
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFileDialog, QHBoxLayout, QHeaderView, QLabel,
                               QMessageBox, QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

import mpae_core

BACKBONE_HELP = (
    "MPAE needs the frozen DINOv2 backbone weights. Either let timm download them once (needs internet; they are "
    "cached), or download <b>vit_base_patch14_reg4_dinov2</b> weights (the timm/Hugging Face "
    "<i>timm/vit_base_patch14_reg4_dinov2.lvd142m</i> <tt>model.safetensors</tt>) on another machine and choose "
    "the file here. The choice is remembered; the <tt>MPAE_BACKBONE_WEIGHTS</tt> environment variable works too."
)


class ShortcutsDialog(QDialog):
    """Every action that has a shortcut, in menu order, then those of panels (``sections``: where → actions) whose
    keys work while that panel has the focus."""

    def __init__(self, actions: Iterable[QAction], parent: QWidget | None = None, *,
                 sections: dict[str, Iterable[QAction]] | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        rows = _shortcut_rows(actions)
        for where, panel_actions in (sections or {}).items():
            rows += _shortcut_rows(panel_actions, f" (in the {where})")
        rows.append(("Pan the image", "Space + drag, middle-drag"))
        rows.append(("Zoom", "Mouse wheel"))
        table = QTableWidget(len(rows), 2, self)
        table.setHorizontalHeaderLabels(["Action", "Shortcut"])
        table.verticalHeader().hide()
        table.setEditTriggers(QTableWidget.NoEditTriggers)
        for row, (text, keys) in enumerate(rows):
            table.setItem(row, 0, QTableWidgetItem(text))
            table.setItem(row, 1, QTableWidgetItem(keys))
        table.horizontalHeader().setSectionResizeMode(0, QHeaderView.Stretch)
        table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeToContents)
        buttons = QDialogButtonBox(QDialogButtonBox.Close, self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(table)
        layout.addWidget(buttons)
        self.table = table
        self.resize(460, 520)


def _shortcut_rows(actions: Iterable[QAction], where: str = "") -> list[tuple[str, str]]:
    return [(a.text().replace("&", "").rstrip("…") + where, ", ".join(s.toString() for s in a.shortcuts()))
            for a in actions if a.shortcuts()]


def about_text(device_text: str) -> str:
    import PySide6
    import timm
    import torch

    return (f"<h3>MPAE Annotator {mpae_core.__version__}</h3>"
            "<p>Unsupervised part annotation with MPAE (Masked Part Autoencoder, ICCV 2025): a frozen DINOv2 "
            "backbone and learned part descriptors discover consistent object parts without labels; you name, "
            "correct and export them.</p>"
            f"<p>Device: {device_text}<br>"
            f"Python {platform.python_version()} · PyTorch {torch.__version__} · timm {timm.__version__} · "
            f"PySide6 {PySide6.__version__}<br>CUDA available: {'yes' if torch.cuda.is_available() else 'no'}</p>")


def show_about(parent: QWidget, device_text: str) -> None:
    QMessageBox.about(parent, "About MPAE Annotator", about_text(device_text))


def ask_backbone_weights(parent: QWidget, message: str) -> Path | None:
    """Explain the missing weights and let the user choose a local file; None when they cancel."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Warning)
    box.setWindowTitle("Backbone weights needed")
    box.setText(message)
    box.setInformativeText(BACKBONE_HELP)
    choose = box.addButton("Choose weights file…", QMessageBox.AcceptRole)
    box.addButton(QMessageBox.Cancel)
    box.exec()
    if box.clickedButton() is not choose:
        return None
    path, _ = QFileDialog.getOpenFileName(parent, "DINOv2 backbone weights", "",
                                          "Weights (*.safetensors *.pth *.pt *.bin);;All files (*)")
    return Path(path) if path else None


def info_label(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    return label


def dismiss_button(dialog: QDialog, text: str) -> QPushButton:
    """The button that closes ``dialog`` (reject); never auto-default, so Enter in a field does not close it."""
    button = QPushButton(text)
    button.setAutoDefault(False)
    button.clicked.connect(dialog.reject)
    return button


def button_row(left: Iterable[QWidget], right: Iterable[QWidget]) -> QHBoxLayout:
    """A dialog's bottom row: the ``left`` buttons, a stretch, then the ``right`` buttons."""
    row = QHBoxLayout()
    for widget in left:
        row.addWidget(widget)
    row.addStretch(1)
    for widget in right:
        row.addWidget(widget)
    return row
