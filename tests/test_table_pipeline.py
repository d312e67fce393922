"""A precomputed text table end to end on a tiny coco128: extract, fit, evaluate, segment with
the real shared COCO table; then the table file is replaced and every stage refuses in one line,
writing nothing. CamVid's names are not in the tables: its extraction fails in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.store import read_text_store, text_store_path
from pipeline.vocabularies import TABLES_ENV, tables_root
from stages.evaluate import main as evaluate
from stages.extract import main as extract
from stages.fit import main as fit
from stages.segment import main as segment
from tests.helpers import COCO128, TINY_FIT, make_mini_coco128
from tests.tally import expect_one_line_error, invoke, nothing_lost

TABLE = "clip_vitb32_table"


@pytest.fixture()
def tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A writable copy of the shared tables, in use through ``$FUSIONER_TEXT_TABLES``."""
    folder = tmp_path / "tables"
    folder.mkdir()
    for path in tables_root().glob("*.*"):
        shutil.copyfile(path, folder / path.name)
    monkeypatch.setenv(TABLES_ENV, str(folder))
    return folder


def _ok(command, args: list) -> None:
    code, stderr = invoke(command, args)
    assert code == 0, stderr[-3000:]


@pytest.mark.slow
def test_table_text_end_to_end_and_a_changed_table_is_refused(tmp_path: Path,
                                                               tables: Path) -> None:
    data = make_mini_coco128(tmp_path / "coco128")
    cache, run = tmp_path / "cache", tmp_path / "run"
    # --random-init randomises the visual encoder; a table has no weights and is read as it is
    _ok(extract, ["--backbone", "dino_vits16", "--text-encoder", "clip_table", "--random-init",
                  "--image-size", "64x80", "--dataset", "coco128", "--data-root", data,
                  "--split", "train", "--split", "val", "--cache-dir", cache, "--device", "cpu",
                  "--batch-size", "4", "--no-progress"])
    store = read_text_store(text_store_path(cache, TABLE, "coco128"))
    assert store.class_names[0] == "background" and store.attrs["unembedded"] == ["background"]
    assert float(store.embeddings[0].abs().sum()) == 0.0  # never queried: a zero row
    assert store.attrs["random_init"] is False and store.attrs["feature_dim"] == 512
    assert {match[0] for match in store.attrs["table_matches"][1:]} == {"coco"}
    assert store.attrs["table_prompt"] == "a {name}"

    fit_args = ["--visual", "dino_vits16", "--text", "clip_table", "--dataset", "coco128",
                "--fold", "0", "--cache-dir", cache, "--device", "cpu", *TINY_FIT]
    _ok(fit, [*fit_args, "--out", run])
    eval_args = ["--checkpoint", run / "checkpoint.pt", "--cache-dir", cache, "--split", "val",
                 "--data-root", data, "--device", "cpu", "--no-progress", "--mode", "binary",
                 "--num-overlays", "0", "--out-plots", tmp_path / "plots"]
    _ok(evaluate, [*eval_args, "--out-metrics", tmp_path / "metrics.json"])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["dataset"] == "coco128"
    image = sorted((COCO128 / "images" / "train2017").glob("*.jpg"))[0]
    seg_args = [image, "--classes", "person,Teddy_Bear,aerosol can", "--checkpoint",
                run / "checkpoint.pt", "--random-init", "--device", "cpu"]
    _ok(segment, [*seg_args, "--out", tmp_path / "segments"])
    assert (tmp_path / "segments" / f"{image.stem}_label.png").is_file()

    # a fresh process would load the checkpoint again; in this one the API caches the first
    fresh = shutil.copyfile(run / "checkpoint.pt", tmp_path / "copy.pt")
    seg_args[seg_args.index(run / "checkpoint.pt")] = fresh
    shifted = np.load(tables / "coco.npy")
    np.save(tables / "coco.npy", np.roll(shifted, 1, axis=0))  # same shape, other rows
    with nothing_lost(cache, run):
        for command, args, out in ((fit, [*fit_args, "--out", tmp_path / "run2"], "run2"),
                                   (evaluate, [*eval_args, "--out-metrics",
                                               tmp_path / "m2.json"], "m2.json"),
                                   (segment, [*seg_args, "--out", tmp_path / "seg2"], "seg2")):
            line = expect_one_line_error(*invoke(command, args),
                                         "its text table changed since extraction",
                                         str(tables / "coco.npy"))
            assert "coco.txt" not in line  # only what changed is named
            assert not (tmp_path / out).exists()
    _ok(extract, ["--text-encoder", TABLE, "--dataset", "coco128", "--data-root", data,
                  "--split", "train", "--cache-dir", cache])
    again = read_text_store(text_store_path(cache, TABLE, "coco128"))
    assert again.attrs["table_files"]["coco.npy"] != store.attrs["table_files"]["coco.npy"]
    assert not np.allclose(again.embeddings[1:].numpy(), store.embeddings[1:].numpy())


def test_camvid_names_are_not_in_the_tables_one_line_nothing_written(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    code, stderr = invoke(extract, ["--text-encoder", "clip_table", "--dataset", "camvid",
                                    "--split", "train", "--cache-dir", cache])
    line = expect_one_line_error(code, stderr, "7 of 11 class names have no row",
                                 "'sidewalk' is not in", "closest: bicycle")
    assert line.startswith("error: ")
    assert not cache.exists()
