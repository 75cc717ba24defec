"""The right-hand panel: the selected photo with its clickable caption, its state, the edit box and the
beam's alternatives."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QEvent, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QFocusEvent, QImage, QKeyEvent, QKeySequence, QTextCursor
from PySide6.QtWidgets import (
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from imgcap_desktop.caption_view import CaptionView
from imgcap_desktop.flow_layout import WrappedLabel
from imgcap_desktop.keyword_chips import KeywordChips
from imgcap_desktop.session import CaptionState, Photo, normalized_caption


_KEYBOARD_FOCUS = (Qt.FocusReason.TabFocusReason, Qt.FocusReason.BacktabFocusReason,
                   Qt.FocusReason.ShortcutFocusReason)


class CaptionEdit(QPlainTextEdit):
    """The caption box: as many lines as the caption takes (up to :attr:`MAX_LINES`, then it
    scrolls). Return commits the caption (:attr:`returnPressed`); Shift+Return starts a new line,
    so a caption with paragraphs (another program's) keeps them when a word of it is edited. Once
    its text is committed, Ctrl+Z / Ctrl+Shift+Z go to the window's undo stack, as from the menu;
    while typing they undo the typing. Tab moves on, as from a one-line box.

    Signals:
        returnPressed(): Return or Enter was pressed.
        revert_requested(): Esc was pressed with typing not committed (the panel shows its caption again).
        typing_undone(): the person's typing was undone back to the text the app set last.
        left(): the focus left the box by the user's move (see ``_LEAVING``).
    """

    MAX_LINES, MIN_LINES = 6, 2
    committed_text = ""  # the shown caption's text as a commit stores it (normalized_caption)
    returnPressed = Signal()
    typing_undone = Signal()
    revert_requested = Signal()  # Esc with typing not committed: back to the caption shown
    # Focus leaving the box by the user's move (Tab, a click elsewhere, a shortcut): typed text is
    # committed. Another window or a menu taking the focus is no such move: the typing goes on after.
    left = Signal()
    _LEAVING = (Qt.FocusReason.TabFocusReason, Qt.FocusReason.BacktabFocusReason, Qt.FocusReason.MouseFocusReason,
                Qt.FocusReason.ShortcutFocusReason, Qt.FocusReason.OtherFocusReason)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setTabChangesFocus(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # As tall as its caption (MAX_LINES at most); squeezed to MIN_LINES (it scrolls) in a window
        # too short for both it and the photo (a laptop at a large font).
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Maximum)
        self.document().documentLayout().documentSizeChanged.connect(lambda _size: self.updateGeometry())
        self._setting = False  # the text or its state set by the app, not by the person's keys
        self.modificationChanged.connect(self._on_modification_changed)

    # QLineEdit's words, which the window and its tests speak
    def text(self) -> str:
        # toPlainText() makes every no-break space ("10\u00a0km") an ordinary one; the raw text keeps
        # them, with its paragraph separators as the line breaks they are.
        return self.document().toRawText().replace("\u2029", "\n").replace("\u2028", "\n")

    def setText(self, text: str) -> None:
        self._setting = True
        try:
            self.setPlainText(text)
            self.document().setModified(False)
        finally:
            self._setting = False
        self.moveCursor(QTextCursor.MoveOperation.End)  # typing goes on at the end, as in a line edit

    def isModified(self) -> bool:
        return self.document().isModified()

    def setModified(self, modified: bool) -> None:
        self._setting = True
        try:
            self.document().setModified(modified)
        finally:
            self._setting = False

    def _on_modification_changed(self, modified: bool) -> None:
        if not modified and not self._setting:  # Ctrl+Z back to the text set last
            self.typing_undone.emit()

    def sizeHint(self) -> QSize:
        return self._height_for(self.MAX_LINES)

    def minimumSizeHint(self) -> QSize:
        return self._height_for(self.MIN_LINES)

    def _height_for(self, most_lines: int) -> QSize:
        lines = min(max(1, round(self.document().size().height())), most_lines)  # plain text: in lines
        margins = self.contentsMargins()
        height = (lines * self.fontMetrics().lineSpacing() + 2 * math.ceil(self.document().documentMargin())
                  + 2 * self.frameWidth() + margins.top() + margins.bottom() + 1)
        return QSize(super().sizeHint().width(), height)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.updateGeometry()  # a narrower box wraps the caption on more lines

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            if event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                self.insertPlainText("\n")
            else:
                self.returnPressed.emit()
            return
        if event.key() == Qt.Key.Key_Escape and self.isModified():
            self.revert_requested.emit()
            return
        super().keyPressEvent(event)

    def focusInEvent(self, event: QFocusEvent) -> None:
        super().focusInEvent(event)
        if event.reason() in _KEYBOARD_FOCUS:  # reached by the keyboard: typing replaces, as in a line edit
            self.selectAll()

    def focusOutEvent(self, event: QFocusEvent) -> None:
        super().focusOutEvent(event)
        if event.reason() in self._LEAVING:
            self.left.emit()

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent):
            undo, redo = event.matches(QKeySequence.StandardKey.Undo), event.matches(QKeySequence.StandardKey.Redo)
            # The box's own typing first (a redo of typing just undone); the window's edits after.
            own = self.document().isUndoAvailable() if undo else self.document().isRedoAvailable()
            if (undo or redo) and not own and normalized_caption(self.text()) == self.committed_text:
                event.ignore()  # let the window's Undo/Redo shortcut have it
                return False
        return super().event(event)


class CaptionPanel(QWidget):
    """Shows one :class:`~imgcap_desktop.session.Photo`; the user edits its caption here.

    Signals:
        caption_edited(str text, Path path): the user committed a caption in the box for the photo
            at ``path``: Return, or leaving the box (Tab, a click elsewhere) with typed text.
        alternative_chosen(str text): the user picked one of the beam's alternatives.
        recompute_requested(): the user asked for the attention maps of the caption shown.
        keyword_removal_requested(str word): the user removed one of the photo's keywords.
    """

    caption_edited = Signal(str, object)
    alternative_chosen = Signal(str)
    recompute_requested = Signal()
    keyword_removal_requested = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.view = CaptionView()
        self.keywords = KeywordChips()
        self.view.add_under_caption(self.keywords)
        self.keywords.keyword_chosen.connect(self._on_keywords_keyword_chosen)
        self.keywords.keyword_removal_requested.connect(self.keyword_removal_requested)
        self.keywords.focus_left.connect(self.view.setFocus)
        self.view.word_selected.connect(self._on_view_word_selected)
        self.view.word_map_shown.connect(self._on_view_word_map_shown)
        self.caption_edit = CaptionEdit()
        self.caption_edit.setPlaceholderText("No caption — type one, or caption the photo")
        self.caption_edit.setToolTip("Return saves the caption; Shift+Return starts a new line")
        self.caption_edit.setAccessibleName("Caption")
        self.caption_edit.returnPressed.connect(self._on_caption_edit_return_pressed)
        # Typed text is never dropped by moving on: leaving the box commits it, as Return does.
        self.caption_edit.left.connect(self._on_caption_edit_left)
        self.caption_edit.typing_undone.connect(self._on_caption_edit_typing_undone)
        self.caption_edit.revert_requested.connect(lambda: self.caption_edit.setText(self.shown_text))
        self.state_label = WrappedLabel()
        self.recompute_button = QPushButton("Show attention maps")
        self.recompute_button.setToolTip("Show the model this caption's words, to see where it looks for each one "
                                         "(the caption stays as it is; nothing is written)")
        self.recompute_button.clicked.connect(self.recompute_requested)
        self.recompute_button.setVisible(False)
        self.alternatives = QListWidget()
        self.alternatives.setMaximumHeight(80)
        self.alternatives.setToolTip("The beam's alternative captions; double-click one to use it")
        self.alternatives.setAccessibleName("Alternative captions")
        self.alternatives.itemActivated.connect(self._on_alternatives_item_activated)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.state_label)
        layout.addWidget(self.recompute_button)
        layout.addWidget(self.caption_edit)
        layout.addWidget(QLabel("Alternatives"))
        layout.addWidget(self.alternatives)
        self.shown_text = ""
        self._shown_path: Path | None = None
        self._shown_photo: Photo | None = None  # the state shown in full (show_photo)
        self._shown_others: tuple[str, ...] = ()  # and other programs' keywords with it

    def show_photo(self, photo: Photo | None, image: QImage | None = None, failure: str | None = None,
                   other_keywords: Sequence[str] = ()) -> None:
        """Show a photo's preview (None while it decodes) and its caption, with its keywords and
        ``other_keywords`` (other programs'). The photo shown already, as it is (its preview
        arriving), keeps the word or keyword chosen."""
        other_keywords = tuple(other_keywords)
        if photo is not None and self._is_shown(photo) and other_keywords == self._shown_others:
            self.view.set_photo(image, failure or "Loading…")
            return
        self._shown_others = other_keywords
        # The same photo shown again (an alternative just picked, say): the list keeps its place.
        kept = self.alternatives.currentItem() if photo is not None and photo.path == self._shown_path else None
        chosen = kept.data(Qt.ItemDataRole.UserRole) if kept is not None else None
        self._shown_photo = photo
        self.alternatives.clear()
        if photo is None:
            self.view.set_photo(None, "No photo selected")
            self.view.set_caption((), None, hint="")
            self.keywords.set_keywords((), None)
            self.caption_edit.committed_text = ""
            self.shown_text = ""
            self.caption_edit.clear()
            self._shown_path = None
            self.state_label.clear()
            self.caption_edit.setAccessibleDescription("")  # it said the last photo's state
            self.recompute_button.setVisible(False)
            return
        self.view.set_photo(image, failure or "Loading…")
        if (maps := photo.maps) is not None:
            self.view.set_caption(maps.words, maps.attention)
        else:
            hint = ("Where the model looks for each word of this caption is not at hand (a caption stored earlier, "
                    "typed, or one of the alternatives): Show attention maps computes it." if photo.recomputable
                    else "Attention maps exist for captions of photos the model can read.")
            self.view.set_caption(tuple(photo.text.split()), None, hint=hint)
        # A keyword's map belongs to the photo, not to the caption: an edited caption keeps it.
        self.keywords.set_keywords(photo.keywords, photo.result, other_keywords)
        # Tab as the eye goes: the caption's words, then their keywords (made last, so last in the
        # chain otherwise), then the overlay slider.
        previous = self.view
        for button in self.keywords.chip_buttons():
            QWidget.setTabOrder(previous, button)
            previous = button
        QWidget.setTabOrder(previous, self.view.opacity_slider)
        chips = self.keywords.chips()
        self.view.set_word_maps(
            {i: chips[w].tag.cam for i, w in enumerate(self.view.words) if w in chips and chips[w].has_map},
            tip="“{word}” is also a keyword: click it again to see where the classifier sees it")
        self.recompute_button.setVisible(photo.recomputable)
        # Text being typed for this photo stays (a result or its preview arriving re-shows it);
        # Return commits it as the person's edit, which beats the model's result.
        typed = normalized_caption(self.caption_edit.text())  # as a commit stores it (caption_for)
        typing = photo.path == self._shown_path and typed != self.caption_edit.committed_text
        self.caption_edit.committed_text = normalized_caption(photo.text)  # compared with typing, as it is stored
        self._shown_path = photo.path
        self.shown_text = photo.text
        if not typing:
            self.caption_edit.setText(photo.text)
        self.state_label.setText(describe(photo))
        self.caption_edit.setAccessibleDescription(self.state_label.text())  # read with the caption box
        if photo.result is not None:
            for alternative in photo.result.alternatives:
                entry = QListWidgetItem(f"{alternative.text}    ({alternative.score:.2f})")
                entry.setData(Qt.ItemDataRole.UserRole, alternative.text)
                entry.setData(Qt.ItemDataRole.AccessibleTextRole, alternative.text)  # read without its score
                entry.setToolTip(f"the model's score (log-probability): {alternative.score:.2f}")
                self.alternatives.addItem(entry)
                if alternative.text == chosen:
                    self.alternatives.setCurrentItem(entry)

    @property
    def typing_for(self) -> Path | None:
        """The photo whose caption the person is typing (not committed yet), or None."""
        return self._shown_path if self.caption_edit.isModified() else None

    def _is_shown(self, photo: Photo) -> bool:
        shown = self._shown_photo
        return (shown is not None and photo.path == shown.path and photo.result is shown.result
                and photo.maps is shown.maps and (photo.caption, photo.error, photo.held, photo.write_error)
                == (shown.caption, shown.error, shown.held, shown.write_error))

    def _on_keywords_keyword_chosen(self, word: str) -> None:
        chip = self.keywords.chips().get(word)
        self.view.show_map(chip.tag.cam if chip is not None and chip.has_map else None)

    def _on_view_word_selected(self, _index: int) -> None:
        self.keywords.set_current("")  # a word's map (or none) replaced the keyword's

    def _on_view_word_map_shown(self, index: int) -> None:
        self.keywords.set_current(self.view.words[index])

    def _on_caption_edit_typing_undone(self) -> None:
        # Typing undone back to where it started, on a caption that changed meanwhile (a run's
        # result, another program's): the box shows the caption stored now, not the one before it;
        # once the undo is done (it puts the cursor where it undid, which would be mid-caption).
        QTimer.singleShot(0, self, self._reshow_if_stale)

    def _reshow_if_stale(self) -> None:
        if (not self.caption_edit.isModified()
                and normalized_caption(self.caption_edit.text()) != self.caption_edit.committed_text):
            self.caption_edit.setText(self.shown_text)

    def _on_caption_edit_return_pressed(self) -> None:
        if (typed := self._take_typed(typed_only=False)) is not None:
            self.caption_edited.emit(*typed)

    def commit_typing(self) -> None:
        """Commit text typed in the box and not committed yet, now."""
        if (typed := self._take_typed()) is not None:
            self.caption_edited.emit(*typed)

    def _on_caption_edit_left(self) -> None:
        # After the move that took the focus: a click on the grid lands on the photo it was aimed
        # at before the commit can change the grid (a filter that no longer matches, say).
        if (typed := self._take_typed()) is not None:
            QTimer.singleShot(0, self, lambda: self.caption_edited.emit(*typed))

    def _take_typed(self, *, typed_only: bool = True) -> tuple[str, Path] | None:
        """The box's text and the photo it is for, to commit (marked committed); None with no photo
        shown, or, ``typed_only``, where the text is not the user's typing (set by the app)."""
        if self._shown_path is None or (typed_only and not self.caption_edit.isModified()):
            return None
        typed = self.caption_edit.text(), self._shown_path
        # Undo and Redo of a committed caption are the window's (the edit's); the typing's are done,
        # and what is typed next is undone back to the text committed (then no typing: see
        # _on_caption_edit_typing_undone).
        self.caption_edit.document().clearUndoRedoStacks()
        self.caption_edit.setModified(False)
        self.caption_edit.committed_text = normalized_caption(typed[0])
        return typed

    def _on_alternatives_item_activated(self, entry: QListWidgetItem) -> None:
        self.alternative_chosen.emit(entry.data(Qt.ItemDataRole.UserRole))


def describe(photo: Photo) -> str:
    """The state line under the photo."""
    state = photo.state
    if state is CaptionState.ERROR:
        return f"Error: {photo.error}"
    if state is CaptionState.NONE:
        return "No caption yet"
    caption = photo.caption
    if state is CaptionState.AUTOMATIC:
        text = f"Automatic caption ({caption.model or 'model'}"
        text += f", score {caption.score:.2f})" if caption.score is not None else ")"
    else:
        text = {CaptionState.HUMAN: "Written or edited by a person",
                CaptionState.EMBEDDED: "Description embedded in the photo"}[state]
    if photo.write_error:
        return text + f" — NOT written to the sidecar: {photo.write_error}"
    return text + (" — held, not yet written to the sidecar" if photo.held else "")
