"""The item model behind the thumbnail grid: one row per photo, with its caption and caption state."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from pathlib import Path

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QColor, QPixmap

from imgcap_desktop.metadata.sidecar import StoredCaption
from imgcap_desktop.thumbnails import ThumbnailCache
from model.results import CaptionResult

THUMBNAIL_SIZE = 160


class CaptionState(enum.Enum):
    """The badge a photo shows."""

    NONE = "none"
    AUTOMATIC = "automatic"
    EDITED = "edited"
    EMBEDDED = "embedded"
    ERROR = "error"


BADGE_COLOURS = {
    CaptionState.NONE: QColor("#9e9e9e"),
    CaptionState.AUTOMATIC: QColor("#1e88e5"),
    CaptionState.EDITED: QColor("#43a047"),
    CaptionState.EMBEDDED: QColor("#8e24aa"),
    CaptionState.ERROR: QColor("#e53935"),
}


class Roles(enum.IntEnum):
    PATH = Qt.ItemDataRole.UserRole + 1
    CAPTION = Qt.ItemDataRole.UserRole + 2
    STATE = Qt.ItemDataRole.UserRole + 3
    ERROR = Qt.ItemDataRole.UserRole + 4
    RESULT = Qt.ItemDataRole.UserRole + 5
    HELD = Qt.ItemDataRole.UserRole + 6


@dataclass(frozen=True)
class PhotoItem:
    """One photo as the app knows it.

    Attributes:
        path: the photo.
        caption: its caption (stored, produced or typed), if any.
        error: why it could not be read or captioned, if it could not.
        result: the model's full result (words, attention, alternatives) from this session.
        held: the caption is not yet written to the sidecar (waiting for the user to accept it).
    """

    path: Path
    caption: StoredCaption | None = None
    error: str = ""
    result: CaptionResult | None = None
    held: bool = False

    @property
    def state(self) -> CaptionState:
        if self.error:
            return CaptionState.ERROR
        if self.caption is None or not self.caption.text:
            return CaptionState.NONE
        return {
            "automatic": CaptionState.AUTOMATIC,
            "human": CaptionState.EDITED,
            "embedded": CaptionState.EMBEDDED,
        }[self.caption.source]

    @property
    def text(self) -> str:
        return self.caption.text if self.caption else ""

    @property
    def attention_matches(self) -> bool:
        """Whether ``result``'s per-word attention belongs to the caption shown (not edited since)."""
        return self.result is not None and self.caption is not None and self.result.text == self.caption.text


class PhotoListModel(QAbstractListModel):
    """The photos of the open folder. Thumbnails come from a :class:`ThumbnailCache`, asynchronously."""

    def __init__(self, thumbnails: ThumbnailCache | None = None, parent=None):
        super().__init__(parent)
        self._items: list[PhotoItem] = []
        self._rows: dict[Path, int] = {}
        self._thumbnails = thumbnails
        self._placeholders: dict[bool, QPixmap] = {}  # made on first use: a QPixmap needs the app
        if thumbnails is not None:
            thumbnails.image_ready.connect(self._on_thumbnails_image_ready)

    # -- Qt's model contract ----------------------------------------------------------------

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._items)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or not 0 <= index.row() < len(self._items):
            return None
        item = self._items[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return item.path.name
        if role == Qt.ItemDataRole.ToolTipRole:
            if item.error:
                return f"{item.path.name}\nError: {item.error}"
            return f"{item.path.name}\n{item.text}" if item.text else item.path.name
        if role == Qt.ItemDataRole.DecorationRole:
            return self._thumbnail(item)
        if role == Roles.PATH:
            return str(item.path)
        if role == Roles.CAPTION:
            return item.text
        if role == Roles.STATE:
            return item.state.value
        if role == Roles.ERROR:
            return item.error
        if role == Roles.RESULT:
            return item.result
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

    def set_photos(self, paths: list[Path]) -> None:
        """Replace every row with these photos (no captions yet)."""
        self.beginResetModel()
        self._items = [PhotoItem(Path(p)) for p in paths]
        self._rows = {item.path: row for row, item in enumerate(self._items)}
        self.endResetModel()

    def items(self) -> list[PhotoItem]:
        return list(self._items)

    def item(self, row: int) -> PhotoItem:
        return self._items[row]

    def row_of(self, path: str | Path) -> int | None:
        return self._rows.get(Path(path))

    def item_at(self, path: str | Path) -> PhotoItem | None:
        row = self.row_of(path)
        return None if row is None else self._items[row]

    def update(self, path: str | Path, **changes) -> PhotoItem | None:
        """Change some fields of a photo's item (see :class:`PhotoItem`); returns the new item."""
        row = self.row_of(path)
        if row is None:
            return None
        self._items[row] = replace(self._items[row], **changes)
        index = self.index(row)
        self.dataChanged.emit(index, index)
        return self._items[row]

    def _thumbnail(self, item: PhotoItem):
        if self._thumbnails is None:
            return self._placeholder(broken=False)
        image = self._thumbnails.image(str(item.path), THUMBNAIL_SIZE)
        if image is None:
            return self._placeholder(broken=bool(self._thumbnails.failure(str(item.path), THUMBNAIL_SIZE)))
        return QPixmap.fromImage(image)

    def _placeholder(self, broken: bool) -> QPixmap:
        pixmap = self._placeholders.get(broken)
        if pixmap is None:
            pixmap = QPixmap(THUMBNAIL_SIZE, THUMBNAIL_SIZE)
            pixmap.fill(QColor("#4a2a2a" if broken else "#3a3a3a"))
            self._placeholders[broken] = pixmap
        return pixmap

    def _on_thumbnails_image_ready(self, path: str, size: int) -> None:
        row = self.row_of(path)
        if row is not None and size == THUMBNAIL_SIZE:
            index = self.index(row)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])


class PhotoFilterModel(QSortFilterProxyModel):
    """Narrows the grid to photos whose caption (or file name) contains the filter text."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self._needle = ""

    def set_filter_text(self, text: str) -> None:
        self.beginFilterChange()
        self._needle = text.strip().casefold()
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def filterAcceptsRow(self, source_row: int, source_parent: QModelIndex | QPersistentModelIndex) -> bool:
        if not self._needle:
            return True
        index = self.sourceModel().index(source_row, 0, source_parent)
        caption = (index.data(Roles.CAPTION) or "").casefold()
        name = (index.data(Qt.ItemDataRole.DisplayRole) or "").casefold()
        return self._needle in caption or self._needle in name
