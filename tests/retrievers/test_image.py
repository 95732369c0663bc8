"""The image corpus's two-view fusion on hand-built vectors, through a real Edge store: cosines on
different scales are put on one (``calibrated``: labels-only text summed with the image view as
z-scores, text of its own by max), ``max`` and ``mean`` stay available, and the configuration
is checked."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from ragmm.errors import ConfigError
from ragmm.protocols import CollectionSpec, StoredPoint, VectorSpec
from ragmm.retrievers.image import FUSION_FILE, Calibration, ImageCorpusRetriever, ViewStats, encoder_calibration, fuse_calibrated, own_text
from ragmm.types import Item, Query

D = 16
QUERY = "a red fox"
# The image view's cosines run around 0.05, the text view's around 0.5 (a caption against
# "picture of: ..." labels shares words even when wrong): the scales of an image-text and a
# text-text cosine. Under max the labels' scale wins; calibrated, each view counts by its z-score.
CAL = Calibration(image=ViewStats(mean=0.05, std=0.1), text=ViewStats(mean=0.5, std=0.1), text_weight=0.5)
# (image-view cosine, text-view cosine, file name words) of each file; the text of all but the
# named one is only the image encoder's labels
ITEMS = {
    "0001.png": (0.35, 0.50, ""),  # looks like a fox (z 3), labels say nothing special (z 0)
    "0002.png": (0.05, 0.62, ""),  # an ordinary picture, labels a little closer (z 1.2)
    "0003.png": (0.10, 0.45, ""),  # z 0.5 and -0.5
    "red-fox.png": (0.00, 0.95, "red fox"),  # its file name says the query
}


class NamedEncoder:
    """An encoder stand-in: every query is the first axis."""

    dim = D

    def __init__(self, name: str, modality: str = "text") -> None:
        self.name = name
        self.modality = modality

    def encode_query(self, texts):
        return np.stack([np.eye(D, dtype=np.float32)[0] for _ in texts])


def at_cosine(c: float, axis: int) -> np.ndarray:
    """A unit vector whose cosine with the first axis is ``c``."""
    e = np.eye(D, dtype=np.float32)
    return (c * e[0] + np.sqrt(1 - c * c) * e[axis]).astype(np.float32)


@pytest.fixture
def image_store(tmp_path):
    from ragmm.stores.edge import EdgeStore

    text, image = NamedEncoder("text-enc"), NamedEncoder("image-enc", "image")
    store = EdgeStore(tmp_path / "store")
    store.create_collection(
        CollectionSpec(name="image", vectors={"image": VectorSpec(D, encoder=image.name), "text": VectorSpec(D, encoder=text.name)}, encoder=image.name, modality="image")
    )
    points = []
    for i, (name, (c_image, c_text, title)) in enumerate(ITEMS.items()):
        item = Item(corpus="image", source=name, text=name, modality="image", metadata={"title": title, "labels": "kit fox"})
        points.append(StoredPoint(id=item.id, payload=item.to_payload(), vectors={"image": at_cosine(c_image, 1 + i), "text": at_cosine(c_text, 8 + i)}))
    # an image with no text at all (a numbered file the encoder gives no labels): no text vector
    blank = Item(corpus="image", source="0004.png", text="", modality="image", metadata={"title": ""})
    points.append(StoredPoint(id=blank.id, payload=blank.to_payload(), vectors={"image": at_cosine(0.25, 7)}))
    store.upsert("image", points)
    yield store, text, image
    store.close()


def ranked(retriever: ImageCorpusRetriever) -> list[str]:
    return [h.item.source for h in retriever.retrieve(Query(QUERY), "image", k=len(ITEMS) + 1)]


def test_fuse_calibrated_on_one_scale():
    # labels only: z-scores summed, in the image view's units; raw max would rank 0002 first
    looks = fuse_calibrated(0.35, 0.50, CAL)  # z 3 + 0.5 * 0
    says = fuse_calibrated(0.05, 0.62, CAL)  # z 0 + 0.5 * 1.2
    assert looks == pytest.approx(0.05 + 0.1 * 3)
    assert says == pytest.approx(0.05 + 0.1 * 0.6)
    assert looks > says
    # text of its own (a name): the max of the cosines, as the max fusion
    assert fuse_calibrated(0.0, 0.95, CAL, labels_only=False) == pytest.approx(0.95)
    assert fuse_calibrated(0.35, 0.2, CAL, labels_only=False) == pytest.approx(0.35)
    # text_weight overrides the calibration's
    assert fuse_calibrated(0.35, 0.6, CAL, text_weight=0.0) == pytest.approx(0.35)
    # no text at all: the image cosine
    assert fuse_calibrated(0.25, None, CAL) == pytest.approx(0.25)


def test_own_text():
    assert not own_text({"title": "", "labels": "koala"})
    assert own_text({"title": "koala bear", "labels": "koala"})
    assert own_text({"title": "", "ocr_text": "KOALA", "labels": "koala"})
    assert own_text({"title": "koala"})  # no labels recorded
    assert own_text({})


def test_calibrated_ranking_ignores_each_views_own_scale():
    """Stretching and shifting a view's cosines, with its statistics, changes no ranking."""
    rng = np.random.default_rng(0)
    pairs = rng.uniform(-0.2, 0.9, size=(50, 2))
    stretched = Calibration(image=ViewStats(mean=0.05 * 3 + 0.2, std=0.1 * 3), text=ViewStats(mean=0.5 * 2 - 0.1, std=0.1 * 2), text_weight=CAL.text_weight)
    a = [fuse_calibrated(i, t, CAL) for i, t in pairs]
    b = [fuse_calibrated(3 * i + 0.2, 2 * t - 0.1, stretched) for i, t in pairs]
    assert np.argsort(a).tolist() == np.argsort(b).tolist()


