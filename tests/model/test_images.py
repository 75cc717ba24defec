"""Photo loading: colour modes, EXIF orientation and hostile files, all generated with Pillow."""

from __future__ import annotations

import io
import os
import struct

import numpy as np
import pytest
from PIL import Image

from model import images
from model.images import ImageLoadError, load_image, open_oriented, resize_array


def _gradient(width: int = 64, height: int = 48) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], axis=-1), "RGB")


def _jpeg_bytes(img: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=90, **kwargs)
    return buffer.getvalue()


@pytest.fixture
def jpeg(tmp_path):
    path = tmp_path / "good.jpg"
    path.write_bytes(_jpeg_bytes(_gradient()))
    return path


def _assert_rgb(img: Image.Image, size: tuple[int, int]):
    assert img.mode == "RGB"
    assert img.size == size
    arr = np.asarray(img)
    assert arr.dtype == np.uint8 and arr.shape == (size[1], size[0], 3)


def test_good_jpeg_loads(jpeg):
    _assert_rgb(open_oriented(jpeg), (64, 48))
    arr = load_image(jpeg, 32)
    assert arr.shape == (32, 32, 3) and arr.dtype == np.uint8


def test_truncated_jpeg_is_a_clear_error(tmp_path):
    data = _jpeg_bytes(_gradient(256, 256))
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="truncated.jpg: corrupt or truncated") as info:
        load_image(path, 64)
    assert info.value.path == str(path)


def test_jpeg_header_only_is_a_clear_error(tmp_path):
    path = tmp_path / "header.jpg"
    path.write_bytes(_jpeg_bytes(_gradient())[:20])
    with pytest.raises(ImageLoadError):
        load_image(path)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty") as info:
        open_oriented(path)
    assert info.value.reason == "the file is empty"


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageLoadError, match="not found"):
        open_oriented(tmp_path / "missing.jpg")
    with pytest.raises(ImageLoadError, match="folder"):
        open_oriented(tmp_path)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links here")
def test_broken_link_names_its_missing_target(tmp_path):
    target = tmp_path / "unmounted" / "a.jpg"
    (tmp_path / "a.jpg").symlink_to(target)
    with pytest.raises(ImageLoadError) as info:
        open_oriented(tmp_path / "a.jpg")
    assert info.value.reason == f"broken link: its target {target} is missing"
    assert images.broken_link_reason(tmp_path / "a.jpg") == info.value.reason
    assert images.broken_link_reason(target.parent) is None  # missing, but not a link


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links here")
def test_link_loop_is_a_clear_error(tmp_path):
    (tmp_path / "a.jpg").symlink_to(tmp_path / "b.jpg")
    (tmp_path / "b.jpg").symlink_to(tmp_path / "a.jpg")
    with pytest.raises(ImageLoadError) as info:
        open_oriented(tmp_path / "a.jpg")
    assert info.value.reason == "symbolic link loop"
    assert images.broken_link_reason(tmp_path / "a.jpg") == "symbolic link loop"


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links here")
def test_a_chain_of_links_names_the_target_at_its_end(tmp_path):
    (tmp_path / "b.jpg").symlink_to(tmp_path / "unmounted" / "b.jpg")
    (tmp_path / "a.jpg").symlink_to("b.jpg")
    assert images.broken_link_reason(tmp_path / "a.jpg") == (
        f"broken link: its target {tmp_path / 'unmounted' / 'b.jpg'} is missing")
    (tmp_path / "unmounted").mkdir()
    make = Image.new("RGB", (4, 4))
    make.save(tmp_path / "unmounted" / "b.jpg")
    assert images.broken_link_reason(tmp_path / "a.jpg") is None  # mounted again: a working link


def test_png_named_jpg_loads(tmp_path):
    path = tmp_path / "really_a_png.jpg"
    _gradient().save(path, "PNG")
    _assert_rgb(open_oriented(path), (64, 48))
    np.testing.assert_array_equal(np.asarray(open_oriented(path)), np.asarray(_gradient()))


def test_text_named_jpg_is_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("shopping list: eggs, milk\n" * 20)
    with pytest.raises(ImageLoadError, match="notes.jpg: not a photo imgcap can read"):
        load_image(path, 64)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(path, "JPEG", quality=95)  # red in CMYK
    img = open_oriented(path)
    _assert_rgb(img, (40, 30))
    r, g, b = np.asarray(img)[15, 20].astype(int)
    assert r > 200 and g < 60 and b < 60


