"""A metrics file as Markdown tables: each fold and the mean, the model beside its baselines.

``python -m pipeline.evaluation.summary metrics/coco128.json`` prints, per fold, the unseen
binary mIoU at the paper's fixed 0.5 and under the run's rule (when it differs), each next to
the all-foreground and random-text-embedding baselines (and the name-shuffled control, when it
was scored) under the same threshold, the AUROC and the seen-class reference, then the mean over
folds with the model / baseline ratios. A file with image-bootstrap intervals shows each figure
as ``value (low-high)``, its 95% interval, ratios included. A control's file says so first.
Then the absent-name episodes of the binary mode (painted share, presence AUROC;
``presence_table``) and the generalized protocol per form (``gzsl_table``), each titled as a
control too when the file is one.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.evaluation.run import (
    ALL_FOREGROUND,
    NAME_SHUFFLED,
    PAPER_RULE,
    RANDOM_TEXT,
    SEEN_REFERENCE,
)

COLUMNS = ("unseen @0.5", "all-fg", "random text @0.5", "names shuffled @0.5", "unseen {rule}",
           "random text {rule}", "names shuffled {rule}", "AUROC", "seen @0.5", "seen {rule}")
CONTROL_COLUMNS = ("names shuffled @0.5", "names shuffled {rule}")  # shown when scored
RATIO_NAMES = {ALL_FOREGROUND: "all-foreground", RANDOM_TEXT: "random text",
               NAME_SHUFFLED: "names shuffled"}
Figure = float | list | None  # a value, or its [low, high] interval


def _miou(block: Mapping[str, Any] | None, *path: str) -> Figure:
    for key in path:
        if not isinstance(block, Mapping) or key not in block:
            return None
        block = block[key]
    return block if isinstance(block, float | list) or block is None else None  # type: ignore[return-value]


def scores(block: Mapping[str, Any]) -> dict[str, Figure]:
    """The table's figures of one fold (or the mean) of a metrics document (of its ``ci95``
    block: their intervals)."""
    paper = block.get(PAPER_RULE, block)  # a 0.5 run has no separate 0.5 block
    seen = block.get(SEEN_REFERENCE, {})
    return {
        "unseen @0.5": _miou(paper, "binary", "miou"),
        "all-fg": _miou(block, "baselines", ALL_FOREGROUND, "binary", "miou"),
        "random text @0.5": _miou(paper, "baselines", RANDOM_TEXT, "binary", "miou"),
        "names shuffled @0.5": _miou(paper, "baselines", NAME_SHUFFLED, "binary", "miou"),
        "unseen {rule}": _miou(block, "binary", "miou"),
        "random text {rule}": _miou(block, "baselines", RANDOM_TEXT, "binary", "miou"),
        "names shuffled {rule}": _miou(block, "baselines", NAME_SHUFFLED, "binary", "miou"),
        "AUROC": _miou(block, "binary", "auroc"),
        "seen @0.5": _miou(seen.get(PAPER_RULE, seen), "binary", "miou"),
        "seen {rule}": _miou(seen, "binary", "miou"),
    }


def _span(interval: Figure, digits: int) -> str:
    if not isinstance(interval, list) or None in interval:
        return ""
    return f" ({interval[0]:.{digits}f}-{interval[1]:.{digits}f})"


def _cell(value: Figure, interval: Figure = None) -> str:
    return "-" if not isinstance(value, float) else f"{value:.3f}{_span(interval, 3)}"


def _ratio(value: Figure, base: Figure) -> str:
    if not isinstance(value, float) or not isinstance(base, float) or not base:
        return "-"
    return f"{value / base:.2f}x"


def _ratios_line(document: Mapping[str, Any], rule: str) -> str:
    """The mean's model / baseline ratios: from the bootstrap's ``ratios`` (with intervals),
    else from the mean figures."""
    mean = scores(document)
    bootstrapped = document.get("ratios", {}).get("binary", {})
    parts = []
    for label, key, column in (("at 0.5", PAPER_RULE if rule != "0.5" else rule, "@0.5"),
                               (f"under {rule}", rule, "{rule}")):
        if key in bootstrapped:
            shown = [f"{r['ratio']:.2f}x{_span(r['ci95'], 2)} {RATIO_NAMES[name]}"
                     for name, r in bootstrapped[key].items() if r["ratio"] is not None]
        else:
            unseen = mean[f"unseen {column}"]
            shown = [f"{_ratio(unseen, mean['all-fg'])} all-foreground",
                     f"{_ratio(unseen, mean[f'random text {column}'])} random text"]
        parts.append(f"{label} {', '.join(shown)}")
    return "mean unseen / mean baseline: " + "; ".join(parts)


def _title(document: Mapping[str, Any], what: str, details: str = "") -> str:
    control = (f"CONTROL ({document['control']['kind']}), not a result: "
               if "control" in document else "")
    return (f"{control}{document['dataset']}/{document['split']}, {document['visual']} + "
            f"{document['text']}, {what} (resolution: {document.get('resolution')}{details})")


def _rows(document: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(fold name, block) of each fold, then ("mean", the document)."""
    return [*((name.removeprefix("fold"), block) for name, block in document["per_fold"].items()),
            ("mean", document)]


