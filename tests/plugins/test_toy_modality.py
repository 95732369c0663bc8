"""A modality added from outside ragmm: reader + encoder + retriever + config sections, found
through ``ask`` with no change to ragmm's code, loaded as a ``ragmm.plugins`` entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

import ragmm.pipeline
import ragmm.registry
from ragmm.config import load_config
from ragmm.errors import ConfigError
from ragmm.pipeline import Pipeline
from ragmm.registry import Registry

HERE = Path(__file__).resolve().parent


@pytest.fixture()
def plugin_registry(tmp_path, monkeypatch):
    """A fresh registry that finds the toy modality through an installed entry point."""
    dist = tmp_path / "site" / "ragmm_toy-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ragmm-toy\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[ragmm.plugins]\ntoy = tests.plugins.toy_modality:register\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    fresh = Registry()
    for kind, entries in ragmm.registry.registry._entries.items():  # the built-ins, as shipped
        for name, target in entries.items():
            fresh._entries[kind][name] = target
    monkeypatch.setattr(ragmm.registry, "registry", fresh)
    monkeypatch.setattr(ragmm.pipeline, "registry", fresh)
    return fresh


def toy_config(store: Path):
    return load_config(
        None,
        {
            "store": {"type": "edge", "path": str(store)},
            "encoders": {"toy": {"type": "toy-hashing"}},
            "readers": {"toy": {"type": "toy"}},
            "retrievers": {"toy": {"type": "toy"}},
            "generator": {"type": "extractive"},
        },
    )


def test_toy_modality_is_indexed_and_found_through_ask(plugin_registry, tmp_path):
    corpus = tmp_path / "facts"
    corpus.mkdir()
    (corpus / "animals.toy").write_text("the otter floats on its back\nthe heron stands in shallow water\n")
    (corpus / "tools.toy").write_text("a chisel cuts wood along the grain\n")
    (corpus / "empty.toy").write_text("\n\n")
    assert "toy" in plugin_registry.names("reader")

    with Pipeline(toy_config(tmp_path / "store")) as pipe:
        report = pipe.index([corpus], corpus_root=corpus, progress=False)
        assert report.items == {"toy-lines": 3}
        assert [s.path for s in report.skipped] == [str(corpus / "empty.toy")]
        answer = pipe.ask("which bird stands in water?", k=2)
        top = answer.evidence[0]
        assert top.item.corpus == "toy-lines" and top.item.text == "the heron stands in shallow water"
        assert "toy" in top.scores
        again = pipe.index([corpus], corpus_root=corpus, progress=False)
        assert again.files_unchanged == 2 and pipe.store.count("toy-lines") == 3


def test_a_plugin_that_does_not_fit_its_protocol_is_refused(plugin_registry):
    class NoEncode:
        modality = "toy"

        def collections(self):
            return []

    with pytest.raises(ConfigError, match=r"does not implement read\(\), size\(\), encode\(\) of ragmm.protocols.Reader"):
        plugin_registry.register("reader", "broken", NoEncode)


def test_pipeline_names_no_modality():
    import re

    source = Path(ragmm.pipeline.__file__).read_text()
    assert not re.findall(r"[\"'](image|video|clip|paragraph|document|text)[\"']", source)
