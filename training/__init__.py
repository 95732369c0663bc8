"""Training of ragmm retrievers, router and reranker (``ragmm train``)."""
