"""The Hugging Face hub cache, as timm, open_clip and transformers use it.

Downloads are made by each library's own loader (timm pretrained tags, open_clip ``pretrained=``
tags and ``hf-hub:`` ids, transformers ``from_pretrained``), all through ``huggingface_hub``:
``HF_HOME``, ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` apply, and downloads show its progress bars.
This module only looks into the cache: which snapshot (commit) holds an encoder's weights.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class HubRef:
    """An encoder's weights on the hub.

    Args:
        repo_id: the hub repository (``timm/vit_small_patch16_224.dino``).
        weight_files: the weights file names the library looks for, in its order of preference.
        fetch: what to pre-fetch: file names, or glob patterns (``*.json``) when the library
            reads files whose names vary (configs, tokenizers); default: the first weights file.
    """

    repo_id: str
    weight_files: tuple[str, ...]
    fetch: tuple[str, ...] = ()

    def download_command(self) -> str:
        """The ``hf download`` command that pre-fetches what the encoder needs."""
        wanted = self.fetch or self.weight_files[:1]
        if any("*" in item for item in wanted):
            return shlex.join(["hf", "download", self.repo_id,
                               *[arg for item in wanted for arg in ("--include", item)]])
        return shlex.join(["hf", "download", self.repo_id, *wanted])


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` forbids downloads (read as huggingface_hub reads it)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_cache_dir() -> Path:
    """The hub cache in use (``HF_HUB_CACHE``, else ``$HF_HOME/hub``)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def cached_weights(ref: HubRef) -> tuple[Path, str] | None:
    """(cached weights file, its commit hash) of ``ref``'s ``main`` snapshot, if cached."""
    from huggingface_hub import try_to_load_from_cache

    for name in ref.weight_files:
        found = try_to_load_from_cache(ref.repo_id, name, cache_dir=hub_cache_dir())
        if isinstance(found, str):
            return Path(found), snapshot_revision(Path(found))
    return None


def snapshot_revision(path: Path) -> str:
    """The commit hash of a file in the hub cache (``.../snapshots/<commit>/<file>``)."""
    for parent in path.parents:
        if parent.parent.name == "snapshots":
            return parent.name
    raise ValueError(f"{path} is not inside a hub cache snapshot")
