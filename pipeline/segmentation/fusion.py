"""``Segmenter``: a trained fusion checkpoint plus the frozen encoder pair it was trained on."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from pipeline.encoders import create_text_encoder, create_visual_encoder
from pipeline.encoders.text import TextEncoder
from pipeline.encoders.visual import VisualEncoder, describe
from pipeline.errors import FusionerError, StoreError
from pipeline.model.checkpoint import check_checkpoint_provenance, load_fusion_checkpoint
from pipeline.model.fusion import FusionModel
from pipeline.segmentation.core import DenseSegmenter
from pipeline.text_tables.source import check_table_source

log = logging.getLogger("fusioner.segment")


class Segmenter(DenseSegmenter):
    """Frozen encoders + fusion module, loaded once and re-used for any image and classes.

    Build it with ``Segmenter.from_checkpoint(path)``; the constructor takes ready parts (tests
    pair a model with encoders of their choice) and refuses encoders other than the checkpoint's.
    """

    method = "fusion"

    def __init__(self, model: FusionModel, meta: Mapping[str, Any], visual: VisualEncoder,
                 text: TextEncoder, device: str | torch.device = "cpu",
                 where: Path | str = "checkpoint") -> None:
        super().__init__()
        try:
            check_checkpoint_provenance(meta, visual.provenance(), text.provenance(), where)
        except StoreError as exc:
            raise FusionerError(str(exc).replace(
                "store made by another encoder/config",
                "checkpoint trained on another encoder pair than the one built here")) from exc
        trained_size = meta["visual"].get("image_size")
        if trained_size is not None and list(visual.image_size) != list(trained_size):
            raise FusionerError(f"{where}: trained at input size {trained_size}, but the visual "
                                f"encoder runs at {list(visual.image_size)}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.meta = dict(meta)
        self.where = str(where)  # the checkpoint, for messages
        self.encoder = visual.to(self.device).eval()
        self.text_encoder = text

    @classmethod
    def from_checkpoint(cls, checkpoint: Path | str, weights: Path | str | None = None,
                        text_weights: Path | str | None = None, random_init: bool = False,
                        device: str | torch.device = "cpu") -> Segmenter:
        """Load ``checkpoint.pt`` and build the encoders its ``meta`` names from local weights.

        Weights are looked up as for ``fusioner-extract`` (``weights``/``text_weights``, then
        ``$FUSIONER_WEIGHTS``, then a package); ``random_init`` only suits a checkpoint trained
        on random-init features (tests). Raises ``FusionerError`` if the encoders are not the
        ones the checkpoint was trained on.
        """
        model, meta = load_fusion_checkpoint(checkpoint)
        visual_meta, text_meta = meta.get("visual", {}), meta.get("text", {})
        if "encoder" not in visual_meta or "encoder" not in text_meta:
            raise FusionerError(f"{checkpoint}: checkpoint meta does not name its encoders")
        check_table_source(text_meta, checkpoint)  # a precomputed text table: still the same?
        size = visual_meta.get("image_size")
        visual = create_visual_encoder(visual_meta["encoder"], weights, random_init,
                                       tuple(size) if size else None)
        text = create_text_encoder(text_meta["encoder"], text_weights, random_init)
        log.info("fusion checkpoint %s on %s + %s", checkpoint, describe(visual), text.slug)
        return cls(model, meta, visual, text, device, checkpoint)

    def _encode_text(self, names: list[str]) -> torch.Tensor:
        return self.text_encoder.encode_classes(names)

    def patch_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, h, w, C) patch tokens, through float16 first as the feature store holds them."""
        return self.encoder(pixels)["patch_tokens"].half().float()

    def scores(self, pixels: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Mask logits (B, K, h', w') at the decoder's resolution (all names in one pass)."""
        tokens = self.patch_tokens(pixels)
        return self.model(tokens, text.unsqueeze(0).expand(tokens.shape[0], -1, -1))

    def probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        """Independent per-class sigmoid, as trained (per-class binary cross-entropy)."""
        return scores.sigmoid()
