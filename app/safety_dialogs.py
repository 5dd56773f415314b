"""The questions that stand between a person's work and a change they did not choose: a model that does not fit
the project's part table, a model the table was not made for, and re-predicting images that were edited or reviewed.

Each function shows a modal message box and returns the choice; Cancel (and Escape, and closing the box) always
means "change nothing".
"""
from __future__ import annotations

from enum import Enum

from PySide6.QtWidgets import QMessageBox, QPushButton, QWidget

REFUSAL_TITLE = "This model does not fit the project"


class ModelChoice(Enum):
    KEEP_NAMES = "keep"  # use the model with the project's part names and merges
    NEW_TABLE = "new"  # replace names and merges by the model's own table
    CANCEL = "cancel"


class RepredictChoice(Enum):
    UNTOUCHED = "untouched"  # only images nobody edited or reviewed
    ALL = "all"
    CANCEL = "cancel"


def refuse_model(parent: QWidget | None, sentence: str) -> None:
    """Say in one sentence why this model cannot predict into the project (nothing was changed)."""
    box = QMessageBox(QMessageBox.Icon.Warning, REFUSAL_TITLE, sentence, QMessageBox.StandardButton.Ok, parent)
    box.setObjectName("model_refusal")
    box.exec()


def ask_unknown_model(parent: QWidget | None, model_name: str, num_parts: int, current_names: str) -> ModelChoice:
    """A model with the right number of parts that the part table was not made for: its part 3 may be something
    else than the table's part 3, so reusing names and merges is the person's call."""
    box = QMessageBox(parent)
    box.setObjectName("unknown_model")
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle("Another model for this project")
    box.setText(f"'{model_name}' is not the model this project's part names were made for.")
    box.setInformativeText(
        f"It has the same number of parts ({num_parts}), but a different model may find other parts in the same "
        f"slots, so the current names ({current_names}) and merges may no longer describe what it predicts.\n\n"
        "Use it with the current part names, or start a new part table from this model's own names: names and "
        "merges are then replaced, while edits, reviewed marks and predictions are kept.")
    keep = box.addButton("Use with the current part names", QMessageBox.ButtonRole.AcceptRole)
    new = box.addButton("Start a new part table from this model", QMessageBox.ButtonRole.DestructiveRole)
    cancel = box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(cancel)
    box.setEscapeButton(cancel)
    box.exec()
    return {keep: ModelChoice.KEEP_NAMES, new: ModelChoice.NEW_TABLE}.get(box.clickedButton(), ModelChoice.CANCEL)


def ask_repredict(parent: QWidget | None, total: int, edited: int, reviewed: int, untouched: int) -> RepredictChoice:
    """Before predicting every image again: how many carry a person's work, and that the work is kept."""
    box = QMessageBox(parent)
    box.setObjectName("repredict")
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle("Re-predict every image")
    box.setText(f"Predict all {total} images again?")
    buttons: dict[QPushButton, RepredictChoice] = {}
    if edited or reviewed:
        box.setInformativeText(
            f"{edited} of them have edits and {reviewed} are marked reviewed. Their edits and reviewed marks are "
            "kept either way: only the model's prediction under them is replaced.")
        only = box.addButton(f"Re-predict only the {untouched} untouched images", QMessageBox.ButtonRole.AcceptRole)
        buttons[only] = RepredictChoice.UNTOUCHED
        every = box.addButton("Re-predict all; edits and reviewed marks are kept", QMessageBox.ButtonRole.AcceptRole)
        buttons[every] = RepredictChoice.ALL
        box.setDefaultButton(only)
    else:
        box.setInformativeText("None of them has edits or a reviewed mark yet; their current predictions are replaced.")
        every = box.addButton(f"Re-predict all {total}", QMessageBox.ButtonRole.AcceptRole)
        buttons[every] = RepredictChoice.ALL
        box.setDefaultButton(every)
    cancel = box.addButton(QMessageBox.StandardButton.Cancel)
    box.setEscapeButton(cancel)
    box.exec()
    return buttons.get(box.clickedButton(), RepredictChoice.CANCEL)
