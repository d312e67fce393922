"""Where stores live on disk and what their root attributes must say."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import zarr

from pipeline.errors import StoreError

FORMAT_VERSION = 1
DEFAULT_CACHE_DIR = Path("cache")
ITEM_ARRAYS = ("patch_tokens", "cls_token", "labels")  # per-image arrays of one training item
PROGRESS_KEYS = ("complete",)  # attributes that change while a store is written
# where the weights came from (local file or hub snapshot): recorded, but the same weights
# (same ``weights_sha256``) from another source make the same store
SOURCE_KEYS = ("weights_source", "hub_id", "hub_revision")


def visual_store_path(cache_dir: Path | str, encoder: str, dataset: str, split: str) -> Path:
    """``<cache>/visual/<encoder>/<dataset>-<split>.zarr``."""
    return Path(cache_dir) / "visual" / _safe(encoder) / f"{dataset}-{split}.zarr"


def text_store_path(cache_dir: Path | str, encoder: str, dataset: str) -> Path:
    """``<cache>/text/<encoder>/<dataset>.zarr``."""
    return Path(cache_dir) / "text" / _safe(encoder) / f"{dataset}.zarr"


def _safe(slug: str) -> str:
    return slug.replace(":", "-").replace("/", "_")


def scratch_path(path: Path) -> Path:
    """Where a store is laid out before it is renamed into place (a stale one is cleared)."""
    scratch = path.with_name(path.name + ".creating")
    shutil.rmtree(scratch, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    return scratch


def publish(scratch: Path, path: Path) -> None:
    """Rename a laid-out ``scratch`` store to ``path``, replacing any store there."""
    if path.exists():
        shutil.rmtree(path)
    scratch.replace(path)


def identity(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes that define what a store holds (all but write progress and the source of
    the weights, whose sha256 is part of the identity)."""
    return {k: v for k, v in attrs.items() if k not in PROGRESS_KEYS + SOURCE_KEYS}


def open_complete_group(
    path: Path | str, kind: str, expect: Mapping[str, Any] | None
) -> zarr.Group:
    """Open a finished store read-only, refusing one that is incomplete or not what is expected."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"{path}: no such store (run fusioner-extract first)")
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception as exc:  # noqa: BLE001 - any zarr failure is one message
        raise StoreError(f"{path}: not a readable Zarr store ({exc})") from exc
    attrs = dict(group.attrs)
    if attrs.get("format_version") != FORMAT_VERSION or attrs.get("kind") != kind:
        raise StoreError(
            f"{path}: store format {attrs.get('kind')}/v{attrs.get('format_version')} != "
            f"{kind}/v{FORMAT_VERSION} (re-extract it with this version of fusioner)"
        )
    if attrs.get("complete") is not True:
        raise StoreError(
            f"{path}: store is incomplete (extraction was interrupted; rerun it to resume)"
        )
    check_provenance(path, attrs, expect or {})
    return group


def check_provenance(path: Path, attrs: Mapping[str, Any], expect: Mapping[str, Any]) -> None:
    """Raise ``StoreError`` naming every attribute that differs from ``expect``."""
    wrong = [
        f"{key}={attrs.get(key)!r} (expected {value!r})"
        for key, value in expect.items()
        if _normalise(attrs.get(key)) != _normalise(value)
    ]
    if wrong:
        raise StoreError(f"{path}: store made by another encoder/config: {'; '.join(wrong)}")


def _normalise(value: Any) -> Any:
    """JSON round-trips turn tuples into lists; compare them as lists."""
    if isinstance(value, tuple | list):
        return [_normalise(v) for v in value]
    return value


def check_shapes(path: Path | str, group: zarr.Group, expected: Mapping[str, tuple]) -> None:
    """Raise ``StoreError`` unless each array named in ``expected`` exists with that shape
    (a ``None`` entry matches any size: a dimension the attributes do not record)."""
    for name, shape in expected.items():
        try:
            found = tuple(group[name].shape)
        except (KeyError, ValueError, OSError) as exc:
            raise StoreError(f"{path}: array '{name}' missing or unreadable ({exc})") from exc
        if len(found) != len(shape) or any(w is not None and f != w
                                           for f, w in zip(found, shape, strict=True)):
            raise StoreError(f"{path}: array '{name}' has shape {found}, its attributes say "
                             f"{tuple(shape)} (tampered or foreign store?)")
