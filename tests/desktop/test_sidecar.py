"""XMP sidecars: round trips, provenance, naming, other tools' metadata, hostile files, crashes."""

from __future__ import annotations

import errno
import os
from dataclasses import replace
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from imgcap_desktop.metadata import sidecar as sidecar_module
from imgcap_desktop.metadata.sidecar import (
    SidecarCollisionError,
    SidecarError,
    StoredCaption,
    base_style_siblings,
    caption_from_packet,
    find_sidecar,
    read_caption,
    sidecar_path,
    write_caption,
)
from tests.desktop.conftest_metadata import (
    EXIFTOOL,
    Snapshot,
    exiftool,
    exiftool_tags,
    make_photo,
    needs_exiftool,
    photo,  # noqa: F401 - fixture
    caption_text,
)

REPO = Path(__file__).resolve().parents[2]
AUTO = StoredCaption("a dog runs on the grass", "automatic", "sat-flickr8k", -0.8125, "2026-11-27T01:00:00+00:00")



def test_write_creates_ext_sidecar_with_provenance(photo):
    path = write_caption(photo, AUTO)

    assert path == photo.with_name("photo.jpg.xmp") == sidecar_path(photo)
    assert read_caption(photo) == AUTO
    text = path.read_text(encoding="utf-8")
    assert "http://ns.imgcap.app/1.0/" in text
    assert 'xmp:CreatorTool="imgcap' in text


def test_photos_are_never_modified(tmp_path):
    photos = [make_photo(tmp_path / f"p.{ext}") for ext in ("jpg", "png", "tif", "webp")]
    snapshot = Snapshot(photos)

    for p in photos:
        write_caption(p, AUTO)
        read_caption(p)
        write_caption(p, StoredCaption("edited", "human"))
    snapshot.assert_unchanged()


def test_base_style_is_written_and_both_styles_are_read(tmp_path):
    a, b = make_photo(tmp_path / "a.jpg"), make_photo(tmp_path / "b.jpg")

    assert write_caption(a, AUTO, style="base") == tmp_path / "a.xmp"
    write_caption(b, AUTO, style="ext")

    assert find_sidecar(a) == tmp_path / "a.xmp"
    assert read_caption(a).text == AUTO.text
    assert read_caption(b).text == AUTO.text


def test_existing_sidecar_is_updated_whatever_the_style(tmp_path):
    a = make_photo(tmp_path / "a.jpg")
    write_caption(a, AUTO, style="base")

    assert write_caption(a, StoredCaption("new", "human"), style="ext") == tmp_path / "a.xmp"
    assert not (tmp_path / "a.jpg.xmp").exists()
    assert read_caption(a).text == "new"


def test_base_style_collision_is_refused(tmp_path):
    jpg, png = make_photo(tmp_path / "a.jpg"), make_photo(tmp_path / "a.png")

    with pytest.raises(SidecarCollisionError, match="a.xmp"):
        write_caption(jpg, AUTO, style="base")
    assert not (tmp_path / "a.xmp").exists()
    write_caption(png, AUTO, style="ext")  # ext style has no collision
    assert read_caption(png).text == AUTO.text


@pytest.mark.skipif(not hasattr(os, "link"), reason="no hard links here")
def test_one_file_under_two_names_is_not_a_collision(tmp_path):
    jpg = make_photo(tmp_path / "a.jpg")
    os.link(jpg, tmp_path / "a.JPG")  # what a case-insensitive disk shows
    assert write_caption(jpg, AUTO, style="base") == tmp_path / "a.xmp"


def test_shared_base_sidecar_is_not_attributed_to_either_photo(tmp_path):
    jpg, _ = make_photo(tmp_path / "a.jpg"), make_photo(tmp_path / "a.png")
    (tmp_path / "a.xmp").write_bytes(_written_elsewhere("whose caption?"))

    with pytest.raises(SidecarCollisionError):
        read_caption(jpg)


@pytest.mark.parametrize("raw_name", ["IMG_2.CR2", "IMG_2.cr2", "IMG_2.Cr2"])  # .Cr2: not recognised before
def test_a_raws_sidecar_beside_its_jpeg_is_the_raws_not_the_jpegs(tmp_path, raw_name):
    """RAW+JPEG: Lightroom keeps IMG_2.CR2's caption and develop settings in IMG_2.xmp. imgcap took it
    for the JPEG's sidecar: it read the RAW's caption as the JPEG's and wrote the JPEG's into it."""
    jpg = make_photo(tmp_path / "IMG_2.JPG")
    (tmp_path / raw_name).write_bytes(b"II*\x00 not really a raw")
    raws = tmp_path / "IMG_2.xmp"
    raws.write_bytes(_written_elsewhere("Grandma's 90th birthday, Lisbon"))
    before = raws.read_bytes()
    assert find_sidecar(jpg) is None and read_caption(jpg, embedded=False) is None
    with pytest.raises(SidecarCollisionError, match=raw_name):  # the base style would write into it
        write_caption(jpg, AUTO, style="base")
    assert write_caption(jpg, AUTO) == tmp_path / "IMG_2.JPG.xmp"
    assert read_caption(jpg).text == AUTO.text and raws.read_bytes() == before


