"""`ragmm ask` through a running server: found by config, env or the default port (same store
only), the same output as in process, and no torch on the client path."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from typer.testing import CliRunner

from ragmm.cli.app import app
from ragmm.serve.client import RagmmClient, ServerError, find_server

Q = "Who walked on the Moon first?"
runner = CliRunner(env={"COLUMNS": "250"})


def test_client_calls(live_server, small_pipe):
    client = RagmmClient(live_server.url)
    assert {c.name for c in client.corpora()} == {c.name for c in small_pipe.corpora()}
    hits, trace = client.retrieve(Q, k=2)
    assert len(hits) == 2 and hits[0].item.source.endswith("moon_landing.html") and trace.steps[0].kind == "route"
    pieces = list(client.ask_stream(Q, k=2))
    assert all(isinstance(p, str) for p in pieces[:-1]) and pieces[-1].citations
    try:
        client.index(["/nowhere"])
    except ServerError as exc:
        assert "HTTP 401" in str(exc) and "token" in str(exc)
    else:
        raise AssertionError("indexing without the token must fail")


def test_find_server(live_server, small_pipe, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAGMM_SERVER", raising=False)
    store = small_pipe.config.store.options()["path"]
    (tmp_path / "ragmm.toml").write_text(f'[store]\npath = "{store}"\n\n[serve]\nport = {live_server.port}\n')
    found = find_server()
    assert found is not None and found.url == live_server.url  # the default-port probe, same store
    assert find_server(generator="smollm2") is None  # the server runs another generator
    assert find_server(store=tmp_path / "other-store") is None  # another project's store
    (tmp_path / "ragmm.toml").write_text(f"[serve]\nport = {live_server.port}\n")
    assert find_server() is None  # ./.ragmm is not the server's store
    monkeypatch.setenv("RAGMM_SERVER", live_server.url)
    assert find_server() is not None  # named explicitly: used whatever its store
    monkeypatch.setenv("RAGMM_SERVER", "off")
    assert find_server() is None
    monkeypatch.setenv("RAGMM_SERVER", "http://127.0.0.1:9")  # nobody listens: answer in process
    assert find_server() is None


def test_cli_ask_through_the_server_prints_the_same(live_server, small_pipe, monkeypatch):
    monkeypatch.setenv("RAGMM_SERVER", live_server.url)
    res = runner.invoke(app, ["ask", Q, "--k", "3", "--json"])
    assert res.exit_code == 0, res.output
    remote = json.loads(res.output)
    local = json.loads(json.dumps(small_pipe.ask(Q, k=3).to_dict()))  # as printed: tuples become lists
    for d in (remote, local):
        d.pop("timings")
    assert remote == local
    res = runner.invoke(app, ["ask", Q, "--k", "3", "--explain"])
    assert res.exit_code == 0 and "Evidence" in res.output and "moon_landing.html" in res.output and "1. route:" in res.output


def test_client_path_imports_no_model_library(live_server):
    code = (
        "import sys\nfrom ragmm.cli.app import app\n"
        "try:\n    app(['ask', 'Who walked on the Moon first?', '-k', '2'])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'sentence_transformers', 'fastapi', 'uvicorn', 'httpx', 'numpy'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "RAGMM_SERVER": live_server.url}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Moon" in out.stdout and "Evidence" in out.stdout and out.stdout.strip().splitlines()[-1] == "[]"


def test_serve_refuses_a_public_bind_without_a_token(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAGMM_TOKEN", raising=False)
    res = runner.invoke(app, ["serve", "--host", "0.0.0.0"])
    assert res.exit_code == 1 and "give --token or set $RAGMM_TOKEN" in res.output


def test_find_server_passes_over_other_services(tmp_path, monkeypatch):
    """Something else on the port (not HTTP, or HTTP but not ragmm): answer in process."""
    import socket
    import threading

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAGMM_SERVER", raising=False)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    replies = [b"SSH-2.0-OpenSSH_9.2\r\n", b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{"status":"ok"}']

    def answer():
        for reply in replies:
            conn, _ = listener.accept()
            conn.recv(4096)
            conn.sendall(reply)
            conn.close()

    threading.Thread(target=answer, daemon=True).start()
    (tmp_path / "ragmm.toml").write_text(f"[serve]\nport = {port}\n")
    assert find_server() is None  # not HTTP
    assert find_server() is None  # HTTP, but no ragmm /health
    listener.close()


def test_concurrent_asks_and_retrieves(live_server):
    """Sixteen requests at once: every one answered, each as when asked alone."""
    from concurrent.futures import ThreadPoolExecutor

    client = RagmmClient(live_server.url)
    questions = [Q, "When can visitors come to the apiary?"]
    alone = {q: client.ask(q, k=3).text for q in questions}

    def one(i):
        q = questions[i % 2]
        if i % 4 == 3:
            return q, client.retrieve(q, k=3)[0][0].item.source
        return q, "".join(p for p in client.ask_stream(q, k=3) if isinstance(p, str))

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(16)))
    assert len(results) == 16
    for i, (q, got) in enumerate(results):
        assert got.endswith(("moon_landing.html", "apiary_notice.png")) if i % 4 == 3 else got == alone[q]


def test_entry_point_answers_through_the_server_without_typer(live_server):
    """The installed `ragmm` (ragmm.cli.fast.main) answers `ask` through a warm server before
    typer and pydantic are imported, and prints what the typer command prints."""
    code = (
        "import sys\nfrom ragmm.cli.fast import main\n"
        f"main(['ask', {Q!r}, '-k', '2', '--explain'])\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'typer', 'click', 'pydantic', 'torch', 'numpy', 'httpx'}))"
    )
    env = {**os.environ, "RAGMM_SERVER": live_server.url, "COLUMNS": "250"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    *printed, imported = out.stdout.rstrip("\n").split("\n")
    assert imported == "[]"
    typer_path = runner.invoke(app, ["ask", Q, "-k", "2", "--explain"], env={"RAGMM_SERVER": live_server.url})
    assert typer_path.exit_code == 0, typer_path.output
    assert "\n".join(printed) == typer_path.output.rstrip("\n") and "Evidence" in typer_path.output


def test_entry_point_leaves_the_rest_to_typer(live_server, monkeypatch, capsys):
    from ragmm.cli.fast import ask_through_server

    monkeypatch.setenv("RAGMM_SERVER", live_server.url)
    assert not ask_through_server(["--help"])  # typer prints the help
    assert not ask_through_server(["--no-such-option", Q])  # and the mistake
    assert not ask_through_server([])  # no question and no image
    assert not ask_through_server(["-k", "two", Q])
    monkeypatch.setenv("RAGMM_SERVER", "off")
    assert not ask_through_server([Q])  # no server: answered in process
    assert ask_through_server.__module__ == "ragmm.cli.fast" and capsys.readouterr().out == ""
