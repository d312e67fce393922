"""One writer at a time: the lock every store writer (extraction, repair, upgrade) holds.

On a local disk the lock is ``<store>.lock`` beside the store, held with an exclusive ``flock``
(``filelock.FileLock``): the kernel releases it when its holder exits or is killed, so a lock
left by a dead process is simply taken over (the file's content, the holder's host, pid and
start time, is logged as the stale holder). On an object store the lock is the object
``<store>.lock``, created with a conditional PUT (``If-None-Match: *``, atomic on S3; other
fsspec backends check-then-write, which is not atomic). Nothing releases an object when its
holder dies: a lock whose holder was a process of this host that is gone is taken over (one
taker at a time, serialised by a local lock); one held from another host is refused, and
``fusioner-store unlock`` removes it once its holder is known to be dead.
A second writer is refused with one line naming the holder. Readers never take the lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from pipeline.errors import StoreError, first_line
from pipeline.store.location import RemoteLocation, StoreLocation, as_location, storage_errors

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".lock"


class StoreLockedError(StoreError):
    """Another writer holds the store's lock."""


@dataclass(frozen=True)
class Holder:
    """Who holds a lock: host, pid and when it took the lock (local time, ISO 8601)."""

    host: str
    pid: int
    started: str

    @classmethod
    def me(cls) -> Holder:
        return cls(socket.gethostname(), os.getpid(), time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    @classmethod
    def parse(cls, data: bytes) -> Holder | None:
        try:
            fields = json.loads(data.decode())
            return cls(str(fields["host"]), int(fields["pid"]), str(fields["started"]))
        except (ValueError, KeyError, TypeError):
            return None

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    def gone(self) -> bool:
        """Whether this holder is a process of this host that no longer runs."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            pass
        return False

    def __str__(self) -> str:
        return f"host {self.host}, pid {self.pid}, since {self.started}"


def lock_path(path: StoreLocation) -> StoreLocation:
    """Where the lock of the store at ``path`` lives: beside it."""
    if isinstance(path, RemoteLocation):
        return RemoteLocation(path.url + LOCK_SUFFIX, path.storage_options)
    return path.with_name(path.name + LOCK_SUFFIX)


@contextlib.contextmanager
def store_lock(path: StoreLocation | str) -> Iterator[None]:
    """Hold the writer lock of the store at ``path`` for the block (re-entrant in a thread);
    ``StoreLockedError`` naming the holder if another writer holds it."""
    path = as_location(path)
    held = _remote_lock if isinstance(path, RemoteLocation) else _local_lock
    with held(path):
        yield


def _claim(fd: int) -> None:
    """``FileLock``'s hook once the flock is ours: note a stale holder, then write ourselves."""
    stale = Holder.parse(os.pread(fd, 4096, 0))
    if stale is not None:
        log.warning("took over the store lock of a writer that is gone (%s)", stale)
    os.ftruncate(fd, 0)
    os.pwrite(fd, Holder.me().encode(), 0)


@contextlib.contextmanager
def _local_lock(path: Path) -> Iterator[None]:
    where = lock_path(path)
    assert isinstance(where, Path)
    where.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(where, timeout=0, is_singleton=True, on_acquired=_claim)
    try:
        lock.acquire()
    except Timeout:
        holder = Holder.parse(_read(where)) or "unknown holder"
        raise StoreLockedError(f"{path}: another writer holds the store lock ({holder}); wait "
                               f"for it to finish (its lock: {where})") from None
    except OSError as exc:  # e.g. a filesystem without flock: refuse rather than pretend
        raise StoreError(f"{path}: cannot take the store lock {where} ({first_line(exc)}); "
                         "write the cache on a filesystem with flock") from exc
    try:
        yield
    finally:
        if lock.lock_counter == 1:  # the outermost hold: the next holder finds no stale name
            os.truncate(where, 0)
        lock.release()


def _read(where: Path) -> bytes:
    try:
        return where.read_bytes()
    except OSError:
        return b""


_REMOTE = threading.local()  # .held: lock URL -> depth, re-entrance within a thread (as flock's)


def _remote_held() -> dict[str, int]:
    if not hasattr(_REMOTE, "held"):
        _REMOTE.held = {}
    return _REMOTE.held


@contextlib.contextmanager
def _remote_lock(path: RemoteLocation) -> Iterator[None]:
    where = lock_path(path)
    assert isinstance(where, RemoteLocation)
    held = _remote_held()
    if held.get(where.url):
        held[where.url] += 1
        try:
            yield
        finally:
            held[where.url] -= 1
        return
    with storage_errors(where):
        fs, key = where.filesystem()
        protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
        if "s3" not in protocols:
            log.warning("%s: conditional create is atomic on S3 only; two writers starting at "
                        "the same instant on %s may both get the lock", path, fs.protocol)
        if not _create(fs, key):
            _take_over_or_refuse(path, fs, key)
    held[where.url] = 1
    try:
        yield
    finally:
        del held[where.url]
        with storage_errors(where):
            fs.rm(key)


def _create(fs: object, key: str) -> bool:
    """Create the lock object unless it exists (``If-None-Match: *`` on S3)."""
    try:
        fs.pipe_file(key, Holder.me().encode(), mode="create")  # type: ignore[attr-defined]
    except FileExistsError:
        return False
    return True


def _take_over_or_refuse(path: RemoteLocation, fs: object, key: str) -> None:
    """Take the lock of a holder of this host that is gone (one taker at a time), else refuse."""
    name = f"fusioner-{hashlib.sha256(key.encode()).hexdigest()[:16]}{LOCK_SUFFIX}"
    with FileLock(Path(tempfile.gettempdir()) / name, timeout=60):
        holder = Holder.parse(_cat(fs, key))
        if holder is not None and holder.gone():
            log.warning("%s: took over the store lock of a writer that is gone (%s)", path, holder)
            fs.rm(key)  # type: ignore[attr-defined]
            if _create(fs, key):
                return
            holder = Holder.parse(_cat(fs, key))
    raise StoreLockedError(f"{path}: another writer holds the store lock "
                           f"({holder or 'unknown holder'}); wait for it to finish, or if that "
                           f"process is gone, remove the lock with: fusioner-store unlock {path}")


def _cat(fs: object, key: str) -> bytes:
    try:
        return bytes(fs.cat_file(key))  # type: ignore[attr-defined]
    except FileNotFoundError:
        return b""


def unlock(path: StoreLocation | str) -> Holder | None:
    """Remove the lock of the store at ``path`` (its holder must be gone); returns the holder
    it named. A local lock held by a live process is refused (a dead one's needs no unlocking:
    the next writer takes it over; this only clears its file)."""
    path = as_location(path)
    where = lock_path(path)
    if isinstance(where, RemoteLocation):
        with storage_errors(where):
            fs, key = where.filesystem()
            holder = Holder.parse(_cat(fs, key))
            if fs.exists(key):
                fs.rm(key)
        return holder
    assert isinstance(path, Path) and isinstance(where, Path)
    holder = Holder.parse(_read(where))
    with _local_lock(path):  # refuses a live holder; a dead one's flock is free
        pass
    return holder
