"""The Qt side of the caption session: its events as signals, and its photos as the thumbnail grid's item model."""

from __future__ import annotations

import enum
import unicodedata
from collections import OrderedDict
from collections.abc import Collection
from pathlib import Path

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QPersistentModelIndex,
    QObject,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QColor, QGuiApplication, QPainter, QPixmap

from imgcap_desktop.metadata.printable import printable
from imgcap_desktop.session import CaptionSession, CaptionState, Photo
from imgcap_desktop.thumbnails import ThumbnailCache

THUMBNAIL_SIZE = 160
PIXMAP_CACHE = 512  # grid cells' pixmaps kept (a screenful is a few dozen)


# Dark enough for the badge's white letter to read at 4.5:1 or better (WCAG's small text), in any
# palette: the letter's background is the badge, never the window.
BADGE_COLOURS = {
    CaptionState.NONE: QColor("#757575"),
    CaptionState.AUTOMATIC: QColor("#1565c0"),
    CaptionState.HUMAN: QColor("#2e7d32"),
    CaptionState.EMBEDDED: QColor("#6a1b9a"),
    CaptionState.ERROR: QColor("#c62828"),
}
HELD_COLOUR = QColor("#fdd835")  # with a black letter
# The letter in each badge, so that a state is not told by colour alone (the legend has them too).
BADGE_LETTERS = {
    CaptionState.NONE: "",
    CaptionState.AUTOMATIC: "A",
    CaptionState.HUMAN: "E",
    CaptionState.EMBEDDED: "P",
    CaptionState.ERROR: "!",
}
HELD_LETTER = "H"


class Roles(enum.IntEnum):
    CAPTION = Qt.ItemDataRole.UserRole + 1
    STATE = Qt.ItemDataRole.UserRole + 2
    ERROR = Qt.ItemDataRole.UserRole + 3
    HELD = Qt.ItemDataRole.UserRole + 4


class SessionSignals(QObject):
    """The session's events as Qt signals, delivered on the GUI thread whichever thread changed it.

    Signals:
        photos_reset(): the session's photos were replaced.
        photos_changed(object paths): a tuple of photos whose state changed.
        photos_listed(): photos joined the session or left it.
    """

    photos_reset = Signal()
    photos_changed = Signal(object)
    photos_listed = Signal()

    def __init__(self, session: CaptionSession, parent=None):
        super().__init__(parent)
        self._session = session
        # Plain callbacks that emit: from a worker thread the emit is queued to this object's thread.
        self._on_reset = lambda: self.photos_reset.emit()
        self._on_changed = lambda paths: self.photos_changed.emit(paths)
        self._on_listed = lambda: self.photos_listed.emit()
        session.reset.connect(self._on_reset)
        session.changed.connect(self._on_changed)
        session.listed.connect(self._on_listed)

    def detach(self) -> None:
        """Stop listening to the session (the window is going)."""
        self._session.reset.disconnect(self._on_reset)
        self._session.changed.disconnect(self._on_changed)
        self._session.listed.disconnect(self._on_listed)


