"""Python's cycle collector, run on the GUI thread only while Qt and worker threads share objects.

PySide deletes the Qt object that a Python wrapper owns when the wrapper is freed. A wrapper in a
reference cycle (a window whose lambdas capture it, a job's event loop and its timer) is freed by the
cycle collector, and CPython runs that on whichever thread happens to allocate when a threshold is
crossed: with captioning and thumbnails on worker threads, often a worker. It then deleted a widget or
a timer of the GUI thread while that thread was delivering an event to it: a segfault in
``QObject::event``, one test run in eight, and in the app whenever the timing met.

While :func:`collecting_on_gui_thread` is in force, automatic collection is off and a timer on the
GUI thread collects as the automatic collector would, generation by generation, from the same
counts and thresholds. Objects without cycles are freed by reference counting as always.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

from PySide6.QtCore import QTimer

#: How often the GUI thread looks at the collector's counts. A collection of the youngest
#: generation takes well under a millisecond; garbage waits at most this long.
INTERVAL_MS = 500


class GuiThreadCollector:
    """Collects cyclic garbage from a timer of the thread it was made on (the GUI thread).

    Not a QObject, and its timer's slot holds nothing of it: the collector is never garbage in a
    cycle itself (freed by the wrong thread after automatic collection is back)."""

    def __init__(self, interval_ms: int = INTERVAL_MS):
        self.thresholds = gc.get_threshold()
        self._timer = QTimer()
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(partial(collect_due, self.thresholds))

    def start(self) -> None:
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()


def collect_due(thresholds: tuple[int, int, int]) -> int:
    """Collect as the automatic collector would with ``thresholds``: the oldest generation whose count
    is past its threshold (and the younger ones, as ``gc.collect(n)`` does); nothing while the
    youngest is under its own. Returns how many objects were found unreachable."""
    counts = gc.get_count()
    if thresholds[0] <= 0 or counts[0] <= thresholds[0]:
        return 0
    generation = 0
    while generation < 2 and counts[generation + 1] > thresholds[generation + 1]:
        generation += 1
    return gc.collect(generation)


@contextmanager
def collecting_on_gui_thread(interval_ms: int = INTERVAL_MS) -> Iterator[GuiThreadCollector]:
    """Within the block, cyclic garbage is collected on the calling (GUI) thread alone: automatic
    collection is off, a timer of this thread's event loop collects instead (a Qt application must
    exist). What is garbage when it starts and when it ends is collected there and then; automatic
    collection is then as the block found it (blocks may nest: a self-test run from a test)."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    collector = GuiThreadCollector(interval_ms)
    collector.start()
    try:
        yield collector
    finally:
        collector.stop()
        gc.collect()
        if was_enabled:
            gc.enable()
