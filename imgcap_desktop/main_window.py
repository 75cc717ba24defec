"""The main window: widgets, and the wiring between them, the caption session and the caption service.

What happens to captions (which photos a run takes, edits beating late results, sidecar writes,
export) is the :class:`~imgcap_desktop.session.CaptionSession`'s business; this window shows it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import fields, replace
from functools import partial
from pathlib import Path

from PySide6.QtCore import QEvent, QModelIndex, QSignalBlocker, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QIcon, QStatusTipEvent, QUndoStack
from PySide6.QtWidgets import QApplication, QFileDialog, QMainWindow, QMessageBox, QSplitter, QStatusBar

from imgcap_desktop import dialogs
from imgcap_desktop.actions import SetCaptionCommand, SetKeywordsCommand, build_actions, build_menus, build_toolbar
from imgcap_desktop.caption_panel import CaptionPanel
from imgcap_desktop.caption_service import CaptionJob, CaptionService
from imgcap_desktop.folder_reader import StoredCaptionReader
from imgcap_desktop.folder_watcher import FolderWatcher
from imgcap_desktop.metadata.csvio import CsvFormatError
from imgcap_desktop.metadata.folder import FolderChanges, scan_folder
from imgcap_desktop.metadata.printable import literal, printable
from imgcap_desktop.photo_grid import PhotoGrid
from imgcap_desktop.photo_model import PhotoFilterModel, PhotoListModel, SessionSignals
from imgcap_desktop.run_status import RunStatus, count, describe_error
from imgcap_desktop.session import CaptionSession, Photo, caption_for, normalized_caption
from imgcap_desktop.settings import (
    AppSettings,
    load_settings,
    load_window_state,
    save_settings,
    save_window_state,
)
from imgcap_desktop.thumbnails import ThumbnailCache
from imgcap_desktop.workers import run_in_background
from model.images import SUPPORTED_EXTENSIONS

log = logging.getLogger(__name__)

ICON_PATH = Path(__file__).resolve().parent.parent / "resources" / "icons" / "imgcap.svg"
PREVIEW_SIZE = 1024


class MainWindow(QMainWindow):
    """The app's window: a folder's photos in a grid, the selected one beside it.

    Signals:
        exported(str path, int rows): a CSV export was written.
        export_failed(object exception): a CSV export could not be written.
    """

    exported = Signal(object, int)  # the CSV's name as a Python str: a Qt string drops bytes that are not UTF-8
    export_failed = Signal(object)

    def __init__(self, service: CaptionService | None = None, settings: AppSettings | None = None, parent=None):
        super().__init__(parent)
        self.setWindowTitle("imgcap")
        if ICON_PATH.exists():
            self.setWindowIcon(QIcon(str(ICON_PATH)))
        unreadable: list[str] = []
        self.settings = settings if settings is not None else load_settings(problems=unreadable)
        # Said with the next status message (an opened folder's would hide it at once): the settings
        # file that could not be read or written.
        self._settings_note = (f"Settings not understood, their defaults used: {', '.join(unreadable)}."
                               if unreadable else "")
        self._saved = self.settings  # what this window last read or wrote: only what differs is written
        self.service = service if service is not None else CaptionService(parent=self)
        self.session = CaptionSession(sidecar_style=self.settings.sidecar_style, auto_write=self.settings.auto_write)
        self.session_signals = SessionSignals(self.session, self)
        self.undo_stack = QUndoStack(self)
        self.thumbnails = ThumbnailCache(parent=self)
        self.photos = PhotoListModel(self.session, self.session_signals, self.thumbnails, self)
        self.filtered = PhotoFilterModel(self)
        self.filtered.setSourceModel(self.photos)
        self.reader = StoredCaptionReader(self.session, parent=self)
        self.watcher = FolderWatcher(self)

        build_actions(self)
        self._build_widgets()
        build_menus(self)
        self._connect()
        self.setAcceptDrops(True)
        self.resize(1280, 800)
        self._restore_window_state()
        self._update_actions()
        if self._settings_note:
            self.statusBar().showMessage(self._settings_note)

    @property
    def folder(self) -> Path | None:
        return self.session.folder

    # -- construction -------------------------------------------------------------------------

    def _build_widgets(self) -> None:
        self.setStatusBar(StatusBar(self))
        self.browser = PhotoGrid(self.filtered)
        self.grid, self.filter_edit = self.browser.grid, self.browser.filter_edit
        self.panel = CaptionPanel()
        self.view, self.caption_edit = self.panel.view, self.panel.caption_edit
        self.state_label, self.alternatives = self.panel.state_label, self.panel.alternatives
        self.view.opacity_slider.setValue(self.settings.overlay_opacity)

        self.splitter = QSplitter()
        self.splitter.setObjectName("mainSplitter")
        self.splitter.addWidget(self.browser)
        self.splitter.addWidget(self.panel)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setSizes([460, 820])
        self.setCentralWidget(self.splitter)
        build_toolbar(self)
        self.run_status = RunStatus(self.service, self.statusBar(), self, focus_after=self.grid)
        self.model_label, self.progress_bar = self.run_status.model_label, self.run_status.progress_bar
        self.eta_label, self.cancel_button = self.run_status.eta_label, self.run_status.cancel_button

    def _connect(self) -> None:
        self.session_signals.photos_changed.connect(self._on_session_photos_changed)
        self.thumbnails.image_ready.connect(self._on_thumbnails_image_ready)
        self.thumbnails.image_failed.connect(self._on_thumbnails_image_failed)
        self.grid.selectionModel().currentChanged.connect(self._on_grid_current_changed)
        self.grid.selectionModel().selectionChanged.connect(self._on_grid_selection_changed)
        self._pin_selection_timer = QTimer(self)
        self._pin_selection_timer.setSingleShot(True)
        self._pin_selection_timer.timeout.connect(self._pin_selection)
        self.filter_edit.textChanged.connect(self._on_filter_edit_text_changed)
        self.panel.caption_edited.connect(self.edit_caption)
        self.panel.alternative_chosen.connect(self._on_panel_alternative_chosen)
        self.panel.recompute_requested.connect(self.recompute_attention)
        self.panel.keyword_removal_requested.connect(self.remove_keyword)
        self.service.finished.connect(self._update_actions)
        self.watcher.changed.connect(self._on_watcher_changed)
        self.watcher.unavailable.connect(self._on_watcher_unavailable)
        self.export_failed.connect(self._on_export_failed)

    # -- folders ------------------------------------------------------------------------------

    def open_folder(self, folder: str | Path, *, before: str | None = None) -> bool:
        """Show a folder's photos; their stored captions are read in the background. Held captions
        are asked about first (``before``: what is about to happen, for the question)."""
        folder = _absolute(Path(folder).expanduser())
        again = self.session.folder is not None and self.session.folder == folder
        if not self._settle_held(before or ("reading the folder again" if again else "opening another folder")):
            return False
        unlisted: list[str] = []
        subfolders: list[Path] = []
        try:
            photos = scan_folder(folder, recursive=self.settings.include_subfolders, problems=unlisted,
                                 subfolders=subfolders)
        except OSError as exc:
            self.statusBar().showMessage(f"Cannot open {folder}: {exc}", 8000)
            if isinstance(exc, FileNotFoundError) and str(folder) in self.settings.recent_folders:
                # Gone (moved, renamed, deleted): out of the recent list, which should only offer folders there are.
                recent = tuple(f for f in self.settings.recent_folders if f != str(folder))
                self.settings = replace(self.settings, recent_folders=recent)
                self._save_settings()
                self._rebuild_recent_menu()
            return False
        self.reader.stop()
        self.service.cancel()  # the old folder's job ends after its current batch
        self.undo_stack.clear()
        self.thumbnails.clear()
        self.session.open(photos, folder)
        self.setWindowTitle(f"{printable(folder.name or str(folder))} — imgcap")
        self.reader.read()
        self.watcher.watch(folder, photos, recursive=self.settings.include_subfolders)
        # Another running copy's folders stay in the list; this folder under another spelling (a link
        # to it, or its resolved path as older versions saved it) goes, the newest spelling kept.
        stored = tuple(f for f in load_settings().recent_folders if not _same_folder(f, folder))
        # The path the user chose, links kept, as the session holds it: Open Recent through a link
        # then opens the same folder again (resolved, results still to come went nowhere).
        self.settings = replace(self.settings, recent_folders=stored).with_recent_folder(str(folder))
        self._save_settings()
        self._rebuild_recent_menu()
        if unlisted:
            log.warning("while opening %s: %s", folder, "; ".join(unlisted))
            more = f" (and {count(len(unlisted) - 1, 'other subfolder')})" if len(unlisted) > 1 else ""
            message, seconds = f"{count(len(photos), 'photo')} in {folder}. Left out: {unlisted[0]}{more}", 15
        elif not photos and subfolders:
            message, seconds = (f"No photos in {folder}; File > Include Subfolders shows those of its subfolders",
                                15)
        else:
            message, seconds = f"{count(len(photos), 'photo')} in {folder}", 5
        if self._settings_note:  # once, with the folder's
            message, seconds, self._settings_note = f"{message}. {self._settings_note}", 20, ""
        self.statusBar().showMessage(message, seconds * 1000)
        if (first := self.filtered.index(0, 0)).isValid():
            self.grid.setCurrentIndex(first)
        else:  # no photos, or none the filter lets through: no photo of the last folder stays shown
            self._show_current()
        self._update_actions()
        return True

    def _on_watcher_changed(self, changes: FolderChanges) -> None:
        """Another program changed the folder: photos join or leave the grid, and photos whose
        sidecar (or file) changed show what they store now."""
        typing = self.panel.typing_for  # a photo gone while its caption is typed stays, as a held one does
        added, removed = self.session.sync_photos(changes.photos, keep=() if typing is None else (typing,))
        # Gone but kept: looked for at each look, to go once let go (typed or given up), or to be read
        # again where another file comes under the name (the old photo's caption was shown for it).
        self.watcher.keep_listed([p for p in changes.removed if p not in removed])
        # A photo saved over, and one under a name that left and came back, is decoded again (one
        # gone but kept keeps its picture, the one its caption is typed for).
        renewed = {*changes.replaced, *changes.added, *removed}
        if renewed:
            self.photos.forget_thumbnails(renewed)
        current = self.current_item()
        if current is not None and current.path in changes.replaced:
            self._show_current()
        if added or removed:
            parts = [f"{count(len(added), 'photo')} added"] if added else []
            parts += [f"{count(len(removed), 'photo')} removed"] if removed else []
            self.statusBar().showMessage(f"{' and '.join(parts)} by another program", 8000)
            self._update_actions()
        if added or changes.restored:
            session = self.session

            def read() -> None:
                session.read_stored(added)
                session.refresh_stored(changes.restored, replaced=changes.replaced)

            run_in_background(read, on_finished=partial(self._on_stored_read_again, changes.restored), owner=self)

    def _on_stored_read_again(self, paths: tuple[Path, ...]) -> None:
        """Sidecars another program changed were read: the photo shown shows other programs'
        keywords as they are now too (its caption, if it changed, is shown already)."""
        current = self.current_item()
        if current is not None and current.path in paths:
            self._show_current()

    def _on_watcher_unavailable(self, reason: str) -> None:
        self.statusBar().showMessage(f"Cannot look at {self.folder} now: {reason}", 8000)

    def event(self, event: QEvent) -> bool:
        # The mouse over a menu command without a status tip (all of them) sends an empty one, which
        # Qt shows by clearing the status bar: a run's summary went as a menu was browsed.
        if event.type() == QEvent.Type.StatusTip and isinstance(event, QStatusTipEvent) and not event.tip():
            return True
        return super().event(event)

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.ActivationChange:
            self.watcher.set_beating(self.isActiveWindow())  # in the background: notices only
            if self.isActiveWindow():
                self.watcher.check()  # back from another program: what did it change?

    def _on_open_action_triggered(self) -> None:
        start = str(self.folder) if self.folder else str(Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Open a photo folder", start)
        if folder:
            self.open_folder(folder)

    def _on_subfolders_action_toggled(self) -> None:
        before = self.settings
        self.settings = replace(self.settings, include_subfolders=self.subfolders_action.isChecked())
        shown = ("showing the subfolders' photos too" if self.settings.include_subfolders
                 else "leaving out the subfolders")
        if self.folder is not None and not self.open_folder(self.folder, before=shown):  # held kept: as it was
            self.settings = before
            with QSignalBlocker(self.subfolders_action):
                self.subfolders_action.setChecked(before.include_subfolders)
        self._save_settings()

    def _rebuild_recent_menu(self) -> None:
        self.recent_menu.clear()
        for folder in self.settings.recent_folders:
            act = self.recent_menu.addAction(literal(printable(folder)))  # "R&D photos", not "RD photos"
            act.triggered.connect(partial(self.open_folder, folder))
        self.recent_menu.setEnabled(bool(self.settings.recent_folders))

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if _to_open(_local_paths(event.mimeData().urls()))[0] is not None:
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = _local_paths(event.mimeData().urls())
        if _to_open(paths)[0] is None:
            return
        event.acceptProposedAction()
        self.open_paths(paths, "dropped")

    def open_paths(self, paths: Sequence[Path], how: str = "given") -> bool:
        """Open what was dropped on the window, or given on the command line (a file manager's Open
        With, for one photo or several): the first folder, or the first photo's folder with that photo
        chosen; the others are left out, and the status bar says so (``how`` they came: "dropped")."""
        folder, photo, others = _to_open(paths)
        if folder is None:  # nothing there to open: the first one's reason is said
            return bool(paths) and self.open_folder(paths[0])
        if not self.open_folder(folder):
            return False
        if photo is not None:  # a photo: its folder, with that photo chosen
            row = self.photos.row_of(photo)
            if row is not None:
                self.grid.setCurrentIndex(self.filtered.mapFromSource(self.photos.index(row)))
        if others:
            left_out = f"the other {how} item was" if others == 1 else f"the other {others} {how} items were"
            self.statusBar().showMessage(f"Opened {folder}; one folder at a time, so {left_out} left out.", 15000)
        return True

    # -- captioning ---------------------------------------------------------------------------

    def caption_all(self) -> bool:
        return self._caption(None)

    def caption_selected(self) -> bool:
        """Caption the photos selected or, with none selected (the one chosen was deleted, or the
        filter hid it, and the grid moved on), the photo shown: the one a keyboard user hears."""
        photos = self.selected_photos() or [photo for photo in (self.current_item(),) if photo is not None]
        if not photos and self.folder is not None and not self.service.busy:
            self.statusBar().showMessage("No photo is selected: choose one in the grid first", 8000)
        return self._caption([photo.path for photo in photos])

    def recompute_attention(self) -> bool:
        """Compute the attention maps of the current photo's caption, as it is (stored earlier,
        typed, or an alternative picked): the model is shown its words; nothing is written."""
        photo = self.current_item()
        if photo is None or not photo.recomputable:
            return False
        if self.service.busy:
            self.statusBar().showMessage("Attention maps can be shown once the run under way is over", 8000)
            return False
        job = CaptionJob((photo.path,), batch_size=1, device=self.settings.device,
                         store=self.session.apply_attention, texts=(photo.text,))
        if not self.service.caption(job):
            return False
        self.run_status.start(1, verb="Attention maps for")
        self._update_actions()
        return True

    def _caption(self, paths: list[Path] | None, policy: str | None = None) -> bool:
        if self.service.busy or self.folder is None or (paths is not None and not paths):
            return False
        plan = self.session.plan(paths, policy or self.settings.overwrite_policy)
        if plan.overwrite_human and plan.human_count and not self._confirm_replace_human(plan.human_count):
            plan = self.session.without_human(plan)
        if not plan.photos:
            failed = [status for status in plan.settled if status.status == "failed"]
            self.statusBar().showMessage(failed[0].message if failed else
                                         "Every photo already has a caption (see Settings: existing captions)", 8000)
            return False
        job = CaptionJob(plan.photos, beam_size=self.settings.beam_size, batch_size=self.settings.batch_size,
                         device=self.settings.device, store=partial(self.session.apply_outcomes, plan))
        if not self.service.caption(job):
            return False
        self.run_status.start(len(plan.photos), [s.message for s in plan.settled if s.status == "failed"])
        self._update_actions()
        return True

    def _confirm_replace_human(self, count: int) -> bool:
        return dialogs.confirm_replace_human(self, count)

    def accept_held(self) -> int:
        """Write every held caption to its sidecar; returns how many were written."""
        self.panel.commit_typing()  # what is in the caption box is one of them (it was left out)
        written, not_written = self.session.accept_held()
        message = f"Wrote {count(written, 'caption')} to sidecars"
        kept = [s for s in not_written if s.status == "kept_human"]
        failures = [s for s in not_written if s.status != "kept_human"]
        if kept:
            message += (f"; kept {count(len(kept), 'caption')} that a person wrote in another program since "
                        f"({kept[0].photo.name}{', …' if len(kept) > 1 else ''})")
        if failures:
            message += f"; {len(failures)} could not be written: {failures[0].message}"
        self.statusBar().showMessage(message, 10000)
        return written

    # -- the selected photo -------------------------------------------------------------------

    def current_item(self) -> Photo | None:
        index = self.grid.currentIndex()
        if not index.isValid():
            return None
        return self.photos.item(self.filtered.mapToSource(index).row())

    def selected_photos(self) -> list[Photo]:
        indexes = sorted(self.grid.selectionModel().selectedIndexes(), key=lambda i: i.row())
        return [self.photos.item(self.filtered.mapToSource(i).row()) for i in indexes]

    def _on_grid_current_changed(self, _current: QModelIndex, _previous: QModelIndex) -> None:
        photo = self.current_item()  # it stays in a filtered grid while its caption changes
        self.filtered.pin_shown(photo.path if photo is not None else None)
        self._show_current()

    def _on_filter_edit_text_changed(self, _text: str) -> None:
        self._pin_selection()  # after the grid is filtered

    def _on_grid_selection_changed(self, _selected, _deselected) -> None:
        if self.filtered.filtering:  # once a pass: a run's or a drag's storm of changes is one
            self._pin_selection_timer.start(0)

    def _pin_selection(self) -> None:
        """The photos selected stay in a filtered grid while their captions change."""
        chosen: set[Path] = set()
        if self.filtered.filtering:
            for area in self.filtered.mapSelectionToSource(self.grid.selectionModel().selection()):
                chosen.update(self.photos.path(row) for row in range(area.top(), area.bottom() + 1))
        self.filtered.pin_selected(chosen)

    def _on_session_photos_changed(self, paths) -> None:
        photo = self.current_item()
        if photo is not None and photo.path in paths:
            self._show_current()  # the panel keeps the word chosen where the photo shows as it did

    def _show_current(self) -> None:
        photo = self.current_item()
        if photo is None:
            self.panel.show_photo(None)
            return
        path = str(photo.path)
        self.panel.show_photo(photo, self.thumbnails.image(path, PREVIEW_SIZE),
                              self.thumbnails.failure(path, PREVIEW_SIZE), self.session.other_keywords(photo.path))

    def _on_thumbnails_image_ready(self, path: str, size: int) -> None:
        photo = self.current_item()
        if size == PREVIEW_SIZE and photo is not None and str(photo.path) == path:
            self._show_current()

    def _on_thumbnails_image_failed(self, path: str, size: int, _reason: str) -> None:
        self._on_thumbnails_image_ready(path, size)

    # -- editing ------------------------------------------------------------------------------

    def edit_caption(self, text: str, path: Path | None = None, *, source: str = "human") -> bool:
        """Set a photo's caption as the user's (undoable); the current photo by default.

        ``source="automatic"`` for one of the model's alternatives.
        """
        photo = self.photos.item_at(path) if path is not None else self.current_item()
        text = normalized_caption(text)
        # Text committed unchanged is no edit, even where the stored caption has double spaces or
        # trailing ones (another program's, or the photo's own).
        if photo is None or text == normalized_caption(photo.text):
            return False
        # An alternative is the model's that captioned the photo now, also over a person's edit.
        model = (self.service.model_name or None) if photo.result is not None else None
        new = caption_for(photo, text, source, model)
        self.undo_stack.push(SetCaptionCommand(self.session, photo.path, new, photo.caption, self._undo_refused))
        return True

    def _undo_refused(self, path: Path, undoing: bool) -> None:
        self.statusBar().showMessage(
            f"{path.name}: its caption was changed since (by another program or a later run); it is kept, "
            f"and nothing was {'undone' if undoing else 'redone'}", 15000)

    def remove_keyword(self, word: str, path: Path | None = None) -> bool:
        """Remove one of a photo's keywords as a person's edit (undoable); the current photo by default."""
        photo = self.photos.item_at(path) if path is not None else self.current_item()
        if photo is None or word not in photo.keywords:
            return False
        new = tuple(k for k in photo.keywords if k != word)
        self.undo_stack.push(SetKeywordsCommand(self.session, photo.path, new, photo.keywords,
                                                f"Remove keyword “{word}” of {photo.path.name}", self._undo_refused))
        return True

    def _on_panel_alternative_chosen(self, text: str) -> None:
        self.edit_caption(text, source="automatic")

    # -- export -------------------------------------------------------------------------------

    def export_csv(self, csv_file: str | Path, *, selection_only: bool = False, excel_bom: bool = False) -> bool:
        """Write the folder's (or the selection's) captions to a CSV file in the background.

        ``exported(path, rows)`` or ``export_failed(exception)`` says how it went. False when
        there is nothing to export.
        """
        if self.folder is None:
            return False
        paths = [p.path for p in self.selected_photos()] if selection_only else None
        run_in_background(self.session.export_csv, csv_file, paths, excel_bom=excel_bom,
                          on_returned=partial(self._on_export_task_returned, str(csv_file)),
                          on_errored=self._on_export_task_errored, owner=self)  # said by a window still open
        return True

    def _on_export_task_returned(self, csv_file: str, rows: int) -> None:
        self.exported.emit(csv_file, rows)

    def _on_export_task_errored(self, exc: BaseException) -> None:
        self.export_failed.emit(exc)

    def _on_export_action_triggered(self) -> None:
        if self.folder is None:
            return
        self.panel.commit_typing()  # what is in the caption box goes in, as before closing
        selection_only = len(self.selected_photos()) > 1
        name, excel_bom = dialogs.ask_export_file(self, self.folder, selection_only)
        if name:
            self.exported.connect(self._on_exported, Qt.ConnectionType.SingleShotConnection)
            self.export_csv(name, selection_only=selection_only, excel_bom=excel_bom)

    def import_csv(self, csv_file: str | Path) -> bool:
        """Apply an edited CSV's captions to the folder's sidecars (as a person's); says how it went."""
        if self.folder is None:
            return False
        try:
            report = self.session.import_csv(csv_file)
        except (CsvFormatError, OSError) as exc:
            QMessageBox.warning(self, "Import failed", f"{Path(csv_file).name} could not be imported: {exc}")
            return False
        problems = report.problems
        message = f"Applied {count(len(report.applied), 'caption')}, {len(report.unchanged)} unchanged"
        if problems:  # the first reason in the status bar, all of them in the log
            log.warning("importing %s: %s", csv_file, "; ".join(problems))
            message += f", {count(len(problems), 'row')} not applied ({problems[0]}"
            message += f"; and {len(problems) - 1} more)" if len(problems) > 1 else ")"
        self.statusBar().showMessage(message, 20000 if problems else 10000)
        return True

    def _on_import_action_triggered(self) -> None:
        if self.folder is None:
            return
        name = dialogs.ask_import_file(self, self.folder)
        if name:
            self.import_csv(name)

    def _on_exported(self, name: str, rows: int) -> None:
        self.statusBar().showMessage(f"Exported {count(rows, 'photo')} to {name}", 6000)

    def _on_export_failed(self, exc: BaseException) -> None:
        QMessageBox.warning(self, "Export failed", f"The CSV could not be written: {describe_error(exc)}")

    # -- settings -----------------------------------------------------------------------------

    def _on_settings_action_triggered(self) -> None:
        from imgcap_desktop.settings_dialog import SettingsDialog

        self.settings = replace(self.settings, overlay_opacity=self.view.opacity_slider.value())
        dialog = SettingsDialog(self.settings, self)
        if dialog.exec():
            self.apply_settings(dialog.result_settings())

    def _on_find_action_triggered(self) -> None:
        self.filter_edit.setFocus()
        self.filter_edit.selectAll()

    def apply_settings(self, settings: AppSettings) -> None:
        if self.service.busy and settings.auto_write != self.settings.auto_write:
            # The run under way was planned to write (or hold) its captions: said, not changed under it.
            mode = "holding captions for review" if not settings.auto_write else "writing captions at once"
            self.statusBar().showMessage(f"The run under way goes on as it started; {mode} from the next run.",
                                         15000)
        self.settings = settings
        self.session.sidecar_style, self.session.auto_write = settings.sidecar_style, settings.auto_write
        self.view.opacity_slider.setValue(settings.overlay_opacity)
        self._save_settings()

    def _save_settings(self) -> None:
        """Write the settings this window changed, and only those: a second running copy (opening a
        folder, closing) used to write back its own old copy of every other one."""
        self.settings = replace(self.settings, overlay_opacity=self.view.opacity_slider.value())
        changed = [f.name for f in fields(AppSettings)
                   if getattr(self.settings, f.name) != getattr(self._saved, f.name)]
        if not changed:
            return
        if save_settings(self.settings, names=changed):
            self._saved = self.settings
        else:
            self._settings_note = ("The settings could not be saved (the settings file cannot be written); "
                                   "they hold until imgcap closes.")
            self.statusBar().showMessage(self._settings_note, 20000)

    def _restore_window_state(self) -> None:
        geometry, splitter = load_window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        if splitter is not None:
            self.splitter.restoreState(splitter)

    def _update_actions(self) -> None:
        busy = self.service.busy
        has_folder = self.folder is not None and self.photos.rowCount() > 0
        self.caption_all_action.setEnabled(has_folder and not busy)
        self.caption_selected_action.setEnabled(has_folder and not busy)
        self.cancel_action.setEnabled(busy)
        self.export_action.setEnabled(has_folder)
        if busy and self.panel.recompute_button.hasFocus():  # to the words whose maps come, not the box below
            self.panel.view.setFocus()
        self.panel.recompute_button.setEnabled(not busy)
        self.import_action.setEnabled(has_folder)

    def _ask_about_held(self, count: int, before: str = "closing") -> QMessageBox.StandardButton:
        return dialogs.ask_about_held(self, count, before)

    def _settle_held(self, before: str) -> bool:
        """Ask what becomes of the held captions before they would be dropped (``before``: "closing"):
        True to go on. Cancel, or a Save that could not write them all, keeps them (and the window).

        Text being typed in the caption box is committed first, and a run under way ends after its
        batch under way is stored: both are part of the question (a batch that came while it was
        asked was dropped uncounted, or, with nothing held yet, dropped without asking)."""
        self.panel.commit_typing()
        if not self._finish_run():
            # Its captions would come for a folder no longer open (lost), or after the question.
            self.statusBar().showMessage(
                f"The photos being captioned take longer to finish than expected; nothing was lost, and "
                f"{_TRY_AGAIN.get(before, 'you can try again in a moment')}", 20000)
            return False
        held = len(self.session.held())
        if not held:
            return True
        answer = self._ask_about_held(held, before)
        if answer == QMessageBox.StandardButton.Cancel:
            return False
        if answer == QMessageBox.StandardButton.Save:
            self.accept_held()
            left = self.session.held()
            if left:
                reason, one = left[0].write_error or "not written", len(left) == 1
                self.statusBar().showMessage(
                    f"{count(len(left), 'caption')} could not be written ({reason}) and {'is' if one else 'are'} "
                    f"still held; Discard drops {'it' if one else 'them'}", 20000)
                return False
        return True

    def _finish_run(self) -> bool:
        """End the run after its batch under way, and wait for that batch to be stored: False when it
        was not in time (a large batch on a slow machine), and the run is still ending."""
        if not self.service.busy:
            return True
        self.statusBar().showMessage("Finishing the photos being captioned…")
        self.statusBar().repaint()  # now: the wait below holds the event loop, and with it any later paint
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            finished = self.service.cancel_and_wait()
        finally:
            QApplication.restoreOverrideCursor()
        if not finished:
            log.warning("the run did not end in time: what was asked for waits until it has")
        return finished

    def _confirm_stop_run(self) -> bool:
        return dialogs.confirm_stop_run(self, *self.run_status.progress())

    def closeEvent(self, event) -> None:
        if self.service.busy and not self._confirm_stop_run():  # Cancel: the run goes on
            event.ignore()
            return
        if not self._settle_held("closing"):  # the run ends first: its last batch is part of the question
            event.ignore()
            return
        self.reader.stop()
        self.watcher.stop()
        self._save_settings()
        save_window_state(self.saveGeometry(), self.splitter.saveState())
        self.service.shutdown()
        self.session_signals.detach()
        super().closeEvent(event)


#: What to do again once the run has ended, by what :meth:`MainWindow._settle_held` was asked before.
_TRY_AGAIN = {"closing": "the window can be closed in a moment",
              "opening another folder": "the folder can be opened in a moment",
              "reading the folder again": "the folder can be read again in a moment"}


class StatusBar(QStatusBar):
    """The window's status bar: a message naming a file or folder whose name is not UTF-8 (held as
    surrogates, which a Qt string drops: "trip\\xe9" said as another folder, "trip") or holds a line
    break says it escaped, as the CLI prints it."""

    def showMessage(self, text: str, timeout: int = 0) -> None:  # noqa: N802 - Qt's name
        super().showMessage(printable(text), timeout)


def _same_folder(entry: str, folder: Path) -> bool:
    try:
        return os.path.samefile(entry, folder)
    except OSError:  # gone, or unreachable: not this one
        return False


def _absolute(path: Path) -> Path:
    """``path`` absolute and without "." or "..": "imgcap-desktop ." gets a title, and a folder
    reached another way is the same folder (symbolic links are kept: the path the user chose)."""
    return Path(os.path.normpath(os.path.abspath(path)))


def _local_paths(urls: list[QUrl]) -> list[Path]:
    return [Path(url.toLocalFile()) for url in urls if url.isLocalFile()]


def _to_open(paths: Sequence[Path]) -> tuple[Path | None, Path | None, int]:
    """What a drop or a command line opens: ``(folder, photo to choose, how many other items are
    left out: folders, and photos of other folders)``. Only a folder or a photo that exists opens
    anything (a text file or a vanished path: nothing)."""
    found = []
    for path in paths:
        path = Path(path).expanduser()
        if path.is_dir():
            found.append((path, None))
        elif path.is_file() and path.suffix.lower() in SUPPORTED_EXTENSIONS:
            found.append((_absolute(path).parent, _absolute(path)))
    if not found:
        return None, None, 0
    folder, photo = found[0]
    # Photos of the opened folder are in it, not left out (several photos chosen in a file manager).
    others = sum(1 for place, item in found[1:] if item is None or _absolute(place) != _absolute(folder))
    return folder, photo, others
