"""A layout that places widgets left to right and wraps them onto new lines (Qt's flow-layout example)."""

from __future__ import annotations

from PySide6.QtCore import QMargins, QPoint, QRect, QSize, Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QLabel, QLayout, QLayoutItem, QSizePolicy, QWidget


class FlowLayout(QLayout):
    """Lines of widgets as wide as the parent allows: a long caption wraps instead of widening the window."""

    MOST_LINES_RESERVED = 4

    def __init__(self, parent: QWidget | None = None, spacing: int = 4):
        super().__init__(parent)
        self._items: list[QLayoutItem] = []
        self._spacing = spacing
        self._heights: dict[int, int] = {}  # heightForWidth's answers since the last change
        self._line: int | None = None  # the tallest item's height since the last change
        self.setContentsMargins(0, 0, 0, 0)

    def addItem(self, item: QLayoutItem) -> None:
        self._items.append(item)
        self.invalidate()

    def invalidate(self) -> None:
        self._forget()
        super().invalidate()

    def _forget(self) -> None:
        self._heights.clear()
        self._line = None

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int) -> QLayoutItem | None:
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int) -> QLayoutItem | None:
        if not 0 <= index < len(self._items):
            return None
        self._forget()
        return self._items.pop(index)

    def expandingDirections(self) -> Qt.Orientation:
        return Qt.Orientation(0)

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        # Asked many times over for each change (by every layout up the chain): arranged once per width.
        height = self._heights.get(width)
        if height is None:
            height = self._heights[width] = self._arrange(QRect(0, 0, width, 0), move=False)
        return height

    def setGeometry(self, rect: QRect) -> None:
        before = self._reserved_height()
        super().setGeometry(rect)
        self._arrange(rect, move=True)
        if self._reserved_height() != before and self.parentWidget() is not None:
            self.parentWidget().updateGeometry()  # lines at this width need another height: asked again

    def sizeHint(self) -> QSize:
        return self.minimumSize()

    def minimumSize(self) -> QSize:
        size = QSize()
        for item in self._items:
            size = size.expandedTo(item.minimumSize())
        margins: QMargins = self.contentsMargins()
        size += QSize(margins.left() + margins.right(), margins.top() + margins.bottom())
        size.setHeight(max(size.height(), self._reserved_height()))
        return size

    def _reserved_height(self) -> int:
        """As tall as the lines need at the width it has: a layout above that squeezed the widget to
        one line drew the others over its neighbours. At most MOST_LINES_RESERVED lines count in the
        window's minimum size, so that a very long caption never makes the window taller than the
        screen (in a window made smaller than it needs, its last lines may still overlap)."""
        width = self.geometry().width()
        if not self._items or width <= 0:
            return 0
        if self._line is None:
            self._line = max(item.sizeHint().height() for item in self._items)
        most = self.MOST_LINES_RESERVED * (self._line + self._spacing) - self._spacing
        return min(self.heightForWidth(width), most)

    def _arrange(self, rect: QRect, move: bool) -> int:
        margins = self.contentsMargins()
        area = rect.adjusted(margins.left(), margins.top(), -margins.right(), -margins.bottom())
        x, y, line_height = area.x(), area.y(), 0
        # Right to left (a Hebrew or Arabic caption's words, a right-to-left desktop): each line from
        # the right, as its text reads.
        mirrored = self.parentWidget() is not None and self.parentWidget().isRightToLeft()
        for item in self._items:
            hint = item.sizeHint()
            if x + hint.width() > area.right() + 1 and line_height > 0:
                x, y, line_height = area.x(), y + line_height + self._spacing, 0
            if move:
                shown_x = area.left() + area.right() + 1 - x - hint.width() if mirrored else x
                item.setGeometry(QRect(QPoint(shown_x, y), hint))
            x += hint.width() + self._spacing
            line_height = max(line_height, hint.height())
        return y + line_height - rect.y() + margins.bottom()


class WrappedLabel(QLabel):
    """A word-wrapped label never squeezed below the lines its text takes at its width.

    Qt's box layouts leave height-for-width out of their minimum: in a window at its smallest, a
    wrapped label got one line's height and drew its second over the widget below it.
    """

    def __init__(self, text: str = "", parent: QWidget | None = None):
        super().__init__(text, parent)
        self.setWordWrap(True)

    def minimumSizeHint(self) -> QSize:
        hint = super().minimumSizeHint()
        if self.text() and self.width() > 0:
            hint.setHeight(max(hint.height(), self.heightForWidth(self.width())))
        return hint

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if event.size().width() != event.oldSize().width():
            self.updateGeometry()  # another width, another number of lines


def flow_widget() -> tuple[QWidget, FlowLayout]:
    """A widget whose children flow (its height follows its width)."""
    widget = QWidget()
    layout = FlowLayout(widget)
    policy = QSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
    policy.setHeightForWidth(True)
    widget.setSizePolicy(policy)
    return widget, layout


def discard_widget(widget: QWidget) -> None:
    """Take a child widget out of its layout's parent for good. Hidden first: a widget added and
    taken out before its delayed show would otherwise be shown as a window of its own, and take
    the keyboard focus."""
    widget.hide()
    widget.setParent(None)
    widget.deleteLater()
