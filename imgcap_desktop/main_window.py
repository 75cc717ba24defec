"""The main window: the photo grid, the selected photo with its caption, captioning and export."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from PySide6.QtCore import QModelIndex, QRect, QSize, Qt, QUrl
from PySide6.QtGui import (
    QAction,
    QDragEnterEvent,
    QDropEvent,
    QIcon,
    QKeySequence,
    QPainter,
    QUndoCommand,
    QUndoStack,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QLabel,
    QLineEdit,
    QListView,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from imgcap_desktop.caption_service import CaptionJob, CaptionService
from imgcap_desktop.caption_view import CaptionView
from imgcap_desktop.folder_reader import StoredCaptionReader
from imgcap_desktop.metadata.apply import PhotoStatus, StoreOptions
from imgcap_desktop.metadata.csvio import make_row, write_csv
from imgcap_desktop.metadata.folder import scan_folder
from imgcap_desktop.metadata.sidecar import SidecarError, StoredCaption, find_sidecar, write_caption
from imgcap_desktop.photo_model import (
    BADGE_COLOURS,
    THUMBNAIL_SIZE,
    CaptionState,
    PhotoFilterModel,
    PhotoItem,
    PhotoListModel,
    Roles,
)
from imgcap_desktop.settings import AppSettings, load_settings, save_settings
from imgcap_desktop.thumbnails import ThumbnailCache

log = logging.getLogger(__name__)

ICON_PATH = Path(__file__).resolve().parent.parent / "resources" / "icons" / "imgcap.svg"
PREVIEW_SIZE = 1024


class BadgeDelegate(QStyledItemDelegate):
    """Draws each grid cell's caption-state badge over the thumbnail."""

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
            painter.setBrush(Qt.GlobalColor.yellow)
            painter.drawEllipse(QRect(rect.right() - 40, rect.top() + 6, 14, 14))
        painter.restore()


class _EditCaption(QUndoCommand):
    """A caption typed or picked by the user; undo restores the previous caption (and sidecar)."""

    def __init__(self, window: MainWindow, path: Path, new: StoredCaption | None, old: StoredCaption | None):
        super().__init__(f"Edit caption of {path.name}")
        self._window, self._path, self._new, self._old = window, path, new, old

    def redo(self) -> None:
        self._window._apply_caption(self._path, self._new)

    def undo(self) -> None:
        self._window._apply_caption(self._path, self._old)


