"""The same training command on a GPU: mixed precision, and under `accelerate launch`.

Skipped without CUDA (CI has none); run on a lent GPU machine."""

import json
import subprocess
import sys

import pytest
import torch
from ragmm.training.config import load_train_config
from ragmm.training.train import train_retriever

from tests.training.test_train import logged_losses, tiny_model, train_files  # noqa: F401  (fixtures)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_gpu_run_uses_mixed_precision_and_lowers_the_loss(tmp_path, train_files, monkeypatch):  # noqa: F811
    from transformers import Trainer

    seen = {}
    original = Trainer.train

    def spy(self, *a, **kw):
        seen["bf16"], seen["fp16"], seen["device"] = self.args.bf16, self.args.fp16, str(self.args.device)
        return original(self, *a, **kw)

    monkeypatch.setattr(Trainer, "train", spy)
    cfg = train_files(max_steps=30).read_text().replace('precision = "fp32"', 'precision = "auto"')
    (tmp_path / "gpu.toml").write_text(cfg)
    res = train_retriever(load_train_config(tmp_path / "gpu.toml"), progress=False)
    assert seen["device"].startswith("cuda") and (seen["bf16"] or seen["fp16"])
    losses = logged_losses(tmp_path / "out")
    assert res.steps == 30 and sum(losses[-5:]) < 0.8 * sum(losses[:5])


def test_accelerate_launch_runs_the_same_command(tmp_path, train_files):  # noqa: F811
    cfg = train_files(max_steps=6)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--mixed_precision", "bf16", "-m", "ragmm.cli.app", "train", "retriever", "--config", str(cfg), "-q"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "saved" in out.stdout and "6 steps" in out.stdout
    steps = [json.loads(line)["step"] for line in (tmp_path / "out" / "train_log.jsonl").read_text().splitlines()]
    assert steps[-1] == 6
