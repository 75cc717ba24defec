"""A photo's keywords as chips under its caption: click one to see its class activation map, remove one with its ×.

A chip is the keyword (checkable when its map is at hand: the model's result from this session holds
the keyword's class activation map) and a small × that removes it. With keyboard focus on a chip,
Delete (or Backspace) removes it and Esc clears the map. The chips only report what the user asked
for; the panel shows the map and the window makes the removal a person's edit.

After imgcap's own keywords come those other programs keep in the sidecar (Lightroom's, digiKam's),
as plain chips: shown, never changed here.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QApplication, QFrame, QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

from imgcap_desktop.flow_layout import discard_widget, flow_widget
from imgcap_desktop.metadata.printable import literal
from model.results import CaptionResult, Tag

#: A chip is a rounded outline; the chosen one is filled with the accent colour, as a chosen caption word.
_CHIP_STYLE = """
QFrame#keywordChip { border: 1px solid palette(mid); border-radius: 10px; }
QFrame#keywordChip[mapless="true"] { border-style: dashed; }
QToolButton#otherKeywordChip { border: 1px dotted palette(mid); border-radius: 10px; padding: 1px 6px; }
QToolButton { border: none; padding: 1px 3px; }
QToolButton:checked {
    background-color: palette(highlight); color: palette(highlighted-text); font-weight: bold; border-radius: 8px;
}
"""


class _ChipButton(QToolButton):
    """A chip's keyword: Delete or Backspace asks to remove it, Esc to clear the map."""

    removal_requested = Signal()
    clear_requested = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
            self.removal_requested.emit()
        elif event.key() == Qt.Key.Key_Escape:
            self.clear_requested.emit()
        else:
            super().keyPressEvent(event)
            return
        event.accept()


