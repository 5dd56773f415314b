"""The first-run panel: what the window shows while no folder is open, so a new user sees where to start.

Open a folder, reopen a recent one, load a checkpoint, or try the bundled demo; and where the real weights come
from. The panel only asks: the window does the opening, through the signals.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (QFrame, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton, QScrollArea,
                               QVBoxLayout, QWidget)

from .dialogs import info_label
from .icons import icon

WEIGHTS_HELP = (
    "<b>Where to get weights.</b> The authors' checkpoints (<tt>model_best.pth</tt> per dataset) are linked from "
    "the README of <tt>github.com/Jiahao-UTS/MPAE</tt> and open directly. Checkpoints that do not embed the DINOv2 "
    "backbone need <tt>vit_base_patch14_reg4_dinov2</tt>: timm downloads it once, or choose a local "
    "<tt>model.safetensors</tt> when asked. The demo needs nothing: its small model is bundled."
)
STEPS = ("<b>1</b>&nbsp;Open a folder of images &nbsp;&nbsp;→&nbsp;&nbsp; <b>2</b>&nbsp;Load a checkpoint "
         "&nbsp;&nbsp;→&nbsp;&nbsp; <b>3</b>&nbsp;Predict, then name, correct and export the parts")
MAX_RECENT_ROWS = 6
CARD_STYLE = "#welcome_card { background: palette(base); border: 1px solid palette(mid); border-radius: 10px; }"


class WelcomePanel(QWidget):
    """Buttons for the first steps and the recent folders; the window connects the signals."""

    openFolderRequested = Signal()
    recentRequested = Signal(str)
    loadCheckpointRequested = Signal()
    demoRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("welcome")
        card = QFrame(self)
        card.setObjectName("welcome_card")
        card.setMaximumWidth(720)
        card.setStyleSheet(CARD_STYLE)
        title = QLabel("MPAE Annotator", card)
        font = title.font()
        font.setPointSizeF(font.pointSizeF() * 1.7)
        font.setWeight(QFont.Weight.DemiBold)
        title.setFont(font)
        subtitle = info_label("Finds the parts of the objects in a folder of images without any labels; you name "
                            "them, correct them and export masks.")
        steps = info_label(STEPS)

        self.open_button = _button("open_folder", "Open folder…", "Annotate the images of a folder (Ctrl+O)")
        self.open_button.setDefault(True)
        self.open_button.clicked.connect(self.openFolderRequested)
        self.load_button = _button("checkpoint", "Load checkpoint…", "Load an MPAE checkpoint (.safetensors or the "
                                   "authors' .pth) (Ctrl+L)")
        self.load_button.clicked.connect(self.loadCheckpointRequested)
        self.demo_button = _button("predict", "Try the demo", "Open a copy of the demo images with the bundled small "
                                   "model and predict them")
        self.demo_button.clicked.connect(self.demoRequested)
        buttons = QHBoxLayout()
        buttons.setSpacing(8)
        for button in (self.open_button, self.load_button, self.demo_button):
            buttons.addWidget(button)
        buttons.addStretch(1)

        recent_title = QLabel("Open recent", card)
        bold = recent_title.font()
        bold.setBold(True)
        recent_title.setFont(bold)
        self.recent_list = QListWidget(card)
        self.recent_list.setIconSize(QSize(18, 18))
        self.recent_list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.recent_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.recent_list.setUniformItemSizes(True)
        self.recent_list.itemActivated.connect(self._recent_activated)
        self.recent_list.itemClicked.connect(self._recent_activated)
        self.no_recent = QLabel("No recent folders yet.", card)
        self.no_recent.setEnabled(False)
        weights = info_label(WEIGHTS_HELP)
        weights.setTextFormat(Qt.TextFormat.RichText)

        layout = QVBoxLayout(card)
        layout.setContentsMargins(28, 20, 28, 20)
        layout.setSpacing(8)
        layout.addWidget(title)
        layout.addWidget(subtitle)
        layout.addWidget(steps)
        layout.addSpacing(4)
        layout.addLayout(buttons)
        layout.addSpacing(8)
        layout.addWidget(recent_title)
        layout.addWidget(self.recent_list)
        layout.addWidget(self.no_recent)
        layout.addSpacing(8)
        layout.addWidget(weights)
        page = QWidget()  # centres the card; the scroll area keeps all of it reachable in a small window
        column = QVBoxLayout(page)
        column.setContentsMargins(12, 6, 12, 6)
        column.addStretch(1)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(card, 10)
        row.addStretch(1)
        column.addLayout(row)
        column.addStretch(2)
        scroll = QScrollArea(self)
        scroll.setWidget(page)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        self.set_recent([])

    def set_recent(self, folders: list[str]) -> None:
        """List ``folders`` (newest first); a folder that no longer exists is shown greyed, with a reason."""
        self.recent_list.clear()
        for folder in folders:
            path = Path(folder)
            item = QListWidgetItem(icon("open_folder"), f"{path.name or folder}   —   {path.parent}")
            item.setData(Qt.ItemDataRole.UserRole, folder)
            if path.is_dir():
                item.setToolTip(folder)
            else:
                item.setToolTip(f"{folder} no longer exists (moved or on a drive that is not connected).")
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEnabled)
            self.recent_list.addItem(item)
        self.recent_list.setVisible(bool(folders))
        self.no_recent.setVisible(not folders)
        if folders:  # as tall as its rows (at most MAX_RECENT_ROWS): no empty box under two folders
            rows = min(len(folders), MAX_RECENT_ROWS)
            frame = 2 * self.recent_list.frameWidth()
            self.recent_list.setFixedHeight(rows * self.recent_list.sizeHintForRow(0) + frame)

    def recent_folders(self) -> list[str]:
        return [self.recent_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.recent_list.count())]

    def _recent_activated(self, item: QListWidgetItem) -> None:
        if item.flags() & Qt.ItemFlag.ItemIsEnabled:
            self.recentRequested.emit(item.data(Qt.ItemDataRole.UserRole))


def _button(icon_name: str, text: str, tip: str) -> QPushButton:
    button = QPushButton(icon(icon_name), text)
    button.setToolTip(tip)
    button.setIconSize(QSize(20, 20))
    button.setMinimumHeight(36)
    return button

