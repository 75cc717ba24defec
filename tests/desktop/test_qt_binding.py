"""Guards against Qt-binding bugs that would crash the app long after start."""

from __future__ import annotations

import sys

from PySide6.QtCore import QModelIndex, QObject, Signal


class _Emitter(QObject):
    number = Signal(int)
    indexes = Signal(QModelIndex, QModelIndex)


def test_emitting_signals_keeps_reference_counts():
    # PySide6 6.12.0 on Python 3.11 dropped a reference to True on every emit: after ~2000 signals
    # (a folder of a few thousand photos) the interpreter aborts in bool_dealloc.
    emitter = _Emitter()
    emitter.number.connect(lambda value: None)
    before = sys.getrefcount(True), sys.getrefcount(False)
    for _ in range(50):
        emitter.number.emit(1)
        emitter.indexes.emit(QModelIndex(), QModelIndex())
    assert (sys.getrefcount(True), sys.getrefcount(False)) == before