def test_a_sidecar_that_names_another_file_type_as_its_own_is_left_to_it(tmp_path):
    """photoshop:SidecarForExtension says whose sidecar it is, also once the RAW has been moved away."""
    jpg = make_photo(tmp_path / "IMG_3.jpg")
    raws = tmp_path / "IMG_3.xmp"
    raws.write_bytes(_written_elsewhere("the RAW's caption").replace(
        b'xmp:Rating="3"', b'xmp:Rating="3" xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" '
                           b'photoshop:SidecarForExtension="NEF"'))
    before = raws.read_bytes()
    assert find_sidecar(jpg) is None
    with pytest.raises(SidecarCollisionError, match="NEF"):
        write_caption(jpg, AUTO, style="base")
    write_caption(jpg, AUTO)
    assert raws.read_bytes() == before and read_caption(jpg).text == AUTO.text
    own = tmp_path / "IMG_4.xmp"  # one that names the photo's own type is the photo's
    own.write_bytes(raws.read_bytes().replace(b'"NEF"', b'"JPG"'))
    assert find_sidecar(make_photo(tmp_path / "IMG_4.jpg")) == own


def test_clearing_a_caption_stored_only_in_another_language_says_it_was_not_cleared(photo):
    """A Lightroom-style sidecar with an en-US item and no x-default one: clearing the caption shown
    (the en-US one) wrote nothing and said nothing, and the caption came back when the folder opened."""
    path = sidecar_path(photo)
    path.write_bytes(_written_elsewhere("x").replace(b'xml:lang="x-default">x', b'xml:lang="en-US">Wrong caption'))
    before = path.read_bytes()
    assert read_caption(photo).text == "Wrong caption"
    with pytest.raises(SidecarError, match="en-us description"):
        write_caption(photo, StoredCaption("", "human"))
    assert path.read_bytes() == before
    write_caption(photo, StoredCaption("Right caption", "human"))  # a new caption goes in as x-default
    write_caption(photo, StoredCaption("", "human"))  # and clearing that one leaves the en-US item
    assert read_caption(photo).text == "Wrong caption"


def test_other_languages_and_properties_survive(photo):
    path = sidecar_path(photo)
    path.write_bytes(_written_elsewhere("old", extra='<rdf:li xml:lang="de">Ein Hund</rdf:li>'))

    write_caption(photo, AUTO)

    languages = sidecar_module._languages(sidecar_module._rdf(path.read_bytes(), path))
    assert languages == {"x-default": AUTO.text, "de": "Ein Hund"}
    assert "<rdf:li>beach</rdf:li>" in path.read_text(encoding="utf-8")
    assert 'xmp:Rating="3"' in path.read_text(encoding="utf-8")


def test_empty_caption_removes_the_field_instead_of_writing_an_empty_list(photo):
    write_caption(photo, replace(AUTO, keywords=("cat",)))
    write_caption(photo, StoredCaption("", "human"))

    text = sidecar_path(photo).read_text(encoding="utf-8")
    assert "dc:description" not in text and "cat" in text  # imgcap's keyword stays
    assert read_caption(photo) is None and "imgcap:source" not in text  # a caption's provenance goes with it


def test_caption_edited_in_another_tool_reads_as_human(photo):
    path = write_caption(photo, AUTO)
    path.write_text(path.read_text(encoding="utf-8").replace(AUTO.text, "my dog Rex"), encoding="utf-8")

    assert read_caption(photo) == StoredCaption("my dog Rex", "human")


def test_sidecar_from_another_tool_reads_as_human(photo):
    sidecar_path(photo).write_bytes(_written_elsewhere("typed in digiKam"))
    assert read_caption(photo) == StoredCaption("typed in digiKam", "human")


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        ((b'xmp:Rating="3"', b""), "xmp:Rating"),  # dropped
        ((b'xmp:Rating="3"', b'xmp:Rating="3.0"'), "xmp:Rating"),  # same meaning, other text
        ((b"<rdf:li>beach</rdf:li>", b""), "dc:subject"),  # another tool's keyword
        ((b"<rdf:li>beach</rdf:li>", b"<rdf:li>beach</rdf:li><rdf:li>extra</rdf:li>"), "dc:subject"),
    ],
)
def test_a_write_that_would_change_another_tools_value_is_refused(photo, monkeypatch, damage, named):
    path = sidecar_path(photo)
    path.write_bytes(_written_elsewhere("old"))
    real_apply = sidecar_module.xmp_edit.apply_changes

    def lossy_apply(packet, changes):
        return real_apply(packet, changes).replace(*damage)

    monkeypatch.setattr(sidecar_module.xmp_edit, "apply_changes", lossy_apply)
    with pytest.raises(SidecarError, match=named):
        write_caption(photo, AUTO)
    assert path.read_bytes() == _written_elsewhere("old")


def test_control_characters_are_refused_not_mangled(photo):
    with pytest.raises(SidecarError, match="U\\+0001"):
        write_caption(photo, StoredCaption("bad\x01caption", "human"))
    assert not sidecar_path(photo).exists()


def test_embedded_source_is_never_written(photo):
    with pytest.raises(ValueError):
        write_caption(photo, StoredCaption("from the photo", "embedded"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=caption_text)
def test_any_caption_round_trips_exactly(photo, text):
    caption = StoredCaption(text, "human", "model \"ünï\" <1>", -1.5e-7, "2026-11-27T01:00:00+00:00")
    write_caption(photo, caption)
    assert read_caption(photo) == caption


# --- embedded descriptions ----------------------------------------------------------------------


@needs_exiftool
@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("-XMP-dc:Description=xmp déscription", "xmp déscription"),
        ("-IPTC:Caption-Abstract=iptc déscription", "iptc déscription"),
        ("-EXIF:ImageDescription=exif déscription", "exif déscription"),
    ],
)
def test_embedded_description_is_read_and_the_photo_untouched(tmp_path, tag, expected):
    p = make_photo(tmp_path / "e.jpg")
    exiftool("-q", "-overwrite_original", "-IPTC:CodedCharacterSet=UTF8", tag, p)
    snapshot = Snapshot([p])

    assert read_caption(p) == StoredCaption(expected, "embedded")
    assert read_caption(p, embedded=False) is None
    snapshot.assert_unchanged()


