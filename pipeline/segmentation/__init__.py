"""Open-vocabulary segmentation of new images: fusion checkpoints and the MaskCLIP baseline."""

from pipeline.segmentation.api import load_segmenter, segment
from pipeline.segmentation.core import (
    BACKGROUND_PROMPT,
    NO_CLASS,
    DenseSegmenter,
    SegmentationResult,
    assign_labels,
    check_class_names,
)
from pipeline.segmentation.fusion import Segmenter
from pipeline.segmentation.outputs import check_unique_stems, output_paths, write_outputs

__all__ = [
    "BACKGROUND_PROMPT",
    "NO_CLASS",
    "DenseSegmenter",
    "SegmentationResult",
    "Segmenter",
    "assign_labels",
    "check_class_names",
    "check_unique_stems",
    "load_segmenter",
    "output_paths",
    "segment",
    "write_outputs",
]
