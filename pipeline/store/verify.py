"""Verify stores: read every chunk of every shard and check every shard's record.

``verify_store`` returns one ``Finding`` per damaged (array, shard) - or per store-wide problem
(an older format, an interrupted extraction, unreadable metadata) - and nothing for a sound
store. ``find_stores`` turns a cache folder or prefix into the stores under it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from pipeline.errors import StoreError, first_line
from pipeline.store.integrity import ShardChecker, StoreDamage
from pipeline.store.layout import UPGRADABLE, check_format
from pipeline.store.location import (
    ROOT_KEY,
    RemoteLocation,
    StoreLocation,
    as_location,
    open_group,
    relative_keys,
    storage_errors,
    store_exists,
)

# what fixes a finding: re-extract its shards, resume the extraction, upgrade the format, or
# nothing in place (re-extract the whole store with --overwrite)
SHARDS, RESUME, UPGRADE, REEXTRACT = "shards", "resume", "upgrade", "re-extract"


@dataclass(frozen=True)
class Finding:
    """What is wrong where: ``shard`` None = not one shard (every shard, or the whole store)."""

    store: str
    array: str
    shard: int | None
    problem: str
    fix: str

    @classmethod
    def of(cls, damage: StoreDamage) -> Finding:
        return cls(damage.path, damage.array, damage.shard, damage.reason, SHARDS)


def find_stores(where: StoreLocation | str) -> list[StoreLocation]:
    """``where`` if it is a store, else every store (a ``*.zarr`` with a root) under it."""
    where = as_location(where)
    if store_exists(where / ROOT_KEY if isinstance(where, Path) else where):
        return [where]
    suffix = ".zarr/" + ROOT_KEY
    if isinstance(where, RemoteLocation):
        with storage_errors(where):
            keys = relative_keys(where) if where.exists() else []
        return [where / key.removesuffix("/" + ROOT_KEY) for key in keys if key.endswith(suffix)]
    return sorted(root.parent for root in where.rglob(ROOT_KEY)
                  if root.parent.suffix == ".zarr") if where.is_dir() else []


def verify_store(path: StoreLocation | str) -> list[Finding]:
    """Every problem of the store at ``path`` (empty: every chunk and record checks out)."""
    path = as_location(path)
    if not store_exists(path):
        return [Finding(str(path), "-", None, "no such store", REEXTRACT)]
    try:
        group = open_group(path, mode="r")
        attrs = dict(group.attrs)
    except Exception as exc:  # noqa: BLE001 - any zarr failure is one finding
        return [Finding(str(path), ROOT_KEY, None, f"unreadable ({first_line(exc)})", REEXTRACT)]
    try:
        check_format(path, attrs)
        checker = ShardChecker(path, group)
    except StoreError as exc:
        old = attrs.get("format_version") in UPGRADABLE
        return [Finding(str(path), "-", None, str(exc).split(": ", 1)[-1],
                        UPGRADE if old else REEXTRACT)]
    findings: dict[tuple[str, int | None], Finding] = {}

    def note(finding: Finding) -> None:
        findings.setdefault((finding.array, finding.shard), finding)

    done = _done_shards(path, group, checker, note)
    for shard in done:
        try:
            checker.check_shard(shard)
        except StoreDamage as damage:
            note(Finding.of(damage))
        for name in checker.arrays:
            try:
                checker.read_shard(name, shard)
            except StoreDamage as damage:
                note(Finding.of(damage))
    if attrs.get("complete") is not True:
        missing = checker.layout.num_shards - len(done)
        note(Finding(str(path), "-", None, f"incomplete: {missing} of "
                     f"{checker.layout.num_shards} shards not written yet", RESUME))
    return list(findings.values())


def _done_shards(path: StoreLocation, group: zarr.Group, checker: ShardChecker,
                 note: Callable[[Finding], None]) -> list[int]:
    """The shards marked done (every shard of a text store; all of them, and a finding, when
    the flags themselves are unreadable)."""
    every = list(range(checker.layout.num_shards))
    if "shard_done" not in group.array_keys():
        return every
    try:
        done = np.asarray(group["shard_done"][:], dtype=bool)
    except Exception as exc:  # noqa: BLE001 - a damaged flag chunk
        note(Finding(str(path), "shard_done", None, f"unreadable ({first_line(exc)})", SHARDS))
        return every
    return [shard for shard in every if done[shard]]


def render(stores: Iterable[StoreLocation], findings: list[Finding]) -> str:
    """A table of ``findings`` (or a line saying every store checked out) and a summary."""
    stores = list(stores)
    if not findings:
        return f"verified {len(stores)} store(s): every chunk and shard checks out"
    rows = [("store", "array", "shard", "problem")] + [
        (f.store, f.array, "all" if f.shard is None else str(f.shard), f.problem)
        for f in findings]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
             + "  " + row[3] for row in rows]
    damaged = len({f.store for f in findings})
    lines.append(f"verified {len(stores)} store(s): {len(findings)} problem(s) in {damaged}")
    return "\n".join(lines)