def _header(names: Sequence[str]) -> list[str]:
    return ["| " + " | ".join(names) + " |", "|---" * len(names) + "|"]


def _heading(document: Mapping[str, Any], rule: str) -> list[str]:
    """What the table shows; a control's file first says it is one."""
    lines = []
    if "control" in document:
        lines.append(f"CONTROL ({document['control']['kind']}): {document['control']['note']}")
    lines.append(_title(document, "binary mIoU on unseen classes", f", rule: {rule}"))
    if "bootstrap" in document:
        boot = document["bootstrap"]
        lines.append(f"(low-high): {boot['level']:.0%} {boot['interval']} interval of "
                     f"{boot['resamples']} resamples of the {boot['images']} images "
                     f"(seed {boot['seed']})")
    if "controls" in document:
        lines += [f"{name.replace('_', ' ')}: {note}"
                  for name, note in document["controls"].items()]
    return lines


def markdown_table(document: Mapping[str, Any]) -> str:
    """The per-fold table with a mean row, and the ratios the targets are stated in."""
    rule = str(document.get("threshold"))
    rows = _rows(document)
    shown = [c for c in COLUMNS if c not in CONTROL_COLUMNS
             or any(scores(block)[c] is not None for _, block in rows)]
    names = [c.format(rule=rule) for c in shown]
    lines = [*_heading(document, rule), "",
             *_header(["fold", "episodes", *names])]
    for name, block in rows:
        episodes = block.get("episodes", {}).get("binary", "") if name != "mean" else ""
        figures, spans = scores(block), scores(block.get("ci95", {}))
        lines.append(f"| {name} | {episodes} | "
                     + " | ".join(_cell(figures[c], spans[c]) for c in shown) + " |")
    return "\n".join([*lines, "", _ratios_line(document, rule)])


HEADLINE_COLUMNS = ("unseen @0.5", "all-fg", "random text @0.5", "names shuffled @0.5",
                    "unseen {rule}", "names shuffled {rule}")


def headline_table(document: Mapping[str, Any]) -> str:
    """A front page's table: the mean over the folds alone (with its intervals), its episodes,
    the model beside its controls, and the ratios."""
    rule = str(document.get("threshold"))
    figures, spans = scores(document), scores(document.get("ci95", {}))
    shown = [c for c in HEADLINE_COLUMNS if figures[c] is not None]
    folds = document["per_fold"].values()
    episodes = sum(int(block.get("episodes", {}).get("binary", 0)) for block in folds)
    lines = [*_heading(document, rule), "",
             *_header(["", "episodes", *(c.format(rule=rule) for c in shown)]),
             f"| mean of {len(folds)} folds | {episodes} | "
             + " | ".join(_cell(figures[c], spans[c]) for c in shown) + " |"]
    return "\n".join([*lines, "", _ratios_line(document, rule)])


PRESENCE_COLUMNS = ("painted @0.5", "painted {rule}", "presence AUROC", "random text painted @0.5",
                    "random text presence AUROC")


def _presence(block: Mapping[str, Any]) -> dict[str, Figure]:
    """The presence table's figures of one fold (or the mean; of a ``ci95`` block: their
    intervals), keyed by ``PRESENCE_COLUMNS``."""
    paper = block.get(PAPER_RULE, block)
    random_text = ("baselines", RANDOM_TEXT, "binary")
    return {
        "painted @0.5": _miou(paper, "binary", "absent_painted_share"),
        "painted {rule}": _miou(block, "binary", "absent_painted_share"),
        "presence AUROC": _miou(block, "binary", "presence_auroc"),
        "random text painted @0.5": _miou(paper, *random_text, "absent_painted_share"),
        "random text presence AUROC": _miou(block, *random_text, "presence_auroc"),
    }


