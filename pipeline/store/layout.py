"""Where stores live (a folder or an object-store URL) and what their root attributes must say.

Publishing a new store is atomic for readers. On a local disk it is laid out in
``<store>.creating`` and renamed into place. Object stores have no rename, but each object PUT
is atomic and a Zarr v3 group only exists through its root ``zarr.json``: the store is laid out
in a local scratch folder, its objects are uploaded with the root ``zarr.json`` last, and removal
deletes that root first. Readers refuse anything without a root that says ``complete``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import zarr

from pipeline.errors import StoreError
from pipeline.store.location import (
    ROOT_KEY,
    RemoteLocation,
    StoreLocation,
    as_location,
    open_group,
    relative_keys,
    remove,
    storage_errors,
    store_exists,
)

FORMAT_VERSION = 2  # 2: a CRC-32C on every chunk and a digest per shard (``integrity``)
UPGRADABLE = (1,)  # older formats that ``fusioner-store upgrade`` rewrites without re-encoding
DEFAULT_CACHE_DIR = Path("cache")
ITEM_ARRAYS = ("patch_tokens", "cls_token", "labels")  # per-image arrays of one training item
VIEW_PREFIX = "view_"  # view_<item array>: (views, N, ...) augmented views 1..views, view-major
PROGRESS_KEYS = ("complete", "skipped")  # attributes that change while a store is written
# where the weights came from (local file or hub snapshot): recorded, but the same weights
# (same ``weights_sha256``) from another source make the same store
SOURCE_KEYS = ("weights_source", "hub_id", "hub_revision")
# how the store was written (``repair`` redoes shards the same way), not what it holds
RUN_KEYS = ("extraction",)


def visual_store_path(cache_dir: Path | str | RemoteLocation, encoder: str, dataset: str,
                      split: str) -> StoreLocation:
    """``<cache>/visual/<encoder>/<dataset>-<split>.zarr`` (a ``Path`` for a local cache)."""
    return as_location(cache_dir) / "visual" / _safe(encoder) / f"{dataset}-{split}.zarr"


def text_store_path(cache_dir: Path | str | RemoteLocation, encoder: str,
                    dataset: str) -> StoreLocation:
    """``<cache>/text/<encoder>/<dataset>.zarr`` (a ``Path`` for a local cache)."""
    return as_location(cache_dir) / "text" / _safe(encoder) / f"{dataset}.zarr"


def _safe(slug: str) -> str:
    return slug.replace(":", "-").replace("/", "_")


def scratch_path(path: StoreLocation) -> Path:
    """Where a store is laid out before it is published (a stale one is cleared): beside it on
    a local disk, a temporary folder for an object store."""
    if isinstance(path, RemoteLocation):
        return Path(tempfile.mkdtemp(prefix="fusioner-store-")) / path.name
    scratch = path.with_name(path.name + ".creating")
    shutil.rmtree(scratch, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    return scratch


def publish(scratch: Path, path: StoreLocation) -> None:
    """Put a laid-out ``scratch`` store at ``path``, replacing any store there: a rename on a
    local disk, an upload with the root ``zarr.json`` last to an object store."""
    if isinstance(path, RemoteLocation):
        _upload(scratch, path)
        return
    if path.exists():
        shutil.rmtree(path)
    scratch.replace(path)


def view_count(attrs: Mapping[str, Any]) -> int:
    """Augmented views per image a store holds besides the plain one (its ``views`` recipe)."""
    return int((attrs.get("views") or {}).get("count", 0))


def _upload(scratch: Path, path: RemoteLocation) -> None:
    """Clear ``path`` (root first), then PUT every object of ``scratch``, the root last."""
    with storage_errors(path):
        if not store_exists(path):
            _refuse_foreign(path)
        remove(path)
        fs, base = path.filesystem()
        files = sorted(f for f in scratch.rglob("*") if f.is_file())
        root = scratch / ROOT_KEY
        for file in [f for f in files if f != root] + [root]:
            fs.pipe_file(f"{base}/{file.relative_to(scratch).as_posix()}", file.read_bytes())
        fs.invalidate_cache()
    shutil.rmtree(scratch.parent, ignore_errors=True)


STORE_MEMBERS = (*ITEM_ARRAYS, *(VIEW_PREFIX + name for name in ITEM_ARRAYS), "image_ids",
                 "shard_done", "shard_digest", "class_names", "embeddings")


def _refuse_foreign(path: RemoteLocation) -> None:
    """Objects under a prefix with no store root are the remains of a creation or removal that
    was killed (cleared: only our arrays' keys) - or someone else's data (refused)."""
    foreign = [key for key in relative_keys(path) if key.split("/")[0] not in STORE_MEMBERS]
    if foreign:
        raise StoreError(f"{path}: holds objects that are not a fusioner store "
                         f"({', '.join(foreign[:3])}); choose another --cache-dir or delete them")


def identity(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes that define what a store holds (all but write progress, the source of
    the weights, whose sha256 is part of the identity, and the extraction's run settings)."""
    return {k: v for k, v in attrs.items() if k not in PROGRESS_KEYS + SOURCE_KEYS + RUN_KEYS}


def open_complete_group(
    path: StoreLocation | str, kind: str, expect: Mapping[str, Any] | None
) -> zarr.Group:
    """Open a finished store read-only, refusing one that is incomplete or not what is expected."""
    path = as_location(path)
    if not store_exists(path):
        raise StoreError(f"{path}: no such store (run fusioner-extract first)")
    try:
        group = open_group(path, mode="r")
    except Exception as exc:  # noqa: BLE001 - any zarr failure is one message
        raise StoreError(f"{path}: not a readable Zarr store ({exc})") from exc
    attrs = dict(group.attrs)
    check_format(path, attrs, kind)
    if attrs.get("complete") is not True:
        raise StoreError(
            f"{path}: store is incomplete (extraction was interrupted; rerun it to resume)"
        )
    check_provenance(path, attrs, expect or {})
    return group


def check_format(path: StoreLocation, attrs: Mapping[str, Any], kind: str | None = None) -> None:
    """``StoreError`` unless the store is of this format version (and of ``kind`` if given);
    an older store is told how to upgrade."""
    found, version = attrs.get("kind"), attrs.get("format_version")
    if version == FORMAT_VERSION and (kind is None or found == kind):
        return
    if version in UPGRADABLE and (kind is None or found == kind):
        raise StoreError(
            f"{path}: store format v{version} has no checksums (this fusioner reads "
            f"v{FORMAT_VERSION}); upgrade it in place with: fusioner-store upgrade {path} "
            "(or re-extract it with --overwrite)")
    raise StoreError(f"{path}: store format {found}/v{version} != {kind or found}/"
                     f"v{FORMAT_VERSION} (re-extract it with this version of fusioner)")


def check_provenance(path: StoreLocation, attrs: Mapping[str, Any],
                     expect: Mapping[str, Any]) -> None:
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


def check_shapes(path: StoreLocation | str, group: zarr.Group,
                 expected: Mapping[str, tuple]) -> None:
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
