"""fusioner-fit-folds: each fold's run is the standalone fit of that fold; failures stop all."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import torch
from click.testing import CliRunner

from pipeline.train.folds import FoldPlan, FoldRunner, thread_env
from stages.fit_folds import main
from tests.helpers import TINY_FIT, same_weights
from tests.tally import invoke_error


def _fit_options(stores) -> list[str]:
    return ["--visual", stores.visual, "--text", stores.text, "--dataset", stores.dataset,
            "--cache-dir", str(stores.cache_dir), "--epochs", "2", *TINY_FIT[2:]]


def test_plan_shares_the_cores_out() -> None:
    assert FoldPlan.for_machine(4, cores=2) == FoldPlan(2, 1)
    assert FoldPlan.for_machine(4, cores=16) == FoldPlan(4, 4)
    assert FoldPlan.for_machine(2, jobs=8, cores=4) == FoldPlan(2, 2)
    assert FoldPlan.for_machine(4, jobs=1, cores=2) == FoldPlan(1, 2)


def test_each_fold_equals_its_standalone_fit(tiny_stores, tmp_path: Path) -> None:
    out = tmp_path / "folds"
    result = CliRunner().invoke(main, ["--folds", "0,1", "--jobs", "2", "--out", str(out),
                                       *_fit_options(tiny_stores)])
    assert result.exit_code == 0, result.output
    assert "[fold 0]" in result.output and "[fold 1]" in result.output
    alone = tmp_path / "alone1"
    subprocess.run([sys.executable, "-m", "stages.fit", "--fold", "1", "--out", str(alone),
                    *_fit_options(tiny_stores)], check=True, capture_output=True,
                   env=thread_env(FoldPlan.for_machine(2, jobs=2).threads))
    assert same_weights(out / "fold1", alone)
    assert not same_weights(out / "fold0", out / "fold1")
    for fold in (0, 1):
        meta = torch.load(out / f"fold{fold}" / "checkpoint.pt", weights_only=True)["meta"]
        assert meta["fold"] == fold and meta["train"]["epochs"] == 2


def test_a_failing_fold_is_one_line_error_and_stops_the_rest(tiny_stores, tmp_path: Path) -> None:
    out = tmp_path / "folds"
    result = CliRunner().invoke(main, ["--folds", "0,99", "--jobs", "2", "--out", str(out),
                                       *_fit_options(tiny_stores)])
    assert result.exit_code == 1
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: fold 99 failed (exit 1): ") and "99" in last[30:], last
    assert not (out / "fold99" / "checkpoint.pt").exists()


def test_per_fold_options_are_refused(tiny_stores, tmp_path: Path) -> None:
    options, out = _fit_options(tiny_stores), tmp_path / "folds"
    invoke_error(main, ["--folds", "0,1", "--out", str(out), "--fold", "2", *options], "--fold")
    invoke_error(main, ["--folds", "0,0", "--out", str(out), *options], "distinct")
    assert not out.exists()


def test_runs_are_labelled_and_counted_as_they_finish(capfd, caplog) -> None:
    commands = {f"split {s} fold 0": [sys.executable, "-c", f"print('hello {s}')"]
                for s in range(3)}
    with caplog.at_level(logging.INFO, logger="fusioner.fit"):
        seconds = FoldRunner(commands, FoldPlan(2, 1)).run()
    assert set(seconds) == set(commands)
    assert "[split 2 fold 0] hello 2" in capfd.readouterr().err
    done = [r.getMessage() for r in caplog.records if "done in" in r.getMessage()]
    assert sorted(m.split(" (")[1] for m in done) == [f"{k} of 3 done)" for k in (1, 2, 3)]


def test_image_splits_cross_the_folds(tiny_stores, tmp_path: Path) -> None:
    """--image-splits 2 runs every (split, fold) pair into <out>/split<s>/fold<k>."""
    out = tmp_path / "cv"
    result = CliRunner().invoke(main, ["--folds", "1", "--image-splits", "2", "--out", str(out),
                                       *_fit_options(tiny_stores), "--epochs", "1",
                                       "--train-split", "val", "--val-split", "val"])
    assert result.exit_code == 0, result.output
    for split in (0, 1):
        meta = torch.load(out / f"split{split}" / "fold1" / "checkpoint.pt",
                          weights_only=True)["meta"]
        assert (meta["image_split"]["split"], meta["image_split"]["images"]) == (split, 8)
    invoke_error(main, ["--folds", "0", "--image-splits", "1", "--out", str(out),
                        *_fit_options(tiny_stores)], "2 or more")
    invoke_error(main, ["--folds", "0", "--out", str(out), "--image-split", "1",
                        *_fit_options(tiny_stores)], "--image-split")

