"""Datasets: a registry of loaders, each yielding (image, label map, class names)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from pipeline.data.base import IGNORE_INDEX, Sample, SegmentationDataset, default_data_root
from pipeline.data.camvid import CamVid
from pipeline.data.coco import Coco
from pipeline.data.folder import FolderDataset
from pipeline.data.fss import FSS1000
from pipeline.data.instance_mosaic import InstanceMosaic, build_fold_mosaics
from pipeline.data.mosaic import Mosaic4, build_mosaic4
from pipeline.data.pascal import PascalVOC
from pipeline.data.splits import (
    ZeroShotSplit,
    get_split,
    register_interleaved_split,
    split_for,
    training_view,
)
from pipeline.data.yolo import Coco128, YoloSegDataset
from pipeline.errors import UnknownNameError

DatasetFactory = Callable[[Path, str], SegmentationDataset]
_DATASETS: dict[str, tuple[DatasetFactory, str]] = {
    "camvid": (CamVid, "camvid"),
    "pascal": (PascalVOC, "VOC2012"),  # HSNet's datapath layout
    "coco": (Coco, "COCO2014"),
    "fss1000": (FSS1000, "FSS-1000"),
    "mosaic4": (Mosaic4, "mosaic4"),  # built by build_mosaic4 from FSS-1000
    "folder": (FolderDataset, "folder"),  # a user's own images/ + masks/ + classes.txt
    "yolo": (YoloSegDataset, "yolo"),  # any Ultralytics YOLO-seg dataset (data.yaml)
    "coco128": (Coco128, "coco128-seg"),  # the embedded many-class dataset, fixed hold-out
}
# fold mosaics of instance crops (fusioner-mosaic): seen crops to train, unseen to evaluate
MOSAIC_OF = {"coco128": "coco128_mosaic", "yolo": "yolo_mosaic"}  # source -> mosaic dataset
for _mosaic in MOSAIC_OF.values():
    _DATASETS[_mosaic] = (functools.partial(InstanceMosaic, name=_mosaic), _mosaic)
for _name in ("yolo", "coco128", *MOSAIC_OF.values()):
    register_interleaved_split(_name)


def register_dataset(name: str, factory: DatasetFactory, default_subdir: str) -> None:
    """Add a loader ``factory(root, split)``; ``default_subdir``: its folder under the data root."""
    _DATASETS[name] = (factory, default_subdir)


def list_datasets() -> list[str]:
    """Names accepted by ``create_dataset``."""
    return sorted(_DATASETS)


def create_dataset(name: str, split: str, root: Path | str | None = None) -> SegmentationDataset:
    """The one door to every dataset; ``root`` defaults to ``<data root>/<dataset folder>``."""
    if name not in _DATASETS:
        raise UnknownNameError(f"unknown dataset '{name}'; known: {list_datasets()}")
    factory, subdir = _DATASETS[name]
    return factory(Path(root) if root else default_data_root() / subdir, split)


__all__ = [
    "IGNORE_INDEX",
    "Sample",
    "SegmentationDataset",
    "ZeroShotSplit",
    "build_fold_mosaics",
    "build_mosaic4",
    "create_dataset",
    "get_split",
    "list_datasets",
    "register_dataset",
    "split_for",
    "training_view",
]
