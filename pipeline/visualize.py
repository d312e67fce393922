"""Pictures of label maps: a fixed palette, colour overlays with a legend, side-by-side panels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipeline.data.base import IGNORE_INDEX

NONE_COLOUR = (0, 0, 0)


def palette(num_classes: int) -> np.ndarray:
    """(num_classes, 3) uint8 distinct colours (PASCAL VOC's bit-interleaved scheme, from id 1)."""
    colours = np.zeros((num_classes, 3), np.uint8)
    for index in range(num_classes):
        code, value = index + 1, np.zeros(3, np.int64)
        for shift in range(7, -1, -1):
            for channel in range(3):
                value[channel] |= ((code >> channel) & 1) << shift
            code >>= 3
        colours[index] = value
    return colours


def colorize(label: np.ndarray, num_classes: int) -> Image.Image:
    """Class-id map (ids >= num_classes, 255 and negatives = none/ignore) -> RGB image."""
    colours = palette(num_classes)
    rgb = np.zeros((*label.shape, 3), np.uint8)
    valid = (label >= 0) & (label < num_classes)
    rgb[valid] = colours[label[valid].astype(np.int64)]
    return Image.fromarray(rgb)


def label_png(label: np.ndarray, class_names: Sequence[str]) -> Image.Image:
    """A palette ("P" mode) PNG of class ids; pixels matching no class (or 255) are index 255."""
    ids = np.where((label >= 0) & (label < len(class_names)), label, IGNORE_INDEX).astype(np.uint8)
    image = Image.fromarray(ids, mode="P")
    colours = np.zeros((256, 3), np.uint8)
    colours[: len(class_names)] = palette(len(class_names))
    image.putpalette(colours.reshape(-1).tolist())
    return image


def overlay(image: Image.Image, label: np.ndarray, class_names: Sequence[str],
            alpha: float = 0.5, legend: bool = True) -> Image.Image:
    """Blend the coloured label map over the image; pixels of no class stay unblended."""
    base = image.convert("RGB").resize((label.shape[1], label.shape[0]))
    colours = np.asarray(colorize(label, len(class_names)), np.float32)
    mixed = np.asarray(base, np.float32)
    shown = (label >= 0) & (label < len(class_names))
    mixed[shown] = (1 - alpha) * mixed[shown] + alpha * colours[shown]
    result = Image.fromarray(mixed.astype(np.uint8))
    if legend:
        present = sorted(int(c) for c in np.unique(label[shown]))
        result = add_legend(result, [class_names[c] for c in present],
                            [tuple(palette(len(class_names))[c]) for c in present])
    return result


def add_legend(image: Image.Image, names: Sequence[str],
               colours: Sequence[tuple[int, int, int]]) -> Image.Image:
    """Append a legend column (colour swatch + class name per row) to the right of ``image``."""
    font = ImageFont.load_default()
    row, width = 16, 12 + max((int(font.getlength(n)) for n in names), default=0) + 24
    canvas = Image.new("RGB", (image.width + width, max(image.height, row * len(names) + 8)),
                       (255, 255, 255))
    canvas.paste(image, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, (name, colour) in enumerate(zip(names, colours, strict=True)):
        top = 4 + i * row
        draw.rectangle([image.width + 6, top, image.width + 18, top + 12], fill=tuple(colour),
                       outline=(0, 0, 0))
        draw.text((image.width + 24, top), name, fill=(0, 0, 0), font=font)
    return canvas


def side_by_side(panels: Sequence[Image.Image], titles: Sequence[str] = ()) -> Image.Image:
    """Panels in one row (all resized to the first panel's height), with optional titles."""
    height = panels[0].height
    scaled = [p.resize((max(1, round(p.width * height / p.height)), height)) for p in panels]
    top = 14 if titles else 0
    canvas = Image.new("RGB", (sum(p.width for p in scaled), height + top), (255, 255, 255))
    draw, left = ImageDraw.Draw(canvas), 0
    for i, panel in enumerate(scaled):
        canvas.paste(panel, (left, top))
        if i < len(titles):
            draw.text((left + 4, 1), titles[i], fill=(0, 0, 0))
        left += panel.width
    return canvas