class PhotoListModel(QAbstractListModel):
    """The session's photos as rows of the thumbnail grid. Thumbnails come from a :class:`ThumbnailCache`."""

    def __init__(self, session: CaptionSession, signals: SessionSignals, thumbnails: ThumbnailCache | None = None,
                 parent=None):
        super().__init__(parent)
        self._session = session
        self._paths: list[Path] = []
        self._rows: dict[Path, int] = {}
        self._thumbnails = thumbnails
        self._placeholders: dict[bool, QPixmap] = {}  # made on first use: a QPixmap needs the app
        # Converted once (a view asks for a cell's decoration on every repaint), the latest few kept.
        self._pixmaps: OrderedDict[Path, QPixmap] = OrderedDict()
        signals.photos_reset.connect(self._on_session_photos_reset)
        signals.photos_changed.connect(self._on_session_photos_changed)
        signals.photos_listed.connect(self._on_session_photos_listed)
        if thumbnails is not None:
            thumbnails.image_ready.connect(self._on_thumbnails_image_ready)
        self._on_session_photos_reset()

    # -- Qt's model contract ----------------------------------------------------------------

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._paths)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or not 0 <= index.row() < len(self._paths):
            return None
        item = self._session.photo(self._paths[index.row()]) or Photo(self._paths[index.row()])
        if role == Qt.ItemDataRole.DisplayRole:
            return printable(item.path.name)  # a byte that is not UTF-8 as \xe9, a line break as \n
        if role == Qt.ItemDataRole.ToolTipRole:
            name = printable(item.path.name)
            if item.error:
                return f"{name}\nError: {item.error}"
            return f"{name} ({describe_state(item)})\n{item.text}" if item.text else name
        if role == Qt.ItemDataRole.AccessibleDescriptionRole:  # what the badges show, and the caption, read out
            said = describe_state(item) + ("; no preview" if self._no_preview(item) else "")
            if item.text and item.state is not CaptionState.ERROR:
                said += f": {' '.join(item.text.split())}"
            return said
        if role == Qt.ItemDataRole.DecorationRole:
            return self._thumbnail(item)
        if role == Roles.CAPTION:
            return item.text
        if role == Roles.STATE:
            return item.state.value
        if role == Roles.ERROR:
            return item.error
        if role == Roles.HELD:
            return item.held
        return None

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemNeverHasChildren

    def roleNames(self) -> dict[int, bytes]:
        names = dict(super().roleNames())
        names.update({role.value: role.name.lower().encode() for role in Roles})
        return names

    # -- the app's API ----------------------------------------------------------------------

    def items(self) -> list[Photo]:
        return [self._session.photo(p) or Photo(p) for p in self._paths]

    def item(self, row: int) -> Photo:
        return self._session.photo(self._paths[row]) or Photo(self._paths[row])

    def path(self, row: int) -> Path:
        return self._paths[row]

    def row_of(self, path: str | Path) -> int | None:
        return self._rows.get(Path(path))

    def item_at(self, path: str | Path) -> Photo | None:
        return None if self.row_of(path) is None else self._session.photo(path)

    def _on_session_photos_reset(self) -> None:
        self.beginResetModel()
        self._pixmaps.clear()
        self._paths = [photo.path for photo in self._session.photos()]
        self._rows = {path: row for row, path in enumerate(self._paths)}
        self.endResetModel()

    def _on_session_photos_listed(self) -> None:
        # Rows leave and join in runs, so that the selection and the current photo stay on the
        # photos still there (a reset would lose them). Views read rows through _paths; _rows
        # (row_of) is made again once, at the end.
        wanted = [photo.path for photo in self._session.photos()]
        listed = set(wanted)
        if any(path not in listed for path in self._paths):
            row = len(self._paths)
            while row > 0:
                row -= 1
                if self._paths[row] in listed:
                    continue
                first = row
                while first > 0 and self._paths[first - 1] not in listed:
                    first -= 1
                self.beginRemoveRows(QModelIndex(), first, row)
                for path in self._paths[first:row + 1]:
                    self._pixmaps.pop(path, None)
                del self._paths[first:row + 1]
                self.endRemoveRows()
                row = first
        present = set(self._paths)  # in the session's order: the rest goes in between
        row = 0
        while row < len(wanted):
            if wanted[row] in present:
                row += 1
                continue
            last = row
            while last + 1 < len(wanted) and wanted[last + 1] not in present:
                last += 1
            self.beginInsertRows(QModelIndex(), row, last)
            self._paths[row:row] = wanted[row:last + 1]
            self.endInsertRows()
            row = last + 1
        self._rows = {path: row for row, path in enumerate(self._paths)}

    def forget_thumbnails(self, paths: Collection[Path]) -> None:
        """Decode these photos' thumbnails again (their files changed)."""
        for path in paths:
            self._pixmaps.pop(path, None)
        if self._thumbnails is not None:
            self._thumbnails.forget({str(path) for path in paths})
        rows = [row for row in (self.row_of(path) for path in paths) if row is not None]
        if rows:
            self.dataChanged.emit(self.index(min(rows)), self.index(max(rows)), [Qt.ItemDataRole.DecorationRole])

    def _on_session_photos_changed(self, paths) -> None:
        rows = [row for row in (self._rows.get(p) for p in paths) if row is not None]
        if rows:
            self.dataChanged.emit(self.index(min(rows)), self.index(max(rows)))

    def _thumbnail(self, item: Photo):
        pixmap = self._pixmaps.get(item.path)
        if pixmap is not None:
            self._pixmaps.move_to_end(item.path)
            return pixmap
        if self._thumbnails is None:
            return self._placeholder(broken=False)
        image = self._thumbnails.image(str(item.path), THUMBNAIL_SIZE)
        if image is None:
            return self._placeholder(broken=bool(self._thumbnails.failure(str(item.path), THUMBNAIL_SIZE)))
        pixmap = self._pixmaps[item.path] = QPixmap.fromImage(image)
        while len(self._pixmaps) > PIXMAP_CACHE:
            self._pixmaps.popitem(last=False)
        return pixmap

    def _no_preview(self, item: Photo) -> bool:
        """Whether the photo's thumbnail could not be made."""
        return self._thumbnails is not None and bool(self._thumbnails.failure(str(item.path), THUMBNAIL_SIZE))

    def _placeholder(self, broken: bool) -> QPixmap:
        pixmap = self._placeholders.get(broken)
        if pixmap is None:
            pixmap = QPixmap(THUMBNAIL_SIZE, THUMBNAIL_SIZE)
            pixmap.fill(QColor("#4a2a2a" if broken else "#3a3a3a"))
            painter = QPainter(pixmap)  # said in words too: the two differ only by shade otherwise
            painter.setPen(QColor("#e0e0e0"))
            painter.drawText(pixmap.rect(), Qt.AlignmentFlag.AlignCenter, "no preview" if broken else "loading…")
            painter.end()
            self._placeholders[broken] = pixmap
        return pixmap

    def _on_thumbnails_image_ready(self, path: str, size: int) -> None:
        row = self.row_of(path)
        if row is not None and size == THUMBNAIL_SIZE:
            index = self.index(row)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])


