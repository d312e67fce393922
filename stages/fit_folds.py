"""``fusioner-fit-folds``: one ``fusioner-fit`` per fold (and, for cross-validation, per image
split), side by side (pipeline.train.folds)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pipeline.errors import FusionerError
from pipeline.train.folds import FoldPlan, FoldRunner
from stages import fit as fit_stage
from stages._cli import OneLineCommand, one_line_errors, setup_logging

_PER_FOLD = ("--fold", "--out", "--image-split", "--image-splits")


def _folds(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        folds = tuple(int(f) for f in value.split(",") if f.strip())
    except ValueError as exc:
        raise click.BadParameter(f"expected comma-separated fold numbers, e.g. 0,1,2,3: {value}"
                                 ) from exc
    if not folds or len(set(folds)) != len(folds):
        raise click.BadParameter(f"expected distinct fold numbers, e.g. 0,1,2,3: {value}")
    return folds


@click.command(cls=OneLineCommand,
               context_settings={"show_default": True, "ignore_unknown_options": True})
@click.option("--folds", required=True, callback=_folds, help="Folds to fit, e.g. 0,1,2,3.")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Parent folder: fold k's run goes to <out>/fold<k> (<out>/split<s>/fold<k> "
                   "with --image-splits).")
@click.option("--image-splits", type=click.IntRange(min=0), default=0,
              help="Cross-validation: also one run per image split 0..N-1 of the --train-split "
                   "store (each holds out image split s), N x folds runs in all; 0: no image "
                   "splits.")
@click.option("--jobs", type=click.IntRange(min=0), default=0,
              help="Fold processes at once (0: one per CPU core, at most one per fold); the "
                   "cores are shared out as torch threads.")
@click.argument("fit_options", nargs=-1, type=click.UNPROCESSED)
@one_line_errors
def main(folds: tuple[int, ...], out: Path, jobs: int, image_splits: int,
         fit_options: tuple[str, ...]) -> None:
    """Train one fusion module per fold (per image split and fold with --image-splits), JOBS
    processes at a time, with FIT_OPTIONS each.

    FIT_OPTIONS are fusioner-fit's (all but --fold, --out and the image split). Examples:
    fusioner-fit-folds --folds 0,1,2,3 --out models/coco128 --dataset coco128 --epochs 15;
    fusioner-fit-folds --folds 0,1,2,3 --image-splits 4 --out models/coco128_cv
    --dataset coco128 --train-split all --val-split all --epochs 15
    """
    setup_logging()
    clashing = [o for o in fit_options if o.split("=")[0] in _PER_FOLD]
    if clashing:
        raise FusionerError(f"{', '.join(clashing)}: set per run; use --folds, --image-splits "
                            "and --out")
    if image_splits == 1:
        raise FusionerError("--image-splits needs 2 or more splits (0: no image splits)")
    fit = [sys.executable, "-m", fit_stage.__name__]
    if image_splits:
        commands = {f"split {s} fold {f}": [*fit, "--fold", str(f), "--image-split", str(s),
                                            "--image-splits", str(image_splits), "--out",
                                            str(out / f"split{s}" / f"fold{f}"), *fit_options]
                    for s in range(image_splits) for f in folds}
    else:
        commands = {f"fold {f}": [*fit, "--fold", str(f), "--out", str(out / f"fold{f}"),
                                  *fit_options] for f in folds}
    FoldRunner(commands, FoldPlan.for_machine(len(commands), jobs)).run()


if __name__ == "__main__":
    main()
