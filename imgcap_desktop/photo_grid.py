"""The left-hand side: the filter box, the thumbnail grid with a badge per photo, and the badges' legend."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import (
    QAbstractItemView,
    QLabel,
    QLineEdit,
    QListView,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from imgcap_desktop.photo_model import BADGE_COLOURS, HELD_COLOUR, THUMBNAIL_SIZE, PhotoFilterModel, Roles
from imgcap_desktop.session import CaptionState


class BadgeDelegate(QStyledItemDelegate):
    """Draws each grid cell's caption-state badge (and a yellow one for a held caption) over the thumbnail."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        super().paint(painter, option, index)
        state = CaptionState(index.data(Roles.STATE) or "none")
        if state is CaptionState.NONE:
            return
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(BADGE_COLOURS[state])
        rect = option.rect
        painter.drawEllipse(QRect(rect.right() - 22, rect.top() + 6, 14, 14))
        if index.data(Roles.HELD):
            painter.setBrush(HELD_COLOUR)
            painter.drawEllipse(QRect(rect.right() - 40, rect.top() + 6, 14, 14))
        painter.restore()


class PhotoGrid(QWidget):
    """The filter box over the thumbnail grid (``grid``, showing ``filtered``) and the legend."""

    def __init__(self, filtered: PhotoFilterModel, parent=None):
        super().__init__(parent)
        self.grid = QListView()
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setMovement(QListView.Movement.Static)
        self.grid.setUniformItemSizes(True)
        self.grid.setLayoutMode(QListView.LayoutMode.Batched)
        self.grid.setBatchSize(200)
        self.grid.setIconSize(QSize(THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        self.grid.setGridSize(QSize(THUMBNAIL_SIZE + 24, THUMBNAIL_SIZE + 36))
        self.grid.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.grid.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.grid.setItemDelegate(BadgeDelegate(self.grid))
        self.grid.setModel(filtered)

        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter by caption or file name… (Ctrl+F)")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.textChanged.connect(filtered.set_filter_text)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.filter_edit)
        layout.addWidget(self.grid)
        layout.addWidget(badge_legend())


def badge_legend() -> QLabel:
    names = {CaptionState.AUTOMATIC: "automatic", CaptionState.HUMAN: "edited", CaptionState.EMBEDDED: "embedded",
             CaptionState.ERROR: "error"}
    parts = [f'<span style="color:{BADGE_COLOURS[state].name()}">●</span> {name}' for state, name in names.items()]
    parts.append(f'<span style="color:{HELD_COLOUR.name()}">●</span> held for review')
    legend = QLabel("&nbsp;&nbsp;".join(parts))
    legend.setObjectName("badgeLegend")
    return legend
