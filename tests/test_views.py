"""Augmented views in the cache: seeded, label-true, one recipe per store, resumable, and drawn
one per image per epoch by fit without reading more shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from PIL import Image

from pipeline.data import create_dataset
from pipeline.data.transforms import image_to_tensor, resize_label
from pipeline.data.views import ViewRecipe, crop_box, make_view, view_rng
from pipeline.encoders import create_visual_encoder
from pipeline.errors import StoreError
from pipeline.extract import extract_visual
from pipeline.model import load_fusion_checkpoint
from pipeline.store import CachedFeatureDataset
from pipeline.train import EpisodeDataset, trainer
from pipeline.train.views import ViewSampler, drawn_view
from stages.extract import main as extract_main
from stages.fit import main as fit_main
from tests.helpers import TINY_FIT, make_mini_camvid
from tests.tally import invoke_error
from tests.test_extract import SMALL, _Interrupting

ARRAYS = ("patch_tokens", "cls_token", "labels", "image_ids",
          "view_patch_tokens", "view_cls_token", "view_labels")
SIZE = (64, 80)
PALETTE = np.array([[230, 25, 25], [25, 230, 25], [25, 25, 230], [230, 230, 25]], np.uint8)


@pytest.fixture()
def camvid(tmp_path: Path) -> Path:
    return make_mini_camvid(tmp_path / "camvid", per_split=5)


@pytest.fixture(scope="module")
def encoder():
    return create_visual_encoder("dino_vits16", random_init=True, image_size=SIZE)


def _extract(camvid: Path, encoder, path: Path, dataset=None, **views: object) -> dict:
    dataset = dataset or create_dataset("camvid", "train", camvid)
    recipe = ViewRecipe(**views) if views else None  # type: ignore[arg-type]
    return extract_visual(dataset, encoder, path, batch_size=2, shard_images=2, views=recipe)


def _arrays(path: Path) -> dict[str, np.ndarray]:
    group = zarr.open_group(str(path), mode="r")
    return {name: group[name][:] for name in ARRAYS if name in group}


def _colour_image(seed: int) -> tuple[Image.Image, np.ndarray]:
    """A 120x160 image of large random blocks; its colour encodes the class, black = ignore."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, len(PALETTE) + 1, size=(6, 8))
    label = np.kron(blocks, np.ones((20, 20), int)).astype(np.uint8)
    label[label == len(PALETTE)] = 255
    colours = np.zeros((*label.shape, 3), np.uint8)
    known = label != 255
    colours[known] = PALETTE[label[known]]
    return Image.fromarray(colours), label


def _decoded(pixels) -> np.ndarray:
    """Class of each pixel from its colour (nearest palette colour; dark = 255)."""
    rgb = pixels.permute(1, 2, 0).numpy() * 255
    distance = ((rgb[:, :, None] - PALETTE[None, None].astype(float)) ** 2).sum(-1)
    classes = distance.argmin(-1).astype(np.uint8)
    classes[rgb.max(-1) < 90] = 255
    return classes


def test_full_crop_without_flip_is_the_plain_image() -> None:
    image, label = _colour_image(0)
    plain = ViewRecipe(1, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=0.0)
    pixels, target = make_view(image, label, SIZE, plain, index=3, view=1)
    assert np.array_equal(pixels.numpy(), image_to_tensor(image, SIZE).numpy())
    assert np.array_equal(target, resize_label(label, SIZE))


def test_flip_mirrors_the_same_crop_and_jitter_leaves_labels_alone() -> None:
    image, label = _colour_image(1)
    kept, flipped, jittered = (ViewRecipe(1, seed=5, flip=p, jitter=j)
                               for p, j in ((0.0, 0.0), (1.0, 0.0), (0.0, 0.4)))
    a_pixels, a_label = make_view(image, label, SIZE, kept, 7, 1)
    b_pixels, b_label = make_view(image, label, SIZE, flipped, 7, 1)
    assert np.array_equal(b_pixels.numpy(), a_pixels.numpy()[:, :, ::-1])
    assert np.array_equal(b_label, a_label[:, ::-1])
    c_pixels, c_label = make_view(image, label, SIZE, jittered, 7, 1)
    assert np.array_equal(c_label, a_label) and not np.allclose(c_pixels, a_pixels, atol=0.02)
    assert 0 <= float(c_pixels.min()) and float(c_pixels.max()) <= 1


