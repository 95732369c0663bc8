"""One contract suite for every Store backend (as qdrant-client's congruence tests do).

Each test runs against Qdrant Edge in a temporary folder and qdrant-client's ``:memory:``
mode; results are checked against a numpy brute force, not against each other.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pytest

from ragmm.errors import ConfigError, EncoderMismatchError, RagmmError
from ragmm.protocols import CollectionSpec, Prefetch, SearchRequest, Store, StoredPoint, VectorSpec, Where
from ragmm.scores import cosine, maxsim, mean_pool
from ragmm.stores.edge import EdgeStore
from ragmm.stores.server import ServerStore
from ragmm.stores.sync import sync

DIM = 32
N = 200
SOURCES = ["a.txt", "b.pdf", "c.md", "d.html"]


@pytest.fixture
def fast_tmp(tmp_path):
    """A RAM folder when there is one: Edge fsyncs on every create, index and flush
    (about 0.1 s each on a VM disk, nothing on tmpfs), which would dominate this suite."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="ragmm-test-", dir=shm))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=["edge", "server"])
def store(request, fast_tmp):
    s = EdgeStore(fast_tmp / "store") if request.param == "edge" else ServerStore(location=":memory:")
    yield s
    s.close()


def dense_spec(name: str = "paragraph", dim: int = DIM, encoder: str = "enc-a") -> CollectionSpec:
    # one payload index: each costs Edge about 0.1 s of fsyncs, and one is enough to test them
    return CollectionSpec(name=name, vectors={"dense": VectorSpec(dim)}, encoder=encoder, payload_indexes=("source",))


def pid(i: int) -> str:
    return str(uuid.UUID(int=i + 1))


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x = unit(rng.standard_normal((N, DIM)).astype(np.float32))  # (N, DIM)
    q = unit(rng.standard_normal((10, DIM)).astype(np.float32))  # (10, DIM)
    sources = [SOURCES[i % len(SOURCES)] for i in range(N)]
    return x, q, sources


def fill(store: Store, data, name: str = "paragraph") -> None:
    x, _, sources = data
    store.create_collection(dense_spec(name))
    # numpy rows on purpose: the store converts them
    points = [StoredPoint(id=pid(i), payload={"source": sources[i], "i": i}, vectors={"dense": x[i]}) for i in range(N)]
    for start in range(0, N, 64):
        store.upsert(name, points[start : start + 64])


def brute_force(x: np.ndarray, q: np.ndarray, k: int, keep: np.ndarray | None = None) -> list[str]:
    scores = x @ q  # (N,)
    if keep is not None:
        scores = np.where(keep, scores, -np.inf)
    order = np.argsort(-scores)[:k]
    return [pid(int(i)) for i in order if np.isfinite(scores[i])]


def test_is_a_store(store):
    assert isinstance(store, Store)


def test_create_and_get_spec_roundtrip(store):
    spec = CollectionSpec(
        name="paragraph",
        vectors={"dense": VectorSpec(DIM), "tokens": VectorSpec(8, "dot", multivector=True)},
        encoder="enc-a",
        modality="text",
        payload_indexes=("source", "modality"),
    )
    assert store.get_spec("paragraph") is None
    store.create_collection(spec)
    assert store.get_spec("paragraph") == spec
    assert store.collections() == ["paragraph"]
    store.create_collection(spec)  # same spec again: a no-op
    assert store.collections() == ["paragraph"]


@pytest.mark.parametrize(
    "other",
    [dense_spec(encoder="enc-b"), dense_spec(dim=DIM + 1), CollectionSpec("paragraph", {"dense": VectorSpec(DIM, "dot")}, encoder="enc-a")],
    ids=["encoder", "dim", "distance"],
)
def test_other_encoder_is_a_mismatch(store, other):
    store.create_collection(dense_spec())
    with pytest.raises(EncoderMismatchError) as err:
        store.create_collection(other)
    msg = str(err.value)
    assert "paragraph" in msg and "enc-a" in msg and "run `ragmm index` again" in msg
    if other.encoder == "enc-a":  # same encoder, other vectors: both are described
        assert f"{DIM}-d" in msg
    else:  # another encoder: the setting that selects the original one again
        assert '[encoders.text] model = "enc-a"' in msg
    assert "\n" not in msg
    assert store.get_spec("paragraph") == dense_spec()


