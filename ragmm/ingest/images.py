"""Reading image files for the ``image`` corpus: pixels, text found by OCR, and metadata.

Each file is read from disk once and decoded once, straight into a copy no larger than
``max_side`` pixels (JPEGs decode at 1/2..1/8 scale with ``Image.draft``; other formats are
reduced right after decoding), so a large photo is never held at full size twice. That copy feeds
both OCR and the image encoder. Files over Pillow's decompression-bomb limit are refused before
decoding. GIFs and other multi-frame files give their first frame.

Text of an image item, in this order: the words of the file name, the EXIF/PNG description or
title, and the OCR text (``rapidocr``, ONNX models shipped in its wheel). It is what a text-only
generator reads about the image and what the ``text`` vector of the image corpus embeds.

Every failure is an :class:`~ragmm.errors.InputError` naming the file and what to do.
"""

from __future__ import annotations

import hashlib
import io
import re
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragmm.errors import InputError

if TYPE_CHECKING:
    from PIL import Image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"}

# EXIF tags (TIFF numbering): ImageDescription, DateTime, XPTitle, XPComment, XPSubject; and in
# the Exif IFD, DateTimeOriginal and UserComment.
_DESCRIPTION, _DATETIME, _XPTITLE, _XPCOMMENT, _XPSUBJECT = 0x010E, 0x0132, 0x9C9B, 0x9C9C, 0x9C9F
_EXIF_IFD, _DATETIME_ORIGINAL, _USER_COMMENT = 0x8769, 0x9003, 0x9286
_PNG_TEXT_KEYS = ("Title", "Description", "Subject")  # not "Comment": editors sign their files there
# Descriptions that name the software or the camera rather than the picture.
_NOT_A_DESCRIPTION = re.compile(
    r"^(created|made|generated|edited|saved|drawn)\s+(with|by|in|using)\b|^creator:|^software:|digital camera|^(sony|kodak|nikon|canon|olympus)\b|^(default|untitled|image|none|picture)$",
    re.IGNORECASE,
)


@dataclass(slots=True)
class ParsedImage:
    """An image file read for indexing.

    Args:
        path: the file.
        key: the source key it is stored under.
        source_hash: SHA-256 of the file's bytes.
        image: the picture as RGB (transparency on white), at most ``max_side`` pixels a side.
        width, height: the size of the original.
        format: Pillow's format name (``PNG``, ``JPEG``...).
        description: EXIF ImageDescription / XP title or comment, or a PNG text chunk.
        date: EXIF DateTimeOriginal (else DateTime) as written, ``YYYY:MM:DD HH:MM:SS``.
        ocr_text: text found in the image ("" when OCR is off or finds nothing).
        labels: what the image encoder's classifier sees, e.g. "koala, teddy bear" ("" when the
            encoder gives no labels or is unsure).
    """

    path: Path
    key: str
    source_hash: str
    image: Image.Image
    width: int
    height: int
    format: str
    description: str = ""
    date: str = ""
    ocr_text: str = ""
    labels: str = ""

    @property
    def title(self) -> str:
        """The file name as words: ``red_bicycle-02.jpg`` -> ``red bicycle``."""
        return file_title(self.path)

    @property
    def has_text(self) -> bool:
        """Whether anything names or describes the image (a title word, a description, OCR text,
        the classifier's labels).

        An image without (``IMG_0001.jpg``, no EXIF, nothing written in it) gets no text vector:
        embedding its bare file name would let meaningless text compete with what it shows.
        """
        return bool(self.title or self.description or self.ocr_text or self.labels)

    def item_text(self) -> str:
        """What the item says about the image, for a text-only reader and the text vector."""
        parts = [self.title]
        if self.description and self.description.lower() != self.title.lower():
            parts.append(self.description)
        if self.ocr_text:
            parts.append(f'text in the image: "{self.ocr_text}"')
        if self.labels:
            parts.append(f"picture of: {self.labels}")
        return ". ".join(p for p in parts if p) or self.path.name

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "path": str(self.path.resolve()),
            "file_name": self.path.name,
            "title": self.title,
            "width": self.width,
            "height": self.height,
            "format": self.format,
        }
        for name in ("description", "date", "ocr_text", "labels"):
            if value := getattr(self, name):
                meta[name] = value
        return meta


# Prefixes cameras and phones put in file names: they say nothing about the picture.
_CAMERA_WORDS = frozenset({"img", "dsc", "dscn", "dscf", "dcim", "pxl", "mvimg", "gopr", "vid", "wp", "sam", "imag", "pict"})


def file_title(path: Path) -> str:
    """Words of a file name, without digits and camera prefixes:
    ``red_bicycle-02.jpg`` -> ``red bicycle``, ``IMG_2031.JPG`` and ``DSC00042.jpg`` -> ``""``."""
    words = (re.sub(r"\d+", "", w) for w in re.split(r"[\W_]+", path.stem))
    return " ".join(w for w in words if w and w.lower() not in _CAMERA_WORDS)


def read_image(path: Path, key: str, max_bytes: int, max_side: int = 1024) -> ParsedImage:
    """Read, check and decode one image file (first frame), downscaled to ``max_side``.

    Raises:
        InputError: unreadable, empty, too large (bytes or pixels), corrupt or not an image.
    """
    data, digest = read_image_bytes(path, max_bytes)
    return decode_image(path, key, data, digest, max_side)


