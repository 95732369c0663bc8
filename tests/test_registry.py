import pytest

from ragmm.errors import ConfigError
from ragmm.registry import Registry, registry


def test_refuses_duplicate_names():
    r = Registry()
    r.register("generator", "x", "a:b")
    with pytest.raises(ValueError, match="already registered"):
        r.register("generator", "x", "c:d")


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ConfigError, match="known store types: edge, server"):
        registry.get("store", "nope")


def test_lazy_import_and_decorator():
    r = Registry()
    r.register("router", "all", "ragmm.routing:AllCorporaRouter")
    from ragmm.routing import AllCorporaRouter

    assert r.get("router", "all") is AllCorporaRouter

    @r.register("reranker", "mine")
    class Mine:
        def rerank(self, query, hits, k):
            return list(hits)[:k]

    assert r.get("reranker", "mine") is Mine
    with pytest.raises(ValueError, match="unknown registry kind"):
        r.register("nope", "x", "a:b")