def frames_spec(image_encoder: str | None) -> CollectionSpec:
    """A video corpus whose rows mix in an image encoder's frame vectors (``None``: none recorded)."""
    mixed = {"encoders.image": image_encoder} if image_encoder else {}
    return CollectionSpec("clip", {"rows": VectorSpec(DIM, multivector=True)}, encoder="enc-a", modality="video", payload_indexes=("source",), mixed_in=mixed)


def test_a_mixed_in_encoder_is_recorded_and_checked(store):
    store.create_collection(frames_spec("ragmm-clipart"))
    store.create_collection(frames_spec("ragmm-clipart"))  # the same: fine
    store.create_collection(frames_spec(None))  # frames off now: the rows stay comparable
    with pytest.raises(EncoderMismatchError) as err:
        store.create_collection(frames_spec("ragmm-lite0"))
    msg = str(err.value)
    assert "'clip'" in msg and "'ragmm-clipart'" in msg and "'ragmm-lite0'" in msg and "\n" not in msg
    assert '[encoders.image] type = "ragmm-clipart"' in msg and "run `ragmm index` again" in msg
    assert store.get_spec("clip").mixed_in == {"encoders.image": "ragmm-clipart"}


def test_a_collection_built_before_the_record_gets_it_with_a_warning(fast_tmp, caplog):
    store = EdgeStore(fast_tmp / "store")
    store.create_collection(frames_spec(None))  # as a store built before ragmm recorded frames
    with caplog.at_level("WARNING", logger="ragmm.stores.base"):
        store.create_collection(frames_spec("ragmm-lite0"))
    assert "does not record which image encoder (ragmm-lite0)" in caplog.text
    store.close()
    reopened = EdgeStore(fast_tmp / "store")  # the record was written down
    assert reopened.get_spec("clip").mixed_in == {"encoders.image": "ragmm-lite0"}
    with pytest.raises(EncoderMismatchError, match="ragmm-lite0"):
        reopened.create_collection(frames_spec("ragmm-clipart"))
    reopened.close()
    server = ServerStore(location=":memory:")
    server.create_collection(frames_spec(None))
    server.create_collection(frames_spec("ragmm-lite0"))
    assert server.get_spec("clip").mixed_in == {"encoders.image": "ragmm-lite0"}
    server.close()


def test_search_matches_brute_force(store, data):
    x, q, _ = data
    fill(store, data)
    for qv in q:
        hits = store.search("paragraph", qv, using="dense", limit=5)
        assert [h.id for h in hits] == brute_force(x, qv, 5)
        np.testing.assert_allclose([h.score for h in hits], np.sort(x @ qv)[::-1][:5], atol=1e-4)
        assert all(h.payload["source"] in SOURCES and h.payload["i"] == int(h.id[-8:], 16) - 1 for h in hits)
    assert [h.id for h in store.search("paragraph", q[0].tolist(), using="dense", limit=5, hnsw_ef=64)] == brute_force(x, q[0], 5)


def test_filters(store, data):
    x, q, sources = data
    fill(store, data)
    src = np.array(sources)
    cases = [
        (Where(must={"source": "b.pdf"}), src == "b.pdf"),
        (Where(must={"source": ["a.txt", "c.md"]}), np.isin(src, ["a.txt", "c.md"])),
        (Where(must_not={"source": "a.txt"}), src != "a.txt"),
        (Where(must={"source": ["a.txt", "b.pdf"]}, must_not={"source": "a.txt"}), src == "b.pdf"),
        (Where(must={"source": "nowhere"}), np.zeros(N, bool)),
    ]
    for where, keep in cases:
        for qv in q[:3]:
            assert [h.id for h in store.search("paragraph", qv, using="dense", limit=5, where=where)] == brute_force(x, qv, 5, keep)
        assert store.count("paragraph", where) == int(keep.sum())
        assert sorted(p.id for p in store.scroll("paragraph", where, batch=17)) == sorted(pid(i) for i in np.flatnonzero(keep))
    assert store.count("paragraph") == N
    assert store.count("paragraph", Where()) == N


