"""The front-page picture: a few evaluation overlays (image | truth | prediction) in one PNG.

``python -m pipeline.docs.figure`` stacks overlays that ``fusioner-evaluate`` wrote (by default
the first of each coco128 fold in ``plots/coco128/overlays``: val images, names the fold's
module never trained on) into ``docs/assets/coco128-unseen.png``, scaled to one width and
reduced to a 256-colour palette so that it stays small.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from pipeline.errors import FusionerError

OVERLAYS = Path("plots/coco128/overlays")
OUT = Path("docs/assets/coco128-unseen.png")
GAP = 6  # white pixels between rows


def first_per_fold(folder: Path, count: int) -> list[Path]:
    """The first overlay (by name) of each of the first ``count`` folds, ``fold<k>_*.png``;
    in a single-fold folder (no prefix), its first ``count`` overlays."""
    paths = sorted(folder.glob("*.png"))
    if not paths:
        raise FusionerError(f"{folder}: no overlay PNGs (run fusioner-evaluate first)")
    firsts: dict[str, Path] = {}
    for path in paths:
        fold = re.match(r"(fold\d+)_", path.name)
        firsts.setdefault(fold[1] if fold else path.name, path)
    return list(firsts.values())[:count]


def stack(paths: Sequence[Path], width: int) -> Image.Image:
    """The images one under the other, each scaled to ``width``, as a 256-colour palette PNG."""
    rows = []
    for path in paths:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
        height = max(1, round(rgb.height * width / rgb.width))
        rows.append(rgb.resize((width, height), Image.Resampling.LANCZOS))
    canvas = Image.new("RGB", (width, sum(r.height for r in rows) + GAP * (len(rows) - 1)),
                       (255, 255, 255))
    top = 0
    for row in rows:
        canvas.paste(row, (0, top))
        top += row.height + GAP
    return canvas.quantize(colors=256, method=Image.Quantize.MEDIANCUT)


def main(argv: Sequence[str] | None = None) -> None:
    """Write the picture; ``--image NAME`` (repeatable) picks overlays instead of the default."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.docs.figure",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--overlays", type=Path, default=OVERLAYS, help="overlay folder")
    parser.add_argument("--out", type=Path, default=OUT, help="the PNG to write")
    parser.add_argument("--image", action="append", default=[],
                        help="an overlay's file name in --overlays (repeat for several)")
    parser.add_argument("--count", type=int, default=4, help="rows without --image")
    parser.add_argument("--width", type=int, default=900, help="width in pixels")
    args = parser.parse_args(argv)
    try:
        paths = ([args.overlays / name for name in args.image] if args.image
                 else first_per_fold(args.overlays, args.count))
        picture = stack(paths, args.width)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        picture.save(args.out, optimize=True)
    except (FusionerError, OSError) as exc:
        sys.exit(f"error: {exc}")
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB) from "
          + ", ".join(p.name for p in paths))


if __name__ == "__main__":
    main()
