"""The CUDA path (bf16 autocast): runs where a GPU is present, skipped on CPU-only machines."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from pipeline.encoders import create_text_encoder
from pipeline.model import FusionConfig, FusionModel, load_fusion_checkpoint
from pipeline.train import FitConfig, fit
from pipeline.train.distributed import Runtime

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_fit_on_cuda_learns_and_its_checkpoint_loads_on_cpu(tiny_stores, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = fit(FitConfig(visual=tiny_stores.visual, text=tiny_stores.text,
                           cache_dir=tiny_stores.cache_dir, out=out, epochs=6, batch_size=4,
                           dim=32, layers=1, heads=2, embed_dim=16, decoder_channels=(16, 8, 8),
                           device="cuda", progress=False))
    losses = [record["loss"] for record in result["history"]]
    assert all(math.isfinite(loss) for loss in losses) and losses[-1] < 0.8 * losses[0]
    model, _ = load_fusion_checkpoint(out / "checkpoint.pt")  # the CPU by default
    assert next(model.parameters()).device.type == "cpu"
    assert torch.isfinite(model(torch.randn(1, 4, 5, 16), torch.randn(1, 2, 12))).all()


def test_bf16_autocast_forward_matches_fp32_on_cpu() -> None:
    torch.manual_seed(0)
    model = FusionModel(FusionConfig(visual_dim=384, text_dim=384, dim=64, layers=2, heads=4,
                                     embed_dim=32)).eval()
    tokens, text = torch.randn(2, 17, 23, 384), torch.randn(2, 5, 384)
    with torch.no_grad():
        reference = model(tokens, text) * model.config.temperature  # cosines in [-1, 1]
        runtime = Runtime(torch.device("cuda"))
        gpu = model.cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=runtime.autocast):
            cosine = gpu(tokens.cuda(), text.cuda()).float().cpu() * model.config.temperature
    assert runtime.autocast and cosine.dtype == torch.float32
    assert (cosine - reference).abs().max() < 0.05


def test_text_encoder_runs_on_cuda() -> None:
    encoder = create_text_encoder("minilm_l6", random_init=True).eval()
    names = ["pole", "pedestrian", "road"]
    on_cpu = encoder.encode_classes(names)
    on_gpu = encoder.cuda().encode_classes(names).cpu()
    torch.testing.assert_close(on_gpu, on_cpu, atol=1e-3, rtol=1e-3)


def test_table_text_encoder_runs_on_cuda() -> None:
    table = create_text_encoder("clip_table")
    names = ["background", "person", "aerosol can"]
    on_cpu, store_cpu = table.encode_classes(names[1:]), table.encode_store(names, ())
    table = table.cuda()
    assert table.encode_classes(names[1:]).device.type == "cuda"
    torch.testing.assert_close(table.encode_classes(names[1:]).cpu(), on_cpu)
    torch.testing.assert_close(table.encode_store(names, ()), store_cpu)  # a store is on the CPU
