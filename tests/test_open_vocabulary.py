"""The generalized protocol and the absent-name episodes end to end on a tiny fixture: the
calibration fit stores, the oracle's scores, the CLI's metrics/curve/summary, old checkpoints,
the name-shuffled control's label, bad input."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pipeline.evaluation import open_fold
from pipeline.evaluation.open_vocabulary import evaluate_open_vocabulary
from pipeline.evaluation.summary import tables
from pipeline.gzsl import ausuc, choose_gamma, gamma_grid
from pipeline.model.calibration import calibrate_on_store, calibration_rows
from pipeline.model.scoring import trained_form
from pipeline.store import CachedFeatureDataset, read_text_store, write_text_store
from pipeline.train import FitConfig, fit
from stages.evaluate import main
from tests.conftest import TinyStores, make_stores
from tests.tally import invoke_error
from tests.test_evaluate import Oracle

UNSEEN = (2, 9, 10)  # CamVid fold 0
TINY = {"epochs": 1, "batch_size": 4, "dim": 32, "layers": 1, "heads": 2, "embed_dim": 16,
        "decoder_channels": (16, 8, 8), "val_split": "", "progress": False}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[TinyStores, Path]:
    """Tiny stores and a 1-epoch checkpoint fit on them (with its calibration)."""
    base = tmp_path_factory.mktemp("open_vocabulary")
    stores = make_stores(base, num_images={"train": 8, "val": 10})
    fit(FitConfig(visual=stores.visual, text=stores.text, cache_dir=stores.cache_dir,
                  out=base / "run", **TINY))  # type: ignore[arg-type]
    return stores, base / "run" / "checkpoint.pt"


def _args(stores: TinyStores, checkpoint: Path, out: Path, *extra: str) -> list[str]:
    return ["--checkpoint", str(checkpoint), "--cache-dir", str(stores.cache_dir), "--split",
            "val", "--out-metrics", str(out / "metrics.json"), "--out-plots", str(out / "plots"),
            "--device", "cpu", "--batch-size", "4", "--no-progress", "--resolution", "cached",
            "--num-overlays", "0", *extra]


def _meta(checkpoint: Path) -> dict:
    return torch.load(checkpoint, weights_only=True)["meta"]


def test_fit_stores_a_calibration_chosen_on_the_train_images(setup, tmp_path: Path) -> None:
    stores, checkpoint = setup
    meta = _meta(checkpoint)
    stored = meta["calibration"]
    assert stored["form"] == trained_form(meta) == "alone" and stored["threshold"] == 0.5
    assert stored["images"] == 8 and "camvid/train store" in stored["chosen_on"]
    assert stored["curve"]["gamma"] == gamma_grid(0.07).tolist()
    assert stored["gamma"] == choose_gamma(stored["curve"]["gamma"], stored["curve"]["hiou"])
    inputs = open_fold(checkpoint, stores.cache_dir, "val")
    again = {split: calibrate_on_store(inputs.model, CachedFeatureDataset(
        stores.visual_paths[split]), inputs.split, inputs.text_table, "alone")
        for split in ("train", "val")}
    assert again["train"] == stored  # the train images, the rule and the grid: nothing else
    assert again["val"]["curve"] != stored["curve"]
    fit(FitConfig(visual=stores.visual, text=stores.text, cache_dir=stores.cache_dir,
                  out=tmp_path / "plain", calibrate=False, **TINY))  # type: ignore[arg-type]
    assert "calibration" not in _meta(tmp_path / "plain" / "checkpoint.pt")


def test_calibration_on_a_subset_reads_those_train_images_only(setup, tmp_path: Path) -> None:
    stores, _ = setup
    assert calibration_rows(8, 3) == [0, 4, 7] and calibration_rows(8, 0) == list(range(8))
    assert calibration_rows(8, 9) == list(range(8))
    fit(FitConfig(visual=stores.visual, text=stores.text, cache_dir=stores.cache_dir,
                  out=tmp_path / "few", calibration_images=3, **TINY))  # type: ignore[arg-type]
    checkpoint = tmp_path / "few" / "checkpoint.pt"
    stored = _meta(checkpoint)["calibration"]
    assert stored["images"] == 3 and "3 of 8 (evenly spaced) images" in stored["chosen_on"]
    inputs = open_fold(checkpoint, stores.cache_dir, "val")
    train = CachedFeatureDataset(stores.visual_paths["train"])
    on_rows = calibrate_on_store(inputs.model, train.subset([0, 4, 7]), inputs.split,
                                 inputs.text_table, "alone")
    everything = calibrate_on_store(inputs.model, train, inputs.split, inputs.text_table, "alone")
    assert on_rows["curve"] == stored["curve"] != everything["curve"]


def test_oracle_scores_one_and_records_every_image_and_pair(setup) -> None:
    stores, checkpoint = setup
    inputs = open_fold(checkpoint, stores.cache_dir, "val")
    inputs.model = Oracle(inputs.features, inputs.text_table)  # type: ignore[assignment]
    inputs.model.config = type("Config", (), {"temperature": 0.07})()  # type: ignore[attr-defined]
    found = evaluate_open_vocabulary(inputs, {"alone": {"gamma": 0.0}, "joint": {"gamma": 1.0}},
                                     presence=True, batch_size=3, progress=False)
    labels = inputs.features.labels()
    absent = [(row, c) for row, label in enumerate(labels) for c in UNSEEN
              if not (label == c).any()]
    for form in ("alone", "joint"):
        model = found.gzsl["fusioner", form]
        figures = model.figures()
        assert (figures["seen_miou"], figures["unseen_miou"], figures["hiou"]) == (1.0, 1.0, 1.0)
        assert figures["ausuc"] == 1.0 and figures["absent_painted_share"] == 0.0
        assert sorted(model.images.images) == list(range(10))  # one record per image
        assert sorted(model.absent) == absent
        random = found.gzsl["random_text", form].figures()
        assert random["hiou"] < 1.0 and random["absent_painted_share"] > 0.0
    presence = found.presence["fusioner"]
    assert len(presence.scores) == 10 * len(UNSEEN) and sorted(presence.painted) == absent
    assert presence.auroc() == 1.0 and presence.absent_share(0.5) == 0.0
    assert found.presence["random_text"].absent_share(0.5) > 0.0


def _leaves(value: object) -> list[object]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _leaves(v)]
    return [value]


def test_cli_writes_the_gzsl_block_the_curve_and_the_tables(setup, tmp_path: Path) -> None:
    stores, checkpoint = setup
    result = CliRunner().invoke(main, _args(stores, checkpoint, tmp_path, "--mode",
                                            "binary,gzsl", "--threshold", "adaptive"))
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "metrics.json").read_text())
    gzsl = document["gzsl"]
    assert list(gzsl) == ["alone"] and document["trained_form"] == "alone"
    assert set(gzsl["alone"]) == {"seen_miou", "unseen_miou", "hiou", "gamma", "ausuc",
                                  "absent_painted_share", "uncalibrated", "controls"}
    assert all(v is None or isinstance(v, float | int) for v in _leaves(gzsl))
    assert gzsl["alone"]["gamma"] == _meta(checkpoint)["calibration"]["gamma"]
    fold = document["per_fold"]["fold0"]
    assert fold["calibration"]["alone"]["source"] == "checkpoint"
    assert fold["episodes"]["gzsl_images"] == 10 and fold["episodes"]["binary_absent"] > 0
    for block in (document["binary"], document["fixed_threshold_0.5"]["binary"],
                  document["baselines"]["random_text"]["binary"]):
        assert 0.0 <= block["absent_painted_share"] <= 1.0
    assert 0.0 <= document["binary"]["presence_auroc"] <= 1.0
    with (tmp_path / "plots" / "gzsl_curve.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    grid = gamma_grid(0.07)
    assert len(rows) == 2 * len(grid)  # the model and random text, one row per gamma
    model = [r for r in rows if r["method"] == "fusioner"]
    area = ausuc([float(r["unseen_miou"]) for r in model], [float(r["seen_miou"]) for r in model])
    assert gzsl["alone"]["ausuc"] == pytest.approx(area, abs=1e-5)
    at_zero = next(r for r in model if float(r["gamma"]) == 0.0)
    assert gzsl["alone"]["uncalibrated"]["hiou"] == pytest.approx(float(at_zero["hiou"]))
    printed = tables(document)
    row = next(line for line in printed.splitlines() if line.startswith("| mean | alone |"))
    assert f"| {gzsl['alone']['hiou']:.3f} |" in row
    assert "presence AUROC" in printed and "gzsl alone" in result.stdout


def test_a_checkpoint_without_calibration_is_calibrated_on_its_train_store(setup,
                                                                         tmp_path: Path) -> None:
    stores, checkpoint = setup
    payload = torch.load(checkpoint, weights_only=True)
    gamma = payload["meta"].pop("calibration")["gamma"]
    old = tmp_path / "old.pt"
    torch.save(payload, old)
    result = CliRunner().invoke(main, _args(stores, old, tmp_path, "--mode", "gzsl"))
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "metrics.json").read_text())
    used = document["per_fold"]["fold0"]["calibration"]["alone"]
    assert used["gamma"] == gamma and "fusioner-evaluate" in used["source"]
    assert "binary" not in document and "gzsl" in document["protocol"]
    assert "generalized protocol" in tables(document) and "binary mIoU" not in tables(document)
    cache = tmp_path / "cache"
    shutil.copytree(stores.cache_dir, cache)
    shutil.rmtree(cache / stores.visual_paths["train"].relative_to(stores.cache_dir))
    out = tmp_path / "again"
    message = invoke_error(main, [*_args(stores, old, out, "--mode", "gzsl"), "--cache-dir",
                                  str(cache)], "no calibration in the checkpoint")
    assert "train store" in message and not (out / "metrics.json").exists()


def test_a_name_shuffled_text_store_is_labelled_a_control(setup, tmp_path: Path) -> None:
    stores, checkpoint = setup
    cache = tmp_path / "cache"
    shutil.copytree(stores.cache_dir, cache)
    text_path = cache / stores.text_path.relative_to(stores.cache_dir)  # type: ignore[union-attr]
    text = read_text_store(text_path)
    shutil.rmtree(text_path)
    order = np.roll(np.arange(len(text.class_names)), 1)  # every row another name's
    write_text_store(text_path, text.class_names, text.embeddings.numpy()[order],
                     {**text.attrs, "control": "name-shuffled"})
    result = CliRunner().invoke(main, [*_args(stores, checkpoint, tmp_path, "--mode",
                                              "binary,gzsl", "--form", "joint"),
                                       "--cache-dir", str(cache)])
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "metrics.json").read_text())
    assert document["control"]["kind"] == "name-shuffled" and list(document["gzsl"]) == ["joint"]
    assert "at evaluation" in document["control"]["note"]  # trained on the real names
    assert all(line.startswith("CONTROL (name-shuffled)")
               for line in tables(document).splitlines() if "resolution:" in line)
    assert "CONTROL (name-shuffled)" in result.stdout.splitlines()[0]


def test_bad_mode_is_one_line_and_writes_nothing(setup, tmp_path: Path) -> None:
    stores, checkpoint = setup
    invoke_error(main, _args(stores, checkpoint, tmp_path, "--mode", "binary,gzls"), "--mode")
    assert not (tmp_path / "metrics.json").exists()


def test_a_binary_run_adds_the_absent_name_figures_and_no_curve(setup, tmp_path: Path) -> None:
    stores, checkpoint = setup
    result = CliRunner().invoke(main, _args(stores, checkpoint, tmp_path, "--mode", "binary"))
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "metrics.json").read_text())
    assert "gzsl" not in document and "calibration" not in document["per_fold"]["fold0"]
    labels = CachedFeatureDataset(stores.visual_paths["val"]).labels()
    absent = sum(not (label == c).any() for label in labels for c in UNSEEN)
    assert document["per_fold"]["fold0"]["episodes"]["binary_absent"] == absent
    lines = (tmp_path / "plots" / "gzsl_curve.csv").read_text().splitlines()
    assert lines == ["fold,form,method,gamma,seen_miou,unseen_miou,hiou"]  # header only
    printed = tables(document)
    assert "ABSENT from the image" in printed and "generalized protocol" not in printed
