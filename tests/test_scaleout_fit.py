"""``torchrun -m stages.fit`` with DDP (gloo, CPU) follows the one-process run of the same
global batch: same epoch losses, same final weights (up to float reduction order)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from pipeline.model import load_fusion_checkpoint
from pipeline.train import FitConfig, open_inputs
from stages.fit import main
from tests.conftest import make_stores

ROOT = Path(__file__).resolve().parents[1]
GLOBAL_BATCH, PROCESSES = 4, 2


def _args(cache: Path, out: Path, batch_size: int, episode: str) -> list[str]:
    return ["--episode", episode, "--visual", "dino_vits16", "--text", "minilm_l6",
            "--cache-dir", str(cache),
            "--out", str(out), "--epochs", "3", "--batch-size", str(batch_size),
            "--layers", "1", "--dim", "32", "--heads", "2", "--embed-dim", "16",
            "--drop-path", "0", "--lr", "3e-3", "--warmup-epochs", "0.5", "--val-split", "",
            "--device", "cpu", "--no-progress"]


@pytest.mark.slow
@pytest.mark.parametrize("episode", ["present", "vocabulary"])
def test_two_process_ddp_matches_one_process(tmp_path: Path, episode: str) -> None:
    stores = make_stores(tmp_path, num_images=17, splits=("train",))
    episodes = len(open_inputs(FitConfig("dino_vits16", "minilm_l6",
                                         cache_dir=stores.cache_dir)).train)
    assert episodes % GLOBAL_BATCH == 0  # no rank pads its share with repeated samples

    one = tmp_path / "one"
    single = CliRunner().invoke(main, _args(stores.cache_dir, one, GLOBAL_BATCH, episode))
    assert single.exit_code == 0, single.output

    two = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone",
         "--nproc-per-node", str(PROCESSES), "-m", "stages.fit",
         *_args(stores.cache_dir, two, GLOBAL_BATCH // PROCESSES, episode)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "on cpu x2" in ddp.stderr  # really two ranks

    a = json.loads((one / "train_log.json").read_text())
    b = json.loads((two / "train_log.json").read_text())
    assert len(a) == len(b) == 3
    assert a[0]["loss"] > a[-1]["loss"]  # it learns
    for x, y in zip(a, b, strict=True):
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-5)
        assert y["train_miou"] == pytest.approx(x["train_miou"], abs=1e-3)
    # the trained models predict the same (raw weights may not: parameters without a gradient,
    # such as the attention key bias or a conv bias before InstanceNorm, get Adam-amplified noise)
    tokens, text = torch.randn(2, *stores.grid, 16), torch.randn(2, 3, 12)
    with torch.no_grad():
        expected = load_fusion_checkpoint(one / "checkpoint.pt")[0].eval()(tokens, text)
        found = load_fusion_checkpoint(two / "checkpoint.pt")[0].eval()(tokens, text)
    torch.testing.assert_close(found, expected, rtol=1e-4, atol=1e-4)
