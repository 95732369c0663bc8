import json
import shutil

import pytest
from ragmm.cli.app import app
from typer.testing import CliRunner

from tests.conftest import EXAMPLES

runner = CliRunner(env={"COLUMNS": "250"})


@pytest.fixture
def env(tmp_path, monkeypatch):
    (tmp_path / "ragmm.toml").write_text('[generator]\ntype = "extractive"\n')
    shutil.copytree(EXAMPLES, tmp_path / "docs")
    (tmp_path / "docs" / "noise.txt").write_bytes(b"\x00\x01\x02binary")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_index_ask_corpora_remove(env):
    res = runner.invoke(app, ["index", "docs", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "indexed 8 file(s)" in res.output and "1 skipped" in res.output and "4 image" in res.output
    assert "noise.txt: binary data" in res.output
    assert (env / ".ragmm").is_dir()  # the default store under the working directory

    res = runner.invoke(app, ["ask", "Who walked on the Moon first?", "--k", "3"])
    assert res.exit_code == 0, res.output
    assert "[1]" in res.output and "moon_landing.html" in res.output and "Evidence" in res.output

    res = runner.invoke(app, ["ask", "Who walked on the Moon first?", "--json"])
    data = json.loads(res.output)
    assert data["citations"] and data["citations"][0]["source"].endswith("moon_landing.html")
    assert {"retrieve", "generate", "total"} <= set(data["timings"])
    assert [s["kind"] for s in data["trace"]["steps"]] == ["route", "search", "stop"]

    res = runner.invoke(app, ["ask", "Who walked on the Moon first?", "--k", "2", "--explain"])
    assert res.exit_code == 0, res.output
    assert "How the evidence was found" in res.output and "1. route: " in res.output
    assert "2. search " in res.output and "kept" in res.output and "moon_landing.html" in res.output

    # answered from the text in an image: OCR of the notice, with the shipped image encoder
    res = runner.invoke(app, ["ask", "When can visitors come to the apiary?", "--json", "--k", "3"])
    data = json.loads(res.output)
    top = data["evidence"][0]
    assert top["corpus"] == "image" and top["source"].endswith("apiary_notice.png"), data["evidence"]
    assert "Saturdays" in top["text"] and top["path"] == str((env / "docs" / "images" / "apiary_notice.png").resolve())

    res = runner.invoke(app, ["corpora"])
    assert "paragraph" in res.output and "document" in res.output and "all-MiniLM-L6-v2" in res.output
    assert "image" in res.output and "ragmm-lite0" in res.output

    res = runner.invoke(app, ["remove", "docs/moon_landing.html"])
    assert res.exit_code == 0 and "removed 1 source(s)" in res.output
    res = runner.invoke(app, ["remove", "docs/moon_landing.html"])
    assert res.exit_code == 1 and "no indexed source matches" in res.output


def test_ask_before_indexing(env):
    res = runner.invoke(app, ["ask", "anything"])
    assert res.exit_code == 0
    assert "Nothing indexed yet" in res.output


def test_bad_config_is_one_line_error(env):
    (env / "bad.toml").write_text("[retrieve]\nk = -1\n")
    res = runner.invoke(app, ["ask", "x", "--config", "bad.toml"])
    assert res.exit_code == 1
    assert res.output.strip().startswith("error: bad.toml") and "retrieve.k" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_missing_model_path_is_one_line_error(env):
    (env / "m.toml").write_text('[encoders.text]\ntype = "sentence-transformers"\nmodel = "./no/such/model"\n')
    res = runner.invoke(app, ["index", "docs", "--config", "m.toml", "--quiet"])
    assert res.exit_code == 1
    assert "error: ./no/such/model: model folder not found" in res.output


def test_config_prints_effective_toml(env):
    res = runner.invoke(app, ["config"])
    assert res.exit_code == 0
    assert '[generator]\ntype = "extractive"' in res.output
    assert "precision = " in res.output and "[store]" in res.output


def test_ask_generator_option(env):
    res = runner.invoke(app, ["ask", "anything", "--generator", "no-such-generator"])
    assert res.exit_code == 1 and res.output.startswith("error:") and "no-such-generator" in res.output
    assert len(res.output.strip().splitlines()) == 1