def test_retriever_max_and_calibrated(image_store):
    store, text, image = image_store
    by_max = ImageCorpusRetriever(store, text, image, fusion="max")
    assert ranked(by_max) == ["red-fox.png", "0002.png", "0001.png", "0003.png", "0004.png"]
    calibrated = ImageCorpusRetriever(store, text, image, fusion="calibrated", calibration=CAL)
    # labels only, in image units: 0001 0.35, 0003 0.10 - 0.025, 0002 0.05 + 0.06;
    # 0004 (no text) keeps its 0.25; the named file keeps its 0.95
    assert ranked(calibrated) == ["red-fox.png", "0001.png", "0004.png", "0002.png", "0003.png"]
    hits = calibrated.retrieve(Query(QUERY), "image", k=5)
    assert [h.score for h in hits] == pytest.approx([0.95, 0.35, 0.25, 0.11, 0.075], abs=1e-5)
    assert hits[1].scores == pytest.approx({"image": 0.35, "text": 0.50}, abs=1e-5)  # both raw cosines kept
    assert "text" not in hits[2].scores
    # mean is still there too
    assert ranked(ImageCorpusRetriever(store, text, image, fusion="mean"))[0] == "red-fox.png"


def test_one_view_keeps_its_cosine(image_store):
    store, text, image = image_store
    only_image = ImageCorpusRetriever(store, text, image, fusion="calibrated", calibration=CAL, views=["image"])
    hits = only_image.retrieve(Query(QUERY), "image", k=1)
    assert hits[0].item.source == "0001.png" and hits[0].score == pytest.approx(0.35, abs=1e-5)


