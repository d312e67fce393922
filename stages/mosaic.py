"""``fusioner-mosaic``: build one fold's Mosaic-4 images from a YOLO-seg dataset's instances."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import click

from pipeline.data import MOSAIC_OF, create_dataset
from pipeline.data.instance_mosaic import DEFAULT_MIN_SIDE, build_fold_mosaics
from pipeline.data.splits import INTERLEAVED_FOLDS
from stages._cli import OneLineCommand, one_line_errors, setup_logging

log = logging.getLogger("fusioner.mosaic")


@click.command(cls=OneLineCommand, context_settings={"show_default": True})
@click.option("--dataset", type=click.Choice(sorted(MOSAIC_OF)), default="coco128",
              help="YOLO-seg source of the instance crops.")
@click.option("--data-root", type=click.Path(path_type=Path), default=None,
              help="The source's root (default: its folder under the data root).")
@click.option("--fold", type=click.IntRange(0, INTERLEAVED_FOLDS - 1), required=True,
              help="Zero-shot fold: train mosaics show its seen classes, val its unseen ones.")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Output folder (train/ and val/ are replaced whole).")
@click.option("--train-split", default="train", help="Source split of the training crops.")
@click.option("--val-split", default="val", help="Source split of the evaluation crops.")
@click.option("--train-images", type=click.IntRange(min=1), default=384)
@click.option("--val-images", type=click.IntRange(min=1), default=96)
@click.option("--tile", type=click.IntRange(min=1), default=126,
              help="Tile side in pixels (a mosaic is 2 x 2 tiles).")
@click.option("--min-side", type=click.IntRange(min=1), default=DEFAULT_MIN_SIDE,
              help="Leave out instances whose box has a shorter side (source pixels).")
@click.option("--seed", type=int, default=0)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@one_line_errors
def main(dataset: str, data_root: Path | None, fold: int, out: Path, train_split: str,
         val_split: str, train_images: int, val_images: int, tile: int, min_side: int,
         seed: int, verbose: bool) -> None:
    """Write fold FOLD's mosaics of instance crops to OUT/train and OUT/val.

    Then: fusioner-extract --dataset coco128_mosaic --data-root OUT --split train --split val
    --cache-dir <a folder of this fold's own>, and fusioner-fit / fusioner-evaluate with
    --dataset coco128_mosaic --fold FOLD on that cache.
    """
    setup_logging(verbose)
    started = time.perf_counter()
    train = create_dataset(dataset, train_split, data_root)
    val = create_dataset(dataset, val_split, data_root)
    split = build_fold_mosaics(train, val, out, fold, train_images, val_images, seed,  # type: ignore[arg-type]
                               tile, min_side)
    log.info("fold %d of %s: %d train mosaics (%d seen classes), %d val mosaics (%d unseen) "
             "-> %s as dataset '%s' (%.1fs)", fold, dataset, train_images, len(split.seen),
             val_images, len(split.unseen), out, MOSAIC_OF[dataset],
             time.perf_counter() - started)


if __name__ == "__main__":
    main()
