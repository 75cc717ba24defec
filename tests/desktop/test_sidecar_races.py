"""Another program writing a sidecar while imgcap merges its caption into it: what that program
wrote is never lost, a person's caption it wrote is kept, and a replaced sidecar stays its owner's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imgcap_desktop.metadata import sidecar as sidecar_module
from imgcap_desktop.metadata.apply import StoreOptions, store_caption
from imgcap_desktop.metadata.sidecar import (
    WRITE_ATTEMPTS,
    SidecarError,
    StoredCaption,
    read_caption,
    sidecar_path,
    write_caption,
)
from tests.desktop.conftest_metadata import make_photo

AUTOMATIC = StoredCaption("a dog on a rug", "automatic", "m", -1.0, None, ("dog",))

# What darktable or digiKam would write: a rating, a keyword and, for the second, a caption typed there.
OTHER_PROGRAMS = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmp:Rating="{rating}">
   <dc:subject><rdf:Bag><rdf:li>wedding</rdf:li></rdf:Bag></dc:subject>{description}
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>
"""
TYPED = ('\n   <dc:description><rdf:Alt><rdf:li xml:lang="x-default">typed in digiKam</rdf:li></rdf:Alt>'
         "</dc:description>")


def _other_program(photo: Path, rating: int = 5, description: str = "") -> None:
    sidecar_path(photo).write_text(OTHER_PROGRAMS.format(rating=rating, description=description), encoding="utf-8")


def _meanwhile(monkeypatch, action, times: int = 1) -> list[int]:
    """Run ``action`` while imgcap merges (after it read the sidecar, before it replaces it), the
    first ``times`` merges; returns the list of merges seen."""
    merges = []
    apply_changes = sidecar_module.xmp_edit.apply_changes

    def merge(packet, changes):
        merges.append(1)
        if len(merges) <= times:
            action(len(merges))
        return apply_changes(packet, changes)

    monkeypatch.setattr(sidecar_module.xmp_edit, "apply_changes", merge)
    return merges


def test_what_another_program_writes_while_the_caption_is_merged_is_kept(tmp_path, monkeypatch):
    photo = make_photo(tmp_path / "a.jpg")
    _other_program(photo, rating=3)
    merges = _meanwhile(monkeypatch, lambda _: _other_program(photo, rating=5))

    write_caption(photo, AUTOMATIC)

    text = sidecar_path(photo).read_text(encoding="utf-8")
    assert 'xmp:Rating="5"' in text and "wedding" in text
    assert read_caption(photo).text == "a dog on a rug" and len(merges) == 2


def test_a_sidecar_another_program_creates_meanwhile_is_merged_into_not_replaced(tmp_path, monkeypatch):
    photo = make_photo(tmp_path / "a.jpg")
    _meanwhile(monkeypatch, lambda _: _other_program(photo))

    write_caption(photo, AUTOMATIC)

    text = sidecar_path(photo).read_text(encoding="utf-8")
    assert 'xmp:Rating="5"' in text and "<rdf:li>wedding</rdf:li>" in text
    assert read_caption(photo).text == "a dog on a rug"


def test_a_persons_caption_written_meanwhile_is_kept(tmp_path, monkeypatch):
    photo = make_photo(tmp_path / "a.jpg")
    _meanwhile(monkeypatch, lambda _: _other_program(photo, description=TYPED))

    status = store_caption(photo, AUTOMATIC, StoreOptions(write_sidecars=True))

    assert status.status == "kept_human" and status.caption.text == "typed in digiKam"
    assert read_caption(photo).text == "typed in digiKam"
    assert "a dog on a rug" not in sidecar_path(photo).read_text(encoding="utf-8")


def test_a_sidecar_that_keeps_changing_is_left_to_the_other_program(tmp_path, monkeypatch):
    photo = make_photo(tmp_path / "a.jpg")
    _other_program(photo, rating=0)
    _meanwhile(monkeypatch, lambda merge: _other_program(photo, rating=merge), times=WRITE_ATTEMPTS)

    with pytest.raises(SidecarError, match="kept changing"):
        write_caption(photo, AUTOMATIC)
    assert sidecar_path(photo).read_text(encoding="utf-8") == OTHER_PROGRAMS.format(rating=WRITE_ATTEMPTS,
                                                                                     description="")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_sidecar_replaced_by_root_stays_its_owners_with_its_attributes(tmp_path):
    photo = make_photo(tmp_path / "a.jpg")
    _other_program(photo)
    sidecar = sidecar_path(photo)
    os.chown(sidecar, 1000, 1000)
    os.chmod(sidecar, 0o640)
    try:
        os.setxattr(sidecar, "user.xdg.tags", b"family")
    except OSError:
        pytest.skip("this file system keeps no user attributes")

    write_caption(photo, AUTOMATIC)

    status = sidecar.stat()
    assert (status.st_uid, status.st_gid, status.st_mode & 0o777) == (1000, 1000, 0o640)
    assert os.getxattr(sidecar, "user.xdg.tags") == b"family"
    assert read_caption(photo).text == "a dog on a rug"


