"""Built-in vocabularies, users' names files and the name-matching rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import BadInputError, UnknownNameError
from pipeline.vocabularies import (
    BUILTIN_VOCABULARIES,
    find_name,
    load_vocabulary,
    match_key,
    unique_names,
)


def test_builtin_vocabularies_hold_their_documented_counts() -> None:
    counts = {name: len(load_vocabulary(name).names) for name in BUILTIN_VOCABULARIES}
    # Open Images lists "Bench"/"bench" and "Mouse"/"mouse": one name each after matching
    assert counts == {"coco": 80, "lvis": 1203, "objects365": 365, "openimages": 498}
    assert load_vocabulary("coco").names[:3] == ("person", "bicycle", "car")
    assert "aerosol can" in load_vocabulary("lvis").names


def test_match_key_folds_case_underscores_and_whitespace() -> None:
    assert match_key("  Aerosol_Can ") == match_key("aerosol   can") == "aerosol can"
    assert match_key("Traffic light") != match_key("traffic lights")


def test_find_name_is_exact_first_then_normalised_else_one_line_error() -> None:
    names = ["Bench", "bench", "aerosol_can", "teddy bear"]
    assert find_name("bench", names, "t") == 1  # exact beats the normalised "Bench"
    assert find_name("BENCH", names, "t") == 0
    assert find_name("aerosol can", names, "t") == 2
    with pytest.raises(UnknownNameError, match=r"'teddy bears' is not in t \(4 names\); "
                                               r"closest: teddy bear"):
        find_name("teddy bears", names, "t")


def test_names_file_vocabulary(tmp_path: Path) -> None:
    path = tmp_path / "mine.txt"
    path.write_text("cat\n\nDog\ndog\n  hot_dog \n", encoding="utf-8")
    vocabulary = load_vocabulary(path)
    assert (vocabulary.name, vocabulary.names) == ("mine", ("cat", "Dog", "hot dog"))
    assert unique_names(["", " "]) == ()


@pytest.mark.parametrize("content", [b"\n \n", b"\xff\xfe\xfa"])
def test_bad_names_files_are_one_line_errors(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(BadInputError, match="bad.txt"):
        load_vocabulary(path)


def test_unknown_vocabulary_names_the_builtin_ones() -> None:
    with pytest.raises(UnknownNameError, match="neither a built-in one .coco, lvis"):
        load_vocabulary("no-such-vocabulary")
