"""Cross-validation end to end on tiny stores, through the real CLIs: 2 image splits x 2 class
folds fitted with the real and the name-shuffled text, one pooled evaluation with intervals and
the control beside the model; pooling = merging the splits' accumulators; refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pipeline.data.image_splits import ImageSplit
from pipeline.encoders.controls import ShuffledTextEncoder, name_derangement
from pipeline.encoders.registry import EncoderSpec
from pipeline.encoders.text import TextEncoder
from pipeline.evaluation import run_folds
from pipeline.evaluation.crossval import open_evaluation, pool
from pipeline.evaluation.run import MODEL, NAME_SHUFFLED
from pipeline.evaluation.summary import markdown_table
from pipeline.extract import extract_text
from pipeline.metrics import iou_summary
from pipeline.store import CachedFeatureDataset, read_text_store, text_store_path
from pipeline.train.folds import FoldPlan, thread_env
from stages.evaluate import main as evaluate_main
from stages.fit_folds import main as fit_folds_main
from tests.conftest import TinyStores, make_stores
from tests.helpers import TINY_FIT, same_weights
from tests.tally import invoke_error
from tests.test_evaluate import _fake_camvid

SHUFFLED = "shuffled:minilm_l6"


class _TableEncoder(TextEncoder):
    """A text encoder that returns the rows of a tiny text store (no model)."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__(EncoderSpec("minilm_l6", "test:minilm_l6", lambda *_: None, ()), None,
                         int(table.shape[1]))
        self.table = table

    def encode_classes(self, class_names: list[str], templates: tuple[str, ...] = ()
                       ) -> torch.Tensor:
        return self.table[: len(class_names)]


def _fit_options(stores: TinyStores, text: str) -> list[str]:
    return ["--visual", stores.visual, "--text", text, "--dataset", stores.dataset,
            "--cache-dir", str(stores.cache_dir), "--train-split", "all", "--val-split", "all",
            *TINY_FIT[2:], "--epochs", "1"]


@pytest.fixture(scope="module")
def cv(tmp_path_factory: pytest.TempPathFactory) -> tuple[TinyStores, Path]:
    """8 images in an ``all`` store, a name-shuffled text store written by the real control
    encoder, 2 image splits x folds 0, 1 fitted with the real text, x fold 0 with the
    shuffled text."""
    base = tmp_path_factory.mktemp("cv")
    stores = make_stores(base, num_images={"all": 8}, splits=("all",))
    text = read_text_store(stores.text_path)
    spec = EncoderSpec(SHUFFLED, "test:minilm_l6", lambda *_: None, ())
    extract_text(list(stores.class_names), ShuffledTextEncoder(spec, _TableEncoder(
        text.embeddings)), text_store_path(stores.cache_dir, SHUFFLED, stores.dataset),
        stores.dataset)
    for name, encoder, folds in (("names", stores.text, "0,1"), ("shuffled", SHUFFLED, "0")):
        done = CliRunner().invoke(fit_folds_main, ["--folds", folds, "--image-splits", "2",
                                                   "--jobs", "2", "--out", str(base / name),
                                                   *_fit_options(stores, encoder)])
        assert done.exit_code == 0, done.output
        assert "[split 0 fold 0]" in done.output and "[split 1 fold 0]" in done.output
    return stores, base


def test_each_run_holds_out_its_image_split(cv) -> None:
    stores, base = cv
    ids = CachedFeatureDataset(stores.visual_paths["all"]).image_ids()
    for split in (0, 1):
        for fold in (0, 1):
            meta = torch.load(base / "names" / f"split{split}" / f"fold{fold}" / "checkpoint.pt",
                              weights_only=True)["meta"]
            record = meta["image_split"]
            expected = ImageSplit.of(ids, split, 2)
            assert (record["split"], record["splits"], record["store_split"]) == (split, 2, "all")
            assert record["val_ids"] == list(expected.val_ids) and record["images"] == 8
            assert meta["train"]["image_split"] == split and meta["fold"] == fold
    alone = base / "alone"
    subprocess.run([sys.executable, "-m", "stages.fit", "--fold", "1", "--image-split", "1",
                    "--image-splits", "2", "--out", str(alone), *_fit_options(stores, stores.text)],
                   check=True, capture_output=True,
                   env=thread_env(FoldPlan.for_machine(4, jobs=2).threads))
    assert same_weights(base / "names" / "split1" / "fold1", alone)
    assert not same_weights(base / "names" / "split0" / "fold1", alone)


