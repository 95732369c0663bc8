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

``--fit-fusion MODEL`` fits how the image corpus fuses its two views for an image encoder
(:class:`ragmm.retrievers.image.Calibration`), on the development split only. The dev images are
indexed twice, as ``ragmm index`` would: numbered (``dev/images/openclipart/00398.png``: the
text view holds only the encoder's labels) and under their original file names
(``dev/images-named/openclipart/computer/buttons/back.png``, ``dev/qrels-named.tsv``: the text
view says the caption). Each view's cosine statistics come from every query-image pair of the
numbered set; the labels' weight is the one of :data:`FUSION_WEIGHTS` with the best numbered
Recall@10 among those whose named Recall@10 is no lower than ``max`` fusion's. Writes
``fusion.json`` into ``--fusion-out`` (default: the model's folder) and the dev report under
``--fusion-report``.

With ``--hub-weight W`` above 0 (default :data:`HUB_WEIGHT`, the share the head probe's held-out
sources chose: ``python -m ragmm.training.head_probe --runs "...,hub=0.25"``) it first writes the
hubness correction's caption bank beside the model's weights (``hub_bank.npy``: the text
encoder's embeddings of the training split's distinct captions, never the dev split's), so the
dev images are indexed with their hubness, and fits the statistics on the corrected image cosines.

Example:
    python -m ragmm.training.data.clipart --out data/clipart
    python -m ragmm.training.data.clipart --out data/clipart --fit-fusion ragmm-lite0
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
from typing import Any

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


def dev_origins(out: Path) -> dict[str, str]:
    """``{image relative to out/images: origin}`` for every written image, found again by
    listing the sources in the order :func:`write` did (skipping what ``skipped.tsv`` lists)."""
    skipped = {line.split("\t", 1)[0] for line in (out / "skipped.tsv").read_text(encoding="utf-8").splitlines() if line}
    origins: dict[str, str] = {}
    for source in SOURCES:
        if not (out / "images" / source).is_dir():
            continue
        items = emoji_pairs() if source == "emoji" else openclipart_pairs() if source == "openclipart" else scratch_pairs()
        n = 0
        for origin, _caption in items:
            if str(origin) in skipped:
                continue
            origins[f"{source}/{n:05d}.png"] = str(origin)
            n += 1
    return origins


def named_file(source: str, origin: str) -> str:
    """The file name an image had before it was numbered (an emoji: its English name)."""
    if source == "openclipart":
        return Path(origin).relative_to(OPENCLIPART).as_posix()
    if source == "scratch":
        return Path(origin).relative_to(SCRATCH).as_posix()
    import emoji

    return re.sub(r"[^A-Za-z0-9]+", "_", emoji.EMOJI_DATA[origin]["en"].strip(":")).strip("_") + ".png"


def write_dev_folders(out: Path) -> dict[str, Path]:
    """The dev images as folders to index: ``numbered`` (as stored) and ``named`` (original file
    names, with ``dev/qrels-named.tsv``). Files are symlinks; returns ``{setting: folder}``."""
    import os

    dev = out / "dev"
    rows = [json.loads(line) for line in (dev / "corpus.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    origins = dev_origins(out)
    renamed: dict[str, str] = {}
    for r in rows:
        source = r["id"].split("/", 1)[0]
        renamed[r["id"]] = f"{source}/{named_file(source, origins[r['id']])}"
    if len(set(renamed.values())) != len(renamed):
        raise SystemExit(f"{dev}: two dev images share an original file name; cannot write the named folder")
    folders = {"numbered": dev / "images", "named": dev / "images-named"}
    for folder in folders.values():
        if folder.exists():
            shutil.rmtree(folder)
    for r in rows:
        for setting, rel in (("numbered", r["id"]), ("named", renamed[r["id"]])):
            target = folders[setting] / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(Path(r["image"]).resolve(), target)
    with open(dev / "qrels-named.tsv", "w", encoding="utf-8") as fh:
        for line in (dev / "qrels.tsv").read_text(encoding="utf-8").splitlines():
            q, zero, doc, rel = line.split("\t")
            fh.write(f"{q}\t{zero}\t{renamed[doc]}\t{rel}\n")
    return folders


FUSION_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
HUB_WEIGHT = 0.25  # the hubness correction's share, chosen by the head probe on the held-out sources


def view_scores(pipe: Any, queries: list[str]) -> tuple[list[str], Any, Any, Any, Any]:
    """Every query's cosine with every image of the ``image`` corpus, per view: doc ids,
    ``(Q, N)`` image-view and ``(Q, N)`` text-view scores (NaN where an image has no text),
    ``(N,)`` whether each image's text is its own (name, description, OCR), not only labels, and
    ``(N,)`` each image's hubness (NaN where it was indexed without one)."""
    import numpy as np

    from ragmm.evaluation.retrieval import doc_id
    from ragmm.retrievers.image import own_text

    points = list(pipe.store.scroll("image", with_vectors=True))
    text_encoder, image_encoder = pipe.encoder("text"), pipe.encoder("image")
    q_text = np.asarray(text_encoder.encode_query(queries), np.float32)  # (Q, D)
    shared = getattr(image_encoder, "text_space", None) == text_encoder.name
    q_image = q_text if shared else np.asarray(image_encoder.encode_query(queries), np.float32)

    def unit(a: Any) -> Any:
        return a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)

    image = np.stack([np.asarray(p.vectors["image"], np.float32) for p in points])  # (N, D)
    text = np.stack([np.asarray(p.vectors.get("text", np.full(q_text.shape[1], np.nan)), np.float32) for p in points])  # (N, D)
    own = np.array([own_text(p.payload.get("metadata") or {}) for p in points])
    hub = np.array([float((p.payload.get("metadata") or {}).get("hub", np.nan)) for p in points])
    return [doc_id(p.payload) for p in points], unit(q_image) @ unit(image).T, unit(q_text) @ unit(text).T, own, hub


def recall_at_10(fused: Any, image: Any, text: Any, relevant: Any, depth: int = 100) -> float:
    """Recall@10 of ``fused`` (Q, N) scores over the union of each view's top ``depth``: the
    candidates the image retriever sees when asked for ``depth`` hits (NaN: not searchable)."""
    import numpy as np

    pool = np.zeros(fused.shape, bool)
    for view in (image, text):
        np.put_along_axis(pool, np.argsort(-np.nan_to_num(view, nan=-np.inf), axis=1)[:, :depth], True, axis=1)
    top = np.argsort(-np.where(pool, fused, -np.inf), axis=1)[:, :10]
    return float(np.mean(np.take_along_axis(relevant, top, axis=1).sum(1) / relevant.sum(1)))


def store_slug(image_model: str) -> str:
    """A store folder name for an image model: its name plus a fingerprint of its files.

    Evaluation stores are reused between runs (the ledger skips files it has indexed), so a
    retrained model under the same name or folder must get a store of its own, not the vectors
    of the model it replaced.
    """
    import hashlib

    from ragmm.encoders.image_text import tower_folder

    folder = tower_folder(image_model)
    digest = hashlib.sha1()
    if folder.is_dir():
        for f in sorted(folder.rglob("*")):
            if f.is_file() and f.suffix in (".safetensors", ".json", ".bin", ".npy"):
                st = f.stat()
                digest.update(f"{f.relative_to(folder)}|{st.st_size}|{st.st_mtime_ns}".encode())
    name = re.sub(r"[^A-Za-z0-9]+", "-", image_model).strip("-")[-40:]
    return f"{name}-{digest.hexdigest()[:8]}"


def write_hub_bank(out: Path, image_model: str, text_encoder: Any) -> Path:
    """Write ``hub_bank.npy`` beside ``image_model``'s weights: ``text_encoder``'s embeddings of
    the distinct captions of ``out/train.jsonl`` (float16), the hubness correction's bank."""
    import numpy as np

    from ragmm.encoders.hubness import HUB_BANK_FILE
    from ragmm.encoders.image_text import tower_folder

    captions = sorted({json.loads(line)["caption"] for line in (out / "train.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()})
    vectors = np.asarray(text_encoder.encode_document(captions), np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    path = tower_folder(image_model) / HUB_BANK_FILE
    np.save(path, vectors.astype(np.float16))
    return path


def fit_fusion(
    out: Path, image_model: str, weights: tuple[float, ...] = FUSION_WEIGHTS, tolerance: float = 0.0, report_dir: Path | None = None, progress: bool = True, hub_weight: float = HUB_WEIGHT
) -> dict[str, Any]:
    """Fit the image corpus's ``calibrated`` fusion for ``image_model`` on the dev split (see the
    module docstring); returns ``{"calibration", "grid", "runs"}``."""
    import numpy as np

    from ragmm.config import load_config
    from ragmm.evaluation.retrieval import evaluate_retrieval, load_qrels
    from ragmm.pipeline import Pipeline
    from ragmm.retrievers.image import Calibration, ImageCorpusRetriever, ViewStats, hub_corrected

    dev = out / "dev"
    folders = write_dev_folders(out)
    qrels_files = {"numbered": dev / "qrels.tsv", "named": dev / "qrels-named.tsv"}
    queries = [json.loads(line) for line in (dev / "queries.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    scores: dict[str, tuple[Any, Any, Any, Any]] = {}
    hubs: dict[str, Any] = {}
    if hub_weight > 0:  # the bank first: the dev images are indexed with their hubness
        import tempfile

        with tempfile.TemporaryDirectory() as tmp, Pipeline(load_config(None, {"store": {"type": "edge", "path": tmp}, "generator": {"type": "extractive"}})) as pipe:
            write_hub_bank(out, image_model, pipe.encoder("text"))
    slug = store_slug(image_model)  # after the bank: a store indexed without it is not reused
    sections = {setting: {
        "store": {"type": "edge", "path": str((dev / f"store-{slug}-{folder.name}").resolve())},
        "encoders": {"image": {"type": "image-text", "model": image_model}},
        "index": {"ocr": False},  # the dev images are drawings with little text; the point is names vs labels
        "generator": {"type": "extractive"},
    } for setting, folder in folders.items()}
    text_encoder_name = ""
    for setting, folder in folders.items():
        with Pipeline(load_config(None, sections[setting])) as pipe:
            pipe.index([folder], corpus_root=folder, progress=progress)
            text_encoder_name = pipe.encoder("text").name
            qrels = load_qrels(qrels_files[setting])
            judged = [q for q in queries if q["id"] in qrels]
            ids, image, text, own, hubs[setting] = view_scores(pipe, [q["text"] for q in judged])
            position = {d: j for j, d in enumerate(ids)}
            relevant = np.zeros(image.shape, bool)  # (Q, N)
            for i, q in enumerate(judged):
                for d in qrels[q["id"]]:
                    relevant[i, position[d]] = True
            scores[setting] = (image, text, own, relevant)
    raw = dict(scores)  # max fusion (the named files' reference) has no correction
    hub_mean = float(np.nanmean(hubs["numbered"])) if hub_weight > 0 else 0.0
    if hub_weight > 0:  # as the retriever corrects: an image without a hubness counts as the mean
        for setting, (image, text, own, relevant) in scores.items():
            scores[setting] = (hub_corrected(image, np.nan_to_num(hubs[setting], nan=hub_mean)[None, :], hub_weight, hub_mean), text, own, relevant)
    image, text, _, _ = scores["numbered"]
    stats = {"image": ViewStats(mean=float(image.mean()), std=float(image.std())), "text": ViewStats(mean=float(np.nanmean(text)), std=float(np.nanstd(text)))}
    # As the retriever fuses (retrievers.image.fuse_calibrated): an image with text of its own
    # by the max of its cosines, one with labels only by the sum of z-scores in the image view's
    # units, one without text (NaN) by its image cosine.
    grid: list[dict[str, Any]] = [{"fusion": "max", **{s: recall_at_10(np.fmax(img, txt), img, txt, rel) for s, (img, txt, _, rel) in raw.items()}}]
    for w in weights:
        row: dict[str, Any] = {"fusion": "calibrated", "text_weight": w}
        for setting, (img, txt, own, rel) in scores.items():
            calibrated = img + w * stats["image"].std * np.nan_to_num((txt - stats["text"].mean) / stats["text"].std)  # (Q, N)
            row[setting] = recall_at_10(np.where(own[None, :] & ~np.isnan(txt), np.fmax(img, txt), calibrated), img, txt, rel)
        grid.append(row)
    allowed = [r for r in grid[1:] if r["named"] >= grid[0]["named"] - tolerance]
    if not allowed:
        raise SystemExit(f"no text weight of {weights} keeps named-file Recall@10 within {tolerance} of max fusion ({grid[0]['named']:.3f}); keep fusion = \"max\"")
    best = max(allowed, key=lambda r: (round(r["numbered"], 6), -r["text_weight"]))
    calibration = Calibration(
        image=stats["image"], text=stats["text"], text_weight=best["text_weight"], text_encoder=text_encoder_name, hub_weight=hub_weight, hub_mean=hub_mean,
        fitted_on=f"ragmm.training.data.clipart --fit-fusion {image_model}: dev split, {len(queries)} captions, {image.shape[1]} images (numbered and named)",
    )
    # The figures as `ragmm ask` searches: the retriever itself, per setting and fusion.
    runs: dict[str, dict[str, float]] = {}
    if report_dir is not None:
        for setting, folder in folders.items():
            with Pipeline(load_config(None, sections[setting])) as pipe:
                text_encoder, image_encoder = pipe.encoder("text"), pipe.encoder("image")
                variants = {
                    "image": dict(views=["image"], fusion="max"),
                    "text": dict(views=["text"], fusion="max"),
                    "fused-max": dict(fusion="max"),
                    "fused-calibrated": dict(fusion="calibrated", calibration=calibration),
                }
                for name, kwargs in variants.items():
                    retriever = ImageCorpusRetriever(pipe.store, text_encoder, image_encoder, pipe.embeddings, **kwargs)  # type: ignore[arg-type]
                    r = evaluate_retrieval(dev / "queries.jsonl", qrels_files[setting], text_encoder, store=pipe.store, corpus="image", out_dir=report_dir / setting / name,
                                           retriever=retriever, embeddings=pipe.embeddings, vector="text" if name == "text" else "image", label=f"dev {setting}: {name}", progress=progress)
                    runs[f"{setting}/{name}"] = r.metrics
    return {"calibration": calibration.model_dump(), "grid": grid, "runs": runs}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("data/clipart"))
    ap.add_argument("--sources", default=",".join(SOURCES), help=f"comma-separated subset of {', '.join(SOURCES)}")
    ap.add_argument("--size", type=int, default=128, help="side of the stored images in pixels")
    ap.add_argument("--subsample", type=int, default=0, metavar="N", help="only write OUT/train-1inN.jsonl: every N-th row of an existing OUT/train.jsonl")
    ap.add_argument("--fit-fusion", default=None, metavar="MODEL", help="fit the image corpus's calibrated fusion for this image encoder (ragmm-lite0 or a trained folder) on the dev split")
    ap.add_argument("--fusion-out", type=Path, default=None, help="folder for fusion.json (default: MODEL's own folder)")
    ap.add_argument("--hub-weight", type=float, default=HUB_WEIGHT, help="the hubness correction's share (0: none, and no caption bank is written)")
    ap.add_argument("--fusion-report", type=Path, default=Path("eval/fusion-dev"), help="folder for the dev report (summary.json, per-run reports)")
    args = ap.parse_args(argv)
    if args.fit_fusion:
        from ragmm.encoders.image_text import tower_folder
        from ragmm.retrievers.image import FUSION_FILE

        result = fit_fusion(args.out, args.fit_fusion, report_dir=args.fusion_report, hub_weight=args.hub_weight)
        target = args.fusion_out or tower_folder(args.fit_fusion)
        (target / FUSION_FILE).write_text(json.dumps(result["calibration"], indent=2) + "\n", encoding="utf-8")
        args.fusion_report.mkdir(parents=True, exist_ok=True)
        (args.fusion_report / "summary.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(json.dumps({"fusion": str(target / FUSION_FILE), **result}, indent=2))
        return
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