class KeywordChip(QFrame):
    """One keyword: the word (with its probability in the tooltip) and a × that removes it."""

    def __init__(self, word: str, tag: Tag | None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("keywordChip")
        self.word = word
        self.tag = tag
        self.setProperty("mapless", not self.has_map)  # a dashed outline: nothing to show on a click
        self.button = _ChipButton()
        self.button.setText(literal(word))
        self.button.setCheckable(self.has_map)
        self.button.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.button.setAccessibleName(f"Keyword {word}")
        self.remove_button = QToolButton()
        self.remove_button.setText("×")
        self.remove_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.remove_button.setToolTip(f"Remove the keyword “{word}” (Delete)")
        self.remove_button.setAccessibleName(f"Remove keyword {word}")
        if tag is not None:
            where = ("click to see where the classifier sees it; click again or Esc clears"
                     if self.has_map else "no map for it in this result")
            self.button.setToolTip(f"“{word}”: probability {tag.probability:.0%} — {where}. Delete removes it.")
        else:
            self.button.setToolTip(f"“{word}”, stored with the caption. Its class activation map comes with a "
                                   "new caption run. Delete removes it.")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(3, 0, 1, 0)
        layout.setSpacing(0)
        layout.addWidget(self.button)
        layout.addWidget(self.remove_button)

    @property
    def has_map(self) -> bool:
        return self.tag is not None and self.tag.cam is not None


class KeywordChips(QWidget):
    """A photo's keywords, one chip each, wrapping onto new lines like the caption's words.

    Signals:
        keyword_chosen(str word): the user chose a keyword with a map ("": the map was unchosen).
        keyword_removal_requested(str word): the user removed a keyword (its × or Delete).
        focus_left(): the last chip went while it had the keyboard focus: whoever holds the chips
            gives the focus a place (the caption's words), or it would go to the window's first box.
    """

    keyword_chosen = Signal(str)
    keyword_removal_requested = Signal(str)
    focus_left = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setStyleSheet(_CHIP_STYLE)
        self._chips: dict[str, KeywordChip] = {}
        self._others: list[QToolButton] = []
        self._current = ""
        self._bar, self._flow = flow_widget()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._bar)
        self.setVisible(False)

    @property
    def current(self) -> str:
        """The keyword whose map is chosen ("" for none)."""
        return self._current

    def chips(self) -> dict[str, KeywordChip]:
        """The chips shown, by keyword, in order."""
        return dict(self._chips)

    def set_keywords(self, keywords: Sequence[str], result: CaptionResult | None, others: Sequence[str] = ()) -> None:
        """Show ``keywords``; a keyword's map and probability come from ``result``'s tags (None: none
        at hand). ``others``: the keywords other programs keep for the photo, shown after them."""
        self._current = ""
        # The chip that has the keyboard focus (one just removed with Delete, say): its place is
        # kept, so the focus goes to the chip now there, not out of the panel.
        focused = [i for i, chip in enumerate(self._chips.values()) if chip.isAncestorOf(QApplication.focusWidget())]
        while self._flow.count():
            widget = self._flow.takeAt(0).widget()
            if widget is not None:
                discard_widget(widget)
        self._chips, self._others = {}, []
        keywords = list(dict.fromkeys(keywords))
        others = [word for word in dict.fromkeys(others) if word not in keywords]
        if keywords or others:
            label = QLabel("Keywords:")
            label.setObjectName("keywordsLabel")
            self._flow.addWidget(label)
        for word in keywords:
            chip = KeywordChip(word, result.tag(word) if result is not None else None)
            chip.button.clicked.connect(lambda _checked=False, w=word: self._on_chip_clicked(w))
            chip.button.removal_requested.connect(lambda w=word: self.keyword_removal_requested.emit(w))
            chip.button.clear_requested.connect(lambda: self.choose(""))
            chip.remove_button.clicked.connect(lambda _checked=False, w=word: self.keyword_removal_requested.emit(w))
            self._chips[word] = chip
            self._flow.addWidget(chip)
        for word in others:
            self._others.append(other := _other_chip(word))
            self._flow.addWidget(other)
        self.setVisible(bool(keywords or others))
        self._bar.updateGeometry()
        if focused:
            chips = list(self._chips.values())
            if chips:
                chips[min(focused[0], len(chips) - 1)].button.setFocus()
            else:
                self.focus_left.emit()

    def chip_buttons(self) -> list[QToolButton]:
        """The chips' buttons (each takes the keyboard focus), in order: imgcap's, then other programs'."""
        return [*(chip.button for chip in self._chips.values()), *self._others]

    def other_keywords(self) -> list[str]:
        """The other programs' keywords shown, in order."""
        return [button.property("keyword") for button in self._others]

    def set_current(self, word: str) -> None:
        """Mark ``word``'s chip as chosen ("" or a keyword without a map: none), without a signal."""
        chip = self._chips.get(word)
        self._current = word if chip is not None and chip.has_map else ""
        for other in self._chips.values():
            other.button.setChecked(other.word == self._current)

    def choose(self, word: str) -> None:
        """Choose ``word``'s map ("" unchooses), as a click does."""
        previous = self._current
        self.set_current(word)
        if self._current != previous or word:
            self.keyword_chosen.emit(self._current)

    def _on_chip_clicked(self, word: str) -> None:
        chip = self._chips[word]
        if not chip.has_map:
            return
        self.choose("" if word == self._current else word)


def _other_chip(word: str) -> QToolButton:
    """Another program's keyword: read (it takes the keyboard focus, so a screen reader says it),
    never clicked away: imgcap leaves other programs' keywords as they are."""
    chip = QToolButton()
    chip.setObjectName("otherKeywordChip")
    chip.setText(literal(word))
    chip.setProperty("keyword", word)
    chip.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
    chip.setAccessibleName(f"Keyword {word}, from another program")
    chip.setToolTip(f"“{word}”: a keyword another program keeps in the sidecar; imgcap leaves it as it is.")
    return chip
