"""Benchmark: what the coco128 image-level cross-validation costs on this machine (not a test).

Runs the commands of ``cv/dvc.yaml`` with the options of ``params.yaml`` (the frozen coco128
config: ``extract_coco128``, ``fit_coco128``, ``evaluate_coco128``, ``cv_coco128``), real
weights (DINOv2 ViT-S/14 + MiniLM-L6), into a work folder outside the checkout: the ``all``
store (128 images, 4 views each), the real and the name-shuffled text stores, the 16 (image
split, class fold) fits with the real names and the 16 with shuffled names (each
``fusioner-fit-folds`` run side by side, a process per core), and the pooled evaluation with
the image bootstrap. Each step is timed wall-clock with its peak RSS; the pooled CV table
(``python -m pipeline.evaluation.summary``) is printed after the cost table.

Run: ``python -m bench.cv_cost --work /tmp/fusioner-cv`` (about an hour on 2 CPU cores; a store
or a fit folder already complete in ``--work`` is reused: delete ``--work`` to time it all).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from bench.common import Table, machine_table, run_peak_rss
from pipeline.data.base import default_data_root
from pipeline.evaluation.summary import markdown_table
from pipeline.store import text_store_path, visual_store_path

ROOT = Path(__file__).resolve().parents[1]
GB = 2**30


def options(values: Mapping[str, Any]) -> list[str]:
    """A params.yaml block as DVC passes it on a command line: ``--key value`` (``true``:
    ``--key`` alone, ``false``: left out)."""
    out: list[str] = []
    for key, value in values.items():
        if value is True:
            out.append(f"--{key}")
        elif value is not False:
            out += [f"--{key}", str(value)]
    return out


def commands(params: Mapping[str, Any], work: Path, data: Path) -> dict[str, list[str]]:
    """Step name -> the command ``cv/dvc.yaml`` runs for it, on ``work``'s cache and models."""
    cache, visual, text = work / "cache", params["pair"]["visual"], params["pair"]["text"]
    cv = params["cv_coco128"]
    exe = [sys.executable, "-m"]
    fit = ["--folds", str(cv["folds"]), "--image-splits", str(cv["image_splits"]),
           "--visual", visual, "--dataset", "coco128", "--train-split", "all",
           "--val-split", "all", "--cache-dir", str(cache), "--no-progress",
           *options(params["fit_coco128"])]
    coco = ["--dataset", "coco128", "--data-root", str(data), "--cache-dir", str(cache)]
    return {
        "extract the all store (128 images x 5)": [
            *exe, "stages.extract", "--backbone", visual, *coco, "--split", "all",
            "--views-split", "all", "--no-progress", *options(params["extract_coco128"])],
        "extract the text store (real names)": [
            *exe, "stages.extract", "--text-encoder", text, *coco, "--split", "all",
            "--no-progress", *options(params["extract_text"])],
        "extract the text store (shuffled names)": [
            *exe, "stages.extract", "--text-encoder", f"shuffled:{text}", *coco, "--split",
            "all", "--no-progress", *options(params["extract_text"])],
        "16 fits, real names": [*exe, "stages.fit_folds", "--out", str(work / "names"),
                                "--text", text, *fit],
        "16 fits, shuffled names (control)": [
            *exe, "stages.fit_folds", "--out", str(work / "shuffled"), "--text",
            f"shuffled:{text}", *fit],
        "pooled evaluation (32 checkpoints, bootstrap)": [
            *exe, "stages.evaluate", "--checkpoint", str(work / "names"),
            "--control-checkpoint", str(work / "shuffled"), "--cache-dir", str(cache),
            "--data-root", str(data), "--split", "all", "--bootstrap", str(cv["bootstrap"]),
            "--bootstrap-seed", str(cv["bootstrap_seed"]), "--out-metrics",
            str(work / "coco128_cv.json"), "--out-plots", str(work / "plots"), "--no-progress",
            *options(params["evaluate_coco128"])],
    }


def _done(step: str, work: Path, params: Mapping[str, Any]) -> bool:
    """Whether ``step``'s output is already in ``work`` (then it is not rerun nor timed)."""
    visual, text = params["pair"]["visual"], params["pair"]["text"]
    outputs = {
        "extract the all store (128 images x 5)": visual_store_path(
            work / "cache", visual, "coco128", "all") / "zarr.json",
        "extract the text store (real names)": text_store_path(
            work / "cache", text, "coco128") / "zarr.json",
        "extract the text store (shuffled names)": text_store_path(
            work / "cache", f"shuffled:{text}", "coco128") / "zarr.json",
        "16 fits, real names": work / "names" / "split3" / "fold3" / "checkpoint.pt",
        "16 fits, shuffled names (control)": work / "shuffled" / "split3" / "fold3"
        / "checkpoint.pt",
    }
    return step in outputs and outputs[step].exists()


def fit_seconds(folder: Path) -> list[float]:
    """Each fit's own training seconds (``train_metrics.json``'s ``total_seconds``)."""
    return [json.loads(p.read_text())["total_seconds"]
            for p in sorted(folder.rglob("train_metrics.json"))]


def run(work: Path, data: Path) -> list[Table]:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    table = Table("coco128 cross-validation: wall time per step (this machine, CPU)",
                  ["step", "seconds", "minutes", "peak RSS, largest process (GiB)"])
    total = 0.0
    for step, argv in commands(params, work, data).items():
        if _done(step, work, params):
            table.add(step, "reused", "-", "-")
            continue
        print(f"running: {step} (log: {work}/step{len(table.rows) + 1}.log)", file=sys.stderr,
              flush=True)
        log = work / f"step{len(table.rows) + 1}.log"
        seconds, largest, _ = run_peak_rss(argv, log=log)
        total += seconds
        table.add(step, round(seconds), round(seconds / 60, 1), round(largest / GB, 2))
    table.add("total (timed steps)", round(total), round(total / 60, 1), "")
    for name in ("names", "shuffled"):
        each = fit_seconds(work / name)
        if each:
            table.notes.append(f"{name}: {len(each)} fits, each {min(each):.0f}-{max(each):.0f} s "
                               f"of training (sum {sum(each):.0f} s; side by side)")
    table.notes.append("command: python -m bench.cv_cost --work " + str(work))
    return [table]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/fusioner-cv"),
                        help="folder for the stores, checkpoints and metrics (outside the repo)")
    parser.add_argument("--data-root", type=Path, default=default_data_root() / "coco128-seg")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    print(machine_table().render(), end="\n\n", flush=True)
    for table in run(args.work, args.data_root):
        print(table.render(), end="\n\n", flush=True)
    metrics = args.work / "coco128_cv.json"
    if metrics.exists():
        print(markdown_table(json.loads(metrics.read_text())))


if __name__ == "__main__":
    main()
