"""A vocabulary's names embedded by a checkpoint's own text encoder, cached as a text store.

``vocabulary_table(vocabulary, text, cache_dir)`` returns the names (``pipeline.vocabularies``:
a built-in list or a user's names file) with their prompt-averaged embeddings. They are kept in
``<cache>/text/<encoder>/vocabulary-<name>.zarr``, written by the same code as a dataset's text
store (``pipeline.extract.extract_text``), whose attributes record the encoder's identity, the
prompt templates, the vocabulary's name and its names file's sha256. A later call finds that
store current and encodes nothing; a changed names file, another encoder (other weights) or
other templates make it encode again and replace the store.

Which names are "seen" (``seen_mask``): those that match (``pipeline.vocabularies.match_key``)
one of the names a checkpoint trained on (``checkpoint_seen_names``); the generalized rule
lowers their logits by the checkpoint's calibration (``pipeline.model.scoring.calibrate``).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.encoders.templates import PROMPT_TEMPLATES
from pipeline.encoders.text import TextEncoder
from pipeline.errors import FusionerError
from pipeline.extract import extract_text, text_store_attrs, text_store_is_current
from pipeline.model.checkpoint import IDENTITY_KEYS, provenance
from pipeline.store import StoreLocation, check_provenance, read_text_store, text_store_path
from pipeline.vocabularies import Vocabulary, load_vocabulary, match_key

log = logging.getLogger("fusioner.vocabulary")
STORE_PREFIX = "vocabulary-"  # a vocabulary's text store: <cache>/text/<encoder>/vocabulary-<name>

TextSource = TextEncoder | Callable[[], TextEncoder]
"""A built text encoder, or a function that builds it (called only if the cache misses)."""


@dataclass(frozen=True)
class VocabularyTable:
    """A vocabulary's names and their (K, D) float32 embeddings, row i = ``names[i]``;
    ``encoded``: how many names this call encoded (0: read from the cache)."""

    vocabulary: Vocabulary
    embeddings: torch.Tensor
    store: StoreLocation
    encoded: int

    @property
    def names(self) -> tuple[str, ...]:
        return self.vocabulary.names

    def seen(self, seen_names: Sequence[str]) -> np.ndarray:
        """(K,) bool: which names match one of ``seen_names`` (``seen_mask``)."""
        return seen_mask(self.names, seen_names)


def seen_mask(names: Sequence[str], seen_names: Sequence[str]) -> np.ndarray:
    """(len(names),) bool: True where a name matches (``match_key``) one of ``seen_names``."""
    keys = {match_key(name) for name in seen_names}
    return np.array([match_key(name) in keys for name in names], dtype=bool)


def checkpoint_seen_names(meta: Mapping[str, Any]) -> list[str]:
    """The class names a checkpoint trained on (``meta["seen"]`` ids into its class names)."""
    names = [str(name) for name in meta.get("class_names", [])]
    return [names[int(i)] for i in meta.get("seen", [])]


def vocabulary_store_path(cache_dir: StoreLocation | str, encoder: str,
                          vocabulary: Vocabulary) -> StoreLocation:
    """``<cache>/text/<encoder>/vocabulary-<name>.zarr`` (the name made file-safe)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", vocabulary.name).strip("._") or "names"
    return text_store_path(cache_dir, encoder, STORE_PREFIX + safe)


def names_file_sha256(path: Path) -> str:
    """sha256 of a names file's bytes (part of its store's identity)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def vocabulary_table(vocabulary: str | Path | Vocabulary, text: TextSource,
                     cache_dir: StoreLocation | str,
                     expect: Mapping[str, Any] | None = None) -> VocabularyTable:
    """The names of ``vocabulary`` (built-in name, names file or ``Vocabulary``) embedded by
    ``text``, read from the cache when current, else encoded and cached.

    ``expect``: the identity the text encoder must have (e.g. ``text_expect(checkpoint meta)``);
    with it, a current store is read without building an encoder (``text`` may then be a
    function that builds one on a miss), and an encoder of another identity is refused.
    """
    vocab = vocabulary if isinstance(vocabulary, Vocabulary) else load_vocabulary(vocabulary)
    encoder = text if isinstance(text, TextEncoder) else None
    if expect is None:
        encoder = encoder or text()  # type: ignore[operator]
        expect = provenance(encoder.provenance(), IDENTITY_KEYS)
    identity = {k: expect[k] for k in IDENTITY_KEYS if k in expect}
    if "encoder" not in identity:
        raise FusionerError("the text encoder's identity names no encoder slug")
    path = vocabulary_store_path(cache_dir, str(identity["encoder"]), vocab)
    dataset = STORE_PREFIX + vocab.name
    extra = {"vocabulary": vocab.name, "vocabulary_sha256": names_file_sha256(vocab.source)}
    names = list(vocab.names)
    known = encoder.provenance() if encoder is not None else identity
    attrs = {**text_store_attrs(known, dataset, PROMPT_TEMPLATES), **extra}
    encoded = 0
    if not text_store_is_current(path, attrs, names):
        encoder = encoder or text()  # type: ignore[operator]
        check_provenance(path, encoder.provenance(), identity)
        log.info("vocabulary '%s': %d names for %s (cached in %s)", vocab.name, len(names),
                 encoder.slug, path)
        encoded = extract_text(names, encoder, path, dataset, extra_attrs=extra)["encoded"]
    stored = read_text_store(path, expect={**identity, **extra})
    return VocabularyTable(vocab, stored.embeddings, path, encoded)
