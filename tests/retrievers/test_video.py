"""Video scoring strategies on hand-built vectors, against plain-loop reference computations,
and through a real Edge store (two-stage query, per-modality scores, cited time spans)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ragmm.errors import ConfigError, EncoderMismatchError
from ragmm.ingest.video import CLIP, MODALITIES, POOLED, ROWS, VideoReader
from ragmm.protocols import StoredPoint
from ragmm.retrievers.video import STRATEGIES, ModalityHead, VideoRetriever, combine, load_head, modality_scores
from ragmm.scores import mean_pool
from ragmm.types import Item, Locator, Query

D = 8


def unit(v) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def reference_per_modality(q, rows, tags):
    """s_m = sum over query tokens of the best dot product with a row of modality m (loops)."""
    out = {}
    for m in set(tags):
        total = 0.0
        for qt in q:
            total += max(float(np.dot(qt, r)) for r, t in zip(rows, tags) if t == m)
        out[m] = total
    return out


def reference_score(strategy, q, rows, tags, scale=None, offset=None):
    per = reference_per_modality(q, rows, tags)
    if strategy == "maxsim":
        return sum(max(float(np.dot(qt, r)) for r in rows) for qt in q)
    if strategy == "modality-max":
        return max(per.values())
    if strategy == "modality-aware":
        return max((scale or {}).get(m, 1.0) * s + (offset or {}).get(m, 0.0) for m, s in per.items())
    if strategy == "average":
        return sum(per.values()) / len(per)
    return per.get(strategy, -math.inf)


def test_modality_scores_match_loops():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(3, D)).astype(np.float32)
    rows = rng.normal(size=(9, D)).astype(np.float32)
    tags = ["speech", "speech", "ocr", "frame", "frame", "frame", "metadata", "speech", "ocr"]
    got = modality_scores(q, rows, tags)
    want = reference_per_modality(q, rows, tags)
    assert set(got) == set(want)
    for m in want:
        assert got[m][0] == pytest.approx(want[m], rel=1e-5)
        assert tags[got[m][1]] == m


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_strategy_against_reference(strategy):
    rng = np.random.default_rng(1)
    q = rng.normal(size=(2, D)).astype(np.float32)
    rows = rng.normal(size=(7, D)).astype(np.float32)
    tags = ["speech", "speech", "ocr", "frame", "metadata", "metadata", "ocr"]
    scale, offset = {"frame": 2.0, "ocr": 0.5}, {"speech": -0.3, "metadata": 0.2}
    per = {m: s for m, (s, _) in modality_scores(q, rows, tags).items()}
    overall = reference_score("maxsim", q, rows, tags)
    score, matched = combine(strategy, per, overall, scale, offset)
    assert score == pytest.approx(reference_score(strategy, q, rows, tags, scale, offset), rel=1e-5)
    assert matched in set(tags)


def test_strategies_disagree_where_they_should():
    """A frame that matches well and a transcript that matches a little: modality-max takes the
    frame, the average is pulled down by the weak modality, one-modality scoring sees only it."""
    q = unit([1, 0, 0, 0])[None]
    rows = np.stack([unit([0.9, 0.436, 0, 0]), unit([0.1, 0.995, 0, 0])])
    per = {m: s for m, (s, _) in modality_scores(q, rows, ["frame", "speech"]).items()}
    assert combine("modality-max", per, 0.9)[1] == "frame"
    assert combine("average", per, 0.9)[0] == pytest.approx((0.9 + 0.1) / 2, abs=1e-3)
    assert combine("speech", per, 0.9)[0] == pytest.approx(0.1, abs=1e-3)
    assert combine("ocr", per, 0.9) == (-math.inf, None)
    # scaling speech up makes it win under modality-aware
    assert combine("modality-aware", per, 0.9, {"speech": 10.0})[1] == "speech"
    with pytest.raises(ConfigError, match="strategy"):
        combine("median", per, 0.9)


class FixedEncoder:
    """A text encoder stand-in: named queries map to hand-built vectors."""

    name = "fixed-test-encoder"
    dim = D
    modality = "text"

    def __init__(self, queries: dict[str, np.ndarray]) -> None:
        self.queries = queries

    def encode_query(self, texts):
        return np.stack([self.queries[t] for t in texts])

    encode_document = encode_query


def clip_point(source: str, span: tuple[float, float], rows: list[tuple[str, np.ndarray, tuple[float, float]]]) -> StoredPoint:
    vecs = np.stack([v for _, v, _ in rows]).astype(np.float32)
    item = Item(
        corpus=CLIP,
        source=source,
        text=f"{source} {span}",
        locator=Locator(t_start=span[0], t_end=span[1]),
        modality="video",
        metadata={"rows": [m for m, _, _ in rows], "row_times": [list(t) for _, _, t in rows]},
    )
    return StoredPoint(id=item.id, payload=item.to_payload(), vectors={ROWS: vecs, POOLED: mean_pool(vecs)})


@pytest.fixture
def video_store(tmp_path):
    from ragmm.stores.edge import EdgeStore

    e = np.eye(D, dtype=np.float32)
    queries = {"budget": e[0], "sunflower picture": e[1], "garden title": e[2]}
    encoder = FixedEncoder(queries)
    store = EdgeStore(tmp_path / "store")
    for spec in VideoReader(VideoReader.Config(asr=False, ocr=False), {"text": encoder}).collections():
        store.create_collection(spec)
    points = [
        # talk.mp4: budget said at 3-5 s (speech), written on screen in the second clip
        clip_point("talk.mp4", (0, 15), [("speech", unit(e[0] + 0.2 * e[3]), (3, 5)), ("frame", unit(e[4]), (0, 2)), ("metadata", unit(e[2] + e[5]), (0, 15))]),
        clip_point("talk.mp4", (15, 30), [("ocr", unit(e[0] + 0.6 * e[6]), (16, 18)), ("frame", unit(e[1] + 0.8 * e[7]), (20, 22)), ("metadata", unit(e[2] + e[5]), (15, 30))]),
        # flowers.mp4: shows a sunflower
        clip_point("flowers.mp4", (0, 12), [("frame", unit(e[1] + 0.1 * e[4]), (6, 8)), ("speech", unit(e[5] + 0.3 * e[0]), (1, 4))]),
    ]
    store.upsert(CLIP, points)
    yield store, encoder, points
    store.close()


def test_retrieve_ranks_as_the_reference(video_store):
    store, encoder, points = video_store
    retriever = VideoRetriever(VideoRetriever.Config(prefetch=10, candidates=10), store, {"text": encoder})
    for text, q in encoder.queries.items():
        for strategy in STRATEGIES:
            hits = retriever.retrieve(Query(text), CLIP, k=3, strategy=strategy)
            ref = []
            for p in points:
                rows = np.asarray(p.vectors[ROWS])
                s = reference_score(strategy, q[None], rows, p.payload["metadata"]["rows"])
                if s != -math.inf:
                    ref.append((s, p.id))
            ref.sort(reverse=True)
            by_id = {pid: s for s, pid in ref}
            assert sorted(h.item.id for h in hits) == sorted(by_id), (text, strategy)
            assert [h.score for h in hits] == pytest.approx([s for s, _ in ref], rel=1e-4)  # same order (ties aside)
            assert [h.score for h in hits] == pytest.approx([by_id[h.item.id] for h in hits], rel=1e-4)


def test_hits_carry_modality_scores_and_the_cited_span(video_store):
    store, encoder, _ = video_store
    retriever = VideoRetriever(VideoRetriever.Config(strategy="modality-max"), store, {"text": encoder})
    top = retriever.retrieve(Query("budget"), CLIP, k=1)[0]
    assert top.item.source == "talk.mp4" and (top.item.locator.t_start, top.item.locator.t_end) == (0, 15)
    assert top.item.metadata["matched"] == {"modality": "speech", "t_start": 3, "t_end": 5}
    assert set(top.scores) == {"maxsim", "speech", "frame", "metadata"}
    assert "rows" not in top.item.metadata  # the row tags stay in the store
    sun = retriever.retrieve(Query("sunflower picture"), CLIP, k=1)[0]
    assert sun.item.source == "flowers.mp4" and sun.item.metadata["matched"]["modality"] == "frame"
    assert sun.item.metadata["matched"]["t_start"] == 6
    assert retriever.retrieve(Query("budget"), "missing", k=3) == []


def test_encoder_mismatch_is_refused(video_store):
    store, encoder, _ = video_store

    class Other(FixedEncoder):
        name = "another-encoder"

    with pytest.raises(EncoderMismatchError, match="another-encoder"):
        VideoRetriever(None, store, {"text": Other(encoder.queries)}).retrieve(Query("budget"), CLIP, k=1)


def test_head_round_trip_and_offsets(tmp_path):
    rng = np.random.default_rng(2)
    head = ModalityHead(rng.normal(size=4), rng.normal(size=4), rng.normal(size=(4, D)), rng.normal(size=4))
    head.save(tmp_path / "head.npz")
    loaded = load_head(tmp_path / "head.npz")
    q = rng.normal(size=(3, D)).astype(np.float32)
    want = head._offset + head.weight @ q.mean(axis=0) + head.bias
    assert list(loaded.offsets(q).values()) == pytest.approx(want.tolist(), rel=1e-5)
    assert list(loaded.scale) == list(MODALITIES)
    with pytest.raises(ConfigError, match="fit one"):
        load_head(tmp_path / "missing.npz")