def test_reupsert_is_idempotent(store, data):
    x, _, _ = data
    fill(store, data)
    store.upsert("paragraph", [StoredPoint(id=pid(i), payload={"source": "new.txt"}, vectors={"dense": x[i]}) for i in range(10)])
    assert store.count("paragraph") == N
    assert store.count("paragraph", Where(must={"source": "new.txt"})) == 10
    assert store.retrieve("paragraph", [pid(3)])[0].payload == {"source": "new.txt"}


def test_delete_by_filter(store, data):
    x, q, sources = data
    fill(store, data)
    store.delete("paragraph", Where(must={"source": ["a.txt", "b.pdf"]}))
    keep = ~np.isin(np.array(sources), ["a.txt", "b.pdf"])
    assert store.count("paragraph") == int(keep.sum())
    assert store.count("paragraph", Where(must={"source": "a.txt"})) == 0
    assert [h.id for h in store.search("paragraph", q[0], using="dense", limit=5)] == brute_force(x, q[0], 5, keep)
    store.delete("paragraph", Where(must={"source": "nowhere"}))
    assert store.count("paragraph") == int(keep.sum())


def test_scroll_all_with_vectors(store, data):
    x, _, sources = data
    fill(store, data)
    points = list(store.scroll("paragraph", with_vectors=True, batch=37))
    assert sorted(p.id for p in points) == sorted(pid(i) for i in range(N))
    for p in points:
        i = p.payload["i"]
        assert p.payload["source"] == sources[i]
        np.testing.assert_allclose(p.vectors["dense"], x[i], atol=1e-5)
    assert all(p.vectors == {} for p in store.scroll("paragraph", batch=500))


def test_retrieve_by_ids(store, data):
    x, _, _ = data
    fill(store, data)
    ids = [pid(7), str(uuid.uuid4()), pid(2)]
    got = store.retrieve("paragraph", ids, with_vectors=True)
    assert [p.id for p in got] == [pid(7), pid(2)]  # asked order, missing id left out
    np.testing.assert_allclose(got[0].vectors["dense"], x[7], atol=1e-5)
    assert store.retrieve("paragraph", [pid(7)])[0].vectors == {}
    assert store.retrieve("paragraph", []) == []


def test_multivector_maxsim(store):
    rng = np.random.default_rng(1)
    d = 8
    spec = CollectionSpec("pages", {"tokens": VectorSpec(d, "dot", multivector=True)}, encoder="colbert-ish", modality="image", payload_indexes=())
    store.create_collection(spec)
    docs = [unit(rng.standard_normal((int(rng.integers(2, 7)), d)).astype(np.float32)) for _ in range(60)]  # each (T_i, d)
    store.upsert("pages", [StoredPoint(id=pid(i), payload={"source": "p.pdf"}, vectors={"tokens": m}) for i, m in enumerate(docs)])
    for _ in range(5):
        qm = unit(rng.standard_normal((3, d)).astype(np.float32))  # (3, d)
        ref = np.array([(qm @ m.T).max(axis=1).sum() for m in docs])  # MaxSim: sum over query tokens of the best doc token
        hits = store.search("pages", qm, using="tokens", limit=5)
        assert [h.id for h in hits] == [pid(int(i)) for i in np.argsort(-ref)[:5]]
        np.testing.assert_allclose([h.score for h in hits], np.sort(ref)[::-1][:5], atol=1e-4)
    back = store.retrieve("pages", [pid(0)], with_vectors=True)[0]
    np.testing.assert_allclose(back.vectors["tokens"], docs[0], atol=1e-5)


# -- two-stage queries: a pooled dense vector prefetches, multivector MaxSim rescores ------

TOK = 16  # token vector size
MV_N = 120


@pytest.fixture
def late(store):
    """A late-interaction collection: per document (T_i, TOK) tokens and their mean-pooled vector."""
    rng = np.random.default_rng(3)
    spec = CollectionSpec(
        "late", {"dense": VectorSpec(TOK), "tokens": VectorSpec(TOK, "dot", multivector=True)}, encoder="li", payload_indexes=("source",)
    )
    store.create_collection(spec)
    docs = [unit(rng.standard_normal((int(rng.integers(3, 9)), TOK))).astype(np.float32) for _ in range(MV_N)]  # each (T_i, TOK)
    pooled = np.stack([mean_pool(d) for d in docs]).astype(np.float32)  # (MV_N, TOK)
    sources = [SOURCES[i % len(SOURCES)] for i in range(MV_N)]
    store.upsert(
        "late",
        [StoredPoint(id=pid(i), payload={"source": sources[i]}, vectors={"dense": pooled[i], "tokens": docs[i]}) for i in range(MV_N)],
    )
    queries = [unit(rng.standard_normal((4, TOK))).astype(np.float32) for _ in range(6)]  # each (4, TOK)
    return docs, pooled, np.array(sources), queries


