"""Writing a segmentation to disk: every file of an image appears at once, or none does.

Per image in the output folder: ``<stem>_label.png`` (palette PNG, index = class position in
the class list, 255 = no class), ``<stem>_overlay.png`` (colours + legend) and, if asked,
``<stem>_prob_<class>.png`` (8-bit greyscale, 255 = probability 1).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.errors import BadInputError
from pipeline.segmentation.core import SegmentationResult


def class_file_names(class_names: Sequence[str]) -> list[str]:
    """File-safe, unique versions of the class names (``sign symbol`` -> ``sign_symbol``)."""
    out: list[str] = []
    for index, name in enumerate(class_names):
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or f"class{index}"
        out.append(safe if safe not in out else f"{safe}_{index}")
    return out


def output_paths(out_dir: Path, stem: str, class_names: Sequence[str],
                 save_probs: bool) -> dict[str, Path]:
    """What ``write_outputs`` writes for one image, keyed ``label``/``overlay``/``prob:<i>``."""
    paths = {"label": out_dir / f"{stem}_label.png", "overlay": out_dir / f"{stem}_overlay.png"}
    if save_probs:
        for index, safe in enumerate(class_file_names(class_names)):
            paths[f"prob:{index}"] = out_dir / f"{stem}_prob_{safe}.png"
    return paths


def check_unique_stems(images: Sequence[Path]) -> list[str]:
    """Output stems of the input images; two inputs that would overwrite each other are refused."""
    stems = [Path(image).stem for image in images]
    clashes = sorted({s for s in stems if stems.count(s) > 1})
    if clashes:
        raise BadInputError(f"several input images share the name {clashes[0]!r}: their outputs "
                            "would overwrite each other (rename or segment them separately)")
    return stems


def describe_shares(result: SegmentationResult, others: int = 3) -> str:
    """One line: each class's share of the pixels, then (with a vocabulary) the ``others``
    untyped names that won most pixels, e.g. ``dog 0.0%, (none) 100.0% [coco, not asked:
    zebra 29.4%]``."""
    shares = ", ".join(f"{name} {share:.1%}" for name, share in result.fractions().items())
    if result.vocabulary is None:
        return shares
    top = ", ".join(f"{name} {share:.1%}" for name, share in list(result.others.items())[:others])
    return f"{shares} [{result.vocabulary}, not asked: {top or 'none'}]"


def write_outputs(result: SegmentationResult, out_dir: Path | str, stem: str,
                  save_probs: bool = False) -> list[Path]:
    """Write one image's files under temporary names, then rename them all into place."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images: dict[str, Image.Image] = {"label": result.label_image(),
                                      "overlay": result.overlay_image()}
    paths = output_paths(out_dir, stem, result.class_names, save_probs)
    if save_probs:
        for index, prob in enumerate(result.probs):
            grey = np.clip(np.rint(prob * 255.0), 0, 255).astype(np.uint8)
            images[f"prob:{index}"] = Image.fromarray(grey, mode="L")
    temporary = {key: path.with_name(f".{path.name}.tmp") for key, path in paths.items()}
    try:
        for key, image in images.items():
            image.save(temporary[key], format="PNG")
        for key, path in paths.items():
            temporary[key].replace(path)
    finally:
        for tmp in temporary.values():
            tmp.unlink(missing_ok=True)
    return list(paths.values())
