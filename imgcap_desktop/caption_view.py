"""The large view of one photo: its caption as clickable words, and each word's attention over the photo.

Clicking a word overlays that word's attention map: upsampled smoothly (bicubic) to the photo's size,
colour-mapped and blended with an adjustable opacity. Any other map over the same grid (a keyword's
class activation map, :meth:`CaptionView.show_map`) is shown the same way. The "all words" strip
shows every word beside its own small overlay, as in the paper's figures. Left/Right move between
words, Escape clears.
"""

from __future__ import annotations

import unicodedata

import numpy as np
from PIL import Image
from PySide6.QtCore import QEvent, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QAccessible, QAccessibleEvent, QIcon, QImage, QKeyEvent, QPainter, QPixmap
from PySide6.QtWidgets import (
    QButtonGroup,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from imgcap_desktop.flow_layout import WrappedLabel, discard_widget, flow_widget
from imgcap_desktop.metadata.printable import literal

#: The chosen word stands out: filled with the app's accent colour, bold.
# The theme's own selection colours: a high-contrast theme keeps its contrast.
# A word without a map cannot be clicked, but is read as clearly as one with: the style's greyed
# text for disabled buttons was 1.6:1 against the window.
_WORD_STYLE = ("QToolButton:checked { background-color: palette(highlight); color: palette(highlighted-text); "
               "font-weight: bold; border-radius: 3px; } "
               "QToolButton:disabled { color: palette(window-text); }")

#: The widest a word's button gets (a pasted link, a line of Chinese): longer words are cut in the
#: middle, whole in the tooltip, so that no word widens the window.
MAX_WORD_WIDTH = 320

# A perceptually ordered colour map (anchors of matplotlib's "inferno"), interpolated to 256 entries.
_ANCHORS = np.array(
    [[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66], [245, 125, 21], [250, 193, 39],
     [252, 255, 164]],
    dtype=np.float32,
)
COLOUR_MAP = np.stack(
    [np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_ANCHORS)), _ANCHORS[:, c]) for c in range(3)], axis=1
).astype(np.uint8)  # (256, 3)


