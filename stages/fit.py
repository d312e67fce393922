"""``fusioner-fit``: train the fusion module from the cached stores alone (no encoder is built)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from pipeline.train import FitConfig, fit
from pipeline.train.defaults import choose_run
from pipeline.train.episodes import EPISODE_CLASSES
from stages._cli import (
    OneLineCommand,
    cache_dir_options,
    one_line_errors,
    progress_option,
    setup_logging,
)

DEFAULTS = FitConfig(visual="", text="")


def _channels(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        return tuple(int(c) for c in value.split(",") if c.strip())
    except ValueError as exc:
        raise click.BadParameter(f"expected comma-separated ints, e.g. 128,64,32: {value}") from exc


@click.command(cls=OneLineCommand, context_settings={"show_default": True})
@click.option("--visual", "--backbone", "visual", default=None,
              help="Visual encoder slug (or alias, e.g. dino) of the cached features "
                   "[default: params.yaml's pair.visual in the project, else dinov2_vits14].")
@click.option("--text", "--text-encoder", "text", default=None,
              help="Text encoder slug (or alias, e.g. minilm; clip_table, table:PATH) of the "
                   "cached class embeddings "
                   "[default: params.yaml's pair.text in the project, else minilm_l6].")
@click.option("--dataset", default=None,
              help="Dataset of the stores [default: params.yaml's data.dataset, else camvid].")
@click.option("--fold", type=int, default=DEFAULTS.fold, help="Zero-shot fold (seen/unseen split).")
@cache_dir_options
@click.option("--out", type=click.Path(path_type=Path), default=DEFAULTS.out,
              help="Run folder: checkpoint.pt, last.pt, train_log.json, train_metrics.json.")
@click.option("--train-split", default=DEFAULTS.train_split, help="Store split to train on.")
@click.option("--val-split", default=DEFAULTS.val_split,
              help="Store split for the per-epoch seen-class mIoU ('' = none; skipped if absent).")
@click.option("--val-every", type=click.IntRange(min=1), default=DEFAULTS.val_every,
              help="Validate after every N-th epoch and after the last (saves time; the model "
                   "is the same).")
@click.option("--epochs", type=int, default=DEFAULTS.epochs)
@click.option("--batch-size", type=int, default=DEFAULTS.batch_size,
              help="Images per step (per process).")
@click.option("--lr", type=float, default=DEFAULTS.lr, help="Peak AdamW learning rate.")
@click.option("--min-lr", type=float, default=DEFAULTS.min_lr, help="Cosine end learning rate.")
@click.option("--weight-decay", type=float, default=DEFAULTS.weight_decay)
@click.option("--weight-decay-end", type=float, default=None,
              help="Cosine weight-decay end value (paper 0.4) [default: constant].")
@click.option("--warmup-epochs", type=float, default=DEFAULTS.warmup_epochs)
@click.option("--layers", type=int, default=DEFAULTS.layers, help="Fusion blocks (paper 12).")
@click.option("--dim", type=int, default=DEFAULTS.dim, help="Fusion width (paper 512).")
@click.option("--heads", type=int, default=DEFAULTS.heads, help="Attention heads (paper 8).")
@click.option("--mlp-ratio", type=float, default=DEFAULTS.mlp_ratio)
@click.option("--drop-path", type=float, default=DEFAULTS.drop_path)
@click.option("--decoder-channels", default="", callback=_channels,
              help="Up-stage widths, e.g. 128,64,32 [default: dim/2,dim/4,dim/8].")
@click.option("--embed-dim", type=int, default=DEFAULTS.embed_dim,
              help="Pixel/class embedding width of the cosine head (0 = dim, the paper's).")
@click.option("--temperature", type=float, default=DEFAULTS.temperature)
@click.option("--episode", type=click.Choice(EPISODE_CLASSES), default=DEFAULTS.episode,
              help="Classes per training image: the seen ones present, all seen classes, "
                   "one present seen class redrawn every epoch (as the binary evaluation asks), "
                   "or 'vocabulary': all seen names in one pass with a per-pixel softmax over "
                   "[background, names] (each pixel's own name must beat the others).")
@click.option("--unseen-as", type=click.Choice(["ignore", "background"]),
              default=DEFAULTS.unseen_as,
              help="Unseen-class pixels in training: ignored, or background (negatives).")
@click.option("--negatives", type=click.IntRange(min=0), default=DEFAULTS.negatives,
              help="Also query this many seen classes ABSENT from each training image (empty "
                   "masks), redrawn every epoch; teaches that a name with nothing to show gets "
                   "no pixels.")
@click.option("--absent-rate", type=click.FloatRange(min=0, max=1, max_open=True),
              default=DEFAULTS.absent_rate,
              help="With --episode single: the share of episodes that ask for a seen class "
                   "ABSENT from the image (empty mask) instead of a present one.")
@click.option("--dice-weight", type=click.FloatRange(min=0), default=DEFAULTS.dice_weight,
              help="Loss = BCE + this x soft Dice per class mask (lifts uncertain, e.g. unseen, "
                   "classes' masks towards their true size at p=0.5).")
@click.option("--text-noise", type=click.FloatRange(min=0), default=DEFAULTS.text_noise,
              help="Gaussian noise on training text embeddings, as a fraction of their norm.")
@click.option("--block-mix", type=click.IntRange(min=0), default=DEFAULTS.block_mix,
              help="Shuffle store shards, then images within windows of this many shards "
                   "(each shard read once per epoch); 0: shuffle single images.")
@click.option("--views", type=click.IntRange(min=0), default=None,
              help="Augmented views to train on: each epoch reads one of views 0..N of every "
                   "image (one per store shard, seeded by --seed and the epoch) "
                   "[default: all the train store holds; 0 = the plain images].")
@click.option("--image-split", type=click.IntRange(min=0), default=None,
              help="Cross-validation: hold out image split K of the --train-split store (image "
                   "p, sorted by id, is held out in split p % --image-splits), train on the "
                   "rest, validate on the held-out images found in --val-split's store.")
@click.option("--image-splits", type=click.IntRange(min=2), default=DEFAULTS.image_splits,
              help="Number of image splits (coco128's fixed 96/32 split is split 3 of 4).")
@click.option("--seed", type=int, default=DEFAULTS.seed)
@click.option("--calibrate/--no-calibrate", default=DEFAULTS.calibrate,
              help="After the last epoch, choose the generalized protocol's seen-name "
                   "calibration (gamma) on the train images and store it in the checkpoint.")
@click.option("--calibration-images", type=click.IntRange(min=0),
              default=DEFAULTS.calibration_images,
              help="Choose gamma on this many train images, evenly spaced in store order "
                   "(their plain view) [default: 0 = all].")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=DEFAULTS.device,
              help="auto: CUDA (bf16 autocast) when present, else CPU. torchrun: DDP.")
@click.option("--num-workers", type=int, default=DEFAULTS.num_workers,
              help="DataLoader worker processes (spawn) reading the store.")
@click.option("--resume", is_flag=True, help="Continue from <out>/last.pt if it exists.")
@progress_option
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@one_line_errors
def main(visual: str | None, text: str | None, dataset: str | None, no_progress: bool,
         verbose: bool, **options: object) -> None:
    """Train the fusion transformer on cached features of one encoder pair.

    With no options: the pair and dataset of params.yaml when run in the project (pair.visual,
    pair.text, data.dataset), else the catalogue defaults (dinov2_vits14 + minilm_l6, camvid).
    Example: fusioner-fit --visual dino_vits16 --text minilm_l6 --dataset camvid --fold 0
    """
    setup_logging(verbose)
    run, message = choose_run(visual, text, dataset)
    if os.environ.get("RANK", "0") == "0":  # once under torchrun
        click.echo(message)
    config = FitConfig(visual=run.visual, text=run.text, dataset=run.dataset,
                       progress=not no_progress, **options)  # type: ignore[arg-type]
    fit(config)


if __name__ == "__main__":
    main()
