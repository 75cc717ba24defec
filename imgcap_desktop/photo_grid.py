"""The left-hand side: the filter box, the thumbnail grid with a badge per photo, and the badges' legend."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QColor, QKeyEvent, QKeySequence, QPainter
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

from imgcap_desktop.photo_model import (
    BADGE_COLOURS,
    BADGE_LETTERS,
    HELD_COLOUR,
    HELD_LETTER,
    THUMBNAIL_SIZE,
    PhotoFilterModel,
    Roles,
)
from imgcap_desktop.session import CaptionState


class BadgeDelegate(QStyledItemDelegate):
    """Draws each grid cell's caption-state badge (and a yellow one for a held caption) over the thumbnail."""

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:
        # Every cell as tall as a portrait thumbnail plus its name: the grid takes one size for all
        # cells, and the first photo's (a landscape one, say) left a portrait photo's name cut off.
        return QSize(THUMBNAIL_SIZE, THUMBNAIL_SIZE + option.fontMetrics.height() + 8)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        super().paint(painter, option, index)
        state = CaptionState(index.data(Roles.STATE) or "none")
        if state is CaptionState.NONE:
            return
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        rect = option.rect
        size = badge_size(option.fontMetrics.height())  # grows with a large font
        font = painter.font()
        font.setBold(True)
        font.setPixelSize(size * 5 // 7)
        painter.setFont(font)
        badges = [(BADGE_COLOURS[state], BADGE_LETTERS[state])]
        if index.data(Roles.HELD):
            badges.append((HELD_COLOUR, HELD_LETTER))
        for i, (colour, letter) in enumerate(badges):  # a letter in each: not told by colour alone
            circle = QRect(rect.right() - 8 - size - (size + 4) * i, rect.top() + 6, size, size)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(colour)
            painter.drawEllipse(circle)
            painter.setPen(badge_letter_colour(letter))
            painter.drawText(circle, Qt.AlignmentFlag.AlignCenter, letter)
        painter.restore()


class FilterEdit(QLineEdit):
    """The filter box: Ctrl+Z / Ctrl+Shift+Z undo its own typing, and go to the window's undo stack
    when it has none to undo (a focus that lands here must not swallow the user's undo); Esc clears it."""

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape and self.text():
            self.clear()
            return
        super().keyPressEvent(event)

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent):
            if (event.matches(QKeySequence.StandardKey.Undo) and not self.isUndoAvailable()) or (
                    event.matches(QKeySequence.StandardKey.Redo) and not self.isRedoAvailable()):
                event.ignore()
                return False
        return super().event(event)


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
        self._fit_cells()
        self.grid.installEventFilter(self)  # a font chosen later (a desktop's setting): cells to fit it
        self.grid.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.grid.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.grid.setItemDelegate(BadgeDelegate(self.grid))
        self.grid.setModel(filtered)
        self.grid.setAccessibleName("Photos")

        self.filter_edit = FilterEdit()
        self.filter_edit.setPlaceholderText("Filter by caption or file name… (Ctrl+F)")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.textChanged.connect(filtered.set_filter_text)
        self.filter_edit.setAccessibleName("Filter photos")

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.filter_edit)
        layout.addWidget(self.grid)
        QWidget.setTabOrder(self.filter_edit, self.grid)  # Tab goes as the eye does: the filter box is above
        layout.addWidget(badge_legend())

    def _fit_cells(self) -> None:
        """Cells as large as a thumbnail and a line of its name in the grid's font."""
        self.grid.setGridSize(QSize(THUMBNAIL_SIZE + 24, THUMBNAIL_SIZE + 20 + self.grid.fontMetrics().height()))

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt's name
        if watched is self.grid and event.type() == QEvent.Type.FontChange:
            self._fit_cells()  # the names were cut off under the thumbnails
        return False


def badge_size(font_height: int) -> int:
    """A badge's diameter in pixels for the grid's font: 14 at the usual sizes, more for a large one."""
    return max(14, font_height)


def badge_letter_colour(letter: str) -> QColor:
    return QColor("black") if letter == HELD_LETTER else QColor("white")  # on yellow: black


def badge_legend() -> QLabel:
    """The badges' meanings, each letter drawn as its badge is (the letter on the badge's colour),
    so that it reads as well on any window background."""
    names = {CaptionState.AUTOMATIC: "automatic", CaptionState.HUMAN: "edited", CaptionState.EMBEDDED: "embedded",
             CaptionState.ERROR: "error"}
    badges = [(BADGE_COLOURS[state], BADGE_LETTERS[state], name) for state, name in names.items()]
    badges.append((HELD_COLOUR, HELD_LETTER, "held for review"))
    parts = [f'<b style="background-color:{colour.name()}; color:{badge_letter_colour(letter).name()}">'
             f"&nbsp;{letter}&nbsp;</b> {name}" for colour, letter, name in badges]
    legend = QLabel(" &nbsp; ".join(parts))
    legend.setWordWrap(True)  # a large font wraps it rather than widening the window
    legend.setObjectName("badgeLegend")
    return legend
