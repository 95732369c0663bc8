"""Indexing on Ray Data gives the points of a single-process run, and an interrupted
distributed run resumes without duplicates or loss (a local Ray with 2 CPUs). The demo corpus
has all three modalities; the video's path (parsed where it is encoded) is the actor's own."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from ragmm.config import load_config
from ragmm.errors import ConfigError
from ragmm.ingest import distributed
from ragmm.ingest.distributed import index_with_ray
from ragmm.ingest.ledger import LEDGER
from ragmm.pipeline import Pipeline
from ragmm.types import IndexReport
from tests.conftest import EXAMPLES

# Starting Ray and loading a model per worker takes tens of seconds (minutes on a busy machine).
slow = pytest.mark.slow

# The demo corpus: four documents, four images and a video (no OCR: about 1 s an image on
# 2 cores; no speech recognition: Whisper would take most of the run).
ROOT = EXAMPLES.parent
PATHS = [EXAMPLES, ROOT / "videos" / "garden_club.mp4"]
FILES = 9
OVERRIDES = {
    "store": {"type": "server", "location": ":memory:"},
    "index": {"ocr": False},
    "readers": {"video": {"type": "video", "asr": False}},
    "generator": {"type": "extractive"},
    "ray": {"batch_size": 4, "num_encode_actors": 1},
}


def make_pipeline() -> Pipeline:
    return Pipeline(load_config(None, OVERRIDES))


def contents(pipe: Pipeline) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """``{corpus: {point id: {vector name: array}}}`` of every corpus but the ledger."""
    out = {}
    for corpus in pipe.store.collections():
        if corpus == LEDGER:
            continue
        out[corpus] = {p.id: {name: np.asarray(v, dtype=np.float32) for name, v in p.vectors.items()} for p in pipe.store.scroll(corpus, with_vectors=True)}
    return out


def ledger(pipe: Pipeline) -> dict[str, tuple[str, dict[str, int]]]:
    return {r.source: (r.source_hash, r.items) for r in pipe.indexer.ledger.records()}


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="Ray Data is an optional extra: pip install 'ragmm[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024 * 1024, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def single_process():
    """The reference: the same config indexed by the plain :class:`Indexer`."""
    pipe = make_pipeline()
    report = pipe.index(PATHS, corpus_root=ROOT, progress=False)
    assert report.files_indexed == FILES and not report.skipped
    assert {"paragraph", "document", "image", "clip", "video"} <= set(report.items)
    yield report, contents(pipe), ledger(pipe)
    pipe.close()


def assert_same(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for corpus, points in want.items():
        assert set(got[corpus]) == set(points), corpus
        for pid, vectors in points.items():
            assert set(got[corpus][pid]) == set(vectors)
            for name, vec in vectors.items():
                np.testing.assert_allclose(got[corpus][pid][name], vec, atol=1e-5, err_msg=f"{corpus} {pid} {name}")


@slow
def test_ray_run_gives_the_points_of_a_single_process_run(local_ray, single_process):
    want_report, want, want_ledger = single_process
    with make_pipeline() as pipe:
        report = index_with_ray(pipe, PATHS, corpus_root=ROOT, progress=False)
        assert report.files_indexed == want_report.files_indexed and not report.skipped
        assert report.items == want_report.items
        assert_same(contents(pipe), want)
        assert ledger(pipe) == want_ledger
        again = index_with_ray(pipe, PATHS, corpus_root=ROOT, progress=False)
        assert (again.files_unchanged, again.files_indexed) == (FILES, 0)  # skipped on the driver by the ledger


@slow
def test_interrupted_ray_run_resumes_without_duplicates_or_loss(local_ray, single_process):
    _, want, want_ledger = single_process
    with make_pipeline() as pipe:
        store = pipe.store
        original, calls = store.upsert, []

        def upsert(name, points):
            original(name, points)
            if name != LEDGER:
                calls.append(name)
                if len(calls) == 3:  # mid-way: after some sources, before this one is marked complete
                    raise RuntimeError("killed")

        store.upsert = upsert
        with pytest.raises(RuntimeError, match="killed"):
            index_with_ray(pipe, PATHS, corpus_root=ROOT, progress=False)
        del store.upsert
        done = ledger(pipe)
        assert 0 < len(done) < FILES  # the interruption really hit mid-run

        report = index_with_ray(pipe, PATHS, corpus_root=ROOT, progress=False)
        assert report.files_unchanged == len(done)
        assert report.files_indexed == FILES - len(done)
        assert_same(contents(pipe), want)  # every point, and no stray one
        assert ledger(pipe) == want_ledger


@slow
def test_a_bad_file_is_skipped_with_its_reason(local_ray, tmp_path):
    (tmp_path / "good.md").write_text("# Bees\n\nHoneybees dance to say where flowers are.\n")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image at all")
    with make_pipeline() as pipe:
        report = index_with_ray(pipe, [tmp_path], corpus_root=tmp_path, progress=False)
    assert report.files_indexed == 1
    assert [s.path.endswith("broken.png") for s in report.skipped] == [True]


def test_index_ray_options_reach_index_with_ray(tmp_path, monkeypatch):
    from ragmm.cli.app import app

    calls = []

    def fake(pipe, paths, corpus_root=None, progress=True, address=None):
        calls.append((paths, address, progress))
        return IndexReport(files_seen=1, files_indexed=1, items={"paragraph": 3})

    monkeypatch.setattr(distributed, "index_with_ray", fake)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ragmm.toml").write_text('[generator]\ntype = "extractive"\n')
    runner = CliRunner(env={"COLUMNS": "250"})
    res = runner.invoke(app, ["index", "docs", "--ray-address", "ray://head:10001", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "indexed 1 file(s)" in res.output and "3 paragraph" in res.output
    res = runner.invoke(app, ["index", "docs", "--ray", "--quiet"])
    assert res.exit_code == 0, res.output
    assert calls == [(["docs"], "ray://head:10001", False), (["docs"], None, False)]


def test_without_ray_installed_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with Pipeline(load_config(None, OVERRIDES)) as pipe, pytest.raises(ConfigError, match=r"pip install 'ragmm\[ray\]'"):
        index_with_ray(pipe, [EXAMPLES], progress=False)


def test_ledger_get_many_reads_records_in_batches():
    from ragmm.ingest.ledger import Ledger, SourceRecord

    with make_pipeline() as pipe:
        ledger = Ledger(pipe.store)
        assert ledger.get_many(["a.md"]) == {}  # no ledger collection yet
        for key in ("a.md", "b.md", "c.md"):
            ledger.mark_complete(SourceRecord(key, f"hash-{key}", {"paragraph": 2}))
        got = ledger.get_many(["a.md", "missing.md", "b.md", "c.md"], batch=2)
    assert {k: (r.source_hash, r.items) for k, r in got.items()} == {k: (f"hash-{k}", {"paragraph": 2}) for k in ("a.md", "b.md", "c.md")}
