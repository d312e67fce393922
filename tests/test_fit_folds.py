"""fusioner-fit-folds: each fold's run is the standalone fit of that fold; failures stop all."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from click.testing import CliRunner

from pipeline.train.folds import FoldPlan, thread_env
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