def test_16_bit_grayscale_png_becomes_rgb(tmp_path):
    path = tmp_path / "gray16.png"
    ramp = np.linspace(0, 65535, 100, dtype=np.uint16)[None, :].repeat(10, 0)
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    img = open_oriented(path)
    _assert_rgb(img, (100, 10))
    arr = np.asarray(img).astype(int)
    assert arr[0, 0].tolist() == [0, 0, 0]
    assert arr[0, -1, 0] >= 250
    assert np.all(np.diff(arr[0, :, 0]) >= 0)  # still a ramp, not clipped to white
    assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()


def test_8_bit_grayscale_becomes_rgb(tmp_path):
    path = tmp_path / "gray.jpg"
    Image.new("L", (20, 10), 128).save(path)
    arr = np.asarray(open_oriented(path)).astype(int)
    assert arr.shape == (10, 20, 3) and abs(arr.mean() - 128) < 3


def test_rgba_composited_on_white(tmp_path):
    path = tmp_path / "rgba.png"
    arr = np.zeros((10, 20, 4), np.uint8)
    arr[:, :10] = (255, 0, 0, 255)  # opaque red
    arr[:, 10:] = (0, 0, 255, 0)  # fully transparent
    Image.fromarray(arr, "RGBA").save(path)
    out = np.asarray(open_oriented(path))
    assert out.shape == (10, 20, 3)
    assert out[5, 2].tolist() == [255, 0, 0]
    assert out[5, 15].tolist() == [255, 255, 255]


def test_palette_image_becomes_rgb(tmp_path):
    path = tmp_path / "palette.png"
    _gradient().convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(path)
    assert Image.open(path).mode == "P"
    _assert_rgb(open_oriented(path), (64, 48))


def test_palette_with_transparency(tmp_path):
    path = tmp_path / "palette_t.png"
    img = Image.new("P", (8, 8), 1)
    img.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    img.info["transparency"] = 1
    img.save(path, transparency=1)
    out = np.asarray(open_oriented(path))
    assert out.shape == (8, 8, 3) and out[0, 0].tolist() == [255, 255, 255]


@pytest.mark.parametrize(("orientation", "swapped"), [(1, False), (3, False), (6, True), (8, True)])
def test_exif_orientation_is_applied(tmp_path, orientation, swapped):
    path = tmp_path / f"rotated{orientation}.jpg"
    img = Image.new("RGB", (60, 20), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 10, 20))  # a red band on the left edge as stored
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(path, "JPEG", exif=exif.tobytes(), quality=95)

    out = open_oriented(path)
    assert out.size == ((20, 60) if swapped else (60, 20))
    assert load_image(path).shape == ((60, 20, 3) if swapped else (20, 60, 3))
    arr = np.asarray(out).astype(int)
    # Orientation 6 turns the stored left edge to the top; 8 to the bottom; 3 to the right.
    red_at = {1: arr[10, 2], 3: arr[10, -3], 6: arr[2, 10], 8: arr[-3, 10]}[orientation]
    assert red_at[0] > 200 and red_at[2] < 60


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("L", (400, 300)).save(path)  # compresses to almost nothing, like a real bomb
    monkeypatch.setattr(images, "MAX_PIXELS", 100_000)
    with pytest.raises(ImageLoadError, match="too large") as info:
        load_image(path, 64)
    assert "400x300" in str(info.value)


