"""Shared CLI plumbing: logging set-up and one-line errors with a non-zero exit."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from pipeline.errors import BadInputError, FusionerError, one_line
from pipeline.store.layout import DEFAULT_CACHE_DIR
from pipeline.store.location import as_location, is_url

if TYPE_CHECKING:
    from pipeline.thresholds import Threshold

F = TypeVar("F", bound=Callable[..., Any])


def setup_logging(verbose: bool = False) -> None:
    """INFO logs to stderr (progress bars also go to stderr)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


class OneLineCommand(click.Command):
    """A click command whose usage errors are one ``error:`` line (exit 2), no usage banner.

    Stage options come from params.yaml through dvc.yaml, so a wrong-typed param shows here as
    e.g. ``error: Invalid value for '--epochs': 'twelve' is not a valid integer.``
    """

    def main(self, args: Any = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


class OneLineGroup(OneLineCommand, click.Group):
    """A click group whose usage errors are one ``error:`` line, as ``OneLineCommand``'s."""


def one_line_errors(fn: F) -> F:
    """Turn ``FusionerError`` (and interrupted runs) into one line on stderr and exit code 1/130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FusionerError as exc:
            click.echo(f"error: {one_line(exc)}", err=True)  # always one line
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted: finished work is kept; rerun the same command to resume",
                       err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def parse_size(_ctx: click.Context | None, _param: click.Parameter | None,
               value: str | None) -> tuple[int, int] | None:
    """Click callback: ``"240x320"`` -> (240, 320) as (H, W)."""
    if value is None:
        return None
    try:
        height, width = (int(part) for part in value.lower().split("x"))
    except ValueError as exc:
        raise click.BadParameter(f"expected HxW such as 240x320, got '{value}'") from exc
    if height <= 0 or width <= 0:
        raise click.BadParameter(f"sizes must be positive, got '{value}'")
    return height, width


def threshold_option(_ctx: click.Context | None, _param: click.Parameter | None,
                     value: str) -> Threshold:
    """Click callback: ``"adaptive"`` or a probability in [0, 1] (``pipeline.thresholds``,
    imported here: stages that take no threshold do not depend on it)."""
    from pipeline.thresholds import parse_threshold

    try:
        return parse_threshold(value)
    except BadInputError as exc:
        raise click.BadParameter(str(exc)) from exc


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; an unavailable ``cuda`` is an error."""
    from pipeline.train.distributed import resolve_device as resolve

    return resolve(device)


def parse_storage_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``("endpoint_url=http://...", "anon=false")`` -> fsspec storage options (values are read
    as YAML scalars: ``false`` is a bool, ``3`` an int, anything else a string)."""
    import yaml

    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got '{pair}'",
                                     param_hint="'--storage-option'")
        parsed = yaml.safe_load(value) if value.strip() else ""
        options[key.strip()] = value if parsed is None else parsed
    return options


def cache_dir_options(fn: F) -> F:
    """``--cache-dir`` (a folder or an fsspec URL) and ``--storage-option KEY=VALUE``: the
    command receives ``cache_dir`` as a ``Path`` or a ``RemoteLocation`` carrying the options."""

    @functools.wraps(fn)
    def wrapper(*args: Any, cache_dir: str, storage_options: tuple[str, ...],
                **kwargs: Any) -> Any:
        if storage_options and not is_url(cache_dir):
            raise click.UsageError("--storage-option needs a URL --cache-dir (s3://...)")
        location = as_location(cache_dir, parse_storage_options(storage_options))
        return fn(*args, cache_dir=location, **kwargs)

    options = (
        click.option("--cache-dir", default=str(DEFAULT_CACHE_DIR),
                     help="Root of the embedding store: a folder, or an fsspec URL "
                          "(s3://bucket/prefix, gs://..., memory://...). fusioner-fit and "
                          "fusioner-evaluate replace {fold} with the fold (a cache per fold, "
                          "as fold mosaics need)."),
        click.option("--storage-option", "storage_options", multiple=True, metavar="KEY=VALUE",
                     help="fsspec option of a URL --cache-dir, e.g. endpoint_url=http://host:9000 "
                          "or profile=NAME; repeat for several. Credentials: prefer AWS_* env "
                          "vars or a profile (never written anywhere)."),
    )
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]


def progress_option(fn: F) -> F:
    """``--no-progress``: the same flag on every command that shows a progress bar."""
    return click.option("--no-progress", is_flag=True, help="No progress bar.")(fn)


def segmenter_options(fn: F) -> F:
    """The options that choose and load a segmenter (``fusioner-segment``, ``fusioner-serve``)."""
    options = (
        click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
                     help="Fusion checkpoint (fusioner-fit's checkpoint.pt); needed by --method "
                          "fusion."),
        click.option("--method", type=click.Choice(["fusion", "maskclip"]), default="fusion",
                     help="fusion: the trained fusion module; maskclip: training-free CLIP "
                          "baseline (needs CLIP ViT-B/16 weights)."),
        click.option("--weights", type=click.Path(path_type=Path), default=None,
                     help="Visual encoder weights [default: $FUSIONER_WEIGHTS/<slug>.*, a "
                          "package, then the Hugging Face hub]."),
        click.option("--text-weights", type=click.Path(path_type=Path), default=None,
                     help="Text encoder weights [default: packaged, $FUSIONER_WEIGHTS, or "
                          "--weights for maskclip's CLIP text tower]."),
        click.option("--random-init", is_flag=True,
                     help="Random encoder weights (tests only; a fusion checkpoint must have "
                          "been trained on random-init features)."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto"),
    )
    for option in reversed(options):
        fn = option(fn)
    return fn
