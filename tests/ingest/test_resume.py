"""A run killed with SIGKILL half-way resumes without duplicates or loss."""

import signal
import subprocess
import sys
import textwrap

from ragmm.protocols import Where

CRASHER = textwrap.dedent(
    """
    import os, signal, sys
    from ragmm.config import load_config
    from ragmm.pipeline import Pipeline
    from ragmm.stores.edge import EdgeStore

    kill_at = int(sys.argv[3])
    calls = 0
    original = EdgeStore.upsert

    def upsert(self, name, points):
        global calls
        original(self, name, points)
        if name == "paragraph":
            calls += 1
            if calls == kill_at:  # after a paragraph batch, before its documents and ledger entries
                os.kill(os.getpid(), signal.SIGKILL)

    EdgeStore.upsert = upsert
    cfg = load_config(None, {"store": {"type": "edge", "path": sys.argv[2]}, "generator": {"type": "extractive"}, "index": {"batch_size": 8}})
    Pipeline(cfg).index([sys.argv[1]], corpus_root=sys.argv[1], progress=False)
    print("finished without being killed")
    """
)


def make_corpus(root, n_files=24, n_paras=30):
    root.mkdir()
    for f in range(n_files):
        paras = [f"File {f} paragraph {p} says that item {f * 100 + p} is stored in box {p % 9}. " * 3 for p in range(n_paras)]
        (root / f"f{f:02d}.txt").write_text("\n\n".join(paras))
    return root


def test_killed_run_resumes_without_duplicates(tmp_path, make_pipeline):
    corpus = make_corpus(tmp_path / "corpus")
    store = tmp_path / "store"
    script = tmp_path / "crash.py"
    script.write_text(CRASHER)
    proc = subprocess.run([sys.executable, str(script), str(corpus), str(store), "2"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]

    resumed = make_pipeline(store)
    partial = {r.source for r in resumed.indexer.ledger.records()}
    assert 0 < len(partial) < 24  # the kill really hit mid-run
    report = resumed.index([corpus], corpus_root=corpus, progress=False)
    assert report.files_unchanged == len(partial)
    assert report.files_indexed == 24 - len(partial)

    clean = make_pipeline(tmp_path / "clean")
    clean.index([corpus], corpus_root=corpus, progress=False)
    for corpus_name in ("paragraph", "document"):
        ids = [p.id for p in resumed.store.scroll(corpus_name)]
        assert len(ids) == len(set(ids))
        assert sorted(ids) == sorted(p.id for p in clean.store.scroll(corpus_name))
    for f in range(24):
        assert resumed.store.count("document", Where(must={"source": f"f{f:02d}.txt"})) == 1


def test_changed_file_keeps_old_items_until_new_ones_are_written(tmp_path, make_pipeline):
    corpus = make_corpus(tmp_path / "corpus", n_files=2, n_paras=3)
    pipe = make_pipeline()
    pipe.index([corpus], corpus_root=corpus, progress=False)
    (corpus / "f00.txt").write_text("Completely new content about giraffes.")
    calls = []
    original = pipe.store.delete

    def failing_delete(name, where):
        calls.append(name)
        raise KeyboardInterrupt  # interrupted right after the new items were written

    pipe.store.delete = failing_delete
    try:
        pipe.index([corpus], corpus_root=corpus, progress=False)
    except KeyboardInterrupt:
        pass
    assert calls
    texts = " ".join(p.payload["text"] for p in pipe.store.scroll("paragraph", Where(must={"source": "f00.txt"})))
    assert "giraffes" in texts and "box" in texts  # both versions present, nothing lost
    pipe.store.delete = original
    report = pipe.index([corpus], corpus_root=corpus, progress=False)
    assert report.files_replaced == 1
    texts = " ".join(p.payload["text"] for p in pipe.store.scroll("paragraph", Where(must={"source": "f00.txt"})))
    assert "giraffes" in texts and "box" not in texts