@pytest.mark.parametrize("seed", range(6))
def test_label_map_is_transformed_like_the_image(seed: int) -> None:
    image, label = _colour_image(seed)
    recipe = ViewRecipe(3, seed=seed, scale=(0.3, 1.0))
    crops = set()
    for view in (1, 2, 3):
        pixels, target = make_view(image, label, SIZE, recipe, seed, view)
        crops.add(target.tobytes())
        assert target.shape == SIZE and set(np.unique(target)) <= {0, 1, 2, 3, 255}
        assert set(np.unique(target)) <= set(np.unique(label))  # a crop never invents classes
        # pixels away from block borders: the colour says the class the label says (or ignore)
        padded = np.pad(target, 1, mode="edge")
        interior = np.all([padded[1 + dy:1 + dy + SIZE[0], 1 + dx:1 + dx + SIZE[1]] == target
                           for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)
        agree = _decoded(pixels)[interior] == target[interior]
        assert interior.mean() > 0.5 and agree.mean() > 0.99, (view, agree.mean())
    assert len(crops) == 3  # three different views


def test_views_are_a_pure_function_of_seed_image_and_view() -> None:
    image, label = _colour_image(2)
    recipe = ViewRecipe(2, seed=11)
    first = make_view(image, label, SIZE, recipe, 4, 2)
    again = make_view(image, label, SIZE, recipe, 4, 2)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    for other in (make_view(image, label, SIZE, recipe, 4, 1),
                  make_view(image, label, SIZE, recipe, 5, 2),
                  make_view(image, label, SIZE, ViewRecipe(2, seed=12), 4, 2)):
        assert not np.array_equal(first[0], other[0])


def test_crops_stay_inside_the_image_at_the_asked_scale() -> None:
    for index in range(200):
        rng = view_rng(0, index, 1)
        top, left, h, w = crop_box(rng, 160, 120, (0.5, 1.0), (3 / 4, 4 / 3))
        assert 0 <= top and top + h <= 120 and 0 <= left and left + w <= 160
        assert 0.45 <= h * w / (160 * 120) <= 1.0


def test_extract_views_layout_only_on_the_training_split(camvid: Path, encoder,
                                                         tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    args = ["--backbone", "dino_vits16", "--random-init", "--data-root", str(camvid),
            "--cache-dir", str(cache), "--views", "2", "--views-seed", "3", *SMALL,
            "--text-encoder", "minilm_l6"]
    result = CliRunner().invoke(extract_main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    train = zarr.open_group(str(cache / "visual" / "dino_vits16" / "camvid-train.zarr"), mode="r")
    assert train["view_patch_tokens"].shape == (2, 5, 4, 5, 384)
    assert train["view_patch_tokens"].chunks == (1, 2, 4, 5, 384)  # one view of one shard
    assert train["view_labels"].shape == (2, 5, *SIZE)
    recipe = train.attrs["views"]
    assert recipe["count"] == 2 and recipe["seed"] == 3
    assert [op["op"] for op in recipe["ops"]] == ["random_resized_crop", "horizontal_flip"]
    assert recipe["ops"][0]["scale"] == [0.5, 1.0]
    val = zarr.open_group(str(cache / "visual" / "dino_vits16" / "camvid-val.zarr"), mode="r")
    assert "views" not in val.attrs and "view_patch_tokens" not in val
    # view 0 is the store --views 0 writes, byte for byte
    plain = tmp_path / "plain.zarr"
    _extract(camvid, encoder, plain)
    train_path = cache / "visual" / "dino_vits16" / "camvid-train.zarr"
    with_views, without = _arrays(train_path), _arrays(plain)
    for name in ("patch_tokens", "cls_token", "labels", "image_ids"):
        assert np.array_equal(with_views[name], without[name]), name
    assert not np.array_equal(with_views["view_labels"][0], without["labels"])
    items = CachedFeatureDataset(train_path)
    assert items.views == 2 and items[(1, 2)]["view"] == 2
    assert np.array_equal(items[(1, 2)]["label"].numpy(), with_views["view_labels"][1, 1])
    view_file = train_path / "view_patch_tokens" / "c" / "1" / "2" / "0" / "0" / "0"
    before = view_file.stat().st_mtime_ns
    again = CliRunner().invoke(extract_main, args, catch_exceptions=False)
    assert again.exit_code == 0 and view_file.stat().st_mtime_ns == before  # complete: no-op
    run = tmp_path / "run"
    fitted = CliRunner().invoke(fit_main, ["--visual", "dino_vits16", "--text", "minilm_l6",
                                           "--cache-dir", str(cache), "--out", str(run),
                                           *TINY_FIT, "--epochs", "2"])
    assert fitted.exit_code == 0, fitted.output
    meta = load_fusion_checkpoint(run / "checkpoint.pt")[1]
    assert meta["views"] == recipe and meta["train"]["views"] is None  # all the store holds


def test_same_recipe_same_bytes_other_recipe_refused(camvid: Path, encoder,
                                                     tmp_path: Path) -> None:
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    _extract(camvid, encoder, a, count=2, seed=1)
    _extract(camvid, encoder, b, count=2, seed=1)
    first, second = _arrays(a), _arrays(b)
    assert first.keys() == second.keys() and len(first) == len(ARRAYS)
    for name in ARRAYS:
        assert np.array_equal(first[name], second[name]), name
    assert zarr.open_group(str(a)).attrs.asdict() == zarr.open_group(str(b)).attrs.asdict()
    for other in ({"count": 2, "seed": 2}, {"count": 3, "seed": 1},
                  {"count": 2, "seed": 1, "jitter": 0.2}, {}):
        with pytest.raises(StoreError, match="views"):
            _extract(camvid, encoder, a, **other)
    _extract(camvid, encoder, tmp_path / "p.zarr")
    with pytest.raises(StoreError, match="views"):  # a plain store does not take views either
        _extract(camvid, encoder, tmp_path / "p.zarr", count=1)
    args = ["--backbone", "dino_vits16", "--random-init", "--data-root", str(camvid), "--split",
            "train", "--cache-dir", str(tmp_path / "cli"), "--views", "1", *SMALL]
    assert CliRunner().invoke(extract_main, args).exit_code == 0
    error = invoke_error(extract_main, [*args, "--views-seed", "9"])
    assert "other settings (views)" in error and "--overwrite" in error


def test_resume_mid_way_equals_uninterrupted(camvid: Path, encoder, tmp_path: Path) -> None:
    dataset = create_dataset("camvid", "train", camvid)
    reference, resumed = tmp_path / "reference.zarr", tmp_path / "resumed.zarr"
    _extract(camvid, encoder, reference, count=2, seed=4)
    with pytest.raises(KeyboardInterrupt):
        _extract(camvid, encoder, resumed, _Interrupting(dataset, 3), count=2, seed=4)
    with pytest.raises(StoreError, match="incomplete"):
        CachedFeatureDataset(resumed)
    report = _extract(camvid, encoder, resumed, count=2, seed=4)
    assert report["encoded"] == 3  # shard 0 kept, shards 1-2 redone
    expected, found = _arrays(reference), _arrays(resumed)
    for name in ARRAYS:
        assert np.array_equal(expected[name], found[name]), name


def test_a_missing_view_file_is_refused(make_stores, tmp_path: Path) -> None:
    stores = make_stores(tmp_path, views=2)
    path = stores.visual_paths["train"]
    assert CachedFeatureDataset(path).views == 2
    victim = next(f for f in sorted((path / "view_patch_tokens" / "c").rglob("*")) if f.is_file())
    victim.unlink()
    with pytest.raises(StoreError, match="view_patch_tokens files are missing"):
        CachedFeatureDataset(path)


def test_draw_rule_cycles_through_every_view() -> None:
    for block in range(5):
        for cycle in range(3):
            seen = [drawn_view(7, cycle * 3 + slot, block, 2) for slot in range(3)]
            assert sorted(seen) == [0, 1, 2]
    assert [drawn_view(7, e, 0, 2) for e in range(9)] != [drawn_view(8, e, 0, 2) for e in range(9)]

    class Items:
        def __init__(self) -> None:
            self.epoch = 0

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

        def __iter__(self):
            return iter([5, 0, 4, 1, 3, 2])

        def __len__(self) -> int:
            return 6

    sampler = ViewSampler(Items(), blocks=[0, 0, 1, 1, 2, 2], views=3, seed=0)
    sampler.set_epoch(2)
    drawn = list(sampler)
    assert sampler.sampler.epoch == 2 and [i for i, _, _ in drawn] == [5, 0, 4, 1, 3, 2]
    assert {i: v for i, v, _ in drawn} == {i: drawn_view(0, 2, i // 2, 3) for i in range(6)}
    assert {e for _, _, e in drawn} == {2}


def _fit_args(stores, out: Path, *extra: str) -> list[str]:
    return ["--visual", stores.visual, "--text", stores.text, "--cache-dir",
            str(stores.cache_dir), "--out", str(out), "--batch-size", "3", "--dim", "32",
            "--layers", "1", "--heads", "2", "--embed-dim", "16", "--decoder-channels",
            "16,8,8", "--no-progress", *extra]


def test_fit_reads_one_view_per_image_per_epoch(make_stores, tmp_path: Path,
                                                monkeypatch) -> None:
    stores = make_stores(tmp_path, num_images={"train": 12, "val": 4}, views=2)
    reads: list[tuple[int, int]] = []
    blocks: list[tuple[int, int]] = []
    episode_item, block_read = EpisodeDataset.__getitem__, CachedFeatureDataset._read

    def spy_item(self, item):
        sample = episode_item(self, item)
        if self.features.path.name == "camvid-train.zarr":
            reads.append((int(sample["index"]), int(sample["view"])))
        return sample

    def spy_block(self, index, view=0):
        if self.path.name == "camvid-train.zarr" and (index // 4, view) not in self._blocks:
            blocks.append((index // 4, view))
        return block_read(self, index, view)

    monkeypatch.setattr(EpisodeDataset, "__getitem__", spy_item)
    monkeypatch.setattr(CachedFeatureDataset, "_read", spy_block)
    # training's reads only: the calibration pass after it reads the train store once more
    result = CliRunner().invoke(fit_main, _fit_args(stores, tmp_path / "run", "--epochs", "3",
                                                    "--no-calibrate"))
    assert result.exit_code == 0, result.output
    episodes = len(reads) // 3
    assert episodes * 3 == len(reads) and episodes >= 10
    per_epoch = [reads[e * episodes:(e + 1) * episodes] for e in range(3)]
    for epoch in per_epoch:
        assert len({index for index, _ in epoch}) == episodes  # every image once
        assert len({(index // 4, view) for index, view in epoch}) == 3  # one view per shard
    views_of = {index: {v for e in per_epoch for i, v in e if i == index} for index, _ in reads}
    assert all(views == {0, 1, 2} for views in views_of.values())  # 3 epochs: every view once
    assert len(blocks) == 9  # 3 shards x 3 epochs: each shard read once per epoch, one view


def test_fit_view_options_and_resume_refuse_another_recipe(make_stores, tmp_path: Path,
                                                           monkeypatch) -> None:
    stores = make_stores(tmp_path / "a", views=2)
    out = tmp_path / "run"
    assert "cannot draw from 3" in invoke_error(fit_main, _fit_args(stores, out, "--views", "3"))
    views: list[int] = []
    original = trainer.make_loader

    def spy(*args, **kwargs):
        views.append(args[7] if len(args) > 7 else kwargs.get("views", 0))
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer, "make_loader", spy)
    runner = CliRunner()
    assert runner.invoke(fit_main, _fit_args(stores, out, "--epochs", "1", "--views", "0")
                         ).exit_code == 0
    assert views[0] == 0  # --views 0: the plain images only
    assert runner.invoke(fit_main, _fit_args(stores, out, "--epochs", "1")).exit_code == 0
    assert views[-2] == 2  # default: every view the store holds
    reseeded = make_stores(tmp_path / "b", views=2, view_seed=1)
    error = invoke_error(fit_main, _fit_args(reseeded, out, "--epochs", "1", "--resume"))
    assert "cannot resume, it was trained with other views" in error
