"""Image-caption training pairs from public-domain clipart in Debian packages.

Sources (``--sources``, comma separated):

``openclipart`` (``openclipart-png``, always used)
    About 8,100 PNGs under ``/usr/share/openclipart/png/<category>/...``. The title is in the
    file name, cut to about 25 characters and often followed by the author's name
    (``full_moon_dan_gerhards_01.png``). Only words found in lower case in an English word list
    (``wamerican``) are kept, which strips most author names and the cut-off last word; the
    first word may also be a capitalised dictionary word (``ireland.png`` -> "Ireland"). When
    no word is left, the category folder is the caption.
``emoji`` (``fonts-noto-color-emoji`` + PyPI ``emoji``)
    About 1,900 emoji drawn with Noto Color Emoji and their English names; skin-tone variants,
    flags and keycaps are left out.
``scratch`` (``scratch``)
    About 300 Scratch costumes with short names (``bat1-a`` -> "bat").

Captions are short sentences ("A full moon.", "An apple."), the form of the held-out
tuxpaint captions: DATA.md measured a fifth more recall from that alone. Images are letterboxed
on white to ``--size`` pixels and written once as small PNGs, so training decodes 8k tiny files
per epoch rather than 160 MB of large ones. Files over Pillow's decompression-bomb limit (two
openclipart stop signs of 623 megapixels) and unreadable files are skipped and counted.

Never add an evaluation source (``tuxpaint-stamps-default``) here.

Writes, under ``--out``:
    images/<source>/<n>.png   the resized images
    train.jsonl               {"caption", "image" (absolute path), "source", "origin"}
    dev/queries.jsonl         a development split held out of training, for choosing between
    dev/corpus.jsonl          runs (never the evaluation source): captions with crc32 % 20 == 0,
    dev/qrels.tsv             so every image of a caption is on the same side
    skipped.tsv               origin file, reason

Example:
    python -m ragmm.training.data.clipart --out data/clipart
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

OPENCLIPART = Path("/usr/share/openclipart/png")
SCRATCH = Path("/usr/share/scratch/Media/Costumes")
EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
WORDS = Path("/usr/share/dict/words")
SOURCES = ("openclipart", "emoji", "scratch")
PACKAGES = {"openclipart": ["openclipart-png", "wamerican"], "emoji": ["fonts-noto-color-emoji"], "scratch": ["scratch"]}
_READY = {"openclipart": OPENCLIPART, "emoji": EMOJI_FONT, "scratch": SCRATCH}
_IMAGE_SUFFIXES = {".png", ".gif", ".jpg", ".jpeg", ".bmp"}


@dataclass(frozen=True, slots=True)
class Pair:
    caption: str
    origin: str  # the original file (or emoji character) the image came from
    source: str


def ensure_packages(sources: list[str]) -> None:
    """Install the Debian packages of ``sources`` whose files are missing."""
    missing = [pkg for s in sources if not _READY[s].exists() or (s == "openclipart" and not WORDS.exists()) for pkg in PACKAGES[s]]
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise SystemExit(f"missing data and no apt-get; install the Debian packages {' '.join(missing)}")
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True)


def load_words(path: Path = WORDS) -> tuple[set[str], set[str]]:
    """(lower-case words, capitalised words) of an English word list."""
    lower: set[str] = set()
    proper: set[str] = set()
    for line in path.read_text(encoding="utf-8", errors="ignore").splitlines():
        w = line.strip()
        if not w.isalpha():
            continue
        if w.islower():
            lower.add(w)
        elif w[0].isupper() and w[1:].islower():
            proper.add(w.lower())
    return lower, proper


def sentence(phrase: str) -> str:
    """``"full moon"`` -> ``"A full moon."``; a capitalised name stays bare (``"Ireland."``)."""
    phrase = " ".join(phrase.split())
    if not phrase:
        return ""
    if phrase[0].isupper():
        return f"{phrase}."
    article = "An" if phrase[0] in "aeiou" else "A"
    return f"{article} {phrase}."


def title_words(stem: str, lower: set[str], proper: set[str]) -> str:
    """Dictionary words of a file-name title; the first may be a proper noun."""
    stem = re.sub(r"_\d+[a-z]?$", "", stem)
    tokens = [t for t in re.split(r"[^a-zA-Z]+", stem.lower()) if len(t) > 1]
    out = []
    for i, t in enumerate(tokens):
        if t in lower:
            out.append(t)
        elif i == 0 and t in proper:
            out.append(t.capitalize())
    return " ".join(out)


def category_words(rel_dir: Path, lower: set[str]) -> str:
    """The deepest category folder with a dictionary word (``animals/mammals`` -> "mammals")."""
    for part in reversed(rel_dir.parts):
        words = [t for t in re.split(r"[^a-zA-Z]+", part.lower()) if t in lower and len(t) > 1]
        if words:
            return " ".join(words)
    return ""


def openclipart_pairs(root: Path = OPENCLIPART) -> Iterator[tuple[Path, str]]:
    lower, proper = load_words()
    for path in sorted(root.rglob("*.png")):
        rel = path.relative_to(root)
        phrase = title_words(path.stem, lower, proper) or category_words(rel.parent, lower)
        if phrase:
            yield path, sentence(phrase)


def scratch_pairs(root: Path = SCRATCH) -> Iterator[tuple[Path, str]]:
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in _IMAGE_SUFFIXES:
            continue
        name = re.sub(r"[-_ ]?[a-z]?$", "", re.sub(r"\d+", " ", path.stem.lower())) if re.search(r"\d", path.stem) else path.stem.lower()
        name = re.sub(r"[^a-z]+", " ", name).strip()
        if "Letters" in path.relative_to(root).parts and len(name) == 1:
            yield path, f"The letter {name.upper()}."
        elif name:
            yield path, sentence(name)


def emoji_pairs() -> Iterator[tuple[str, str]]:
    import emoji

    for char, data in emoji.EMOJI_DATA.items():
        name = data.get("en", "").strip(":")
        if data.get("status") != emoji.STATUS["fully_qualified"] or "skin_tone" in name or name.startswith(("flag", "keycap")):
            continue
        if any(0x1F1E6 <= ord(c) <= 0x1F1FF for c in char):  # regional-indicator pairs: country flags
            continue
        phrase = re.sub(r"[^a-zA-Z]+", " ", name).strip()
        if phrase:
            yield char, sentence(phrase[0].lower() + phrase[1:] if not phrase[:2].isupper() else phrase)


def render_emoji(char: str, font: object) -> object:
    """The emoji drawn in colour on transparency, cropped to its ink (``None`` if the font has no glyph)."""
    from PIL import Image, ImageDraw

    canvas = Image.new("RGBA", (160, 160), (255, 255, 255, 0))
    ImageDraw.Draw(canvas).text((8, 8), char, font=font, embedded_color=True)
    box = canvas.getbbox()
    return canvas.crop(box) if box else None


def write(out: Path, sources: list[str], size: int = 128, progress: bool = True) -> dict[str, int]:
    """Write the pairs and resized images; returns counts per source and skipped files."""
    from PIL import ImageFont
    from tqdm.auto import tqdm

    from ragmm.encoders.image_tower import load_image
    from ragmm.errors import InputError

    ensure_packages(sources)
    counts: dict[str, int] = {}
    skipped: list[tuple[str, str]] = []
    dev: dict[str, list[str]] = {}  # caption -> image paths
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "train.jsonl", "w", encoding="utf-8") as fh:
        for source in sources:
            folder = out / "images" / source
            folder.mkdir(parents=True, exist_ok=True)
            if source == "emoji":
                font = ImageFont.truetype(str(EMOJI_FONT), 109)
                items: list[tuple[object, str]] = list(emoji_pairs())
            else:
                items = list(openclipart_pairs() if source == "openclipart" else scratch_pairs())
            n = 0
            for origin, caption in tqdm(items, desc=source, unit="img", disable=not progress):
                try:
                    img = render_emoji(str(origin), font) if source == "emoji" else origin
                    if img is None:
                        skipped.append((str(origin), "the font draws nothing for it"))
                        continue
                    resized = load_image(img, size)
                except InputError as exc:
                    skipped.append((exc.path, exc.reason))
                    continue
                target = folder / f"{n:05d}.png"
                resized.save(target, optimize=False)
                n += 1
                if held_out(caption):
                    dev.setdefault(caption, []).append(str(target.resolve()))
                    continue
                fh.write(json.dumps({"caption": caption, "image": str(target.resolve()), "source": source, "origin": str(origin)}, ensure_ascii=False) + "\n")
            counts[source] = n
    counts["dev_captions"] = write_dev(out / "dev", dev)
    with open(out / "skipped.tsv", "w", encoding="utf-8") as fh:
        for origin, reason in skipped:
            fh.write(f"{origin}\t{reason}\n")
    counts["skipped"] = len(skipped)
    return counts


def held_out(caption: str) -> bool:
    """Whether a caption belongs to the development split (about 5%)."""
    return zlib.crc32(caption.encode("utf-8")) % 20 == 0


def write_dev(folder: Path, dev: dict[str, list[str]]) -> int:
    """Queries (captions), corpus (images) and qrels of the development split; returns the query count."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as q, open(folder / "corpus.jsonl", "w", encoding="utf-8") as c, open(folder / "qrels.tsv", "w", encoding="utf-8") as r:
        for i, (caption, images) in enumerate(sorted(dev.items())):
            q.write(json.dumps({"id": f"q{i:04d}", "text": caption}, ensure_ascii=False) + "\n")
            for image in images:
                doc = Path(image).relative_to((folder.parent / "images").resolve()).as_posix()
                c.write(json.dumps({"id": doc, "image": image}) + "\n")
                r.write(f"q{i:04d}\t0\t{doc}\t1\n")
    return len(dev)


