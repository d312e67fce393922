"""``fusioner-evaluate``: zero-shot mIoU / FB-IoU on a fold's unseen classes, from the cache."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.evaluation import (
    MODES,
    PAPER_RULE,
    run_folds,
    source_dataset,
    write_outputs,
)
from pipeline.evaluation.bootstrap import RESAMPLES, Resampler
from pipeline.evaluation.crossval import (
    evaluated_images,
    open_evaluation,
    overlays_per_split,
    pool,
    record_bytes,
    refuse_pooled_gzsl,
)
from pipeline.evaluation.open_vocabulary import (
    FORM_CHOICES,
    parse_modes,
    resolve_calibrations,
    run_open_vocabulary,
    scored_forms,
)
from pipeline.store import StoreLocation
from pipeline.thresholds import Threshold
from stages._cli import (
    OneLineCommand,
    cache_dir_options,
    one_line_errors,
    progress_option,
    resolve_device,
    setup_logging,
    threshold_option,
)


def _line(name: str, scores: dict) -> str:
    extra = {"auroc": "AUROC", "presence_auroc": "presence AUROC",
             "absent_painted_share": "absent-name painted share"}
    return " ".join(f"{mode} mIoU {s['miou']} FB-IoU {s['fb_iou']}"
                    + "".join(f" {label} {s[key]}" for key, label in extra.items() if key in s)
                    for mode, s in scores.items() if mode in MODES) + f"  [{name}]"


def _gzsl_line(form: str, name: str, s: dict) -> str:
    gamma = f"gamma {s['gamma']}, " if "gamma" in s else ""
    return (f"gzsl {form}: seen mIoU {s['seen_miou']} unseen mIoU {s['unseen_miou']} hIoU "
            f"{s['hiou']} ({gamma}AUSUC {s['ausuc']}, absent-name painted share "
            f"{s['absent_painted_share']})  [{name}]")


@click.command(cls=OneLineCommand, context_settings={"show_default": True})
@click.option("--checkpoint", "checkpoints", type=click.Path(path_type=Path), multiple=True,
              default=[Path("models/fusion/checkpoint.pt")],
              help="Fusion checkpoint; repeat it (one per fold) to report each fold and the mean. "
                   "A folder: every checkpoint.pt below it. Checkpoints of image splits (CV) "
                   "are scored on their held-out images and pooled per fold.")
@click.option("--control-checkpoint", "controls", type=click.Path(path_type=Path), multiple=True,
              help="Name-shuffled control (trained with --text shuffled:<encoder>) of each "
                   "--checkpoint (same fold and image split; a folder: every checkpoint.pt "
                   "below it), scored on the same episodes as 'name_shuffled'.")
@cache_dir_options
@click.option("--split", default="val", help="Store split to evaluate.")
@click.option("--dataset", default=None,
              help="Evaluate on this dataset's stores (same class names) instead of the one "
                   "the checkpoints trained on, e.g. coco128_mosaic for coco128 checkpoints.")
@click.option("--data-root", type=click.Path(path_type=Path), default=None,
              help="Dataset folder, for the overlay images [default: $FUSIONER_DATA/<dataset>].")
@click.option("--mode", default="both",
              help="Protocols, comma-separated: binary (the paper's one class name per pass, "
                   "with absent-name episodes and presence AUROC beside it), multiclass (all "
                   "unseen names at once), gzsl (every pixel against every name, seen and "
                   "unseen); both = binary,multiclass; all = the three.")
@click.option("--form", type=click.Choice(FORM_CHOICES), default="auto",
              help="gzsl forward-pass form: each name alone, all names jointly in one pass, "
                   "both, or auto: the form the checkpoint was trained in.")
@click.option("--baselines/--no-baselines", default=True,
              help="Also score all-foreground and random-text-embedding baselines.")
@click.option("--seen-reference/--no-seen-reference", default=True,
              help="Also score the model on the fold's SEEN classes (same protocol), for scale.")
@click.option("--threshold", default="0.5", callback=threshold_option,
              help="Foreground rule: a probability (the paper's 0.5), or 'adaptive': per "
                   "probability map min(0.5, mean + 2 std). Other rules also score 0.5.")
@click.option("--resolution", type=click.Choice(["original", "cached"]), default="original",
              help="Score at each image's original mask size (as published; reads the masks "
                   "from --data-root) or at the store's cached label size (no dataset needed).")
@click.option("--out-metrics", type=click.Path(path_type=Path),
              default=Path("metrics/metrics.json"), help="Metrics file (dvc metrics).")
@click.option("--out-plots", type=click.Path(path_type=Path), default=Path("plots"),
              help="Folder for per_class_iou.csv (dvc plots) and overlays/.")
@click.option("--num-overlays", type=int, default=6,
              help="Images (showing unseen classes) drawn as image | truth | prediction.")
@click.option("--batch-size", type=int, default=16,
              help="Images per step, and binary episodes per forward pass.")
@click.option("--num-workers", type=int, default=0, help="DataLoader worker processes (spawn).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto")
@click.option("--seed", type=int, default=0, help="Seed of the random-text baseline.")
@click.option("--bootstrap", "resamples", type=click.IntRange(min=0), default=RESAMPLES,
              help="Image-bootstrap resamples for the 95% intervals (0: none).")
@click.option("--bootstrap-seed", type=int, default=0, help="Seed of the image resamples.")
@progress_option
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@one_line_errors
def main(checkpoints: tuple[Path, ...], controls: tuple[Path, ...], cache_dir: StoreLocation,
         split: str, dataset: str | None, data_root: Path | None, mode: str, form: str,
         baselines: bool,
         seen_reference: bool,
         threshold: Threshold, resolution: str, out_metrics: Path,
         out_plots: Path, num_overlays: int, batch_size: int, num_workers: int, device: str,
         seed: int, resamples: int, bootstrap_seed: int, no_progress: bool,
         verbose: bool) -> None:
    """Score fusion checkpoints on their folds' unseen classes, with baselines, from the cache.

    Example: fusioner-evaluate --checkpoint models/fusion/checkpoint.pt --split val --mode both
    (--mode binary,gzsl: the paper's protocol and the generalized one, docs/open-vocabulary.md)
    """
    setup_logging(verbose)
    if batch_size < 1 or num_overlays < 0:
        raise click.BadParameter("need --batch-size >= 1 and --num-overlays >= 0")
    protocols = parse_modes(mode)
    modes = tuple(m for m in protocols if m in MODES)
    folds = open_evaluation(checkpoints, controls, cache_dir, split, resolve_device(device),
                            dataset, threshold)
    if "gzsl" in protocols:
        refuse_pooled_gzsl(folds)
    source = None
    if num_overlays or resolution == "original":
        source, folds = source_dataset(folds, split, data_root, resolution == "original")
    calibrations = [resolve_calibrations(fold, scored_forms(fold.meta, form), cache_dir,
                                         batch_size, not no_progress)
                    if "gzsl" in protocols else {} for fold in folds]
    results = run_folds(folds, modes=modes, baselines=baselines,  # type: ignore[arg-type]
                        seen_reference=seen_reference, seed=seed,
                        batch_size=batch_size, threshold=threshold, num_workers=num_workers,
                        num_overlays=overlays_per_split(num_overlays, folds),
                        progress=not no_progress)
    run_open_vocabulary(results, calibrations, presence="binary" in modes, baselines=baselines,
                        seed=seed, threshold=threshold, batch_size=batch_size,
                        num_workers=num_workers, progress=not no_progress)
    results = pool(results)
    resampler = (Resampler.draw(evaluated_images(results), resamples, bootstrap_seed)
                 if resamples else None)
    click.echo(f"per-image records: {record_bytes(results) / 2**20:.2f} MiB", err=True)
    written = write_outputs(results, split, out_metrics, out_plots, source, threshold, resampler)
    document = written["metrics"]
    if "control" in document:
        click.echo(f"CONTROL ({document['control']['kind']}): {document['control']['note']}")
    click.echo(f"{document['dataset']}/{split} folds {document['folds']} unseen "
               f"{document['unseen_classes']} ({document['units']}):")
    if modes:
        click.echo("  " + _line("fusioner", document))
    if PAPER_RULE in document:
        click.echo("  " + _line(f"fusioner, {PAPER_RULE}", document[PAPER_RULE]))
    for name, scores in document.get("baselines", {}).items():
        control = ", a control" if name in document.get("controls", {}) else ""
        click.echo("  " + _line(name + control, scores))
    if "seen_reference" in document:
        click.echo("  " + _line("fusioner on SEEN classes, for reference",
                                document["seen_reference"]))
    for scored, block in document.get("gzsl", {}).items():
        click.echo("  " + _gzsl_line(scored, "fusioner", block))
        for name, figures in block.get("controls", {}).items():
            click.echo("  " + _gzsl_line(scored, name, figures))
    click.echo(f"wrote {out_metrics}, {out_plots / 'per_class_iou.csv'}, "
               f"{len(written['overlays'])} overlays in {out_plots / 'overlays'}")


if __name__ == "__main__":
    main()
