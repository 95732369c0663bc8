import pytest

from ragmm.config import Config, load_config
from ragmm.errors import ConfigError


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config()
    assert cfg.store.type == "edge" and cfg.generator.type == "smollm2"
    assert cfg.encoders["text"].type == "sentence-transformers"
    assert cfg.retrieve.k == 5


def test_loads_ragmm_toml_from_working_directory(tmp_path, monkeypatch):
    (tmp_path / "ragmm.toml").write_text('[store]\ntype = "edge"\npath = "elsewhere"\n\n[retrieve]\nk = 3\n\n[generator]\ntype = "extractive"\nmax_sentences = 2\n')
    monkeypatch.chdir(tmp_path)
    cfg = load_config()
    assert cfg.source == "ragmm.toml"
    assert cfg.store.options() == {"path": "elsewhere"}
    assert cfg.retrieve.k == 3
    gen = cfg.component_config("generator", cfg.generator, "generator")
    assert gen.max_sentences == 2


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ('[retrieve]\nk = 0\n', "field 'retrieve.k' (got 0)"),
        ('[retrieve]\nkk = 3\n', "field 'retrieve.kk'"),
        ('[store]\ntype = "elastic"\n', "unknown store type 'elastic'"),
        ('[encoders.text]\ntype = "sentence-transformers"\nprecision = "fp8"\n', "[encoders.text]: field 'precision' (got 'fp8')"),
        ('[generator]\ntype = "extractive"\nmax_sentences = "many"\n', "[generator]: field 'max_sentences'"),
        ('[index]\nchunk_size = 100\nchunk_overlap = 100\n', "chunk_overlap (100) must be smaller than chunk_size (100)"),
        ("[store\n", "not valid TOML"),
    ],
)
def test_bad_values_name_file_field_and_value(tmp_path, toml, needle):
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert needle in str(err.value)
    assert str(path) in str(err.value)


def test_missing_config_file():
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("/no/such/ragmm.toml")


def test_effective_config_round_trips_through_toml(tmp_path):
    cfg = load_config(None, {"store": {"type": "edge", "path": "p"}, "retrieve": {"k": 7}})
    path = tmp_path / "out.toml"
    path.write_text(cfg.to_toml())
    again = load_config(path)
    assert again.retrieve.k == 7 and again.store.options()["path"] == "p"
    assert isinstance(again, Config)


def test_import_ragmm_is_light():
    import subprocess
    import sys

    code = "import sys, ragmm; ragmm.Item; print(any(m in sys.modules for m in ('torch', 'transformers', 'sentence_transformers', 'qdrant_client')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_modalities_are_config_sections_merged_over_the_defaults():
    cfg = load_config(None, {"readers": {"image": {"type": "none"}}, "retrievers": {"text": {"type": "dense", "prefetch": 50}}})
    assert set(cfg.readers) == {"text", "video"}
    assert set(cfg.retrievers) == {"text", "image", "video"}
    assert cfg.component_config("retriever", cfg.retrievers["text"], "retrievers.text").prefetch == 50
    assert "[retrievers.text]" in cfg.to_toml() and "[readers.text]" in cfg.to_toml()


def test_ragmm_0_1_retriever_sections_still_load(tmp_path):
    path = tmp_path / "ragmm.toml"
    path.write_text('[retriever]\ntype = "dense"\n\n[image_retriever]\ntype = "image"\nfusion = "mean"\n')
    cfg = load_config(path)
    assert cfg.retrievers["image"].options() == {"fusion": "mean"}
    assert cfg.retrievers["text"].type == "dense"


def test_unknown_reader_type_names_the_section():
    with pytest.raises(ConfigError, match=r"\[readers.video\]: unknown reader type 'nope'"):
        load_config(None, {"readers": {"video": {"type": "nope"}}})