def two_stage_reference(docs, pooled, q, n_candidates, k, keep=None):
    """Ids of the exact two-stage result: top ``n_candidates`` by cosine of pooled vectors
    (among ``keep``), then the top ``k`` of those by MaxSim; and their MaxSim scores."""
    dense = cosine(mean_pool(q), pooled)  # (N,)
    if keep is not None:
        dense = np.where(keep, dense, -np.inf)
    candidates = [int(i) for i in np.argsort(-dense)[:n_candidates] if np.isfinite(dense[i])]
    scores = maxsim(q, [docs[i] for i in candidates])  # (len(candidates),)
    order = np.argsort(-scores)[:k]
    return [pid(candidates[i]) for i in order], scores[order]


def two_stage(q, n_candidates, k, where=None, prefetch_where=None, with_vectors=False):
    return SearchRequest(
        vector=q,
        using="tokens",
        limit=k,
        where=where,
        prefetch=Prefetch(vector=mean_pool(q), using="dense", limit=n_candidates, where=prefetch_where),
        with_vectors=with_vectors,
    )


def test_query_two_stage_matches_numpy(store, late):
    docs, pooled, _, queries = late
    differs = 0
    for q in queries:
        ids, scores = two_stage_reference(docs, pooled, q, 12, 5)
        hits = store.query("late", two_stage(q, 12, 5))
        assert [h.id for h in hits] == ids
        np.testing.assert_allclose([h.score for h in hits], scores, atol=1e-4)
        exact = [pid(int(i)) for i in np.argsort(-maxsim(q, docs))[:5]]
        differs += exact != ids
        # with every point a candidate, two-stage is exact MaxSim
        assert [h.id for h in store.query("late", two_stage(q, MV_N, 5))] == exact
    assert differs > 0  # the prefetch really limits the candidates (else this test proves nothing)


def test_query_filters_inside_prefetch(store, late):
    docs, pooled, sources, queries = late
    cases = [
        (None, Where(must={"source": ["a.txt", "b.pdf"]}), np.isin(sources, ["a.txt", "b.pdf"])),
        # the main filter applies to the prefetch too: candidates are the points both allow
        (Where(must_not={"source": "b.pdf"}), Where(must={"source": ["a.txt", "b.pdf"]}), sources == "a.txt"),
        (Where(must={"source": "c.md"}), None, sources == "c.md"),
        (Where(must={"source": "nowhere"}), None, np.zeros(MV_N, bool)),
    ]
    for where, prefetch_where, keep in cases:
        for q in queries[:3]:
            ids, _ = two_stage_reference(docs, pooled, q, 10, 5, keep)
            assert [h.id for h in store.query("late", two_stage(q, 10, 5, where, prefetch_where))] == ids


def test_query_batch_matches_single_queries_and_numpy(store, late):
    docs, pooled, sources, queries = late
    requests = [two_stage(q, 15, 4) for q in queries]
    requests.append(SearchRequest(vector=pooled[7], using="dense", limit=6, where=Where(must={"source": "d.html"})))
    requests.append(SearchRequest(vector=pooled[8], using="dense", limit=0))
    results = store.query_batch("late", requests)
    assert len(results) == len(requests)
    for q, hits in zip(queries, results):
        assert [h.id for h in hits] == two_stage_reference(docs, pooled, q, 15, 4)[0]
    dense = cosine(pooled[7], pooled)  # (N,)
    keep = sources == "d.html"
    assert [h.id for h in results[-2]] == [pid(int(i)) for i in np.argsort(-np.where(keep, dense, -np.inf))[:6]]
    np.testing.assert_allclose([h.score for h in results[-2]], np.sort(dense[keep])[::-1][:6], atol=1e-5)
    assert results[-1] == []
    assert [[h.id for h in r] for r in results[:3]] == [[h.id for h in store.query("late", r)] for r in requests[:3]]
    assert store.query_batch("late", []) == []
    assert store.query_batch("nothere", requests[:2]) == [[], []]


