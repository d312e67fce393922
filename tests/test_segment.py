"""fusioner-segment / pipeline.segment: outputs at the image's size, a learned absent class gets no
pixels, post-processing rules, MaskCLIP's value path, and bad inputs failing before any write."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from pipeline.encoders import create_text_encoder, create_visual_encoder
from pipeline.errors import BadInputError
from pipeline.model import FusionConfig, build_model, save_fusion_checkpoint
from pipeline.segmentation import (
    NO_CLASS,
    DenseSegmenter,
    Segmenter,
    assign_labels,
    check_class_names,
    load_segmenter,
)
from pipeline.thresholds import ADAPTIVE
from stages.segment import main
from tests.helpers import (
    SEGMENT_INPUT,
    SMALL_FUSION,
    colour_image,
    colour_segmenter,
    fusion_meta,
    untrained_checkpoint,
)


@pytest.fixture(scope="module")
def random_visual():
    return create_visual_encoder("dino_vits16", random_init=True, image_size=SEGMENT_INPUT)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, random_visual) -> Path:
    return untrained_checkpoint(tmp_path_factory.mktemp("ckpt"), random_visual)


def _image(path: Path, size: tuple[int, int], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)
    return path


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [*args, "--device", "cpu"])
    return result.exit_code, result.output


# ---- the command on a real (random-init) encoder pair: files, sizes, modes ------------------

@pytest.mark.parametrize("mode", ["resize", "slide"])
def test_cli_writes_label_and_overlay_at_the_image_size(tmp_path: Path, checkpoint: Path,
                                                        mode: str) -> None:
    images = [_image(tmp_path / "small.png", (50, 70)), _image(tmp_path / "wide.jpg", (90, 200))]
    out = tmp_path / "out"
    code, output = _run(*map(str, images), "--classes", "cat, sign symbol", "--checkpoint",
                        str(checkpoint), "--random-init", "--out", str(out), "--save-probs",
                        "--mode", mode)
    assert code == 0, output
    for image in images:
        width, height = Image.open(image).size
        label = Image.open(out / f"{image.stem}_label.png")
        assert label.mode == "P" and label.size == (width, height)
        assert set(np.unique(np.asarray(label))) <= {0, 1, NO_CLASS}
        overlay = Image.open(out / f"{image.stem}_overlay.png")
        assert overlay.height >= height and overlay.width >= width  # legend column on the right
        for name in ("cat", "sign_symbol"):
            assert Image.open(out / f"{image.stem}_prob_{name}.png").size == (width, height)
    assert not list(out.glob(".*"))  # no temporary files left


# ---- a learned model: a class absent from the image gets (almost) no pixels -----------------

@pytest.fixture(scope="module")
def learned(random_visual) -> Segmenter:
    return colour_segmenter(random_visual)


def test_absent_class_gets_almost_no_pixels(learned: Segmenter) -> None:
    """Red left half, blue right half, at a size other than the encoder's: 'green' is absent."""
    rng = np.random.default_rng(123)
    layout = np.zeros((150, 220), np.int64)
    layout[:, 100:] = 1
    result = learned.segment(colour_image(layout, rng), ["red", "blue", "green"])
    assert result.label.shape == (150, 220) and result.probs.shape == (3, 150, 220)
    shares = result.fractions()
    assert shares["green"] < 0.01, shares
    assert (result.label == layout).mean() > 0.9, shares
    # the same picture asked only for an absent class: (almost) nothing is labelled
    alone = learned.segment(colour_image(layout, rng), "green")
    assert alone.fractions()["green"] < 0.01


# ---- post-processing rules, on hand-made probabilities --------------------------------------

def test_assign_labels_threshold_and_background_slot() -> None:
    probs = torch.tensor([[[0.9, 0.2, 0.6, 0.3]],    # class 0
                          [[0.1, 0.4, 0.7, 0.2]],    # class 1
                          [[0.0, 0.0, 0.1, 0.8]]])   # background slot
    assert assign_labels(probs, 0.5).tolist() == [[0, NO_CLASS, 1, 2]]
    assert assign_labels(probs, 0.5, background_slot=2).tolist() == [[0, NO_CLASS, 1, NO_CLASS]]
    assert assign_labels(probs, 0.0).tolist() == [[0, 1, 1, 2]]


