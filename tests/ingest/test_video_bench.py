"""The video benchmark: deterministic content with one query per target modality, and the
modality-aware calibration fitted with CLaMR's loss on hand-built clips."""

from __future__ import annotations

import numpy as np
import pytest

from ragmm.ingest.video import CLIP, MODALITIES, POOLED, ROWS
from ragmm.protocols import CollectionSpec, StoredPoint, VectorSpec
from ragmm.retrievers.video import VideoRetriever
from ragmm.scores import mean_pool
from ragmm.training.data import videobench
from ragmm.types import Item, Locator, Query


@pytest.mark.slow
def test_plan_is_deterministic_and_queries_target_one_modality_each():
    from ragmm.training.data.clipart import OPENCLIPART

    if not (videobench.WORDNET_NOUNS.exists() and OPENCLIPART.exists() and videobench.LIBRIVOX.exists()):
        pytest.skip("needs Debian wordnet-base, openclipart-png, wamerican, pocketsphinx-testdata")
    a, b = videobench.plan(3, seed=7), videobench.plan(3, seed=7)
    assert a == b and videobench.plan(3, seed=8) != a
    assert a[0].scenes[0].speech_wav.endswith(".wav")  # real recorded speech in the first video
    import random

    queries = videobench.queries_for(a[1], random.Random(0))
    assert [q.modality for q in queries] == list(videobench.TARGETS)
    by = {q.modality: q for q in queries}
    scene = a[1].scenes[int(by["ocr"].t_start // videobench.SCENE_SECONDS)]
    assert by["ocr"].text == scene.screen.lower()
    assert by["metadata"].text in a[1].title.lower() and (by["metadata"].t_start, by["metadata"].t_end) == (0.0, 18.0)
    spoken = [s.speech.lower() for s in a[1].scenes]
    assert not any(by["ocr"].text in s for s in spoken)  # the written fact is not said


class OneHot:
    name, dim, modality = "onehot-test", 6, "text"

    def encode_query(self, texts):
        return np.stack([np.eye(self.dim, dtype=np.float32)[int(t[-1])] for t in texts])


@pytest.mark.slow
def test_fit_head_lifts_the_modality_whose_scores_run_low(tmp_path):
    """Frames match their queries at cosine 0.45, text rows match a wrong clip at 0.5: plain
    modality-max ranks the wrong clip first; the fitted calibration must fix that."""
    from ragmm.stores.edge import EdgeStore

    e = np.eye(6, dtype=np.float32)

    def unit(v):
        return (v / np.linalg.norm(v)).astype(np.float32)

    def clip(video, rows):
        vecs = np.stack([v for _, v in rows])
        item = Item(corpus=CLIP, source=video, text=video, locator=Locator(t_start=0.0, t_end=6.0), modality="video",
                    metadata={"rows": [m for m, _ in rows], "row_times": [[0.0, 6.0]] * len(rows)})  # fmt: skip
        return StoredPoint(id=item.id, payload=item.to_payload(), vectors={ROWS: vecs, POOLED: mean_pool(vecs)})

    points, queries = [], []
    for i in range(4):  # video i shows fact i (frame), and says something a little like fact (i+1)%4
        frame = unit(0.45 * e[i] + np.sqrt(1 - 0.45**2) * e[5])
        speech = unit(0.5 * e[(i + 1) % 4] + np.sqrt(1 - 0.25) * e[4])
        points.append(clip(f"v{i}.mp4", [("frame", frame), ("speech", speech)]))
        queries.append(videobench.BenchQuery(f"q{i}", f"query {i}", "frame", f"v{i}.mp4", 0.0, 6.0))
    store = EdgeStore(tmp_path / "store")
    vectors = {ROWS: VectorSpec(size=6, multivector=True), POOLED: VectorSpec(size=6)}
    store.create_collection(CollectionSpec(name=CLIP, vectors=vectors, encoder=OneHot.name, modality="video"))
    store.upsert(CLIP, points)
    store.close()
    head = videobench.fit_head(tmp_path / "store", queries, OneHot(), query_head=False, steps=150)
    assert set(head.scale) == set(MODALITIES)
    # frames must now outscore the misleading speech rows: a_f*0.45 + b_f > a_s*0.5 + b_s
    off = head.offsets(np.zeros((1, 6), np.float32))
    assert head.scale["frame"] * 0.45 + off["frame"] > head.scale["speech"] * 0.5 + off["speech"]
    store = EdgeStore(tmp_path / "store")
    encoders = {"text": OneHot()}
    plain = VideoRetriever(VideoRetriever.Config(strategy="modality-max"), store, encoders)
    fitted = VideoRetriever(VideoRetriever.Config(strategy="modality-aware"), store, encoders)
    fitted.head = head
    for i in range(4):
        assert plain.retrieve(Query(f"query {i}"), CLIP, k=1)[0].item.source == f"v{(i - 1) % 4}.mp4"
        assert fitted.retrieve(Query(f"query {i}"), CLIP, k=1)[0].item.source == f"v{i}.mp4"
    store.close()
