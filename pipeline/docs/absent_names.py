"""The table of absent names typed with a vocabulary, from ``bench.vocabulary --out``'s JSON."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.evaluation.open_report import mean_of

COLUMNS = ("module", "fold", "absent pairs", "mean painted", "max painted", "pairs over 1%",
           "their paint on other objects", "objects cover", "most frequent (absent name on)")


def _module(record: Mapping[str, Any]) -> str:
    vocabulary = record.get("episode") == "vocabulary"
    return f"{record['text']}" + (" (vocabulary episodes)" if vocabulary else " (one name)")


def _share(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _confusions(pairs: Sequence[Sequence[Any]], count: int = 3) -> str:
    return ", ".join(f"{absent} on {under} ({k})" for absent, under, k in pairs[:count]) or "-"


def _row(module: str, fold: str, figures: Mapping[str, Any]) -> str:
    over = figures.get("over_1pct", {})
    cells = [module, fold, str(figures["pairs"]), _share(figures["mean_share"]),
             _share(figures["max_share"]), str(figures["pairs_over_1pct"]),
             _share(over.get("on_objects")), _share(over.get("object_cover")),
             _confusions(over.get("confusions", []))]
    return "| " + " | ".join(cells) + " |"


def absent_names_table(document: Mapping[str, Any]) -> str:
    """One row per checkpoint, and per module the mean over its folds (pairs and pairs over 1%:
    summed)."""
    records = document["checkpoints"]
    lines = [f"{document['dataset']}/{document['split']}, {document['visual']}: every name of the "
             f"{document['vocabulary']} vocabulary typed on each image (`fusioner-segment "
             "--vocabulary`'s rule); for each name absent from the image, the share of the image "
             "it paints; of the pairs over 1%, where their paint lies", "",
             "| " + " | ".join(COLUMNS) + " |", "|---" * len(COLUMNS) + "|"]
    for module in dict.fromkeys(_module(r) for r in records):
        folds = [r for r in records if _module(r) == module]
        lines += [_row(module, str(r["fold"]), r) for r in folds]
        if len(folds) > 1:
            mean = {"pairs": sum(r["pairs"] for r in folds),
                    "pairs_over_1pct": sum(r["pairs_over_1pct"] for r in folds),
                    "mean_share": mean_of([r["mean_share"] for r in folds]),
                    "max_share": max(r["max_share"] for r in folds),
                    "over_1pct": {key: mean_of([r["over_1pct"][key] for r in folds])
                                  for key in ("on_objects", "object_cover")}}
            lines.append(_row(module, "mean (sums of pairs; max of max)", mean))
    return "\n".join(lines)