def test_query_with_vectors(store, late):
    docs, pooled, _, queries = late
    hits = store.query("late", two_stage(queries[0], 10, 3, with_vectors=True))
    assert len(hits) == 3
    for h in hits:
        i = int(h.id[-8:], 16) - 1
        np.testing.assert_allclose(h.vectors["tokens"], docs[i], atol=1e-5)
        np.testing.assert_allclose(h.vectors["dense"], pooled[i], atol=1e-5)
    assert all(h.vectors == {} for h in store.query("late", two_stage(queries[0], 10, 3)))
    plain = store.query("late", SearchRequest(vector=pooled[0], using="dense", limit=2, with_vectors=True))
    np.testing.assert_allclose(plain[0].vectors["dense"], pooled[0], atol=1e-5)


def test_query_refuses_wrong_prefetch_vectors(store, late):
    _, _, _, queries = late
    with pytest.raises(EncoderMismatchError, match="dense"):
        store.query("late", SearchRequest(vector=queries[0], using="tokens", limit=3, prefetch=Prefetch(np.ones(TOK + 1), "dense", 10)))
    with pytest.raises(EncoderMismatchError, match="pooled"):
        store.query("late", SearchRequest(vector=queries[0], using="tokens", limit=3, prefetch=Prefetch(np.ones(TOK), "pooled", 10)))
    assert store.query("late", two_stage(queries[0], 0, 3)) == []


def test_wrong_vectors_are_refused(store, data):
    fill(store, data)
    with pytest.raises(EncoderMismatchError, match="paragraph"):
        store.search("paragraph", np.zeros(DIM + 3), using="dense", limit=3)
    with pytest.raises(EncoderMismatchError, match="tokens"):
        store.search("paragraph", np.ones(DIM), using="tokens", limit=3)
    with pytest.raises(EncoderMismatchError):
        store.upsert("paragraph", [StoredPoint(id=pid(0), payload={}, vectors={"dense": [1.0, 2.0]})])
    with pytest.raises(RagmmError, match="create_collection"):
        store.upsert("nothere", [StoredPoint(id=pid(0), payload={}, vectors={"dense": [1.0] * DIM})])


def test_missing_collection_is_empty(store):
    q = np.ones(DIM, np.float32)
    assert store.search("nothere", q, using="dense", limit=5) == []
    assert store.count("nothere") == 0
    assert store.count("nothere", Where(must={"source": "a.txt"})) == 0
    assert list(store.scroll("nothere")) == []
    assert store.retrieve("nothere", [pid(1)]) == []
    assert store.get_spec("nothere") is None
    assert store.collections() == []
    store.delete("nothere", Where(must={"source": "a.txt"}))
    store.drop_collection("nothere")


def test_drop_collection(store, data):
    fill(store, data)
    fill(store, data, name="document")
    store.drop_collection("paragraph")
    assert store.collections() == ["document"]
    assert store.search("paragraph", data[1][0], using="dense", limit=5) == []
    assert store.count("document") == N
    store.create_collection(dense_spec(encoder="enc-b"))  # a dropped name is free for another encoder
    assert store.count("paragraph") == 0


def test_bad_collection_name(store, data):
    fill(store, data)
    with pytest.raises(ConfigError, match="not allowed"):
        store.create_collection(dense_spec(name="../escape"))
    assert store.get_spec("../store") is None and store.get_spec("collections/paragraph") is None
    store.drop_collection("..")  # names outside the store are never touched
    store.drop_collection("collections/paragraph")
    assert store.count("paragraph") == N


# -- edge only ---------------------------------------------------------------------------


def test_edge_persists_across_reopen(fast_tmp, data):
    _, q, _ = data
    with EdgeStore(fast_tmp / "store") as store:
        fill(store, data)
        store.delete("paragraph", Where(must={"source": "d.html"}))
        before = [h.id for h in store.search("paragraph", q[0], using="dense", limit=5)]
    reopened = EdgeStore(fast_tmp / "store")
    assert reopened.collections() == ["paragraph"]
    assert reopened.get_spec("paragraph") == dense_spec()
    assert reopened.count("paragraph") == N - N // 4
    assert [h.id for h in reopened.search("paragraph", q[0], using="dense", limit=5)] == before
    with pytest.raises(EncoderMismatchError):
        reopened.create_collection(dense_spec(encoder="enc-b"))
    reopened.close()


