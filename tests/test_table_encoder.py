"""Table text encoders: the shared CLIP ViT-B/32 tables (real data) and a user's own table,
looked up by the one name-matching rule, with their provenance, and no silent fallback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pipeline.encoders import create_text_encoder
from pipeline.errors import BadInputError, MissingWeightsError, UnknownNameError
from pipeline.text_tables.source import file_sha256
from pipeline.vocabularies import TABLES_ENV, tables_root
from tests.conftest import CAMVID_CLASSES

CATALOGUE_FILES = {f"{stem}{suffix}" for stem in ("coco", "lvis_v1", "objects365", "openimages")
                   for suffix in (".npy", ".txt")}


def _shared_row(stem: str, name: str) -> torch.Tensor:
    """The shared table's row of ``name``, L2-normalised (read here, independently)."""
    names = (tables_root() / f"{stem}.txt").read_text(encoding="utf-8").splitlines()
    row = torch.from_numpy(np.load(tables_root() / f"{stem}.npy")[names.index(name)]).float()
    return row / row.norm()


@pytest.fixture(scope="module")
def clip_table():
    return create_text_encoder("clip_table")


def test_catalogue_rows_are_the_shared_rows_normalised(clip_table) -> None:
    assert (clip_table.slug, clip_table.feature_dim) == ("clip_vitb32_table", 512)
    got = clip_table.encode_classes(["person", "Aerosol Can", " traffic_light ", "rhinoceros"])
    expected = torch.stack([_shared_row("coco", "person"), _shared_row("lvis_v1", "aerosol_can"),
                            _shared_row("coco", "traffic light"),
                            _shared_row("lvis_v1", "rhinoceros")])
    torch.testing.assert_close(got, expected)
    assert torch.allclose(got.norm(dim=1), torch.ones(4))


def test_every_coco_name_is_found_in_the_coco_table(clip_table) -> None:
    names = (tables_root() / "coco.txt").read_text(encoding="utf-8").splitlines()
    attrs = clip_table.store_attrs(names, ())
    assert [match for match in attrs["table_matches"]] == [["coco", name] for name in names]
    assert attrs["unembedded"] == [] and attrs["templates"] == ["a {}"]


def test_exact_match_first_then_the_first_folded_one(clip_table) -> None:
    # COCO says "bench"; Objects365 and Open Images say "Bench": an exact name wins anywhere
    matches = clip_table.store_attrs(["bench", "Bench", "BENCH"], ())["table_matches"]
    assert matches == [["coco", "bench"], ["objects365", "Bench"], ["coco", "bench"]]


def test_catalogue_provenance_records_every_table_file(clip_table) -> None:
    provenance = clip_table.provenance()
    files = provenance["table_files"]
    assert set(files) == CATALOGUE_FILES
    assert all(files[name] == file_sha256(tables_root() / name) for name in files)
    assert len(provenance["weights_sha256"]) == 64
    assert provenance["weights_source"] == "table" and provenance["random_init"] is False
    assert provenance["table_prompt"] == "a {name}" and "ViT-B/32" in provenance["table_model"]


def test_missing_names_are_one_line_with_the_closest_never_a_fallback(clip_table) -> None:
    with pytest.raises(UnknownNameError) as info:
        clip_table.encode_classes(list(CAMVID_CLASSES))
    message = str(info.value)
    assert "\n" not in message and message.startswith("7 of 11 class names have no row")
    assert ("'bicyclist' is not in the CLIP ViT-B/32 tables (2148 names); closest: bicycle"
            in message)
    assert "'sky'" in message and "'building'" not in message  # building, pole, tree, car: found
    with pytest.raises(UnknownNameError, match="'background' is not in"):
        clip_table.encode_classes(["person", "background"])  # segment never gets a zero row


