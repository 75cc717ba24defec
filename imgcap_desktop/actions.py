"""The main window's actions (with their shortcuts), menus and toolbar, and the undoable caption and keyword edits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence, QUndoCommand
from PySide6.QtWidgets import QMainWindow, QToolBar

from imgcap_desktop.metadata.sidecar import StoredCaption
from imgcap_desktop.session import ANY_CAPTION, CaptionSession, changed_keywords, same_caption


class SetCaptionCommand(QUndoCommand):
    """A caption typed or picked by the user; undo restores the previous caption (and sidecar).

    Undo, and Redo after it, take back what this command stored: where the photo stores another
    caption since (another program, a later run), they leave it as it is and call ``refused(path,
    undoing)``.
    """

    def __init__(self, session: CaptionSession, path: Path, new: StoredCaption | None, old: StoredCaption | None,
                 refused: Callable[[Path, bool], None] | None = None):
        super().__init__(f"Edit caption of {path.name}")
        self._session, self._path, self._new, self._old = session, path, new, old
        self._refused, self._stored = refused, ANY_CAPTION
        self._at_once = False  # a clear written at once, held for review or not: so are its undo and redo

    def redo(self) -> None:
        self._set(self._new, undoing=False)

    def undo(self) -> None:
        self._set(self._old, undoing=True)

    def _set(self, caption: StoredCaption | None, *, undoing: bool) -> None:
        # The edit itself (the first redo) replaces whatever is there: it is what the person typed now.
        first = self._stored is ANY_CAPTION
        clearing = first and caption is None  # the edit itself is a clear
        before = self._session.stored_caption(self._path) if clearing else None
        photo = self._session.set_caption(self._path, caption, replacing=self._stored, write_now=self._at_once,
                                          taking_back=self._old if not undoing else self._new)
        if clearing:
            # A clear that changed the sidecar was written at once, captions held for review or not:
            # so are its undo and redo. One that only took back a caption held wrote nothing.
            self._at_once = _stored_as(before) != _stored_as(self._session.stored_caption(self._path))
            if photo is not None and photo.caption is not None and not photo.write_error:
                # It took the sidecar's caption out, and the photo's own caption (or another
                # language's) shows through: that is what this edit sets, and what Redo sets again.
                caption = self._new = photo.caption
        if photo is not None and not same_caption(photo.caption, caption):
            if first:  # the sidecar refused the edit itself (the photo says why): nothing to undo
                self.setObsolete(True)
                return
            if self._refused is not None:  # refused: what we stored stays the mark, so Redo is refused too
                self._refused(self._path, undoing)
            return
        self._stored = self._session.stored_caption(self._path)  # what the next undo or redo takes back


def _stored_as(stored) -> tuple:
    """A stored caption with the language item it is read from (not part of its equality)."""
    return stored, getattr(stored, "language", None)


class SetKeywordsCommand(QUndoCommand):
    """A person's change of a photo's keywords (one removed); undo puts the previous ones back.

    The command is the change (the keywords taken out and put in), not the lists: Undo puts back
    what it took out, and leaves a keyword added since (a CSV's, another program's) where it is.
    Undo, and Redo after it, change the keywords of the caption this command set them on: where the
    photo shows or stores another caption since (another program, a later run), whose keywords are
    not these, they leave it as it is and call ``refused(path, undoing)``, as :class:`SetCaptionCommand` does.
    """

    def __init__(self, session: CaptionSession, path: Path, new: tuple[str, ...], old: tuple[str, ...], text: str,
                 refused: Callable[[Path, bool], None] | None = None):
        super().__init__(text)
        self._session, self._path, self._new, self._old = session, path, new, old
        self._refused, self._stored, self._shown = refused, ANY_CAPTION, None

    def redo(self) -> None:
        self._set(self._new, self._old, undoing=False)

    def undo(self) -> None:
        self._set(self._old, self._new, undoing=True)

    def _set(self, to: tuple[str, ...], since: tuple[str, ...], *, undoing: bool) -> None:
        # The edit itself (the first redo) goes onto the caption there is now (see CaptionSession.set_caption).
        first = self._stored is ANY_CAPTION
        photo = self._session.photo(self._path)
        if not first and (photo is None or not same_caption(photo.caption, self._shown)):
            self._refuse(undoing)  # a later run's caption, held or shown: its keywords are not these
            return
        if photo is None:
            return
        keywords = changed_keywords(photo.keywords, add=[k for k in to if k not in since],
                                    remove=[k for k in since if k not in to], order=to)
        photo = self._session.set_keywords(self._path, keywords, replacing=self._stored)
        if photo is None:
            return
        if not first and not same_caption(photo.caption, self._shown):  # stored another one since
            self._refuse(undoing)
            return
        self._shown, self._stored = photo.caption, self._session.stored_caption(self._path)

    def _refuse(self, undoing: bool) -> None:
        if self._refused is not None:
            self._refused(self._path, undoing)


def build_actions(window) -> None:
    """Create the window's actions as its ``*_action`` attributes, connected to its slots."""

    def action(text, slot, shortcut=None, tip=""):
        act = QAction(text, window)
        if shortcut is not None:
            act.setShortcut(QKeySequence(shortcut))
        act.setToolTip(tip or text)
        act.triggered.connect(slot)
        return act

    w = window
    w.open_action = action("&Open Folder…", w._on_open_action_triggered, QKeySequence.StandardKey.Open)
    w.subfolders_action = action("Include &Subfolders", w._on_subfolders_action_toggled, "Ctrl+Shift+O")
    w.subfolders_action.setCheckable(True)
    w.subfolders_action.setChecked(w.settings.include_subfolders)
    w.export_action = action("&Export CSV…", w._on_export_action_triggered, "Ctrl+E",
                             "Export the captions of the folder (or of the selection) to CSV")
    w.import_action = action("&Import CSV…", w._on_import_action_triggered, "Ctrl+I",
                             tip="Apply captions edited in a spreadsheet (an exported CSV) to the photos' sidecars")
    w.quit_action = action("&Quit", w.close, QKeySequence.StandardKey.Quit)
    if w.quit_action.shortcut().isEmpty():  # platforms with no standard one (GNOME's, offscreen): Ctrl+Q
        w.quit_action.setShortcut(QKeySequence("Ctrl+Q"))
    w.caption_all_action = action("Caption &All", w.caption_all, "Ctrl+Shift+A")
    w.caption_selected_action = action("Caption &Selected", w.caption_selected, "Ctrl+R")
    w.cancel_action = action("&Cancel", w.service.cancel, "Ctrl+.")
    w.accept_action = action("Accept &Held Captions", w.accept_held, "Ctrl+Shift+H",
                             tip="Write the captions held for review to their sidecars")
    w.settings_action = action("Se&ttings…", w._on_settings_action_triggered, "Ctrl+,")
    w.find_action = action("&Filter…", w._on_find_action_triggered, QKeySequence.StandardKey.Find,
                           "Filter the photos by caption or file name")
    w.undo_action = w.undo_stack.createUndoAction(w, "&Undo")
    w.undo_action.setShortcuts(QKeySequence.StandardKey.Undo)  # every binding: Ctrl+Z, …
    w.redo_action = w.undo_stack.createRedoAction(w, "&Redo")
    w.redo_action.setShortcuts(QKeySequence.StandardKey.Redo)  # Ctrl+Shift+Z as well as Ctrl+Y