def read_image_bytes(path: Path, max_bytes: int) -> tuple[bytes, str]:
    """The file's bytes and their SHA-256, so an unchanged file can be skipped before decoding.

    Raises:
        InputError: unreadable, empty or over ``max_bytes``.
    """
    from ragmm.ingest.readers import read_bytes

    data = read_bytes(path, max_bytes, "downscale it")
    if not data:
        raise InputError(str(path), "empty file; nothing to index")
    return data, hashlib.sha256(data).hexdigest()


def decode_image(path: Path, key: str, data: bytes, digest: str, max_side: int = 1024) -> ParsedImage:
    """Decode the bytes of an image file (first frame), downscaled to ``max_side``.

    Raises:
        InputError: too many pixels, corrupt, or not an image.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # Between 1x and 2x the limit Pillow only warns and would decode anyway.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height, fmt = img.width, img.height, img.format or path.suffix.lstrip(".").upper()
            description, date = _metadata(img)
            img.draft("RGB", (max_side, max_side))  # JPEG: decode at reduced scale
            img.seek(0)  # first frame of a GIF / multi-page TIFF
            img.load()
            small = _downscale(img, max_side)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        limit = (Image.MAX_IMAGE_PIXELS or 0) / 1e6
        raise InputError(str(path), f"too large to decode safely ({str(exc).split(',')[0]}; Pillow's limit is {limit:.0f} megapixels): downscale the file") from None
    except UnidentifiedImageError:
        raise InputError(str(path), f"not an image Pillow can read (corrupt, truncated, or not really a '{path.suffix}'); fix or remove the file") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # how Pillow reports bad pixel data
        raise InputError(str(path), f"corrupt image data ({str(exc)[:100]}); fix or remove the file") from None
    return ParsedImage(path=path, key=key, source_hash=digest, image=small, width=width, height=height, format=fmt, description=description, date=date)


def _downscale(img: Image.Image, max_side: int) -> Image.Image:
    """RGB on white, longer side at most ``max_side``: one new image, the decoded one released."""
    from PIL import Image

    from ragmm.encoders.image_tower import rgb_on_white

    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode in ("1", "I;16", "I;16B", "I", "F", "CMYK", "YCbCr", "LAB", "HSV"):
        img = img.convert("L" if img.mode in ("1", "I;16", "I;16B", "I", "F") else "RGB")
    if max(img.size) > max_side:
        scale = max_side / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.BICUBIC, reducing_gap=2.0)
    return rgb_on_white(img)


def _text(value: Any) -> str:
    """An EXIF / PNG text value as a clean one-line string."""
    if isinstance(value, bytes):
        if value[:8] in (b"ASCII\x00\x00\x00", b"UNICODE\x00"):  # EXIF UserComment header
            value = value[8:].decode("utf-16" if value[:7] == b"UNICODE" else "ascii", errors="ignore")
        elif len(value) % 2 == 0 and value.endswith(b"\x00\x00"):  # XP* tags are UTF-16LE
            value = value.decode("utf-16-le", errors="ignore")
        else:
            value = value.decode("utf-8", errors="ignore")
    elif isinstance(value, tuple):  # XP* tags may come back as a tuple of byte values
        try:
            value = bytes(value).decode("utf-16-le", errors="ignore")
        except (TypeError, ValueError):
            return ""
    text = " ".join(str(value).replace("\x00", " ").split())
    return "" if not text or _NOT_A_DESCRIPTION.search(text) else text[:500]


def _metadata(img: Image.Image) -> tuple[str, str]:
    """(description, date) from EXIF and PNG text chunks."""
    description = date = ""
    try:
        exif = img.getexif()
    except Exception:  # a damaged EXIF block must not cost the image
        exif = None
    if exif:
        for tag in (_DESCRIPTION, _XPTITLE, _XPSUBJECT, _XPCOMMENT):
            if tag in exif and (description := _text(exif[tag])):
                break
        try:
            sub = exif.get_ifd(_EXIF_IFD)
        except Exception:
            sub = {}
        if not description and _USER_COMMENT in sub:
            description = _text(sub[_USER_COMMENT])
        date = _text(sub.get(_DATETIME_ORIGINAL) or exif.get(_DATETIME) or "")
    if not description:
        info = getattr(img, "text", None) or img.info
        for key in _PNG_TEXT_KEYS:
            if isinstance(info.get(key), (str, bytes)) and (description := _text(info[key])):
                break
    return description, date


class OCR:
    """Text in images with ``rapidocr`` (PP-OCR models in ONNX, shipped in its wheel).

    Args:
        min_score: lines recognised with a lower confidence are dropped.

    The engine loads on first use (about 1 s) and is shared by the threads of a process.
    """

    _lock = threading.Lock()

    def __init__(self, min_score: float = 0.7) -> None:
        self.min_score = min_score
        self._engine: Any = None

    @property
    def engine(self) -> Any:
        with self._lock:
            if self._engine is None:
                import logging

                from rapidocr import RapidOCR

                self._engine = RapidOCR(params={"Global.log_level": "error"})
                logging.getLogger("RapidOCR").setLevel(logging.ERROR)
        return self._engine

    def __call__(self, image: Image.Image) -> str:
        """The lines found in ``image``, top to bottom, joined by spaces ("" when none)."""
        import numpy as np

        result = self.engine(np.asarray(image.convert("RGB")))
        texts, scores = getattr(result, "txts", None), getattr(result, "scores", None)
        if not texts:
            return ""
        lines = [" ".join(t.split()) for t, s in zip(texts, scores or [1.0] * len(texts), strict=False) if s >= self.min_score]
        # A lone character is nearly always a texture read as a glyph (a window as "日").
        return " ".join(line for line in lines if sum(c.isalnum() for c in line) >= 2)
