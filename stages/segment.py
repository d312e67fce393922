"""``fusioner-segment``: segment your own images with your own class names.

Everything is checked before the first file is written (classes, every image, the checkpoint and
its encoder pair); each image's files then appear together (temporary names, renamed).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import cast

import click

from pipeline.data.base import load_rgb_image
from pipeline.errors import FusionerError
from pipeline.segmentation import (
    Segmenter,
    check_class_names,
    check_unique_stems,
    load_segmenter,
)
from pipeline.segmentation.outputs import describe_shares, write_outputs
from pipeline.segmentation.vocabulary import (
    check_vocabulary_options,
    load_table,
    plan_competition,
    segment_in_vocabulary,
)
from pipeline.store import StoreLocation
from pipeline.thresholds import Threshold
from stages._cli import (
    OneLineCommand,
    cache_dir_options,
    one_line_errors,
    parse_size,
    progress_option,
    resolve_device,
    segmenter_options,
    setup_logging,
    threshold_option,
)

log = logging.getLogger("fusioner.segment")


@click.command(cls=OneLineCommand, context_settings={"show_default": True})
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@segmenter_options
@click.option("--classes", required=True,
              help='Comma-separated class names, e.g. "car,road,pole" (unique, any words).')
@click.option("--out", type=click.Path(path_type=Path), default=Path("segments"),
              help="Output folder: <stem>_label.png, <stem>_overlay.png "
                   "(and <stem>_prob_<class>.png).")
@click.option("--background", type=click.Choice(["threshold", "prompt"]), default="threshold",
              help="Pixels of no class: those whose best probability is below --threshold; "
                   "'prompt' also queries a 'background' class and pixels it wins get no class.")
@click.option("--threshold", default="0.5", callback=threshold_option,
              help="Least probability for a pixel to take a class (fusion: sigmoid per class; "
                   "maskclip: softmax share among the classes), or 'adaptive': per class "
                   "min(0.5, mean + 2 std of its map), for names the model never trained on.")
@click.option("--mode", type=click.Choice(["resize", "slide"]), default="resize",
              help="resize: whole image at the encoder's input size, scores upsampled to the "
                   "image size; slide: encoder-sized windows at the image's own resolution.")
@click.option("--vocabulary", default=None, metavar="NAME|FILE",
              help="The classes compete with this vocabulary's other names (coco, lvis, "
                   "objects365, openimages, or a names file: one name a line) under the "
                   "checkpoint's calibration; pixels won by a name not in --classes are no "
                   "class. Embedded once with the checkpoint's text encoder, cached under "
                   "--cache-dir.")
@cache_dir_options
@progress_option
@click.option("--save-probs", is_flag=True, help="Also write per-class probability maps.")
@click.option("--image-size", default=None, callback=parse_size,
              help="maskclip only: CLIP input HxW [default: 240x320]; fusion uses the "
                   "checkpoint's.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@one_line_errors
def main(images: tuple[Path, ...], classes: str, checkpoint: Path | None, method: str, out: Path,
         background: str, threshold: Threshold, mode: str, vocabulary: str | None,
         cache_dir: StoreLocation, no_progress: bool, save_probs: bool, weights: Path | None,
         text_weights: Path | None, random_init: bool, image_size: tuple[int, int] | None,
         device: str, verbose: bool) -> None:
    """Segment IMAGES into the given class names; writes label and overlay PNGs per image.

    Example: fusioner-segment street.jpg --classes "car,road,pole,pedestrian"
    --checkpoint models/dino_vits16-minilm_l6/checkpoint.pt --out segments/
    """
    setup_logging(verbose)
    names = check_class_names(classes, background)  # type: ignore[arg-type]
    if method == "fusion" and checkpoint is None:
        raise FusionerError("--method fusion needs --checkpoint PATH (fusioner-fit's "
                            "checkpoint.pt), or use --method maskclip")
    if method == "fusion" and image_size:
        raise FusionerError("--image-size is for --method maskclip; a fusion checkpoint runs "
                            "at the size it was trained at")
    if method == "maskclip" and checkpoint is not None:
        log.warning("--checkpoint is not used by --method maskclip (training-free)")
    stems = check_unique_stems(images)
    for path in images:  # every image must decode before anything is written
        load_rgb_image(path)
    if vocabulary is not None:
        check_vocabulary_options(method, background, threshold)
    segmenter = load_segmenter(method, checkpoint, weights, text_weights,  # type: ignore[arg-type]
                               random_init, resolve_device(device), image_size)
    plan = None
    if vocabulary is not None:  # names checked against the vocabulary before any image
        fusion = cast(Segmenter, segmenter)
        plan = plan_competition(fusion, names, load_table(fusion, vocabulary, cache_dir))
    for path, stem in zip(images, stems, strict=True):
        if plan is None:
            result = segmenter.segment(load_rgb_image(path), names, threshold,
                                       background, mode)  # type: ignore[arg-type]
        else:
            result = segment_in_vocabulary(fusion, load_rgb_image(path), plan,
                                           float(threshold), mode,  # type: ignore[arg-type]
                                           progress=not no_progress)
        written = write_outputs(result, out, stem, save_probs)
        click.echo(f"{path}: {describe_shares(result)} -> {written[1]}")


if __name__ == "__main__":
    main()
