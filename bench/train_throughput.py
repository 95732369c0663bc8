"""Training samples/s of ``ragmm train retriever`` against a plain sentence-transformers script.

Same model (all-MiniLM-L6-v2), same data (WordNet example -> gloss pairs), same batch, same
loss (symmetric InfoNCE at a fixed temperature of 0.05: ragmm's ``clip`` with
``learnable_temperature = false`` and sentence-transformers' MultipleNegativesSymmetricRankingLoss
with scale 20), same number of steps, same process. The baseline runs before and after ragmm
to control drift. Goal: ragmm >= 0.9 x the plain script.

    python bench/train_throughput.py            # 40 steps of batch 32
    python bench/train_throughput.py --small    # 6 steps of batch 16
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, save  # noqa: E402


def plain_st(train_file: Path, steps: int, batch: int, out: Path) -> float:
    """The plain sentence-transformers script; returns samples/s of ``trainer.train``."""
    from datasets import load_dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesSymmetricRankingLoss

    from ragmm.encoders.sentence_transformer import packaged_minilm_path

    model = SentenceTransformer(str(packaged_minilm_path()))
    ds = load_dataset("json", data_files=str(train_file), split="train").select_columns(["query", "positive"])
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=batch, learning_rate=1e-4, warmup_steps=0.1,
        save_strategy="no", logging_steps=10, seed=42, batch_sampler="no_duplicates", report_to=[], disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=ds, loss=MultipleNegativesSymmetricRankingLoss(model, scale=20.0))
    t0 = time.perf_counter()
    trainer.train()
    return steps * batch / (time.perf_counter() - t0)


def ragmm_train(train_file: Path, steps: int, batch: int, out: Path) -> float:
    """``ragmm train retriever`` through its Python entry; samples/s of the same span."""
    from ragmm.training.config import load_train_config
    from ragmm.training.train import train_retriever

    cfg_path = out / "train.toml"
    out.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(
        f'output = "{out / "model"}"\n[data]\ntrain = "{train_file}"\n[loss]\ntype = "clip"\ntemperature = 0.05\nlearnable_temperature = false\n'
        f'[train]\nmax_steps = {steps}\nbatch_size = {batch}\nlearning_rate = 1e-4\nsave_steps = {steps * 10}\nlogging_steps = 10\nprecision = "fp32"\n'
    )
    res = train_retriever(load_train_config(cfg_path), progress=False)
    return steps * batch / res.seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    steps, batch = (6, 16) if args.small else (args.steps, args.batch)

    from ragmm.training.data.wordnet import write

    with tempfile.TemporaryDirectory(prefix="ragmm-bench-train-") as tmp:
        root = Path(tmp)
        write(root / "wordnet", max_train=steps * batch * 2)
        train_file = root / "wordnet" / "train.jsonl"
        base1 = plain_st(train_file, steps, batch, root / "st1")
        ours = ragmm_train(train_file, steps, batch, root / "ragmm")
        base2 = plain_st(train_file, steps, batch, root / "st2")
    baseline = (base1 + base2) / 2
    results = {
        "steps": steps,
        "batch": batch,
        "ragmm_samples_per_s": ours,
        "plain_st_samples_per_s": [base1, base2],
        "ratio": ours / baseline,
        "goal": ">= 0.9",
        "machine": machine(),
    }
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=2))
    print(f"wrote {save('train_throughput', results, args.out)}")


if __name__ == "__main__":
    main()
