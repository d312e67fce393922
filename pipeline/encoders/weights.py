"""Where pretrained weights come from, in order: ``--weights``, ``$FUSIONER_WEIGHTS``, a package
that ships them, then the Hugging Face hub (through each library's own loader; see ``hub``).

A local file always wins over the hub. ``WeightsSource`` says which one was used; stores and
checkpoints record it beside the weights' sha256.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipeline.encoders.hub import HubRef, cached_weights, hub_cache_dir, hub_offline
from pipeline.errors import MissingWeightsError

RANDOM_INIT = "random-init"
WEIGHTS_ENV = "FUSIONER_WEIGHTS"
# where the weights in use came from (the store's ``weights_source`` attribute)
FROM_OPTION, FROM_ENV, FROM_PACKAGE, FROM_HUB = "option", "env", "package", "hub"


@dataclass(frozen=True)
class WeightsSource:
    """The weights an encoder is built from.

    Args:
        kind: ``option`` (``--weights``), ``env`` (``$FUSIONER_WEIGHTS``), ``package`` or ``hub``.
        path: the local file or folder; for the hub, the cached snapshot file (None until the
            library has downloaded it).
        hub: the hub repository, when ``kind`` is ``hub``.
        revision: the hub commit hash of the snapshot in use.
    """

    kind: str
    path: Path | None
    hub: HubRef | None = None
    revision: str | None = None

    def record(self) -> dict[str, Any]:
        """Provenance attributes: where the weights came from (hub id and revision if any)."""
        return {"weights_source": self.kind, "hub_id": self.hub.repo_id if self.hub else None,
                "hub_revision": self.revision}

    def describe(self) -> str:
        """One phrase for logs, e.g. ``hub timm/vit_small_patch16_224.dino@3f2a...``."""
        if self.kind == FROM_HUB and self.hub is not None:
            return f"hub {self.hub.repo_id}@{self.revision or '?'} ({self.path})"
        return f"{self.kind} {self.path}"


RANDOM_RECORD = {"weights_source": RANDOM_INIT, "hub_id": None, "hub_revision": None}


def weights_dir() -> Path | None:
    """The user's weights directory, if ``$FUSIONER_WEIGHTS`` is set."""
    value = os.environ.get(WEIGHTS_ENV)
    return Path(value) if value else None


def find_local_weights(
    explicit: Path | str | None,
    file_names: Sequence[str],
    packaged: Callable[[], Path | None] | None = None,
) -> tuple[WeightsSource | None, list[str]]:
    """The first local weights (``--weights``, ``$FUSIONER_WEIGHTS``, a package) and what was
    looked at. A given ``explicit`` path that does not exist is an error."""
    if explicit is not None:
        path = Path(explicit)
        if not path.exists():
            raise MissingWeightsError(f"weights not found: {path} does not exist")
        return WeightsSource(FROM_OPTION, path), []
    looked: list[str] = []
    directory = weights_dir()
    if directory is not None:
        for name in file_names:
            candidate = directory / name
            if candidate.exists():
                return WeightsSource(FROM_ENV, candidate), []
            looked.append(str(candidate))
    elif file_names:
        looked.append(f"${WEIGHTS_ENV}/{file_names[0]} (${WEIGHTS_ENV} is not set)")
    if packaged is not None:
        found = packaged()
        if found is not None and found.exists():
            return WeightsSource(FROM_PACKAGE, found), []
        looked.append("its package (not installed)")
    return None, looked


def resolve_weights(
    slug: str,
    explicit: Path | str | None,
    file_names: Sequence[str],
    packaged: Callable[[], Path | None] | None = None,
    hub: HubRef | None = None,
) -> WeightsSource:
    """Find the weights of encoder ``slug`` or raise ``MissingWeightsError`` (one line).

    Order: ``explicit`` (``--weights``), ``$FUSIONER_WEIGHTS/<name>`` for each of ``file_names``,
    a package that ships the weights, then ``hub``: its cached snapshot, or - when the hub may be
    reached (``HF_HUB_OFFLINE`` unset) - a download that the encoder's library makes itself
    (``path`` is then None until it has).
    """
    try:
        local, looked = find_local_weights(explicit, file_names, packaged)
    except MissingWeightsError as exc:
        raise MissingWeightsError(f"no weights for '{slug}': {exc}") from exc
    if local is not None:
        return local
    if hub is not None:
        cached = cached_weights(hub)
        if cached is not None:
            return WeightsSource(FROM_HUB, cached[0], hub, cached[1])
        if not hub_offline():
            return WeightsSource(FROM_HUB, None, hub)
        raise MissingWeightsError(missing_from_hub(slug, hub, looked, "HF_HUB_OFFLINE is set"))
    raise MissingWeightsError(
        f"no pretrained weights for '{slug}' (it has no hub id): looked for "
        f"{', '.join(looked)}; pass --weights PATH or put {file_names[0]} in ${WEIGHTS_ENV} "
        f"(use --random-init only for tests)"
    )


def missing_from_hub(slug: str, hub: HubRef, looked: Sequence[str], why: str) -> str:
    """The one-line error for weights found neither locally nor in the hub cache."""
    local = f"; no local file ({', '.join(looked)})" if looked else ""
    return (f"no weights for '{slug}': hub repo {hub.repo_id} is not in the hub cache "
            f"{hub_cache_dir()} and cannot be downloaded ({why}){local}; "
            f"pre-fetch it with `{hub.download_command()}` or pass --weights PATH")


@lru_cache(maxsize=32)
def _sha256_file(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(path: Path | None) -> str:
    """sha256 of a weights file (or of every file of a model directory, in name order)."""
    if path is None:
        return RANDOM_INIT
    files = sorted(p for p in Path(path).rglob("*") if p.is_file()) if Path(path).is_dir() else [
        Path(path)
    ]
    digests = [_sha256_file(f, f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    if len(digests) == 1:
        return digests[0]
    return hashlib.sha256("".join(digests).encode()).hexdigest()