def test_pillow_bomb_limit_is_an_image_load_error(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("L", (400, 300)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # Pillow warns above this, errors above 2x
    with pytest.raises(ImageLoadError, match="too large"):
        open_oriented(path)


def test_gif_first_frame(tmp_path):
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (16, 12), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(path).n_frames == 3
    out = np.asarray(open_oriented(path)).astype(int)
    assert out.shape == (12, 16, 3)
    assert out[6, 8, 0] > 200 and out[6, 8, 1] < 60


def test_flat_psd_is_read(tmp_path):
    # A Photoshop file saved without layers: Pillow reads its composite, but counts no frames, so a
    # seek to the first one failed with "attempt to seek outside sequence".
    width, height = 20, 10
    header = b"8BPS" + struct.pack(">H6sHIIHH", 1, bytes(6), 3, height, width, 8, 3)
    sections = struct.pack(">III", 0, 0, 0) + struct.pack(">H", 0)  # colour mode, resources, layers; raw
    planes = bytes([200] * width * height) + bytes([10] * width * height) + bytes([30] * width * height)
    path = tmp_path / "flat.psd"
    path.write_bytes(header + sections + planes)
    out = np.asarray(open_oriented(path)).astype(int)
    assert out.shape == (height, width, 3)
    assert tuple(out[5, 10]) == (200, 10, 30)


def test_load_image_squashes_to_a_square(jpeg):
    arr = load_image(jpeg, 100)
    assert arr.shape == (100, 100, 3)
    assert arr.dtype == np.uint8


def test_resize_array_accepts_gray_rgba_and_float():
    gray = np.full((30, 40), 100, np.uint8)
    assert resize_array(gray, 16).shape == (16, 16, 3)
    rgba = np.zeros((30, 40, 4), np.uint8)
    assert resize_array(rgba, 16).shape == (16, 16, 3)
    unit = np.full((30, 40, 3), 0.5, np.float32)
    out = resize_array(unit, 16)
    assert out.dtype == np.uint8 and abs(int(out[0, 0, 0]) - 127) <= 1
    with pytest.raises(ValueError):
        resize_array(np.zeros((4, 4, 5), np.uint8), 16)


# --- huge photos are shrunk right after decoding --------------------------------------------------


def _gradient_file(path, mode: str = "RGB", size=(600, 400)):
    ramp = (np.linspace(0, 255, size[0], dtype=np.float32)[None, :]
            + np.linspace(0, 60, size[1], dtype=np.float32)[:, None])
    gray = np.clip(ramp, 0, 255).astype(np.uint8)
    img = Image.fromarray(np.stack([gray, 255 - gray, gray // 2], axis=-1))
    if mode == "P":
        img = img.convert("P", palette=Image.Palette.ADAPTIVE)
    elif mode == "I;16":
        img = Image.fromarray(gray.astype(np.uint16) * 257).convert("I;16")
    img.save(path)
    return path


@pytest.mark.parametrize("mode", ["RGB", "P", "I;16"])
def test_huge_photo_is_reduced_right_after_decoding_with_the_same_result(tmp_path, monkeypatch, mode):
    path = _gradient_file(tmp_path / f"g-{mode.replace(';', '')}.png", mode)
    full = images.load_image(path, 32)
    calls = []
    real_reduce = Image.Image.reduce

    def spy(self, factor, box=None):
        calls.append((self.size, factor))
        return real_reduce(self, factor, box)

    monkeypatch.setattr(images, "REDUCE_ABOVE_PIXELS", 10_000)
    monkeypatch.setattr(Image.Image, "reduce", spy)
    reduced = images.load_image(path, 32)

    assert reduced.shape == full.shape == (32, 32, 3)
    assert np.abs(reduced.astype(int) - full.astype(int)).mean() < 4
    if mode == "RGB":
        assert {factor for _, factor in calls} == {(6, 4)}  # to no less than 3 x 32 on each side
        assert sum(size[1] for size, _ in calls) == 400  # in bands, never a second full-size copy


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "L", "CMYK", "I", "F"])
def test_reducing_in_strips_gives_exactly_reduces_pixels(mode):
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (1001, 777, 4), dtype=np.uint8), "RGBA").convert(mode)
    strips = images._reduce_in_strips(img, 7, 5)
    assert strips.size == img.reduce((7, 5)).size == (111, 201)
    assert np.array_equal(np.asarray(strips), np.asarray(img.reduce((7, 5))))


def test_small_photos_are_not_reduced_early():
    # Below the threshold the usual resize does it, giving exactly the pixels training saw.
    small = Image.new("RGB", (600, 400))
    assert images._reduced(small, (32, 32)) is small
    assert images._reduced(small, None) is small


def test_heic_is_a_supported_photo(tmp_path):
    pytest.importorskip("pillow_heif")
    path = tmp_path / "iphone.heic"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(path)
    assert ".heic" in images.SUPPORTED_EXTENSIONS
    pixels = images.load_image(path, 16)
    assert pixels.shape == (16, 16, 3) and pixels[..., 0].mean() > 150


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_a_photo_reduced_after_decoding_is_still_turned_upright(tmp_path, monkeypatch, fmt):
    """A PNG or WebP over REDUCE_ABOVE_PIXELS lost its EXIF orientation in the reduced copy, so the
    model saw it on its side."""
    monkeypatch.setattr(images, "REDUCE_ABOVE_PIXELS", 100)  # a small photo takes the huge photo's path
    path = tmp_path / f"rotated.{fmt.lower()}"
    img = Image.new("RGB", (120, 120), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 20, 120))  # red on the left edge as stored: the top once upright
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(path, fmt, exif=exif.tobytes(), **({"lossless": True} if fmt == "WEBP" else {}))

    out = open_oriented(path, draft_size=(10, 10))

    assert out.size == (30, 30)  # reduced
    arr = np.asarray(out).astype(int)
    assert arr[1, out.width // 2, 0] > 200 and arr[-2, out.width // 2, 0] < 60


def test_a_photo_whose_exif_tags_hold_the_wrong_types_loads_as_stored(tmp_path):
    """One flipped bit in a tag id (text in a number tag) made ImageOps.exif_transpose raise
    struct.error, and the whole batch stopped with a traceback."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010E] = "A description"
    raw = exif.tobytes().replace(b"\x01\x0e\x00\x02", b"\x01\x20\x00\x02")  # ImageDescription -> a LONG tag
    path = tmp_path / "bad_exif.jpg"
    Image.new("RGB", (30, 20), (10, 200, 10)).save(path, exif=raw)

    assert load_image(path).shape[2] == 3  # the pixels are the photo's: captioned, not refused


def test_a_tiff_with_a_rational_where_an_offset_goes_is_refused_as_corrupt(tmp_path):
    """Pillow raised TypeError from load(), which escaped the loader and stopped the batch."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buffer, "TIFF")
    data = buffer.getvalue()
    assert data.count(b"\x11\x01\x04\x00") == 1  # StripOffsets, type LONG
    path = tmp_path / "bad.tif"
    path.write_bytes(data.replace(b"\x11\x01\x04\x00", b"\x11\x01\x05\x00"))  # now a RATIONAL

    with pytest.raises(ImageLoadError, match="corrupt"):
        load_image(path)


def test_a_header_problem_is_said_as_decoding_says_it(tmp_path):
    """The grid said "not a photo this app can read" for an empty file before a run and "the file
    is empty" after it; a text file's run message named Pillow, which a photographer need not know."""
    from model.images import header_problem

    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("not a photo")
    (tmp_path / "folder.jpg").mkdir()
    for name in ("empty.jpg", "notes.jpg", "folder.jpg", "gone.jpg"):
        with pytest.raises(ImageLoadError) as raised:
            open_oriented(tmp_path / name)
        assert header_problem(tmp_path / name) == raised.value.reason
        assert "Pillow" not in raised.value.reason
    assert header_problem(tmp_path / "empty.jpg") == "the file is empty"
    good = tmp_path / "good.png"
    _gradient().save(good)
    assert header_problem(good) is None


def _dds(fourcc: bytes = b"ETC1") -> bytes:
    """A DDS texture header with a compression Pillow does not decode (it raises NotImplementedError)."""
    header = struct.pack("<7I", 124, 0x1007, 16, 16, 0, 0, 0) + b"\0" * 44
    header += struct.pack("<2I4s5I", 32, 0x4, fourcc, 0, 0, 0, 0, 0) + struct.pack("<5I", 0x1000, 0, 0, 0, 0)
    return b"DDS " + header + b"\0" * 256


@pytest.mark.parametrize("name", ["texture.dds", "b_bad.jpg"])
def test_a_file_of_a_kind_pillow_does_not_decode_is_one_photos_failure(tmp_path, name):
    """A DDS texture (given by name, or under a .jpg one) made Pillow raise NotImplementedError, which
    escaped the loader: the whole batch stopped with a traceback, no photo captioned."""
    from imgcap_desktop.metadata.embedded import read_embedded_caption
    from model.images import header_problem

    path = tmp_path / name
    path.write_bytes(_dds())
    with pytest.raises(ImageLoadError, match="corrupt or truncated image") as raised:
        load_image(path)
    assert header_problem(path) in (None, raised.value.reason)  # the header may read: decoding says why
    assert read_embedded_caption(path) is None
