"""``fusioner-serve``: the segmentation web page on localhost (upload an image, type classes)."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from pipeline.segmentation import load_segmenter
from pipeline.segmentation.web import ServeConfig, make_server
from pipeline.store import StoreLocation
from pipeline.thresholds import Threshold
from pipeline.vocabularies import BUILTIN_VOCABULARIES, load_vocabulary
from stages._cli import (
    OneLineCommand,
    cache_dir_options,
    one_line_errors,
    resolve_device,
    segmenter_options,
    setup_logging,
    threshold_option,
)

log = logging.getLogger("fusioner.serve")


@click.command(cls=OneLineCommand, context_settings={"show_default": True})
@segmenter_options
@click.option("--threshold", default="0.5", callback=threshold_option,
              help="The page's default threshold: a probability in [0, 1] or 'adaptive'.")
@click.option("--host", default="127.0.0.1", help="Address to listen on (localhost only by "
                                                  "default: the page has no authentication).")
@click.option("--port", type=click.IntRange(0, 65535), default=7860, help="0 = any free port.")
@click.option("--vocabulary", "vocabularies", multiple=True, metavar="FILE",
              help="A names file (one name a line) the page offers beside the built-in "
                   "vocabularies (coco, lvis, objects365, openimages); repeat for several.")
@cache_dir_options
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@one_line_errors
def main(checkpoint: Path | None, method: str, threshold: Threshold, host: str, port: int,
         vocabularies: tuple[str, ...], cache_dir: StoreLocation, weights: Path | None,
         text_weights: Path | None, random_init: bool, device: str, verbose: bool) -> None:
    """Serve a page that segments an uploaded image into typed class names (Ctrl-C stops).

    Example: fusioner-serve --checkpoint models/fusion/checkpoint.pt, then open
    http://127.0.0.1:7860
    """
    setup_logging(verbose)
    for spec in vocabularies:  # a missing or empty names file stops here, before serving
        load_vocabulary(spec)
    config = ServeConfig(checkpoint, method, threshold, weights, text_weights,  # type: ignore[arg-type]
                         random_init, resolve_device(device),
                         (*BUILTIN_VOCABULARIES, *vocabularies), cache_dir)
    # Load the models now: a wrong checkpoint or missing weights stop here, before serving.
    load_segmenter(config.method, checkpoint, weights, text_weights, random_init, config.device)
    server = make_server(config, host, port)
    address, bound = server.server_address[:2]
    click.echo(f"serving on http://{address}:{bound} (Ctrl-C stops)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
