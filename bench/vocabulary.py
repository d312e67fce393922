"""Absent names typed with a vocabulary (issue 36, section 3), on a dataset's real images.

Each val image is segmented (``pipeline.segmentation.vocabulary``: ``fusioner-segment
--vocabulary``'s code, at the image's own size, under the checkpoint's calibration) with every
vocabulary name typed; for each name absent from the image's labels, the share of the image it
paints (= typed alone: typed names do not change the competition), and, for the pairs over 1%,
where that paint lies: on a labelled object of another class (the name is confused with what is
there) or on background. The generalized protocol itself (seen / unseen mIoU, hIoU, AUSUC) is
``fusioner-evaluate --mode gzsl``.

Run: ``python -m bench.vocabulary CHECKPOINT [--vocabulary coco] [--data-root DIR]``.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from pipeline.data import create_dataset
from pipeline.data.base import IGNORE_INDEX
from pipeline.segmentation import load_segmenter
from pipeline.segmentation.vocabulary import load_table, plan_competition, segment_in_vocabulary
from pipeline.vocabularies import match_key


def absent_shares(names: Sequence[str], painted: Mapping[str, float], present: set[int],
                  class_of: Mapping[str, int]) -> dict[str, float]:
    """The painted share (``painted``: a segmentation's fractions, "(none)" included) of every
    name of ``names`` whose class (``class_of``, by ``match_key``) is not in ``present``; a name
    of no dataset class is always absent."""
    return {name: painted[name] for name in names
            if class_of.get(match_key(name)) not in present}


def where_painted(painted: np.ndarray, label: np.ndarray,
                  background: int = 0) -> tuple[int, int, int | None]:
    """Of the (H, W) bool ``painted`` pixels: how many, how many lie on a labelled object (neither
    ``background`` nor ignored in ``label``), and the object class under most of them (None if
    none)."""
    under = label[painted]
    on_objects = under[(under != background) & (under != IGNORE_INDEX)]
    most = int(np.bincount(on_objects).argmax()) if on_objects.size else None
    return int(under.size), int(on_objects.size), most


def absent(checkpoint: Path, cache_dir: Path, vocabulary: str, data_root: Path | None,
           split: str = "val", device: str = "cpu") -> None:
    """Print the (val image, absent vocabulary name) painted shares: mean, max, over 1%."""
    segmenter = load_segmenter("fusion", checkpoint, device=device)
    table = load_table(segmenter, vocabulary, cache_dir)  # type: ignore[arg-type]
    plan = plan_competition(segmenter, list(table.names), table)  # type: ignore[arg-type]
    dataset = create_dataset(segmenter.meta["dataset"], split, data_root)  # type: ignore[attr-defined]
    class_of = {match_key(n): c for c, n in enumerate(dataset.class_names)}
    shares, worst = [], (0.0, "", "")
    painted, on_objects, confusions = 0, 0, Counter[tuple[str, str]]()
    for index in range(len(dataset)):
        sample = dataset[index]
        result = segment_in_vocabulary(segmenter, sample.image, plan)  # type: ignore[arg-type]
        found = absent_shares(table.names, result.fractions(),
                              set(np.unique(sample.label).tolist()), class_of)
        shares += found.values()
        worst = max([worst, *((v, n, dataset.image_id(index)) for n, v in found.items())])
        for name in (n for n, share in found.items() if share > 0.01):
            pixels, on, most = where_painted(result.label == result.class_names.index(name),
                                             sample.label)
            painted, on_objects = painted + pixels, on_objects + on
            if most is not None:
                confusions[name, dataset.class_names[most]] += 1
    values = np.asarray(shares)
    print(f"{checkpoint}: {len(values)} (image, absent name) pairs: mean {values.mean():.5f}, "
          f"max {values.max():.4f} ({worst[1]} on {worst[2]}), over 1%: "
          f"{int((values > 0.01).sum())}, any pixel: {int((values > 0).sum())}")
    if painted:
        common = ", ".join(f"{a} on {b} ({k})" for (a, b), k in confusions.most_common(5))
        print(f"  the pairs over 1%: {on_objects / painted:.1%} of their pixels on a labelled "
              f"object of another class; most frequent (absent name on the class under most of "
              f"its paint, pairs): {common}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--vocabulary", default="coco")
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--cache-dir", type=Path, default=Path("cache"))
    args = parser.parse_args(argv)
    absent(args.checkpoint, args.cache_dir, args.vocabulary, args.data_root)


if __name__ == "__main__":
    main()
