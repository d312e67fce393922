"""Small builders shared by the foundation tests (real CamVid files, copied in miniature)."""

from __future__ import annotations

import shutil
from pathlib import Path

from pipeline.data.base import default_data_root

CAMVID = default_data_root() / "camvid"


def make_mini_camvid(root: Path, per_split: int = 5) -> Path:
    """A CamVid folder with the first ``per_split`` real images/labels of each split."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(CAMVID / "classes.txt", root / "classes.txt")
    for split in ("train", "val"):
        for kind in ("images", "labels"):
            (root / split / kind).mkdir(parents=True, exist_ok=True)
        for image in sorted((CAMVID / split / "images").glob("*.jpg"))[:per_split]:
            shutil.copy(image, root / split / "images" / image.name)
            label = CAMVID / split / "labels" / f"{image.stem}.png"
            shutil.copy(label, root / split / "labels" / label.name)
    return root
