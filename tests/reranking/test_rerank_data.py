"""The reranker data's video side and dev sets, on fixtures (no video, store or model)."""

from __future__ import annotations

import json
import random

import numpy as np

from ragmm.training.data import rerank
from ragmm.training.data.rerank import Clip, ClipQuery, Pair, covers, dev_sets, mine_clips, video_train_queries

CLIPS = [
    Clip("v0.mp4#0", "The lark show. Speech: a bird sings. On screen: \"Red Door 12\".", "v0.mp4", 0.0, 4.8),
    Clip("v0.mp4#1", "The lark show. Speech: the sea is calm. On screen: \"Blue Car 7\".", "v0.mp4", 4.8, 11.3),
    Clip("v0.mp4#2", "The lark show. Speech: a tree falls. On screen: \"Green Hat 3\".", "v0.mp4", 11.3, 18.0),
    Clip("v1.mp4#0", "The fox show. Speech: the sun rises. On screen: \"Old Map 9\".", "v1.mp4", 0.0, 9.0),
    Clip("v1.mp4#1", "The fox show. Speech: a car stops. On screen: \"New Key 5\".", "v1.mp4", 9.0, 18.0),
]


class WordEncoder:
    """Bag of the words of the fixture texts, so the mined order is predictable."""

    WORDS = ["bird", "sea", "tree", "sun", "car", "lark", "fox", "red", "blue"]

    def _enc(self, texts):
        rows = np.array([[float(w in t.lower()) for w in self.WORDS] + [0.1] for t in texts], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    encode_query = encode_document = _enc


def test_covers_half_of_the_span_or_of_the_clip():
    scene = ClipQuery("", "v0.mp4", 6.0, 12.0)
    assert [covers(c, scene) for c in CLIPS] == [False, True, False, False, False]
    whole = ClipQuery("", "v0.mp4", 0.0, 18.0)
    assert [covers(c, whole) for c in CLIPS] == [True, True, True, False, False]


def test_mine_clips_every_covering_clip_positive_negatives_never():
    queries = [ClipQuery("the sea is calm", "v0.mp4", 6.0, 12.0), ClipQuery("lark show", "v0.mp4", 0.0, 18.0)]
    rows = mine_clips(queries, CLIPS, WordEncoder(), random.Random(0), depth=2, hard=1)
    pos = {(p.query, p.text) for p in rows if p.label}
    assert pos == {("the sea is calm", CLIPS[1].text)} | {("lark show", c.text) for c in CLIPS[:3]}
    for p in rows:
        assert p.kind == "clip"
        if not p.label:
            assert (p.query, p.text) not in pos
    # one hard negative each, and one random beyond the top two when there is one
    assert sum(not p.label for p in rows if p.query == "the sea is calm") == 2
    assert sum(not p.label for p in rows if p.query == "lark show") == 1


def test_video_train_queries_skip_picture_captions(tmp_path):
    spec = {
        "name": "v0.mp4",
        "title": "The lark show",
        "description": "A songbird",
        "scenes": [{"speech": "The bird is singing, of course!", "speech_wav": "", "screen": "Red Door 12", "picture": "x.png", "caption": "A star."}] * 3,
    }
    (tmp_path / "specs.json").write_text(json.dumps([spec]))
    qs = video_train_queries(tmp_path)
    assert len(qs) == 3 * 2 + 2
    assert qs[0] == ClipQuery("bird singing course", "v0.mp4", 0.0, 6.0)
    assert qs[1].text == "red door 12" and (qs[3].t_start, qs[3].t_end) == (6.0, 12.0)
    assert [q.text for q in qs[-2:]] == ["lark show", "A songbird"]
    assert all(q.text != "A star" for q in qs)


def test_dev_sets_hold_only_dev_queries_against_every_item_of_the_kind(tmp_path, monkeypatch):
    monkeypatch.setattr(rerank, "is_dev", lambda q: q.startswith("dev"))
    rows = [
        Pair("dev q1", "gloss a", 1, "paragraph"),
        Pair("dev q1", "gloss b", 0, "paragraph"),
        Pair("train q2", "gloss c", 1, "paragraph"),
        Pair("dev q3", "clip text", 1, "clip"),
    ]
    counts = dev_sets(rows, tmp_path)
    assert counts == {"dev_paragraph_queries": 1, "dev_image_queries": 0, "dev_clip_queries": 1}
    corpus = [json.loads(line) for line in (tmp_path / "paragraph" / "corpus.jsonl").read_text().splitlines()]
    assert [d["text"] for d in corpus] == ["gloss a", "gloss b", "gloss c"]
    assert [json.loads(line)["text"] for line in (tmp_path / "paragraph" / "queries.jsonl").read_text().splitlines()] == ["dev q1"]
    assert (tmp_path / "paragraph" / "qrels.tsv").read_text() == "paragraph-q0\t0\tparagraph-0\t1\n"
    clip = json.loads((tmp_path / "clip" / "corpus.jsonl").read_text().splitlines()[0])
    assert (clip["corpus"], clip["modality"]) == ("clip", "video")


def test_video_eval_judges_the_covering_clips(tmp_path, monkeypatch):
    split = tmp_path / "test"
    split.mkdir()
    queries = [
        {"id": "v0-speech", "text": "the sea is calm", "modality": "speech", "video": "v0.mp4", "t_start": 6.0, "t_end": 12.0},
        {"id": "v1-metadata", "text": "fox show", "modality": "metadata", "video": "v1.mp4", "t_start": 0.0, "t_end": 18.0},
    ]
    (split / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    monkeypatch.setattr(rerank, "video_clips", lambda split, store: CLIPS)
    counts = rerank.video_eval(tmp_path / "out", split, tmp_path / "store")
    assert counts == {"video_queries": 2, "video_clips": 5, "video_qrels": 3}
    qrels = (tmp_path / "out" / "qrels.tsv").read_text().splitlines()
    assert qrels == ["v0-speech\t0\tv0.mp4#1\t1", "v1-metadata\t0\tv1.mp4#0\t1", "v1-metadata\t0\tv1.mp4#1\t1"]
    assert len((tmp_path / "out" / "corpus.jsonl").read_text().splitlines()) == 5
