"""The trainable part of Fusioner: fusion transformer, conv decoder, cosine head, BCE loss."""

from pipeline.model.checkpoint import (
    check_checkpoint_provenance,
    load_fusion_checkpoint,
    save_fusion_checkpoint,
    text_expect,
    visual_expect,
)
from pipeline.model.fusion import (
    FusionConfig,
    FusionModel,
    build_model,
    upsample_logits,
)
from pipeline.model.loss import (
    MaskTargets,
    mask_bce_loss,
    mask_dice_terms,
    predicted_classes,
    resize_labels,
)

__all__ = [
    "FusionConfig",
    "FusionModel",
    "MaskTargets",
    "build_model",
    "check_checkpoint_provenance",
    "load_fusion_checkpoint",
    "mask_bce_loss",
    "mask_dice_terms",
    "predicted_classes",
    "resize_labels",
    "save_fusion_checkpoint",
    "text_expect",
    "upsample_logits",
    "visual_expect",
]
