"""Router training data: queries labelled with the routes (corpora) they need.

Each route gets questions built from public sources on this machine, in many wordings:

``paragraph``  what a passage says: a word's meaning, which word fits a definition
               (WordNet glosses for training, GCIDE definitions held out);
``document``   what a whole document is about: summaries, outlines, main arguments of a
               document on a topic (WordNet nouns / GCIDE headwords);
``image``      what a picture shows (openclipart titles and emoji names / Tux Paint captions);
``clip``       what was said or shown at a moment of a video;
``video``      what a whole video is about;
``none``       no retrieval: greetings, thanks, chit-chat, arithmetic;
and queries that need two corpora (``paragraph`` + ``image``, ``clip`` + ``paragraph``).

Templates alone would teach a router the templates, so the held-out split shares neither a
source nor a template with training: every route's templates are split in two by crc32
(one in four held out), its topics come from the held-out source, and prefixes, suffixes,
casing and typos vary the surface. A second test file keeps the held-out sources but uses the
training templates (``test-seen-templates.jsonl``), to tell what each hold-out costs.

Writes, under ``--out``:
    train.jsonl                  {"query", "routes", "source", "template"}: training sources and templates
    dev.jsonl                    one in ten training rows (by crc32 of the query), to choose the threshold
    test.jsonl                   held-out sources and held-out templates
    test-seen-templates.jsonl    held-out sources, training templates

Example:
    python -m ragmm.training.data.routes --out data/routes
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import shutil
import subprocess
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

GCIDE = Path("/usr/share/dictd/gcide.dict.dz")
WORDNET = Path("/usr/share/wordnet")
TUXPAINT = Path("/usr/share/tuxpaint/stamps")
OPENCLIPART = Path("/usr/share/openclipart/png")
PACKAGES = {GCIDE: "dict-gcide", WORDNET / "data.noun": "wordnet-base", TUXPAINT: "tuxpaint-stamps-default", OPENCLIPART: "openclipart-png", Path("/usr/share/dict/american-english"): "wamerican"}


@dataclass(frozen=True, slots=True)
class Example:
    query: str
    routes: list[str]
    source: str
    template: str


# {w}: a word or short noun phrase; {g}: a definition. Keep each list varied in form
# (questions, commands, fragments), since a quarter of each is held out unseen.
PARAGRAPH = [
    "what does {w} mean", "define {w}", "what is the meaning of the word {w}", "what is a {w}", "explain what {w} is",
    "give me the definition of {w}", "which word means {g}", "what do you call {g}", "what is the term for {g}",
    "{w}: meaning", "meaning of {w}", "how is {w} defined in the text", "find the passage that explains {w}",
    "what does the text say {w} is", "is {w} a kind of {h}", "what is the word for {g}", "in one sentence, what is {w}",
    "look up {w}", "what's {w}", "tell me what {w} means", "which passage defines {w}", "{g} -- what is that called",
    "how would you describe {w} in a sentence", "what is {w} used for", "the word {w}, what does it refer to",
    "name the thing that is {g}", "definition: {w}", "quote the line that defines {w}",
]
DOCUMENT = [
    "summarize the document about {w}", "give me an overview of the report on {w}", "what are the main points of the article on {w}",
    "what is the whole chapter on {w} about", "outline the guide to {w}", "what conclusions does the paper on {w} reach",
    "summarise the entire manual about {w}", "what is the overall argument of the essay on {w}", "tl;dr of the {w} document",
    "which document covers {w} from start to finish", "what topics does the book about {w} cover", "give me the gist of the whole file on {w}",
    "compare the sections of the handbook on {w}", "what is the structure of the report about {w}", "write an executive summary of the {w} paper",
    "what is the thesis of the long article on {w}", "list the chapters of the {w} document", "how does the report on {w} end",
    "summary of the full text about {w}", "what is the study on {w} mainly about", "walk me through the whole proposal on {w}",
    "briefly, what does the {w} whitepaper say overall", "what are the key takeaways of the {w} report", "review the complete document on {w}",
]
IMAGE = [
    "show me a picture of {c}", "what does {c} look like", "find an image of {c}", "is there a photo showing {c}",
    "I need a drawing of {c}", "which picture has {c} in it", "what colour is the {c} in the image", "find clipart of {c}",
    "picture of {c}", "an illustration of {c}", "show {c}", "photo: {c}", "any images with {c}", "let me see {c}",
    "which image shows {c}", "get me a photo of {c}", "display a drawing of {c}", "what is in the picture of {c}",
    "I'm looking for an icon of {c}", "can I see what {c} looks like", "pictures with {c} in them", "find the stamp that shows {c}",
    "how is {c} drawn in the clipart", "image search: {c}",
]
CLIP = [
    "at what moment in the video does {c} appear", "find the scene where {c} is shown", "what does the speaker say about {w} in the clip",
    "show me the part of the video where they mention {w}", "which clip shows {c}", "when is {w} said in the recording",
    "what was said right after {w} was mentioned in the video", "jump to the bit of the video with {c}", "timestamp where {c} is on screen",
    "in the video, what happens when {c} shows up", "what did the narrator say about {w}", "which segment of the footage has {c}",
    "find the few seconds of video showing {c}", "what is written on screen when {w} comes up", "at which minute does the lecturer explain {w}",
    "replay the moment the presenter talks about {w}", "what did she say about {w} in the clip", "the shot with {c} -- when is it",
    "which part of the recording shows {c}", "quote what the video says about {w}", "find the clip where {c} moves",
    "in which scene do we see {c}", "what was the exact line about {w} in the video", "skip to where {c} is shown",
]
VIDEO = [
    "summarise the video about {w}", "what is the whole video on {w} about", "give me the gist of the lecture video on {w}",
    "recommend a video about {w}", "which video covers {w} from beginning to end", "what is the overall story of the film about {w}",
    "what happens over the full video on {w}", "describe the whole documentary about {w}", "what is the plot of the movie about {w}",
    "which recording is about {w}", "list the videos about {w}", "what is the tutorial video on {w} teaching overall",
    "sum up the entire episode about {w}", "what are all the topics the {w} video goes through", "is there a video that explains {w}",
    "what's the {w} video mainly about", "overview of the whole webinar on {w}", "which film is about {w}",
    "give me the storyline of the {w} video", "watch-list: videos on {w}", "how long is the video about {w} and what does it cover",
    "what is the main message of the {w} video", "briefly, what does the complete talk on {w} present", "whole-video summary: {w}",
]
PARAGRAPH_IMAGE = [
    "what is a {w} and what does it look like", "define {w} and show me a picture of it", "explain {w}, with an image",
    "what does {w} mean? show a photo too", "describe {w} and find a drawing of one", "tell me about {w} and show me what it looks like",
    "{w}: definition and picture", "I want both the meaning of {w} and an image", "what is {w}, and is there a picture of it",
    "meaning of {w} plus a photo", "give the definition of {w} and an illustration", "text and picture about {w}",
]
CLIP_PARAGRAPH = [
    "what is {w}, and where in the video is it shown", "define {w} and find the clip where it appears",
    "explain {w} and show the moment in the video about it", "what does {w} mean and when is it mentioned in the recording",
    "look up {w} and find the scene with it", "the definition of {w}, and the part of the video that shows it",
    "what is a {w}? also find where the video talks about it", "meaning of {w} and the timestamp where it is said",
]

GREETINGS = [
    "hi", "hello", "hey", "good morning", "good evening", "hello there", "hey, how are you", "how's it going", "yo", "greetings",
    "hi there, nice to meet you", "good afternoon", "howdy", "what's up", "morning!", "hiya", "hey there", "hello again",
    "good night", "bye", "see you later", "goodbye", "thanks", "thank you", "thanks a lot", "cheers", "ok thanks", "great, thank you",
    "you're awesome", "that was helpful", "never mind", "ok", "cool", "got it", "sounds good", "perfect", "nice", "lol",
    "tell me a joke", "what's your name", "who are you", "are you a robot", "how old are you", "do you like music",
    "what can you do", "can you help me", "let's chat", "I'm bored", "I'm feeling happy today", "what's your favourite colour",
    "are you there", "say something funny", "sing me a song", "what do you think about me", "how are you doing today",
    "write a short poem about friendship", "make up a riddle", "let's play a game", "good job", "sorry", "my bad", "oops",
]
ARITHMETIC = [
    "what is {a} plus {b}", "{a} + {b}", "compute {a} times {b}", "what's {a} * {b}", "how much is {a} minus {b}", "{a} - {b} = ?",
    "divide {a} by {b}", "what is {a} divided by {b}", "calculate {a}% of {b}", "square root of {a}", "what is {a} squared",
    "add {a} and {b}", "subtract {b} from {a}", "multiply {a} by {b}", "{a}/{b}", "is {a} bigger than {b}", "what is half of {a}",
    "how many is {a} dozen", "convert {a} km to miles", "{a} x {b}", "sum of {a} and {b}", "what's the product of {a} and {b}",
    "round {a}.{b} to the nearest whole number", "is {a} a prime number",
]

# Words that name a kind of source, swapped for one another (same kind) in half the queries, so
# the router learns the kind from any of its names and not from the template that carried it.
SOURCE_WORDS = [
    ["video", "film", "movie", "recording", "footage", "webinar", "lecture video", "talk", "episode", "documentary", "screencast"],
    ["picture", "image", "photo", "drawing", "illustration", "icon", "clipart", "photograph", "snapshot", "sketch", "stamp"],
    ["document", "report", "article", "paper", "essay", "manual", "whitepaper", "book", "handbook", "guide", "proposal", "study"],
]
_SOURCE_WORD = re.compile(r"\b(" + "|".join(sorted((w for ws in SOURCE_WORDS for w in ws), key=len, reverse=True)) + r")\b")
_GROUP_OF = {w: ws for ws in SOURCE_WORDS for w in ws}

TYPO_RATE = 0.08  # share of queries with two letters of one word swapped
PREFIXES = ["", "", "", "please ", "can you ", "could you tell me ", "I want to know ", "quick question: ", "hey, ", "so ", "I wonder ", "help: ", "ok, "]
SUFFIXES = ["?", "?", "", ".", " please", " thanks", "!", "??"]


def held_out(key: str, mod: int = 4) -> bool:
    return zlib.crc32(key.encode()) % mod == 0


def ensure_sources() -> None:
    """Install the Debian packages whose files are missing."""
    missing = sorted({pkg for path, pkg in PACKAGES.items() if not path.exists()})
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise SystemExit(f"missing data and no apt-get; install the Debian packages {' '.join(missing)}")
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True)


def wordnet_entries(limit: int, rng: random.Random) -> list[tuple[str, str, str]]:
    """``(word, gloss, hypernym word)`` of noun synsets with a one-word lemma."""
    lines = (WORDNET / "data.noun").read_text(encoding="latin-1").splitlines()
    index: dict[str, str] = {}
    rows = []
    for line in lines:
        if line.startswith("  "):
            continue
        head, _, gloss = line.partition(" | ")
        parts = head.split()
        offset, n_words = parts[0], int(parts[3], 16)
        word = parts[4].replace("_", " ")
        index[offset] = word
        hyper = next((parts[i + 1] for i in range(4 + 2 * n_words, len(parts) - 1) if parts[i] == "@"), "")
        gloss = re.sub(r'"[^"]*"', "", gloss).split(";")[0].strip()
        if word.islower() and 3 <= len(gloss) <= 90 and len(word) > 2 and "(" not in word:
            rows.append((word, gloss, hyper))
    rng.shuffle(rows)
    return [(w, g, index.get(h, "thing")) for w, g, h in rows[:limit]]


def gcide_entries(limit: int, rng: random.Random) -> list[tuple[str, str, str]]:
    """``(headword, first definition sentence, "thing")`` of GCIDE nouns."""
    with gzip.open(GCIDE, "rt", encoding="utf-8", errors="replace") as fh:
        text = fh.read()
    rows = []
    for block in text.split("\n\n"):
        m = re.match(r"([A-Z][a-z]+) \\[^\\]*\\, n\.", block)
        if not m:
            continue
        body = " ".join(block.split("\n")[1:])
        body = re.sub(r"\[[^\]]*\]|\([A-Za-z]+\.?\)|--\S+|\d+\. |[{}]", " ", body)
        first = " ".join(body.split()).split(";")[0].split(". ")[0].strip(" .")
        if 3 <= len(first) <= 90 and re.fullmatch(r"[A-Za-z][A-Za-z ,'-]+", first) and not first.startswith(("See", "Same as", "Alt", "Fig", "Obs")):
            rows.append((m.group(1).lower(), first[0].lower() + first[1:], "thing"))
    rng.shuffle(rows)
    return rows[:limit]


def clipart_titles() -> list[str]:
    from ragmm.training.data.clipart import emoji_pairs, load_words, title_words

    # The word list itself, not /usr/share/dict/words: that link belongs to whichever list
    # dictionaries-common last selected (or dangles while it is being configured).
    lower, proper = load_words(Path("/usr/share/dict/american-english"))
    titles = {title_words(p.stem, lower, proper) for p in OPENCLIPART.rglob("*.png")}
    titles |= {caption.rstrip(".").removeprefix("A ").removeprefix("An ") for _, caption in emoji_pairs()}
    return sorted(t.lower() for t in titles if t and len(t) > 2)


def tuxpaint_captions() -> list[str]:
    from ragmm.training.data.tuxpaint import read_caption

    out = set()
    for png in TUXPAINT.rglob("*.png"):
        cap = read_caption(png).rstrip(".!").strip()
        cap = re.sub(r"^(A|An|The|This is an?|These are)\s+", "", cap)
        if cap and len(cap) < 50:
            out.add(cap[0].lower() + cap[1:])
    return sorted(out)


def vary(text: str, rng: random.Random) -> str:
    """One surface variant: another name for the source, a prefix, a suffix, casing, sometimes a typo."""
    if rng.random() < 0.5:
        text = _SOURCE_WORD.sub(lambda m: rng.choice(_GROUP_OF[m.group(1)]), text)
    text = rng.choice(PREFIXES) + text + rng.choice(SUFFIXES)
    if rng.random() < TYPO_RATE:
        words = text.split()
        i = rng.randrange(len(words))
        w = words[i]
        if len(w) > 3:
            j = rng.randrange(len(w) - 1)
            words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
        text = " ".join(words)
    r = rng.random()
    if r < 0.45:
        text = text[0].upper() + text[1:]
    elif r < 0.5:
        text = text.upper()
    return text


def generate(split: str, words: list[tuple[str, str, str]], things: list[str], source: str, image_source: str, rng: random.Random, n: int) -> Iterator[Example]:
    """``n`` examples per route family whose templates belong to ``split`` ("train" or "test")."""

    def templates(family: list[str]) -> list[str]:
        return [t for t in family if held_out(t) == (split == "test")]

    def fill(t: str, w: tuple[str, str, str], c: str) -> str:
        return t.format(w=w[0], g=w[1], h=w[2], c=c)

    def numbers() -> dict[str, int]:
        return {"a": rng.randint(2, 999), "b": rng.randint(2, 99)}

    families: list[tuple[list[str], list[str], str]] = [
        (PARAGRAPH, ["paragraph"], source),
        (DOCUMENT, ["document"], source),
        (IMAGE, ["image"], image_source),
        (CLIP, ["clip"], f"{source}+{image_source}"),
        (VIDEO, ["video"], source),
        (PARAGRAPH_IMAGE, ["paragraph", "image"], source),
        (CLIP_PARAGRAPH, ["clip", "paragraph"], source),
    ]
    for family, routes, src in families:
        ts = templates(family)
        count = n if len(routes) == 1 else n // 3
        for _ in range(count):
            t = rng.choice(ts)
            yield Example(vary(fill(t, rng.choice(words), rng.choice(things)), rng), routes, src, t)
    # "none": greetings and chit-chat are split by phrase, arithmetic by template.
    chat = templates(GREETINGS)
    maths = templates(ARITHMETIC)
    for _ in range(n):
        if rng.random() < 0.5:
            t = rng.choice(chat)
            yield Example(vary(t, rng), ["none"], "chit-chat", t)
        else:
            t = rng.choice(maths)
            yield Example(vary(t.format(**numbers()), rng), ["none"], "arithmetic", t)


def write(out: Path, per_route: int = 1000, seed: int = 0) -> dict[str, int]:
    """Write the three files; returns row counts."""
    ensure_sources()
    rng = random.Random(seed)
    wordnet = wordnet_entries(6000, rng)
    gcide = gcide_entries(3000, rng)
    clipart = clipart_titles()
    tux = tuxpaint_captions()
    train = list(generate("train", wordnet, clipart, "wordnet", "openclipart+emoji", rng, per_route))
    test = list(generate("test", gcide, tux, "gcide", "tuxpaint", rng, per_route // 3))
    seen = list(generate("train", gcide, tux, "gcide", "tuxpaint", rng, per_route // 3))
    # The same query text on both sides would measure memory, not routing.
    train_texts = {e.query.lower() for e in train}
    test = [e for e in test if e.query.lower() not in train_texts]
    seen = [e for e in seen if e.query.lower() not in train_texts]
    dev = [e for e in train if held_out(e.query, 10)]
    train = [e for e in train if not held_out(e.query, 10)]
    out.mkdir(parents=True, exist_ok=True)
    files = {"train.jsonl": train, "dev.jsonl": dev, "test.jsonl": test, "test-seen-templates.jsonl": seen}
    for name, rows in files.items():
        with open(out / name, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(asdict(e)) + "\n" for e in rows)
    return {name: len(rows) for name, rows in files.items()} | {"wordnet": len(wordnet), "gcide": len(gcide), "clipart": len(clipart), "tuxpaint": len(tux)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("data/routes"))
    ap.add_argument("--per-route", type=int, default=1000, help="training queries per single route (multi-route families get a third)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(json.dumps(write(args.out, args.per_route, args.seed)))


if __name__ == "__main__":
    main()