def test_the_shuffled_store_and_its_checkpoints_say_they_are_a_control(cv) -> None:
    stores, base = cv
    shuffled = read_text_store(text_store_path(stores.cache_dir, SHUFFLED, stores.dataset))
    plain = read_text_store(stores.text_path)
    perm = name_derangement(list(stores.class_names))
    assert shuffled.attrs["control"] == "name-shuffled" and shuffled.attrs["control_seed"] == 0
    assert shuffled.attrs["control_source"] == "minilm_l6"
    assert shuffled.attrs["control_permutation"] == perm
    assert torch.equal(shuffled.embeddings, plain.embeddings[perm])
    assert all(p != i for i, p in enumerate(perm))  # CamVid has no background: every name moves
    meta = torch.load(base / "shuffled" / "split1" / "fold0" / "checkpoint.pt",
                      weights_only=True)["meta"]
    assert meta["text"]["encoder"] == SHUFFLED and meta["text"]["control"] == "name-shuffled"
    assert meta["text"]["control_permutation"] == perm


def _evaluate(stores: TinyStores, out: Path, *args: str) -> list[str]:
    return [*args, "--cache-dir", str(stores.cache_dir), "--split", "all", "--mode", "binary",
            "--threshold", "adaptive", "--resolution", "cached", "--num-overlays", "0",
            "--device", "cpu", "--batch-size", "4", "--no-progress", "--bootstrap", "300",
            "--out-metrics", str(out / "metrics.json"), "--out-plots", str(out / "plots")]


def _fold0(folder: Path) -> list[str]:
    return [arg for s in (0, 1) for arg in ("--checkpoint", str(folder / f"split{s}" / "fold0"))]


def test_pooled_evaluation_with_intervals_and_the_control(cv, tmp_path: Path) -> None:
    stores, base = cv
    args = _evaluate(stores, tmp_path, *_fold0(base / "names"),
                     "--control-checkpoint", str(base / "shuffled"))
    done = CliRunner().invoke(evaluate_main, args)
    assert done.exit_code == 0, done.output
    assert f"[{NAME_SHUFFLED}, a control]" in done.stdout
    assert "per-image records: 0.0" in done.stderr  # KiBs for 8 images
    document = json.loads((tmp_path / "metrics.json").read_text())
    assert document["folds"] == [0] and document["bootstrap"]["images"] == 8
    assert "control" not in document and NAME_SHUFFLED in document["controls"]
    for fold in ("fold0",):
        record = document["per_fold"][fold]
        assert record["images"] == 8 and record["image_splits"] == 2
        assert len(record["checkpoints"]) == 2
        low, high = record["ci95"]["binary"]["miou"]
        assert low <= record["binary"]["miou"] <= high
        assert set(record["baselines"]) == {"all_foreground", "random_text", NAME_SHUFFLED}
        for name in ("presence_auroc", "absent_painted_share"):  # the pooled absent names too
            low, high = record["ci95"]["binary"][name]
            assert low <= record["binary"][name] <= high
    ratios = document["ratios"]["binary"]
    assert set(ratios) == {"adaptive", "fixed_threshold_0.5"}
    shuffled = ratios["adaptive"][NAME_SHUFFLED]
    assert shuffled["ratio"] == pytest.approx(document["binary"]["miou"] / document[
        "baselines"][NAME_SHUFFLED]["binary"]["miou"], abs=1e-4)
    assert shuffled["ci95"][0] <= shuffled["ratio"] <= shuffled["ci95"][1]
    table = markdown_table(document)
    assert "names shuffled adaptive" in table and "names shuffled" in table.splitlines()[-1]
    again = tmp_path / "again"
    CliRunner().invoke(evaluate_main, _evaluate(stores, again, *args[:6]))
    assert (again / "metrics.json").read_text() == (tmp_path / "metrics.json").read_text()


def test_pooling_merges_the_image_splits_accumulators(cv) -> None:
    stores, base = cv
    folds = open_evaluation([base / "names"], [], stores.cache_dir, "all", "cpu")
    assert [(f.split.fold, len(f.features)) for f in folds] == [(0, 4), (1, 4)] * 2
    unpooled = run_folds(folds, modes=("binary",), threshold=0.5, seen_reference=False,
                         progress=False)
    pooled = pool(unpooled)
    assert [r.inputs.split.fold for r in pooled] == [0, 1]
    for result in pooled:
        parts = [r for r in unpooled if r.inputs.split.fold == result.inputs.split.fold]
        acc = result.accumulators[MODEL, "binary"]
        total = sum(p.accumulators[MODEL, "binary"].counts() for p in parts)
        assert np.array_equal(acc.counts(), total)
        assert result.scores[MODEL, "binary"].miou == pytest.approx(
            float(iou_summary(total).miou), nan_ok=True)
        assert result.episodes["binary"] == sum(p.episodes["binary"] for p in parts)
        assert sorted(result.inputs.features.indices) == list(range(8))


def test_a_control_checkpoint_is_labelled_as_one(cv, tmp_path: Path) -> None:
    """Scored at the dataset's own mask size with overlays: the pooled splits' images."""
    stores, base = cv
    data = _fake_camvid(tmp_path / "camvid", stores, "all")
    done = CliRunner().invoke(evaluate_main, [
        *_evaluate(stores, tmp_path, "--checkpoint", str(base / "shuffled")), "--data-root",
        str(data), "--resolution", "original", "--num-overlays", "2"])
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("CONTROL (name-shuffled)")
    document = json.loads((tmp_path / "metrics.json").read_text())
    assert document["control"]["kind"] == "name-shuffled" and document["text"] == SHUFFLED
    assert document["resolution"] == "original" and document["per_fold"]["fold0"]["images"] == 8
    overlays = sorted((tmp_path / "plots" / "overlays").glob("*.png"))
    ids = set(CachedFeatureDataset(stores.visual_paths["all"]).image_ids())
    assert 1 <= len(overlays) <= 2 and all(p.stem in ids for p in overlays)
    assert markdown_table(document).startswith("CONTROL (name-shuffled): a control, not a result")


def test_incomplete_or_mismatched_pools_are_refused(cv, tmp_path: Path) -> None:
    stores, base = cv
    names, shuffled = base / "names", base / "shuffled"

    def refused(*args: str) -> str:
        return invoke_error(evaluate_main, _evaluate(stores, tmp_path, *args))

    split0 = [str(names / "split0" / f"fold{f}" / "checkpoint.pt") for f in (0, 1)]
    ids = CachedFeatureDataset(stores.visual_paths["all"]).image_ids()
    thirds = []  # split0's fold 0 re-labelled as splits 0 and 1 of 3: split 2 is missing
    for k in (0, 1):
        payload = torch.load(split0[0], weights_only=True)
        payload["meta"]["image_split"] = ImageSplit.of(ids, k, 3).record("all")
        thirds += ["--checkpoint", str(tmp_path / f"third{k}.pt")]
        torch.save(payload, thirds[-1])
    missing = refused(*thirds)
    assert "split(s) [2] of 3 missing: 6 of 8 images" in missing and "fold 0" in missing
    assert "given twice" in refused("--checkpoint", str(names), "--checkpoint", split0[0])
    assert "same images" in refused("--checkpoint", split0[0], "--checkpoint",
                                    str(names / "split1" / "fold1" / "checkpoint.pt"))
    assert "not a name-shuffled control" in refused("--checkpoint", str(names),
                                                    "--control-checkpoint", str(names))
    assert "no --control-checkpoint" in refused(*_fold0(names), "--control-checkpoint",
                                                str(shuffled / "split0"))
    assert "no --checkpoint" in refused("--checkpoint", str(names / "split0" / "fold0"),
                                        "--control-checkpoint", str(shuffled))
    assert "no checkpoint.pt" in refused("--checkpoint", str(tmp_path))
    assert not (tmp_path / "metrics.json").exists()
