"""``fusioner-extract``: run frozen encoders once and cache their outputs in Zarr stores."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from pipeline.data import SegmentationDataset, create_dataset, list_datasets
from pipeline.data.views import ViewRecipe
from pipeline.encoders import create_text_encoder, create_visual_encoder
from pipeline.encoders.base import FrozenEncoder
from pipeline.errors import FusionerError
from pipeline.extract import extract_text, extract_visual
from pipeline.names import chosen
from pipeline.store import StoreLocation, text_store_path, visual_store_path
from stages._cli import (
    OneLineCommand,
    cache_dir_options,
    one_line_errors,
    parse_size,
    progress_option,
    resolve_device,
    setup_logging,
)

log = logging.getLogger("fusioner.extract")


@click.command(cls=OneLineCommand, context_settings={"show_default": True})
@click.option("--backbone", "--visual", "visual", default=None,
              help="Visual encoder slug (dinov2_vits14, dino_vits16, clip_vitl14, ...; see "
                   "fusioner-encoders), alias (dino = dinov2_vits14) or timm:MODEL. "
                   "Writes <cache>/visual/<slug>/<dataset>-<split>.zarr.")
@click.option("--text-encoder", "--text", "text", default=None,
              help="Text encoder slug (minilm_l6, bert_base, clip_vitl14_text, ...), alias "
                   "(minilm, bert, clip), hf:PATH, or a precomputed table: clip_table (the "
                   "shared CLIP ViT-B/32 tables) or table:PATH (.npy + names, torch file). "
                   "Writes <cache>/text/<slug>/<dataset>.zarr.")
@click.option("--dataset", default="camvid", help=f"Dataset name, one of {list_datasets()}.")
@click.option("--split", "splits", multiple=True, default=("train", "val"),
              help="Split(s) to extract visual features for; repeat the option for several.")
@click.option("--data-root", type=click.Path(path_type=Path), default=None,
              help="Dataset folder "
                   "[default: $FUSIONER_DATA/<dataset> or ../shared/data/<dataset>].")
@cache_dir_options
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="Visual encoder checkpoint file [default: $FUSIONER_WEIGHTS/<slug>.*, a "
                   "package, then the Hugging Face hub].")
@click.option("--text-weights", type=click.Path(path_type=Path), default=None,
              help="Text encoder weights (file or model folder) [default: as --weights].")
@click.option("--random-init", is_flag=True,
              help="Use random weights for every encoder asked for "
                   "(tests only; recorded as random-init in the store).")
@click.option("--image-size", default=None, callback=parse_size,
              help="Encoder input HxW, e.g. 240x320 (rounded to the patch size) "
                   "[default: encoder's].")
@click.option("--batch-size", type=int, default=16, help="Images per encoder forward pass.")
@click.option("--shard-images", type=int, default=32,
              help="Images per Zarr shard file (the unit of writing and of resuming).")
@click.option("--num-workers", type=int, default=0,
              help="DataLoader processes decoding images (spawn); 0 decodes in the main process.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              help="Where the encoder runs.")
@click.option("--overwrite", is_flag=True,
              help="Replace an existing store made with other settings.")
@click.option("--skip-bad", is_flag=True,
              help="Skip unreadable samples (recorded in the store's 'skipped' attribute) "
                   "instead of stopping.")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Run visual extraction as a dask.distributed job on the cluster at ADDRESS "
                   "(tcp://host:8786, or a scheduler JSON file); paths must be shared with the "
                   "workers. See README 'Scaling out'.")
@click.option("--workers", type=int, default=None,
              help="Run visual extraction on a dask LocalCluster of N worker processes here.")
@click.option("--retries", type=int, default=2,
              help="With --scheduler/--workers: times dask re-runs a failed task.")
@click.option("--views", type=click.IntRange(min=0), default=0,
              help="Also store N seeded augmented views (random resized crop + flip) of each "
                   "image of the --views-split split(s); view 0 stays the plain image.")
@click.option("--views-split", "views_splits", multiple=True, default=("train",),
              help="Split(s) that get --views (training splits only; others store the plain "
                   "images alone); repeat the option for several.")
@click.option("--views-seed", type=click.IntRange(min=0), default=0,
              help="Seed of the views: view v of image i is drawn from (seed, i, v).")
@click.option("--views-min-scale", type=click.FloatRange(0, 1, min_open=True), default=0.5,
              help="Smallest crop area of a view, as a fraction of the image's (max 1).")
@click.option("--views-jitter", type=click.FloatRange(0, 1, max_open=True), default=0.0,
              help="Colour jitter of the views: brightness/contrast/saturation factors in "
                   "[1-j, 1+j] (0 = none).")
@click.option("--report", type=click.Path(path_type=Path), default=None,
              help="Write a JSON report (images encoded, throughput, skipped samples) here.")
@progress_option
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@one_line_errors
def main(visual: str | None, text: str | None, dataset: str, splits: tuple[str, ...],
         data_root: Path | None, cache_dir: StoreLocation, weights: Path | None,
         text_weights: Path | None,
         random_init: bool, image_size: tuple[int, int] | None, batch_size: int, shard_images: int,
         num_workers: int, device: str, overwrite: bool, skip_bad: bool, scheduler: str | None,
         workers: int | None, retries: int, views: int, views_splits: tuple[str, ...],
         views_seed: int, views_min_scale: float, views_jitter: float, report: Path | None,
         no_progress: bool,
         verbose: bool) -> None:
    """Extract visual patch features and/or class-name text embeddings into the Zarr store.

    Re-running is a no-op for complete stores; an interrupted run resumes at the first missing
    shard; a store made with another --views recipe is refused. Example:
    fusioner-extract --backbone dino --text-encoder minilm --dataset camvid
    """
    setup_logging(verbose)
    if not visual and not text:
        raise FusionerError("nothing to do: give --backbone and/or --text-encoder")
    recipe = ViewRecipe(views, views_seed, (views_min_scale, 1.0), jitter=views_jitter)
    split_views = {split: recipe if views and split in views_splits else None
                   for split in splits}
    if views:
        log.info("%d augmented views per image of %s", views,
                 ", ".join(s for s, r in split_views.items() if r) or "no split extracted")
    reports = []
    # every split is opened (and its labels checked) before any encoder is built or store written
    datasets = {split: create_dataset(dataset, split, data_root) for split in splits}
    if text:
        encoder = create_text_encoder(text, text_weights, random_init)
        _say_chosen("text", text, encoder)
        names = datasets[splits[0]].class_names
        reports.append(extract_text(names, encoder,
                                    text_store_path(cache_dir, encoder.slug, dataset),
                                    dataset, overwrite=overwrite))
    if visual and (scheduler or workers):
        reports.extend(_extract_distributed(
            visual, dataset, datasets, cache_dir, weights, random_init, image_size,
            batch_size, shard_images, device, overwrite, skip_bad, scheduler, workers, retries,
            split_views, not no_progress))
    elif visual:
        run_on = resolve_device(device)
        encoder = create_visual_encoder(visual, weights, random_init, image_size)
        _say_chosen("visual", visual, encoder)
        log.info("visual encoder %s on %s", encoder.slug, run_on)
        for split, opened in datasets.items():
            reports.append(extract_visual(
                opened, encoder,
                visual_store_path(cache_dir, encoder.slug, dataset, split), batch_size=batch_size,
                device=run_on, shard_images=shard_images, num_workers=num_workers,
                overwrite=overwrite, skip_bad=skip_bad, views=split_views[split],
                progress=not no_progress,
            ))
    if report:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(reports, indent=2))


def _extract_distributed(visual: str, dataset: str, datasets: dict[str, SegmentationDataset],
                         cache_dir: StoreLocation, weights: Path | None,
                         random_init: bool, image_size: tuple[int, int] | None, batch_size: int,
                         shard_images: int, device: str, overwrite: bool, skip_bad: bool,
                         scheduler: str | None, workers: int | None, retries: int,
                         split_views: dict[str, ViewRecipe | None], progress: bool) -> list[dict]:
    """Every split on one dask cluster (the client builds the encoder for provenance only)."""
    from pipeline.scaleout.extract import (
        dask_client,
        extract_visual_distributed,
        local_torch_threads,
    )

    encoder = create_visual_encoder(visual, weights, random_init, image_size)
    _say_chosen("visual", visual, encoder)
    threads = None if scheduler else local_torch_threads(workers or 1)
    reports = []
    with dask_client(scheduler, workers) as client:
        for split, opened in datasets.items():
            reports.append(extract_visual_distributed(
                client, opened, encoder,
                visual_store_path(cache_dir, encoder.slug, dataset, split),
                batch_size=batch_size, device=device, shard_images=shard_images,
                overwrite=overwrite, skip_bad=skip_bad, retries=retries, torch_threads=threads,
                views=split_views[split], progress=progress,
            ))
    return reports


def _say_chosen(kind: str, name: str, encoder: FrozenEncoder) -> None:
    """Print which encoder a name chose and where its weights came from."""
    origin = "random-init" if encoder.source is None else encoder.source.describe()
    click.echo(f"{chosen(kind, name, encoder.slug)} (weights: {origin})")


if __name__ == "__main__":
    main()
