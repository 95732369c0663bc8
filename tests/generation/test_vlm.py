"""The transformers-vlm generator: plumbing with a tiny random Idefics3 (SmolVLM's architecture)
built offline from a config. No quality claim: the images must reach the vision tower and
text must come back."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragmm.errors import ModelNotFoundError
from ragmm.generation.messages import ClipPart, ImagePart
from ragmm.generation.vlm import VisionLanguageGenerator
from ragmm.registry import registry
from ragmm.types import Answer, Hit, Item, Query

IMAGE_SIZE = 64  # the tiny vision tower's input side: every image is resized to it
TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}: "
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}{% else %}<image>{% endif %}{% endfor %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)


def build_tiny_idefics3(folder: Path) -> Path:
    """A 1-layer Idefics3 (vision 64 px, 16 px patches, 4 image tokens per image) with the
    packaged MiniLM's WordPiece tokenizer plus Idefics3's special tokens."""
    import torch
    from transformers import AutoTokenizer, Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor, LlamaConfig
    from transformers.models.idefics3 import Idefics3ImageProcessorPil

    from ragmm.encoders.sentence_transformer import packaged_minilm_path

    tok = AutoTokenizer.from_pretrained(str(packaged_minilm_path()))
    tok.backend_tokenizer.no_truncation()  # MiniLM's tokenizer.json cuts at 128 tokens
    tok.add_special_tokens({"additional_special_tokens": ["<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>"]})
    images = Idefics3ImageProcessorPil(do_image_splitting=False, size={"longest_edge": IMAGE_SIZE}, max_image_size={"longest_edge": IMAGE_SIZE})
    processor = Idefics3Processor(image_processor=images, tokenizer=tok, image_seq_len=4, chat_template=TEMPLATE)
    text = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
        max_position_embeddings=512, pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
    )
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": IMAGE_SIZE, "patch_size": 16}
    config = Idefics3Config(vision_config=vision, text_config=text, scale_factor=2, image_token_id=tok.convert_tokens_to_ids("<image>"))
    torch.manual_seed(0)
    Idefics3ForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_idefics3(tmp_path_factory.mktemp("tiny-idefics3"))


@pytest.fixture(scope="module")
def evidence(tmp_path_factory: pytest.TempPathFactory) -> list[Hit]:
    from PIL import Image

    d = tmp_path_factory.mktemp("images")
    Image.new("RGB", (100, 80), (200, 30, 30)).save(d / "red.png")
    Image.new("RGB", (40, 90), (30, 30, 200)).save(d / "blue.png")
    return [
        Hit(Item("image", "red.png", "red.png: a red square", modality="image", metadata={"path": str(d / "red.png")}), 0.9),
        Hit(Item("paragraph", "sea.md", "Lighthouses warn ships of rocks."), 0.8),
        Hit(Item("image", "blue.png", "blue.png: a blue bar", modality="image", metadata={"path": str(d / "blue.png")}), 0.7),
    ]


def make(model: Path, **kw) -> VisionLanguageGenerator:
    return VisionLanguageGenerator(VisionLanguageGenerator.Config(model=str(model), max_new_tokens=6, device="cpu", system_prompt="Cite [n].", **kw))


def vision_inputs(gen: VisionLanguageGenerator) -> list[tuple[int, ...]]:
    """Shapes of the pixel values each call of the vision tower receives."""
    seen: list[tuple[int, ...]] = []

    def hook(module, args, kwargs, out):
        pixels = kwargs.get("pixel_values", args[0] if args else None)
        seen.append(tuple(pixels.shape))

    gen.load()
    gen._model.model.vision_model.register_forward_hook(hook, with_kwargs=True)
    return seen


def test_images_reach_the_vision_tower_and_text_streams_back(tiny_vlm, evidence):
    gen = make(tiny_vlm)
    seen = vision_inputs(gen)
    pieces = list(gen.stream(Query("What colour is the square?"), evidence))
    answer = pieces[-1]
    assert isinstance(answer, Answer) and all(isinstance(p, str) for p in pieces[:-1])
    assert len(pieces) > 1 and answer.text and answer.generator == "transformers-vlm"
    assert seen == [(2, 3, IMAGE_SIZE, IMAGE_SIZE)]  # both evidence images, in one forward of the tower
    inputs, shown = gen.prompt_inputs(Query("What colour is the square?"), evidence)
    assert shown == 3 and tuple(inputs["pixel_values"].shape) == (1, 2, 3, IMAGE_SIZE, IMAGE_SIZE)
    image_token = gen._processor.tokenizer.convert_tokens_to_ids("<image>")
    assert int((inputs["input_ids"] == image_token).sum()) == 2 * 4  # 4 image tokens per image
    assert {c.n for c in answer.citations} <= {1, 2, 3}


def test_image_budget_and_the_query_image(tiny_vlm, evidence):
    gen = make(tiny_vlm, max_images=2)
    query = Query("Which evidence looks like this?", image=evidence[2].item.metadata["path"])
    parts = gen.messages(query, evidence)[1].parts
    images = [p for p in parts if isinstance(p, ImagePart)]
    assert [p.n for p in images] == [1, 0]  # the best evidence image, then the question's own
    seen = vision_inputs(gen)
    gen.generate(query, evidence)
    assert seen == [(2, 3, IMAGE_SIZE, IMAGE_SIZE)]
    none = make(tiny_vlm, max_images=0)
    inputs, _ = none.prompt_inputs(Query("What colour?"), evidence)
    assert "pixel_values" not in inputs or inputs["pixel_values"] is None


def test_video_clips_become_frames(tiny_vlm, tmp_path):
    import av
    import numpy as np

    video = tmp_path / "clip.mp4"
    with av.open(str(video), "w") as out:
        stream = out.add_stream("mpeg4", rate=4)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(12):  # 3 s: frame i is grey level 20 * i
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20 * i, np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    item = Item("clip", "clip.mp4", "clip.mp4 [0:00-0:03]. Speech: a lamp turns.", modality="video",
                metadata={"path": str(video), "frames": [0.0, 1.0, 2.0], "transcript": [{"text": "a lamp turns", "start": 0.0, "end": 2.0}]})
    item.locator = type(item.locator)(t_start=0.0, t_end=3.0)
    gen = make(tiny_vlm, max_clip_frames=2)
    clip = next(p for p in gen.messages(Query("What turns?"), [Hit(item, 0.9)])[1].parts if isinstance(p, ClipPart))
    assert clip.frame_times == (0.0, 2.0) and clip.transcript == "a lamp turns"
    seen = vision_inputs(gen)
    gen.generate(Query("What turns?"), [Hit(item, 0.9)])
    assert seen == [(2, 3, IMAGE_SIZE, IMAGE_SIZE)]


def test_registered_and_missing_model_says_what_to_do(tmp_path):
    assert registry.get("generator", "transformers-vlm") is VisionLanguageGenerator
    gen = VisionLanguageGenerator.from_config(VisionLanguageGenerator.Config(model=str(tmp_path / "absent")))
    assert not gen.loaded
    assert gen.generate(Query("q"), []).citations == []  # no evidence: nothing loads
    with pytest.raises(ModelNotFoundError, match="absent"):
        gen.load()
