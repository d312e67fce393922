"""Where a store lives: a local folder (``pathlib.Path``) or an object-store URL (fsspec).

``--cache-dir`` takes either. A URL (``s3://bucket/prefix``, ``gs://...``, ``memory://...``)
becomes a ``RemoteLocation``: the URL plus fsspec ``storage_options`` (endpoint, profile, ...).
Credentials come from the usual places (AWS env vars or profile) or ``storage_options``; the
options travel with the location (to dask workers and DataLoader processes) but are never part
of its ``str``/``repr``, so they reach no store, log line or metrics file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import zarr

from pipeline.errors import StoreError, first_line

ROOT_KEY = "zarr.json"  # a Zarr v3 group's metadata object: written last, deleted first


class RemoteLocation:
    """An fsspec URL and its storage options (kept out of ``str``/``repr``)."""

    __slots__ = ("url", "storage_options")

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        self.url = url.rstrip("/")
        self.storage_options = dict(storage_options or {})

    def __truediv__(self, part: str) -> RemoteLocation:
        return RemoteLocation(f"{self.url}/{part}", self.storage_options)

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"RemoteLocation({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemoteLocation) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    def __reduce__(self) -> tuple[Any, ...]:
        return RemoteLocation, (self.url, self.storage_options)

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    def filesystem(self) -> tuple[Any, str]:
        """``(fsspec filesystem, path inside it)`` (fsspec caches the filesystem instance)."""
        from fsspec.core import url_to_fs

        return url_to_fs(self.url, **self.storage_options)

    def exists(self) -> bool:
        """Whether any object lies at or under this URL."""
        fs, path = self.filesystem()
        return bool(fs.exists(path))


StoreLocation = Path | RemoteLocation


def is_url(where: object) -> bool:
    """``s3://...``-style text (anything with a protocol but ``file://``)."""
    return isinstance(where, str) and "://" in where and not where.startswith("file://")


def as_location(where: str | os.PathLike[str] | RemoteLocation,
                storage_options: Mapping[str, Any] | None = None) -> StoreLocation:
    """A ``RemoteLocation`` for a URL, else a ``Path`` (``storage_options``: URLs only)."""
    if isinstance(where, RemoteLocation):
        return where if storage_options is None else RemoteLocation(where.url, storage_options)
    if is_url(where):
        return RemoteLocation(str(where), storage_options)
    text = os.fspath(where)
    return Path(text.removeprefix("file://"))


FOLD_FIELD = "{fold}"  # in a cache location: the fold's own cache (fold mosaics keep one each)


def for_fold(where: StoreLocation, fold: int) -> StoreLocation:
    """``where`` with every ``{fold}`` replaced by ``fold``; unchanged without one."""
    if isinstance(where, RemoteLocation):
        return RemoteLocation(where.url.replace(FOLD_FIELD, str(fold)), where.storage_options)
    return Path(str(where).replace(FOLD_FIELD, str(fold)))


def open_group(where: StoreLocation, mode: str) -> zarr.Group:
    """``zarr.open_group`` on a folder or (through zarr's ``FsspecStore``) a URL."""
    if isinstance(where, RemoteLocation):
        return zarr.open_group(where.url, mode=mode, storage_options=where.storage_options)
    return zarr.open_group(str(where), mode=mode)


def store_exists(where: StoreLocation) -> bool:
    """A folder exists / a remote store's root ``zarr.json`` exists. Storage errors (bad
    credentials, unknown endpoint or bucket) become one-line ``StoreError``s."""
    if isinstance(where, Path):
        return where.exists()
    with storage_errors(where):
        return (where / ROOT_KEY).exists()


def remove(where: StoreLocation) -> None:
    """Delete a store: a folder, or a prefix's objects with the root ``zarr.json`` first (so
    the store stops being one at once, and a run killed midway leaves no store behind)."""
    if isinstance(where, Path):
        shutil.rmtree(where, ignore_errors=True)
        return
    with storage_errors(where):
        fs, path = where.filesystem()
        if fs.exists(f"{path}/{ROOT_KEY}"):
            fs.rm(f"{path}/{ROOT_KEY}")
        if fs.exists(path):
            fs.rm(path, recursive=True)
        fs.invalidate_cache()


def relative_keys(where: RemoteLocation) -> list[str]:
    """Every object key under ``where``, relative to it."""
    fs, path = where.filesystem()
    fs.invalidate_cache()
    prefix = path.rstrip("/") + "/"
    return sorted(key.removeprefix(prefix) for key in fs.find(path) if key.startswith(prefix))


def count_files(where: StoreLocation) -> int:
    """Files/objects under ``where`` (0 if absent)."""
    if isinstance(where, Path):
        return sum(1 for file in where.rglob("*") if file.is_file()) if where.is_dir() else 0
    return len(relative_keys(where))


@contextlib.contextmanager
def storage_errors(where: RemoteLocation) -> Iterator[None]:
    """Turn a storage failure (denied, no credentials, no such bucket) into one ``StoreError``."""
    try:
        yield
    except StoreError:
        raise
    except Exception as exc:  # noqa: BLE001 - botocore/gcsfs/fsspec errors alike
        raise StoreError(f"{where}: object store unreachable or access denied "
                         f"({type(exc).__name__}: {first_line(exc)}); check the credentials "
                         "(AWS_* env vars, profile) and --storage-option") from exc
