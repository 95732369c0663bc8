"""Every registered implementation fits the protocol of its kind (ragmm.protocols): what
``registry.get`` checks on first use, run here over all of them so a misfit fails a test."""

from __future__ import annotations

import pytest

from ragmm.protocols import missing_methods
from ragmm.registry import KINDS, registry

ENTRIES = [(kind, name) for kind in KINDS for name in registry.names(kind)]


@pytest.mark.parametrize(("kind", "name"), ENTRIES, ids=[f"{k}:{n}" for k, n in ENTRIES])
def test_registered_implementation_fits_its_protocol(kind, name):
    cls = registry.get(kind, name)
    assert missing_methods(kind, cls) == []


def test_every_kind_has_an_implementation():
    assert {kind for kind, _ in ENTRIES} == set(KINDS)


def test_missing_methods_names_what_is_missing():
    class HalfRetriever:
        def retrieve(self, query, corpus, k, where=None):
            return []

    assert missing_methods("retriever", HalfRetriever) == ["query_vectors"]
