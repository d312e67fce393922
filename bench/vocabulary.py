"""Absent names typed with a vocabulary (issue 36, section 3), on a dataset's real images.

Each val image is segmented (``pipeline.segmentation.vocabulary``: ``fusioner-segment
--vocabulary``'s code, at the image's own size, under the checkpoint's calibration) with every
vocabulary name typed; for each name absent from the image's labels, the share of the image it
paints (= typed alone: typed names do not change the competition), and, for the pairs over 1%,
where that paint lies: on a labelled object of another class (the name is confused with what is
there) or on background. The generalized protocol itself (seen / unseen mIoU, hIoU, AUSUC) is
``fusioner-evaluate --mode gzsl``.

Run: ``python -m bench.vocabulary CHECKPOINT... [--vocabulary coco] [--data-root DIR] [--out
FILE]`` (``--out``: the figures as JSON, e.g. docs/results/metrics/coco128_absent_names.json,
rendered in docs/vocabularies.md by ``python -m pipeline.docs.tables``).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data import create_dataset
from pipeline.data.base import IGNORE_INDEX
from pipeline.metrics import metric_number
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


def object_pixels(label: np.ndarray, background: int = 0) -> np.ndarray:
    """(H, W) bool: the pixels of a labelled object (neither ``background`` nor ignored)."""
    return (label != background) & (label != IGNORE_INDEX)


def where_painted(painted: np.ndarray, label: np.ndarray,
                  background: int = 0) -> tuple[int, int, int | None]:
    """Of the (H, W) bool ``painted`` pixels: how many, how many lie on a labelled object
    (``object_pixels``), and the object class under most of them (None if none)."""
    on_objects = label[painted & object_pixels(label, background)]
    most = int(np.bincount(on_objects).argmax()) if on_objects.size else None
    return int(painted.sum()), int(on_objects.size), most


OVER = 0.01  # the bar: an absent name typed with a vocabulary paints at most 1%


@dataclass
class AbsentTally:
    """The (image, absent name) painted shares of one checkpoint, and where the paint of the
    pairs over ``OVER`` lies."""

    shares: list[float] = field(default_factory=list)
    worst: tuple[float, str, str] = (0.0, "", "")  # (share, name, image id)
    painted: int = 0  # pixels painted by the pairs over OVER
    on_objects: int = 0  # of them, on a labelled object of another class
    coverage: list[float] = field(default_factory=list)  # object share of each such pair's image
    confusions: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(self, image: str, found: Mapping[str, float], winners: np.ndarray,
            names: Sequence[str], label: np.ndarray, class_names: Sequence[str]) -> None:
        """One image: ``found`` (absent name -> share), ``winners`` (H, W) ids into ``names``."""
        self.shares += found.values()
        self.worst = max([self.worst, *((v, n, image) for n, v in found.items())])
        cover = float(object_pixels(label).mean())
        for name in (n for n, share in found.items() if share > OVER):
            pixels, on, most = where_painted(winners == names.index(name), label)
            self.painted, self.on_objects = self.painted + pixels, self.on_objects + on
            self.coverage.append(cover)
            if most is not None:
                self.confusions[name, class_names[most]] += 1

    def record(self) -> dict[str, Any]:
        """The figures for the JSON file (shares as fractions of the image)."""
        values = np.asarray(self.shares)
        return {
            "pairs": len(values), "mean_share": metric_number(values.mean()),
            "max_share": metric_number(values.max()),
            "worst": {"name": self.worst[1], "image": self.worst[2]},
            "pairs_over_1pct": int((values > OVER).sum()),
            "pairs_any_pixel": int((values > 0).sum()),
            "over_1pct": {
                "on_objects": metric_number(self.on_objects / self.painted) if self.painted
                else None,
                "object_cover": metric_number(np.mean(self.coverage)) if self.coverage else None,
                "confusions": [[a, b, k] for (a, b), k in self.confusions.most_common(5)]},
        }


def absent(checkpoint: Path, cache_dir: Path, vocabulary: str, data_root: Path | None,
           split: str = "val", device: str = "cpu") -> dict[str, Any]:
    """The (val image, absent vocabulary name) figures of ``checkpoint`` (printed, returned)."""
    segmenter = load_segmenter("fusion", checkpoint, device=device)
    table = load_table(segmenter, vocabulary, cache_dir)  # type: ignore[arg-type]
    plan = plan_competition(segmenter, list(table.names), table)  # type: ignore[arg-type]
    meta = segmenter.meta  # type: ignore[attr-defined]
    dataset = create_dataset(meta["dataset"], split, data_root)
    class_of = {match_key(n): c for c, n in enumerate(dataset.class_names)}
    tally = AbsentTally()
    for index in range(len(dataset)):
        sample = dataset[index]
        result = segment_in_vocabulary(segmenter, sample.image, plan)  # type: ignore[arg-type]
        found = absent_shares(table.names, result.fractions(),
                              set(np.unique(sample.label).tolist()), class_of)
        tally.add(dataset.image_id(index), found, result.label, result.class_names,
                  sample.label, dataset.class_names)
    record = {"checkpoint": str(checkpoint), "dataset": meta["dataset"],
              "visual": meta["visual"]["encoder"], "fold": int(meta["fold"]),
              "text": meta["text"]["encoder"],
              "episode": meta.get("train", {}).get("episode"), **tally.record()}
    over = record["over_1pct"]
    print(f"{checkpoint}: {record['pairs']} (image, absent name) pairs: mean "
          f"{record['mean_share']}, max {record['max_share']} ({tally.worst[1]} on "
          f"{tally.worst[2]}), over 1%: {record['pairs_over_1pct']}, any pixel: "
          f"{record['pairs_any_pixel']}; the pairs over 1%: {over['on_objects']} of their "
          f"pixels on a labelled object of another class (objects cover {over['object_cover']} "
          f"of those images); most frequent: {over['confusions']}")
    return record


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoints", type=Path, nargs="+")
    parser.add_argument("--vocabulary", default="coco")
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--cache-dir", type=Path, default=Path("cache"))
    parser.add_argument("--split", default="val")
    parser.add_argument("--out", type=Path, default=None,
                        help="write the figures as JSON (e.g. a docs snapshot)")
    args = parser.parse_args(argv)
    records = [absent(c, args.cache_dir, args.vocabulary, args.data_root, args.split)
               for c in args.checkpoints]
    if args.out is not None:
        document = {"dataset": records[0]["dataset"], "split": args.split,
                    "visual": records[0]["visual"], "vocabulary": args.vocabulary,
                    "checkpoints": records}
        args.out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
