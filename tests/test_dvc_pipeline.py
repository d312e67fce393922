"""The DVC pipeline on a tiny config in a temporary git+dvc repo: what reruns, and the run cache.

Slow-ish (several real `dvc repro` runs, each stage a fresh process) but the acceptance of the
pipeline is exactly this behaviour, so it runs in CI.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from pipeline.store import read_text_store
from tests.helpers import make_mini_camvid, make_mini_coco128

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "extract_visual": {"batch-size": 4, "shard-images": 4, "random-init": True,
                       "image-size": "64x80", "device": "cpu"},
    "extract_text": {"random-init": True},
    "fit": {"fold": 0, "epochs": 1, "batch-size": 4, "layers": 1, "dim": 32, "heads": 2,
            "decoder-channels": "16,8,8", "embed-dim": 8, "drop-path": 0.0, "seed": 0,
            "device": "cpu"},
    "evaluate": {"mode": "both", "num-overlays": 1, "device": "cpu"},
}
TINY["extract_coco128"] = {**TINY["extract_visual"], "views": 1}
TINY["fit_coco128"] = {k: v for k, v in TINY["fit"].items() if k != "fold"}
TINY["evaluate_coco128"] = {**TINY["evaluate"], "threshold": "adaptive"}
TINY["coco128_text"] = {"minilm_l6": "coco128"}  # one text source: the second is the same code
COCO128_TEXT_STAGES = {"extract_coco128_text@minilm_l6", "fit_coco128@minilm_l6",
                       "evaluate_coco128@minilm_l6"}
COCO128_STAGES = {"extract_coco128_visual", *COCO128_TEXT_STAGES}
CV_STAGES = {"extract_coco128_all", "extract_coco128_text_shuffled", "fit_coco128_cv",
             "fit_coco128_cv_shuffled", "evaluate_coco128_cv"}


def _sh(repo: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    done = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def _repro(repo: Path, *targets: str) -> set[str]:
    """Run `dvc repro`; the set of stages that really ran (not restored from the run cache)."""
    output = _sh(repo, "dvc", "repro", *targets)
    ran = set(re.findall(r"Running stage '([^']+)'", output))
    restored = set(re.findall(r"Stage '([^']+)' is cached - skipping run", output))
    return ran - restored


def _set_params(repo: Path, **changes: object) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for dotted, value in changes.items():
        node = params
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("dvc")
    data = make_mini_camvid(base / "data" / "camvid", per_split=4)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["root"] = str(data)
    params["coco128"]["root"] = str(make_mini_coco128(base / "data" / "coco128-seg"))
    params["encoders"] = {"visual": ["dino_vits16", "dinov2_vits14"],
                          "text": ["minilm_l6", "bert_base"]}
    params["pair"] = {"visual": "dino_vits16", "text": "minilm_l6"}
    params.update(TINY)
    params["cv_coco128"] = {**params["cv_coco128"], "folds": "0", "image_splits": 2,
                            "bootstrap": 200}
    return _project(base / "repo", params)


def _project(repo: Path, params: dict) -> Path:
    """A git+dvc repo at ``repo`` with this project's code, dvc.yaml (and cv/dvc.yaml, never run
    by `dvc repro`) and ``params``."""
    repo.mkdir()
    for name in ("pipeline", "stages"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    (repo / "cv").mkdir()
    shutil.copy(ROOT / "cv" / "dvc.yaml", repo / "cv" / "dvc.yaml")
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (repo / ".gitignore").write_text("/cache/\n/models/\n/metrics/\n/plots/\n__pycache__/\n")
    _sh(repo, "git", "init", "-q")
    _sh(repo, "dvc", "init", "-q")
    _sh(repo, "dvc", "config", "core.analytics", "false")
    _sh(repo, "git", "add", "-A")
    _sh(repo, "git", "commit", "-qm", "init")
    return repo


def test_pipeline_reruns_only_what_changed(repo: Path) -> None:
    first = _repro(repo)  # the exact set: no stage of cv/dvc.yaml among them
    assert first == {"extract_visual@dino_vits16", "extract_visual@dinov2_vits14",
                     "extract_text@minilm_l6", "extract_text@bert_base", "fit", "evaluate",
                     *COCO128_STAGES}
    metrics = yaml.safe_load((repo / "metrics" / "metrics.json").read_text())
    assert metrics  # evaluate wrote its metrics
    coco = yaml.safe_load((repo / "metrics" / "coco128.json").read_text())
    assert (coco["dataset"], coco["folds"], coco["resolution"]) == ("coco128", [0, 1, 2, 3],
                                                                    "original")
    assert set(coco["per_fold"]) == {"fold0", "fold1", "fold2", "fold3"}
    shown = _sh(repo, "dvc", "metrics", "show", "--json")
    assert "metrics/metrics.json" in shown and "metrics/coco128.json" in shown

    assert _repro(repo) == set(), "a second dvc repro must be a no-op"

    _set_params(repo, **{"fit.layers": 2})
    assert _repro(repo) == {"fit", "evaluate"}

    visual_lock = _lock_hashes(repo, "extract_visual@dino_vits16")
    _set_params(repo, **{"pair.text": "bert_base"})
    assert _repro(repo) == {"fit", "evaluate"}  # coco128's text sources are its own list
    _set_params(repo, **{"coco128_text": {"bert_base": "coco128"}})
    bert = {stage.replace("minilm_l6", "bert_base") for stage in COCO128_TEXT_STAGES}
    assert _repro(repo) == bert
    _set_params(repo, **{"pair.visual": "dinov2_vits14"})
    assert _repro(repo) == {"fit", "evaluate", "extract_coco128_visual", *bert} - {
        "extract_coco128_text@bert_base"}
    assert _lock_hashes(repo, "extract_visual@dino_vits16") == visual_lock

    _set_params(repo, **{"pair.visual": "dino_vits16", "pair.text": "minilm_l6",
                         "coco128_text": TINY["coco128_text"]})
    assert _repro(repo) == set(), "switching back must restore from the run cache"
    assert (repo / "models" / "fusion" / "checkpoint.pt").exists()


def test_adding_an_encoder_runs_only_its_extraction(repo: Path) -> None:
    _set_params(repo, **{"encoders.text": ["minilm_l6", "bert_base", "clip_vitb16_text"],
                         "pair.text": "clip_vitb16_text"})
    assert _repro(repo) == {"extract_text@clip_vitb16_text", "fit", "evaluate"}  # CamVid's pair


def test_a_table_text_encoder_in_the_extract_text_foreach(tmp_path: Path) -> None:
    """``encoders.text: [minilm_l6, clip_vitb32_table]`` works for a dataset whose names are in
    the shared tables (a one-image folder dataset here): its stage runs, then is a no-op."""
    data = tmp_path / "data"
    for kind in ("images", "masks"):
        (data / "train" / kind).mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(data / "train" / "images" / "a.png")
    Image.new("L", (8, 8)).save(data / "train" / "masks" / "a.png")
    (data / "classes.txt").write_text("background\nperson\nteddy bear\n", encoding="utf-8")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(dataset="folder", root=str(data))
    params["encoders"]["text"] = ["minilm_l6", "clip_vitb32_table"]
    params["extract_text"] = TINY["extract_text"]  # --random-init: a table is read as it is
    repo = _project(tmp_path / "repo", params)
    stage = "extract_text@clip_vitb32_table"
    assert f"Running stage '{stage}'" in _sh(repo, "dvc", "repro", stage)
    attrs = read_text_store(repo / "cache/text/clip_vitb32_table/folder.zarr").attrs
    assert attrs["table_matches"] == [None, ["coco", "person"], ["coco", "teddy bear"]]
    assert attrs["unembedded"] == ["background"] and attrs["random_init"] is False
    assert "Running stage" not in _sh(repo, "dvc", "repro", stage)


def test_the_cross_validation_runs_on_its_own(repo: Path) -> None:
    """`dvc repro cv/dvc.yaml`: the `all` store, 2 image splits x fold 0 with the real and the
    name-shuffled names, one pooled evaluation with intervals; then a no-op."""
    _set_params(repo, **{"encoders.text": ["minilm_l6", "bert_base"],
                         "pair": {"visual": "dino_vits16", "text": "minilm_l6"}})
    ran = _repro(repo, "cv/dvc.yaml")
    assert {f"cv/dvc.yaml:{s}" for s in CV_STAGES} <= ran
    assert not ran - {f"cv/dvc.yaml:{s}" for s in CV_STAGES} - {"extract_coco128_text@minilm_l6"}
    checkpoints = sorted((repo / "models" / "coco128_cv").rglob("checkpoint.pt"))
    assert len(checkpoints) == 2 * 2  # (names, shuffled) x image splits
    cv = yaml.safe_load((repo / "metrics" / "coco128_cv.json").read_text())
    assert cv["folds"] == [0] and cv["split"] == "all" and cv["bootstrap"]["images"] == 8
    assert cv["per_fold"]["fold0"]["images"] == 8 and cv["per_fold"]["fold0"]["image_splits"] == 2
    assert "name_shuffled" in cv["baselines"] and "ratios" in cv and "ci95" in cv
    assert _repro(repo, "cv/dvc.yaml") == set()


def _lock_hashes(repo: Path, stage: str) -> list[str]:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return [out["md5"] for out in lock["stages"][stage]["outs"]]


STAGE_MODULES = {"extract_visual": "stages.extract", "extract_text": "stages.extract",
                 "fit": "stages.fit", "evaluate": "stages.evaluate",
                 "extract_coco128_visual": "stages.extract",
                 "extract_coco128_text": "stages.extract", "fit_coco128": "stages.fit_folds",
                 "evaluate_coco128": "stages.evaluate",
                 "cv/extract_coco128_all": "stages.extract",
                 "cv/extract_coco128_text_shuffled": "stages.extract",
                 "cv/fit_coco128_cv": "stages.fit_folds",
                 "cv/fit_coco128_cv_shuffled": "stages.fit_folds",
                 "cv/evaluate_coco128_cv": "stages.evaluate"}
_LOADED_FILES = ("import sys, importlib; importlib.import_module(sys.argv[1]); "
                 "print('\\n'.join(m.__file__ for n, m in list(sys.modules.items()) "
                 "if n.split('.')[0] in ('pipeline', 'stages') and getattr(m, '__file__', None)))")


@pytest.mark.parametrize("stage", sorted(STAGE_MODULES))
def test_every_module_a_stage_imports_is_a_dep(stage: str) -> None:
    """A code change reruns the stages that run it: no imported project file is left out."""
    folder, _, name = stage.rpartition("/")
    spec = yaml.safe_load((ROOT / folder / "dvc.yaml").read_text())["stages"][name]
    deps = [Path(d) for d in spec.get("do", spec)["deps"] if d.startswith(("pipeline", "stages"))]
    loaded = subprocess.run([sys.executable, "-c", _LOADED_FILES, STAGE_MODULES[stage]],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    files = [Path(f).resolve().relative_to(ROOT) for f in loaded]
    docstring_only = Path("stages/__init__.py")
    missing = [str(f) for f in files
               if f != docstring_only and not any(f == d or d in f.parents for d in deps)]
    assert not missing, f"{stage} imports {missing}, not listed in its dvc.yaml deps"
