"""Evidence as chat messages whose content is a list of parts: text, image, clip.

Every generator reads the same messages: a system message with its instructions, and a user
message holding the numbered evidence (``[n] (source, where) text``, followed by the image of
an image item or a few frames of a video clip) and then the question. Renderers turn them into
what a backend takes:

* :func:`to_text_chat` - plain-text chat messages (text-only models: an image is read through
  its text view, which is already in its numbered line);
* :func:`to_hf_chat` - Hugging Face multimodal chat messages (``{"type": "image"}`` parts
  holding the images), for a processor's chat template;
* :func:`to_openai` - OpenAI chat-completions messages, images as ``data:`` URLs.

Example:
    >>> from ragmm.types import Hit, Item, Query
    >>> hits = [Hit(Item("paragraph", "sea.md", "Lighthouses warn ships."), 0.9)]
    >>> msgs = evidence_messages(Query("What warns ships?"), hits, system_prompt="Cite [n].", instruction="Be brief.")
    >>> print(msgs[1].text())
    Evidence:
    [1] (sea.md, whole) Lighthouses warn ships.
    <BLANKLINE>
    Question: What warns ships?
    Be brief.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ragmm.errors import InputError
from ragmm.generation.prompt import DEFAULT_EVIDENCE_CHARS, evidence_line, question_text
from ragmm.types import Hit, Query

if TYPE_CHECKING:
    from PIL import Image

# Longest side images are shrunk to before a model sees them: vision encoders tile or resize
# to a few hundred pixels anyway, and a data URL of a full photo is megabytes.
DEFAULT_IMAGE_SIDE = 768


@dataclass(frozen=True, slots=True)
class TextPart:
    """Text, as it is."""

    text: str


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image file; ``n`` is the evidence number it belongs to (0: the query image)."""

    path: str
    n: int = 0


@dataclass(frozen=True, slots=True)
class ClipPart:
    """A video clip as a few frames (their times, in seconds) and its transcript; the frames
    are decoded from ``path`` when a renderer needs them."""

    path: str
    t_start: float
    t_end: float
    frame_times: tuple[float, ...]
    transcript: str = ""
    n: int = 0


Part = TextPart | ImagePart | ClipPart


@dataclass(slots=True)
class Message:
    """One chat message: a role and its content parts, in order."""

    role: Literal["system", "user", "assistant"]
    parts: list[Part] = field(default_factory=list)

    def text(self) -> str:
        """The text parts joined (what a text-only model reads)."""
        return "".join(p.text for p in self.parts if isinstance(p, TextPart))

    def media(self) -> list[ImagePart | ClipPart]:
        """The image and clip parts, in order."""
        return [p for p in self.parts if not isinstance(p, TextPart)]


def evidence_messages(
    query: Query,
    evidence: Sequence[Hit],
    *,
    system_prompt: str,
    instruction: str,
    max_chars: int = DEFAULT_EVIDENCE_CHARS,
    media: bool = False,
    max_clip_frames: int = 4,
) -> list[Message]:
    """The system and user messages a generator answers from.

    Args:
        query: the question (and its image, if any).
        evidence: hits, best first; the first is ``[1]``.
        system_prompt: the system message.
        instruction: the last line of the user message (how to answer and cite).
        max_chars: each evidence text is cut to this many characters.
        media: add image parts for image evidence, clip parts for video evidence and the query
            image (for models that see images); without it a query image is only named.
        max_clip_frames: most frames shown per clip, spread over its indexed frame times.

    Returns:
        ``[system, user]``. The user message's text is ``Evidence:``, one numbered line per
        hit, a blank line, ``Question: ...`` and ``instruction``.
    """
    parts: list[Part] = [TextPart("Evidence:\n")]
    if not evidence:
        parts.append(TextPart("(no evidence)"))
    for n, hit in enumerate(evidence, start=1):
        parts.append(TextPart(("\n" if n > 1 else "") + evidence_line(n, hit, max_chars)))
        if media:
            parts.extend(_media_parts(n, hit, max_clip_frames))
    if media and query.image is not None:
        parts += [TextPart(f"\n\nQuestion (about this image): {query.text}"), ImagePart(str(query.image), 0), TextPart(f"\n{instruction}")]
    else:
        parts.append(TextPart(f"\n\nQuestion: {question_text(query)}\n{instruction}"))
    return [Message("system", [TextPart(system_prompt)]), Message("user", parts)]


def limit_media(message: Message, max_images: int) -> Message:
    """``message`` with at most ``max_images`` images, clip frames counted one by one: the
    query image first, then evidence media in order (best-ranked first). Text is kept."""
    budget = max_images - sum(1 for p in message.parts if isinstance(p, ImagePart) and p.n == 0)
    kept: list[Part] = []
    for part in message.parts:
        if isinstance(part, ImagePart) and part.n > 0:
            if budget < 1:
                continue
            budget -= 1
        elif isinstance(part, ClipPart):
            if budget < 1:
                continue
            part = ClipPart(part.path, part.t_start, part.t_end, part.frame_times[:budget], part.transcript, part.n)
            budget -= len(part.frame_times)
        kept.append(part)
    return Message(message.role, kept)


