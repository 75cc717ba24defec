"""One folder's captions: the photos, each photo's caption state, and every change made to them.

The caption session is the application layer that the app (``MainWindow``) and the CLI both drive.
It owns, for one set of photos:

- each photo's caption state (none / automatic / human / embedded / error, with the reason; held
  when not yet written to the sidecar), with the model's full result and keywords;
- the one overwrite policy (:meth:`CaptionSession.plan`: which photos a run captions);
- the rule that **a user's edit always wins over a result that arrives later**: every edit bumps
  the photo's edit count, and a result planned before that edit is dropped;
- every sidecar write, serialised per photo, so a worker's read-then-write and the GUI's write can
  never interleave (what one store does is the metadata layer's rule,
  :func:`~imgcap_desktop.metadata.apply.store_caption`);
- caption export (CSV) and CSV import.

It imports neither Qt nor TensorFlow. It reports changes through plain callbacks
(:class:`Event`): the app adapts them to Qt signals, the CLI prints them. Methods are thread-safe:
the app calls :meth:`CaptionSession.apply_outcomes` and :meth:`CaptionSession.read_stored` on
worker threads, so callbacks may run on any thread.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from imgcap_desktop.metadata.apply import (
    GONE_WHILE_CAPTIONED,
    REPLACED_WHILE_CAPTIONED,
    PhotoStatus,
    StoreOptions,
    replaced_since,
    store_caption,
)
from imgcap_desktop.metadata.csvio import CsvRow, ImportReport, import_csv, make_row, write_csv
from imgcap_desktop.metadata.folder import base_style_collisions, natural_key
from imgcap_desktop.metadata.sidecar import (
    STALE_TEMP_SECONDS,
    PersonsCaptionKept,
    SidecarError,
    SidecarStyle,
    StoredCaption,
    find_sidecar_or_none,
    has_ext_style_sidecar,
    is_blank,
    other_tools_keywords,
    read_caption,
    write_caption,
)
from imgcap_desktop.metadata.sidecar import remove_stale_temp_files as remove_stale_sidecars
from model.images import broken_link_reason, header_problem
from model.results import CaptionOutcome, CaptionResult

log = logging.getLogger(__name__)

OverwritePolicy = Literal["skip", "replace_automatic", "replace_all"]
#: ``CaptionSession.set_caption(replacing=...)``'s default: whatever the photo stores now.
ANY_CAPTION = object()
#: ``CaptionSession.stored_caption`` of a photo whose sidecar cannot be read.
UNREADABLE = object()
#: A photo's fields once nothing is held for it any more.
_UNHELD = {"held": False, "write_error": "", "removed_keywords": (), "held_over": None, "held_identity": None,
           "keywords_only": False}
OVERWRITE_POLICIES: dict[str, str] = {
    "skip": "Skip photos that already have a caption",
    "replace_automatic": "Recaption automatic captions, keep human ones",
    "replace_all": "Recaption everything, human captions included",
}

class CaptionState(enum.Enum):
    """Where a photo's caption comes from (its badge)."""

    NONE = "none"
    AUTOMATIC = "automatic"
    HUMAN = "human"
    EMBEDDED = "embedded"
    ERROR = "error"


#: Captions a person wrote: typed here or in another tool, or embedded in the photo.
_PERSONS = frozenset({CaptionState.HUMAN, CaptionState.EMBEDDED})


@dataclass(frozen=True)
class Photo:
    """One photo as the session knows it.

    Attributes:
        path: the photo.
        caption: its caption (stored, produced or typed), if any.
        error: why it could not be read or captioned, if it could not.
        result: the model's full result (words, attention, alternatives) from this session.
        held: the caption is not written to the sidecar (hold-for-review mode, or a failed write).
        write_error: why the last sidecar write failed (the caption is then held).
        edits: how many times the user changed the caption; a result planned before an edit loses.
        removed_keywords: keywords a person removed from the held caption: writing it records them
            as rejected, so a later run does not add them back.
        held_over: the caption the photo had before a model caption was held over it (what the
            sidecar held as far as the session knew): accepting the held caption keeps a person's
            caption that differs from it, one that another program wrote since.
        keywords_only: the held change is of the keywords alone, made on the stored caption
            (``held_over``): Accept makes it on the caption stored then, as a change written at once
            is made (see ``_on_stored``), and leaves that caption as it is.
        held_identity: the photo file's identity when the held model caption was made of it
            (``CaptionResult.identity``): a caption is not written to another file saved under the
            photo's name since.
        maps_for: ``(result, maps)``: attention maps computed for another caption than ``result``'s
            (typed, or one of its alternatives; :meth:`CaptionSession.apply_attention`). They count
            while ``result`` is that result, so the run's own maps stay at hand beside them.
    """

    path: Path
    caption: StoredCaption | None = None
    error: str = ""
    result: CaptionResult | None = None
    held: bool = False
    write_error: str = ""
    edits: int = 0
    removed_keywords: tuple[str, ...] = ()
    held_over: StoredCaption | None = None
    keywords_only: bool = False
    held_identity: tuple[int, ...] | None = None
    maps_for: tuple[CaptionResult, CaptionResult] | None = None

    @property
    def state(self) -> CaptionState:
        if self.error:
            return CaptionState.ERROR
        if self.caption is None or not self.caption.text:
            return CaptionState.NONE
        return CaptionState(self.caption.source)

    @property
    def text(self) -> str:
        return self.caption.text if self.caption else ""

    @property
    def keywords(self) -> tuple[str, ...]:
        """imgcap's keywords for the photo (the model's, as stored: a person's removals respected)."""
        return (self.caption.keywords or ()) if self.caption else ()

    @property
    def maps(self) -> CaptionResult | None:
        """The result whose words and attention maps are the caption's, if one is at hand: the run's
        (``result``), or the maps computed for the caption since (``maps_for``)."""
        if self.caption is None:
            return None
        text = " ".join(self.caption.text.split())  # maps computed for a caption are of its words
        at_hand = [self.result]
        if self.maps_for is not None and self.maps_for[0] is self.result:
            at_hand.append(self.maps_for[1])
        return next((result for result in at_hand if result is not None and result.text == text), None)

    @property
    def attention_matches(self) -> bool:
        """Whether attention maps of the caption shown are at hand (see :attr:`maps`)."""
        return self.maps is not None

    @property
    def recomputable(self) -> bool:
        """A caption whose attention maps are not at hand (stored before this session, typed, or
        picked among the model's alternatives): the model can be shown its words to compute them
        (:meth:`CaptionSession.apply_attention`)."""
        return bool(self.text) and not self.error and not self.attention_matches


