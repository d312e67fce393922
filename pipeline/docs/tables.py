"""Results tables in README.md and docs/*.md, generated from committed metrics snapshots.

A generated table sits between two marker comments, named after an entry of ``TABLES``::

    <!-- table: headline -->
    (the first table of ``python -m pipeline.evaluation.summary docs/results/metrics/X.json``)
    <!-- /table -->

``python -m pipeline.docs.tables`` rewrites every such block; ``--check`` only compares and
exits 1 naming each file whose tables differ. ``--snapshot`` first copies the pipeline's metrics
files (``metrics/``, git-ignored DVC outputs) over the committed snapshots. Which snapshot (and
which renderer) feeds a table is one line of ``TABLES``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.docs.absent_names import absent_names_table
from pipeline.errors import FusionerError
from pipeline.evaluation.summary import headline_table, markdown_table, protocols_table
from pipeline.evaluation.summary import tables as every_table

SNAPSHOTS = Path("docs/results/metrics")


@dataclass(frozen=True)
class Table:
    """A generated table: the committed metrics snapshot it is made from, how it is rendered,
    and the pipeline output the snapshot is a copy of (None: a snapshot ``dvc repro`` does not
    write, made by the commands its page gives; ``--snapshot`` leaves it as it is)."""

    snapshot: Path
    source: Path | None
    render: Callable[[Mapping[str, Any]], str] = markdown_table

    def text(self, root: Path) -> str:
        """The table as Markdown, rendered from the snapshot under ``root``."""
        return self.render(_read(root / self.snapshot))


@dataclass(frozen=True)
class Comparison:
    """A generated table made from several metrics snapshots at once (e.g. one row each)."""

    parts: tuple[Table, ...]
    render: Callable[[Sequence[Mapping[str, Any]]], str]

    def text(self, root: Path) -> str:
        """The table as Markdown, rendered from the parts' snapshots under ``root``."""
        return self.render([_read(root / part.snapshot) for part in self.parts])


def _read(path: Path) -> Mapping[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FusionerError(f"{path}: not a readable metrics snapshot ({exc})") from exc


COCO128 = Table(SNAPSHOTS / "coco128.json", Path("metrics/coco128.json"))
COCO128_CLIP_TABLE = Table(SNAPSHOTS / "coco128_clip_table.json",
                           Path("metrics/coco128_clip_table.json"))
COCO128_CV = Table(SNAPSHOTS / "coco128_cv.json", Path("metrics/coco128_cv.json"))
CAMVID = Table(SNAPSHOTS / "camvid.json", Path("metrics/metrics.json"))
COCO128_VOCABULARY = Table(SNAPSHOTS / "coco128_vocabulary.json", None)  # docs/vocabularies.md
COCO128_CLIP_TABLE_VOCABULARY = Table(SNAPSHOTS / "coco128_clip_table_vocabulary.json", None)
ABSENT_NAMES = Table(SNAPSHOTS / "coco128_absent_names.json", None, absent_names_table)  # bench

TABLES: dict[str, Table | Comparison] = {
    "headline": replace(COCO128_CV, render=headline_table),  # README's: one line to change it
    "protocols": Comparison((COCO128, COCO128_CLIP_TABLE), protocols_table),
    "coco128_cv": replace(COCO128_CV, render=every_table),
    "coco128": replace(COCO128, render=every_table),
    "coco128_clip_table": replace(COCO128_CLIP_TABLE, render=every_table),
    "camvid": CAMVID,
    "vocabulary_objective": Comparison((COCO128, COCO128_VOCABULARY, COCO128_CLIP_TABLE,
                                        COCO128_CLIP_TABLE_VOCABULARY), protocols_table),
    "absent_names": ABSENT_NAMES,  # python -m bench.vocabulary ... --out (docs/vocabularies.md)
}

DOCUMENTS = (Path("README.md"), Path("docs"))  # files, and folders searched for *.md
BLOCK = re.compile(r"(?P<open><!-- table: (?P<name>[\w.-]+) -->\n)(?P<body>.*?)"
                   r"(?P<close><!-- /table -->)", re.S)
OPENING = re.compile(r"<!-- table: ")


def documents(root: Path) -> list[Path]:
    """README.md and every Markdown file under docs/ (relative to ``root``), sorted."""
    found: list[Path] = []
    for entry in DOCUMENTS:
        path = root / entry
        found += sorted(path.rglob("*.md")) if path.is_dir() else [path] if path.exists() else []
    return found


def rewrite(text: str, root: Path, tables: Mapping[str, Table | Comparison] = TABLES,
            where: str = "<text>") -> str:
    """``text`` with every marked block replaced by its table (a blank line either side)."""
    if len(OPENING.findall(text)) != len(BLOCK.findall(text)):
        raise FusionerError(f"{where}: a '<!-- table: NAME -->' marker without its "
                            "'<!-- /table -->' (or a name other than letters, digits, ._-)")

    def fill(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in tables:
            raise FusionerError(f"{where}: unknown table {name!r} (known: {', '.join(tables)})")
        return f"{match['open']}\n{tables[name].text(root)}\n\n{match['close']}"

    return BLOCK.sub(fill, text)


def stale(root: Path, tables: Mapping[str, Table | Comparison] = TABLES) -> dict[Path, str]:
    """The documents whose tables differ from their snapshots, with their regenerated text."""
    changed: dict[Path, str] = {}
    for path in documents(root):
        text = path.read_text(encoding="utf-8")
        new = rewrite(text, root, tables, str(path.relative_to(root)))
        if new != text:
            changed[path] = new
    return changed


def snapshot(root: Path, tables: Mapping[str, Table | Comparison] = TABLES) -> list[Path]:
    """Copy each table's pipeline output over its committed snapshot; the snapshots written."""
    written: list[Path] = []
    parts = [part for t in tables.values()
             for part in (t.parts if isinstance(t, Comparison) else (t,))]
    for table in {t.snapshot: t for t in parts if t.source is not None}.values():
        source = root / table.source
        if not source.is_file():
            raise FusionerError(f"{source}: missing (run `dvc repro` first)")
        json.loads(source.read_text(encoding="utf-8"))  # refuse a broken file before copying
        (root / table.snapshot).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, root / table.snapshot)
        written.append(table.snapshot)
    return written


def main(argv: Sequence[str] | None = None) -> None:
    """Rewrite (or, with ``--check``, compare) the generated tables of README.md and docs/."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.docs.tables",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if a committed table differs")
    parser.add_argument("--snapshot", action="store_true",
                        help="first copy metrics/*.json over docs/results/metrics/")
    parser.add_argument("--root", type=Path, default=Path("."), help="the repository root")
    args = parser.parse_args(argv)
    try:
        for path in snapshot(args.root) if args.snapshot else []:
            print(f"snapshot: {path}")
        changed = stale(args.root)
    except (FusionerError, OSError, UnicodeDecodeError) as exc:
        sys.exit(f"error: {exc}")
    for path, text in changed.items():
        if args.check:
            print(f"stale: {path.relative_to(args.root)} (run `python -m pipeline.docs.tables`)")
        else:
            path.write_text(text, encoding="utf-8")
            print(f"rewrote: {path.relative_to(args.root)}")
    if args.check and changed:
        sys.exit(1)


if __name__ == "__main__":
    main()
