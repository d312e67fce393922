"""``fusioner-segment --vocabulary``: typed names compete with a vocabulary's other names under
the checkpoint's calibration; pixels an untyped name wins are "(none)"; large vocabularies are
scored in bounded chunks with the same result; bad combinations fail in one line, before any
file is written."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pipeline.encoders import create_visual_encoder
from pipeline.encoders.text import TextEncoder
from pipeline.errors import BadInputError
from pipeline.model.scoring import VOCABULARY_EPISODE
from pipeline.segmentation import NO_CLASS, Segmenter, segment
from pipeline.segmentation import vocabulary as vocab
from pipeline.segmentation.vocabulary import (
    load_table,
    plan_competition,
    segment_in_vocabulary,
)
from stages.segment import main
from tests.helpers import SEGMENT_INPUT, colour_image, colour_segmenter, untrained_checkpoint

RED_BLUE = np.zeros((60, 90), np.int64)
RED_BLUE[:, 45:] = 1  # red left half, blue right half (ids into tests.helpers.COLOURS)


@pytest.fixture(scope="module")
def random_visual():
    return create_visual_encoder("dino_vits16", random_init=True, image_size=SEGMENT_INPUT)


@pytest.fixture(scope="module")
def learned(random_visual) -> Segmenter:
    return colour_segmenter(random_visual)


@pytest.fixture(scope="module")
def colours(tmp_path_factory) -> tuple[Path, Path]:
    """(names file of the colours, a cache dir) shared by the module."""
    folder = tmp_path_factory.mktemp("vocabulary")
    names = folder / "colours.txt"
    names.write_text("red\nblue\ngreen\n", encoding="utf-8")
    return names, folder / "cache"


def _with_meta(segmenter: Segmenter, **meta: object) -> Segmenter:
    return Segmenter(segmenter.model, {**segmenter.meta, **meta}, segmenter.encoder,
                     segmenter.text_encoder)


def _segment(segmenter: Segmenter, classes: str, colours: tuple[Path, Path], **options):
    plan = plan_competition(segmenter, classes, load_table(segmenter, *colours))
    image = colour_image(RED_BLUE, np.random.default_rng(5))
    return segment_in_vocabulary(segmenter, image, plan, **options)


def test_pixels_won_by_an_untyped_name_are_none(learned: Segmenter, colours) -> None:
    result = _segment(learned, "blue", colours)
    assert result.class_names == ["blue"] and result.label.shape == RED_BLUE.shape
    assert (result.label[RED_BLUE == 0] == NO_CLASS).mean() > 0.9  # red won them: untyped
    assert result.others["red"] > 0.4 and result.fractions()["(none)"] > 0.4
    assert "blue" not in result.others
    alone = _segment(learned, "green", colours)  # typed and absent: (almost) nothing
    assert alone.fractions()["green"] < 0.01


def test_seen_names_are_lowered_by_the_checkpoint_calibration(learned: Segmenter, colours,
                                                              caplog) -> None:
    seen_red = {"class_names": ["red", "blue", "green"], "seen": [0]}
    with caplog.at_level(logging.WARNING, logger="fusioner.segment"):
        plain = _segment(_with_meta(learned, **seen_red), "red", colours)
    assert "has no calibration" in caplog.text  # gamma 0, said once
    assert plain.fractions()["red"] > 0.4
    calibrated = _with_meta(learned, **seen_red,
                            calibration={"gamma": 100.0, "form": "alone", "threshold": 0.5})
    lowered = _segment(calibrated, "red", colours)
    assert lowered.fractions()["red"] == 0.0  # the seen name can no longer win
    assert lowered.probs.max() < 1e-6  # probabilities are the calibrated ones


def test_chunked_scoring_gives_the_one_pass_result(learned: Segmenter, colours,
                                                   monkeypatch) -> None:
    whole = _segment(learned, "red,green", colours)
    monkeypatch.setattr(vocab, "IMAGE_SCORES", 1)  # one name at a time at the image size
    chunked = _segment(learned, "red,green", colours, pairs_per_pass=1, mode="resize")
    assert np.array_equal(chunked.label, whole.label)
    np.testing.assert_allclose(chunked.probs, whole.probs, atol=1e-5)


def test_a_joint_checkpoint_is_scored_in_passes_of_its_training_width(learned: Segmenter,
                                                                      colours,
                                                                      monkeypatch) -> None:
    passes = []
    original = vocab.name_logits

    def record(model, tokens, text, form, pairs):
        passes.append((form, len(text)))
        return original(model, tokens, text, form, pairs)

    monkeypatch.setattr(vocab, "name_logits", record)
    joint = _with_meta(learned, class_names=["red", "blue", "green"], seen=[0, 1],
                       train={"episode": VOCABULARY_EPISODE})
    _segment(joint, "red", colours)
    assert passes == [("joint", 2), ("joint", 1)]  # 3 names, 2 seen: passes of 2 and 1


def test_typed_names_are_matched_to_the_vocabulary_or_added(learned: Segmenter, colours,
                                                             caplog) -> None:
    names = colours[0].with_name("shades.txt")
    names.write_text("red\nblue\ngreen\nlight_blue\n", encoding="utf-8")
    table = load_table(learned, names, colours[1])
    with caplog.at_level(logging.WARNING, logger="fusioner.segment"):
        plan = plan_competition(learned, "Red,light blue,purple", table)
    assert plan.typed_names == ["Red", "light blue", "purple"]
    assert plan.typed == [0, 3, 4] and plan.added == ["purple"] and len(plan.text) == 5
    assert "'purple' is not in vocabulary 'shades'" in caplog.text
    with pytest.raises(BadInputError, match="same name"):
        plan_competition(learned, "light_blue,light blue", table)


def test_the_python_api_takes_a_vocabulary(tmp_path: Path, random_visual, colours) -> None:
    checkpoint = untrained_checkpoint(tmp_path, random_visual)
    image = colour_image(RED_BLUE, np.random.default_rng(1))
    result = segment(image, "red", checkpoint, random_init=True, vocabulary=colours[0],
                     cache_dir=tmp_path / "cache", mode="slide")
    assert result.vocabulary == "colours" and result.label.shape == RED_BLUE.shape
    shares = result.fractions()
    assert set(shares) == {"red", "(none)"} and sum(shares.values()) == pytest.approx(1.0)
    assert sum(result.others.values()) <= shares["(none)"] + 1e-9  # others' pixels are "(none)"
    assert "red" not in result.others


# ---- the command: cached text, one-line errors before any write ----------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, random_visual) -> Path:
    return untrained_checkpoint(tmp_path_factory.mktemp("ckpt"), random_visual)


def _image(path: Path) -> Path:
    colour_image(RED_BLUE, np.random.default_rng(2)).save(path)
    return path


def test_cli_second_run_encodes_no_vocabulary_name(tmp_path: Path, checkpoint: Path, colours,
                                                   monkeypatch) -> None:
    encoded: list[int] = []
    original = TextEncoder.encode_classes

    def count(self, names, *args, **kwargs):
        encoded.append(len(names))
        return original(self, names, *args, **kwargs)

    monkeypatch.setattr(TextEncoder, "encode_classes", count)
    image = _image(tmp_path / "flag.png")
    args = [str(image), "--classes", "red,blue", "--checkpoint", str(checkpoint), "--random-init",
            "--vocabulary", str(colours[0]), "--cache-dir", str(tmp_path / "cache"),
            "--device", "cpu", "--no-progress"]
    first = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    assert "[colours, not asked:" in first.output and (tmp_path / "a" / "flag_label.png").exists()
    assert encoded == [3]  # the vocabulary's names (red and blue are among them)
    second = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "b")])
    assert second.exit_code == 0, second.output
    assert encoded == [3]


@pytest.mark.parametrize(("extra", "message"), [
    (["--vocabulary", "nosuch"], "unknown vocabulary 'nosuch'"),
    (["--vocabulary", "coco", "--background", "prompt"], "--background prompt"),
    (["--vocabulary", "coco", "--threshold", "adaptive"], "--threshold adaptive"),
    (["--vocabulary", "coco", "--method", "maskclip"], "--method fusion"),
])
def test_cli_bad_vocabulary_options_are_one_line_errors(tmp_path: Path, checkpoint: Path,
                                                        extra: list[str], message: str) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [str(_image(tmp_path / "flag.png")), "--classes", "red",
                                       "--checkpoint", str(checkpoint), "--random-init",
                                       "--cache-dir", str(tmp_path / "cache"), "--out", str(out),
                                       "--device", "cpu", *extra])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_probabilities_are_sigmoid_of_calibrated_logits(learned: Segmenter, colours) -> None:
    result = _segment(learned, "red", colours)
    assert result.probs.shape == (1, *RED_BLUE.shape)
    assert float(torch.from_numpy(result.probs).max()) <= 1.0
    assert (result.probs[0][result.label == 0] > 0.5).all()  # a typed winner passed 0.5