@needs_exiftool
@pytest.mark.parametrize("tag", ["-IPTC:Caption-Abstract", "-EXIF:ImageDescription"])
def test_embedded_legacy_text_is_read_as_exiftool_reads_it(tmp_path, tag):
    # Without a charset record exiftool writes (and reads) IPTC text as cp1252, as Photoshop does:
    # its dashes, curly quotes and euro signs were read as Latin-1 control characters.
    p = make_photo(tmp_path / "e.jpg")
    exiftool("-q", "-overwrite_original", "-charset", "exif=cp1252", f"{tag}=Don’t – 5 € café", p)
    assert read_caption(p) == StoredCaption("Don’t – 5 € café", "embedded")


@pytest.mark.parametrize("description", ['{"shape": [12, 16, 3]}', "ImageJ=1.53t\nimages=1\n",
                                         '<?xml version="1.0"?><OME/>'])
def test_a_tiffs_software_description_is_no_caption(tmp_path, description):
    # tifffile (scikit-image's and imageio's TIFF writer) stores the array's shape as JSON: it was
    # taken for a person's caption, shown as one, and runs left the photo out.
    p = make_photo(tmp_path / "t.tif", tiffinfo={270: description})
    assert read_caption(p) is None
    q = make_photo(tmp_path / "u.tif", tiffinfo={270: "{a person's note} in braces"})
    assert read_caption(q) == StoredCaption("{a person's note} in braces", "embedded")


def test_legacy_text_keeps_bytes_cp1252_leaves_undefined():
    from imgcap_desktop.metadata.embedded import _decode_legacy

    assert _decode_legacy("café – ok".encode()) == "café – ok"  # UTF-8 first
    assert _decode_legacy(b"a\x81b\x80") == "a\x81b€"


@needs_exiftool
def test_sidecar_caption_wins_over_embedded(tmp_path):
    p = make_photo(tmp_path / "e.jpg")
    exiftool("-q", "-overwrite_original", "-XMP-dc:Description=inside", p)
    write_caption(p, AUTO)
    assert read_caption(p) == AUTO


