"""Fault injection on real stores (written by the real extractor on a tiny CamVid): every kind
of damage stops fit or evaluate with one line naming the store, the array and the shard, with
nothing written downstream; ``fusioner-store verify`` names the shard and exits 1; ``--repair``
re-extracts it and the store is byte-identical to the clean extraction again.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.train.views import drawn_view
from stages import evaluate, fit
from stages.store import main as store_main
from tests.helpers import TINY_FIT, make_mini_camvid
from tests.store_faults import (
    Damage,
    Objects,
    extract_cache,
    flip,
    swap,
    text_store,
    truncate,
    visual_store,
    zero_fill,
)
from tests.tally import TALLY, digest, expect_one_line_error, invoke, nothing_lost

FIT = ["--visual", "dino_vits16", "--text", "minilm_l6", "--seed", "0", *TINY_FIT[:1], "1",
       *TINY_FIT[2:]]
# the one epoch of FIT reads shard 0 plain and shards 1, 2 as view 1 (``drawn_view``): flipped
# bytes go where that epoch reads (placement damage is caught when the store is opened)
VIEW_SHARDS = (1, 2)


@pytest.fixture(scope="module")
def camvid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_mini_camvid(tmp_path_factory.mktemp("data") / "camvid", per_split=5)


@pytest.fixture(scope="module")
def clean(camvid: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean cache (train with a view, val, text) every test copies before damaging it."""
    assert [drawn_view(0, 0, shard, 1) for shard in (0, *VIEW_SHARDS)] == [0, 1, 1]
    cache = tmp_path_factory.mktemp("clean") / "cache"
    extract_cache(camvid, cache)
    return cache


@pytest.fixture(scope="module")
def checkpoint(clean: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fit") / "run"
    code, stderr = invoke(fit.main, [*FIT, "--cache-dir", clean, "--out", out])
    assert code == 0, stderr
    return out / "checkpoint.pt"


# case -> (split damaged, damage(store, the same split of another store), array, shard named)
CASES: dict[str, tuple[str, Damage, str, str]] = {
    **{f"flip-{name}": ("train", lambda s, _, key=key: flip(s, key), name, shard)
       for name, key, shard in [
           ("patch_tokens", "patch_tokens/c/0/0/0/0", "shard 0"),
           ("cls_token", "cls_token/c/0/0", "shard 0"),
           ("labels", "labels/c/1/0/0", "shard 1"),
           ("image_ids", "image_ids/c/2", "shard 2"),
           ("view_patch_tokens", "view_patch_tokens/c/0/1/0/0/0", "shard 1"),
           ("view_cls_token", "view_cls_token/c/0/2/0", "shard 2"),
           ("view_labels", "view_labels/c/0/2/0/0", "shard 2"),
           ("shard_digest", "shard_digest/c/0", "every shard")]},
    "swapped-between-shards": ("train", lambda s, _: swap(
        s, "patch_tokens/c/0/0/0/0", "patch_tokens/c/1/0/0/0"), "patch_tokens", "shard 0"),
    "from-another-store": ("train", lambda s, other: s.write(
        "cls_token/c/1/0", other.read("cls_token/c/1/0")), "cls_token", "shard 1"),
    "truncated": ("train", lambda s, _: truncate(s, "patch_tokens/c/2/0/0/0"), "patch_tokens",
                  "shard 2"),
    "deleted": ("train", lambda s, _: s.delete("cls_token/c/2/0"), "cls_token", "shard 2"),
    "zero-filled": ("train", lambda s, _: zero_fill(s, "labels/c/0/0/0"), "labels", "shard 0"),
    "text-row": ("text", lambda s, _: flip(s, "embeddings/c/0/0", at=0.3), "embeddings",
                 "shard 0"),
}


def _damage(cache: Path, case: str) -> tuple[str, str, str]:
    """Damage a copy of the clean cache as ``case`` says; (store, array, shard named)."""
    split, damage, array, shard = CASES[case]
    store = text_store(cache) if split == "text" else visual_store(cache, split)
    other = visual_store(cache, "val" if split == "train" else "train")
    damage(Objects(store), Objects(other))
    return store, array, shard


def _verify(*args: object) -> tuple[int, str, str]:
    from click.testing import CliRunner

    result = CliRunner().invoke(store_main, ["verify", *map(str, args)])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("case", sorted(CASES))
def test_damage_stops_fit_and_verify_repair_restores_the_store(
        clean: Path, camvid: Path, tmp_path: Path, case: str) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(clean, cache)
    store, array, shard = _damage(cache, case)
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"an earlier run's checkpoint")
    with nothing_lost(out):  # no new checkpoint, log or metrics either
        code, stderr = invoke(fit.main, [*FIT, "--cache-dir", cache, "--out", out])
        expect_one_line_error(code, stderr, store, f"array {array}, {shard}",
                              "fusioner-store verify --repair")

    code, table, stderr = _verify(cache)
    expect_one_line_error(code, stderr, store)
    row = next(line for line in table.splitlines() if line.startswith(store))
    assert row.split()[1:3] == [array, "all" if shard == "every shard" else shard.split()[1]]

    code, report, stderr = _verify("--repair", "--data-root", camvid, "--device", "cpu",
                                   "--no-progress", cache)
    assert code == 0, stderr
    assert report.strip().endswith("every chunk and shard checks out"), report
    assert digest(Path(store)) == digest(clean / Path(store).relative_to(cache)), \
        "the repaired store differs from the clean extraction"
    TALLY["damaged stores repaired"] += 1


def test_flipped_bytes_stop_evaluate_before_any_metric(clean: Path, checkpoint: Path,
                                                       tmp_path: Path) -> None:
    """The issue's run: 64 bytes flipped in the eval store's patch tokens (length kept)."""
    cache = tmp_path / "cache"
    shutil.copytree(clean, cache)
    store = visual_store(cache, "val")
    flip(Objects(store), "patch_tokens/c/0/0/0/0", at=0.3, count=64)
    metrics, plots = tmp_path / "metrics.json", tmp_path / "plots"
    code, stderr = invoke(evaluate.main, [
        "--checkpoint", checkpoint, "--cache-dir", cache, "--out-metrics", metrics,
        "--out-plots", plots, "--device", "cpu", "--no-progress"])
    expect_one_line_error(code, stderr, store, "array patch_tokens, shard 0", "checksum")
    assert not metrics.exists() and not plots.exists()


def test_damage_read_in_a_dataloader_worker_is_one_line(clean: Path, tmp_path: Path) -> None:
    """A spawned DataLoader worker meets the damage: still the store's own one line."""
    cache = tmp_path / "cache"
    shutil.copytree(clean, cache)
    store = visual_store(cache, "train")
    flip(Objects(store), "patch_tokens/c/0/0/0/0")
    out = tmp_path / "run"
    code, stderr = invoke(fit.main, [*FIT, "--cache-dir", cache, "--out", out,
                                     "--num-workers", "1"])
    line = expect_one_line_error(code, stderr, store, "array patch_tokens, shard 0")
    assert "DataLoader worker" not in line and "Traceback" not in line
    assert not (out / "checkpoint.pt").exists()