@dataclass(frozen=True)
class CaptionPlan:
    """Which photos a run captions, and how their results are stored (see :meth:`CaptionSession.plan`).

    Attributes:
        photos: the photos to caption, in order.
        settled: a status for each photo left out (skipped, kept, or failed at once).
        write: write the captions to sidecars (else hold them).
        overwrite_human: replace captions a person wrote.
        human_count: photos with a person's caption among those asked for (to confirm replacing).
        keywords: store the model's keywords with the caption (merged into ``dc:subject``).
    """

    photos: tuple[Path, ...]
    settled: tuple[PhotoStatus, ...] = ()
    write: bool = True
    overwrite_human: bool = False
    human_count: int = 0
    keywords: bool = True
    generation: int = 0
    edits: dict[Path, int] = field(default_factory=dict, repr=False, compare=False)


class Event:
    """A plain callback list: ``connect(fn)``, ``disconnect(fn)``, ``emit(*args)``."""

    def __init__(self) -> None:
        self._callbacks: list[Callable] = []

    def connect(self, callback: Callable) -> None:
        self._callbacks.append(callback)

    def disconnect(self, callback: Callable) -> None:
        self._callbacks.remove(callback)

    def emit(self, *args) -> None:
        for callback in list(self._callbacks):
            callback(*args)


#: How long refresh_stored waits before reading again what it could not read (half-written?).
REREAD_PAUSE_S = 0.05