def test_edge_collection_is_opened_by_one_store_at_a_time(fast_tmp, data):
    first = EdgeStore(fast_tmp / "store")
    fill(first, data)
    second = EdgeStore(fast_tmp / "store")
    assert second.collections() == ["paragraph"]  # listing opens no shard
    with pytest.raises(RagmmError, match="another ragmm process"):
        second.count("paragraph")
    first.close()
    assert second.count("paragraph") == N
    second.close()


def test_edge_optimize_keeps_results(fast_tmp, data):
    x, q, _ = data
    # a tiny threshold so that even 200 points get an HNSW index
    store = EdgeStore(fast_tmp / "store", indexing_threshold_kb=1)
    fill(store, data)
    assert store.optimize() == {"paragraph": True}
    for qv in q:
        assert [h.id for h in store.search("paragraph", qv, using="dense", limit=5, hnsw_ef=200)] == brute_force(x, qv, 5)
    store.close()


def test_edge_int8_quantisation_rescored_and_unindexed_multivectors(fast_tmp, data):
    x, q, _ = data
    store = EdgeStore(fast_tmp / "store", indexing_threshold_kb=1, quantization="int8", oversampling=3)
    fill(store, data)
    late_docs = [unit(np.random.default_rng(i).standard_normal((4, 8))).astype(np.float32) for i in range(50)]
    store.create_collection(CollectionSpec("pages", {"tokens": VectorSpec(8, "dot", multivector=True)}, encoder="mv", payload_indexes=()))
    store.upsert("pages", [StoredPoint(id=pid(i), payload={}, vectors={"tokens": m}) for i, m in enumerate(late_docs)])
    assert store.optimize() == {"pages": True, "paragraph": True}
    for qv in q:
        hits = store.search("paragraph", qv, using="dense", limit=5, hnsw_ef=200)
        assert [h.id for h in hits] == brute_force(x, qv, 5)
        # rescoring from the original vectors: float32 scores, not int8 ones
        np.testing.assert_allclose([h.score for h in hits], np.sort(x @ qv)[::-1][:5], atol=1e-5)
    qm = late_docs[3][:2]
    # no HNSW graph on the multivector: a search by it alone is exact
    assert [h.id for h in store.search("pages", qm, using="tokens", limit=5)] == [pid(int(i)) for i in np.argsort(-maxsim(qm, late_docs))[:5]]
    store.close()


def test_index_settings_in_config():
    from ragmm.config import ComponentSpec, Config

    cfg = Config()
    for kind, extra in [("edge", {"path": "x"}), ("server", {"location": ":memory:"})]:
        section = cfg.component_config("store", ComponentSpec(type=kind, hnsw_m=48, hnsw_ef_construct=200, quantization="int8", **extra), "store")
        store = (EdgeStore if kind == "edge" else ServerStore).from_config(section)
        assert (store.hnsw_m, store.hnsw_ef_construct, store.hnsw_ef, store.quantization) == (48, 200, 256, "int8")
        with pytest.raises(ConfigError, match="quantization"):
            cfg.component_config("store", ComponentSpec(type=kind, quantization="int4", **extra), "store")
    with pytest.raises(ConfigError, match="int8"):
        ServerStore(location=":memory:", quantization="int4")


def test_edge_missing_folder_is_an_empty_store(fast_tmp):
    store = EdgeStore(fast_tmp / "nowhere")
    assert store.collections() == []
    assert store.search("paragraph", np.ones(DIM), using="dense", limit=3) == []
    assert store.count("paragraph") == 0
    assert store.optimize() == {}
    store.close()
    assert not (fast_tmp / "nowhere").exists()  # reading never creates the folder


def test_edge_repairs_half_created_collection(fast_tmp, data):
    store = EdgeStore(fast_tmp / "store")
    store.create_collection(dense_spec())
    store.close()
    (fast_tmp / "store" / "collections" / "paragraph" / "spec.json").unlink()  # as if killed before the spec was written
    store = EdgeStore(fast_tmp / "store")
    assert store.collections() == []
    assert store.count("paragraph") == 0
    fill(store, data)
    assert store.count("paragraph") == N
    store.close()


# -- sync --------------------------------------------------------------------------------


