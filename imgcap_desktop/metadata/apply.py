"""The store rule: what storing one caption does to a photo's sidecar, as a per-photo status.

The caption session (``imgcap_desktop.session``, which the CLI and the app drive) and ``imgcap
archive`` both store through :func:`store_caption`, so ``--overwrite-human`` and the protection of
a person's caption mean the same thing everywhere. Which photos to caption is the session's
``plan``. Every problem is a per-photo status; nothing here raises for one bad photo.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from imgcap_desktop.metadata.sidecar import (
    PersonsCaptionKept,
    SidecarError,
    SidecarStyle,
    StoredCaption,
    find_sidecar_or_none,
    keywords_as_written,
    read_caption,
    write_caption,
)
from model.images import file_identity
from model.results import CaptionOutcome

log = logging.getLogger(__name__)

Status = Literal["written", "held", "skipped", "kept_human", "kept_edit", "failed", "gone"]


@dataclass(frozen=True)
class StoreOptions:
    """What to do with captions once they exist.

    Attributes:
        write_sidecars: write each caption to the photo's XMP sidecar.
        sidecar_style: ``"ext"`` (``photo.jpg.xmp``) or ``"base"`` (``photo.xmp``) for new sidecars.
        skip_captioned: do not caption photos that already have a caption (in the sidecar or
            embedded in the photo).
        overwrite_human: replace captions a person wrote or edited, and captions embedded in the
            photo (by default they are kept).
        keywords: store the model's keywords with the caption (merged into ``dc:subject``).
    """

    write_sidecars: bool = False
    sidecar_style: SidecarStyle = "ext"
    skip_captioned: bool = False
    overwrite_human: bool = False
    keywords: bool = True


@dataclass(frozen=True)
class PhotoStatus:
    """What happened to one photo.

    Attributes:
        photo: the photo.
        status: ``"written"`` (caption stored in the sidecar), ``"held"`` (captioned, not written:
            no sidecars asked for, or held for review), ``"skipped"`` (already captioned, not
            captioned again), ``"kept_human"`` (a person's caption was kept), ``"kept_edit"`` (the
            user edited the caption while it was being captioned), ``"failed"`` (see ``message``),
            ``"gone"`` (deleted or moved away before it was read: nothing stored).
        caption: the caption now stored for the photo, or the new one where nothing is stored (for a
            sidecar that could not be written, the caption it did not take).
        sidecar: the photo's sidecar, where it has one.
        message: why it failed or was skipped, fit to show the user.
    """

    photo: Path
    status: Status
    caption: StoredCaption | None = None
    sidecar: Path | None = None
    message: str = ""


#: Why a photo was not captioned: it left its folder before it could be read (status ``"gone"``).
GONE_WHILE_CAPTIONED = "deleted or moved away while it was being captioned"
#: Why a caption is not stored: the file under the photo's name is not the one it was made of.
REPLACED_WHILE_CAPTIONED = ("the photo changed while it was being captioned (another file under its name); "
                            "caption it again")


def replaced_since(photo: Path, identity: Sequence[int] | None) -> bool:
    """Whether the file at ``photo`` is no longer the one whose ``model.images.file_identity`` was
    ``identity`` (a result's ``identity``; None: nothing to compare, not replaced)."""
    return identity is not None and file_identity(photo) != tuple(identity)


def store_outcomes(
    outcomes: Iterable[CaptionOutcome],
    options: StoreOptions,
    *,
    model_name: str,
    captioned_at: str | None = None,
) -> list[PhotoStatus]:
    """Store the engine's captions as the options ask, one status per outcome, in order.

    Args:
        outcomes: what ``Captioner.caption`` returned; each ``source`` is the photo's path.
        options: whether to write sidecars, and whether a person's caption may be replaced.
        model_name: recorded as the captions' provenance.
        captioned_at: ISO 8601 time recorded with the captions; now (UTC) by default.
    """
    captioned_at = captioned_at or datetime.now(timezone.utc).isoformat(timespec="seconds")
    statuses = []
    for outcome in outcomes:
        photo = Path(outcome.source)
        if not outcome.ok:
            statuses.append(PhotoStatus(photo, "failed", message=f"{photo.name}: {outcome.reason}"))
            continue
        if replaced_since(photo, outcome.identity):
            statuses.append(PhotoStatus(photo, "failed", message=f"{photo.name}: {REPLACED_WHILE_CAPTIONED}"))
            continue
        # A bundle whose encoder has no classifier says nothing of keywords: they are left alone.
        keywords = tuple(outcome.keywords) if options.keywords and outcome.says_keywords else None
        caption = StoredCaption(outcome.text, "automatic", model_name, outcome.score, captioned_at, keywords)
        statuses.append(_store(photo, caption, options))
    return statuses


def store_caption(photo: str | Path, caption: StoredCaption, options: StoreOptions, *,
                  rejected_keywords: Sequence[str] = ()) -> PhotoStatus:
    """Store one caption as the options ask: the rule :func:`store_outcomes` applies to each photo
    (``imgcap archive export --apply-sidecars`` stores captions computed earlier with it).
    ``rejected_keywords``: keywords a person removed before (see :func:`write_caption`)."""
    return _store(Path(photo), caption, options, rejected_keywords)


def _store(photo: Path, caption: StoredCaption, options: StoreOptions,
           rejected_keywords: Sequence[str] = ()) -> PhotoStatus:
    # Held for review too: a person's caption that came since the run was planned is kept, not held
    # over (Accept would take the held caption for the one reviewed, and write it over theirs).
    try:
        stored = read_caption(photo)
    except SidecarError as exc:  # captioned all the same: the caption goes with the error
        if options.write_sidecars:
            return PhotoStatus(photo, "failed", caption if caption.text else None, message=str(exc))
        stored = None  # held: writing it says what is wrong with the sidecar
    # A caption embedded in the photo is a person's too, unless our own provenance came with it.
    if stored is not None and stored.source in ("human", "embedded") and not options.overwrite_human:
        return _kept(photo, stored)
    if not caption.text:
        # Never store it: an empty caption would erase the description already there.
        return PhotoStatus(photo, "failed", message=f"{photo.name}: the model gave an empty caption")
    if not options.write_sidecars:
        if caption.keywords is not None:  # shown as they will be written (a person's removal stays out)
            kept = [k for k in keywords_as_written(photo, caption.keywords) if k not in rejected_keywords]
            caption = replace(caption, keywords=tuple(kept))
        return PhotoStatus(photo, "held", caption, find_sidecar_or_none(photo))
    try:
        # A person's caption written since the look above is kept all the same: write_caption
        # decides on the bytes it merges into.
        sidecar = write_caption(photo, caption, style=options.sidecar_style, rejected_keywords=rejected_keywords,
                                keep_persons=not options.overwrite_human)
        # What is stored now: the keywords that are ours after the merge (not another tool's, not
        # one a person removed), so the CSV shows them and imports back as unchanged.
        caption = read_caption(photo, embedded=False) or caption
    except PersonsCaptionKept as kept:
        return _kept(photo, kept.stored)
    except SidecarError as exc:  # the caption exists: only the sidecar did not take it
        return PhotoStatus(photo, "failed", caption, message=str(exc))
    return PhotoStatus(photo, "written", caption, sidecar)


def _kept(photo: Path, stored: StoredCaption) -> PhotoStatus:
    """A person's caption kept (the CLI says how to replace it; the app's settings do)."""
    where = "embedded in the photo " if stored.source == "embedded" else ""
    return PhotoStatus(photo, "kept_human", stored, find_sidecar_or_none(photo), f"a person's caption {where}is kept")
