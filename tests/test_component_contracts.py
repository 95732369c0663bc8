"""Behavioural contracts of the readers and retrievers ragmm registers, run over each one as
the default config builds it (the structural check of every registry entry is in
test_protocols.py)."""

from __future__ import annotations

import pytest

from ragmm.errors import InputError
from ragmm.protocols import SourceFile
from ragmm.types import Query

MODALITIES = ["text", "image", "video"]


@pytest.mark.parametrize("modality", MODALITIES)
def test_reader_declares_what_the_indexer_needs(make_pipeline, modality):
    reader = make_pipeline().indexer.reader(modality)
    assert reader.modality == modality and reader.suffixes
    assert all(s.startswith(".") and s == s.lower() for s in reader.suffixes)
    assert isinstance(reader.streams, bool) and reader.buffer > 0
    specs = reader.collections()
    assert specs and all(spec.modality == modality and spec.vectors for spec in specs)


@pytest.mark.parametrize("modality", MODALITIES)
def test_reader_refuses_garbage_with_a_line_naming_the_file(make_pipeline, tmp_path, modality):
    reader = make_pipeline().indexer.reader(modality)
    path = tmp_path / f"garbage{sorted(reader.suffixes)[0]}"
    data = bytes(range(256)) * 64
    path.write_bytes(data)
    with pytest.raises(InputError) as err:
        reader.read(SourceFile(path, path.name, "0" * 64, None if reader.streams else data))
    assert err.value.path == str(path) and "\n" not in err.value.reason and len(err.value.reason) > 10


@pytest.mark.parametrize("modality", MODALITIES)
def test_retriever_on_a_missing_corpus_finds_nothing(make_pipeline, modality):
    retriever = make_pipeline().retriever(modality)
    assert retriever.retrieve(Query("anything at all"), "no-such-corpus", 5) == []
    vectors = retriever.query_vectors(Query("a red kite"))
    assert vectors and all(getattr(v, "shape", None) for v in vectors.values())
