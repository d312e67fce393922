"""The name-shuffled control text encoder: a seeded derangement of the names (background kept),
built through the registry and extracted by the real CLI into a store that says it is one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from pipeline.encoders.controls import name_derangement
from pipeline.errors import FusionerError
from pipeline.names import text_slug
from pipeline.store import read_text_store, text_store_path
from stages.extract import main as extract_main
from tests.dataset_fixtures import make_yolo

NAMES = st.lists(st.text("abcxyz ", min_size=1, max_size=5), min_size=2, max_size=40,
                 unique=True)


@given(names=NAMES, background=st.booleans(), where=st.integers(0, 40), seed=st.integers(0, 9))
def test_a_seeded_derangement_of_every_name_but_background(names: list[str], background: bool,
                                                           where: int, seed: int) -> None:
    names = [n for n in names if n != "background"]
    if background:
        names.insert(where % (len(names) + 1), "background")
    movable = [i for i, n in enumerate(names) if n != "background"]
    if len(movable) < 2:
        with pytest.raises(FusionerError, match="2 or more"):
            name_derangement(names, seed)
        return
    perm = name_derangement(names, seed)
    assert sorted(perm) == list(range(len(names)))
    assert all(perm[i] != i for i in movable)
    assert all(perm[i] == i for i, n in enumerate(names) if n == "background")
    assert perm == name_derangement(list(names), seed)


def test_shuffled_names_resolve_their_alias() -> None:
    assert text_slug("shuffled:minilm") == "shuffled:minilm_l6"
    assert text_slug("minilm") == "minilm_l6" and text_slug("shuffled:x") == "shuffled:x"


def test_extracting_the_control_store(tmp_path: Path) -> None:
    """``--text-encoder shuffled:minilm`` writes cache/text/shuffled-minilm_l6/ with the plain
    encoder's rows under the recorded permutation, background (a YOLO dataset's id 0) in
    place."""
    data = make_yolo(tmp_path / "yolo", {"train": {"a": "0 0.1 0.1 0.5 0.1 0.5 0.5"}})
    cache = tmp_path / "cache"
    for encoder in ("minilm_l6", "shuffled:minilm"):
        done = CliRunner().invoke(extract_main, [
            "--text-encoder", encoder, "--random-init", "--dataset", "yolo", "--data-root",
            str(data), "--split", "train", "--cache-dir", str(cache), "--no-progress"])
        assert done.exit_code == 0, done.output
    plain = read_text_store(text_store_path(cache, "minilm_l6", "yolo"))
    path = text_store_path(cache, "shuffled:minilm_l6", "yolo")
    assert path.name == "yolo.zarr" and path.parent.name == "shuffled-minilm_l6"
    shuffled = read_text_store(path)
    perm = shuffled.attrs["control_permutation"]
    assert shuffled.attrs["encoder"] == "shuffled:minilm_l6"
    assert (shuffled.attrs["control"], shuffled.attrs["control_source"],
            shuffled.attrs["control_seed"]) == ("name-shuffled", "minilm_l6", 0)
    assert shuffled.class_names == plain.class_names and plain.class_names[0] == "background"
    assert perm == name_derangement(plain.class_names) and perm[0] == 0
    assert torch.allclose(shuffled.embeddings, plain.embeddings[perm], atol=1e-6)
    assert not torch.allclose(shuffled.embeddings[1:], plain.embeddings[1:], atol=1e-3)
    assert "control" not in plain.attrs
