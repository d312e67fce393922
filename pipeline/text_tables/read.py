"""Read one precomputed text-embedding table: its vectors and the names of its rows.

Forms (told apart by the file's suffix):

- ``<stem>.npy``: a float array (N, D) or (D, N); the N names are in ``<stem>.txt`` beside it
  (UTF-8, one a line, in row order) - the layout of the shared CLIP ViT-B/32 tables.
- a torch file (``.pt``, ``.pth``; read with ``torch.load(weights_only=True)``): a float tensor
  (N, D) or (D, N) with its names in ``<stem>.txt``; a dict ``{name: vector}``; or a dict
  ``{"names": [...], "embeddings": tensor}`` (MaskCLIP style), which may also carry ``"prompt"``
  and ``"model"`` strings.

(N, D) and (D, N) are told apart by the names count. Everything else is a one-line
``BadInputError`` naming the file: a missing or unreadable (truncated) file, a missing names
file, no names, an array that is not 2-D or not float, a names count that matches neither axis
or both (a square table: save it as ``{name: vector}``), blank names, NaN/Inf or all-zero rows,
and a name listed twice with different rows (no query could reach the second; the shared Open
Images table lists "Bench" and "Mouse" twice with the same row, which is fine).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import BadInputError, first_line
from pipeline.vocabularies import read_names_file

NPY_SUFFIX = ".npy"
TORCH_SUFFIXES = (".pt", ".pth")
NAMES_SUFFIX = ".txt"
SHOWN = 3  # offending rows named in an error


@dataclass(frozen=True)
class Table:
    """One table: ``names`` and their ``vectors`` (N, D) float32 as stored (not normalised).

    ``files``: what was read (the table, and its names file when the names come from one);
    ``prompt`` / ``model``: as a MaskCLIP-style dict states them (else None).
    """

    names: tuple[str, ...]
    vectors: np.ndarray
    files: tuple[Path, ...]
    prompt: str | None = None
    model: str | None = None


def names_file(table: Path) -> Path:
    """Where the names of a table's rows are read from: ``<stem>.txt`` beside it."""
    return table.with_suffix(NAMES_SUFFIX)