class MainWindow(QMainWindow):
    """The app's window. Owns the caption service, the photo model and the settings in use."""

    def __init__(self, service: CaptionService | None = None, settings: AppSettings | None = None, parent=None):
        super().__init__(parent)
        self.setWindowTitle("imgcap")
        if ICON_PATH.exists():
            self.setWindowIcon(QIcon(str(ICON_PATH)))
        self.settings = settings if settings is not None else load_settings()
        self.service = service if service is not None else CaptionService(parent=self)
        self.folder: Path | None = None
        self.undo_stack = QUndoStack(self)
        self._job_total = 0

        self.thumbnails = ThumbnailCache(parent=self)
        self.photos = PhotoListModel(self.thumbnails, self)
        self.filtered = PhotoFilterModel(self)
        self.filtered.setSourceModel(self.photos)
        self.reader = StoredCaptionReader(parent=self)
        self.reader.captions_read.connect(self._on_reader_captions_read)
        self.thumbnails.image_ready.connect(self._on_thumbnails_image_ready)
        self.thumbnails.image_failed.connect(self._on_thumbnails_image_failed)

        self._build_actions()
        self._build_widgets()
        self._build_menus()
        self._connect_service()
        self.setAcceptDrops(True)
        self.resize(1280, 800)
        self._update_actions()

    # -- construction -------------------------------------------------------------------------

    def _build_actions(self) -> None:
        def action(text, slot, shortcut=None, tip=""):
            act = QAction(text, self)
            if shortcut is not None:
                act.setShortcut(QKeySequence(shortcut))
            act.setToolTip(tip or text)
            act.triggered.connect(slot)
            return act

        self.open_action = action("&Open Folder…", self._on_open_action_triggered, QKeySequence.StandardKey.Open)
        self.subfolders_action = action("Include &Subfolders", self._on_subfolders_action_toggled)
        self.subfolders_action.setCheckable(True)
        self.subfolders_action.setChecked(self.settings.include_subfolders)
        self.export_action = action("&Export CSV…", self._on_export_action_triggered, "Ctrl+E",
                                    "Export the captions of the folder (or of the selection) to CSV")
        self.quit_action = action("&Quit", self.close, QKeySequence.StandardKey.Quit)
        self.caption_all_action = action("Caption &All", self.caption_all, "Ctrl+Shift+A")
        self.caption_selected_action = action("Caption &Selected", self.caption_selected, "Ctrl+R")
        self.cancel_action = action("&Cancel", self.service.cancel, "Ctrl+.")
        self.accept_action = action("Accept &Held Captions", self.accept_held,
                                    tip="Write the captions held for review to their sidecars")
        self.settings_action = action("Se&ttings…", self._on_settings_action_triggered, QKeySequence.StandardKey.Preferences)
        self.undo_action = self.undo_stack.createUndoAction(self, "&Undo")
        self.undo_action.setShortcut(QKeySequence.StandardKey.Undo)
        self.redo_action = self.undo_stack.createRedoAction(self, "&Redo")
        self.redo_action.setShortcut(QKeySequence.StandardKey.Redo)

    def _build_widgets(self) -> None:
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
        self.grid.setModel(self.filtered)
        self.grid.selectionModel().currentChanged.connect(self._on_grid_current_changed)

        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter by caption…")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.textChanged.connect(self.filtered.set_filter_text)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.filter_edit)
        left_layout.addWidget(self.grid)
        left_layout.addWidget(_badge_legend())

        self.view = CaptionView()
        self.view.opacity_slider.setValue(self.settings.overlay_opacity)
        self.caption_edit = QLineEdit()
        self.caption_edit.setPlaceholderText("No caption — type one, or caption the photo")
        self.caption_edit.returnPressed.connect(self._on_caption_edit_return_pressed)
        self.state_label = QLabel()
        self.alternatives = QListWidget()
        self.alternatives.setMaximumHeight(80)
        self.alternatives.setToolTip("The beam's alternative captions; double-click one to use it")
        self.alternatives.itemActivated.connect(self._on_alternatives_item_activated)

        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.view, 1)
        right_layout.addWidget(self.state_label)
        right_layout.addWidget(self.caption_edit)
        right_layout.addWidget(QLabel("Alternatives"))
        right_layout.addWidget(self.alternatives)

        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 2)
        splitter.setSizes([460, 820])
        self.setCentralWidget(splitter)

        toolbar = QToolBar("Main")
        toolbar.setObjectName("mainToolbar")
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        for act in (self.open_action, self.caption_all_action, self.caption_selected_action, self.cancel_action,
                    self.accept_action, self.export_action, self.settings_action):
            toolbar.addAction(act)
        self.addToolBar(toolbar)

        status = self.statusBar()
        self.model_label = QLabel("Model: not loaded")
        self.progress_bar = QProgressBar()
        self.progress_bar.setMaximumWidth(260)
        self.progress_bar.setFormat("%v / %m")
        self.progress_bar.setVisible(False)
        self.eta_label = QLabel()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.service.cancel)
        self.cancel_button.setVisible(False)
        status.addPermanentWidget(self.progress_bar)
        status.addPermanentWidget(self.eta_label)
        status.addPermanentWidget(self.cancel_button)
        status.addPermanentWidget(self.model_label)

    def _build_menus(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addAction(self.open_action)
        self.recent_menu = file_menu.addMenu("Open &Recent")
        self._rebuild_recent_menu()
        file_menu.addAction(self.subfolders_action)
        file_menu.addSeparator()
        file_menu.addAction(self.export_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        edit_menu = menu.addMenu("&Edit")
        edit_menu.addAction(self.undo_action)
        edit_menu.addAction(self.redo_action)
        edit_menu.addSeparator()
        edit_menu.addAction(self.settings_action)
        caption_menu = menu.addMenu("&Caption")
        for act in (self.caption_all_action, self.caption_selected_action, self.cancel_action, self.accept_action):
            caption_menu.addAction(act)

    def _connect_service(self) -> None:
        self.service.model_loading.connect(self._on_service_model_loading)
        self.service.model_loaded.connect(self._on_service_model_loaded)
        self.service.model_failed.connect(self._on_service_model_failed)
        self.service.caption_generated.connect(self._on_service_caption_generated)
        self.service.progress.connect(self._on_service_progress)
        self.service.batch_failed.connect(self._on_service_batch_failed)
        self.service.finished.connect(self._on_service_finished)

    # -- folders ------------------------------------------------------------------------------

    def open_folder(self, folder: str | Path) -> bool:
        """Show a folder's photos; their stored captions are read in the background."""
        folder = Path(folder).expanduser()
        try:
            photos = scan_folder(folder, recursive=self.settings.include_subfolders)
        except OSError as exc:
            self.statusBar().showMessage(f"Cannot open {folder}: {exc}", 8000)
            return False
        self.reader.stop()
        self.service.cancel()  # the old folder's job ends after its current batch
        self.undo_stack.clear()
        self.folder = folder
        self.thumbnails.clear()
        self.photos.set_photos(photos)
        self.setWindowTitle(f"{folder.name} — imgcap")
        self.reader.read(photos)
        self.settings = self.settings.with_recent_folder(str(folder.resolve()))
        self._save_settings()
        self._rebuild_recent_menu()
        self.statusBar().showMessage(f"{len(photos)} photos in {folder}", 5000)
        if photos:
            self.grid.setCurrentIndex(self.filtered.index(0, 0))
        else:
            self._show_item(None)
        self._update_actions()
        return True

    def _on_open_action_triggered(self) -> None:
        start = str(self.folder) if self.folder else str(Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Open a photo folder", start)
        if folder:
            self.open_folder(folder)

    def _on_subfolders_action_toggled(self) -> None:
        self.settings = replace(self.settings, include_subfolders=self.subfolders_action.isChecked())
        self._save_settings()
        if self.folder is not None:
            self.open_folder(self.folder)

    def _rebuild_recent_menu(self) -> None:
        self.recent_menu.clear()
        for folder in self.settings.recent_folders:
            act = self.recent_menu.addAction(folder)
            act.triggered.connect(lambda _checked=False, f=folder: self.open_folder(f))
        self.recent_menu.setEnabled(bool(self.settings.recent_folders))

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self._dropped_folder(event.mimeData().urls()) is not None:
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        folder = self._dropped_folder(event.mimeData().urls())
        if folder is not None:
            self.open_folder(folder)
            event.acceptProposedAction()

    @staticmethod
    def _dropped_folder(urls: list[QUrl]) -> Path | None:
        for url in urls:
            if url.isLocalFile():
                path = Path(url.toLocalFile())
                return path if path.is_dir() else path.parent
        return None

    def _on_reader_captions_read(self, rows: list) -> None:
        for path, caption, error in rows:
            item = self.photos.item_at(path)
            if item is None or item.caption is not None or item.result is not None:
                continue  # captioned in this session meanwhile: that is newer
            self.photos.update(path, caption=caption, error=error)
        self._refresh_current()

    # -- captioning ---------------------------------------------------------------------------

    def caption_all(self) -> bool:
        return self._caption(self.photos.items())

    def caption_selected(self) -> bool:
        return self._caption([self.photos.item(self.filtered.mapToSource(i).row()) for i in self._selected_indexes()])

    def _caption(self, items: list[PhotoItem]) -> bool:
        if self.service.busy or not items:
            return False
        policy = self.settings.overwrite_policy
        human = sum(1 for item in items if item.state is CaptionState.EDITED)
        if policy == "replace_all" and human and not self._confirm_replace_human(human):
            policy = "replace_automatic"
        photos = []
        for item in items:
            state = item.state
            if state in (CaptionState.NONE, CaptionState.ERROR):
                photos.append(item.path)
            elif policy == "replace_all" or (policy == "replace_automatic" and state is not CaptionState.EDITED):
                photos.append(item.path)
        if not photos:
            self.statusBar().showMessage("Every photo already has a caption (see Settings: overwrite policy)", 6000)
            return False
        store = StoreOptions(write_sidecars=self.settings.auto_write, sidecar_style=self.settings.sidecar_style,
                             overwrite_human=policy == "replace_all")
        job = CaptionJob(tuple(photos), beam_size=self.settings.beam_size, batch_size=self.settings.batch_size,
                         device=self.settings.device, store=store)
        started = self.service.caption(job)
        if started:
            self._job_total = len(photos)
            self.progress_bar.setRange(0, len(photos))
            self.progress_bar.setValue(0)
            self.progress_bar.setVisible(True)
            self.cancel_button.setVisible(True)
            self.eta_label.setText("starting…")
            self._update_actions()
        return started

    def _confirm_replace_human(self, count: int) -> bool:
        """Ask before captions a person wrote are replaced (the settings allow it, but every time counts)."""
        answer = QMessageBox.question(
            self, "Replace human captions?",
            f"{count} of these photos have captions written or edited by a person. Replace them too?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def _on_service_model_loading(self) -> None:
        self.model_label.setText("Model: loading…")

    def _on_service_model_loaded(self, name: str, device: str) -> None:
        self.model_label.setText(f"Model: {name} · {device}")

    def _on_service_model_failed(self, reason: str) -> None:
        self.model_label.setText("Model: failed to load")
        self.statusBar().showMessage(f"The model could not be loaded: {reason}", 15000)

    def _on_service_caption_generated(self, outcomes: list, statuses: list[PhotoStatus]) -> None:
        for outcome, status in zip(outcomes, statuses, strict=True):
            if status.status == "failed":
                self.photos.update(status.photo, error=status.message.split(": ", 1)[-1],
                                   result=outcome if outcome.ok else None, held=False)
            elif status.status == "kept_human":
                self.photos.update(status.photo, caption=status.caption, error="", result=None, held=False)
            else:
                self.photos.update(status.photo, caption=status.caption, error="", result=outcome,
                                   held=status.status == "captioned")
        self._refresh_current()

    def _on_service_progress(self, done: int, total: int) -> None:
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(done)
        elapsed = time.monotonic() - self.service.started_at
        if done and done < total:
            remaining = elapsed / done * (total - done)
            self.eta_label.setText(f"about {_duration(remaining)} left")

    def _on_service_batch_failed(self, reason: str) -> None:
        self.statusBar().showMessage(f"Captioning stopped: {reason}", 15000)

    def _on_service_finished(self, cancelled: bool) -> None:
        self.progress_bar.setVisible(False)
        self.cancel_button.setVisible(False)
        self.eta_label.setText("")
        done = self.progress_bar.value()
        verb = "Cancelled after" if cancelled else "Captioned"
        self.statusBar().showMessage(f"{verb} {done} of {self._job_total} photos", 8000)
        self._update_actions()

    def accept_held(self) -> int:
        """Write every held caption to its sidecar; returns how many were written."""
        written = 0
        for item in self.photos.items():
            if item.held and item.caption is not None:
                if self._write(item.path, item.caption):
                    self.photos.update(item.path, held=False)
                    written += 1
        self.statusBar().showMessage(f"Wrote {written} captions to sidecars", 5000)
        return written

    # -- the selected photo -------------------------------------------------------------------

    def current_item(self) -> PhotoItem | None:
        index = self.grid.currentIndex()
        if not index.isValid():
            return None
        return self.photos.item(self.filtered.mapToSource(index).row())

    def _selected_indexes(self) -> list[QModelIndex]:
        return sorted(self.grid.selectionModel().selectedIndexes(), key=lambda i: i.row())

    def _on_grid_current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        self._show_item(self.current_item() if current.isValid() else None)

    def _refresh_current(self) -> None:
        item = self.current_item()
        if item is not None and (item.text != self.view_caption_text or item.state.value != self._shown_state):
            self._show_item(item)

    view_caption_text = ""
    _shown_state = ""

    def _show_item(self, item: PhotoItem | None) -> None:
        self.alternatives.clear()
        if item is None:
            self.view.set_photo(None, "No photo selected")
            self.view.set_caption((), None)
            self.caption_edit.clear()
            self.state_label.clear()
            self.view_caption_text, self._shown_state = "", ""
            return
        image = self.thumbnails.image(str(item.path), PREVIEW_SIZE)
        failure = self.thumbnails.failure(str(item.path), PREVIEW_SIZE)
        self.view.set_photo(image, failure or "Loading…")
        if item.attention_matches:
            self.view.set_caption(item.result.words, item.result.attention)
        else:
            self.view.set_caption(tuple(item.text.split()), None)
        self.caption_edit.setText(item.text)
        self.view_caption_text, self._shown_state = item.text, item.state.value
        self.state_label.setText(_describe(item))
        if item.result is not None:
            for alternative in item.result.alternatives:
                entry = QListWidgetItem(f"{alternative.text}    ({alternative.score:.2f})")
                entry.setData(Qt.ItemDataRole.UserRole, alternative.text)
                self.alternatives.addItem(entry)

    def _on_thumbnails_image_ready(self, path: str, size: int) -> None:
        item = self.current_item()
        if size == PREVIEW_SIZE and item is not None and str(item.path) == path:
            self._show_item(item)

    def _on_thumbnails_image_failed(self, path: str, size: int, reason: str) -> None:
        self._on_thumbnails_image_ready(path, size)

    # -- editing ------------------------------------------------------------------------------

    def edit_caption(self, text: str, path: Path | None = None) -> bool:
        """Set a photo's caption as typed by the user (undoable); the current photo by default."""
        item = self.photos.item_at(path) if path is not None else self.current_item()
        text = " ".join(text.split())
        if item is None or text == item.text:
            return False
        new = StoredCaption(text, "human", captioned_at=_now()) if text else None
        self.undo_stack.push(_EditCaption(self, item.path, new, item.caption))
        return True

    def _on_caption_edit_return_pressed(self) -> None:
        self.edit_caption(self.caption_edit.text())

    def _on_alternatives_item_activated(self, entry: QListWidgetItem) -> None:
        self.edit_caption(entry.data(Qt.ItemDataRole.UserRole))

    def _apply_caption(self, path: Path, caption: StoredCaption | None) -> None:
        held = not self.settings.auto_write
        if not held:
            self._write(path, caption or StoredCaption("", "human"))
        self.photos.update(path, caption=caption, error="", held=held and caption is not None)
        item = self.current_item()
        if item is not None and item.path == path:
            self._show_item(item)

    def _write(self, path: Path, caption: StoredCaption) -> bool:
        try:
            write_caption(path, caption, style=self.settings.sidecar_style)
        except (SidecarError, ValueError) as exc:
            self.statusBar().showMessage(f"Not saved: {exc}", 10000)
            return False
        return True

    # -- export -------------------------------------------------------------------------------

    def export_csv(self, csv_file: str | Path, *, selection_only: bool = False) -> int:
        """Write the folder's (or the selection's) captions to a CSV file; returns the number of rows."""
        if self.folder is None:
            return 0
        if selection_only:
            items = [self.photos.item(self.filtered.mapToSource(i).row()) for i in self._selected_indexes()]
        else:
            items = self.photos.items()
        rows = []
        for item in items:
            try:
                sidecar = find_sidecar(item.path)
            except SidecarError:
                sidecar = None
            rows.append(make_row(item.path, self.folder, item.caption, sidecar=sidecar))
        write_csv(csv_file, rows)
        return len(rows)

    def _on_export_action_triggered(self) -> None:
        if self.folder is None:
            return
        selection_only = len(self._selected_indexes()) > 1
        what = "selected photos" if selection_only else "folder"
        name, _ = QFileDialog.getSaveFileName(self, f"Export the {what} to CSV",
                                              str(self.folder / "captions.csv"), "CSV files (*.csv)")
        if not name:
            return
        try:
            count = self.export_csv(name, selection_only=selection_only)
        except SidecarError as exc:
            QMessageBox.warning(self, "Export failed", str(exc))
            return
        self.statusBar().showMessage(f"Exported {count} photos to {name}", 6000)

    # -- settings -----------------------------------------------------------------------------

    def _on_settings_action_triggered(self) -> None:
        from imgcap_desktop.settings_dialog import SettingsDialog

        dialog = SettingsDialog(self.settings, self)
        if dialog.exec():
            self.apply_settings(dialog.result_settings())

    def apply_settings(self, settings: AppSettings) -> None:
        self.settings = settings
        self.view.opacity_slider.setValue(settings.overlay_opacity)
        self._save_settings()

    def _save_settings(self) -> None:
        self.settings = replace(self.settings, overlay_opacity=self.view.opacity_slider.value())
        save_settings(self.settings)

    def _update_actions(self) -> None:
        busy = self.service.busy
        has_folder = self.folder is not None and self.photos.rowCount() > 0
        self.caption_all_action.setEnabled(has_folder and not busy)
        self.caption_selected_action.setEnabled(has_folder and not busy)
        self.cancel_action.setEnabled(busy)
        self.export_action.setEnabled(has_folder)

    def closeEvent(self, event) -> None:
        self.reader.stop()
        self._save_settings()
        self.service.shutdown()
        super().closeEvent(event)


def _badge_legend() -> QLabel:
    names = {CaptionState.AUTOMATIC: "automatic", CaptionState.EDITED: "edited", CaptionState.EMBEDDED: "embedded",
             CaptionState.ERROR: "error"}
    parts = [f'<span style="color:{BADGE_COLOURS[state].name()}">●</span> {name}' for state, name in names.items()]
    parts.append('<span style="color:#fdd835">●</span> held for review')
    legend = QLabel("&nbsp;&nbsp;".join(parts))
    legend.setObjectName("badgeLegend")
    return legend


def _describe(item: PhotoItem) -> str:
    state = item.state
    if state is CaptionState.ERROR:
        return f"Error: {item.error}"
    if state is CaptionState.NONE:
        return "No caption yet"
    caption = item.caption
    text = {
        CaptionState.AUTOMATIC: f"Automatic caption ({caption.model or 'model'}, score {caption.score:.2f})"
        if caption.score is not None else "Automatic caption",
        CaptionState.EDITED: "Written or edited by a person",
        CaptionState.EMBEDDED: "Description embedded in the photo",
    }[state]
    return text + (" — held, not yet written to the sidecar" if item.held else "")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