def test_auto_reads_the_encoders_fusion_file(image_store, tmp_path):
    store, text, _ = image_store
    folder = tmp_path / "tower"
    folder.mkdir()
    image = NamedEncoder(str(folder), "image")  # a trained tower's name is its folder
    assert ImageCorpusRetriever(store, text, image).fusion == "max"  # no fusion.json: max
    (folder / FUSION_FILE).write_text(json.dumps({**CAL.model_dump(), "text_encoder": "text-enc"}))
    auto = ImageCorpusRetriever(store, text, image)
    assert auto.fusion == "calibrated" and auto.calibration == CAL.model_copy(update={"text_encoder": "text-enc"})
    assert ImageCorpusRetriever(store, text, image, fusion="max").fusion == "max"
    # fitted for another text encoder: not used
    assert encoder_calibration(image, NamedEncoder("other-text-enc")) is None
    assert ImageCorpusRetriever(store, NamedEncoder("other-text-enc"), image).fusion == "max"
    (folder / FUSION_FILE).write_text('{"image": {"mean": 0}}')
    with pytest.raises(ConfigError, match="not a fusion calibration"):
        ImageCorpusRetriever(store, text, image)


def test_config_is_checked(image_store):
    store, text, image = image_store
    with pytest.raises(ValidationError):
        ImageCorpusRetriever.Config(fusion="median")
    with pytest.raises(ValidationError):
        ImageCorpusRetriever.Config(calibration={"image": {"mean": 0, "std": 0}, "text": {"mean": 0, "std": 1}, "text_weight": 1})
    with pytest.raises(ValidationError):
        ImageCorpusRetriever.Config(text_weight=-1)
    with pytest.raises(ConfigError, match="needs a calibration"):
        ImageCorpusRetriever(store, text, image, fusion="calibrated")
    with pytest.raises(ConfigError, match="fusion"):
        ImageCorpusRetriever(store, text, image, fusion="median")  # type: ignore[arg-type]
    config = ImageCorpusRetriever.Config(fusion="calibrated", calibration=CAL.model_dump())
    built = ImageCorpusRetriever.from_config(config, store=store, encoders={"text": text, "image": image}, embeddings=None)
    assert built.fusion == "calibrated" and built.calibration == CAL
    assert ranked(built)[1] == "0001.png"


def test_shipped_lite0_calibration():
    """ragmm-lite0 ships a calibration for the packaged MiniLM; ragmm-clipart ships none (max)."""
    minilm = NamedEncoder("sentence-transformers/all-MiniLM-L6-v2")
    cal = encoder_calibration(NamedEncoder("ragmm-lite0", "image"), minilm)
    assert cal is not None and cal.image.std > 0 and cal.text.std > 0
    assert encoder_calibration(NamedEncoder("ragmm-clipart", "image"), minilm) is None


@pytest.fixture
def hub_store(tmp_path):
    """Three numbered images without text: a hub (high hubness), a plain one and one indexed
    before hubness was recorded."""
    from ragmm.stores.edge import EdgeStore

    text, image = NamedEncoder("text-enc"), NamedEncoder("image-enc", "image")
    store = EdgeStore(tmp_path / "hub-store")
    store.create_collection(
        CollectionSpec(name="image", vectors={"image": VectorSpec(D, encoder=image.name), "text": VectorSpec(D, encoder=text.name)}, encoder=image.name, modality="image")
    )
    rows = {"hub.png": (0.35, {"hub": 0.5}), "plain.png": (0.30, {"hub": 0.1}), "old.png": (0.28, {})}
    points = []
    for i, (name, (c_image, meta)) in enumerate(rows.items()):
        item = Item(corpus="image", source=name, text="", modality="image", metadata={"title": "", **meta})
        points.append(StoredPoint(id=item.id, payload=item.to_payload(), vectors={"image": at_cosine(c_image, 1 + i)}))
    store.upsert("image", points)
    yield store, text, image
    store.close()


