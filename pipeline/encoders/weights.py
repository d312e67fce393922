"""Where pretrained weights come from: an explicit path, ``$FUSIONER_WEIGHTS``, or a package.

Nothing is ever downloaded at run time.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

from pipeline.errors import MissingWeightsError

RANDOM_INIT = "random-init"
WEIGHTS_ENV = "FUSIONER_WEIGHTS"


def weights_dir() -> Path | None:
    """The user's weights directory, if ``$FUSIONER_WEIGHTS`` is set."""
    value = os.environ.get(WEIGHTS_ENV)
    return Path(value) if value else None


def resolve_weights(
    slug: str,
    explicit: Path | str | None,
    file_names: Sequence[str],
    packaged: Callable[[], Path | None] | None = None,
) -> Path:
    """Find the local weights of encoder ``slug`` or raise ``MissingWeightsError``.

    Order: ``explicit`` (``--weights``), then ``$FUSIONER_WEIGHTS/<name>`` for each of
    ``file_names``, then a package that ships the weights.
    """
    if explicit is not None:
        path = Path(explicit)
        if not path.exists():
            raise MissingWeightsError(f"weights for '{slug}' not found: {path} does not exist")
        return path
    looked: list[str] = []
    directory = weights_dir()
    if directory is not None:
        for name in file_names:
            candidate = directory / name
            if candidate.exists():
                return candidate
            looked.append(str(candidate))
    if packaged is not None:
        found = packaged()
        if found is not None and found.exists():
            return found
        looked.append("its package (not installed)")
    if not looked:
        looked.append(f"${WEIGHTS_ENV}/{file_names[0]} (${WEIGHTS_ENV} is not set)")
    raise MissingWeightsError(
        f"no pretrained weights for '{slug}': looked for {', '.join(looked)}; "
        f"pass --weights PATH or put {file_names[0]} in ${WEIGHTS_ENV} "
        f"(use --random-init only for tests)"
    )


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
