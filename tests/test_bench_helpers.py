"""The benchmarks compare like with like: every container yields the training Dataset's items.

Not timed (timings live in ``bench/``); these check the helpers the comparisons rest on.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
import zarr

from bench.alone_pass import attention_flops, coco128_model, counted_flops, pass_flops
from bench.common import Table, dir_bytes, rewrite_store, run_peak_rss
from bench.cv_cost import commands, options
from bench.read_path import ArrayFeatures, open_hdf5, open_npy
from bench.views import epoch_read_bytes
from pipeline.store import CachedFeatureDataset
from pipeline.store.hdf5_export import export_visual_store_to_hdf5
from pipeline.store.layout import ITEM_ARRAYS
from pipeline.store.visual import StoreCodec


def test_every_container_gives_the_same_items(tmp_path, make_stores):
    source = make_stores(tmp_path, num_images=6, splits=("train",)).visual_paths["train"]
    rows = [5, 0, 0, 3, 1, 2, 4, 5]  # repeats allowed (tiling)
    codec = StoreCodec("lz4", 1, "shuffle", chunk_images=1)
    store = rewrite_store(source, tmp_path / "lz4.zarr", rows, codec, 3)
    group = zarr.open_group(str(store), mode="r")
    assert group.attrs["num_images"] == 8 and group.attrs["codec"] == "blosc-lz4-1-shuffle-chunk1"
    original = CachedFeatureDataset(source)
    np.testing.assert_array_equal(group["patch_tokens"][1], original[0]["patch_tokens"].numpy())
    for name in ITEM_ARRAYS:
        np.save(tmp_path / f"{name}.npy", np.asarray(group[name][:]))
    h5 = export_visual_store_to_hdf5(store, tmp_path / "x.h5", "gzip", 1)
    reference = CachedFeatureDataset(store)
    default = rewrite_store(source, tmp_path / "default.zarr", rows, StoreCodec(), 3)
    others = [ArrayFeatures(functools.partial(open_npy, str(tmp_path)), 8),
              ArrayFeatures(functools.partial(open_hdf5, str(h5)), 8),
              CachedFeatureDataset(default), CachedFeatureDataset(default, cache_blocks=1)]
    for i in range(8):
        want = reference[i]
        for other in others:
            got = other[i]
            for key in ("patch_tokens", "cls_token", "label"):
                assert got[key].dtype == want[key].dtype
                assert torch.equal(got[key], want[key])


def test_table_renders_markdown():
    table = Table("T", ["a", "b"], notes=["n"])
    table.add("x", 1234.5)
    table.add("y", 0.012345)
    assert table.render().splitlines() == ["### T", "", "| a | b |", "|---|---|",
                                           "| x | 1234 |", "| y | 0.0123 |", "", "- n"]


def test_a_fit_epoch_reads_one_view_per_shard(tmp_path, make_stores):
    views = make_stores(tmp_path / "v", views=2, splits=("train",)).visual_paths["train"]
    plain = make_stores(tmp_path / "p", splits=("train",)).visual_paths["train"]
    one_view = epoch_read_bytes(plain, 0)
    tokens = dir_bytes(plain / "patch_tokens" / "c")
    assert tokens > 0 and dir_bytes(views / "view_patch_tokens" / "c") == 2 * tokens  # 2 more
    for epoch in range(3):  # ... of which an epoch reads one per shard
        assert abs(epoch_read_bytes(views, epoch) - one_view) < 0.05 * one_view


def test_a_long_stderr_never_blocks_the_measured_command(tmp_path):
    """Megabytes on stderr (a 16-fit log) finish; the log keeps them, a failure shows its end."""
    chatty = "import sys\nfor i in range(20000): print('x' * 60, i, file=sys.stderr)\n"
    seconds, largest, tree = run_peak_rss([sys.executable, "-c", chatty],
                                          log=tmp_path / "chatty.log")
    assert seconds > 0 and 0 < largest <= tree
    assert (tmp_path / "chatty.log").read_text().splitlines()[-1].endswith(" 19999")
    with pytest.raises(RuntimeError, match="boom"):
        run_peak_rss([sys.executable, "-c", chatty + "sys.exit('boom')"])


def test_cv_cost_runs_the_cv_stages_commands():
    """The benchmark's commands pass the params.yaml blocks as DVC does."""
    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    assert options({"epochs": 15, "random-init": False, "resume": True}) == [
        "--epochs", "15", "--resume"]
    steps = commands(params, Path("/w"), Path("/d"))
    fits = steps["16 fits, shuffled names (control)"]
    assert fits[fits.index("--text") + 1] == f"shuffled:{params['pair']['text']}"
    assert options(params["fit_coco128"]) == fits[-len(options(params["fit_coco128"])):]
    assert "--control-checkpoint" in steps["pooled evaluation (32 checkpoints, bootstrap)"]


def test_alone_pass_times_the_coco128_module_of_params_yaml():
    params = Path(__file__).resolve().parents[1] / "params.yaml"
    fit = yaml.safe_load(params.read_text())["fit_coco128"]
    config = coco128_model().config
    assert (config.dim, config.layers, config.heads) == (fit["dim"], fit["layers"], fit["heads"])


def test_pass_flops_parts_add_up_and_count_a_linear_layer_by_hand():
    layer = torch.nn.Linear(6, 4)
    assert counted_flops(lambda: layer(torch.zeros(3, 6))) == 2 * 3 * 6 * 4
    assert attention_flops(5, 7, 8) == 2 * (2 * 5 * 7 * 8)
    rows = {row[0]: row[1] for row in pass_flops(coco128_model()).rows}
    whole, transformer, decoder, independent = rows.values()
    assert abs(transformer + decoder - whole) < 0.2 and 0 < independent < transformer