def test_hubness_correction_demotes_a_hub_and_finds_past_k(hub_store):
    store, text, image = hub_store
    plain = ImageCorpusRetriever(store, text, image, fusion="calibrated", calibration=CAL)
    assert ranked(plain)[:3] == ["hub.png", "plain.png", "old.png"]
    corrected_cal = CAL.model_copy(update={"hub_weight": 0.5, "hub_mean": 0.3})
    corrected = ImageCorpusRetriever(store, text, image, fusion="calibrated", calibration=corrected_cal)
    hits = corrected.retrieve(Query(QUERY), "image", k=3)
    # hub 0.35 - 0.5 * (0.5 - 0.3) = 0.25; plain 0.30 + 0.5 * 0.2 = 0.40; old (no hubness) keeps 0.28
    assert [h.item.source for h in hits] == ["plain.png", "old.png", "hub.png"]
    assert [h.score for h in hits] == pytest.approx([0.40, 0.28, 0.25], abs=1e-5)
    assert hits[2].scores == pytest.approx({"image": 0.35}, abs=1e-5)  # the raw cosine is kept
    # k = 1: the image view is searched deeper than k, so the corrected first is found
    assert [h.item.source for h in corrected.retrieve(Query(QUERY), "image", k=1)] == ["plain.png"]
    # max fusion, image queries and hub_weight = 0 are not corrected
    assert ranked(ImageCorpusRetriever(store, text, image, fusion="max"))[0] == "hub.png"
    off = ImageCorpusRetriever.from_config(
        ImageCorpusRetriever.Config(fusion="calibrated", calibration=corrected_cal, hub_weight=0), store=store, encoders={"text": text, "image": image}, embeddings=None
    )
    assert ranked(off)[0] == "hub.png"
    assert corrected._hub_weight(Query("", image=np.zeros((4, 4, 3), np.uint8))) == 0.0


def test_hub_bank_is_read_beside_the_weights(tmp_path):
    from ragmm.encoders.hubness import HUB_BANK_FILE, encoder_hub_bank, hubness

    folder = tmp_path / "tower"
    folder.mkdir()
    image = NamedEncoder(str(folder), "image")
    assert encoder_hub_bank(image) is None
    bank = np.eye(D, dtype=np.float16)[:4]
    np.save(folder / HUB_BANK_FILE, bank)
    got = encoder_hub_bank(image)
    assert got is not None and got.shape == (4, D) and got.dtype == np.float32
    h = hubness(np.stack([at_cosine(0.9, 1), at_cosine(0.1, 9)]), got, k=2)  # both near axis 0 by 0.9 / 0.1
    assert h[0] > h[1]
    np.save(folder / HUB_BANK_FILE, np.zeros((3, D + 1), np.float32))
    with pytest.raises(ConfigError, match="caption bank"):
        encoder_hub_bank(image)


def test_image_items_record_their_hubness_when_the_encoder_ships_a_bank(tmp_path):
    from PIL import Image

    from ragmm.config import IndexSettings
    from ragmm.ingest.image_reader import ImageReader
    from ragmm.ingest.images import decode_image
    from ragmm.encoders.hubness import HUB_BANK_FILE

    class PixelEncoder(NamedEncoder):
        def encode_document(self, images):
            return np.stack([at_cosine(0.2 + 0.6 * i / max(1, len(images) - 1), 1 + i) for i in range(len(images))])

    folder = tmp_path / "tower"
    folder.mkdir()
    paths = []
    for i in range(2):
        path = tmp_path / f"{i:04d}.png"
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(path)
        paths.append(path)
    data = [p.read_bytes() for p in paths]
    parsed = [decode_image(p, p.name, d, f"hash{i}", 64) for i, (p, d) in enumerate(zip(paths, data))]
    text = NamedEncoder("text-enc")
    text.encode_document = lambda texts: np.stack([np.eye(D, dtype=np.float32)[2] for _ in texts])
    reader = ImageReader({"image": PixelEncoder(str(folder), "image"), "text": text}, IndexSettings(ocr=False))
    assert all("hub" not in e.points["image"][0].payload["metadata"] for e in reader.encode(parsed))  # no bank: no hubness
    np.save(folder / HUB_BANK_FILE, np.eye(D, dtype=np.float16)[:1])  # one caption: the first axis
    hubs = [e.points["image"][0].payload["metadata"]["hub"] for e in reader.encode(parsed)]
    assert hubs == pytest.approx([0.2, 0.8], abs=1e-3)  # each image's cosine with it
