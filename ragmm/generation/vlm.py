"""Answers from a vision-language model that sees the image evidence, not only its text view.

Any Hugging Face image-text-to-text model loads by local path or hub id (already in the
Hugging Face cache: nothing is downloaded at run time): SmolVLM / Idefics3, Qwen2.5-VL, LLaVA
and others, through ``AutoProcessor`` + ``AutoModelForImageTextToText`` and the model's own
chat template. The user message holds the numbered evidence; an image item is followed by its
image and a video clip by a few of its frames (see :mod:`ragmm.generation.messages`), so the
model can cite what it saw as ``[n]``.

Example:
    >>> gen = VisionLanguageGenerator(VisionLanguageGenerator.Config(model="HuggingFaceTB/SmolVLM-256M-Instruct"))  # doctest: +SKIP
    >>> for piece in gen.stream(Query("What does the notice say?"), hits):  # doctest: +SKIP
    ...     print(piece, end="")
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ragmm.errors import ConfigError, ModelNotFoundError
from ragmm.generation.base import collect, finish_answer, stream_generate
from ragmm.generation.messages import DEFAULT_IMAGE_SIDE, Message, evidence_messages, limit_media, to_hf_chat
from ragmm.generation.prompt import DEFAULT_EVIDENCE_CHARS, NO_EVIDENCE_ANSWER
from ragmm.types import Answer, Hit, Query

DEFAULT_SYSTEM_PROMPT = (
    "You answer questions using only the numbered evidence: passages, images and video frames, each "
    "shown after its number. After each sentence, cite the evidence it comes from by its number in "
    "square brackets, like [1]. If the evidence does not answer the question, say that you don't know."
)
ANSWER_INSTRUCTION = "Answer in one to three sentences and cite the evidence numbers, like [1]."

_DTYPES = ("auto", "float32", "bfloat16", "float16")


class VisionLanguageGenerator:
    """A Hugging Face image-text-to-text model as a ragmm generator.

    The model loads on the first answer (or :meth:`load`) and stays loaded; one answer is
    generated at a time (a lock), so a server can share the generator between requests.

    Args:
        config: the model, its device/dtype/device map, and how much evidence it sees.

    Raises:
        ModelNotFoundError: the model is neither a local folder nor in the Hugging Face cache.
        ConfigError: ``device = "cuda"`` without a GPU, or an unknown dtype.
    """

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid", protected_namespaces=())

        model: str = Field(..., description="local folder or hub id (in the Hugging Face cache) of an image-text-to-text model")
        max_new_tokens: int = Field(200, gt=0, description="most tokens per answer")
        temperature: float = Field(0.0, ge=0, description="0 = greedy decoding, reproducible answers")
        max_evidence_chars: int = Field(DEFAULT_EVIDENCE_CHARS, ge=40, description="characters of each evidence text shown to the model")
        max_images: int = Field(4, ge=0, description="most images (evidence images and clip frames together) shown; best-ranked evidence first")
        max_clip_frames: int = Field(4, ge=1, description="most frames of one video clip")
        image_side: int = Field(DEFAULT_IMAGE_SIDE, ge=32, description="images are shrunk to this many pixels on their longer side first")
        device: str = Field("auto", description="'auto' (CUDA when visible), 'cpu', 'cuda' or 'cuda:N'; ignored with device_map")
        dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="'auto': bfloat16 on CUDA, float32 on CPU")
        device_map: str | None = Field(None, description="accelerate device map, e.g. 'auto' to spread a model larger than one GPU over several")
        system_prompt: str = DEFAULT_SYSTEM_PROMPT
        min_support: float = Field(0.25, ge=0, le=1, description="least token F1 for an uncited answer sentence to be given a citation")

    name = "transformers-vlm"

    def __init__(self, config: Config) -> None:
        self.config = config
        self._model: Any = None
        self._processor: Any = None
        self._load_lock = threading.Lock()
        # A plain lock, not an RLock: a server may resume the answer's generator on another
        # thread than the one that started it, and only a plain lock may be released there.
        self._generate_lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Config, **_: Any) -> VisionLanguageGenerator:
        return cls(config)

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> float:
        """Load the processor and model now (a no-op when loaded); returns the seconds taken."""
        with self._load_lock:
            if self._model is not None:
                return 0.0
            start = time.perf_counter()
            import torch
            from transformers import AutoModelForImageTextToText, AutoProcessor

            c = self.config
            device = c.device
            if device == "auto":
                device = "cuda" if torch.cuda.is_available() else "cpu"
            elif device.startswith("cuda") and not torch.cuda.is_available():
                raise ConfigError(f"[generator] device = {device!r} but no CUDA GPU is visible; set device = 'auto' or 'cpu'")
            on_gpu = device.startswith("cuda") or c.device_map is not None
            dtype = getattr(torch, c.dtype) if c.dtype != "auto" else (torch.bfloat16 if on_gpu else torch.float32)
            kwargs: dict[str, Any] = {"dtype": dtype}
            if c.device_map is not None:
                kwargs["device_map"] = c.device_map
            try:
                processor = AutoProcessor.from_pretrained(c.model)
                model = AutoModelForImageTextToText.from_pretrained(c.model, **kwargs)
            except OSError as exc:
                raise ModelNotFoundError(
                    f"{c.model}: cannot load the vision-language model ({_first_line(exc)}); set [generator] model to a local "
                    f"folder, or download it once with `hf download {c.model}`"
                ) from None
            if c.device_map is None:
                model.to(device)
            self._processor, self._model = processor, model.eval()
            return time.perf_counter() - start

    def generate(self, query: Query, evidence: Sequence[Hit]) -> Answer:
        """Answer ``query`` from ``evidence`` (seeing its images); citations point into it."""
        return collect(self.stream(query, evidence))

    def stream(self, query: Query, evidence: Sequence[Hit]) -> Iterator[str | Answer]:
        """Yield the answer's text as the model writes it, then the finished :class:`Answer`."""
        evidence = list(evidence)
        if not evidence:
            yield NO_EVIDENCE_ANSWER
            yield Answer(text=NO_EVIDENCE_ANSWER, generator=self.name)
            return
        from transformers import GenerationConfig

        with self._generate_lock:
            timings: dict[str, float] = {}
            load_s = self.load()
            if load_s:
                timings["load"] = load_s
            start = time.perf_counter()
            inputs, shown = self.prompt_inputs(query, evidence)
            tok = self._processor.tokenizer
            gen_cfg = GenerationConfig(
                max_new_tokens=self.config.max_new_tokens,
                do_sample=self.config.temperature > 0,
                temperature=self.config.temperature if self.config.temperature > 0 else None,
                eos_token_id=self._model.generation_config.eos_token_id or tok.eos_token_id,
                pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
            )
            pieces = []
            for piece in stream_generate(self._model, tok, inputs, gen_cfg):
                pieces.append(piece)
                yield piece
            timings["generate"] = time.perf_counter() - start
        yield finish_answer("".join(pieces), evidence, shown, min_support=self.config.min_support, name=self.name, timings=timings)

    def messages(self, query: Query, evidence: Sequence[Hit]) -> list[Message]:
        """The system and user messages, with at most ``max_images`` images (clip frames
        count), taken from the best-ranked evidence first."""
        c = self.config
        messages = evidence_messages(
            query, evidence, system_prompt=c.system_prompt, instruction=ANSWER_INSTRUCTION, max_chars=c.max_evidence_chars, media=True, max_clip_frames=c.max_clip_frames
        )
        return [messages[0], limit_media(messages[1], c.max_images)]

    def prompt_inputs(self, query: Query, evidence: Sequence[Hit]) -> tuple[Any, int]:
        """The processor's model inputs (``input_ids`` (1, T), ``pixel_values``...) on the
        model's device, and how many leading evidence items they show.

        Evidence is dropped from the end until the prompt and ``max_new_tokens`` fit the
        text model's context.
        """
        self.load()
        shown = len(evidence)
        limit = _context_limit(self._model.config)
        while True:
            inputs = self._apply_template(self.messages(query, evidence[:shown]))
            length = inputs["input_ids"].shape[1]
            if limit is None or length + self.config.max_new_tokens <= limit or shown == 0:
                break
            shown -= 1
        if limit is not None and inputs["input_ids"].shape[1] + self.config.max_new_tokens > limit:
            raise ConfigError(f"[generator] the question alone needs {inputs['input_ids'].shape[1]} tokens of a {limit}-token context; lower max_new_tokens or max_images")
        return inputs.to(self._model.device), shown

    def _apply_template(self, messages: Sequence[Message]) -> Any:
        import torch

        chat = to_hf_chat(messages, self.config.image_side)
        try:
            inputs = self._processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt")
        except (ValueError, TypeError, KeyError) as exc:
            # Some templates take no system turn: fold the instructions into the user's message.
            if chat[0]["role"] != "system":
                raise ConfigError(f"{self.config.model}: its chat template cannot take these messages ({_first_line(exc)})") from None
            system, user = chat
            chat = [{"role": "user", "content": system["content"] + [{"type": "text", "text": "\n\n"}] + user["content"]}]
            inputs = self._processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt")
        if "token_type_ids" in inputs and "token_type_ids" not in inspect.signature(self._model.forward).parameters:
            del inputs["token_type_ids"]  # BERT-style tokenizers make them; most VLMs take none
        dtype = self._model.dtype
        for key, value in inputs.items():
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                inputs[key] = value.to(dtype)  # pixel values in the model's dtype
        return inputs


def _context_limit(config: Any) -> int | None:
    text = getattr(config, "text_config", None) or config
    limit = getattr(text, "max_position_embeddings", None)
    return int(limit) if limit else None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
