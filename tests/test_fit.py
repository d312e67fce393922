"""fusioner-fit: outputs, zero-shot episodes, resume == uninterrupted, no encoder, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import zarr
from click.testing import CliRunner

from pipeline.data import ZeroShotSplit, get_split
from pipeline.model import load_fusion_checkpoint
from pipeline.store import CachedFeatureDataset
from pipeline.train import EpisodeDataset, FitConfig, fit, trainer
from pipeline.train.episodes import EPISODE_CLASSES
from pipeline.train.loop import Objective
from stages.fit import main
from tests.helpers import run_without_encoders, same_weights
from tests.tally import invoke_error

SMALL = ["--epochs", "2", "--batch-size", "4", "--dim", "32", "--layers", "1", "--heads", "2",
         "--embed-dim", "16", "--decoder-channels", "16,8,8", "--no-progress"]


def _args(stores, out: Path, *extra: str) -> list[str]:
    return ["--visual", stores.visual, "--text", stores.text, "--dataset", stores.dataset,
            "--fold", "0", "--cache-dir", str(stores.cache_dir), "--out", str(out), *SMALL, *extra]


def _config(stores, out: Path, **overrides: object) -> FitConfig:
    values = {"visual": stores.visual, "text": stores.text, "cache_dir": stores.cache_dir,
              "out": out, "epochs": 2, "batch_size": 3, "dim": 32, "layers": 1, "heads": 2,
              "embed_dim": 16, "decoder_channels": (16, 8, 8), "progress": False, **overrides}
    return FitConfig(**values)  # type: ignore[arg-type]


def test_cli_writes_checkpoint_and_metrics(tiny_stores, tmp_path: Path) -> None:
    out = tmp_path / "run"
    aliases = ["--visual", "dinov1", "--text", "minilm"]  # short names find the same stores
    result = CliRunner().invoke(main, [*_args(tiny_stores, out), *aliases])
    assert result.exit_code == 0, result.output
    for name in ("checkpoint.pt", "last.pt", "train_log.json", "train_metrics.json"):
        assert (out / name).is_file(), name
    payload = torch.load(out / "checkpoint.pt", weights_only=True)
    meta = payload["meta"]
    assert meta["visual"]["encoder"] == "dino_vits16" and meta["text"]["encoder"] == "minilm_l6"
    assert meta["visual"]["weights_sha256"] == "0" * 64 and meta["visual"]["grid_size"] == [4, 5]
    assert (meta["dataset"], meta["fold"], meta["unseen"]) == ("camvid", 0, [2, 9, 10])
    assert meta["class_names"] == list(tiny_stores.class_names)
    assert meta["model_config"]["dim"] == 32 and meta["train"]["epochs"] == 2
    model, _ = load_fusion_checkpoint(out / "checkpoint.pt")
    assert model(torch.randn(1, 4, 5, 16), torch.randn(1, 2, 12)).shape == (1, 2, 32, 40)
    log = json.loads((out / "train_log.json").read_text())
    metrics = json.loads((out / "train_metrics.json").read_text())
    assert [r["epoch"] for r in log] == [1, 2]
    assert {"loss", "train_miou", "val_seen_miou", "images_per_s"} <= set(metrics)


@pytest.fixture
def fold0_train(tiny_stores) -> tuple[ZeroShotSplit, CachedFeatureDataset]:
    """CamVid fold 0 and the tiny train store: what the episode tests draw from."""
    return get_split("camvid", 0), CachedFeatureDataset(tiny_stores.visual_paths["train"])


@pytest.mark.parametrize("classes", EPISODE_CLASSES)
def test_unseen_classes_never_in_episodes(fold0_train, classes: str) -> None:
    split, features = fold0_train
    assert set(features.labels().ravel().tolist()) & set(split.unseen)  # the store has them
    episodes = EpisodeDataset(features, split, classes)  # type: ignore[arg-type]
    assert len(episodes) > 0
    for item in (episodes[i] for i in range(len(episodes))):
        ids = set(item["class_ids"].tolist())
        assert ids and ids <= set(split.seen) and not ids & set(split.unseen)
        assert not set(item["label"].unique().tolist()) & set(split.unseen)


def test_negatives_add_absent_seen_classes_redrawn_each_epoch(fold0_train) -> None:
    split, features = fold0_train
    episodes = EpisodeDataset(features, split, "present", negatives=2, seed=3)
    plain = EpisodeDataset(features, split, "present")
    draws = set()
    for i in range(len(episodes)):
        present = plain[i]["class_ids"].tolist()
        assert episodes[(i, 0)]["class_ids"].tolist() == present  # no epoch: no negatives
        for epoch in range(4):
            ids = episodes[(i, 0, epoch)]["class_ids"].tolist()
            assert ids == episodes[(i, 0, epoch)]["class_ids"].tolist()  # seeded: same draw
            assert ids[: len(present)] == present and len(ids) == len(present) + 2
            extra = ids[len(present):]
            label = episodes[(i, 0, epoch)]["label"]
            assert set(extra) <= set(split.seen) and not set(extra) & set(present)
            assert not (label[..., None] == torch.tensor(extra)).any()  # absent: empty masks
            draws.add((i, tuple(extra)))
    assert len(draws) > len(episodes)  # epochs draw different absent classes


def test_single_episodes_ask_one_present_class_redrawn_each_epoch(tiny_stores, fold0_train,
                                                                  tmp_path: Path) -> None:
    split, features = fold0_train
    episodes = EpisodeDataset(features, split, "single", seed=3)
    plain = EpisodeDataset(features, split, "present")
    assert episodes.needs_epoch and not plain.needs_epoch
    draws = set()
    for i in range(len(episodes)):
        present = plain[i]["class_ids"].tolist()
        for epoch in range(4):
            ids = episodes[(i, 0, epoch)]["class_ids"].tolist()
            assert ids == episodes[(i, 0, epoch)]["class_ids"].tolist()  # seeded: same draw
            assert len(ids) == 1 and ids[0] in present
            draws.add((i, ids[0]))
    assert len(draws) > len(episodes)  # epochs ask images for different classes
    out = tmp_path / "run"
    result = CliRunner().invoke(main, _args(tiny_stores, out, "--episode", "single"))
    assert result.exit_code == 0, result.output
    meta = torch.load(out / "checkpoint.pt", weights_only=True)["meta"]
    assert meta["train"]["episode"] == "single"
    metrics = json.loads((out / "train_metrics.json").read_text())
    assert metrics["val_seen_miou"] > 0  # validated on every present class, by argmax


def test_absent_rate_asks_some_single_episodes_for_absent_classes(tiny_stores, fold0_train,
                                                                  tmp_path: Path) -> None:
    split, features = fold0_train
    plain = EpisodeDataset(features, split, "present")
    episodes = EpisodeDataset(features, split, "single", seed=3, absent_rate=0.5)
    absent_draws = present_draws = 0
    for i in range(len(episodes)):
        present = plain[i]["class_ids"].tolist()
        for epoch in range(6):
            (queried,) = episodes[(i, 0, epoch)]["class_ids"].tolist()
            assert queried in split.seen
            if queried in present:
                present_draws += 1
            else:
                absent_draws += 1
                assert not (episodes[(i, 0, epoch)]["label"] == queried).any()  # empty mask
    assert absent_draws > 0 and present_draws > 0
    with pytest.raises(ValueError, match="--absent-rate needs --episode single"):
        EpisodeDataset(features, split, "present", absent_rate=0.5)
    invoke_error(main, _args(tiny_stores, tmp_path / "run", "--absent-rate", "0.5"),
                 "--absent-rate needs --episode single")


def test_fit_with_negatives_runs_and_records_them(tiny_stores, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(main, _args(tiny_stores, out, "--negatives", "3"))
    assert result.exit_code == 0, result.output
    meta = torch.load(out / "checkpoint.pt", weights_only=True)["meta"]
    assert meta["train"]["negatives"] == 3


def test_dice_and_text_noise_change_training_and_are_recorded(tiny_stores, tmp_path: Path) -> None:
    plain = fit(_config(tiny_stores, tmp_path / "plain", epochs=1))
    tuned = fit(_config(tiny_stores, tmp_path / "tuned", epochs=1, dice_weight=1.0,
                        text_noise=0.5))
    assert tuned["step_losses"][0] > plain["step_losses"][0]  # + a Dice term in [0, 1]
    meta = torch.load(tmp_path / "tuned" / "checkpoint.pt", weights_only=True)["meta"]
    assert meta["train"]["dice_weight"] == 1.0 and meta["train"]["text_noise"] == 0.5


def test_text_noise_is_relative_and_training_only() -> None:
    torch.manual_seed(0)
    text = torch.randn(4, 3, 384) * 5
    noisy = Objective(text_noise=0.2).text(text, training=True)
    ratio = (noisy - text).norm(dim=-1) / text.norm(dim=-1)
    assert 0.17 < float(ratio.mean()) < 0.23
    assert torch.equal(Objective(text_noise=0.2).text(text, training=False), text)
    assert torch.equal(Objective().text(text, training=True), text)


@pytest.mark.parametrize("episode", ["present", "vocabulary"])
def test_resume_equals_uninterrupted_run(tiny_stores, tmp_path: Path, monkeypatch,
                                         episode: str) -> None:
    full = fit(_config(tiny_stores, tmp_path / "full", epochs=3, episode=episode))
    save = trainer.save_training_state

    def save_then_stop(*args, **kwargs):
        save(*args, **kwargs)
        raise KeyboardInterrupt  # killed right after the first epoch's checkpoint

    monkeypatch.setattr(trainer, "save_training_state", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        fit(_config(tiny_stores, tmp_path / "cut", epochs=3, episode=episode))
    monkeypatch.setattr(trainer, "save_training_state", save)
    resumed = fit(_config(tiny_stores, tmp_path / "cut", epochs=3, episode=episode, resume=True))
    steps = len(full["step_losses"]) // 3
    assert resumed["step_losses"] == full["step_losses"][steps:]
    assert _without_timing(resumed["history"]) == _without_timing(full["history"])
    assert same_weights(tmp_path / "full", tmp_path / "cut")


def _without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k not in ("seconds", "images_per_s")}
            for record in history]


def test_val_every_skips_validation_not_training(tiny_stores, tmp_path: Path) -> None:
    every = fit(_config(tiny_stores, tmp_path / "every", epochs=3))
    sparse = fit(_config(tiny_stores, tmp_path / "sparse", epochs=3, val_every=2))
    assert [("val_seen_miou" in r) for r in sparse["history"]] == [False, True, True]
    assert all("val_seen_miou" in r for r in every["history"])
    assert sparse["step_losses"] == every["step_losses"]
    assert same_weights(tmp_path / "every", tmp_path / "sparse")
    dense = _without_timing(every["history"])
    assert [r for r in _without_timing(sparse["history"]) if "val_loss" in r] == dense[1:]
    metrics = json.loads((tmp_path / "sparse" / "train_metrics.json").read_text())
    assert metrics["val_seen_miou"] == every["history"][-1]["val_seen_miou"]


def test_resume_with_other_settings_is_refused(tiny_stores, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert CliRunner().invoke(main, _args(tiny_stores, out)).exit_code == 0
    result = CliRunner().invoke(main, _args(tiny_stores, out, "--lr", "0.01", "--resume"))
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0 and "cannot resume" in result.stderr


def test_fit_needs_no_encoder_library(tiny_stores, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run_without_encoders("stages.fit", _args(tiny_stores, out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "checkpoint.pt").is_file()


def _one_line_error(args: list[str]) -> str:
    return invoke_error(main, args)


def test_missing_incomplete_or_foreign_store_is_one_line_error(make_stores, tmp_path: Path) -> None:
    stores = make_stores(tmp_path / "a")
    out = tmp_path / "run"
    assert "no such store" in _one_line_error(_args(stores, out, "--visual", "clip_vitb16"))
    assert "no such store" in _one_line_error(_args(stores, out, "--text", "bert_base"))
    train = zarr.open_group(str(stores.visual_paths["train"]), mode="r+")
    train.attrs["encoder"] = "clip_vitb16"
    assert "encoder='clip_vitb16'" in _one_line_error(_args(stores, out))
    train.attrs["encoder"] = "dino_vits16"
    val = zarr.open_group(str(stores.visual_paths["val"]), mode="r+")
    val.attrs["weights_sha256"] = "f" * 64  # validation features of other weights
    assert "weights_sha256" in _one_line_error(_args(stores, out))
    val.attrs["weights_sha256"] = "0" * 64
    train.attrs["complete"] = False
    assert "incomplete" in _one_line_error(_args(stores, out))
    assert not (out / "checkpoint.pt").exists()


def test_bad_options_are_one_line_errors(tiny_stores, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert "divisible" in _one_line_error(_args(tiny_stores, out, "--heads", "3"))
    assert "no background" in _one_line_error(_args(tiny_stores, out, "--unseen-as", "background"))


@pytest.mark.parametrize("inside_project", [True, False])
def test_no_options_trains_the_default_pair(make_stores, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            inside_project: bool) -> None:
    """`fusioner-fit` with no pair/dataset options: params.yaml's pair and dataset inside the
    project (other keys are ignored), else the catalogue defaults; it prints what it chose."""
    if inside_project:
        (tmp_path / "params.yaml").write_text(
            "data:\n  dataset: camvid\n  root: ../shared/data/camvid\n"
            "datasets: {coco128: {root: elsewhere}}\n"
            "pair:\n  visual: dinov1\n  text: minilm_l6\nfit: {epochs: 12}\n")
    visual = "dino_vits16" if inside_project else "dinov2_vits14"
    make_stores(tmp_path, visual=visual, text="minilm_l6")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["--epochs", "1", *SMALL[2:]])  # tiny model
    assert result.exit_code == 0, result.output
    origin = "params.yaml" if inside_project else "catalogue defaults"
    named = "dinov1 -> dino_vits16" if inside_project else "dinov2_vits14"
    assert (f"visual encoder: {named}; text encoder: minilm_l6; dataset camvid "
            f"(visual, text, dataset from {origin})") in result.output
    meta = torch.load(tmp_path / "models/fusion/checkpoint.pt", weights_only=True)["meta"]
    assert (meta["visual"]["encoder"], meta["text"]["encoder"]) == (visual, "minilm_l6")
    assert meta["dataset"] == "camvid" and meta["train"]["epochs"] == 1
