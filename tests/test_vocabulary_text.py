"""``pipeline.vocabulary_text``: a vocabulary's names embedded by the checkpoint's text encoder,
cached in a text store that a second call reads without encoding anything."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from pipeline.encoders import create_text_encoder
from pipeline.errors import StoreError
from pipeline.model.checkpoint import IDENTITY_KEYS, provenance
from pipeline.store import read_text_store
from pipeline.vocabulary_text import checkpoint_seen_names, seen_mask, vocabulary_table


@pytest.fixture(scope="module")
def encoder():
    return create_text_encoder("minilm_l6", random_init=True)


@pytest.fixture
def counted(encoder, monkeypatch) -> list[int]:
    """Names encoded by ``encoder`` (one entry per ``encode_classes`` call)."""
    calls: list[int] = []
    original = encoder.encode_classes

    def encode(names, *args, **kwargs):
        calls.append(len(names))
        return original(names, *args, **kwargs)

    monkeypatch.setattr(encoder, "encode_classes", encode)
    return calls


def _names(path: Path, *names: str) -> Path:
    path.write_text("\n".join(names) + "\n", encoding="utf-8")
    return path


def test_second_call_encodes_nothing(tmp_path: Path, encoder, counted: list[int]) -> None:
    names = _names(tmp_path / "kitchen.txt", "cup", "fork", "dining_table")
    first = vocabulary_table(names, encoder, tmp_path / "cache")
    assert counted == [3] and first.encoded == 3
    assert first.names == ("cup", "fork", "dining table") and first.embeddings.shape == (3, 384)
    assert first.store == tmp_path / "cache" / "text" / "minilm_l6" / "vocabulary-kitchen.zarr"
    attrs = read_text_store(first.store).attrs
    assert attrs["vocabulary"] == "kitchen" and attrs["encoder"] == "minilm_l6"
    assert attrs["vocabulary_sha256"] == hashlib.sha256(names.read_bytes()).hexdigest()
    second = vocabulary_table(names, encoder, tmp_path / "cache")
    assert counted == [3] and second.encoded == 0  # read from the store
    assert np.array_equal(second.embeddings.numpy(), first.embeddings.numpy())
    _names(names, "cup", "fork", "dining_table", "knife")  # the file changed: encoded again
    third = vocabulary_table(names, encoder, tmp_path / "cache")
    assert counted == [3, 4] and third.names[-1] == "knife"


def test_a_current_store_needs_no_encoder_at_all(tmp_path: Path, encoder) -> None:
    names = _names(tmp_path / "street.txt", "car", "bus")
    vocabulary_table(names, encoder, tmp_path / "cache")
    identity = provenance(encoder.provenance(), IDENTITY_KEYS)

    def build():
        raise AssertionError("no encoder may be built for a current store")

    table = vocabulary_table(names, build, tmp_path / "cache", expect=identity)
    assert table.encoded == 0 and table.names == ("car", "bus")


def test_an_encoder_of_another_identity_is_refused(tmp_path: Path, encoder) -> None:
    names = _names(tmp_path / "street.txt", "car", "bus")
    other = {**provenance(encoder.provenance(), IDENTITY_KEYS), "weights_sha256": "f" * 64}
    with pytest.raises(StoreError, match="weights_sha256"):
        vocabulary_table(names, encoder, tmp_path / "cache", expect=other)
    assert not (tmp_path / "cache" / "text" / "minilm_l6" / "vocabulary-street.zarr").exists()


def test_seen_names_are_matched_by_the_vocabulary_rule() -> None:
    meta = {"class_names": ["background", "traffic light", "Dining_Table", "cat"], "seen": [1, 2]}
    assert checkpoint_seen_names(meta) == ["traffic light", "Dining_Table"]
    found = seen_mask(["cat", "dining table", "Traffic  Light", "dog"], checkpoint_seen_names(meta))
    assert found.tolist() == [False, True, True, False]