def now() -> str:
    """The time recorded with a caption: ISO 8601, UTC, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class CaptionSession:
    """The photos of one folder (or of a CLI run) and everything that happens to their captions.

    Events (plain callbacks, run on the thread that made the change):
        reset(): the photos were replaced (:meth:`open`).
        changed(tuple[Path, ...] paths): these photos' state changed.
        listed(): photos joined or left (:meth:`sync_photos`).

    Args:
        sidecar_style: ``"ext"`` (``photo.jpg.xmp``) or ``"base"`` (``photo.xmp``) for new sidecars.
        auto_write: write captions to sidecars as soon as they exist (else hold them for review).
    """

    def __init__(self, *, sidecar_style: SidecarStyle = "ext", auto_write: bool = True):
        self.sidecar_style: SidecarStyle = sidecar_style
        self.auto_write = auto_write
        self.folder: Path | None = None
        self.reset = Event()
        self.changed = Event()
        self.listed = Event()
        self._lock = threading.RLock()  # guards the state below
        self._photos: dict[Path, Photo] = {}
        self._unread: set[Path] = set()  # photos whose stored caption is not read yet (read_stored)
        self._order: list[Path] = []
        self._generation = 0
        self._write_locks: dict[Path, threading.Lock] = {}

    # -- the photos ----------------------------------------------------------------------------

    def open(self, photos: Iterable[str | Path], folder: str | Path | None = None) -> None:
        """Replace the photos (no caption known yet; see :meth:`read_stored`).

        Stale temporary files that a killed writer left beside the photos are removed.
        """
        paths = list(dict.fromkeys(Path(p) for p in photos))
        with self._lock:
            self._generation += 1
            self.folder = Path(folder) if folder is not None else None
            self._order = paths
            self._photos = {p: Photo(p) for p in paths}
            self._unread = set(paths)
        remove_stale_temp_files(paths)
        self.reset.emit()

    @property
    def generation(self) -> int:
        """Grows with every :meth:`open`; work started for an older generation is out of date."""
        return self._generation

    def photos(self) -> list[Photo]:
        with self._lock:
            return [self._photos[p] for p in self._order]

    def photo(self, path: str | Path) -> Photo | None:
        with self._lock:
            return self._photos.get(Path(path))

    def __len__(self) -> int:
        return len(self._order)

    def held(self) -> list[Photo]:
        """Photos whose caption is not written to their sidecar yet."""
        return [p for p in self.photos() if p.held and p.caption is not None]

    def _update(self, path: Path, generation: int | None = None, **changes) -> Photo | None:
        with self._lock:
            if generation is not None and generation != self._generation:
                return None
            photo = self._photos.get(path)
            if photo is None:
                return None
            photo = replace(photo, **changes)
            self._photos[path] = photo
            return photo

    def _write_lock(self, path: Path) -> threading.Lock:
        with self._lock:
            return self._write_locks.setdefault(path, threading.Lock())

    # -- stored captions -----------------------------------------------------------------------

    def read_stored(self, photos: Sequence[Path] | None = None, *, stop: threading.Event | None = None,
                    chunk: int = 64, check_photos: bool = True) -> int:
        """Read the captions stored for the photos (sidecar, else embedded description); returns how many were read.

        Meant for a worker thread. A photo the user or a run changed meanwhile keeps that newer
        state. With ``check_photos``, a photo whose header cannot be read is flagged as an error
        at once, so broken files show before any run. ``changed`` fires once per ``chunk`` photos.
        """
        generation = self._generation
        photos = list(self._order if photos is None else photos)
        done: list[Path] = []
        count = 0
        for path in photos:
            if stop is not None and stop.is_set():
                break
            caption, error = _read_stored(path, check_photos)
            with self._lock:
                current = self._photos.get(path)
                if generation != self._generation:
                    return count
                self._unread.discard(path)
                if current == Photo(path):  # nothing happened to it meanwhile (None: gone since, sync_photos)
                    self._photos[path] = replace(current, caption=caption, error=error)
                    done.append(path)
            count += 1
            if len(done) >= chunk:
                self.changed.emit(tuple(done))
                done = []
        if done:
            self.changed.emit(tuple(done))
        return count

    def refresh_stored(self, photos: Sequence[Path], *, replaced: Collection[Path] = (),
                       stop: threading.Event | None = None) -> list[Path]:
        """Read again what these photos store, after another program changed their sidecars (or the
        photos themselves): each shows what is stored now. Returns the photos whose state changed.

        Meant for a worker thread. A photo whose caption is held (not written yet) is left as it
        is: writing it checks the sidecar again, and keeps a person's caption written since. A
        photo the user edits meanwhile keeps the edit. ``replaced``: photos whose own file changed,
        whose attention maps (of the old file) are dropped.
        """
        generation = self._generation
        done: list[Path] = []
        for path in photos:
            if stop is not None and stop.is_set():
                break
            with self._write_lock(path):  # never between one of our own writes' read and replace
                before = self.photo(path)
                if before is None or before.held:
                    continue
                # A program that rewrites the sidecar in place may be half-way: read again a moment later.
                caption, error = _read_stored(path, check_photos=True, reread_pause=REREAD_PAUSE_S)
                with self._lock:
                    current = self._photos.get(path)
                    if generation != self._generation:
                        break
                    if current is None or current.held or current.edits != before.edits:
                        continue
                    result = None if path in replaced else current.result
                    # The same words may now be another language's item, or no longer (not part of
                    # a caption's equality, and what an undo writes back depends on it).
                    if ((current.caption, current.error) == (caption, error) and current.result is result
                            and _language(current.caption) == _language(caption)):
                        continue
                    self._photos[path] = replace(current, caption=caption, error=error, result=result,
                                                 write_error="", removed_keywords=())
                done.append(path)
        if done:
            self.changed.emit(tuple(done))
        return done

    def sync_photos(self, photos: Sequence[str | Path], *, keep: Collection[Path] = ()
                    ) -> tuple[tuple[Path, ...], tuple[Path, ...]]:
        """Follow the folder as it is now: photos that appeared join (their captions unread: see
        :meth:`read_stored`), and photos that went leave, except one whose caption is held (typed
        or a model's, not written yet) or one in ``keep`` (the person is typing its caption): it
        stays, for the person to write or discard. Returns ``(added, removed)``; ``listed`` fires
        when either is not empty."""
        wanted = list(dict.fromkeys(Path(p) for p in photos))
        with self._lock:
            listed = set(wanted)
            added = tuple(p for p in wanted if p not in self._photos)
            gone = [p for p in self._order if p not in listed]
            removed = tuple(p for p in gone if not self._photos[p].held and p not in keep)
            if not (added or removed):
                return (), ()
            if len(gone) > len(removed):  # gone, but kept: in their places
                leaving = set(removed)
                wanted.extend(p for p in gone if p not in leaving)
                root = self.folder
                wanted.sort(key=lambda p: natural_key(p.relative_to(root)) if root and p.is_relative_to(root)
                            else natural_key(p))
            for path in removed:
                del self._photos[path]
                self._unread.discard(path)
            self._photos.update((path, Photo(path)) for path in added)
            self._unread.update(added)
            self._order = wanted
        self.listed.emit()
        return added, removed

    # -- which photos to caption ---------------------------------------------------------------

    def plan(self, paths: Iterable[str | Path] | None, policy: OverwritePolicy, *,
             write: bool | None = None, keywords: bool = True) -> CaptionPlan:
        """Decide which photos to caption: the one implementation of the overwrite policy.

        A photo with no caption, or whose last attempt failed, is always captioned. Under
        ``"skip"`` nothing else is; ``"replace_automatic"`` also recaptions automatic captions;
        ``"replace_all"`` recaptions a person's too: human ones and descriptions embedded in the
        photo (``human_count`` says how many, so the app can ask first). In base sidecar style,
        photos that would share a sidecar fail at once.

        Args:
            paths: the photos asked for (default: every photo), in order.
            policy: see :data:`OVERWRITE_POLICIES`.
            write: write results to sidecars (default: ``auto_write``).
        """
        write = self.auto_write if write is None else write
        with self._lock:
            asked = list(self._order) if paths is None else [Path(p) for p in paths]
        self._read_unread(asked)  # what they store decides, not "no caption"
        with self._lock:
            photos = [self._photos.get(p) or Photo(p) for p in asked]
            generation = self._generation
        settled: dict[Path, PhotoStatus] = {}
        if write and self.sidecar_style == "base":
            for sidecar, members in base_style_collisions(asked).items():
                names = ", ".join(p.name for p in members)
                message = f"{names} would share the sidecar {sidecar.name}; use the ext style"
                # A photo with a photo.jpg.xmp of its own is written there, whatever the style.
                for photo in (p for p in members if not has_ext_style_sidecar(p)):
                    settled[photo] = PhotoStatus(photo, "failed", message=message)
                    self._update(photo, error=message)  # shown (badge, CSV error column), not only returned
            if settled:
                self.changed.emit(tuple(settled))
        chosen, human = [], 0
        for photo in photos:
            if photo.path in settled:
                continue
            state = photo.state
            persons = state in _PERSONS
            human += persons
            if state in (CaptionState.NONE, CaptionState.ERROR) or policy == "replace_all" or (
                    policy == "replace_automatic" and not persons):
                chosen.append(photo)
            elif persons and policy != "skip":
                settled[photo.path] = PhotoStatus(photo.path, "kept_human", photo.caption,
                                                  find_sidecar_or_none(photo.path), "a person's caption is kept")
            else:
                settled[photo.path] = PhotoStatus(photo.path, "skipped", photo.caption,
                                                  find_sidecar_or_none(photo.path), "already captioned")
        if chosen:
            remove_stale_temp_files([p.path for p in chosen])
        return CaptionPlan(
            tuple(p.path for p in chosen), tuple(settled[p] for p in asked if p in settled), write,
            overwrite_human=policy == "replace_all", human_count=human, keywords=keywords, generation=generation,
            edits={p.path: p.edits for p in chosen},
        )

    def without_human(self, plan: CaptionPlan) -> CaptionPlan:
        """The plan with the photos whose caption a person wrote left out (the user said keep them)."""
        keep, settled = [], list(plan.settled)
        for path in plan.photos:
            photo = self.photo(path)
            if photo is not None and photo.state in _PERSONS:
                settled.append(PhotoStatus(path, "kept_human", photo.caption, None, "a person's caption is kept"))
            else:
                keep.append(path)
        return replace(plan, photos=tuple(keep), settled=tuple(settled), overwrite_human=False)

    # -- results from a run --------------------------------------------------------------------

    def apply_outcomes(self, plan: CaptionPlan, outcomes: Iterable[CaptionOutcome], *, model_name: str,
                       captioned_at: str | None = None) -> list[PhotoStatus]:
        """Store one batch of the engine's outcomes as ``plan`` says; one status per outcome, in order.

        Safe to call on a worker thread. Each photo's read-check-write happens under its write
        lock. A photo the user edited after ``plan`` was made keeps the edit (``"kept_edit"``);
        a person's caption in the sidecar is kept unless the plan overwrites human captions; an
        empty caption is never stored. Results for photos of a folder opened since are written
        (the run was asked for); where that folder is open again, its photos show what was written,
        or hold what was not (its reader may have read the sidecar before), unless a caption is
        held there already.
        """
        captioned_at = captioned_at or now()
        statuses, changed = [], []
        for outcome in outcomes:
            path = Path(outcome.source)
            with self._write_lock(path):
                status, changes = self._store_one(plan, outcome, model_name, captioned_at)
                if changes is not None and self._update(path, plan.generation, **changes) is not None:
                    changed.append(path)
                elif plan.generation != self._generation and status.caption is not None and status.status in (
                        "written", "held", "failed"):  # failed with a caption: the sidecar did not take it
                    with self._lock:
                        current = self._photos.get(path)
                        if current is not None and not current.held:
                            refused = status.message.removeprefix(f"{path.name}: ") if status.status == "failed" else ""
                            held = status.status != "written"
                            identity = getattr(outcome, "identity", None) if held else None
                            self._photos[path] = replace(current, caption=status.caption, error="", result=outcome,
                                                         write_error=refused, held=held,
                                                         held_over=_held_over(current) if held else None,
                                                         held_identity=identity)
                            changed.append(path)
                        elif current is None and status.status == "held":  # nowhere to hold it: say so
                            status = replace(status, status="failed", message=(
                                f"{path.name}: held for review, but its folder is no longer open; not written"))
            statuses.append(status)
        if changed:
            self.changed.emit(tuple(changed))
        return statuses

    def apply_attention(self, outcomes: Iterable[CaptionOutcome], *, model_name: str = "") -> list[PhotoStatus]:
        """Give photos the attention maps computed for their captions (``Captioner.attend_batches``):
        nothing is written, the captions stay as they are. A photo whose caption changed meanwhile
        keeps the change, without maps. A run's result keeps its own maps and alternatives beside them.
        One status per outcome: ``"skipped"`` (maps given: nothing stored), ``"kept_edit"`` or
        ``"failed"``."""
        statuses, changed = [], []
        for outcome in outcomes:
            path = Path(outcome.source)
            if not outcome.ok:
                statuses.append(PhotoStatus(path, "failed", message=f"{path.name}: {outcome.reason}"))
                continue
            with self._lock:
                photo = self._photos.get(path)
                if photo is None or photo.caption is None or " ".join(photo.caption.text.split()) != outcome.text:
                    statuses.append(PhotoStatus(path, "kept_edit", photo.caption if photo else None, None,
                                                "its caption changed while its maps were computed"))
                    continue
                if photo.result is None:  # a caption stored earlier: the maps are the photo's result
                    self._photos[path] = replace(photo, result=outcome)
                else:  # the run's result keeps its own maps and its alternatives
                    self._photos[path] = replace(photo, maps_for=(photo.result, outcome))
            changed.append(path)
            statuses.append(PhotoStatus(path, "skipped", photo.caption, None, "attention maps computed"))
        if changed:
            self.changed.emit(tuple(changed))
        return statuses

    def _store_one(self, plan: CaptionPlan, outcome: CaptionOutcome, model_name: str, captioned_at: str):
        path = Path(outcome.source)
        current = self.photo(path) if plan.generation == self._generation else None
        if current is not None and current.edits != plan.edits.get(path, current.edits):
            return PhotoStatus(path, "kept_edit", current.caption, None, "edited while it was being captioned"), None
        reopened = self.photo(path) if current is None else None  # the folder opened again since the plan
        if reopened is not None and (reopened.edits or reopened.held):
            return PhotoStatus(path, "kept_edit", reopened.caption, None, "edited while it was being captioned"), None
        if not outcome.ok:
            if not os.path.lexists(path):  # the folder's watcher takes it out of the grid
                return PhotoStatus(path, "gone", message=f"{path.name}: {GONE_WHILE_CAPTIONED}"), None
            message = f"{path.name}: {outcome.reason}"
            return PhotoStatus(path, "failed", message=message), {"error": outcome.reason, "result": None}
        if replaced_since(path, getattr(outcome, "identity", None)):
            return (PhotoStatus(path, "failed", message=f"{path.name}: {REPLACED_WHILE_CAPTIONED}"),
                    {"error": REPLACED_WHILE_CAPTIONED, "result": None})
        # A bundle whose encoder has no classifier says nothing of keywords: they are left alone.
        keywords = tuple(outcome.keywords) if plan.keywords and outcome.says_keywords else None
        # Keywords a person removed from a held caption stay removed (and become rejected when written).
        removed = current.removed_keywords if current is not None and current.held else ()
        if keywords is not None:
            keywords = tuple(k for k in keywords if k not in removed)
        caption = StoredCaption(outcome.text, "automatic", model_name, outcome.score, captioned_at, keywords)
        options = StoreOptions(write_sidecars=plan.write, sidecar_style=self.sidecar_style,
                               overwrite_human=plan.overwrite_human, keywords=plan.keywords)
        status = store_caption(path, caption, options, rejected_keywords=removed)
        if status.status == "failed":
            reason = status.message.removeprefix(f"{path.name}: ")
            if status.caption is not None:  # the sidecar could not be written: held, as a typed caption is
                return status, {"caption": status.caption, "error": "", "result": outcome, "write_error": reason,
                                "held": True, "removed_keywords": removed, "held_over": _held_over(current),
                                "held_identity": getattr(outcome, "identity", None)}
            return status, {"error": reason}
        if status.status == "kept_human":
            return status, {"caption": status.caption, "error": "", "result": None, "held": False}
        held = status.status == "held"
        return status, {"caption": status.caption, "error": "", "result": outcome, "write_error": "",
                        "held": held, "removed_keywords": removed if held else (),
                        "held_over": _held_over(current) if held else None,
                        "held_identity": getattr(outcome, "identity", None) if held else None}

    # -- the user's changes --------------------------------------------------------------------

    def edit(self, path: str | Path, text: str, *, source: str = "human") -> Photo | None:
        """The user's caption for a photo (``""`` clears it); it beats any result still to come.

        ``source="automatic"`` is for a caption the user picked among the model's alternatives.
        Returns the photo's new state, or None for a photo not in the session.
        """
        photo = self.photo(path)
        if photo is None:
            return None
        return self.set_caption(photo.path, caption_for(photo, text, source))

    def _read_unread(self, photos: Sequence[Path]) -> None:
        """Read what these photos store where :meth:`read_stored` has not yet (a folder just opened,
        photos just added): a plan or an export decides on it, not on "no caption"."""
        with self._lock:
            unread = [p for p in photos if p in self._unread]
        if unread:
            self.read_stored(unread, check_photos=False)

    def set_caption(self, path: str | Path, caption: StoredCaption | None, *,
                    removed_keywords: Sequence[str] | None = None, keywords_only: bool = False,
                    replacing: StoredCaption | None | object = ANY_CAPTION, write_now: bool = False,
                    taking_back: StoredCaption | None | object = ANY_CAPTION) -> Photo | None:
        """Set a photo's caption as the user's action (an edit, or undoing one): written now or held.

        A caption without keywords (None) leaves the photo's keywords as they are. With
        ``removed_keywords``, ``caption.keywords`` are a person's choice and these are the ones they
        removed: recorded as rejected (see :meth:`set_keywords`). ``keywords_only``: the action
        changed the keywords alone, so they go onto the caption the sidecar holds now (see
        :func:`_on_stored`). ``replacing``: what :meth:`stored_caption` gave right after the action
        this one takes back (Undo and Redo): where the photo stores another caption now, one another
        program or a later run wrote since, nothing is written and the photo shows that one; the
        returned photo's caption then is not ``caption``. A clear (None) is written at once when
        captions are held for review too, except of a caption held: that one is taken back unwritten;
        ``write_now``: this caption too (the undo of such a clear). ``taking_back``: the caption that
        action set (an Undo's): held for review, Accept may have written it since, and a clear of it
        (written at once) checks the sidecar holds ``replacing`` or that one, not another program's.
        """
        path = Path(path)
        with self._write_lock(path):
            with self._lock:
                photo = self._photos.get(path)
                if photo is None:
                    return None
                edits = photo.edits + 1
                self._photos[path] = replace(photo, edits=edits)  # from here on, later results lose
            # Held for review (also where writing at once was switched on since: it stays held until
            # Accept or Discard, not written over what another program stored meanwhile), unlike a
            # caption held because writing it failed.
            for_review = photo.held and not (self.auto_write and photo.write_error)
            if caption is None and for_review:
                # Held for review, then cleared: what is held (a caption, a keyword removed) is taken
                # back, never written; the photo shows what it stores (a clear of that is a second,
                # written one).
                stored = _stored_now(path)
                photo = self._update(path, caption=None if stored is UNREADABLE else stored, error="", **_UNHELD)
                self.changed.emit((path,))
                return photo
            # Undo and Redo check what they take back where writes are made at once: with captions held
            # for review, what the sidecar held at the edit is no mark (Accept wrote it since).
            at_once = (self.auto_write and not for_review) or write_now
            if replacing is not ANY_CAPTION and (at_once or caption is None) and not photo.held:
                stored = _stored_now(path)
                accepted = not at_once and taking_back is not ANY_CAPTION and same_caption(stored, taking_back)
                if UNREADABLE not in (stored, replacing) and not same_caption(stored, replacing) and not accepted:
                    photo = self._update(path, caption=stored, error="", write_error="", removed_keywords=())
                    self.changed.emit((path,))
                    return photo
            if keywords_only and self.auto_write and not photo.held and caption is not None:
                caption = _on_stored(path, photo, caption, removed_keywords or ())
                if caption is None:  # another program took the caption out: nothing to put keywords on
                    photo = self._update(path, caption=None, error="", write_error="", removed_keywords=())
                    self.changed.emit((path,))
                    return photo
            shown = caption
            if caption is not None and caption.keywords is None and photo.caption is not None:
                shown = replace(caption, keywords=photo.caption.keywords)  # the sidecar keeps them too
            # A removal not written yet (held) stays a person's until it is.
            removed = tuple(dict.fromkeys([*(photo.removed_keywords if photo.held else ()), *(removed_keywords or ())]))
            removed = tuple(k for k in removed if k not in ((shown.keywords or ()) if shown else ()))
            changes = {"caption": shown, "error": "", "edits": edits, **_UNHELD}
            if at_once or caption is None:  # a person's clear is written at once, held for review or not
                before = _sidecar_bytes(path) if caption is None else None
                try:
                    write_caption(path, _as_stored(caption), style=self.sidecar_style,
                                  keywords_by_person=True if removed_keywords is not None or removed else None,
                                  rejected_keywords=removed)
                except (SidecarError, ValueError) as exc:
                    reason = getattr(exc, "reason", str(exc))
                    changes |= {"held": caption is not None, "write_error": reason}
                    if caption is None:  # a clear the sidecar refused: the caption is still there
                        changes["caption"] = photo.caption
                else:
                    if caption is None:  # what shows now: none, or a caption the clear cannot take
                        changes["caption"], changes["write_error"] = _after_clear(
                            path, photo.caption, cleared=_sidecar_bytes(path) != before)
            else:  # held, unless it is what is stored already (an edit undone back to it)
                changes["held"] = caption is not None and (bool(removed) or not _stored_is(path, caption))
            if changes["held"]:  # written later (accept_held); a person's action: no model result's file
                changes |= {"removed_keywords": removed, "held_over": _held_over(photo),
                            "keywords_only": keywords_only and (not photo.held or photo.keywords_only)}
            photo = self._update(path, **changes)
        self.changed.emit((path,))
        return photo

    def stored_caption(self, path: str | Path) -> StoredCaption | None | object:
        """What the photo stores now (its sidecar's caption, else the one embedded in it), as an
        action's ``replacing`` takes it; :data:`UNREADABLE` where the sidecar cannot be read."""
        return _stored_now(Path(path))

    def other_keywords(self, path: str | Path) -> tuple[str, ...]:
        """The keywords other programs keep in the photo's sidecar (Lightroom's, digiKam's…), read
        now: those that are not imgcap's, nor one of the photo's own in another case. () without
        a sidecar, or where it cannot be read (the photo's state says why)."""
        photo = self.photo(path)
        try:
            others = other_tools_keywords(Path(path))
        except (OSError, SidecarError):
            return ()
        ours = {k.casefold() for k in photo.keywords} if photo is not None else set()
        return tuple(k for k in dict.fromkeys(others) if k.casefold() not in ours)

    def set_keywords(self, path: str | Path, keywords: Sequence[str], *,
                     replacing: StoredCaption | None | object = ANY_CAPTION) -> Photo | None:
        """A person's choice of the photo's keywords (removing one, or undoing that): a human edit.

        A keyword of ours that the person removed is recorded as rejected in the sidecar, so a later
        run does not add it back; putting it back allows it again. The caption itself and its
        source are unchanged. ``replacing``: as :meth:`set_caption` takes it. Returns the photo's new
        state, or None for a photo without a caption.
        """
        photo = self.photo(path)
        if photo is None or photo.caption is None:
            return None
        keywords = tuple(dict.fromkeys(keywords))
        caption = replace(photo.caption, keywords=keywords)
        removed = [k for k in photo.keywords if k not in keywords]
        return self.set_caption(photo.path, caption, removed_keywords=removed, keywords_only=True, replacing=replacing)

    def accept_held(self) -> tuple[int, list[PhotoStatus]]:
        """Write every held caption to its sidecar: ``(written, not written)``, the second a status for
        each photo whose caption was not written: ``"failed"`` (the sidecar refused it, or another
        file took the photo's name), ``"gone"`` (the photo was deleted or moved away) or
        ``"kept_human"`` (a person's caption that another program wrote since the model's caption was
        held is kept, and the photo shows it)."""
        written, failures = 0, []
        for photo in self.held():
            with self._write_lock(photo.path):
                current = self.photo(photo.path)
                if current is None or not current.held or current.caption is None:
                    continue
                # A model's caption of a photo deleted or moved away (or behind a link to nowhere) is
                # dropped; a person's typing stays held (the writer says why), to be written or discarded.
                gone = current.caption.source == "automatic" and not os.path.exists(current.path)
                replaced = gone or replaced_since(current.path, current.held_identity)
                newer = None if replaced else _persons_caption_since(current)
                if gone:
                    self._drop_held(current.path)
                    failures.append(PhotoStatus(current.path, "gone", None, None,
                                                f"{current.path.name}: deleted or moved away since it was captioned; "
                                                "its held caption was dropped"))
                elif replaced:
                    self._drop_held(current.path)
                    failures.append(PhotoStatus(current.path, "failed", None, find_sidecar_or_none(current.path),
                                                f"{current.path.name}: the photo changed since it was captioned "
                                                "(another file under its name); its held caption was dropped"))
                elif current.keywords_only:
                    if (status := self._write_held_keywords(current)) is None:
                        written += 1
                    else:
                        failures.append(status)
                elif newer is not None:
                    failures.append(self._keep_persons_since(current.path, newer))
                else:
                    try:
                        # A held model caption's keywords merge as the model's (one the new result no
                        # longer gives is not a person's rejection); only what the person removed is.
                        automatic = current.caption.source == "automatic"
                        # A model's caption keeps a person's that another program writes while this
                        # one is written, too (decided on the bytes it merges into).
                        # A person's typing keeps any caption written since it was typed, until Accept again.
                        sidecar = write_caption(current.path, _as_stored(current.caption), style=self.sidecar_style,
                                                keywords_by_person=False if automatic else None,
                                                rejected_keywords=current.removed_keywords,
                                                keep_persons=True, keep_any=not automatic,
                                                replacing=current.held_over)
                    except PersonsCaptionKept as kept:
                        if automatic:
                            failures.append(self._keep_persons_since(current.path, kept.stored))
                        else:  # the person decides: theirs stays held
                            failures.append(self._hold_over_since(current.path, current.caption, kept.stored))
                    except (SidecarError, ValueError) as exc:  # one photo's failure never stops the others
                        reason = getattr(exc, "reason", str(exc))
                        self._update(current.path, write_error=reason)
                        failures.append(PhotoStatus(current.path, "failed", current.caption, message=str(exc)))
                    else:
                        self._update(current.path, **_UNHELD)
                        written += 1
                        log.debug("wrote %s", sidecar)
            self.changed.emit((photo.path,))
        return written, failures

    def _write_held_keywords(self, photo: Photo) -> PhotoStatus | None:
        """Write a held change of keywords alone onto the caption stored now (another program's
        since, if so: it stays as that program wrote it); None when written, else why not."""
        caption = _on_stored(photo.path, Photo(photo.path, photo.held_over), photo.caption, photo.removed_keywords)
        if caption is None:  # taken out since, in another program: nothing to put keywords on
            self._drop_held(photo.path)
            return PhotoStatus(photo.path, "failed", None, find_sidecar_or_none(photo.path),
                               f"{photo.path.name}: its caption was taken out in another program since; "
                               "the keyword change was dropped")
        try:
            write_caption(photo.path, _as_stored(caption), style=self.sidecar_style, keywords_by_person=True,
                          rejected_keywords=photo.removed_keywords)
        except (SidecarError, ValueError) as exc:
            self._update(photo.path, write_error=getattr(exc, "reason", str(exc)))
            return PhotoStatus(photo.path, "failed", photo.caption, message=str(exc))
        self._update(photo.path, caption=caption, **_UNHELD)
        return None

    def _keep_persons_since(self, path: Path, stored: StoredCaption) -> PhotoStatus:
        """The held caption gives way to a person's caption written since: shown, and said so."""
        self._update(path, caption=stored, error="", result=None, **_UNHELD)
        return PhotoStatus(path, "kept_human", stored, find_sidecar_or_none(path),
                           f"{path.name}: a person's caption written since is kept")

    def _hold_over_since(self, path: Path, typed: StoredCaption, stored: StoredCaption) -> PhotoStatus:
        """A person's held caption meets one another program wrote since it was typed: it stays held
        over that one (the next Accept writes it), and says so."""
        reason = "another program wrote a caption since this one was typed; Accept again to replace it, or Discard"
        self._update(path, held_over=stored, write_error=reason)
        return PhotoStatus(path, "failed", typed, find_sidecar_or_none(path),
                           f"{path.name}: another program wrote “{stored.text}” since yours was typed; yours is "
                           "still held (Accept again to write it)")

    def discard_held(self) -> int:
        """Forget every held caption: each photo shows what its sidecar holds again. Returns how many."""
        count = 0
        for photo in self.held():
            with self._write_lock(photo.path):
                self._drop_held(photo.path)
            count += 1
            self.changed.emit((photo.path,))
        return count

    def _drop_held(self, path: Path) -> None:
        """Forget a photo's held caption: it shows what it stores again (or why that cannot be read)."""
        try:
            stored, error = read_caption(path), ""
        except SidecarError as exc:
            stored, error = None, exc.reason
        self._update(path, caption=stored, error=error, result=None, **_UNHELD)

    # -- export and import ---------------------------------------------------------------------

    def export_rows(self, paths: Iterable[str | Path] | None = None, root: str | Path | None = None) -> list[CsvRow]:
        """CSV rows for some photos (default: all) with what the session shows for them; a caption
        held for review says so in its row's error cell (a reviewer in a spreadsheet could not tell it
        from one written).

        Reads each photo's header (its size): call it on a worker thread for a large folder.
        """
        root = Path(root) if root is not None else (self.folder or Path.cwd())
        # Not read yet (a folder just opened on a slow share): read now, or its row would say "no
        # caption", with a check cell that says so too.
        self._read_unread(list(self._order) if paths is None else [Path(p) for p in paths])
        photos = self.photos() if paths is None else [self.photo(p) or Photo(Path(p)) for p in paths]
        return [make_row(p.path, root, p.caption, sidecar=find_sidecar_or_none(p.path),
                         error=p.error or p.write_error or (HELD_NOTE if p.held else "")) for p in photos]

    def export_csv(self, csv_file: str | Path, paths: Iterable[str | Path] | None = None, *,
                   root: str | Path | None = None, excel_bom: bool = False) -> int:
        """Write the CSV for some photos (default: all); returns the number of rows.

        Raises:
            OSError: the CSV file cannot be written.
        """
        rows = self.export_rows(paths, root)
        write_csv(csv_file, rows, excel_bom=excel_bom)
        return len(rows)

    def import_csv(self, csv_file: str | Path, root: str | Path | None = None) -> ImportReport:
        """Apply a CSV's captions to the sidecars as human captions; the photos here show them.

        Raises:
            CsvFormatError: the file is not a CSV imgcap wrote.
            OSError: the file cannot be read.
        """
        with contextlib.ExitStack() as held:
            # The import writes sidecars itself: no worker's store may interleave with it. (A
            # worker holds one photo's lock at a time, so taking them all in turn cannot deadlock.)
            for path in sorted(self._order):
                held.enter_context(self._write_lock(path))
            holding = {os.path.abspath(p.path): (p.caption, p.removed_keywords, p.held_over) for p in self.held()}
            report = import_csv(csv_file, root if root is not None else self.folder, style=self.sidecar_style,
                                held=lambda photo: holding.get(os.path.abspath(photo)))
            refreshed = []
            for path in (Path(p) for p in report.applied):
                current = self.photo(path)
                if current is None:
                    continue
                try:  # a person's edit: it beats any result still to come, as one typed here does
                    self._update(path, caption=read_caption(path), error="", result=None, edits=current.edits + 1,
                                 **_UNHELD)  # written: no held caption's error or marks stay
                except SidecarError as exc:
                    self._update(path, error=exc.reason)
                refreshed.append(path)
        if refreshed:
            self.changed.emit(tuple(refreshed))
        return report


_RUN_OF_SPACE = re.compile(r"\s{2,}|[\t\v\f]")


def normalized_caption(text: str) -> str:
    """A caption as a commit stores it: each line's runs of white space (and tabs) made one space and
    its ends trimmed, its line breaks kept (one blank line at most between paragraphs), blank lines
    at either end dropped. A single space of another kind stays: a no-break space ("10\u00a0km",
    French "Paris\u00a0:") or an ideographic one (U+3000) is typography, not a slip."""
    if is_blank(text):  # white space and zero-width characters alone: no caption
        return ""
    lines = [_RUN_OF_SPACE.sub(" ", line).strip() for line in text.splitlines()]
    kept = [line for i, line in enumerate(lines) if line or (i and lines[i - 1])]
    return "\n".join(kept).strip("\n")


def caption_for(photo: Photo, text: str, source: str = "human", model: str | None = None) -> StoredCaption | None:
    """The caption a user's text makes for a photo (None for no text; see :func:`normalized_caption`).

    ``source="automatic"`` marks one of the model's alternatives: it keeps the model's name
    (``model``: the one that captioned the photo in this session, else the caption's) and the
    alternative's score.
    """
    text = normalized_caption(text)
    if not text:
        return None
    score = None
    if source != "automatic":
        model = None
    else:
        model = model or (photo.caption.model if photo.caption else None)
        if photo.result is not None:
            score = next((a.score for a in photo.result.alternatives if a.text == text), None)
    return StoredCaption(text, source, model, score, now())


def _read_stored(path: Path, check_photos: bool, reread_pause: float = 0.0) -> tuple[StoredCaption | None, str]:
    """``(caption, error)``: what a photo stores (sidecar, else embedded), or why it cannot be read;
    with ``check_photos``, also why the photo itself cannot be read. ``reread_pause``: a sidecar
    that cannot be read is read once more after that many seconds (it may be half-written)."""
    caption, error = None, ""
    try:
        try:
            caption = read_caption(path)
        except SidecarError:
            if not reread_pause:
                raise
            time.sleep(reread_pause)
            caption = read_caption(path)
    except SidecarError as exc:
        error = exc.reason
    except Exception as exc:  # noqa: BLE001 - one unreadable photo is a per-photo error
        log.exception("reading the caption of %s failed", path)
        error = str(exc)
    if not error and check_photos:
        error = unreadable_photo_reason(path) or ""
    return caption, error


def changed_keywords(keywords: tuple[str, ...], *, add: list[str], remove: list[str],
                     order: tuple[str, ...]) -> tuple[str, ...]:
    """``keywords`` with ``remove`` taken out and ``add`` put in; those of ``order`` in its order (a
    keyword put back goes back where it was), any other after them, as they were."""
    kept = [k for k in keywords if k not in remove]
    rank = {k: i for i, k in enumerate(order)}
    return tuple(sorted(kept + [k for k in add if k not in kept], key=lambda k: rank.get(k, len(rank))))  # stable


def _stored_now(path: Path) -> StoredCaption | None | object:
    """The photo's stored caption (sidecar, else embedded), or :data:`UNREADABLE`: a sidecar that
    cannot be read is not compared with anything (writing it reports why)."""
    try:
        return read_caption(path)
    except SidecarError:
        return UNREADABLE


def _after_clear(path: Path, before: StoredCaption | None, *, cleared: bool) -> tuple[StoredCaption | None, str]:
    """The caption a photo shows once its sidecar's is taken out (``cleared``: the sidecar changed),
    and why nothing was cleared where that is the one it showed already: a caption embedded in the
    photo (imgcap never modifies a photo), or another language's description in the sidecar."""
    after = _stored_now(path)
    if not isinstance(after, StoredCaption):
        return None, ""
    if cleared or not same_caption(after, before):
        # The sidecar's caption went; the photo's own, or another language's item, shows (with the
        # same words where that item repeated them, as Adobe's tools write it).
        return after, ""
    if after.source == "embedded":
        return before, "the caption is embedded in the photo, which imgcap never modifies; nothing was cleared"
    return before, "the caption is another language's in the sidecar, left to the program that wrote it; " \
                   "nothing was cleared"


def _sidecar_bytes(path: Path) -> bytes | None:
    """The photo's sidecar as it is (None: none, or none to read): to tell whether a write changed it."""
    try:
        sidecar = find_sidecar_or_none(path)
        return sidecar.read_bytes() if sidecar is not None else None
    except (OSError, SidecarError):
        return None


def _stored_is(path: Path, caption: StoredCaption) -> bool:
    """Whether the photo's stored caption (sidecar, else embedded) is ``caption``."""
    stored = _stored_now(path)
    return isinstance(stored, StoredCaption) and (stored.text, stored.source, stored.keywords) == (
        caption.text, caption.source, caption.keywords)


def same_caption(a: StoredCaption | None, b: StoredCaption | None) -> bool:
    """The same text from the same hand (keywords and provenance details aside)."""
    return (a.text, a.source) == (b.text, b.source) if a is not None and b is not None else a is b


def _held_over(photo: Photo | None) -> StoredCaption | None:
    """What a caption held now for ``photo`` is held over: the caption it showed, or, where one was
    held already, what that one was held over."""
    if photo is None:
        return None
    return photo.held_over if photo.held else photo.caption


def _persons_caption_since(photo: Photo) -> StoredCaption | None:
    """A person's caption in the sidecar (or the photo) that is not what the held model caption of
    ``photo`` was held over: another program wrote it since. None when there is none, the held
    caption is a person's own, or the sidecar cannot be read (writing then reports why)."""
    if photo.caption is None or photo.caption.source != "automatic":
        return None
    stored = _stored_now(photo.path)
    if not isinstance(stored, StoredCaption) or stored.source not in ("human", "embedded") or same_caption(
            stored, photo.held_over):
        return None
    return stored


def _on_stored(path: Path, photo: Photo, caption: StoredCaption, removed: Sequence[str]) -> StoredCaption | None:
    """A keyword change (``caption``: the photo's caption with the person's keywords) made on the
    caption the sidecar holds now: where another program changed the caption since the session read
    it, that caption stays, with the person's removals and additions applied to its keywords; None
    where the caption was taken out since. A sidecar that cannot be read: ``caption`` (writing it
    then reports why)."""
    stored = _stored_now(path)
    if stored is UNREADABLE:
        return caption
    if stored is None:
        return None
    # The change goes onto the keywords stored now, not the session's list of them: a keyword another
    # program took out since stays out (it came back, as the person's), one it added stays in.
    added = [k for k in caption.keywords or () if k not in photo.keywords]
    keywords = changed_keywords(tuple(stored.keywords or ()), add=added, remove=list(removed),
                                order=tuple(caption.keywords or ()))
    if same_caption(stored, photo.caption):
        return replace(caption, keywords=keywords, language=stored.language)  # where the words are now
    return replace(stored, keywords=keywords)


#: A held caption's CSV row says this where an error would be.
HELD_NOTE = "held for review: not written to the sidecar yet"


def _language(caption: StoredCaption | None) -> str | None:
    return caption.language if caption is not None else None


def _as_stored(caption: StoredCaption | None) -> StoredCaption:
    """What the sidecar stores for a caption set by the user: none (None) takes the sidecar's out, and
    so does a caption embedded in the photo (an edit undone back to it): the photo keeps it, and it
    shows again once the sidecar holds none."""
    if caption is None or caption.source not in ("automatic", "human"):
        return StoredCaption("", "human")
    return caption


def unreadable_photo_reason(photo: str | Path) -> str | None:
    """Why a photo's header cannot be read (no pixels decoded), or None when it can: in the words a
    run says it in, so a photo's message does not change when it is captioned."""
    return broken_link_reason(photo) or header_problem(photo)


def remove_stale_temp_files(photos: Iterable[Path], older_than: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Remove the temporary sidecars (``.photo.jpg.xmp.XXXX.tmp``) that a killed writer left behind
    for any of ``photos``, where older than ``older_than`` seconds (a live writer's file is younger).
    Returns what was removed."""
    by_folder: dict[Path, set[str]] = {}
    for photo in photos:
        by_folder.setdefault(photo.parent, set()).update({f"{photo.name}.xmp", f"{photo.stem}.xmp"})
    removed = []
    for folder, sidecars in by_folder.items():
        removed += remove_stale_sidecars(folder, sidecars=sidecars, older_than=older_than)
    return removed
