"""The data preparation scripts' parsing rules (no Debian package needed)."""

from __future__ import annotations

import json
import math

import pytest
from PIL import Image
from ragmm.training.data import clipart, tuxpaint

LOWER = {"full", "moon", "red", "apple", "dog", "bored", "mammals", "star", "step"}
PROPER = {"ireland", "dan"}


@pytest.mark.parametrize(
    ("stem", "expected"),
    [
        ("full_moon_dan_gerhards_01", "full moon"),  # author name (capitalised in the word list) dropped
        ("ireland", "Ireland"),  # a proper noun is kept only as the first word
        ("bored_dog_01", "bored dog"),
        ("medicina_dottore_archite_01", ""),  # no English word left
        ("star_32pt05step", "star step"),
    ],
)
def test_title_words(stem, expected):
    assert clipart.title_words(stem, LOWER, PROPER) == expected


def test_sentence():
    assert clipart.sentence("full moon") == "A full moon."
    assert clipart.sentence("apple") == "An apple."
    assert clipart.sentence("Ireland") == "Ireland."
    assert clipart.sentence("") == ""


def test_category_fallback(tmp_path):
    from pathlib import Path

    assert clipart.category_words(Path("animals/mammals"), LOWER) == "mammals"
    assert clipart.category_words(Path("zzz/qqq"), LOWER) == ""


def test_dev_split_keeps_captions_together(tmp_path):
    images = tmp_path / "images"
    (images / "openclipart").mkdir(parents=True)
    dev = {}
    for i in range(3):
        p = images / "openclipart" / f"{i:05d}.png"
        Image.new("RGB", (8, 8)).save(p)
        dev.setdefault("A red apple.", []).append(str(p.resolve()))
    n = clipart.write_dev(tmp_path / "dev", dev)
    assert n == 1
    qrels = (tmp_path / "dev" / "qrels.tsv").read_text().splitlines()
    assert len(qrels) == 3 and all(line.startswith("q0000\t0\topenclipart/") for line in qrels)
    corpus = [json.loads(x) for x in (tmp_path / "dev" / "corpus.jsonl").read_text().splitlines()]
    assert {c["id"] for c in corpus} == {f"openclipart/{i:05d}.png" for i in range(3)}
    assert clipart.held_out("A red apple.") == clipart.held_out("A red apple.")  # deterministic


def test_chance_metrics():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1, "c": 1}}
    c = tuxpaint.chance(qrels, 100)
    assert c["recall@10"] == pytest.approx(0.1) and c["recall@1"] == pytest.approx(0.01)
    one = (1 / 100) * sum(1 / math.log2(i + 2) for i in range(10))  # one relevant: E[DCG], IDCG = 1
    two = (2 / 100) * sum(1 / math.log2(i + 2) for i in range(10)) / (1 + 1 / math.log2(3))
    assert c["ndcg@10"] == pytest.approx((one + two) / 2)


def test_near_duplicates_found_by_thumbnail(tmp_path):
    a = Image.new("RGB", (64, 64), "white")
    a.paste((200, 0, 0), (10, 10, 50, 50))
    a.save(tmp_path / "stamp.png")
    a.resize((128, 128)).save(tmp_path / "train_copy.png")  # same picture, other size
    b = Image.new("RGB", (64, 64), "white")
    b.paste((0, 0, 200), (0, 40, 64, 64))
    b.save(tmp_path / "other.png")
    dups = tuxpaint.near_duplicates([tmp_path / "stamp.png", tmp_path / "other.png"], [str(tmp_path / "train_copy.png")], 0.95)
    assert [d[0].name for d in dups] == ["stamp.png"]


def test_read_caption(tmp_path):
    (tmp_path / "apple.png").write_bytes(b"")
    (tmp_path / "apple.txt").write_text("A   red apple.\nfr: une pomme\n")
    assert tuxpaint.read_caption(tmp_path / "apple.png") == "A red apple."
    assert tuxpaint.read_caption(tmp_path / "pear.png") == ""


def test_clipart_subsample_keeps_every_nth_row(tmp_path):
    from ragmm.training.data.clipart import subsample

    train = tmp_path / "train.jsonl"
    train.write_text("".join(f'{{"caption": "c{i}", "image": "/x/{i}.png"}}\n' for i in range(10)))
    out = subsample(train, 3)
    assert out.name == "train-1in3.jsonl"
    assert [json.loads(line)["caption"] for line in out.read_text().splitlines()] == ["c0", "c3", "c6", "c9"]


def test_hub_bank_holds_each_training_caption_once(tmp_path):
    import json

    import numpy as np

    from ragmm.encoders.hubness import HUB_BANK_FILE
    from ragmm.training.data.clipart import write_hub_bank

    rows = [{"caption": c, "image": f"/x/{i}.png", "source": "openclipart"} for i, c in enumerate(["A star.", "A koala.", "A star."])]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    model = tmp_path / "tower"
    model.mkdir()

    class Text:
        def encode_document(self, texts):
            return np.array([[2.0, 0.0] if t == "A koala." else [0.0, 3.0] for t in texts])

    path = write_hub_bank(tmp_path, str(model), Text())
    assert path == model / HUB_BANK_FILE
    bank = np.load(path)
    assert bank.dtype == np.float16 and bank.tolist() == [[1.0, 0.0], [0.0, 1.0]]  # sorted, unique, unit length
