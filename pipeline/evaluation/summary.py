"""A metrics file as a Markdown table: each fold and the mean, the model beside its baselines.

``python -m pipeline.evaluation.summary metrics/coco128.json`` prints, per fold, the unseen
binary mIoU at the paper's fixed 0.5 and under the run's rule (when it differs), each next to
the all-foreground and random-text-embedding baselines under the same threshold, the AUROC and
the seen-class reference, then the mean over folds with the model / baseline ratios.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.evaluation.run import ALL_FOREGROUND, PAPER_RULE, RANDOM_TEXT, SEEN_REFERENCE

COLUMNS = ("unseen @0.5", "all-fg", "random text @0.5", "unseen {rule}", "random text {rule}",
           "AUROC", "seen @0.5", "seen {rule}")


def _miou(block: Mapping[str, Any] | None, *path: str) -> float | None:
    for key in path:
        if not isinstance(block, Mapping) or key not in block:
            return None
        block = block[key]
    return block if isinstance(block, float) or block is None else None  # type: ignore[return-value]


def scores(block: Mapping[str, Any]) -> dict[str, float | None]:
    """The table's figures of one fold (or the mean) of a metrics document."""
    paper = block.get(PAPER_RULE, block)  # a 0.5 run has no separate 0.5 block
    seen = block.get(SEEN_REFERENCE, {})
    return {
        "unseen @0.5": _miou(paper, "binary", "miou"),
        "all-fg": _miou(block, "baselines", ALL_FOREGROUND, "binary", "miou"),
        "random text @0.5": _miou(paper, "baselines", RANDOM_TEXT, "binary", "miou"),
        "unseen {rule}": _miou(block, "binary", "miou"),
        "random text {rule}": _miou(block, "baselines", RANDOM_TEXT, "binary", "miou"),
        "AUROC": _miou(block, "binary", "auroc"),
        "seen @0.5": _miou(seen.get(PAPER_RULE, seen), "binary", "miou"),
        "seen {rule}": _miou(seen, "binary", "miou"),
    }


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _ratio(value: float | None, base: float | None) -> str:
    return "-" if value is None or not base else f"{value / base:.2f}x"


def markdown_table(document: Mapping[str, Any]) -> str:
    """The per-fold table with a mean row, and the ratios the targets are stated in."""
    rule = str(document.get("threshold"))
    names = [c.format(rule=rule) for c in COLUMNS]
    lines = [f"{document['dataset']}/{document['split']}, {document['visual']} + "
             f"{document['text']}, binary mIoU on unseen classes (resolution: "
             f"{document.get('resolution')}, rule: {rule})", "",
             "| fold | episodes | " + " | ".join(names) + " |",
             "|---" * (len(names) + 2) + "|"]
    rows: Sequence[tuple[str, Mapping[str, Any]]] = [
        (name.removeprefix("fold"), block) for name, block in document["per_fold"].items()]
    for name, block in [*rows, ("mean", document)]:
        episodes = block.get("episodes", {}).get("binary", "") if name != "mean" else ""
        figures = scores(block)
        lines.append(f"| {name} | {episodes} | "
                     + " | ".join(_cell(figures[c]) for c in COLUMNS) + " |")
    mean = scores(document)
    lines += ["", "mean unseen / mean baseline: "
              f"at 0.5 {_ratio(mean['unseen @0.5'], mean['all-fg'])} all-foreground, "
              f"{_ratio(mean['unseen @0.5'], mean['random text @0.5'])} random text; "
              f"under {rule} {_ratio(mean['unseen {rule}'], mean['all-fg'])} all-foreground, "
              f"{_ratio(mean['unseen {rule}'], mean['random text {rule}'])} random text"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Print the table of each metrics file named on the command line (one ``error:`` line and
    exit 1 for a file that is missing or not a fusioner-evaluate metrics file)."""
    for path in argv if argv is not None else sys.argv[1:]:
        try:
            table = markdown_table(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError,
                AttributeError) as exc:
            sys.exit(f"error: {path}: not a readable metrics file ({type(exc).__name__}: "
                     f"{' '.join(str(exc).split())})")
        print(table)


if __name__ == "__main__":
    main()
