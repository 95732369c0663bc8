"""The image corpus end to end: indexing, text and image queries, mismatches, re-indexing.

The image tower is tiny and random (see ``tests/conftest.py``), so these tests check plumbing:
what is stored, which view finds what, and that an image finds itself; never quality.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from typer.testing import CliRunner

from ragmm.errors import EncoderMismatchError, InputError
from ragmm.types import Query
from tests.conftest import write_tiny_tower_only

NO_OCR = {"index": {"ocr": False}}


def draw(path, colour, shape="square", size=(120, 90), exif_description=None):
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    box = (15, 10, size[0] - 15, size[1] - 10)
    (d.rectangle if shape == "square" else d.ellipse)(box, fill=colour)
    kwargs = {}
    if exif_description:
        exif = Image.Exif()
        exif[0x010E] = exif_description
        kwargs["exif"] = exif
    img.save(path, **kwargs)
    return path


@pytest.fixture
def gallery(tmp_path):
    root = tmp_path / "gallery"
    root.mkdir()
    draw(root / "red_square.png", (220, 30, 30))
    draw(root / "IMG_0001.jpg", (30, 60, 220), "circle", exif_description="a blue balloon over a field")
    draw(root / "green_box.webp", (30, 180, 60))
    (root / "lighthouse.md").write_text("Lighthouses warn ships of rocks with a bright light at night.\n")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    (root / "fake.jpg").write_text("not really a photo")
    return root


def test_index_images_and_text_together(make_pipeline, gallery):
    pipe = make_pipeline(**NO_OCR)
    report = pipe.index([gallery], progress=False)
    assert report.items["image"] == 3 and report.items["paragraph"] == 1
    skipped = {s.path.rsplit("/", 1)[-1]: s.reason for s in report.skipped}
    assert set(skipped) == {"broken.png", "fake.jpg"}
    assert "fix or remove the file" in skipped["broken.png"]
    info = {c.name: c for c in pipe.corpora()}
    assert info["image"].items == 3 and info["image"].modality == "image"

    # what an image item holds: file-name words, EXIF description, the absolute path
    hits = pipe.retrieve("a blue balloon over a field", k=3, corpora=["image"])
    top = hits[0]
    assert top.item.source.endswith("IMG_0001.jpg")
    assert "blue balloon" in top.item.text and top.item.metadata["description"] == "a blue balloon over a field"
    assert top.item.image_path == str((gallery / "IMG_0001.jpg").resolve())
    assert set(top.scores) - {"retrieval"} == {"image", "text"}  # both views scored for every hit (and the fused score)
    assert top.score == pytest.approx(max(top.scores.values()))
    assert top.to_dict()["path"] == top.item.image_path

    # the same files again: nothing new; a changed image replaces its item
    again = pipe.index([gallery], progress=False)
    assert again.files_indexed == 0 and again.files_unchanged == 4
    draw(gallery / "red_square.png", (200, 0, 0), size=(100, 100))
    changed = pipe.index([gallery], progress=False)
    assert changed.files_replaced == 1 and pipe.store.count("image") == 3


def test_image_query_finds_the_same_image(make_pipeline, gallery):
    pipe = make_pipeline(**NO_OCR)
    pipe.index([gallery], progress=False)
    hits = pipe.retrieve(Query("what is this?", image=str(gallery / "green_box.webp")), k=3, corpora=["image"])
    assert hits[0].item.source.endswith("green_box.webp")
    assert hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert set(hits[0].scores) - {"retrieval"} == {"image"}  # an image query searches the image view

    # image-to-text: the tiny tower is in MiniLM's space, so text corpora are searched too
    mixed = pipe.retrieve(Query("", image=str(gallery / "green_box.webp")), k=5, corpora=["image", "paragraph"])
    assert {h.item.corpus for h in mixed} == {"image", "paragraph"}

    answer = pipe.ask("what is this and where else does it appear?", image=gallery / "green_box.webp", corpora=["image"], k=2)
    assert answer.text.startswith("Most similar:") and "[1]" in answer.text
    assert answer.citations[0].hit.item.source.endswith("green_box.webp")


def test_images_nothing_describes_get_no_text_vector(make_pipeline, tmp_path):
    """IMG_0002.jpg with no EXIF and no text in it: only its pixels can find it, so its bare file
    name is not embedded to compete with what other images show."""
    root = tmp_path / "camera"
    root.mkdir()
    draw(root / "IMG_0002.jpg", (200, 200, 30))
    draw(root / "yellow_square.png", (200, 200, 30))
    pipe = make_pipeline(**NO_OCR)
    pipe.index([root], progress=False)
    points = {p.payload["source"].rsplit("/", 1)[-1]: p for p in pipe.store.scroll("image", with_vectors=True)}
    assert set(points["IMG_0002.jpg"].vectors) == {"image"} and points["IMG_0002.jpg"].payload["text"] == "IMG_0002.jpg"
    assert set(points["yellow_square.png"].vectors) == {"image", "text"}
    hits = {h.item.source.rsplit("/", 1)[-1]: h for h in pipe.retrieve("yellow square", k=2, corpora=["image"])}
    views = {name: set(h.scores) - {"retrieval"} for name, h in hits.items()}
    assert views["IMG_0002.jpg"] == {"image"} and views["yellow_square.png"] == {"image", "text"}


def test_missing_query_image_names_the_file(make_pipeline, gallery, tmp_path):
    pipe = make_pipeline(**NO_OCR)
    pipe.index([gallery], progress=False)
    with pytest.raises(InputError, match="nope.png"):
        pipe.retrieve(Query("x", image=str(tmp_path / "nope.png")), corpora=["image"])


def test_other_image_encoder_is_a_mismatch(make_pipeline, gallery, tmp_path, text_encoder):
    from ragmm.encoders.image_text import ImageTextEncoder

    pipe = make_pipeline(**NO_OCR)
    pipe.index([gallery], progress=False)
    pipe.close()
    other = write_tiny_tower_only(tmp_path / "other-tower", seed=1)
    pipe2 = make_pipeline(**NO_OCR)
    pipe2.encoders.use("image", ImageTextEncoder(ImageTextEncoder.Config(model=str(other), precision="fp32")))
    with pytest.raises(EncoderMismatchError, match="image encoder"):
        pipe2.retrieve("a red square", corpora=["image"])
    with pytest.raises(EncoderMismatchError):
        pipe2.index([gallery / "red_square.png"], progress=False)


def test_without_an_image_encoder_images_are_skipped(make_pipeline, gallery):
    pipe = make_pipeline(encoders={"image": {"type": "none"}}, **NO_OCR)
    report = pipe.index([gallery], progress=False)
    assert report.items.get("image", 0) == 0 and report.items["paragraph"] == 1
    reasons = [s.reason for s in report.skipped if s.path.endswith("red_square.png")]
    assert reasons and "[encoders.image]" in reasons[0]


def test_encoder_in_another_space_searches_only_images(make_pipeline, gallery, tmp_path):
    """An image encoder whose text side is not ragmm's text encoder (like CLIP) still serves
    the image corpus; an image query then leaves text corpora out."""
    from ragmm.encoders.image_text import ImageTextEncoder

    folder = write_tiny_tower_only(tmp_path / "foreign")
    enc = ImageTextEncoder(ImageTextEncoder.Config(model=str(folder), precision="fp32"))
    enc.text_space = "some-other-text-model"
    pipe = make_pipeline(**NO_OCR)
    pipe.encoders.use("image", enc)
    pipe.index([gallery], progress=False)
    hits = pipe.retrieve(Query("", image=str(gallery / "red_square.png")), k=5, corpora=["image", "paragraph"])
    assert hits and {h.item.corpus for h in hits} == {"image"}
    assert pipe.retrieve("a red square", k=2, corpora=["image"])  # text query: encoded by the image encoder too


@pytest.mark.slow
def test_ocr_text_is_stored_and_searchable(make_pipeline, tmp_path):
    root = tmp_path / "scans"
    root.mkdir()
    img = Image.new("RGB", (520, 160), "white")
    ImageDraw.Draw(img).text((20, 40), "FIRE EXIT", fill="black", font=ImageFont.load_default(64))
    img.save(root / "scan_0007.png")
    draw(root / "plain.png", (120, 120, 120))
    pipe = make_pipeline()
    pipe.index([root], progress=False)
    hits = pipe.retrieve("fire exit", k=2, corpora=["image"])
    assert hits[0].item.source.endswith("scan_0007.png")
    assert "FIRE EXIT" in hits[0].item.metadata["ocr_text"].upper()
    assert hits[0].scores["text"] > hits[0].scores["image"]  # found by what is written in it


def test_cli_ask_image_json_and_open(tmp_path, monkeypatch, gallery):
    from ragmm.cli.app import app

    tower = write_tiny_tower_only(tmp_path / "tower")
    (tmp_path / "ragmm.toml").write_text(
        f'[generator]\ntype = "extractive"\n[index]\nocr = false\n[encoders.image]\ntype = "image-text"\nmodel = "{tower}"\nprecision = "fp32"\n'
    )
    monkeypatch.chdir(tmp_path)
    runner = CliRunner(env={"COLUMNS": "250"})
    res = runner.invoke(app, ["index", str(gallery), "--quiet"])
    assert res.exit_code == 0 and "3 image" in res.output, res.output
    res = runner.invoke(app, ["ask", "--image", str(gallery / "red_square.png"), "--json", "--corpus", "image"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["evidence"][0]["path"] == str((gallery / "red_square.png").resolve())
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no xdg-open: --open prints the paths
    res = runner.invoke(app, ["ask", "--image", str(gallery / "red_square.png"), "--open", "--corpus", "image"])
    assert res.exit_code == 0 and "image: " in res.output and "red_square.png" in res.output
    res = runner.invoke(app, ["ask", "--image", str(tmp_path / "missing.png")])
    assert res.exit_code == 1 and "missing.png: query image not found" in res.output


def test_image_vectors_are_unit_norm(image_encoder, gallery):
    vecs = image_encoder.encode_image([str(gallery / "red_square.png"), Image.open(gallery / "green_box.webp")])
    assert vecs.shape == (2, 384) and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)


def test_unchanged_images_are_not_decoded_again(make_pipeline, gallery, monkeypatch):
    import ragmm.ingest.image_reader as indexer

    pipe = make_pipeline(**NO_OCR)
    pipe.index([gallery], progress=False)

    decoded = []
    real = indexer.decode_image

    def counting(path, *args, **kwargs):
        decoded.append(path.name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(indexer, "decode_image", counting)
    again = pipe.index([gallery], progress=False)
    assert again.files_unchanged == 4 and again.files_indexed == 0
    assert sorted(decoded) == ["broken.png", "fake.jpg"]  # only the files skipped last time are tried again