def read_table(path: Path) -> Table:
    """Read and check the table at ``path`` (see the module docstring for forms and checks)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix != NPY_SUFFIX and suffix not in TORCH_SUFFIXES:
        raise BadInputError(f"{path}: not a table file (a {NPY_SUFFIX} array, or a torch file "
                            f"{'/'.join(TORCH_SUFFIXES)})")
    if not path.is_file():
        raise BadInputError(f"{path}: no such table file")
    payload = _load_npy(path) if suffix == NPY_SUFFIX else _load_torch(path)
    extra: dict[str, Any] = {}
    if isinstance(payload, dict):
        names, array, extra = _from_dict(payload, path)
        files: tuple[Path, ...] = (path,)
    else:
        names, files = _read_names(path), (path, names_file(path))
        array = payload
    vectors = _oriented(array, len(names), path)
    _check_rows(vectors, names, path)
    return Table(tuple(names), vectors, files, **extra)


def _load_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise BadInputError(f"{path}: not a readable .npy table ({first_line(exc)})") from exc
    if not isinstance(array, np.ndarray):  # an .npz archive under an .npy name
        raise BadInputError(f"{path}: not a single .npy array")
    return array


def _load_torch(path: Path) -> Any:
    import torch

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated zips, pickles of other objects, ...
        raise BadInputError(f"{path}: not a readable torch table ({first_line(exc)})") from exc
    if isinstance(payload, torch.Tensor):
        return _tensor_array(payload, path)
    if isinstance(payload, dict):
        return payload
    raise BadInputError(f"{path}: holds a {type(payload).__name__}; a torch table is a tensor, "
                        "{name: vector} or {'names': [...], 'embeddings': tensor}")


def _tensor_array(value: Any, path: Path) -> np.ndarray:
    """A float tensor as float32 numpy; anything else is an error."""
    import torch

    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        kind = value.dtype if isinstance(value, torch.Tensor) else type(value).__name__
        raise BadInputError(f"{path}: table vectors must be a float tensor, found {kind}")
    return value.detach().cpu().float().numpy()


def _from_dict(payload: dict, path: Path) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """(names, array, {prompt, model}) of a ``{name: vector}`` or MaskCLIP-style dict."""
    if "embeddings" in payload:
        names = payload.get("names")
        if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
            raise BadInputError(f"{path}: 'names' must be a list of strings beside 'embeddings'")
        extra = {key: payload[key] for key in ("prompt", "model")
                 if isinstance(payload.get(key), str)}
        return list(names), _tensor_array(payload["embeddings"], path), extra
    if not payload or not all(isinstance(name, str) for name in payload):
        raise BadInputError(f"{path}: a dict table maps class names (strings) to vectors")
    rows = [_tensor_array(vector, path) for vector in payload.values()]
    shapes = {row.shape for row in rows}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise BadInputError(f"{path}: the vectors of a {{name: vector}} table must be 1-D of one "
                            f"length, found shapes {sorted(shapes)[:SHOWN]}")
    return list(payload), np.stack(rows), {}


def _read_names(table: Path) -> list[str]:
    path = names_file(table)
    if not path.is_file():
        raise BadInputError(f"{table}: its names file {path} is missing (one name a line, in "
                            "row order)")
    names = read_names_file(path)
    while names and not names[-1].strip():  # trailing blank lines are an editor's, not names
        names.pop()
    return names


def _oriented(array: np.ndarray, count: int, path: Path) -> np.ndarray:
    """``array`` as (N, D) float32, N = ``count`` names."""
    if count == 0:
        raise BadInputError(f"{path}: the table holds no names")
    if array.ndim != 2:
        raise BadInputError(f"{path}: a table must be 2-D (names x dims), found shape "
                            f"{tuple(array.shape)}")
    if not np.issubdtype(array.dtype, np.floating):
        raise BadInputError(f"{path}: table vectors must be floats, found {array.dtype}")
    rows, cols = array.shape
    if rows == cols == count:
        raise BadInputError(f"{path}: a square table {tuple(array.shape)} with {count} names: "
                            "(N, D) and (D, N) cannot be told apart; save it as {name: vector}")
    if rows == count and cols:
        return array.astype(np.float32)
    if cols == count and rows:
        return np.ascontiguousarray(array.T, dtype=np.float32)
    raise BadInputError(f"{path}: {count} names, but the table's shape {tuple(array.shape)} has "
                        "no non-empty axis of that length")


def _check_rows(vectors: np.ndarray, names: Sequence[str], path: Path) -> None:
    """Refuse blank names, NaN/Inf or zero rows, and one name listed twice with other rows."""
    blank = [row for row, name in enumerate(names) if not name.strip()]
    if blank:
        raise BadInputError(f"{path}: blank name at row(s) {blank[:SHOWN]}")
    finite = np.isfinite(vectors).all(axis=1)
    for bad, what in ((~finite, "NaN or Inf"),
                      (finite & ~vectors.any(axis=1), "only zeros (no direction)")):
        rows = np.flatnonzero(bad)
        if rows.size:
            shown = ", ".join(f"'{names[r]}' (row {r})" for r in rows[:SHOWN])
            raise BadInputError(f"{path}: {rows.size} row(s) hold {what}: {shown}")
    first: dict[str, int] = {}
    for row, name in enumerate(names):
        seen = first.setdefault(name, row)
        if seen != row and not np.allclose(vectors[seen], vectors[row], rtol=1e-5, atol=1e-6):
            raise BadInputError(f"{path}: '{name}' is listed twice (rows {seen} and {row}) with "
                                "different vectors: a lookup could not tell which is meant")
