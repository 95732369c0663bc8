"""Reading image files: formats, metadata, corrupt and huge files, OCR."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from ragmm.errors import InputError
from ragmm.ingest.images import OCR, file_title, read_image

MB = 10**6


def shape_image(size: tuple[int, int] = (96, 64), colour: tuple[int, int, int] = (220, 30, 30), mode: str = "RGB") -> Image.Image:
    img = Image.new(mode, size, (255, 255, 255, 0) if mode == "RGBA" else (255, 255, 255))
    ImageDraw.Draw(img).rectangle((10, 10, size[0] - 10, size[1] - 10), fill=colour)
    return img


def text_image(text: str, size: tuple[int, int] = (480, 140)) -> Image.Image:
    img = Image.new("RGB", size, "white")
    ImageDraw.Draw(img).text((20, 35), text, fill="black", font=ImageFont.load_default(56))
    return img


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".bmp", ".tiff"])
def test_reads_each_format(tmp_path, suffix):
    path = tmp_path / f"red_square{suffix}"
    shape_image().save(path)
    parsed = read_image(path, "k", 50 * MB)
    assert (parsed.width, parsed.height) == (96, 64)
    assert parsed.image.mode == "RGB" and parsed.image.size == (96, 64)
    assert parsed.title == "red square"
    # the middle of the square is red in every format (lossy ones approximately)
    r, g, b = parsed.image.getpixel((48, 32))
    assert r > 180 and g < 80 and b < 80


def test_gif_gives_its_first_frame(tmp_path):
    path = tmp_path / "anim.gif"
    frames = [shape_image(colour=(220, 30, 30)), shape_image(colour=(30, 30, 220))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    parsed = read_image(path, "k", 50 * MB)
    r, _, b = parsed.image.getpixel((48, 32))
    assert r > 150 and b < 100


def test_transparency_is_white(tmp_path):
    path = tmp_path / "clip.png"
    shape_image(mode="RGBA").save(path)
    parsed = read_image(path, "k", 50 * MB)
    assert parsed.image.getpixel((2, 2)) == (255, 255, 255)


def test_exif_description_and_date(tmp_path):
    path = tmp_path / "IMG_2031.jpg"
    exif = Image.Exif()
    exif[0x010E] = "A red bicycle against a wall"
    exif[0x0132] = "2024:05:01 10:00:00"
    shape_image().save(path, exif=exif)
    parsed = read_image(path, "k", 50 * MB)
    assert parsed.description == "A red bicycle against a wall"
    assert parsed.date == "2024:05:01 10:00:00"
    assert parsed.title == "" and parsed.has_text  # a camera name says nothing; the description does
    text = parsed.item_text()
    assert "red bicycle" in text
    meta = parsed.metadata()
    assert meta["description"] == "A red bicycle against a wall" and meta["path"] == str(path.resolve())


def test_png_text_chunk_is_the_description(tmp_path):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Title", "Lighthouse at dusk")
    path = tmp_path / "x1.png"
    shape_image().save(path, pnginfo=info)
    assert read_image(path, "k", 50 * MB).description == "Lighthouse at dusk"


def test_large_image_is_decoded_small(tmp_path):
    path = tmp_path / "big.jpg"
    shape_image((4000, 3000)).save(path, quality=80)
    parsed = read_image(path, "k", 50 * MB, max_side=1024)
    assert (parsed.width, parsed.height) == (4000, 3000)  # the original's size is recorded
    assert max(parsed.image.size) == 1024


@pytest.mark.parametrize(
    ("name", "data", "needle"),
    [
        ("random.png", bytes(range(256)) * 40, "not an image"),
        ("empty.jpg", b"", "empty file"),
        ("notes.gif", b"just some text saved under an image name\n", "not an image"),
    ],
)
def test_bad_files_name_the_file(tmp_path, name, data, needle):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(InputError) as err:
        read_image(path, "k", 50 * MB)
    assert str(path) in str(err.value) and needle in str(err.value), str(err.value)
    assert "\n" not in str(err.value)


def test_truncated_png(tmp_path):
    path = tmp_path / "cut.png"
    full = tmp_path / "full.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(full)
    path.write_bytes(full.read_bytes()[:5000])
    with pytest.raises(InputError, match="cut.png"):
        read_image(path, "k", 50 * MB)


def test_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    shape_image((600, 600)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)  # 600x600 is over 2x this
    with pytest.raises(InputError, match="too large to decode safely"):
        read_image(path, "k", 50 * MB)


def test_file_over_the_byte_limit(tmp_path):
    path = tmp_path / "photo.png"
    shape_image().save(path)
    with pytest.raises(InputError, match="max_file_mb"):
        read_image(path, "k", 10)


def test_file_title():
    assert file_title(Path("full_moon-01.png")) == "full moon"
    assert file_title(Path("2024.jpg")) == ""
    assert file_title(Path("IMG_2031.JPG")) == "" and file_title(Path("DSC00042.jpg")) == ""


@pytest.mark.slow
def test_ocr_reads_text_in_an_image(tmp_path):
    path = tmp_path / "sign.png"
    text_image("HELLO WORLD").save(path)
    parsed = read_image(path, "k", 50 * MB)
    parsed.ocr_text = OCR()(parsed.image)
    assert "HELLO" in parsed.ocr_text.upper() and "WORLD" in parsed.ocr_text.upper()
    assert 'text in the image: "' in parsed.item_text()
    assert OCR()(shape_image()) == ""  # no text, no invented text


def test_an_image_already_at_the_tower_size_loads(tmp_path):
    """An RGB file already size x size goes through without a resize; it must still be decoded
    before its file closes."""
    from ragmm.encoders.image_tower import load_image, open_image

    path = tmp_path / "exact.png"
    shape_image((64, 64)).save(path)
    assert np.asarray(load_image(str(path), 64)).shape == (64, 64, 3)
    assert np.asarray(open_image(path, 512)).shape == (64, 64, 3)


@pytest.mark.parametrize("stamp", ["Created with The GIMP", "OLYMPUS DIGITAL CAMERA", "SONY DSC", "Made with the GIMP. Made by Jim Trice"])
def test_software_and_camera_stamps_are_not_descriptions(tmp_path, stamp):
    path = tmp_path / "IMG_1234.jpg"
    exif = Image.Exif()
    exif[0x010E] = stamp
    shape_image().save(path, exif=exif)
    parsed = read_image(path, "k", 50 * MB)
    assert parsed.description == "" and not parsed.has_text


def test_labels_are_the_items_text_view(tmp_path):
    """What the image encoder's classifier names joins the item text and gives it a text vector."""
    path = tmp_path / "IMG_0001.jpg"
    shape_image().save(path)
    parsed = read_image(path, "k", 50 * MB)
    assert not parsed.has_text  # a camera file name and nothing else
    parsed.labels = "koala, teddy bear"
    assert parsed.has_text
    assert parsed.item_text() == "picture of: koala, teddy bear"
    assert parsed.metadata()["labels"] == "koala, teddy bear"
    named = read_image(_copy(path, tmp_path / "red_box.jpg"), "k", 50 * MB)
    named.labels = "envelope"
    assert named.item_text() == "red box. picture of: envelope"


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst
