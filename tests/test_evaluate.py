"""fusioner-evaluate: outputs, oracle = 1, all-foreground by hand, folds, provenance, no encoder."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import Tensor, nn

from pipeline.evaluation import (
    PAPER_RULE,
    default_methods,
    evaluate_fold,
    open_fold,
    random_text_table,
)
from pipeline.evaluation.summary import main as summary_main
from pipeline.evaluation.summary import markdown_table
from pipeline.store import CachedFeatureDataset
from pipeline.thresholds import ADAPTIVE
from pipeline.train import FitConfig, fit
from stages.evaluate import main
from tests.conftest import CAMVID_CLASSES, TinyStores, make_stores
from tests.helpers import run_without_encoders
from tests.tally import invoke_error

ROOT = Path(__file__).resolve().parents[1]
UNSEEN = (2, 9, 10)  # CamVid fold 0: pole, pedestrian, bicyclist


def _fake_camvid(root: Path, stores: TinyStores, split: str = "val") -> Path:
    """A CamVid folder whose image ids are the tiny store's (images at twice the label size)."""
    (root / split / "images").mkdir(parents=True)
    (root / split / "labels").mkdir(parents=True)
    (root / "classes.txt").write_text("\n".join(CAMVID_CLASSES) + "\n")
    features = CachedFeatureDataset(stores.visual_paths[split])
    h, w = stores.label_size
    rng = np.random.default_rng(0)
    for i, image_id in enumerate(features.image_ids()):
        pixels = rng.integers(0, 255, (2 * h, 2 * w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / split / "images" / f"{image_id}.jpg")
        label = np.kron(features[i]["label"].numpy(), np.ones((2, 2))).astype(np.uint8)
        Image.fromarray(label).save(root / split / "labels" / f"{image_id}.png")
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[TinyStores, Path, Path]:
    """Tiny stores, a 1-epoch checkpoint trained on them, and a matching CamVid folder."""
    base = tmp_path_factory.mktemp("evaluate")
    stores = make_stores(base, num_images={"train": 8, "val": 10})
    fit(FitConfig(visual=stores.visual, text=stores.text, cache_dir=stores.cache_dir,
                  out=base / "run", epochs=1, batch_size=4, dim=32, layers=1, heads=2,
                  embed_dim=16, decoder_channels=(16, 8, 8), val_split="", progress=False))
    return stores, base / "run" / "checkpoint.pt", _fake_camvid(base / "camvid", stores)


def _args(stores: TinyStores, checkpoint: Path, out: Path, *extra: str) -> list[str]:
    return ["--checkpoint", str(checkpoint), "--cache-dir", str(stores.cache_dir), "--split",
            "val", "--out-metrics", str(out / "metrics.json"), "--out-plots", str(out / "plots"),
            "--device", "cpu", "--batch-size", "4", "--no-progress", "--resolution", "cached",
            *extra]  # a later --resolution in ``extra`` wins


def _leaves(value: object, skip: tuple[str, ...] = ()) -> list[float]:
    """Every float of a metrics document, lists included, but under the ``skip`` keys."""
    if isinstance(value, dict):
        return [x for k, v in value.items() if k not in skip for x in _leaves(v, skip)]
    if isinstance(value, list):
        return [x for v in value for x in _leaves(v, skip)]
    return [value] if isinstance(value, float) else []


def test_cli_writes_metrics_table_and_overlays(setup, tmp_path: Path) -> None:
    stores, checkpoint, data = setup
    result = CliRunner().invoke(main, _args(stores, checkpoint, tmp_path, "--data-root",
                                            str(data), "--num-overlays", "3", "--resolution",
                                            "original"))
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert (metrics["dataset"], metrics["split"], metrics["folds"]) == ("camvid", "val", [0])
    assert metrics["unseen_classes"] == ["pole", "pedestrian", "bicyclist"]
    assert set(metrics["protocol"]) == {"binary", "multiclass"} and metrics["units"] == "fraction"
    assert set(metrics["binary"]) == {"miou", "fb_iou", "auroc",  # AUROC: binary episodes only
                                      "presence_auroc", "absent_painted_share"}
    assert set(metrics["multiclass"]) == {"miou", "fb_iou"}
    assert set(metrics["baselines"]) == {"all_foreground", "random_text"}
    assert set(metrics["baselines"]["all_foreground"]) == {"binary"}
    fold = metrics["per_fold"]["fold0"]
    assert list(fold["unseen_auroc"]) == ["pole", "pedestrian", "bicyclist"]
    assert fold["images"] == 10 and fold["episodes"]["multiclass"] == 10
    assert fold["binary"]["miou"] == metrics["binary"]["miou"]  # one fold: mean == the fold
    fractions = _leaves(metrics, skip=("ratios", "bootstrap"))  # IoUs and their intervals
    assert all(0.0 <= x <= 1.0 for x in fractions)
    low, high = metrics["ci95"]["binary"]["miou"]  # the image bootstrap, on by default
    assert low <= metrics["binary"]["miou"] <= high
    assert metrics["bootstrap"]["images"] == 10 and metrics["bootstrap"]["resamples"] == 2000
    assert set(metrics["ratios"]["binary"]["0.5"]) == {"all_foreground", "random_text"}
    with (tmp_path / "plots" / "per_class_iou.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    unseen = [r for r in rows if not r["method"].startswith("seen_reference")]
    assert len(unseen) == 5 * 3  # (model, random text) x (binary, multiclass) + all-fg binary
    assert {r["class"] for r in unseen} == {"pole", "pedestrian", "bicyclist"}
    assert len(rows) - len(unseen) == 2 * 8  # the model on the 8 seen classes, both protocols
    assert set(metrics["seen_reference"]) == {"binary", "multiclass"}
    assert len({r["entry"] for r in rows}) == len(rows)
    overlays = sorted((tmp_path / "plots" / "overlays").glob("*.png"))
    assert 1 <= len(overlays) <= 3 and all(p.stem.startswith("val_") for p in overlays)
    h, w = stores.label_size
    with Image.open(overlays[0]) as picture:  # 4 panels (+ legend), titles on top
        assert picture.width > 4 * w and picture.height >= h + 14
    assert "binary mIoU" in result.stdout


class Oracle(nn.Module):
    """Predicts the stored ground truth: finds the image by its tokens, the class by its text."""

    def __init__(self, features: CachedFeatureDataset, table: Tensor) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.table = table
        items = [features[i] for i in range(len(features))]
        self.labels = {item["patch_tokens"].numpy().tobytes(): item["label"] for item in items}

    def forward(self, tokens: Tensor, text: Tensor, text_mask: Tensor | None = None) -> Tensor:
        """Saturated logits (+-30) of the true masks, at the stored label size."""
        labels = torch.stack([self.labels[t.numpy().tobytes()] for t in tokens])
        ids = (text @ self.table.T).argmax(-1)  # (B, K): exact rows of the table
        return (labels[:, None] == ids[:, :, None, None]).float() * 60 - 30


def test_oracle_scores_one_and_all_foreground_matches_hand_count(setup) -> None:
    stores, checkpoint, _ = setup
    inputs = open_fold(checkpoint, stores.cache_dir, "val")
    inputs.model = Oracle(inputs.features, inputs.text_table)  # type: ignore[assignment]
    result = evaluate_fold(inputs, default_methods(inputs), batch_size=3, progress=False)
    labels = inputs.features.labels()
    present = [c for c in UNSEEN if (labels == c).any()]
    assert 0 < len(present) < len(UNSEEN)  # the tiny val split misses a class: no IoU for it
    for mode in ("binary", "multiclass"):
        score = result.scores["fusioner", mode]
        assert score.miou == 1.0 and score.fb_iou == 1.0
        assert [c for c, v in score.per_class.items() if v == 1.0] == present
        assert all(np.isnan(score.per_class[c]) for c in UNSEEN if c not in present)
    assert result.scores["fusioner", "binary"].auroc == 1.0  # ranks every pixel right
    assert math.isnan(result.scores["fusioner", "multiclass"].auroc)  # binary episodes only
    inter, union = {}, {}
    for c in present:  # each episode predicts every labelled pixel of an image showing c
        showing = [lab for lab in labels if (lab == c).any()]
        inter[c] = sum(int((lab == c).sum()) for lab in showing)
        union[c] = sum(int((lab != 255).sum()) for lab in showing)
    all_fg = result.scores["all_foreground", "binary"]
    for c in present:
        assert all_fg.per_class[c] == pytest.approx(inter[c] / union[c])
    assert all_fg.miou == pytest.approx(np.mean([inter[c] / union[c] for c in present]))
    fg = sum(inter.values()) / sum(union.values())
    assert all_fg.bg_iou == 0.0 and all_fg.fb_iou == pytest.approx(fg / 2)
    assert all_fg.auroc == 0.5  # a constant score ranks nothing
    assert result.episodes["binary"] == sum(
        len({c for c in UNSEEN if (lab == c).any()}) for lab in labels)


def test_oracle_scores_one_under_the_adaptive_rule(setup) -> None:
    """Exact 0/1 maps: the adaptive threshold keeps the class's pixels; a flat (absent) map none."""
    stores, checkpoint, _ = setup
    inputs = open_fold(checkpoint, stores.cache_dir, "val")
    inputs.model = Oracle(inputs.features, inputs.text_table)  # type: ignore[assignment]
    result = evaluate_fold(inputs, default_methods(inputs, threshold=ADAPTIVE),
                           threshold=ADAPTIVE, batch_size=3, progress=False)
    for method in ("fusioner", PAPER_RULE):
        for mode in ("binary", "multiclass"):
            assert result.scores[method, mode].miou == 1.0
            assert result.scores[method, mode].fb_iou == 1.0


def test_adaptive_rule_reports_the_paper_threshold_beside_it(setup, tmp_path: Path) -> None:
    stores, checkpoint, _ = setup
    runs = {}
    for rule in ("adaptive", "0.5"):
        out = tmp_path / rule
        result = CliRunner().invoke(main, _args(stores, checkpoint, out, "--threshold", rule,
                                                "--num-overlays", "0"))
        assert result.exit_code == 0, result.output
        runs[rule] = json.loads((out / "metrics.json").read_text())
    adaptive, fixed = runs["adaptive"], runs["0.5"]
    assert adaptive["threshold"] == "adaptive" and fixed["threshold"] == 0.5
    assert "mean + 2 std" in adaptive["protocol"]["binary"]
    assert PAPER_RULE not in fixed and PAPER_RULE not in fixed["seen_reference"]
    for mode in ("binary", "multiclass"):  # the side-by-side 0.5 scores are a 0.5 run's
        assert adaptive[PAPER_RULE][mode]["miou"] == fixed[mode]["miou"]
        assert adaptive[PAPER_RULE][mode]["fb_iou"] == fixed[mode]["fb_iou"]
        assert (adaptive["seen_reference"][PAPER_RULE][mode]["miou"]
                == fixed["seen_reference"][mode]["miou"])
        at_paper = adaptive[PAPER_RULE]["baselines"]["random_text"][mode]  # baselines at 0.5
        assert {k: at_paper[k] for k in ("miou", "fb_iou")} == {
            k: fixed["baselines"]["random_text"][mode][k] for k in ("miou", "fb_iou")}
    assert (adaptive[PAPER_RULE]["baselines"]["all_foreground"]
            == fixed["baselines"]["all_foreground"])
    assert adaptive["binary"]["auroc"] == fixed["binary"]["auroc"]  # ranking: no threshold
    bad = CliRunner().invoke(main, _args(stores, checkpoint, tmp_path, "--threshold", "1.5"))
    assert bad.exit_code != 0 and "--threshold" in bad.output


def test_random_text_table_replaces_only_unseen_rows() -> None:
    table = torch.nn.functional.normalize(torch.randn(11, 12), dim=1)
    noisy = random_text_table(table, UNSEEN, seed=3)
    assert torch.equal(noisy, random_text_table(table, UNSEEN, seed=3))
    seen = [c for c in range(11) if c not in UNSEEN]
    assert torch.equal(noisy[seen], table[seen])
    assert not torch.isclose(noisy[list(UNSEEN)], table[list(UNSEEN)]).all()
    assert torch.allclose(noisy.norm(dim=1), torch.ones(11))


def _with_meta(checkpoint: Path, target: Path, **changes: object) -> Path:
    payload = torch.load(checkpoint, weights_only=True)
    payload["meta"] = {**payload["meta"], **changes}
    torch.save(payload, target)
    return target


def test_several_folds_are_reported_with_their_mean(setup, tmp_path: Path) -> None:
    stores, checkpoint, _ = setup
    other = _with_meta(checkpoint, tmp_path / "fold1.pt", fold=1, unseen=[6, 7, 8],
                       seen=[0, 1, 2, 3, 4, 5, 9, 10])
    result = CliRunner().invoke(main, [*_args(stores, checkpoint, tmp_path, "--mode", "binary",
                                              "--no-baselines", "--num-overlays", "0"),
                                       "--checkpoint", str(other)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["folds"] == [0, 1] and set(metrics["per_fold"]) == {"fold0", "fold1"}
    assert "multiclass" not in metrics and "baselines" not in metrics
    folds = [metrics["per_fold"][f]["binary"]["miou"] for f in ("fold0", "fold1")]
    assert metrics["binary"]["miou"] == pytest.approx(np.mean(folds), abs=1e-6)
    assert metrics["per_fold"]["fold1"]["unseen_classes"] == ["sign symbol", "fence", "car"]
    twice = CliRunner().invoke(main, [*_args(stores, checkpoint, tmp_path),
                                      "--checkpoint", str(checkpoint)])
    assert twice.exit_code == 1 and "given twice" in twice.stderr


def test_summary_table_shows_each_fold_and_the_mean_beside_the_baselines(setup,
                                                                        tmp_path: Path) -> None:
    stores, checkpoint, _ = setup
    other = _with_meta(checkpoint, tmp_path / "fold1.pt", fold=1, unseen=[6, 7, 8],
                       seen=[0, 1, 2, 3, 4, 5, 9, 10])
    result = CliRunner().invoke(main, [*_args(stores, checkpoint, tmp_path, "--mode", "binary",
                                              "--threshold", "adaptive", "--num-overlays", "0"),
                                       "--checkpoint", str(other)])
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "metrics.json").read_text())
    table = markdown_table(document).splitlines()
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in table
            if line.startswith("| ") and not line.startswith("| fold")}
    assert set(rows) == {"0", "1", "mean"}
    for name, block in (("0", document["per_fold"]["fold0"]), ("mean", document)):
        cells = rows[name]
        low, high = block["ci95"][PAPER_RULE]["binary"]["miou"]
        assert cells[2] == f"{block[PAPER_RULE]['binary']['miou']:.3f} ({low:.3f}-{high:.3f})"
        all_foreground = block["baselines"]["all_foreground"]["binary"]["miou"]
        assert cells[3].split()[0] == f"{all_foreground:.3f}"
        random_at_paper = block[PAPER_RULE]["baselines"]["random_text"]["binary"]["miou"]
        assert cells[4].split()[0] == f"{random_at_paper:.3f}"
        assert cells[5].split()[0] == f"{block['binary']['miou']:.3f}"  # under the adaptive rule
    assert "names shuffled" not in "\n".join(table)  # no control scored: no column for it
    ratio = document["ratios"]["binary"][PAPER_RULE]["all_foreground"]
    assert ratio["ratio"] == pytest.approx(document[PAPER_RULE]["binary"]["miou"] / document[
        "baselines"]["all_foreground"]["binary"]["miou"], abs=1e-5)
    low, high = ratio["ci95"]
    assert f"at 0.5 {ratio['ratio']:.2f}x ({low:.2f}-{high:.2f}) all-foreground" in table[-1]
    (tmp_path / "other.json").write_text('{"units": "fraction"}')
    for bad in (tmp_path / "missing.json", tmp_path / "other.json"):
        with pytest.raises(SystemExit, match=r"^error: .*not a readable metrics file"):
            summary_main([str(bad)])


def _one_line_error(args: list[str]) -> str:
    return invoke_error(main, args)


def test_foreign_or_missing_inputs_are_one_line_errors(setup, tmp_path: Path) -> None:
    stores, checkpoint, _ = setup
    payload = torch.load(checkpoint, weights_only=True)
    visual = {**payload["meta"]["visual"], "weights_sha256": "f" * 64}
    foreign = _with_meta(checkpoint, tmp_path / "foreign.pt", visual=visual)
    assert "weights_sha256" in _one_line_error(_args(stores, foreign, tmp_path))
    text = {**payload["meta"]["text"], "feature_dim": 99}
    assert "feature_dim" in _one_line_error(
        _args(stores, _with_meta(checkpoint, tmp_path / "t.pt", text=text), tmp_path))
    assert "no such store" in _one_line_error(_args(stores, checkpoint, tmp_path, "--split", "x"))
    assert "no such checkpoint" in _one_line_error(_args(stores, tmp_path / "none.pt", tmp_path))
    assert "wrong --data-root" in _one_line_error(
        _args(stores, checkpoint, tmp_path, "--data-root", str(ROOT / "../shared/data/camvid")))
    assert not (tmp_path / "metrics.json").exists()


def test_other_encoder_store_is_refused(tmp_path: Path, setup) -> None:
    _, checkpoint, _ = setup
    other = make_stores(tmp_path, num_images=4, dim=24, splits=("val",))  # another encoder width
    assert "feature_dim" in _one_line_error(_args(other, checkpoint, tmp_path))


def test_evaluate_needs_no_encoder_library(setup, tmp_path: Path) -> None:
    stores, checkpoint, data = setup
    args = _args(stores, checkpoint, tmp_path, "--data-root", str(data), "--num-overlays", "1")
    proc = run_without_encoders("stages.evaluate", args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "metrics.json").is_file()


def _all_foreground_miou(labels: list[np.ndarray], unseen: tuple[int, ...]) -> float:
    """Binary all-foreground mIoU by hand: per class, its pixels over the labelled pixels of
    the images showing it, accumulated over the split."""
    ious = []
    for c in unseen:
        showing = [label for label in labels if (label == c).any()]
        if showing:
            ious.append(sum(int((x == c).sum()) for x in showing)
                        / sum(int((x != 255).sum()) for x in showing))
    return float(np.mean(ious))


def test_original_resolution_scores_the_datasets_own_masks(setup, tmp_path: Path) -> None:
    """--resolution original reads each image's mask from the dataset (here at twice the cached
    size, its left quarter ignored, so the two resolutions must disagree)."""
    stores, checkpoint, data = setup
    root = tmp_path / "camvid"
    shutil.copytree(data, root)
    originals = []
    for path in sorted((root / "val" / "labels").glob("*.png")):
        label = np.asarray(Image.open(path)).copy()
        label[:, : label.shape[1] // 4] = 255
        Image.fromarray(label).save(path)
        originals.append(label)
    scores = {}
    for resolution in ("original", "cached"):
        out = tmp_path / resolution
        result = CliRunner().invoke(main, _args(stores, checkpoint, out, "--data-root", str(root),
                                                "--resolution", resolution, "--mode", "binary",
                                                "--num-overlays", "0"))
        assert result.exit_code == 0, result.output
        scores[resolution] = json.loads((out / "metrics.json").read_text())
    h, w = stores.label_size
    assert scores["original"]["resolution"] == "original"
    assert scores["cached"]["resolution"] == f"{h}x{w}"
    assert "original mask resolution" in scores["original"]["protocol"]["binary"]
    by_hand = _all_foreground_miou(originals, UNSEEN)
    found = {r: s["baselines"]["all_foreground"]["binary"]["miou"] for r, s in scores.items()}
    assert found["original"] == pytest.approx(by_hand, abs=1e-6)
    assert found["cached"] != pytest.approx(by_hand, abs=1e-3)


def test_original_resolution_needs_the_dataset(setup, tmp_path: Path) -> None:
    stores, checkpoint, _ = setup
    invoke_error(main, _args(stores, checkpoint, tmp_path, "--data-root",
                             str(tmp_path / "nowhere"), "--num-overlays", "0", "--resolution",
                             "original"), "nowhere")