def _media_parts(n: int, hit: Hit, max_frames: int) -> list[Part]:
    item = hit.item
    path = item.metadata.get("path")
    if not path:
        return []
    if item.modality == "image":
        return [ImagePart(str(path), n)]
    if item.modality == "video" and item.locator.t_start is not None:
        times = [float(t) for t in item.metadata.get("frames") or []]
        if not times:  # no frame was indexed: the clip's middle
            times = [(item.locator.t_start + (item.locator.t_end or item.locator.t_start)) / 2]
        if len(times) > max_frames:
            step = (len(times) - 1) / (max_frames - 1) if max_frames > 1 else 0
            times = [times[round(i * step)] for i in range(max_frames)]
        transcript = " ".join(str(seg.get("text", "")) for seg in item.metadata.get("transcript") or [] if isinstance(seg, dict)).strip()
        return [ClipPart(str(path), item.locator.t_start, item.locator.t_end or item.locator.t_start, tuple(times), transcript, n)]
    return []


def to_text_chat(messages: Sequence[Message]) -> list[dict[str, str]]:
    """``[{"role", "content"}]`` with text content only."""
    return [{"role": m.role, "content": m.text()} for m in messages]


def to_hf_chat(messages: Sequence[Message], max_side: int = DEFAULT_IMAGE_SIDE) -> list[dict[str, Any]]:
    """Hugging Face multimodal chat messages, images in place.

    Each image (or clip frame) becomes a ``{"type": "image", "image": PIL.Image}`` part, the
    form processors' ``apply_chat_template(..., tokenize=True)`` reads and expands into the
    model's image tokens (Idefics3/SmolVLM, Qwen2.5-VL, LLaVA).

    Raises:
        InputError: an image or video file cannot be read.
    """
    out = []
    for m in messages:
        content: list[dict[str, Any]] = []
        for p in m.parts:
            if isinstance(p, TextPart):
                content.append({"type": "text", "text": p.text})
            else:
                content += [{"type": "image", "image": image} for image in load_media(p, max_side)]
        out.append({"role": m.role, "content": content})
    return out


def to_openai(messages: Sequence[Message], max_side: int = DEFAULT_IMAGE_SIDE) -> list[dict[str, Any]]:
    """OpenAI chat-completions messages; images (and clip frames) as JPEG ``data:`` URLs.

    A message without media keeps plain string content, which every compatible server takes.

    Raises:
        InputError: an image or video file cannot be read.
    """
    out = []
    for m in messages:
        if not m.media():
            out.append({"role": m.role, "content": m.text()})
            continue
        content: list[dict[str, Any]] = []
        for p in m.parts:
            if isinstance(p, TextPart):
                content.append({"type": "text", "text": p.text})
            else:
                content += [{"type": "image_url", "image_url": {"url": data_url(image)}} for image in load_media(p, max_side)]
        out.append({"role": m.role, "content": content})
    return out


def data_url(image: Image.Image, quality: int = 90) -> str:
    """An RGB image as a ``data:image/jpeg;base64,...`` URL."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def load_media(part: ImagePart | ClipPart, max_side: int = DEFAULT_IMAGE_SIDE) -> list[Image.Image]:
    """The RGB images of an image part (one) or a clip part (its frames), at most ``max_side``
    pixels on their longer side.

    Raises:
        InputError: the file is missing or cannot be decoded.
    """
    if isinstance(part, ImagePart):
        return [load_image(part.path, max_side)]
    return clip_frames(part.path, part.frame_times, max_side)


def load_image(path: str | Path, max_side: int = DEFAULT_IMAGE_SIDE) -> Image.Image:
    """An image file as RGB, shrunk to ``max_side``.

    Raises:
        InputError: the file is missing or not an image.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale
            image = im.convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise InputError(str(path), f"cannot read this image for the generator ({exc.__class__.__name__}); re-index or remove it") from None
    image.thumbnail((max_side, max_side))
    return image


def clip_frames(path: str | Path, times: Sequence[float], max_side: int = DEFAULT_IMAGE_SIDE) -> list[Image.Image]:
    """The frames of a video at ``times`` (seconds): for each, the first frame at or after it.

    Raises:
        InputError: the video is missing or cannot be decoded.
    """
    import av

    frames = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            base = stream.time_base
            for t in sorted(times):
                container.seek(int(t / base) if base else int(t * av.time_base), stream=stream, any_frame=False, backward=True)
                for frame in container.decode(stream):
                    if frame.time is None or frame.time + 1e-3 >= t:
                        image = frame.to_image()
                        image.thumbnail((max_side, max_side))
                        frames.append(image)
                        break
    except (OSError, av.error.FFmpegError, IndexError) as exc:
        raise InputError(str(path), f"cannot read frames of this video for the generator ({exc.__class__.__name__}); re-index or remove it") from None
    return frames
