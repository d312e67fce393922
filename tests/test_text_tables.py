"""Reading precomputed text tables: every form, orientation by the names count, and every bad
table refused in one line that names the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.errors import BadInputError, StoreError
from pipeline.text_tables import check_table_source, read_table
from pipeline.text_tables.source import file_sha256

NAMES = ["cat", "hot_dog", "traffic light"]


def _vectors(count: int = 3, dim: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, dim)).astype(np.float16)


def _npy(folder: Path, array: np.ndarray, names: list[str] | None = NAMES,
         stem: str = "mine") -> Path:
    path = folder / f"{stem}.npy"
    np.save(path, array)
    if names is not None:
        (folder / f"{stem}.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    return path


def test_npy_with_names_file_reads_rows_in_order(tmp_path: Path) -> None:
    array = _vectors()
    table = read_table(_npy(tmp_path, array))
    assert table.names == tuple(NAMES)
    assert table.vectors.dtype == np.float32 and table.vectors.shape == (3, 5)
    np.testing.assert_array_equal(table.vectors, array.astype(np.float32))  # not normalised
    assert table.files == (tmp_path / "mine.npy", tmp_path / "mine.txt")
    assert (table.prompt, table.model) == (None, None)


def test_d_by_n_is_told_apart_by_the_names_count(tmp_path: Path) -> None:
    array = _vectors()
    table = read_table(_npy(tmp_path, array.T.copy()))
    np.testing.assert_array_equal(table.vectors, array.astype(np.float32))


def test_torch_tensor_and_both_dict_forms(tmp_path: Path) -> None:
    array = _vectors().astype(np.float32)
    tensor_path = tmp_path / "tensor.pt"
    torch.save(torch.from_numpy(array).T.contiguous(), tensor_path)  # (D, N), MaskCLIP-like
    (tmp_path / "tensor.txt").write_text("\n".join(NAMES), encoding="utf-8")
    by_name = tmp_path / "by_name.pth"
    torch.save({name: torch.from_numpy(row) for name, row in zip(NAMES, array, strict=True)},
               by_name)
    maskclip = tmp_path / "maskclip.pt"
    torch.save({"names": NAMES, "embeddings": torch.from_numpy(array).half(),
                "prompt": "a photo of a {name}.", "model": "my CLIP"}, maskclip)
    for path in (tensor_path, by_name, maskclip):
        table = read_table(path)
        assert table.names == tuple(NAMES), path
        np.testing.assert_allclose(table.vectors, array, rtol=1e-3, atol=1e-3)
    assert read_table(tensor_path).files == (tensor_path, tmp_path / "tensor.txt")
    assert read_table(by_name).files == (by_name,)  # its names are inside: no names file
    assert (read_table(maskclip).prompt, read_table(maskclip).model) == ("a photo of a {name}.",
                                                                         "my CLIP")


def test_same_name_twice_with_the_same_row_is_fine(tmp_path: Path) -> None:
    # as the shared Open Images table lists "Bench" and "Mouse" twice
    array = _vectors(count=2)
    array = np.concatenate([array, array[:1]])
    table = read_table(_npy(tmp_path, array, ["Bench", "cat", "Bench"]))
    assert table.names == ("Bench", "cat", "Bench")


def test_trailing_blank_lines_of_a_names_file_are_not_names(tmp_path: Path) -> None:
    path = _npy(tmp_path, _vectors())
    (tmp_path / "mine.txt").write_text("\n".join(NAMES) + "\n\n\n", encoding="utf-8")
    assert read_table(path).names == tuple(NAMES)


def _truncated(folder: Path) -> Path:
    path = _npy(folder, _vectors())
    path.write_bytes(path.read_bytes()[:100])
    return path


def _truncated_torch(folder: Path) -> Path:
    path = folder / "mine.pt"
    torch.save({"names": NAMES, "embeddings": torch.from_numpy(_vectors()).float()}, path)
    path.write_bytes(path.read_bytes()[:200])
    return path


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def _torch(folder: Path, payload: object, names: list[str] | None = None) -> Path:
    path = folder / "mine.pt"
    torch.save(payload, path)
    if names is not None:
        (folder / "mine.txt").write_text("\n".join(names), encoding="utf-8")
    return path


def _nan_row(folder: Path) -> Path:
    array = _vectors()
    array[1, 2] = np.nan
    return _npy(folder, array)


def _inf_row(folder: Path) -> Path:
    array = _vectors().astype(np.float32)
    array[2, 0] = np.inf
    return _npy(folder, array)


def _zero_row(folder: Path) -> Path:
    array = _vectors()
    array[0] = 0
    return _npy(folder, array)


def _clashing_duplicate(folder: Path) -> Path:
    return _npy(folder, _vectors(), ["cat", "dog", "cat"])


BAD_TABLES = {
    "missing file": (lambda d: d / "nope.npy", "no such table file"),
    "unknown suffix": (lambda d: _write(d, "mine.csv", b"1,2\n"), "not a table file"),
    "truncated npy": (_truncated, "not a readable .npy table"),
    "garbage npy": (lambda d: _write(d, "mine.npy", b"not an array"),
                    "not a readable .npy table"),
    "truncated torch file": (_truncated_torch, "not a readable torch table"),
    "garbage torch file": (lambda d: _write(d, "mine.pt", b"not a torch file"),
                           "not a readable torch table"),
    "torch list": (lambda d: _torch(d, [1, 2]), "holds a list"),
    "missing names file": (lambda d: _npy(d, _vectors(), names=None),
                           "its names file"),
    "names file of another length": (lambda d: _npy(d, _vectors(), NAMES[:2]),
                                     "2 names, but the table's shape (3, 5)"),
    "empty names file": (lambda d: _npy(d, _vectors(), []), "holds no names"),
    "empty table": (lambda d: _npy(d, np.zeros((0, 5), np.float32), []), "holds no names"),
    "zero-width table": (lambda d: _npy(d, np.zeros((3, 0), np.float32)),
                         "no non-empty axis"),
    "1-D array": (lambda d: _npy(d, np.ones(3, np.float32)), "must be 2-D"),
    "3-D array": (lambda d: _npy(d, np.ones((3, 5, 2), np.float32)), "must be 2-D"),
    "integer table": (lambda d: _npy(d, np.ones((3, 5), np.int64)), "must be floats"),
    "square table": (lambda d: _npy(d, _vectors(dim=3)), "square table"),
    "NaN row": (_nan_row, "1 row(s) hold NaN or Inf: 'hot_dog' (row 1)"),
    "Inf row": (_inf_row, "1 row(s) hold NaN or Inf: 'traffic light' (row 2)"),
    "zero row": (_zero_row, "hold only zeros"),
    "blank name": (lambda d: _npy(d, _vectors(), ["cat", " ", "dog"]), "blank name at row"),
    "one name, two rows": (_clashing_duplicate, "'cat' is listed twice (rows 0 and 2)"),
    "int tensor": (lambda d: _torch(d, torch.ones(3, 5, dtype=torch.int32), NAMES),
                   "must be a float tensor"),
    "names not strings": (lambda d: _torch(d, {"names": [1, 2, 3],
                                               "embeddings": torch.ones(3, 5)}),
                          "'names' must be a list of strings"),
    "vectors of two lengths": (lambda d: _torch(d, {"a": torch.ones(4), "b": torch.ones(5)}),
                               "1-D of one length"),
    "dict of non-names": (lambda d: _torch(d, {1: torch.ones(4)}), "maps class names"),
}


@pytest.mark.parametrize("case", sorted(BAD_TABLES))
def test_bad_tables_are_one_line_errors_naming_the_file(tmp_path: Path, case: str) -> None:
    make, needle = BAD_TABLES[case]
    path = make(tmp_path)
    with pytest.raises(BadInputError) as info:
        read_table(path)
    message = str(info.value)
    assert needle in message and str(path) in message, message
    assert "\n" not in message


def test_changed_or_missing_table_file_is_refused(tmp_path: Path) -> None:
    path = _npy(tmp_path, _vectors())
    names = tmp_path / "mine.txt"
    slug = f"table:{path}"
    attrs = {"encoder": slug, "table_files": {str(path): file_sha256(path),
                                              str(names): file_sha256(names)}}
    check_table_source(attrs, "store")  # unchanged: passes
    check_table_source({"encoder": "minilm_l6"}, "store")  # a model encoder: nothing to check
    np.save(path, _vectors(seed=1))
    with pytest.raises(StoreError, match=rf"store: its text table changed since extraction: "
                                         rf"{path} has sha256 .*--text-encoder {slug}"):
        check_table_source(attrs, "store")
    names.unlink()
    with pytest.raises(StoreError, match=f"{names} is missing"):
        check_table_source(attrs, "store")