def test_embedded_xmp_with_entities_is_ignored(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET", encoding="utf-8")
    packet = _entity_packet(secret).encode()
    p = make_photo(tmp_path / "e.png", pnginfo=_png_xmp(packet))

    assert read_caption(p) is None


def _gif_with_xmp(path: Path, description: str) -> Path:
    """A GIF with its XMP after the image data, as exiftool and Photoshop write it: an application
    extension "XMP DataXMP", the packet, and the XMP specification's 258-byte "magic trailer"."""
    from PIL import Image

    Image.new("RGB", (16, 12), (200, 30, 30)).save(path)
    packet = ('<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
              '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
              'xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:description><rdf:Alt><rdf:li xml:lang="x-default">'
              f'{description}</rdf:li></rdf:Alt></dc:description></rdf:Description></rdf:RDF></x:xmpmeta>'
              '<?xpacket end="w"?>').encode()
    data = path.read_bytes()
    assert data.endswith(b";")
    trailer = b"\x01" + bytes(range(255, -1, -1)) + b"\x00"
    path.write_bytes(data[:-1] + b"!\xff\x0bXMP DataXMP" + packet + trailer + b";")
    return path


def test_a_description_embedded_in_a_gif_is_a_persons_caption(tmp_path):
    """A GIF's XMP (written after the image data, where Pillow does not look) was never read: the
    person's caption was not protected, and a run wrote the model's over it in a sidecar."""
    gif = _gif_with_xmp(tmp_path / "cat.gif", "Our cat Tom on the sofa, 2019")
    before = gif.read_bytes()
    assert read_caption(gif) == StoredCaption("Our cat Tom on the sofa, 2019", "embedded")
    if EXIFTOOL:
        assert exiftool_tags(gif)["XMP-dc:Description"] == "Our cat Tom on the sofa, 2019"
    assert gif.read_bytes() == before


def _png_xmp(packet: bytes):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", packet.decode())
    return info


# --- hostile and broken sidecars ----------------------------------------------------------------


def _written_elsewhere(caption: str, extra: str = "") -> bytes:
    return textwrap.dedent(
        f"""\
        <?xml version="1.0" encoding="UTF-8"?>
        <x:xmpmeta xmlns:x="adobe:ns:meta/">
         <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
          <rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"
            xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="3">
           <dc:description><rdf:Alt><rdf:li xml:lang="x-default">{caption}</rdf:li>{extra}</rdf:Alt></dc:description>
           <dc:subject><rdf:Bag><rdf:li>beach</rdf:li></rdf:Bag></dc:subject>
          </rdf:Description>
         </rdf:RDF>
        </x:xmpmeta>
        """
    ).encode("utf-8")


def _entity_packet(secret: Path) -> str:
    return (
        '<?xml version="1.0"?>\n'
        f'<!DOCTYPE x:xmpmeta [<!ENTITY leak SYSTEM "file://{secret}"><!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:description><rdf:Alt>'
        '<rdf:li xml:lang="x-default">&leak;&b;</rdf:li></rdf:Alt></dc:description></rdf:Description>'
        "</rdf:RDF></x:xmpmeta>"
    )


HOSTILE = {
    "empty": lambda tmp: b"",
    "blank": lambda tmp: b"  \n\t\n",
    "binary": lambda tmp: bytes(range(256)) * 8,
    "latin1": lambda tmp: "<x:xmpmeta xmlns:x='adobe:ns:meta/'>caf\xe9</x:xmpmeta>".encode("latin-1"),
    "truncated": lambda tmp: _written_elsewhere("cut")[:150],
    "not xmp": lambda tmp: b"<html><body>hello</body></html>",
    "entities": lambda tmp: _entity_packet(tmp / "secret.txt").encode(),
    "doctype only": lambda tmp: b'<!doctype html>\n' + _written_elsewhere("x"),
    "huge": lambda tmp: _written_elsewhere("big").replace(b"beach", b"b" * (sidecar_module.MAX_SIDECAR_BYTES + 10)),
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_sidecar_is_reported_and_left_untouched(tmp_path, kind):
    (tmp_path / "secret.txt").write_text("TOP SECRET", encoding="utf-8")
    p = make_photo(tmp_path / "h.jpg")
    path = sidecar_path(p)
    path.write_bytes(HOSTILE[kind](tmp_path))
    snapshot = Snapshot([p, path])

    with pytest.raises(SidecarError) as read_error:
        read_caption(p)
    with pytest.raises(SidecarError) as write_error:
        write_caption(p, AUTO)

    snapshot.assert_unchanged()
    assert "h.jpg.xmp" in str(write_error.value)
    assert "SECRET" not in str(read_error.value) + str(write_error.value)
    if kind == "huge":  # said as the other sidecars it leaves alone are
        assert str(write_error.value).endswith("; left as it is")
    assert [f.name for f in tmp_path.iterdir() if f.name.startswith(".")] == []


def test_full_disk_is_a_per_photo_error_and_the_old_sidecar_survives(photo, monkeypatch):
    path = write_caption(photo, AUTO)
    before = path.read_bytes()

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(sidecar_module.os, "fsync", no_space)
    with pytest.raises(SidecarError, match="disk is full"):
        write_caption(photo, StoredCaption("never stored", "human"))
    assert path.read_bytes() == before
    assert sorted(f.name for f in photo.parent.iterdir()) == ["photo.jpg", "photo.jpg.xmp"]


def test_read_only_folder_is_a_per_photo_error(photo, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(sidecar_module.tempfile, "mkstemp", read_only)
    with pytest.raises(SidecarError, match="read-only"):
        write_caption(photo, AUTO)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_really_read_only_folder_is_a_per_photo_error(photo):
    photo.parent.chmod(0o555)
    try:
        with pytest.raises(SidecarError, match="read-only"):
            write_caption(photo, AUTO)
    finally:
        photo.parent.chmod(0o755)


def test_a_sidecar_made_read_only_is_left_as_it_is(photo):
    """A rename needs only the folder's permission: a sidecar someone locked (chmod 444) used to be
    replaced all the same, even for a user without root."""
    path = write_caption(photo, AUTO)
    path.chmod(0o444)
    before = path.read_bytes()
    try:
        with pytest.raises(SidecarError, match="read-only; left as it is"):
            write_caption(photo, StoredCaption("a new caption", "automatic"))
        assert path.read_bytes() == before and read_caption(photo) == AUTO
    finally:
        path.chmod(0o644)


def test_writer_killed_mid_batch_leaves_every_sidecar_old_or_new(tmp_path):
    photos = [make_photo(tmp_path / f"k{i}.jpg", size=(4, 4)) for i in range(12)]
    # Large sidecars make each write slow enough for the kill to land inside one.
    keywords = "".join(f"<rdf:li>keyword number {i}</rdf:li>" for i in range(4000))
    for p in photos:
        sidecar_path(p).write_bytes(_written_elsewhere("old").replace(b"<rdf:li>beach</rdf:li>", keywords.encode()))
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from imgcap_desktop.metadata.sidecar import StoredCaption, write_caption
        photos = [Path(p) for p in sys.argv[1:]]
        round = 0
        while True:
            for p in photos:
                write_caption(p, StoredCaption(f"new {round}", "automatic", "m", -1.0))
                print(round, flush=True)
            round += 1
        """
    )
    writer = subprocess.Popen(
        [sys.executable, "-c", script, *map(str, photos)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        for _ in range(len(photos) + 3):  # a full round and a few writes into the next
            assert writer.stdout.readline(), "the writer died on its own"
        time.sleep(0.013)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
        writer.stdout.close()

    for p in photos:
        caption = read_caption(p)  # parses: never truncated
        assert caption.text == "old" or caption.text.startswith("new "), caption
        assert sidecar_path(p).read_bytes().count(b"keyword number") == 4000


def test_core_imports_neither_qt_nor_tensorflow():
    script = textwrap.dedent(
        """
        import sys
        for name in ("PySide6", "tensorflow", "keras"):
            sys.modules[name] = None
        import imgcap_desktop.metadata.sidecar, imgcap_desktop.metadata.csvio
        import imgcap_desktop.metadata.folder, imgcap_desktop.metadata.embedded
        import imgcap_desktop.metadata.commands, imgcap_desktop.session
        import imgcap_desktop.metadata.xmp_edit, imgcap_desktop.metadata.printable
        """
    )
    subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True, timeout=60)


# --- interoperability with exiftool -------------------------------------------------------------


@needs_exiftool
def test_exiftool_reads_our_caption(photo):
    caption = StoredCaption('Ein "Hund" läuft, ça va — 犬', "automatic", "m", -1.0)
    path = write_caption(photo, caption)

    assert exiftool("-s3", "-XMP-dc:Description", path).rstrip("\n") == caption.text
    output = exiftool("-s", "-XMP-imgcap:all", "-XMP-xmp:CreatorTool", path)
    assert "imgcap" in output


@needs_exiftool
def test_exiftool_sidecar_keeps_all_its_tags(tmp_path):
    p = make_photo(tmp_path / "x.jpg")
    path = sidecar_path(p)
    exiftool(
        "-q", "-o", path, "-XMP-xmp:Rating=4", "-XMP-dc:Subject=cat", "-XMP-dc:Subject=sofa",
        "-XMP-dc:Description=A cat", "-XMP-dc:Description-de=Eine Katze", "-XMP-dc:Description-fr=Un chat",
        "-XMP-exif:GPSLatitude=48.8584", "-XMP-exif:GPSLongitude=2.2945", "-XMP-exif:GPSAltitude=35",
        "-XMP-lr:HierarchicalSubject=Animals|Cat", p,
    )  # fmt: skip
    before = exiftool_tags(path)

    write_caption(p, AUTO)

    after = exiftool_tags(path)
    assert after.pop("XMP-dc:Description") == AUTO.text
    assert before.pop("XMP-dc:Description") == "A cat"
    assert "XMP-xmp:CreatorTool" not in after  # another tool's sidecar: its creator is not us
    imgcap_tags = {k: after.pop(k) for k in list(after) if k.startswith("XMP-imgcap:")}
    assert imgcap_tags["XMP-imgcap:Source"] == "automatic"
    for volatile in ("SourceFile", "System:FileSize", "System:FileModifyDate", "System:FileAccessDate",
                     "System:FileInodeChangeDate"):  # fmt: skip
        before.pop(volatile, None), after.pop(volatile, None)
    assert after == before
    assert before["XMP-dc:Description-de"] == "Eine Katze" and before["XMP-xmp:Rating"] == 4


DIGIKAM_SIDECAR = """\
<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:digiKam="http://www.digikam.org/ns/1.0/"
    xmlns:MicrosoftPhoto="http://ns.microsoft.com/photo/1.0/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:mwg-rs="http://www.metadataworkinggroup.com/schemas/regions/"
    xmlns:stDim="http://ns.adobe.com/xap/1.0/sType/Dimensions#"
    xmlns:stArea="http://ns.adobe.com/xmp/sType/Area#"
    xmlns:MP="http://ns.microsoft.com/photo/1.2/"
    xmlns:MPRI="http://ns.microsoft.com/photo/1.2/t/RegionInfo#"
    xmlns:MPReg="http://ns.microsoft.com/photo/1.2/t/Region#"
   xmp:Rating="5"
   MicrosoftPhoto:Rating="99">
   <digiKam:TagsList>
    <rdf:Seq>
     <rdf:li>People/Alice</rdf:li>
     <rdf:li>Places/Beach</rdf:li>
    </rdf:Seq>
   </digiKam:TagsList>
   <MicrosoftPhoto:LastKeywordXMP>
    <rdf:Bag>
     <rdf:li>People/Alice</rdf:li>
     <rdf:li>Places/Beach</rdf:li>
    </rdf:Bag>
   </MicrosoftPhoto:LastKeywordXMP>
   <lr:hierarchicalSubject>
    <rdf:Bag>
     <rdf:li>People|Alice</rdf:li>
     <rdf:li>Places|Beach</rdf:li>
    </rdf:Bag>
   </lr:hierarchicalSubject>
   <dc:subject>
    <rdf:Bag>
     <rdf:li>Alice</rdf:li>
     <rdf:li>Beach</rdf:li>
    </rdf:Bag>
   </dc:subject>
   <mwg-rs:Regions rdf:parseType="Resource">
    <mwg-rs:AppliedToDimensions stDim:w="4000" stDim:h="3000" stDim:unit="pixel"/>
    <mwg-rs:RegionList>
     <rdf:Bag>
      <rdf:li>
       <rdf:Description mwg-rs:Name="Alice" mwg-rs:Type="Face">
        <mwg-rs:Area stArea:x="0.4" stArea:y="0.3" stArea:w="0.1" stArea:h="0.15" stArea:unit="normalized"/>
       </rdf:Description>
      </rdf:li>
      <rdf:li>
       <rdf:Description mwg-rs:Name="Bob" mwg-rs:Type="Face">
        <mwg-rs:Area stArea:x="0.7" stArea:y="0.35" stArea:w="0.12" stArea:h="0.16" stArea:unit="normalized"/>
       </rdf:Description>
      </rdf:li>
     </rdf:Bag>
    </mwg-rs:RegionList>
   </mwg-rs:Regions>
   <MP:RegionInfo rdf:parseType="Resource">
    <MPRI:Regions>
     <rdf:Bag>
      <rdf:li MPReg:PersonDisplayName="Alice" MPReg:Rectangle="0.35, 0.225, 0.1, 0.15"/>
     </rdf:Bag>
    </MPRI:Regions>
   </MP:RegionInfo>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>
"""


@needs_exiftool
def test_digikam_sidecar_with_tags_and_face_regions_survives(tmp_path):
    p = make_photo(tmp_path / "family.jpg")
    path = sidecar_path(p)
    path.write_text(DIGIKAM_SIDECAR, encoding="utf-8")
    before = exiftool_tags(path)

    write_caption(p, AUTO)

    after = exiftool_tags(path)
    assert after.pop("XMP-dc:Description") == AUTO.text
    for k in [k for k in after if k.startswith("XMP-imgcap:")] + ["SourceFile"]:
        after.pop(k, None), before.pop(k, None)
    assert after == before
    names = [r["Name"] for r in after["XMP-mwg-rs:RegionInfo"]["RegionList"]]
    assert names == ["Alice", "Bob"]
    assert after["XMP-digiKam:TagsList"] == ["People/Alice", "Places/Beach"]


@pytest.mark.parametrize("name", ["p.jpg.XMP", "p.JPG.xmp", "p.JPG.XMP", "p.XMP"])
def test_a_sidecar_spelled_in_other_cases_is_the_photos(tmp_path, name):
    """Cameras and case-insensitive disks spell sidecars ``P.JPG.XMP``, ``P.XMP``: on a case-sensitive
    disk imgcap did not see them, so --skip-captioned captioned the photo anyway and a second sidecar
    (``p.jpg.xmp``) shadowed the person's caption; copied back to a case-insensitive disk, one of
    the two overwrote the other."""
    photo = make_photo(tmp_path / "p.jpg")
    style = "base" if name == "p.XMP" else "ext"
    write_caption(photo, StoredCaption("typed elsewhere", "human"))
    os.rename(sidecar_path(photo), tmp_path / name)
    if sidecar_path(photo).exists():
        pytest.skip("case-insensitive file system: the spellings are one name")
    assert find_sidecar(photo) == tmp_path / name and read_caption(photo).text == "typed elsewhere"
    write_caption(photo, StoredCaption("a cat", "automatic", "m", -1.0), style=style)  # updates that file
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["p.jpg", name])
    assert read_caption(photo).text == "a cat"


def test_another_photos_sidecar_in_another_case_is_left_to_it(tmp_path):
    """With both ``a.jpg`` and ``a.JPG`` (a case-sensitive disk), ``a.JPG.xmp`` is ``a.JPG``'s."""
    lower, upper = make_photo(tmp_path / "a.jpg"), make_photo(tmp_path / "a.JPG")
    if lower.samefile(upper):
        pytest.skip("case-insensitive file system")
    write_caption(upper, StoredCaption("the upper one", "human"))
    assert read_caption(lower) is None
    write_caption(lower, StoredCaption("the lower one", "human"))
    assert (read_caption(lower).text, read_caption(upper).text) == ("the lower one", "the upper one")
    assert sidecar_path(lower).name == "a.jpg.xmp"


def test_photos_that_would_share_a_base_style_sidecar_are_found_in_any_case(tmp_path):
    jpg = make_photo(tmp_path / "a.jpg")
    for name in ("a.PNG", "a.Png", "b.png"):
        (tmp_path / name).write_bytes(b"")
    assert sorted(p.name for p in base_style_siblings(jpg)) == ["a.PNG", "a.Png"]  # a.Png was missed


def test_a_description_of_white_space_alone_is_no_caption(tmp_path):
    """A tool's cleared field (" ") counted as a person's caption: the photo was never captioned
    without --overwrite-human, and --skip-captioned skipped it."""
    photo = make_photo(tmp_path / "a.jpg")
    sidecar_path(photo).write_bytes(_written_elsewhere(" "))
    assert read_caption(photo) is None
    sidecar_path(photo).write_bytes(_written_elsewhere("\u200b"))  # a zero-width space says nothing either
    assert read_caption(photo) is None
    sidecar_path(photo).write_bytes(_written_elsewhere("&#10;  ", '<rdf:li xml:lang="de">Eine Katze</rdf:li>'))
    assert read_caption(photo).text == "Eine Katze"  # the language that says something
    write_caption(photo, AUTO)
    assert read_caption(photo).text == AUTO.text
    with pytest.raises(ValueError, match="white space alone"):  # as it would read back: no caption
        write_caption(photo, StoredCaption(" \n ", "human"))


def test_a_sidecar_that_names_the_photos_own_type_is_the_photos_beside_a_video_of_its_name(tmp_path):
    """A Live Photo: IMG_1.HEIC, IMG_1.MOV and IMG_1.xmp written for the HEIC (its
    photoshop:SidecarForExtension says so). The video beside it made imgcap take the sidecar for the
    video's: the HEIC's caption went unread and a second sidecar was made."""
    jpg = make_photo(tmp_path / "IMG_1.jpg")
    (tmp_path / "IMG_1.MOV").write_bytes(b"\x00\x00\x00\x18ftypqt  ")
    sidecar = tmp_path / "IMG_1.xmp"
    sidecar.write_bytes(_written_elsewhere("Grandma's cat").replace(
        b'xmp:Rating="3"', b'xmp:Rating="3" xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" '
                           b'photoshop:SidecarForExtension="JPG"'))
    assert find_sidecar(jpg) == sidecar and read_caption(jpg).text == "Grandma's cat"


def test_keywords_put_on_another_languages_caption_add_no_x_default_copy_of_it(tmp_path):
    """A keywords-only edit (the CSV's, the app's chip removal) of a photo whose caption is the
    sidecar's German item copied it into a new x-default item, which then hid every later edit of
    the German one, in imgcap and in exiftool's plain Description."""
    photo = make_photo(tmp_path / "a.jpg")
    german = _written_elsewhere("").replace(b'<rdf:li xml:lang="x-default"></rdf:li>',
                                           b'<rdf:li xml:lang="de">Eine Katze auf dem Sofa</rdf:li>')
    sidecar_path(photo).write_bytes(german)
    stored = read_caption(photo)
    write_caption(photo, replace(stored, keywords=("sofa",)), keywords_by_person=True, added_by_person=["sofa"])
    assert b"x-default" not in sidecar_path(photo).read_bytes()
    assert read_caption(photo).text == "Eine Katze auf dem Sofa" and read_caption(photo).keywords == ("sofa",)
    write_caption(photo, StoredCaption("A cat on the sofa", "human"))  # a new caption goes into x-default
    assert read_caption(photo).text == "A cat on the sofa"
    assert b"Eine Katze auf dem Sofa" in sidecar_path(photo).read_bytes()


def test_a_persons_caption_that_another_language_says_takes_the_x_default_item_out(tmp_path):
    """Undo of an edit over a sidecar with a German item alone wrote the German text back as a new
    x-default item, which every other program then showed as the default caption."""
    photo = make_photo(tmp_path / "a.jpg")
    german = _written_elsewhere("").replace(b'<rdf:li xml:lang="x-default"></rdf:li>',
                                           b'<rdf:li xml:lang="de">Eine Katze auf dem Sofa</rdf:li>')
    sidecar_path(photo).write_bytes(german)
    before = read_caption(photo)
    write_caption(photo, StoredCaption("A cat on the sofa", "human"))  # the edit
    assert b'xml:lang="x-default">A cat on the sofa' in sidecar_path(photo).read_bytes()

    write_caption(photo, before)  # undone
    assert b"x-default" not in sidecar_path(photo).read_bytes()
    assert read_caption(photo) == before


def test_an_x_default_item_that_another_language_repeats_stays(tmp_path):
    """Adobe's tools write x-default and en-US alike: retyping that caption, removing a keyword or
    undoing an edit back to it took the x-default item out."""
    photo = make_photo(tmp_path / "a.jpg")
    both = _written_elsewhere("A cat on the sofa", extra='<rdf:li xml:lang="en-US">A cat on the sofa</rdf:li>')
    sidecar_path(photo).write_bytes(both)
    before = read_caption(photo)
    assert before.language is None  # read from the x-default item
    write_caption(photo, StoredCaption("A dog", "human"))
    write_caption(photo, before)  # undone
    write_caption(photo, replace(before, keywords=("sofa",)), keywords_by_person=True, added_by_person=["sofa"])
    data = sidecar_path(photo).read_bytes()
    assert b'xml:lang="x-default">A cat on the sofa' in data and b'xml:lang="en-US">A cat on the sofa' in data


def test_a_caption_in_photo_xmp_counts_beside_a_photo_jpg_xmp_that_holds_none(tmp_path):
    """Lightroom's IMG_1.xmp held the person's caption and darktable's IMG_1.jpg.xmp (made on
    import) none: imgcap read no caption, captioned the photo over it and wrote into the second."""
    jpg = make_photo(tmp_path / "IMG_1.jpg")
    (tmp_path / "IMG_1.xmp").write_bytes(_written_elsewhere("Grandma's cat"))
    (tmp_path / "IMG_1.jpg.xmp").write_bytes(_written_elsewhere("").replace(
        b'<dc:description><rdf:Alt><rdf:li xml:lang="x-default"></rdf:li></rdf:Alt></dc:description>', b""))
    stored = read_caption(jpg)
    assert (stored.text, stored.source) == ("Grandma's cat", "human")
    write_caption(jpg, AUTO)  # where a person asks for it: into the photo.jpg.xmp, which then holds it
    assert read_caption(jpg).text == AUTO.text and b"Grandma's cat" in (tmp_path / "IMG_1.xmp").read_bytes()
    (tmp_path / "IMG_1.png").write_bytes(b"")  # shared by two photos now: whose it is cannot be told
    write_caption(jpg, StoredCaption("", "human"))
    with pytest.raises(SidecarCollisionError):  # said, not read as no caption (and captioned over)
        read_caption(jpg, embedded=False)


def test_a_sidecar_that_declares_another_encoding_says_why_it_cannot_take_a_caption(tmp_path):
    """"Un café crème" into a sidecar declared ISO-8859-1 failed with "the caption did not survive
    the XMP round trip", which says nothing of why; an ASCII caption still goes in."""
    photo = make_photo(tmp_path / "a.jpg")
    latin1 = (b'<?xml version="1.0" encoding="ISO-8859-1"?>\n<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
              b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
              b'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="2"/></rdf:RDF></x:xmpmeta>\n')
    sidecar_path(photo).write_bytes(latin1)
    with pytest.raises(SidecarError, match="declares the ISO-8859-1 encoding, and imgcap writes UTF-8 only"):
        write_caption(photo, StoredCaption("Un café crème", "human"))
    assert sidecar_path(photo).read_bytes() == latin1
    ascii_declared = latin1.replace(b"ISO-8859-1", b"US-ASCII")  # the XML reader refused it first, as not XML
    sidecar_path(photo).write_bytes(ascii_declared)
    with pytest.raises(SidecarError, match="declares the US-ASCII encoding"):
        write_caption(photo, StoredCaption("Un café crème", "human"))
    assert sidecar_path(photo).read_bytes() == ascii_declared
    write_caption(photo, StoredCaption("A coffee", "human"))
    assert read_caption(photo).text == "A coffee"



def test_a_photo_xmp_beside_that_cannot_be_read_is_another_programs_to_mend(tmp_path):
    """A broken (or empty) a.xmp beside darktable's a.jpg.xmp made the photo unreadable and
    uncaptionable: it is not the photo's sidecar then, and is left as it is."""
    photo = make_photo(tmp_path / "a.jpg")
    darktables = _written_elsewhere("").replace(
        b'<dc:description><rdf:Alt><rdf:li xml:lang="x-default"></rdf:li></rdf:Alt></dc:description>', b"")
    (tmp_path / "a.jpg.xmp").write_bytes(darktables)
    for broken in (b"<not xml", b""):
        (tmp_path / "a.xmp").write_bytes(broken)
        assert read_caption(photo, embedded=False) is None
    write_caption(photo, AUTO)
    assert read_caption(photo).text == AUTO.text and (tmp_path / "a.xmp").read_bytes() == b""


def test_clearing_a_caption_shown_from_the_photo_xmp_beside_is_refused(tmp_path):
    """The clear went into a.jpg.xmp, and a.xmp's caption came straight back: the person's
    deletion did nothing, silently."""
    photo = make_photo(tmp_path / "a.jpg")
    (tmp_path / "a.jpg.xmp").write_bytes(_written_elsewhere("").replace(
        b'<dc:description><rdf:Alt><rdf:li xml:lang="x-default"></rdf:li></rdf:Alt></dc:description>', b""))
    (tmp_path / "a.xmp").write_bytes(_written_elsewhere("Lightroom's caption"))
    before = Snapshot([tmp_path / "a.jpg.xmp", tmp_path / "a.xmp"])
    with pytest.raises(SidecarError, match="the caption is in a.xmp, another program's sidecar beside a.jpg.xmp"):
        write_caption(photo, StoredCaption("", "human"))
    before.assert_unchanged()

    # An edit (written into a.jpg.xmp) undone: a.xmp's caption shows through again, not a copy of it,
    # which would hide the next change made to it in Lightroom.
    write_caption(photo, StoredCaption("edited in imgcap", "human"))
    write_caption(photo, StoredCaption("Lightroom's caption", "human"))
    assert caption_from_packet((tmp_path / "a.jpg.xmp").read_bytes(), tmp_path / "a.jpg.xmp") is None
    (tmp_path / "a.xmp").write_bytes(_written_elsewhere("Lightroom's caption, edited there"))
    assert read_caption(photo).text == "Lightroom's caption, edited there"


def test_an_ascii_caption_goes_into_a_sidecar_declared_latin1_that_holds_other_letters(tmp_path):
    photo = make_photo(tmp_path / "a.jpg")
    sidecar_path(photo).write_bytes(_written_elsewhere("").replace(b'encoding="UTF-8"', b'encoding="ISO-8859-1"')
                                    .replace(b'xmp:Rating="3"', 'xmp:Rating="3" xmp:Label="caf\u00e9"'.encode()))
    write_caption(photo, StoredCaption("a dog", "human"))
    assert read_caption(photo).text == "a dog"


def test_a_photo_of_a_type_that_owns_sidecars_owns_its_own(tmp_path):
    """An .avif (which imgcap lists among the types that own a photo.xmp) captioned by name took its
    own x.xmp for another file's: a person's caption in it went unread, and a second sidecar was made."""
    avif = tmp_path / "x.avif"
    avif.write_bytes(make_photo(tmp_path / "src.jpg").read_bytes())
    (tmp_path / "x.xmp").write_bytes(_written_elsewhere("A person's caption"))
    assert find_sidecar(avif) == tmp_path / "x.xmp" and read_caption(avif).text == "A person's caption"


def test_a_live_photos_sidecar_is_the_heics_beside_a_jpeg_of_its_name(tmp_path):
    """IMG_1.xmp saying it is IMG_1.HEIC's (SidecarForExtension) beside IMG_1.JPG was taken for one
    the two photos would share: unread, and refused for writing."""
    heic = make_photo(tmp_path / "IMG_1.jpg")
    heic = heic.rename(tmp_path / "IMG_1.HEIC")
    make_photo(tmp_path / "IMG_1.JPG")
    (tmp_path / "IMG_1.MOV").write_bytes(b"\x00\x00\x00\x18ftypqt  ")
    (tmp_path / "IMG_1.xmp").write_bytes(_written_elsewhere("Grandma's cat").replace(
        b'xmp:Rating="3"', b'xmp:Rating="3" xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" '
                           b'photoshop:SidecarForExtension="HEIC"'))
    assert find_sidecar(heic) == tmp_path / "IMG_1.xmp" and read_caption(heic).text == "Grandma's cat"
    write_caption(heic, StoredCaption("Grandma's cat, asleep", "human"))
    assert read_caption(heic).text == "Grandma's cat, asleep" and not (tmp_path / "IMG_1.HEIC.xmp").exists()


def test_a_photo_xmp_two_photos_could_share_with_a_caption_is_said_not_hidden(tmp_path):
    """a.jpg with darktable's caption-less a.jpg.xmp, a.png beside it, and a.xmp with a person's
    caption: whose it is cannot be told, and a.jpg read as captioned by nobody (captioned over it)."""
    jpg = make_photo(tmp_path / "a.jpg")
    (tmp_path / "a.jpg.xmp").write_bytes(_written_elsewhere("").replace(
        b'<dc:description><rdf:Alt><rdf:li xml:lang="x-default"></rdf:li></rdf:Alt></dc:description>', b""))
    (tmp_path / "a.xmp").write_bytes(_written_elsewhere("A person's caption"))
    make_photo(tmp_path / "a.png")
    with pytest.raises(SidecarCollisionError, match="would share the sidecar a.xmp"):
        read_caption(jpg)
    (tmp_path / "a.xmp").write_bytes(_written_elsewhere(""))  # no caption in it: nothing to tell apart
    assert read_caption(jpg, embedded=False) is None


def test_a_photo_named_after_another_with_its_extension_never_takes_that_ones_sidecar(tmp_path):
    """``a.jpg.jpg`` (an export's copy, ``IMG_1.HEIC.jpg``) took ``a.jpg.xmp``, the photo ``a.jpg``'s
    own sidecar, for its base-style one: it showed a.jpg's caption, and writing its own (a CSV's
    correction of that row) replaced a person's caption of a.jpg."""
    a, copy = make_photo(tmp_path / "a.jpg"), make_photo(tmp_path / "a.jpg.jpg")
    theirs = StoredCaption("my dog Rex at the beach", "human")
    write_caption(a, theirs)
    assert find_sidecar(copy) is None and read_caption(copy) is None
    write_caption(copy, StoredCaption("a plain blue square", "human"))
    assert find_sidecar(copy) == tmp_path / "a.jpg.jpg.xmp" and read_caption(a) == theirs
    b, b_copy = make_photo(tmp_path / "b.jpg"), make_photo(tmp_path / "b.jpg.jpg")  # b.jpg has no sidecar yet
    with pytest.raises(SidecarCollisionError, match="b.jpg.xmp is the sidecar of b.jpg; use the photo.jpg.xmp"):
        write_caption(b_copy, StoredCaption("a plain blue square", "human"), style="base")
    assert not (tmp_path / "b.jpg.xmp").exists() and read_caption(b) is None
