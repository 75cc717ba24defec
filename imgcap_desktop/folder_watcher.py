"""Notices what other programs change in the open folder: photos added, removed or replaced, and
sidecars written."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Sequence
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QFileSystemWatcher, QObject, QTimer, Signal

from imgcap_desktop.metadata.folder import FolderChanges, FolderSnapshot, folder_changes, snapshot_folder
from imgcap_desktop.workers import run_in_background

log = logging.getLogger(__name__)

#: The quiet time before a look is at least this many times what the last look took.
LOOK_GAP_FACTOR = 5
#: While the window is active, a look at least this often without a notice (a file rewritten in
#: place sends none)…
BEAT_MS = 20_000
#: …and no more often than this many times what the last look took (a big folder, a slow share).
BEAT_FACTOR = 100
#: At most this many folders are watched (macOS keeps a file open for each): the others are looked
#: at when the window becomes active again, or with the watched ones.
MAX_WATCHED_FOLDERS = 256


def _look_at(folder: Path, recursive: bool, previous: FolderSnapshot, first: bool
             ) -> tuple[FolderSnapshot, FolderChanges]:
    """A look, on a pool thread: the folder now, and what changed since ``previous`` (``first``:
    nothing seen yet to compare files with; only photos that came or went count)."""
    snapshot = snapshot_folder(folder, recursive=recursive)
    changes = folder_changes(previous, snapshot)
    if first:
        changes = FolderChanges(changes.photos, changes.added, changes.removed)
    return snapshot, changes


class FolderWatcher(QObject):
    """Watches a folder and reports what changed in it, a moment after a change.

    The system's change notices for the folder start a look, and so does :meth:`check` (the window
    calls it when it becomes active again: a network share may send no notices, and a sidecar
    rewritten in place changes no folder entry); so does a slow beat while the window is active
    (:meth:`set_beating`), every :data:`BEAT_MS` or :data:`BEAT_FACTOR` times what a look takes,
    for what no notice tells. A look takes a :class:`FolderSnapshot` on a pool thread and compares
    it with the previous one. Our own sidecar writes are looked at too: reading them back changes
    nothing.

    Signals:
        changed(object changes): a :class:`FolderChanges` with something in it.
        unavailable(str reason): the folder could not be looked at (gone, or unmounted); said once
            while it stays so; the next look tries again.
    """

    changed = Signal(object)
    unavailable = Signal(object)  # a str (a path in it may hold bytes that are not UTF-8)

    def __init__(self, parent: QObject | None = None, *, delay_ms: int = 400):
        super().__init__(parent)
        self._notices = QFileSystemWatcher(self)
        self._notices.directoryChanged.connect(self._on_notices_directory_changed)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(delay_ms)
        self._timer.timeout.connect(self._look)
        self._delay_ms, self._started = delay_ms, 0.0
        self._beat = QTimer(self)
        self._beat.setInterval(BEAT_MS)
        self._beat.timeout.connect(self.check)
        self._folder: Path | None = None
        self._recursive = False
        self._snapshot: FolderSnapshot | None = None
        self._generation = 0
        self._first = False
        self._beating = False
        self._unavailable = ""  # the reason last said, so that a folder still gone is not said again
        self._looking = False
        self._again = False

    def watch(self, folder: str | Path, photos: Sequence[Path], *, recursive: bool = False) -> None:
        """Watch ``folder``, whose ``photos`` (as the caller listed them) are shown now."""
        self.stop()
        self._folder, self._recursive = Path(folder), recursive
        # The first look compares with the photos shown: one added or removed since they were
        # listed is reported, while sidecars start from what the first look sees.
        self._snapshot, self._first = FolderSnapshot(tuple(photos), {}), True
        if self._beating:
            self._beat.start()
        self._look()

    def stop(self) -> None:
        """Stop watching; a look under way reports nothing."""
        self._generation += 1
        self._looking = False  # the next folder's looks need not wait for that one
        self._timer.stop()
        self._beat.stop()
        self._timer.setInterval(self._delay_ms)
        self._folder, self._snapshot, self._again, self._unavailable = None, None, False, ""
        if self._notices.directories():
            self._notices.removePaths(self._notices.directories())

    def set_beating(self, on: bool) -> None:
        """Beat (look now and then without a notice) or not: the window beats while it is active."""
        self._beating = on
        if on and self._folder is not None:
            self._beat.start()
        else:
            self._beat.stop()

    def keep_listed(self, photos: Collection[Path]) -> None:
        """Count these photos, gone from the folder, as there still: the caller keeps showing them
        (one whose caption is typed, or held). Each later look reports them removed again, so that
        they go once the caller lets them; a file back under the name is a photo replaced (its
        sidecar read again), not one the caller has already."""
        if self._snapshot is not None:
            listed = set(self._snapshot.photos)
            extra = tuple(p for p in photos if p not in listed)
            if extra:
                self._snapshot = replace(self._snapshot, photos=(*self._snapshot.photos, *extra))

    def check(self) -> None:
        """Look at the folder again soon, as a notice does: within the quiet time that the last look
        set (a steady stream of notices, a run's own writes, gives one look per quiet time)."""
        if self._folder is not None and not self._timer.isActive():
            self._timer.start()

    @property
    def looking(self) -> bool:
        """Whether a look is under way or due."""
        return self._looking or self._timer.isActive()

    def _on_notices_directory_changed(self, _path: str) -> None:
        self.check()

    def _look(self) -> None:
        if self._folder is None:
            return
        if self._looking:  # one look at a time; another follows it
            self._again = True
            return
        self._looking, self._started = True, time.monotonic()
        generation = self._generation
        run_in_background(_look_at, self._folder, self._recursive, self._snapshot, self._first,
                          on_returned=lambda result: self._on_task_returned(generation, *result),
                          on_errored=lambda exc: self._on_task_errored(generation, exc),
                          on_finished=lambda: self._on_task_finished(generation), owner=self)

    def _on_task_returned(self, generation: int, snapshot: FolderSnapshot, changes: FolderChanges) -> None:
        if generation != self._generation or self._snapshot is None:
            return
        if self._snapshot.photos and not snapshot.photos:
            # Every photo gone at once: far more likely a drive unmounted (its mount point left
            # empty) than a folder emptied; the photos stay, with what the session knows of them.
            self._say_unavailable("no photo is there now (a drive unmounted?); reopen the folder to refresh it")
            return
        self._snapshot, self._first, self._unavailable = snapshot, False, ""
        self._watch_directories(snapshot)
        if changes:
            self.changed.emit(changes)

    def _on_task_errored(self, generation: int, exc: BaseException) -> None:
        if generation == self._generation:
            log.info("looking at %s failed: %s", self._folder, exc)
            self._say_unavailable(str(exc))

    def _say_unavailable(self, reason: str) -> None:
        if reason != self._unavailable:  # once, not at every beat while the folder stays gone
            self._unavailable = reason
            self.unavailable.emit(reason)

    def _on_task_finished(self, generation: int) -> None:
        if generation != self._generation:  # a look at a folder no longer watched (a slow share)
            return
        self._looking = False
        # Looks cost what the folder's size costs: a big folder (or a slow share) is looked at
        # less often, so that a run's own sidecar writes do not keep a look going all the time.
        took_ms = 1000 * (time.monotonic() - self._started)
        self._timer.setInterval(max(self._delay_ms, int(LOOK_GAP_FACTOR * took_ms)))
        self._beat.setInterval(max(BEAT_MS, int(BEAT_FACTOR * took_ms)))
        if self._again:
            self._again = False
            self.check()

    def _watch_directories(self, snapshot: FolderSnapshot) -> None:
        assert self._folder is not None
        folders = dict.fromkeys([str(self._folder), *(str(photo.parent) for photo in snapshot.photos)])
        wanted = set(list(folders)[:MAX_WATCHED_FOLDERS])
        watched = set(self._notices.directories())
        if watched - wanted:
            self._notices.removePaths(sorted(watched - wanted))
        if wanted - watched:
            self._notices.addPaths(sorted(wanted - watched))  # ones the system refuses: checks still look
