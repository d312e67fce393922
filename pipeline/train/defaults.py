"""What a run inside the project defaults to: ``params.yaml``'s encoder pair and dataset.

``fusioner-fit`` with no options trains the pair named under ``pair:`` on ``data.dataset`` when a
``params.yaml`` lies in the working directory (the DVC project), else the catalogue defaults.
Only those three keys are read; everything else in the file is left to DVC.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.errors import BadInputError
from pipeline.names import (
    DEFAULT_TEXT_ENCODER,
    DEFAULT_VISUAL_ENCODER,
    chosen,
    text_slug,
    visual_slug,
)

PARAMS_FILE = "params.yaml"
DEFAULT_DATASET = "camvid"


@dataclass(frozen=True)
class RunDefaults:
    """The encoder pair and dataset a command uses when none is named, and where they came from."""

    visual: str
    text: str
    dataset: str
    origin: str  # "params.yaml" or "catalogue defaults"


def run_defaults(directory: Path | str = ".") -> RunDefaults:
    """``params.yaml``'s ``pair.visual``, ``pair.text`` and ``data.dataset`` in ``directory``
    (each falling back to the catalogue default when absent), or the catalogue defaults; the
    encoder names as written (aliases are resolved by ``choose_run``)."""
    path = Path(directory) / PARAMS_FILE
    if not path.is_file():
        return RunDefaults(DEFAULT_VISUAL_ENCODER, DEFAULT_TEXT_ENCODER, DEFAULT_DATASET,
                           "catalogue defaults")
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise BadInputError(f"{path}: unreadable params file ({exc})") from exc
    if not isinstance(params, dict):
        raise BadInputError(f"{path}: expected a mapping at the top level")
    pair = params.get("pair") if isinstance(params.get("pair"), dict) else {}
    data = params.get("data") if isinstance(params.get("data"), dict) else {}
    return RunDefaults(str(pair.get("visual", DEFAULT_VISUAL_ENCODER)),
                       str(pair.get("text", DEFAULT_TEXT_ENCODER)),
                       str(data.get("dataset", DEFAULT_DATASET)), str(path))


def choose_run(visual: str | None, text: str | None, dataset: str | None,
               directory: Path | str = ".") -> tuple[RunDefaults, str]:
    """The pair (as slugs) and dataset a command runs on - those given, the rest from
    ``run_defaults`` (``params.yaml`` is read only when something is left out) - and one line
    saying what was chosen."""
    given = {"visual": visual, "text": text, "dataset": dataset}
    missing = [key for key, value in given.items() if not value]
    origin = "command line"
    if missing:
        defaults = run_defaults(directory)
        given = {key: value or getattr(defaults, key) for key, value in given.items()}
        origin = defaults.origin
    run = RunDefaults(visual_slug(str(given["visual"])), text_slug(str(given["text"])),
                      str(given["dataset"]), origin)
    line = (f"{chosen('visual', str(given['visual']), run.visual)}; "
            f"{chosen('text', str(given['text']), run.text)}; dataset {run.dataset}")
    return run, line + (f" ({', '.join(missing)} from {origin})" if missing else "")