def build_menus(window) -> None:
    """File, Edit and Caption menus (``window.recent_menu`` is File → Open Recent)."""
    w = window
    menu = w.menuBar()
    file_menu = menu.addMenu("&File")
    file_menu.addAction(w.open_action)
    w.recent_menu = file_menu.addMenu("Open &Recent")
    w._rebuild_recent_menu()
    for act in (w.subfolders_action, None, w.export_action, w.import_action, None, w.quit_action):
        file_menu.addSeparator() if act is None else file_menu.addAction(act)
    edit_menu = menu.addMenu("&Edit")
    for act in (w.undo_action, w.redo_action, None, w.find_action, w.settings_action):
        edit_menu.addSeparator() if act is None else edit_menu.addAction(act)
    caption_menu = menu.addMenu("&Caption")
    for act in (w.caption_all_action, w.caption_selected_action, w.cancel_action, w.accept_action):
        caption_menu.addAction(act)


def build_toolbar(window: QMainWindow) -> None:
    """The main toolbar: the actions a captioning session uses most."""
    toolbar = QToolBar("Main")
    toolbar.setObjectName("mainToolbar")
    toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
    for act in (window.open_action, window.caption_all_action, window.caption_selected_action, window.cancel_action,
                window.accept_action, window.export_action, window.settings_action):
        toolbar.addAction(act)
    window.addToolBar(toolbar)
