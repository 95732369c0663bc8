"""Cross-process negatives: two CPU processes (gloo) against one process on the concatenated batch.

For each loss that gathers (clip, clip-uniformity-alignment, cwcl, maxsim, clamr late and dense),
a global batch of 5 rows is split 3 + 2 between two processes (uneven, as at an epoch's end; for
the token losses each process also pads to its own longest text, so the token axes differ). Each
process computes the loss on its shard with ``gather_across_devices=True`` and back-propagates it.
Against the single-process loss of the whole batch (float64), the test checks:

- value: the mean over the two processes of their losses equals the whole-batch loss (what the
  Trainer logs after DDP's averaging);
- embeddings: each process's gradient on its own rows equals ``world_size`` (2) times the
  whole-batch gradient on those rows (every process's loss reaches them through the gather, and
  DDP divides the summed parameter gradients by the world size, giving the whole-batch gradient);
- temperature (clip, clip-uniformity-alignment, cwcl): each process's gradient of the learnable
  log-scale equals the whole-batch gradient (it is averaged over processes, since the trainer's
  DDP wraps the model and not the loss);
- switch: with ``gather_across_devices=False`` a process's CLIP loss is the loss of its shard alone.

A last test runs ``ragmm train retriever`` under torchrun with two CPU processes (DDP over gloo,
the gathering CLIP loss) and checks that the processes split the data.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

SIZES = (3, 2)  # rows per process
WORLD = len(SIZES)
DIM = 6


def _rows(rank: int) -> slice:
    start = sum(SIZES[:rank])
    return slice(start, start + SIZES[rank])


def _lengths(generator: torch.Generator, shape: tuple[int, ...], longest: tuple[int, ...]) -> torch.Tensor:
    """Real token counts between 1 and each process's longest, which the first row of its shard has."""
    cap = torch.cat([torch.full((n,), cap) for n, cap in zip(SIZES, longest, strict=True)])  # (N,)
    cap = cap.view(-1, *([1] * (len(shape) - 1))).expand(shape)
    lengths = 1 + (torch.rand(shape, generator=generator, dtype=torch.float64) * cap).long().clamp(max=cap - 1)
    for rank in range(len(SIZES)):
        first = _rows(rank).start
        lengths[first] = cap[first]
    return lengths


def _mask(lengths: torch.Tensor, length: int) -> torch.Tensor:
    return torch.arange(length) < lengths[..., None]  # (..., L)


