"""Late interaction as a first-class corpus: `index` writes token vectors beside a pooled vector,
`ask` searches two-stage (pooled prefetch, MaxSim rescoring), with the tiny model trained in
tests/training/test_late_interaction.py (plumbing, no quality claim beyond its toy task)."""

from __future__ import annotations

import numpy as np
import pytest

from ragmm.config import load_config
from ragmm.pipeline import Pipeline
from ragmm.protocols import DENSE, TOKENS
from ragmm.scores import maxsim
from tests.training.test_late_interaction import _one_torch_thread, tiny_bert, toy_rows, trained  # noqa: F401 (fixtures)


def li_pipeline(store, model, pooling=1):
    return Pipeline(
        load_config(
            None,
            {
                "store": {"type": "edge", "path": str(store)},
                "encoders": {"text": {"type": "late-interaction", "model": model, "precision": "fp32"}, "image": {"type": "none"}},
                "readers": {"text": {"type": "text", "token_pooling": pooling}},
                "generator": {"type": "extractive"},
                "retrieve": {"candidates": 8},
            },
        )
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("li-corpus")
    for i, row in enumerate(toy_rows()):
        (root / f"doc{i:02d}.txt").write_text(row["positive"] + "\n")
    return root


def test_index_writes_tokens_and_ask_searches_two_stage(trained, corpus, tmp_path, monkeypatch):
    res, _, rows = trained
    with li_pipeline(tmp_path / "store", res.output) as pipe:
        report = pipe.index([corpus], corpus_root=corpus, progress=False)
        assert report.items == {"paragraph": len(rows), "document": len(rows)}
        spec = pipe.store.get_spec("paragraph")
        assert spec.vectors[TOKENS].multivector and not spec.vectors[DENSE].multivector

        requests = []
        real = type(pipe.store).query

        def spy(self, name, request):
            requests.append(request)
            return real(self, name, request)

        monkeypatch.setattr(type(pipe.store), "query", spy)
        enc = pipe.encoder("text")
        found = 0
        for i, row in enumerate(rows[:10]):
            hits = pipe.retrieve(row["query"], k=3, corpora=["paragraph"])
            # MaxSim over the stored token vectors of the candidates, computed here
            stored = {p.id: p for p in pipe.store.retrieve("paragraph", [h.item.id for h in hits], with_vectors=True)}
            ref = maxsim(enc.encode_query([row["query"]])[0], [np.asarray(stored[h.item.id].vectors[TOKENS]) for h in hits])
            np.testing.assert_allclose([h.scores[TOKENS] for h in hits], ref, atol=1e-4)
            found += hits[0].item.source == f"doc{i:02d}.txt"
        assert found >= 8
        assert requests and all(r.using == TOKENS and r.prefetch is not None and r.prefetch.using == DENSE for r in requests)
        answer = pipe.ask(rows[0]["query"], k=1, corpora=["paragraph"])
        assert answer.evidence[0].item.source == "doc00.txt"


def test_token_pooling_stores_fewer_vectors(trained, corpus, tmp_path):
    res, _, _ = trained
    counts = {}
    for pooling in (1, 2):
        with li_pipeline(tmp_path / f"store{pooling}", res.output, pooling) as pipe:
            pipe.index([corpus], corpus_root=corpus, progress=False)
            counts[pooling] = sum(len(p.vectors[TOKENS]) for p in pipe.store.scroll("paragraph", with_vectors=True))
    assert counts[2] < counts[1]


def test_eval_recognises_a_late_interaction_folder(trained, tiny_bert):
    from ragmm.encoders.late_interaction import is_multivector_folder

    res, _, _ = trained
    assert is_multivector_folder(res.output) and not is_multivector_folder(tiny_bert)