def test_assign_labels_adaptive_keeps_what_a_low_map_singles_out() -> None:
    """An unfamiliar name below 0.5 everywhere still gets its peak; a flat map gets nothing."""
    low = torch.full((1, 10), 0.1)
    low[0, 8:] = 0.35  # mean 0.15, std 0.1: threshold 0.35, reached by the last two pixels
    probs = torch.stack([low, torch.full((1, 10), 0.3)])  # class 1: flat, nothing singled out
    assert (assign_labels(probs, 0.5) == NO_CLASS).all()
    assert assign_labels(probs, ADAPTIVE).tolist() == [[NO_CLASS] * 8 + [0, 0]]


class _Fixed(DenseSegmenter):
    """Per class name a (slope, bias): score = slope * x + bias, x from -1 (left) to 1 (right).

    Proves the wiring after the model (text order, upsampling, threshold, background prompt,
    label ids), not any model.
    """

    method = "fixed"

    def __init__(self, lines: dict[str, tuple[float, float]]) -> None:
        super().__init__()
        self.lines, self.device = lines, torch.device("cpu")
        self.encoder = create_visual_encoder("timm:vit_tiny_patch16_224", random_init=True,
                                             image_size=(32, 32))

    def _encode_text(self, names: list[str]) -> torch.Tensor:
        return torch.tensor([self.lines[n] for n in names])

    def scores(self, pixels: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        x = torch.linspace(-1, 1, 8).expand(4, 8)
        return (text[:, :1, None] * x + text[:, 1:, None])[None]

    def probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        return scores.sigmoid()


def test_threshold_and_background_prompt_rules() -> None:
    fixed = _Fixed({"sky": (3.0, 0.0), "road": (-3.0, 0.0), "background": (0.0, 2.0)})
    image = Image.new("RGB", (40, 20))
    plain = fixed.segment(image, "sky,road")
    assert plain.class_names == ["sky", "road"] and plain.probs.shape == (2, 20, 40)
    assert plain.label.shape == (20, 40)
    assert (plain.label[:, :10] == 1).all() and (plain.label[:, 30:] == 0).all()
    assert (fixed.segment(image, "sky,road", threshold=0.99).label == NO_CLASS).all()
    prompt = fixed.segment(image, "sky,road", background="prompt")
    assert prompt.class_names == ["sky", "road"] and prompt.probs.shape == (2, 20, 40)
    assert (prompt.label[:, 0] == 1).all() and (prompt.label[:, -1] == 0).all()
    assert (prompt.label[:, 15:25] == NO_CLASS).all()  # background (p=.88) wins the middle
    assert 0.3 < prompt.fractions()["(none)"] < 0.8


def test_class_names_are_checked() -> None:
    assert check_class_names(" cat, sofa ,window,") == ["cat", "sofa", "window"]
    for bad, match in ((",", "no class names"), ([], "no class names"),
                       ("cat,Cat", "duplicate"), (["a", "b", "a"], "duplicate")):
        with pytest.raises(BadInputError, match=match):
            check_class_names(bad)
    with pytest.raises(BadInputError, match="background"):
        check_class_names("background,cat", background="prompt")
    assert check_class_names("background,cat") == ["background", "cat"]


# ---- MaskCLIP -------------------------------------------------------------------------------

def test_maskclip_value_path_is_self_attention(tmp_path: Path) -> None:
    """The dense features equal the last block's attention restricted to each token itself
    (then ln_post and proj): MaskCLIP's 'skip q-k attention', on a random-init ViT-B/16."""
    from pipeline.maskclip import dense_clip_features

    segmenter = load_segmenter("maskclip", random_init=True, image_size=(32, 48))
    visual = segmenter.encoder.visual
    pixels = torch.rand(1, 3, 32, 48)
    with torch.inference_mode():
        got = dense_clip_features(visual, pixels, 16)
        x = visual._embeds(pixels)
        for block in visual.transformer.resblocks[:-1]:
            x = block(x)
        last, n = visual.transformer.resblocks[-1], x.shape[1]
        only_self = torch.full((n, n), float("-inf")).fill_diagonal_(0.0)
        attended = last.attn(last.ln_1(x), last.ln_1(x), last.ln_1(x), attn_mask=only_self,
                             need_weights=False)[0]
        expected = (visual.ln_post(attended) @ visual.proj)[:, 1:].reshape(1, 2, 3, -1)
    assert got.shape == (1, 2, 3, visual.proj.shape[1])
    assert torch.allclose(got, expected, atol=1e-4)
    result = segmenter.segment(Image.new("RGB", (70, 50), (10, 200, 30)), "grass,sky")
    assert result.label.shape == (50, 70) and np.allclose(result.probs.sum(0), 1.0, atol=1e-4)


def test_maskclip_without_weights_says_where_to_put_them(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSIONER_WEIGHTS", str(tmp_path / "weights"))
    out = tmp_path / "out"
    code, output = _run(str(_image(tmp_path / "a.png", (20, 30))), "--classes", "cat",
                        "--method", "maskclip", "--out", str(out))
    assert code == 1 and output.count("\n") == 1 and "clip_vitb16" in output
    assert "$FUSIONER_WEIGHTS" in output and "--weights" in output and not out.exists()


# ---- bad inputs: one line, exit 1, nothing written -------------------------------------------

@pytest.fixture(scope="module")
def foreign_checkpoint(tmp_path_factory, random_visual) -> Path:
    """A checkpoint whose meta says it was trained on real (other) visual weights."""
    text = create_text_encoder("minilm_l6", random_init=True)
    config = FusionConfig(random_visual.feature_dim, text.feature_dim, **SMALL_FUSION)
    meta = fusion_meta(random_visual, text, config)
    meta["visual"].update(weights_sha256="ab" * 32, random_init=False)
    path = tmp_path_factory.mktemp("foreign") / "checkpoint.pt"
    return save_fusion_checkpoint(path, build_model(config), meta)


@pytest.mark.parametrize("case", ["unreadable", "empty", "duplicate", "foreign", "no-checkpoint",
                                  "same-stem", "missing"])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, checkpoint: Path,
                                                  foreign_checkpoint: Path, case: str) -> None:
    good = _image(tmp_path / "good.png", (40, 60))
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    (tmp_path / "other").mkdir()
    images, classes, ckpt = [good], "cat,dog", ["--checkpoint", str(checkpoint)]
    if case == "unreadable":
        images = [good, tmp_path / "broken.jpg"]
    elif case == "empty":
        classes = " , "
    elif case == "duplicate":
        classes = "cat,dog,cat"
    elif case == "foreign":
        ckpt = ["--checkpoint", str(foreign_checkpoint)]
    elif case == "no-checkpoint":
        ckpt = []
    elif case == "same-stem":
        images = [good, _image(tmp_path / "other" / "good.jpg", (40, 60))]
    elif case == "missing":
        ckpt = ["--checkpoint", str(tmp_path / "nope.pt")]
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, output = _run(*map(str, images), "--classes", classes, *ckpt, "--random-init",
                        "--out", str(out))
    assert code == 1, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    if case == "foreign":
        assert "another encoder pair" in output and "weights_sha256" in output


# ---- the Python API ---------------------------------------------------------------------------

def test_api_caches_the_models_and_package_import_stays_light(tmp_path: Path,
                                                              checkpoint: Path) -> None:
    import pipeline

    image = _image(tmp_path / "a.png", (30, 45))
    first = pipeline.segment(image, ["cat", "dog"], checkpoint, random_init=True)
    again = load_segmenter("fusion", checkpoint, random_init=True)
    assert again is load_segmenter("fusion", checkpoint, random_init=True)
    assert first.label.shape == (30, 45) and first.class_names == ["cat", "dog"]
    code = ("import sys, pipeline; assert 'pipeline.segmentation' not in sys.modules; "
            "assert 'timm' not in sys.modules and 'open_clip' not in sys.modules; "
            "assert callable(pipeline.segment)")
    subprocess.run([sys.executable, "-c", code], check=True)