def test_store_rows_give_background_a_zero_row_and_say_so(clip_table) -> None:
    names = ["background", "person", "dog"]
    rows = clip_table.encode_store(names, ())
    assert torch.equal(rows[0], torch.zeros(512))
    torch.testing.assert_close(rows[1:], clip_table.encode_classes(names[1:]))
    attrs = clip_table.store_attrs(names, ())
    assert attrs["unembedded"] == ["background"] and attrs["table_matches"][0] is None
    with pytest.raises(UnknownNameError,
                       match=r"1 of 3 class names have no row \(no fallback\): 'sky'"):
        clip_table.encode_store(["background", "sky", "dog"], ())


def test_user_table_through_the_registry(tmp_path: Path) -> None:
    vectors = np.random.default_rng(0).normal(size=(4, 7)).astype(np.float32)
    path = tmp_path / "mine.npy"
    np.save(path, vectors.T)  # stored (D, N): told apart by the 4 names
    (tmp_path / "mine.txt").write_text("Bench\nbench\nhot_dog\ncat\n", encoding="utf-8")
    encoder = create_text_encoder(f"table:{path}")
    assert (encoder.slug, encoder.feature_dim) == (f"table:{path}", 7)
    unit = torch.nn.functional.normalize(torch.from_numpy(vectors), dim=1)
    got = encoder.encode_classes(["bench", "BENCH", "Hot Dog", "  cat"])
    torch.testing.assert_close(got, unit[[1, 0, 2, 3]])  # exact first, else the first folded
    provenance = encoder.provenance()
    assert provenance["table_files"] == {str(path): file_sha256(path),
                                         str(tmp_path / "mine.txt"): file_sha256(
                                             tmp_path / "mine.txt")}
    assert provenance["table_prompt"] is None  # a .npy does not say
    again = create_text_encoder(f"table:{path}", random_init=True)  # nothing to randomise
    assert torch.equal(again.encode_classes(["cat"]), got[3:])
    assert again.provenance() == provenance
    with pytest.raises(BadInputError, match="--text-weights does not apply"):
        create_text_encoder(f"table:{path}", weights=path)
    with pytest.raises(UnknownNameError, match=rf"'dog' is not in table {path} .4 names."):
        encoder.encode_classes(["dog"])


def test_maskclip_dict_records_its_prompt_and_model(tmp_path: Path) -> None:
    path = tmp_path / "voc.pth"
    torch.save({"names": ["cat", "dog"], "embeddings": torch.eye(2, 3) + 0.1,
                "prompt": "a photo of a {name}.", "model": "CLIP ViT-B/16"}, path)
    encoder = create_text_encoder(f"table:{path}")
    provenance = encoder.provenance()
    assert set(provenance["table_files"]) == {str(path)}
    assert (provenance["table_prompt"], provenance["table_model"]) == ("a photo of a {name}.",
                                                                       "CLIP ViT-B/16")
    assert encoder.store_attrs(["dog"], ())["templates"] == ["a photo of a {}."]


def test_missing_tables_are_one_line_and_listed_as_missing(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from stages.encoders import main

    shown = CliRunner().invoke(main, ["--json"])
    rows = {row["slug"]: row for row in map(json.loads, shown.output.splitlines())}
    present = rows["clip_vitb32_table"]
    assert (present["kind"], present["aliases"], present["origin"]) == ("text", ["clip_table"],
                                                                        "table")
    assert present["where"] == str(tables_root())
    monkeypatch.setenv(TABLES_ENV, str(tmp_path))
    with pytest.raises(MissingWeightsError, match=rf"{tmp_path / 'coco.npy'} is missing "
                                                   rf"\(set \${TABLES_ENV}"):
        create_text_encoder("clip_vitb32_table")
    shown = CliRunner().invoke(main, ["--json"])
    rows = {row["slug"]: row for row in map(json.loads, shown.output.splitlines())}
    assert rows["clip_vitb32_table"]["origin"] == "missing"
    assert str(tmp_path / "coco.npy") in rows["clip_vitb32_table"]["where"]
    with pytest.raises(MissingWeightsError, match="no table for 'table:nope.npy'"):
        create_text_encoder("table:nope.npy")