def subsample(train: Path, every: int) -> Path:
    """Every ``every``-th row of ``train`` (in file order, so each source keeps its share) as
    ``train-1in<every>.jsonl`` beside it: a smaller training set when a run must be short."""
    out = train.with_name(f"train-1in{every}.jsonl")
    with open(train, encoding="utf-8") as src, open(out, "w", encoding="utf-8") as dst:
        dst.writelines(line for i, line in enumerate(src) if i % every == 0)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("data/clipart"))
    ap.add_argument("--sources", default=",".join(SOURCES), help=f"comma-separated subset of {', '.join(SOURCES)}")
    ap.add_argument("--size", type=int, default=128, help="side of the stored images in pixels")
    ap.add_argument("--subsample", type=int, default=0, metavar="N", help="only write OUT/train-1inN.jsonl: every N-th row of an existing OUT/train.jsonl")
    args = ap.parse_args(argv)
    if args.subsample:
        if args.subsample < 2 or not (args.out / "train.jsonl").is_file():
            sys.exit(f"error: --subsample needs N >= 2 and an existing {args.out / 'train.jsonl'} (build it first without --subsample)")
        print(subsample(args.out / "train.jsonl", args.subsample))
        return
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    unknown = sorted(set(sources) - set(SOURCES))
    if unknown or "openclipart" not in sources:
        sys.exit(f"error: --sources must include openclipart and name only {', '.join(SOURCES)} (got {args.sources})")
    print(json.dumps(write(args.out, sources, args.size)))


if __name__ == "__main__":
    main()