def test_sync_edge_to_server_is_complete_and_idempotent(fast_tmp, data):
    x, q, _ = data
    src = EdgeStore(fast_tmp / "store")
    fill(src, data)
    mv = CollectionSpec("pages", {"tokens": VectorSpec(4, "cosine", multivector=True)}, encoder="mv", payload_indexes=())
    src.create_collection(mv)
    rng = np.random.default_rng(2)
    src.upsert("pages", [StoredPoint(id=pid(i), payload={"source": "p.pdf"}, vectors={"tokens": rng.standard_normal((3, 4))}) for i in range(20)])
    dst = ServerStore(location=":memory:")

    assert sync(src, dst, progress=False) == {"pages": 20, "paragraph": N}
    assert dst.collections() == ["pages", "paragraph"]
    assert dst.get_spec("paragraph") == dense_spec() and dst.get_spec("pages") == mv
    assert dst.count("paragraph") == N and dst.count("pages") == 20
    for qv in q[:3]:
        assert [h.id for h in dst.search("paragraph", qv, using="dense", limit=5)] == brute_force(x, qv, 5)
    a = {p.id: p for p in src.scroll("pages", with_vectors=True)}
    b = {p.id: p for p in dst.scroll("pages", with_vectors=True)}
    assert a.keys() == b.keys()
    for k, p in a.items():
        assert p.payload == b[k].payload
        np.testing.assert_allclose(p.vectors["tokens"], b[k].vectors["tokens"], atol=1e-5)

    assert sync(src, dst, progress=False) == {"pages": 20, "paragraph": N}  # again: nothing added
    assert dst.count("paragraph") == N and dst.count("pages") == 20
    assert sync(src, dst, collections=["pages"], progress=False) == {"pages": 20}
    with pytest.raises(RagmmError, match="nothere"):
        sync(src, dst, collections=["nothere"], progress=False)
    src.close()
    dst.close()


def test_sync_refuses_a_mismatched_target_before_writing(fast_tmp, data):
    src = EdgeStore(fast_tmp / "store")
    fill(src, data)
    src.create_collection(dense_spec(name="document"))
    dst = ServerStore(location=":memory:")
    dst.create_collection(dense_spec(name="paragraph", encoder="enc-b"))
    with pytest.raises(EncoderMismatchError):
        sync(src, dst, progress=False)
    assert dst.collections() == ["paragraph"]  # "document" was not created either
    src.close()


# -- config ------------------------------------------------------------------------------


def test_server_needs_exactly_one_target():
    with pytest.raises(ConfigError, match="url"):
        ServerStore()
    with pytest.raises(ConfigError, match="exactly one"):
        ServerStore("http://localhost:6333", location=":memory:")


def test_store_sections_are_validated_by_the_config():
    from ragmm.config import ComponentSpec, Config

    cfg = Config()
    with pytest.raises(ConfigError, match="exactly one of url"):
        cfg.component_config("store", ComponentSpec(type="server"), "store")
    with pytest.raises(ConfigError, match="type = \"edge\""):
        cfg.component_config("store", ComponentSpec(type="server", path="/tmp/q"), "store")
    with pytest.raises(ConfigError, match="hnsw_mm"):
        cfg.component_config("store", ComponentSpec(type="edge", hnsw_mm=16), "store")
    server = cfg.component_config("store", ComponentSpec(type="server", location=":memory:", collection_prefix="t_"), "store")
    assert isinstance(ServerStore.from_config(server), ServerStore)
    edge = cfg.component_config("store", ComponentSpec(type="edge", path="x", max_search_threads=2), "store")
    store = EdgeStore.from_config(edge)
    assert store.root.name == "x" and store.max_search_threads == 2


# -- server only -------------------------------------------------------------------------


def test_server_ignores_and_refuses_foreign_collections():
    from qdrant_client import models

    store = ServerStore(location=":memory:")
    store.client.create_collection("ragmm_paragraph", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
    store.client.create_collection("other_thing", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
    assert store.collections() == []
    assert store.get_spec("paragraph") is None
    with pytest.raises(RagmmError, match="collection_prefix"):
        store.create_collection(dense_spec())
    mine = ServerStore(location=":memory:", collection_prefix="mine_")
    mine.create_collection(dense_spec())
    assert mine.client.collection_exists("mine_paragraph") and mine.collections() == ["paragraph"]
    store.close()
    mine.close()