class PhotoFilterModel(QSortFilterProxyModel):
    """Narrows the grid to photos whose caption (or file name) contains the filter text (white space
    and line breaks counting as one space). The photos chosen (:meth:`pin_shown`, :meth:`pin_selected`)
    stay whatever their captions become, until others are chosen or filter text that
    leaves them out is typed: a run or another program changing a caption does not take the photo
    from under the person looking at it, typing its caption, or about to caption the selection."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self._needle = ""
        self._shown: Path | None = None
        self._selected: frozenset[Path] = frozenset()
        self._pinned: frozenset[Path] = frozenset()
        self._departed: set[Path] = set()  # pinned before, to filter again
        self._refilter_timer = QTimer(self)
        self._refilter_timer.setSingleShot(True)
        self._refilter_timer.timeout.connect(self._refilter)

    @property
    def filtering(self) -> bool:
        return bool(self._needle)

    def set_filter_text(self, text: str) -> None:
        self.beginFilterChange()
        self._needle = _searchable(text)
        # The photos chosen stay pinned only where the new filter keeps them.
        self._shown = self._shown if self._shown is not None and self._matches_path(self._shown) else None
        self._selected = frozenset(path for path in self._selected if self._matches_path(path))
        self._pinned = self._selected | ({self._shown} if self._shown is not None else set())
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def pin_shown(self, path: Path | None) -> None:
        """Keep the photo shown in the grid (None: none)."""
        self._pin(path, self._selected)

    def pin_selected(self, paths: Collection[Path]) -> None:
        """Keep the photos selected in the grid."""
        self._pin(self._shown, frozenset(paths))

    def _pin(self, shown: Path | None, selected: frozenset[Path]) -> None:
        """Those pinned before leave the grid where the filter does not let them through: filtered
        again only then, once no mouse button is down (a click's or a drag's selection must not span
        rows that move under it)."""
        before = self._pinned
        self._shown, self._selected = shown, selected
        self._pinned = selected | ({shown} if shown is not None else set())
        if self._needle and before - self._pinned:
            self._departed |= before - self._pinned
            self._refilter_timer.start(0)

    def _refilter(self) -> None:
        if QGuiApplication.mouseButtons() != Qt.MouseButton.NoButton:
            self._refilter_timer.start(50)
            return
        departed, self._departed = self._departed - self._pinned, set()
        if self._needle and any(not self._matches_path(path) for path in departed):
            self.beginFilterChange()
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def filterAcceptsRow(self, source_row: int, source_parent: QModelIndex | QPersistentModelIndex) -> bool:
        if not self._needle:
            return True
        if self._pinned and self.sourceModel().path(source_row) in self._pinned:
            return True
        return self._matches(source_row)

    def _matches_path(self, path: Path) -> bool:
        row = self.sourceModel().row_of(path)
        return row is not None and self._matches(row)

    def _matches(self, source_row: int) -> bool:
        index = self.sourceModel().index(source_row, 0)
        caption = _searchable(index.data(Roles.CAPTION) or "")
        name = _searchable(index.data(Qt.ItemDataRole.DisplayRole) or "")
        return self._needle in caption or self._needle in name


def _searchable(text: str) -> str:
    """Text as the filter compares it: runs of white space as one space, letters without case, and
    one form of each accented letter (macOS stores "é" in names as "e" and an accent)."""
    return unicodedata.normalize("NFKC", " ".join(text.split()).casefold())


_STATE_WORDS = {CaptionState.NONE: "no caption", CaptionState.AUTOMATIC: "automatic caption",
                CaptionState.HUMAN: "edited caption", CaptionState.EMBEDDED: "caption embedded in the photo",
                CaptionState.ERROR: "error"}


def describe_state(item: Photo) -> str:
    """A photo's badges in words (the badges are colours): "automatic caption, held for review"."""
    words = _STATE_WORDS[item.state]
    if item.state is CaptionState.ERROR:
        return f"{words}: {item.error}"
    if item.write_error:
        return f"{words}, not written: {item.write_error}"
    return f"{words}, held for review" if item.held else words
