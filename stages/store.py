"""``fusioner-store``: verify (and repair) feature stores, upgrade older ones, clear a lock."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from pipeline.errors import FusionerError
from pipeline.store.location import StoreLocation, as_location, is_url
from stages._cli import (
    OneLineCommand,
    OneLineGroup,
    one_line_errors,
    parse_storage_options,
    progress_option,
    resolve_device,
    setup_logging,
)

log = logging.getLogger("fusioner.store")

PATHS = click.argument("paths", nargs=-1, required=True, metavar="PATH|URL...")
STORAGE = click.option("--storage-option", "storage_options", multiple=True, metavar="KEY=VALUE",
                       help="fsspec option of URL paths, e.g. endpoint_url=http://host:9000 "
                            "(credentials: AWS_* env vars or a profile); repeat for several.")
VERBOSE = click.option("-v", "--verbose", is_flag=True, help="Debug logging.")


@click.group(cls=OneLineGroup)
def main() -> None:
    """Check and look after feature stores (Zarr v3, local or on an object store).

    Examples: fusioner-store verify cache; fusioner-store verify --repair cache;
    fusioner-store upgrade cache
    """


def _stores(paths: tuple[str, ...], storage_options: tuple[str, ...]) -> list[StoreLocation]:
    """Every store a PATH names: itself, or every store under a cache folder or prefix."""
    from pipeline.store.verify import find_stores

    options = parse_storage_options(storage_options)
    stores: list[StoreLocation] = []
    for path in paths:
        found = find_stores(as_location(path, options if is_url(path) else None))
        if not found:
            raise FusionerError(f"{path}: no store there (a *.zarr store, or a folder or URL "
                                "prefix holding some)")
        stores.extend(found)
    return stores


@main.command(cls=OneLineCommand, context_settings={"show_default": True})
@PATHS
@click.option("--repair", is_flag=True,
              help="Re-extract the damaged shards with each store's recorded settings (a text "
                   "store is rewritten whole), then verify again.")
@click.option("--data-root", type=click.Path(path_type=Path), default=None,
              help="With --repair: the dataset folder [default: as fusioner-extract's].")
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="With --repair: visual encoder weights [default: as fusioner-extract's]; "
                   "must have the sha256 the store recorded.")
@click.option("--text-weights", type=click.Path(path_type=Path), default=None,
              help="With --repair: text encoder weights [default: as fusioner-extract's].")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              help="With --repair: where the encoder runs.")
@click.option("--num-workers", type=int, default=0,
              help="With --repair: DataLoader processes decoding images (spawn).")
@STORAGE
@progress_option
@VERBOSE
@one_line_errors
def verify(paths: tuple[str, ...], repair: bool, data_root: Path | None, weights: Path | None,
           text_weights: Path | None, device: str, num_workers: int,
           storage_options: tuple[str, ...], no_progress: bool, verbose: bool) -> None:
    """Read every chunk of every shard of the stores at PATH (a store, or a cache folder or URL
    prefix holding stores), print a table of what is damaged, exit 1 if anything is."""
    from pipeline.store.verify import render, verify_store

    setup_logging(verbose)
    stores = _stores(paths, storage_options)
    findings = [finding for store in stores for finding in verify_store(store)]
    click.echo(render(stores, findings))
    if findings and repair:
        from pipeline.repair import repair_store

        run_on = resolve_device(device)
        for store in stores:
            own = [f for f in findings if f.store == str(store)]
            if own:
                repair_store(store, own, data_root, weights, text_weights, run_on, num_workers,
                             not no_progress)
        findings = [finding for store in stores for finding in verify_store(store)]
        click.echo("after repair:\n" + render(stores, findings))
    if findings:
        damaged = sorted({f.store for f in findings})
        hint = "" if repair else "; repair with: fusioner-store verify --repair PATH"
        raise FusionerError(f"{len(damaged)} store(s) damaged or unreadable: "
                            f"{', '.join(damaged)}{hint}")


@main.command(cls=OneLineCommand)
@PATHS
@STORAGE
@VERBOSE
@one_line_errors
def upgrade(paths: tuple[str, ...], storage_options: tuple[str, ...], verbose: bool) -> None:
    """Rewrite older stores at PATH in this format (checksums on every chunk, a digest per
    shard) without re-encoding: the decoded arrays stay identical."""
    from pipeline.store.layout import FORMAT_VERSION
    from pipeline.store.upgrade import upgrade_store

    setup_logging(verbose)
    for store in _stores(paths, storage_options):
        done = upgrade_store(store)
        click.echo(f"{store}: {'upgraded to' if done else 'already'} format v{FORMAT_VERSION}")


@main.command(cls=OneLineCommand)
@click.argument("path", metavar="PATH|URL")
@STORAGE
@VERBOSE
@one_line_errors
def unlock(path: str, storage_options: tuple[str, ...], verbose: bool) -> None:
    """Remove the writer lock of the store at PATH once its holder is gone (an object store's
    lock outlives a killed writer; a local one is taken over by the next writer anyway)."""
    from pipeline.store.lock import unlock as remove_lock

    setup_logging(verbose)
    options = parse_storage_options(storage_options) if is_url(path) else None
    holder = remove_lock(as_location(path, options))
    click.echo(f"{path}: lock removed" + (f" (it named {holder})" if holder else " (none held)"))


if __name__ == "__main__":
    main()
