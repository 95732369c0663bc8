"""WordNet usage example -> gloss pairs, split by synset (Debian ``wordnet-base``).

Each synset with a quoted usage example of over 15 characters gives one pair: the first
example is the query, the gloss without its examples the positive. The split is by synset
(crc32 of part of speech + offset, mod 10 == 0 held out), so no synset is in both sides.

Writes, under ``--out``:
    train.jsonl         {"query", "positive", "id"}                 (training split)
    test/queries.jsonl  {"id", "text"}                              (held-out queries)
    test/corpus.jsonl   {"id", "text"}                              (held-out glosses)
    test/qrels.tsv      TREC qrels: query_id 0 doc_id 1

Example:
    python -m ragmm.training.data.wordnet --out data/wordnet
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

WORDNET = Path("/usr/share/wordnet")
POS_FILES = {"n": "data.noun", "v": "data.verb", "a": "data.adj", "r": "data.adv"}
_EXAMPLE = re.compile(r'"([^"]+)"')


@dataclass(frozen=True, slots=True)
class Pair:
    id: str
    query: str
    positive: str

    @property
    def held_out(self) -> bool:
        return zlib.crc32(self.id.encode()) % 10 == 0


def ensure_wordnet(root: Path = WORDNET) -> Path:
    """Install Debian's ``wordnet-base`` when its data files are missing."""
    if not (root / "data.noun").is_file():
        if shutil.which("apt-get") is None:
            raise SystemExit(f"{root}: WordNet data missing and no apt-get; install the Debian package wordnet-base")
        subprocess.run(["apt-get", "install", "-y", "-qq", "wordnet-base"], check=True)
    return root


def parse(root: Path = WORDNET) -> Iterator[Pair]:
    """Yield one pair per synset that has a usable usage example."""
    for pos, name in POS_FILES.items():
        with open(root / name, encoding="latin-1") as fh:
            for line in fh:
                if line.startswith("  "):  # licence header
                    continue
                offset, _, rest = line.partition(" ")
                _, bar, gloss = rest.partition("| ")
                if not bar:
                    continue
                examples = [e.strip() for e in _EXAMPLE.findall(gloss)]
                examples = [e for e in examples if len(e) > 15]
                if not examples:
                    continue
                definition = _EXAMPLE.sub("", gloss).strip().strip(";").strip()
                definition = re.sub(r"\s*;\s*(;\s*)*$", "", definition).strip()
                if len(definition) < 3:
                    continue
                yield Pair(id=f"{pos}{offset}", query=examples[0], positive=definition)


def write(out: Path, root: Path = WORDNET, max_train: int | None = None) -> dict[str, int]:
    """Write the split; returns counts."""
    pairs = list(parse(ensure_wordnet(root)))
    train = [p for p in pairs if not p.held_out][: max_train or None]
    test = [p for p in pairs if p.held_out]
    (out / "test").mkdir(parents=True, exist_ok=True)
    with open(out / "train.jsonl", "w", encoding="utf-8") as fh:
        for p in train:
            fh.write(json.dumps({"id": p.id, "query": p.query, "positive": p.positive}) + "\n")
    with open(out / "test" / "queries.jsonl", "w", encoding="utf-8") as q, open(out / "test" / "corpus.jsonl", "w", encoding="utf-8") as c, open(
        out / "test" / "qrels.tsv", "w", encoding="utf-8"
    ) as r:
        for p in test:
            q.write(json.dumps({"id": f"q-{p.id}", "text": p.query}) + "\n")
            c.write(json.dumps({"id": p.id, "text": p.positive}) + "\n")
            r.write(f"q-{p.id}\t0\t{p.id}\t1\n")
    return {"pairs": len(pairs), "train": len(train), "test": len(test)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("data/wordnet"))
    ap.add_argument("--wordnet", type=Path, default=WORDNET)
    ap.add_argument("--max-train", type=int, default=None)
    args = ap.parse_args()
    print(json.dumps(write(args.out, args.wordnet, args.max_train)))


if __name__ == "__main__":
    main()
