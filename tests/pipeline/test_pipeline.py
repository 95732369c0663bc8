"""End to end on the real packaged encoder and the embedded Edge store."""

import shutil

import pytest

from ragmm.errors import EncoderMismatchError
from ragmm.pipeline import NOTHING_INDEXED
from tests.conftest import EXAMPLES


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    # The text documents only: images have their own tests (tests/pipeline/test_images.py).
    shutil.copytree(EXAMPLES, root / "docs", ignore=shutil.ignore_patterns("images"))
    return root


def test_index_then_retrieve_finds_the_right_paragraph(make_pipeline, corpus):
    pipe = make_pipeline()
    report = pipe.index([corpus], corpus_root=corpus, progress=False)
    assert report.files_indexed == 4 and not report.skipped
    assert report.items["paragraph"] >= 4 and report.items["document"] == 4
    hits = pipe.retrieve("Who designed a lens of concentric glass prisms?", k=3)
    assert hits[0].item.source == "docs/lighthouses.md"
    assert "Fresnel" in hits[0].item.text
    assert hits == sorted(hits, key=lambda h: h.score, reverse=True)
    hits = pipe.retrieve("What year was called the year without a summer?", k=1, corpora=["paragraph"])
    assert hits[0].item.source == "docs/volcanoes.pdf" and hits[0].item.locator.page == 1


def test_ask_cites_evidence(make_pipeline, corpus):
    pipe = make_pipeline()
    pipe.index([corpus], corpus_root=corpus, progress=False)
    answer = pipe.ask("How do honeybees tell each other where flowers are?", k=3)
    assert answer.citations, answer.text
    assert all(1 <= c.n <= len(answer.evidence) for c in answer.citations)
    assert any(c.hit.item.source == "docs/honeybees.txt" for c in answer.citations)
    assert {"retrieve", "generate", "total"} <= set(answer.timings)


def test_reindex_adds_nothing_and_changed_file_replaces_its_items(make_pipeline, corpus):
    pipe = make_pipeline()
    pipe.index([corpus], corpus_root=corpus, progress=False)
    counts = {c: pipe.store.count(c) for c in ("paragraph", "document")}
    again = pipe.index([corpus], corpus_root=corpus, progress=False)
    assert again.files_unchanged == 4 and again.files_indexed == 0
    assert {c: pipe.store.count(c) for c in counts} == counts

    bees = corpus / "docs" / "honeybees.txt"
    bees.write_text("Honeybees\n\nA colony of bees keeps one queen. Bumblebees nest in the ground.\n")
    changed = pipe.index([corpus], corpus_root=corpus, progress=False)
    assert changed.files_indexed == 1 and changed.files_replaced == 1 and changed.files_unchanged == 3
    from ragmm.protocols import Where

    texts = [p.payload["text"] for p in pipe.store.scroll("paragraph", Where(must={"source": "docs/honeybees.txt"}))]
    assert texts and all("waggle" not in t for t in texts)
    assert pipe.store.count("document", Where(must={"source": "docs/honeybees.txt"})) == 1


def test_remove_drops_a_source_everywhere(make_pipeline, corpus):
    pipe = make_pipeline()
    pipe.index([corpus], corpus_root=corpus, progress=False)
    removed = pipe.remove(corpus / "docs" / "lighthouses.md", corpus_root=corpus)
    assert removed == ["docs/lighthouses.md"]
    from ragmm.protocols import Where

    for c in ("paragraph", "document"):
        assert pipe.store.count(c, Where(must={"source": "docs/lighthouses.md"})) == 0
    assert all(h.item.source != "docs/lighthouses.md" for h in pipe.retrieve("Fresnel lens lighthouse", k=10))
    info = {c.name: c for c in pipe.corpora()}
    assert info["document"].items == 3 and info["document"].sources == 3
    assert pipe.remove(corpus / "docs" / "nothing.md", corpus_root=corpus) == []


def test_bad_inputs_are_skipped_and_the_batch_goes_on(make_pipeline, corpus):
    docs = corpus / "docs"
    (docs / "binary.txt").write_bytes(bytes(range(256)) * 10)
    (docs / "empty.md").write_text("")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    (docs / "photo.xyz").write_bytes(b"\x89PNG")
    pipe = make_pipeline()
    report = pipe.index([docs, corpus / "missing-folder"], corpus_root=corpus, progress=False)
    assert report.files_indexed == 4
    reasons = {s.path.rsplit("/", 1)[-1]: s.reason for s in report.skipped}
    assert set(reasons) == {"binary.txt", "empty.md", "broken.pdf", "photo.xyz", "missing-folder"}
    assert "binary" in reasons["binary.txt"] and "empty" in reasons["empty.md"]


def test_empty_store_answers_without_crashing(make_pipeline):
    pipe = make_pipeline()
    assert pipe.retrieve("anything") == []
    answer = pipe.ask("anything")
    assert answer.text == NOTHING_INDEXED and answer.citations == []
    assert pipe.corpora() == []


def test_store_survives_reopen(make_pipeline, corpus, tmp_path):
    first = make_pipeline(tmp_path / "s")
    first.index([corpus], corpus_root=corpus, progress=False)
    expected = [h.item.id for h in first.retrieve("moon landing crew", k=3)]
    first.close()
    second = make_pipeline(tmp_path / "s")
    assert [h.item.id for h in second.retrieve("moon landing crew", k=3)] == expected


def test_asking_with_another_encoder_is_a_clear_error(make_pipeline, corpus, tmp_path):
    pipe = make_pipeline(tmp_path / "s")
    pipe.index([corpus], corpus_root=corpus, progress=False)
    pipe.close()
    other = make_pipeline(tmp_path / "s")

    class Other:
        name, dim, modality = "someone/else", 384, "text"

        def encode_query(self, texts):
            raise AssertionError("must not encode with a mismatched encoder")

    other.encoders.use("text", Other())
    with pytest.raises(EncoderMismatchError, match="someone/else"):
        other.retrieve("lighthouse")


def test_empty_corpora_are_never_routed(make_pipeline, corpus):
    from ragmm.ingest.text import text_spec

    pipe = make_pipeline()
    pipe.index([corpus], corpus_root=corpus, progress=False)
    pipe.store.create_collection(text_spec("empty-notes", pipe.encoder("text")))
    assert "empty-notes" in pipe.store.collections()
    assert "empty-notes" not in pipe.available_corpora() and "paragraph" in pipe.available_corpora()
    answer = pipe.ask("lighthouse", k=2)
    routed = answer.trace.steps[0].routes
    assert routed and "empty-notes" not in {c for c, _ in routed}
    removed = [key for f in sorted(corpus.iterdir()) for key in pipe.remove(f, corpus_root=corpus)]
    assert removed and pipe.available_corpora() == []
