"""Which files a table text encoder reads, their sha256, and the check that they are unchanged.

Two kinds of table encoder (``pipeline.encoders.table``):

- ``clip_vitb32_table``: the shared CLIP ViT-B/32 tables (``pipeline.vocabularies.tables_root``),
  the vocabularies searched in the order coco, lvis_v1, objects365, openimages; recorded file
  keys are relative to the tables folder (``coco.npy``), so a store does not depend on where
  the folder lies;
- ``table:PATH``: a user's own table; keys are paths as given (``PATH`` and its names file).

A store (and a checkpoint's ``meta.text``) records ``table_files`` ``{key: sha256}``;
``check_table_source`` re-hashes them before fit, evaluate and segment use the vectors. It reads
no encoder library, so fit and evaluate stay free of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.errors import StoreError
from pipeline.vocabularies import BUILTIN_VOCABULARIES, tables_root

CATALOGUE_TABLE = "clip_vitb32_table"  # slug of the shared CLIP ViT-B/32 tables
TABLE_FAMILY = "table"  # ``table:PATH``: a user's own table
CATALOGUE_MODEL = ("OpenAI CLIP ViT-B/32 text tower (model.encode_text), embeddings computed "
                   "by the Detic authors")
CATALOGUE_PROMPT = "a {name}"
# what a table store records beside weights_sha256 (copied into checkpoints' meta.text)
TABLE_KEYS = ("table_files", "table_model", "table_prompt")


def table_root(slug: str) -> Path:
    """The folder a table encoder's recorded file keys are relative to."""
    return tables_root() if slug == CATALOGUE_TABLE else Path()


def table_paths(slug: str) -> list[tuple[str, Path]]:
    """(vocabulary, table file) of a table encoder, in search order."""
    if slug == CATALOGUE_TABLE:
        root = tables_root()
        return [(name, root / f"{stem}.npy") for name, stem in BUILTIN_VOCABULARIES.items()]
    path = Path(slug.removeprefix(f"{TABLE_FAMILY}:"))
    return [(path.stem, path)]


def file_key(slug: str, path: Path) -> str:
    """How a table file is recorded: relative to the tables folder, or as given."""
    return path.relative_to(tables_root()).as_posix() if slug == CATALOGUE_TABLE else str(path)


def file_sha256(path: Path) -> str:
    """sha256 of one file."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def files_digest(digests: Mapping[str, str]) -> str:
    """One sha256 for a table encoder's files (its ``weights_sha256``), from theirs in order."""
    return hashlib.sha256("".join(digests.values()).encode()).hexdigest()


def check_table_source(attrs: Mapping[str, Any], where: object) -> None:
    """Raise ``StoreError`` (one line) if a table file that ``attrs`` (a text store's, or a
    checkpoint's ``meta.text``) records is gone or no longer has its recorded sha256.

    Attributes without ``table_files`` (stores of model encoders) pass unchecked.
    """
    recorded = attrs.get("table_files")
    if not recorded:
        return
    slug = str(attrs.get("encoder"))
    root = table_root(slug)
    changed = []
    for key, sha in dict(recorded).items():
        path = root / key
        now = file_sha256(path) if path.is_file() else None
        if now is None:
            changed.append(f"{path} is missing")
        elif now != sha:
            changed.append(f"{path} has sha256 {now[:12]}..., recorded {str(sha)[:12]}...")
    if changed:
        raise StoreError(f"{where}: its text table changed since extraction: "
                         f"{'; '.join(changed)} (re-extract it with fusioner-extract "
                         f"--text-encoder {slug}, then re-fit)")