def _trim(tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the token positions no row of this shard uses: each process pads to its own longest text."""
    used = mask.flatten(0, -2).any(dim=0).nonzero()
    length = int(used.max()) + 1
    return tokens[..., :length, :], mask[..., :length]


@dataclass(frozen=True)
class Case:
    """One loss under test: the whole batch, one process's shard of it, and the loss call."""

    name: str
    build: Callable[[torch.Generator], dict[str, torch.Tensor]]
    shard: Callable[[dict[str, torch.Tensor], slice], dict[str, torch.Tensor]]
    loss: Callable[[dict[str, torch.Tensor], bool], torch.Tensor]


def _dense_batch(g: torch.Generator, negatives: int = 2) -> dict[str, torch.Tensor]:
    n = sum(SIZES)
    return {
        "query": torch.randn(n, DIM, generator=g, dtype=torch.float64),
        "doc": torch.randn(n, DIM, generator=g, dtype=torch.float64),
        "hard": torch.randn(n, negatives, DIM, generator=g, dtype=torch.float64),
        "log_scale": torch.tensor(math.log(1 / 0.2), dtype=torch.float64),
    }


def _dense_shard(batch: dict[str, torch.Tensor], rows: slice) -> dict[str, torch.Tensor]:
    return {k: (v if k == "log_scale" else v[rows]) for k, v in batch.items()}


def _clip(b: dict[str, torch.Tensor], gather: bool) -> torch.Tensor:
    from ragmm.training.losses import clip_loss

    return clip_loss(b["query"], b["doc"], b["log_scale"].exp(), b["hard"], gather_across_devices=gather)


def _cua(b: dict[str, torch.Tensor], gather: bool) -> torch.Tensor:
    from ragmm.training.losses import clip_uniformity_alignment_loss

    return clip_uniformity_alignment_loss(
        b["query"], b["doc"], b["log_scale"].exp(), b["hard"], gather_across_devices=gather
    )


def _cwcl(b: dict[str, torch.Tensor], gather: bool) -> torch.Tensor:
    from ragmm.training.losses import cwcl_loss

    return cwcl_loss(b["query"], b["doc"], b["log_scale"].exp(), gather_across_devices=gather)


def _maxsim_batch(g: torch.Generator) -> dict[str, torch.Tensor]:
    n, hard = sum(SIZES), 2
    q_len, d_len, h_len = _lengths(g, (n,), (3, 4)), _lengths(g, (n,), (3, 5)), _lengths(g, (n, hard), (4, 2))
    return {
        "query": torch.randn(n, 4, DIM, generator=g, dtype=torch.float64),
        "query_mask": _mask(q_len, 4),
        "doc": torch.randn(n, 5, DIM, generator=g, dtype=torch.float64),
        "doc_mask": _mask(d_len, 5),
        "hard": torch.randn(n, hard, 4, DIM, generator=g, dtype=torch.float64),
        "hard_mask": _mask(h_len, 4),
    }


def _token_shard(batch: dict[str, torch.Tensor], rows: slice) -> dict[str, torch.Tensor]:
    out = {}
    for key in [k for k in batch if not k.endswith("_mask") and f"{k}_mask" in batch]:
        out[key], out[f"{key}_mask"] = _trim(batch[key][rows], batch[f"{key}_mask"][rows])
    out.update({k: v[rows] for k, v in batch.items() if k not in out})
    return out


def _maxsim(b: dict[str, torch.Tensor], gather: bool) -> torch.Tensor:
    from ragmm.training.losses import maxsim_loss

    return maxsim_loss(
        b["query"], b["query_mask"], b["doc"], b["doc_mask"], b["hard"], b["hard_mask"], scale=3.0,
        gather_across_devices=gather,
    )


def _clamr_late_batch(g: torch.Generator) -> dict[str, torch.Tensor]:
    n, views, hard = sum(SIZES), 3, 1
    return {
        "query": torch.randn(n, 4, DIM, generator=g, dtype=torch.float64),
        "query_mask": _mask(_lengths(g, (n,), (4, 2)), 4),
        "items": torch.randn(n, views, 5, DIM, generator=g, dtype=torch.float64),
        "items_mask": _mask(_lengths(g, (n, views), (2, 5)), 5),
        "hard": torch.randn(n, hard, views, 3, DIM, generator=g, dtype=torch.float64),
        "hard_mask": _mask(_lengths(g, (n, hard, views), (3, 2)), 3),
        "labels": torch.tensor([0, -100, 2, 1, -100]),  # two queries without a single answering view
    }


def _clamr_late(b: dict[str, torch.Tensor], gather: bool) -> torch.Tensor:
    from ragmm.training.losses import clamr_loss

    return clamr_loss(
        b["query"], b["items"], b["labels"], query_mask=b["query_mask"], item_mask=b["items_mask"],
        hard_negatives=b["hard"], hard_negatives_mask=b["hard_mask"], scale=2.0, modality_weight=0.5,
        gather_across_devices=gather,
    )


def _clamr_dense_batch(g: torch.Generator) -> dict[str, torch.Tensor]:
    n, views = sum(SIZES), 3
    present = torch.ones(n, views, dtype=torch.bool)
    present[1, 2] = present[4, 0] = False  # a missing view on each process
    return {
        "query": torch.randn(n, DIM, generator=g, dtype=torch.float64),
        "items": torch.randn(n, views, DIM, generator=g, dtype=torch.float64),
        "present": present,
        "hard": torch.randn(n, 2, views, DIM, generator=g, dtype=torch.float64),
        "labels": torch.tensor([1, 0, -100, 2, 1]),
    }


def _clamr_dense(b: dict[str, torch.Tensor], gather: bool) -> torch.Tensor:
    from ragmm.training.losses import clamr_loss

    return clamr_loss(
        b["query"], b["items"], b["labels"], item_mask=b["present"], hard_negatives=b["hard"], scale=10.0,
        gather_across_devices=gather,
    )


CASES = [
    Case("clip", _dense_batch, _dense_shard, _clip),
    Case("clip-uniformity-alignment", _dense_batch, _dense_shard, _cua),
    Case("cwcl", _dense_batch, _dense_shard, _cwcl),
    Case("maxsim", _maxsim_batch, _token_shard, _maxsim),
    Case("clamr-late", _clamr_late_batch, _token_shard, _clamr_late),
    Case("clamr-dense", _clamr_dense_batch, _dense_shard, _clamr_dense),
]


def _batch(case: Case) -> dict[str, torch.Tensor]:
    return case.build(torch.Generator().manual_seed(sum(map(ord, case.name))))


def _run(batch: dict[str, torch.Tensor], case: Case, gather: bool) -> tuple[float, dict[str, torch.Tensor]]:
    """The loss value and the gradient of every float input (fresh leaves)."""
    leaves = {k: v.clone().requires_grad_() if v.is_floating_point() else v for k, v in batch.items()}
    loss = case.loss(leaves, gather)
    loss.backward()
    return float(loss.detach()), {k: v.grad for k, v in leaves.items() if v.is_floating_point() and v.grad is not None}


def _worker(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        results = {}
        for case in CASES:
            results[case.name] = _run(case.shard(_batch(case), _rows(rank)), case, gather=True)
        clip = CASES[0]
        results["clip-local"] = _run(clip.shard(_batch(clip), _rows(rank)), clip, gather=False)
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def processes(tmp_path_factory) -> list[dict]:
    """Run every case in two gloo processes once; each rank's ``{case: (loss, grads)}``."""
    import torch.multiprocessing as mp

    out = tmp_path_factory.mktemp("gathered")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(port, str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]


def _shard_grad(case: Case, grad: torch.Tensor, key: str, batch: dict[str, torch.Tensor], rank: int) -> torch.Tensor:
    """The whole-batch gradient restricted to a process's rows (and its trimmed token axis)."""
    if key == "log_scale":
        return grad
    shard = case.shard({**batch, key: grad}, _rows(rank))
    return shard[key]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_gathered_loss_equals_whole_batch_loss(processes, case):
    batch = _batch(case)
    want_loss, want_grads = _run(batch, case, gather=False)
    losses = [processes[r][case.name][0] for r in range(WORLD)]
    assert sum(losses) / WORLD == pytest.approx(want_loss, rel=1e-10, abs=1e-12)
    for rank in range(WORLD):
        grads = processes[rank][case.name][1]
        assert set(grads) == set(want_grads)
        for key, got in grads.items():
            want = _shard_grad(case, want_grads[key], key, batch, rank)
            factor = 1 if key == "log_scale" else WORLD
            torch.testing.assert_close(got, factor * want, msg=f"{case.name}: gradient of {key} on rank {rank}")


@pytest.mark.slow
def test_without_gathering_each_process_sees_only_its_shard(processes):
    clip = CASES[0]
    for rank in range(WORLD):
        want, _ = _run(clip.shard(_batch(clip), _rows(rank)), clip, gather=False)
        assert processes[rank]["clip-local"][0] == pytest.approx(want, rel=1e-12)
    whole, _ = _run(_batch(clip), clip, gather=False)
    assert processes[0]["clip-local"][0] != pytest.approx(whole, rel=1e-3)


@pytest.mark.slow
def test_torchrun_two_cpu_processes_split_the_data_and_train(tmp_path):
    """`ragmm train retriever` under torchrun on CPU: real DDP with the gathering CLIP loss.

    64 rows, batch 8 per process, 4 steps: one epoch only if the two processes take different
    batches (one process, or two that each read the whole data set, log epoch 0.5).
    """
    import json
    import os
    import subprocess
    import sys

    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = "red blue green cat dog bird runs flies swims fast slow big small tree river sky sea".split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(tmp_path / "hf")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(tmp_path / "hf")
    modules = [models.Transformer(str(tmp_path / "hf"), max_seq_length=32), models.Pooling(32, "mean"), models.Normalize()]
    SentenceTransformer(modules=modules).save(str(tmp_path / "st"))
    rows = [{"query": f"{words[i % 17]} {words[(i * 7) % 17]}", "positive": f"{words[i % 17]} sky {i}"} for i in range(64)]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "train.toml").write_text(
        f'output = "{tmp_path / "out"}"\n[model]\nbase = "{tmp_path / "st"}"\n[data]\ntrain = "train.jsonl"\n'
        '[loss]\ntype = "clip"\ntemperature = 0.1\n[train]\nmax_steps = 4\nbatch_size = 8\nlearning_rate = 3e-3\n'
        'warmup_ratio = 0.0\nsave_steps = 100\nlogging_steps = 1\nprecision = "fp32"\n'
    )
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    # Its own process group: on a timeout the workers go too, not only torchrun.
    proc = subprocess.Popen(
        [*torchrun, "-m", "ragmm.cli.app", "train", "retriever", "--config", str(tmp_path / "train.toml")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        _, stderr = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr[-3000:]
    logs = [json.loads(line) for line in (tmp_path / "out" / "train_log.jsonl").read_text().splitlines()]
    assert logs[-1]["epoch"] == pytest.approx(1.0)
    assert (tmp_path / "out" / "model.safetensors").is_file()