def _finish_writing_instead_of_waiting(monkeypatch, module, photo: Path) -> list[float]:
    """The other program finishes its in-place write while imgcap waits to read the sidecar again."""
    waits = []

    def sleep(seconds):
        waits.append(seconds)
        _other_program(photo, rating=4)

    monkeypatch.setattr(module.time, "sleep", sleep)
    return waits


def test_a_sidecar_caught_half_written_in_place_is_read_again(tmp_path, monkeypatch):
    photo = make_photo(tmp_path / "a.jpg")
    sidecar_path(photo).write_text(OTHER_PROGRAMS.format(rating=4, description="")[:150], encoding="utf-8")
    waits = _finish_writing_instead_of_waiting(monkeypatch, sidecar_module, photo)

    write_caption(photo, AUTOMATIC)

    assert len(waits) == 1 and 'xmp:Rating="4"' in sidecar_path(photo).read_text(encoding="utf-8")
    assert read_caption(photo).text == "a dog on a rug"


def test_a_sidecar_that_stays_broken_is_reported_after_one_look_again(tmp_path, monkeypatch):
    photo = make_photo(tmp_path / "a.jpg")
    sidecar_path(photo).write_text("<x:xmpmeta>not closed", encoding="utf-8")
    monkeypatch.setattr(sidecar_module, "CHANGING_PAUSE_S", 0.0)
    with pytest.raises(SidecarError, match="left as it is"):
        write_caption(photo, AUTOMATIC)
    assert sidecar_path(photo).read_text(encoding="utf-8") == "<x:xmpmeta>not closed"


def test_refreshing_reads_a_half_written_sidecar_again_instead_of_showing_an_error(tmp_path, monkeypatch):
    from imgcap_desktop import session as session_module
    from imgcap_desktop.session import CaptionSession, CaptionState

    photo = make_photo(tmp_path / "a.jpg")
    session = CaptionSession()
    session.open([photo], tmp_path)
    session.read_stored()
    sidecar_path(photo).write_text(OTHER_PROGRAMS.format(rating=4, description=TYPED)[:150], encoding="utf-8")

    def sleep(_seconds):
        _other_program(photo, rating=4, description=TYPED)

    monkeypatch.setattr(session_module.time, "sleep", sleep)
    session.refresh_stored([photo])
    assert session.photo(photo).state is CaptionState.HUMAN and session.photo(photo).text == "typed in digiKam"


def test_accepting_a_held_caption_keeps_a_persons_caption_written_during_the_write(tmp_path, monkeypatch):
    from imgcap_desktop.session import CaptionSession

    photo = make_photo(tmp_path / "a.jpg")
    session = CaptionSession(auto_write=False)
    session.open([photo], tmp_path)
    session.read_stored()
    plan = session.plan([photo], "replace_automatic")
    session.apply_outcomes(plan, [_result(photo, "a dog on a rug")], model_name="m")
    assert session.photo(photo).held
    _meanwhile(monkeypatch, lambda _: _other_program(photo, description=TYPED))  # after the check, in the write

    written, (status,) = session.accept_held()

    assert written == 0 and status.status == "kept_human" and status.caption.text == "typed in digiKam"
    assert read_caption(photo).text == "typed in digiKam" and session.photo(photo).text == "typed in digiKam"
    assert not session.photo(photo).held


def _result(photo: Path, text: str):
    import numpy as np

    from model.results import CaptionResult

    words = tuple(text.split())
    return CaptionResult(str(photo), words, tuple(range(len(words))), -0.5,
                         np.zeros((len(words), 2, 2), np.float32), ())


def test_a_held_typed_caption_meets_a_caption_written_during_its_write(tmp_path, monkeypatch):
    """Decided on the bytes merged into: a caption another program writes while the typing is
    written (after the look before it) is kept, and the typing stays held."""
    from imgcap_desktop.session import CaptionSession

    photo = make_photo(tmp_path / "a.jpg")
    session = CaptionSession(auto_write=False)
    session.open([photo], tmp_path)
    session.read_stored()
    session.edit(photo, "my typing, held")
    _meanwhile(monkeypatch, lambda _: _other_program(photo, description=TYPED))

    written, (status,) = session.accept_held()

    assert written == 0 and status.status == "failed" and "yours is still held" in status.message
    assert read_caption(photo).text == "typed in digiKam"
    assert session.photo(photo).held and session.photo(photo).text == "my typing, held"
    written, _ = session.accept_held()  # seen: Accept again writes it
    assert written == 1 and read_caption(photo).text == "my typing, held"
