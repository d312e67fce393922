"""Class-name vocabularies: the built-in COCO, LVIS, Objects365 and Open Images name lists, a
user's own names file, and the one rule by which names are matched.

The built-in lists are the names files of the precomputed CLIP text tables
(``$FUSIONER_TEXT_TABLES``, default ``<shared data>/text-embeddings/clip-vit-b32``): data, not
code, read where they lie. As vocabularies they are plain names, usable by any text encoder:
LVIS's underscores become spaces (``aerosol_can`` -> ``aerosol can``) and a name listed twice
(after matching, below) is kept once, at its first place.

Matching (``match_key``): exact first; otherwise names are compared after case folding, ``_``
read as a space, outer whitespace stripped and inner runs of whitespace collapsed. Nothing else
(no plural or synonym guessing): a name that does not match is an error listing the closest.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.data.base import default_data_root
from pipeline.errors import BadInputError, UnknownNameError

TABLES_ENV = "FUSIONER_TEXT_TABLES"
BUILTIN_VOCABULARIES = {"coco": "coco", "lvis": "lvis_v1", "objects365": "objects365",
                        "openimages": "openimages"}  # vocabulary -> file stem in the tables folder


def tables_root() -> Path:
    """``$FUSIONER_TEXT_TABLES``, else the shared CLIP ViT-B/32 text tables beside the project."""
    env = os.environ.get(TABLES_ENV)
    return Path(env) if env else default_data_root() / "text-embeddings" / "clip-vit-b32"


def match_key(name: str) -> str:
    """The form two names are compared in: case-folded, ``_`` as space, whitespace collapsed."""
    return " ".join(name.replace("_", " ").split()).casefold()


def display_name(name: str) -> str:
    """A table's raw name as users type it (``aerosol_can`` -> ``aerosol can``)."""
    return " ".join(name.replace("_", " ").split())


def closest_names(name: str, candidates: Iterable[str], count: int = 5) -> list[str]:
    """Up to ``count`` of ``candidates`` closest to ``name`` (compared by ``match_key``)."""
    by_key: dict[str, str] = {}
    for candidate in candidates:
        by_key.setdefault(match_key(candidate), candidate)
    keys = difflib.get_close_matches(match_key(name), list(by_key), n=count, cutoff=0.5)
    return [by_key[key] for key in keys]


def find_name(name: str, names: Sequence[str], where: str) -> int:
    """Index of ``name`` in ``names``: an exact match, else the first ``match_key`` match;
    ``UnknownNameError`` (one line, with the closest names) if there is none."""
    if name in names:
        return list(names).index(name)
    key = match_key(name)
    for index, candidate in enumerate(names):
        if match_key(candidate) == key:
            return index
    near = closest_names(name, names)
    hint = f"; closest: {', '.join(near)}" if near else ""
    raise UnknownNameError(f"'{name}' is not in {where} ({len(names)} names){hint}")


@dataclass(frozen=True)
class Vocabulary:
    """A named list of class names (``source``: the file they were read from)."""

    name: str
    names: tuple[str, ...]
    source: Path


def unique_names(names: Iterable[str]) -> tuple[str, ...]:
    """``names`` with blanks dropped and later duplicates (by ``match_key``) removed."""
    seen: set[str] = set()
    kept: list[str] = []
    for name in names:
        key = match_key(name)
        if key and key not in seen:
            seen.add(key)
            kept.append(display_name(name))
    return tuple(kept)


def read_names_file(path: Path) -> list[str]:
    """The lines of a UTF-8 names file (one name a line); one-line ``BadInputError`` if the
    file is missing, unreadable or not UTF-8."""
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: not a readable UTF-8 names file ({exc})") from exc


def builtin_vocabulary_file(name: str) -> Path:
    """The names file of a built-in vocabulary."""
    return tables_root() / f"{BUILTIN_VOCABULARIES[name]}.txt"


def load_vocabulary(spec: str | Path) -> Vocabulary:
    """A built-in vocabulary by name (``coco``, ``lvis``, ``objects365``, ``openimages``) or a
    names file (one name a line); one-line error if it is neither or holds no name."""
    text = str(spec)
    if text in BUILTIN_VOCABULARIES:
        path, name = builtin_vocabulary_file(text), text
        if not path.is_file():
            raise BadInputError(f"vocabulary '{text}': its names file {path} is missing (set "
                                f"${TABLES_ENV} to the folder of the text tables)")
    else:
        path, name = Path(text), Path(text).stem
        if not path.is_file():
            raise UnknownNameError(f"unknown vocabulary '{text}': neither a built-in one "
                                   f"({', '.join(BUILTIN_VOCABULARIES)}) nor a names file")
    names = unique_names(read_names_file(path))
    if not names:
        raise BadInputError(f"{path}: the vocabulary holds no name")
    return Vocabulary(name, names, path)
