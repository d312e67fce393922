"""``fusioner-encoders``: the encoder catalogue and where each encoder's weights come from."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from stages._cli import OneLineCommand, one_line_errors


@click.command(cls=OneLineCommand, context_settings={"show_default": True})
@click.option("--json", "as_json", is_flag=True, help="One JSON object per encoder instead.")
@one_line_errors
def main(as_json: bool) -> None:
    """List the catalogue's encoders and where each one's weights would come from here:
    --weights/$FUSIONER_WEIGHTS (env), a package, the hub cache, a hub download, or missing.
    Nothing is loaded or downloaded.
    """
    from pipeline.encoders.listing import catalogue_rows, format_rows

    rows = catalogue_rows()
    if as_json:
        for row in rows:
            click.echo(json.dumps(asdict(row)))
    else:
        click.echo(format_rows(rows))


if __name__ == "__main__":
    main()
