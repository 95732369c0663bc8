"""Evidence as chat messages with text, image and clip parts."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragmm.errors import InputError
from ragmm.generation.messages import ClipPart, ImagePart, TextPart, evidence_messages, limit_media, load_image, to_openai, to_text_chat
from ragmm.generation.prompt import number_evidence
from ragmm.types import Hit, Item, Locator, Query


@pytest.fixture()
def evidence(tmp_path: Path) -> list[Hit]:
    from PIL import Image

    Image.new("RGB", (50, 40), (0, 200, 0)).save(tmp_path / "leaf.png")
    clip = Item(
        "clip", "talk.mp4", "talk.mp4 [0:02-0:08]. Speech: the lamp turns.", Locator(t_start=2.0, t_end=8.0), modality="video",
        metadata={"path": str(tmp_path / "talk.mp4"), "frames": [2.0, 3.0, 4.0, 5.0, 6.0, 7.0], "transcript": [{"text": "the lamp turns"}]},
    )
    return [
        Hit(Item("paragraph", "docs/sea.md", "Lighthouses warn ships [12] of rocks.", Locator(char_start=0, char_end=30)), 0.9),
        Hit(Item("image", "docs/leaf.png", "leaf.png: a green leaf", modality="image", metadata={"path": str(tmp_path / "leaf.png")}), 0.8),
        Hit(clip, 0.7),
    ]


def test_text_is_the_numbered_evidence_block_then_the_question(evidence):
    system, user = evidence_messages(Query("What warns ships?"), evidence, system_prompt="Cite.", instruction="Be brief.", max_chars=200)
    assert system.role == "system" and system.text() == "Cite."
    # Text-only generators read exactly the numbered block they always read.
    assert user.text() == f"Evidence:\n{number_evidence(evidence, 200)}\n\nQuestion: What warns ships?\nBe brief."
    assert user.media() == []  # media only when asked for
    assert to_text_chat([system, user]) == [{"role": "system", "content": "Cite."}, {"role": "user", "content": user.text()}]


def test_media_parts_follow_their_numbered_lines(evidence):
    _, user = evidence_messages(Query("What turns?"), evidence, system_prompt="", instruction="", media=True, max_clip_frames=3)
    kinds = [type(p).__name__ for p in user.parts]
    assert kinds == ["TextPart", "TextPart", "TextPart", "ImagePart", "TextPart", "ClipPart", "TextPart"]
    image, clip = user.media()
    assert image == ImagePart(evidence[1].item.metadata["path"], 2)
    assert clip.n == 3 and clip.frame_times == (2.0, 4.0, 7.0) and (clip.t_start, clip.t_end) == (2.0, 8.0)
    assert clip.transcript == "the lamp turns"
    capped = limit_media(user, 2)
    assert [type(p).__name__ for p in capped.media()] == ["ImagePart", "ClipPart"] and capped.media()[1].frame_times == (2.0,)
    assert limit_media(user, 0).media() == [] and limit_media(user, 0).text() == user.text()


def test_query_image_comes_first_in_the_budget(evidence, tmp_path):
    _, user = evidence_messages(Query("Like this?", image=str(tmp_path / "leaf.png")), evidence[:2], system_prompt="", instruction="Cite.", media=True)
    assert [p.n for p in limit_media(user, 1).media()] == [0]
    assert "Question (about this image): Like this?" in user.text()
    _, text_only = evidence_messages(Query("Like this?", image=str(tmp_path / "leaf.png")), evidence[:2], system_prompt="", instruction="")
    assert "leaf.png" in text_only.text().split("Question:")[1]  # a text model is told which image


def test_openai_rendering_keeps_plain_text_and_sends_images_as_jpeg(evidence):
    system, user = evidence_messages(Query("q"), evidence[:2], system_prompt="Cite.", instruction="", media=True)
    out = to_openai([system, user], max_side=32)
    assert out[0] == {"role": "system", "content": "Cite."}
    images = [p for p in out[1]["content"] if p["type"] == "image_url"]
    assert len(images) == 1 and images[0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert "".join(p["text"] for p in out[1]["content"] if p["type"] == "text") == user.text()


def test_unreadable_media_is_one_line_naming_the_file(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(InputError, match="bad.png: cannot read this image"):
        load_image(tmp_path / "bad.png")
    from ragmm.generation.messages import clip_frames

    with pytest.raises(InputError, match="missing.mp4: cannot read frames"):
        clip_frames(tmp_path / "missing.mp4", [1.0])
    assert isinstance(TextPart("x"), TextPart) and ClipPart("v.mp4", 0, 1, (0.5,)).n == 0