def presence_table(document: Mapping[str, Any]) -> str:
    """The binary mode's absent-name episodes: painted share and presence AUROC per fold (with
    their intervals when the file has them)."""
    rule = str(document.get("threshold"))
    lines = [_title(document, "binary episodes of unseen names ABSENT from the image: share "
                    "of the image painted; presence AUROC of the highest logit"), "",
             *_header(["fold", "absent episodes",
                       *(c.format(rule=rule) for c in PRESENCE_COLUMNS)])]
    for name, block in _rows(document):
        figures, spans = _presence(block), _presence(block.get("ci95", {}))
        count = block.get("episodes", {}).get("binary_absent", "") if name != "mean" else ""
        lines.append(f"| {name} | {count} | "
                     + " | ".join(_cell(figures[c], spans[c]) for c in PRESENCE_COLUMNS) + " |")
    return "\n".join(lines)


GZSL_COLUMNS = ("gamma", "seen", "unseen", "hIoU", "AUSUC", "absent painted", "hIoU at gamma 0",
                "random text hIoU", "random text AUSUC", "random text absent painted")


def gzsl_table(document: Mapping[str, Any]) -> str:
    """The generalized protocol: per form, each fold and the mean, the model beside random text."""
    lines = [_title(document, "generalized protocol: every pixel against every name at 0.5, "
                    "gamma chosen on train images",
                    f", trained form: {document.get('trained_form')}"), "",
             *_header(["fold", "form", *GZSL_COLUMNS])]
    for name, block in _rows(document):
        for form, figures in block.get("gzsl", {}).items():
            control = figures.get("controls", {}).get(RANDOM_TEXT, {})
            values = [figures.get("gamma"), figures.get("seen_miou"), figures.get("unseen_miou"),
                      figures.get("hiou"), figures.get("ausuc"),
                      figures.get("absent_painted_share"),
                      figures.get("uncalibrated", {}).get("hiou"), control.get("hiou"),
                      control.get("ausuc"), control.get("absent_painted_share")]
            lines.append(f"| {name} | {form} | " + " | ".join(map(_cell, values)) + " |")
    return "\n".join(lines)


PROTOCOL_COLUMNS = ("text", "binary unseen @0.5", "all-fg", "random text @0.5", "presence AUROC",
                    "absent painted @0.5", "gzsl form", "seen", "unseen", "hIoU",
                    "random text hIoU")


def protocols_table(documents: Sequence[Mapping[str, Any]]) -> str:
    """One row per metrics file (mean over its folds): the binary protocol's unseen mIoU and its
    baselines, the absent-name figures, and the generalized protocol per form."""
    first = documents[0]
    lines = [f"{first['dataset']}/{first['split']}, {first['visual']}: the binary protocol (one "
             "name that is in the image) beside the generalized one (every pixel against every "
             "name, seen and unseen), mean over the folds", "", *_header(PROTOCOL_COLUMNS)]
    for document in documents:
        figures, presence = scores(document), _presence(document)
        binary = [figures["unseen @0.5"], figures["all-fg"], figures["random text @0.5"],
                  presence["presence AUROC"], presence["painted @0.5"]]
        for form, gzsl_block in document.get("gzsl", {"-": {}}).items():
            control = gzsl_block.get("controls", {}).get(RANDOM_TEXT, {})
            gzsl = [gzsl_block.get("seen_miou"), gzsl_block.get("unseen_miou"),
                    gzsl_block.get("hiou"), control.get("hiou")]
            lines.append(f"| {_trained(document)} | " + " | ".join(map(_cell, binary))
                         + f" | {form} | " + " | ".join(map(_cell, gzsl)) + " |")
    return "\n".join(lines)


def _trained(document: Mapping[str, Any]) -> str:
    """A row's text source, and the training objective when it is not one name at a time."""
    joint = document.get("trained_form") == "joint"  # only after vocabulary episodes
    return f"{document['text']}" + (" (vocabulary episodes)" if joint else "")


def tables(document: Mapping[str, Any]) -> str:
    """Every table the document has data for, separated by blank lines."""
    out = []
    if "binary" in document:  # the model's binary scores
        out.append(markdown_table(document))
        if "presence_auroc" in document.get("binary", {}):
            out.append(presence_table(document))
    if "gzsl" in document:
        out.append(gzsl_table(document))
    if not out:
        raise KeyError("no binary nor gzsl figures")
    return "\n\n".join(out)


def main(argv: Sequence[str] | None = None) -> None:
    """Print the table of each metrics file named on the command line (one ``error:`` line and
    exit 1 for a file that is missing or not a fusioner-evaluate metrics file)."""
    for path in argv if argv is not None else sys.argv[1:]:
        try:
            table = tables(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError,
                AttributeError) as exc:
            sys.exit(f"error: {path}: not a readable metrics file ({type(exc).__name__}: "
                     f"{' '.join(str(exc).split())})")
        print(table)


if __name__ == "__main__":
    main()