def upsample_map(attention: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Upsample one ``(grid_h, grid_w)`` attention map to ``size`` ``(height, width)``, bicubic, scaled to [0, 1]."""
    height, width = size
    grid = np.asarray(attention, dtype=np.float32)
    # Each map cell covers a block of the photo: resize the grid image itself (cell centres line up).
    upsampled = np.asarray(Image.fromarray(grid).resize((width, height), Image.Resampling.BICUBIC))
    upsampled = np.clip(upsampled, grid.min(), grid.max())  # bicubic overshoots
    low, high = float(upsampled.min()), float(upsampled.max())
    if high - low < 1e-12:
        return np.zeros((height, width), np.float32)
    return ((upsampled - low) / (high - low)).astype(np.float32)


def colorize(map01: np.ndarray) -> np.ndarray:
    """``(H, W)`` values in [0, 1] to ``(H, W, 3)`` uint8 RGB through :data:`COLOUR_MAP`."""
    return COLOUR_MAP[np.clip((map01 * 255).round(), 0, 255).astype(np.uint8)]


def blend(photo: np.ndarray, map01: np.ndarray, opacity: float) -> np.ndarray:
    """The photo with the colour-mapped attention blended over it at ``opacity`` (0 to 1)."""
    colour = colorize(map01).astype(np.float32)
    mixed = photo.astype(np.float32) * (1.0 - opacity) + colour * opacity
    return np.clip(mixed, 0, 255).astype(np.uint8)


def qimage_to_array(image: QImage) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB copy of a QImage."""
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    width, height, stride = image.width(), image.height(), image.bytesPerLine()
    buffer = np.frombuffer(image.constBits(), np.uint8, count=stride * height).reshape(height, stride)
    return buffer[:, : width * 3].reshape(height, width, 3).copy()


def array_to_qimage(array: np.ndarray) -> QImage:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    height, width, _ = array.shape
    return QImage(array.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


def text_direction(text: str) -> Qt.LayoutDirection:
    """The direction ``text`` reads in, by its first strongly directional letter (Unicode's rule for
    a paragraph): right to left for Hebrew or Arabic, else left to right."""
    for char in text:
        kind = unicodedata.bidirectional(char)
        if kind in ("R", "AL"):
            return Qt.LayoutDirection.RightToLeft
        if kind == "L":
            return Qt.LayoutDirection.LeftToRight
    return Qt.LayoutDirection.LeftToRight


class PhotoCanvas(QWidget):
    """Paints a photo (with or without an overlay) scaled to fit, keeping its aspect ratio."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._pixmap: QPixmap | None = None
        self._message = "No photo selected"
        self.setMinimumSize(240, 120)  # the photo gives way first in a small window (a laptop at a large font)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def set_image(self, image: QImage | None, message: str = "") -> None:
        self._pixmap = QPixmap.fromImage(image) if image is not None else None
        self._message = message
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(640, 480)

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.palette().window().color().darker(130))
        if self._pixmap is None or self._pixmap.isNull():
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self._message)
            return
        size = self._pixmap.size().scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
        x = (self.width() - size.width()) / 2
        y = (self.height() - size.height()) / 2
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        painter.drawPixmap(QRectF(x, y, size.width(), size.height()), self._pixmap, QRectF(self._pixmap.rect()))


class CaptionView(QWidget):
    """One photo, its caption as word buttons, the overlay of the chosen word and the all-words strip.

    A word with a second map (a caption word that is also a keyword, :meth:`set_word_maps`) shows
    it on a second click; a third click clears.

    Signals:
        word_selected(int index): a word was chosen (-1: the overlay was cleared).
        word_map_shown(int index): a word's second map (its keyword's class activation map) is shown.
    """

    word_selected = Signal(int)
    word_map_shown = Signal(int)

    STRIP_SIZE = 96

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAccessibleName("Caption words")
        self._photo: np.ndarray | None = None
        self._words: tuple[str, ...] = ()
        self._attention: np.ndarray | None = None
        self._current = -1
        self._cursor = -1  # the word the keys move from: the last one chosen, also once the overlay is cleared
        self._map: np.ndarray | None = None  # a map shown instead of a word's (a keyword's CAM)
        self._word_maps: dict[int, np.ndarray] = {}  # a second map per word (its keyword's CAM)
        self.overlay_map: np.ndarray | None = None  # the upsampled map shown, for tests and exports

        self.canvas = PhotoCanvas()
        self._word_bar, self._word_layout = flow_widget()  # words wrap: a long caption never widens the window
        self._word_bar.setObjectName("wordBar")
        self._word_group = QButtonGroup(self)
        self._word_group.setExclusive(False)
        self._word_group.idClicked.connect(self._on_word_group_id_clicked)
        self._word_hint = WrappedLabel()
        self._word_hint.setObjectName("wordHint")

        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(60)
        self.opacity_slider.setToolTip("Attention overlay opacity")
        self.opacity_slider.setAccessibleName("Overlay opacity")
        self.opacity_slider.valueChanged.connect(self._on_opacity_slider_value_changed)
        opacity_row = QHBoxLayout()
        overlay_label = QLabel("Overlay")
        overlay_label.setBuddy(self.opacity_slider)
        opacity_row.addWidget(overlay_label)
        opacity_row.addWidget(self.opacity_slider)

        self._strip = QWidget()
        self._strip_layout = QHBoxLayout(self._strip)
        self._strip_layout.setContentsMargins(0, 0, 0, 0)
        self._strip_scroll = QScrollArea()
        self._strip_scroll.setWidget(self._strip)
        self._strip_scroll.setWidgetResizable(True)
        self._fit_strip()
        self._strip_scroll.setFocusPolicy(Qt.FocusPolicy.NoFocus)

        layout = QVBoxLayout(self)
        layout.addWidget(self.canvas, 1)
        layout.addWidget(self._word_bar)
        layout.addWidget(self._word_hint)
        layout.addLayout(opacity_row)
        layout.addWidget(self._strip_scroll)

    # -- what is shown ----------------------------------------------------------------------

    @property
    def current_word(self) -> int:
        return self._current

    @property
    def words(self) -> tuple[str, ...]:
        return self._words

    @property
    def current_map(self) -> np.ndarray | None:
        """The ``(grid_h, grid_w)`` map overlaid now (a word's attention or a :meth:`show_map` map), or None."""
        if self._map is not None:
            return self._map
        if self._current >= 0 and self._attention is not None:
            return self._attention[self._current]
        return None

    def word_buttons(self) -> list[QToolButton]:
        return [self._word_group.button(i) for i in range(len(self._words))]

    def set_photo(self, image: QImage | None, message: str = "") -> None:
        """Show a photo (a decoded preview); None shows ``message`` instead."""
        self._photo = qimage_to_array(image) if image is not None else None
        self._message = message
        self._refresh()
        self._rebuild_strip()

    def set_caption(self, words: tuple[str, ...] | list[str], attention: np.ndarray | None,
                    hint: str = "Attention maps exist for the model's own captions only.") -> None:
        """Show a caption's words; with ``attention`` ``(len(words), gh, gw)`` they become clickable.

        ``hint`` is shown under words without attention maps (why there are none); with no words,
        "No caption." is, unless ``hint`` is empty (no photo shown).
        """
        self._words = tuple(words)
        self._attention = attention if attention is not None and len(attention) == len(self._words) else None
        self._current = self._cursor = -1
        self._map = None
        self._word_maps = {}
        for button in self._word_group.buttons():
            self._word_group.removeButton(button)
            discard_widget(button)
        while self._word_layout.count():
            self._word_layout.takeAt(0)
        # Hidden while its buttons are made: shown, the bar is laid out again for each one added
        # (a 400-word caption took seconds).
        bar_shown = self._word_bar.isVisibleTo(self)
        self._word_bar.hide()
        for i, word in enumerate(self._words):
            button = QToolButton()
            label = button.fontMetrics().elidedText(word, Qt.TextElideMode.ElideMiddle, MAX_WORD_WIDTH)
            button.setText(literal(label))  # "R&D": not "RD" with Alt+D taken
            button.setToolTip(word if label != word else "")
            button.setAccessibleName(word)
            button.setCheckable(True)
            button.setEnabled(self._attention is not None)
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button.setStyleSheet(_WORD_STYLE)
            self._word_group.addButton(button, i)
            self._word_layout.addWidget(button)
        # The words read as the caption does: a Hebrew or Arabic one from the right, whatever the desktop.
        self._word_bar.setLayoutDirection(text_direction(" ".join(self._words)))
        self._word_bar.setVisible(bar_shown)
        if not self._words:  # said, and where the focus frame shows (an empty bar is not seen)
            self._word_hint.setText("No caption." if hint else "")
        elif self._attention is None:
            self._word_hint.setText(hint)
        else:
            self._word_hint.setText("Click a word (or use ←/→, Home, End) to see where the model looked; Space "
                                    "or Enter again shows its keyword's map where it has one; Esc clears.")
        self.setAccessibleDescription(self._word_hint.text())
        self._show_focus(self.hasFocus())
        self._refresh()
        self._rebuild_strip()

    def add_under_caption(self, widget: QWidget) -> None:
        """Place ``widget`` right under the caption's words (the keyword chips)."""
        layout = self.layout()
        layout.insertWidget(layout.indexOf(self._word_hint) + 1, widget)

    def set_word_maps(self, maps: dict[int, np.ndarray], tip: str = "") -> None:
        """Give caption words a second ``(grid_h, grid_w)`` map, shown on a second click (a keyword's CAM).

        ``tip`` (formatted with ``word``) is added to such a word's tooltip.
        """
        self._word_maps = ({i: m for i, m in maps.items() if 0 <= i < len(self._words)}
                           if self._attention is not None else {})
        for i, button in enumerate(self.word_buttons()):
            tips = [self._words[i]] if button.text() != literal(self._words[i]) else []  # cut short: whole here
            tips += [tip.format(word=self._words[i])] if i in self._word_maps and tip else []
            button.setToolTip("\n".join(tips))

    def show_word_map(self, index: int) -> None:
        """Overlay word ``index``'s second map (see :meth:`set_word_maps`); the word stays chosen."""
        if index not in self._word_maps:
            return
        self.show_map(self._word_maps[index])
        self._current = index
        for i, button in enumerate(self.word_buttons()):
            button.setChecked(i == index)
        for i, tile in enumerate(self.strip_tiles()):
            tile.setChecked(i == index)
        self._announce(f"Word {index + 1} of {len(self._words)}: {self._words[index]}; its keyword's map is shown")
        self.word_map_shown.emit(index)

    def select_word(self, index: int) -> None:
        """Overlay word ``index``'s attention map (-1 clears the overlay)."""
        if self._attention is None or not -1 <= index < len(self._words):
            index = -1
        self._current = index
        if index >= 0:
            self._cursor = index
        self._map = None
        for i, button in enumerate(self.word_buttons()):
            button.setChecked(i == index)
        for i, tile in enumerate(self.strip_tiles()):
            tile.setChecked(i == index)
        self._refresh()
        self._announce(f"Word {index + 1} of {len(self._words)}: {self._words[index]}; where the model looked is "
                       f"shown" if index >= 0 else self._word_hint.text())
        self.word_selected.emit(index)

    def clear_overlay(self) -> None:
        self.select_word(-1)

    def show_map(self, grid: np.ndarray | None) -> None:
        """Overlay a ``(grid_h, grid_w)`` map that is not a caption word's (a keyword's class
        activation map) as a word's is shown; the chosen word, if any, is unchosen. None clears it."""
        self._map = None if grid is None else np.asarray(grid, dtype=np.float32)
        self._current = -1
        for button in self.word_buttons():
            button.setChecked(False)
        for tile in self.strip_tiles():
            tile.setChecked(False)
        self._refresh()

    # -- events -----------------------------------------------------------------------------

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if key == Qt.Key.Key_Escape and (self._current >= 0 or self._map is not None):
            self.clear_overlay()
        elif key in (Qt.Key.Key_Right, Qt.Key.Key_Left) and self._attention is not None and self._words:
            forward = (key == Qt.Key.Key_Right) != self._word_bar.isRightToLeft()  # the next word is to its left there
            self.select_word(min(self._here() + 1, len(self._words) - 1) if forward else max(self._here() - 1, 0))
        elif key in (Qt.Key.Key_Home, Qt.Key.Key_End) and self._attention is not None and self._words:
            self.select_word(0 if key == Qt.Key.Key_Home else len(self._words) - 1)
        elif key in (Qt.Key.Key_Space, Qt.Key.Key_Return, Qt.Key.Key_Enter) and self._attention is not None \
                and self._words:
            self._on_word_group_id_clicked(max(self._here(), 0))  # as a click on the word: again, its second map
        else:
            super().keyPressEvent(event)
            return
        event.accept()

    def _here(self) -> int:
        """The word the keys move from: the chosen one, else the last one chosen (-1: none yet)."""
        return self._current if self._current >= 0 else self._cursor

    def focusInEvent(self, event) -> None:
        super().focusInEvent(event)
        self._show_focus(True)

    def focusOutEvent(self, event) -> None:
        super().focusOutEvent(event)
        self._show_focus(False)

    def _show_focus(self, focused: bool) -> None:
        """Frame the words, or the line that says there are none (an empty bar is 0 px high)."""
        framed, plain = (self._word_bar, self._word_hint) if self._words else (self._word_hint, self._word_bar)
        plain.setStyleSheet("")
        framed.setStyleSheet(f"#{framed.objectName()} {{ border: 2px solid palette(highlight); border-radius: 4px; }}"
                             if focused else "")

    def _announce(self, text: str) -> None:
        """Say what the overlay shows now, where a screen reader reads it (the view's description)."""
        self.setAccessibleDescription(text)
        QAccessible.updateAccessibility(QAccessibleEvent(self, QAccessible.Event.DescriptionChanged))

    def _on_word_group_id_clicked(self, index: int) -> None:
        if index == self._current and self._map is None and index in self._word_maps:
            self.show_word_map(index)  # a second click: the word's keyword map
        else:
            self.select_word(-1 if index == self._current else index)
        self.setFocus()

    def _on_opacity_slider_value_changed(self, _value: int) -> None:
        self._refresh()
        self._rebuild_strip()

    # -- drawing ----------------------------------------------------------------------------

    def _refresh(self) -> None:
        if self._photo is None:
            self.overlay_map = None
            self.canvas.set_image(None, getattr(self, "_message", "") or "No photo selected")
            return
        grid = self.current_map
        if grid is None:
            self.overlay_map = None
            self.canvas.set_image(array_to_qimage(self._photo))
            return
        self.overlay_map = upsample_map(grid, self._photo.shape[:2])
        opacity = self.opacity_slider.value() / 100.0
        self.canvas.set_image(array_to_qimage(blend(self._photo, self.overlay_map, opacity)))

    def _rebuild_strip(self) -> None:
        while self._strip_layout.count():
            widget = self._strip_layout.takeAt(0).widget()
            if widget is not None:
                discard_widget(widget)
        if self._photo is None or self._attention is None:
            self._strip_scroll.setVisible(False)
            return
        self._strip_scroll.setVisible(True)
        small = np.asarray(Image.fromarray(self._photo).resize(self._strip_size(), Image.Resampling.BILINEAR))
        opacity = max(self.opacity_slider.value() / 100.0, 0.35)
        for i, (word, attention) in enumerate(zip(self._words, self._attention, strict=True)):
            # A button: clicking a word's tile selects that word, as its button above does.
            tile = QToolButton()
            tile.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextUnderIcon)
            tile.setIcon(QIcon(QPixmap.fromImage(array_to_qimage(blend(small, upsample_map(attention, small.shape[:2]),
                                                                         opacity)))))
            tile.setIconSize(QSize(small.shape[1], small.shape[0]))
            tile.setText(literal(word))
            tile.setCheckable(True)
            tile.setChecked(i == self._current)
            tile.setAutoRaise(True)
            tile.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            tile.setToolTip(f"Show where the model looked for “{word}”")
            tile.clicked.connect(lambda _checked=False, index=i: self._on_word_group_id_clicked(index))
            self._strip_layout.addWidget(tile)
        self._strip_layout.addStretch(1)

    def strip_tiles(self) -> list[QToolButton]:
        """The all-words strip's tiles, one per word (empty without attention maps)."""
        return [w for w in (self._strip_layout.itemAt(i).widget() for i in range(self._strip_layout.count()))
                if isinstance(w, QToolButton)]

    def _fit_strip(self) -> None:
        self._strip_scroll.setFixedHeight(self.strip_height()
                                          + self._strip_scroll.horizontalScrollBar().sizeHint().height() + 8)

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().changeEvent(event)
        if event.type() == QEvent.Type.FontChange and hasattr(self, "_strip_scroll"):  # a font chosen later: fit it
            self._fit_strip()

    def strip_height(self) -> int:
        """The height a tile needs: the tallest thumbnail plus its label."""
        return self.STRIP_SIZE + self.fontMetrics().height() + 16

    def _strip_size(self) -> tuple[int, int]:
        height, width = self._photo.shape[:2]
        scale = self.STRIP_SIZE / max(height, width)
        return max(1, round(width * scale)), max(1, round(height * scale))
