"""Zero-shot evaluation of a fusion checkpoint on its fold's UNSEEN classes, from the cache alone.

No encoder is built: the checkpoint's ``meta`` names the dataset, fold and encoder pair, and the
visual/text stores of that pair are read (refused unless their provenance matches).

Protocols (both accumulate HSNet-style: per-class IoU over the whole split, then averaged):
- ``binary`` (the paper's, as in the official code): one image + ONE unseen class name present
  in it per forward pass (``evaluation_episodes``), foreground = sigmoid > threshold.
- ``multiclass`` (harder): every unseen class name at once per image; a pixel takes the most
  probable class among those reaching their threshold, else none; seen/background pixels are
  "none".
The threshold is a fixed probability or ``"adaptive"`` (one per probability map,
``pipeline.thresholds``); with any rule but the paper's 0.5 the model is also scored at 0.5
(``fixed_threshold_0.5``), side by side.

Baselines run through the same code and accumulators: ``all_foreground`` (every pixel foreground
in each binary episode; binary only) and ``random_text`` (the same model with each unseen class
embedding replaced by a seeded random unit vector); controls with a model of their own
(``FoldInputs.controls``, e.g. the name-shuffled checkpoint, ``pipeline.evaluation.crossval``)
score the same episodes. Every update is also recorded per image (keyed by image id) for the
image bootstrap. ``pipeline.evaluation.report`` writes the outputs (metrics.json, per-class
CSV, overlays).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm import tqdm

from pipeline.data.sampling import evenly_spaced
from pipeline.data.splits import ZeroShotSplit, check_store_fold, evaluation_episodes
from pipeline.errors import FusionerError, StoreError
from pipeline.evaluation.labels import OriginalLabels
from pipeline.metrics import IoUAccumulator, IoUResult, RankingAccumulator, prediction_map
from pipeline.model.checkpoint import load_fusion_checkpoint, text_expect, visual_expect
from pipeline.model.fusion import FusionModel, upsample_logits
from pipeline.names import CONTROL_ATTRS
from pipeline.store import (
    CachedFeatureDataset,
    StoreLocation,
    as_location,
    for_fold,
    loader_kwargs,
    open_visual_store,
    read_text_store,
    text_store_path,
    visual_store_path,
)
from pipeline.text_tables.source import check_table_source
from pipeline.thresholds import PAPER_THRESHOLD, Threshold, map_thresholds

log = logging.getLogger("fusioner.evaluate")

Mode = Literal["binary", "multiclass"]
MODES: tuple[Mode, ...] = ("binary", "multiclass")
MODEL = "fusioner"
ALL_FOREGROUND = "all_foreground"
RANDOM_TEXT = "random_text"
SEEN_REFERENCE = "seen_reference"  # the model on the fold's SEEN classes: a sanity reference
PAPER_RULE = f"fixed_threshold_{PAPER_THRESHOLD}"  # the model at the paper's fixed threshold
RANDOM_TEXT_PAPER = f"{RANDOM_TEXT}_{PAPER_RULE}"  # the random-text baseline at that threshold
NAME_SHUFFLED = "name_shuffled"  # the control trained and scored on name-shuffled text
NAME_SHUFFLED_PAPER = f"{NAME_SHUFFLED}_{PAPER_RULE}"


@dataclass(frozen=True)
class Method:
    """A way to score episodes: the model with a text table, or (``text`` None) all foreground;
    ``threshold`` None = the run's rule."""

    name: str
    text: Tensor | None  # (num_classes, D) embeddings by dataset class id
    modes: tuple[Mode, ...] = MODES
    threshold: Threshold | None = None
    model: FusionModel | None = None  # None: the fold's model (a control brings its own)


@dataclass
class FoldInputs:
    """A checkpoint with the stores it is evaluated on."""

    checkpoint: Path
    model: FusionModel
    meta: dict[str, Any]
    split: ZeroShotSplit
    features: CachedFeatureDataset
    text_table: Tensor
    class_names: list[str]
    label_size: tuple[int, int]  # (H, W) of the store's labels
    truth: OriginalLabels | None = None  # set: score at each image's original mask size
    controls: tuple[Method, ...] = ()  # scored beside the model on the same episodes
    text_store_control: dict[str, Any] = field(default_factory=dict)  # the store's control attrs

    @property
    def resolution(self) -> str:
        """Where scores are computed: ``original`` mask sizes or the cached ``HxW``."""
        return "original" if self.truth is not None else "x".join(map(str, self.label_size))


@dataclass
class FoldResult:
    """Accumulated scores of every (method, mode) of one fold, and the overlay predictions."""

    inputs: FoldInputs
    scores: dict[tuple[str, Mode], IoUResult]
    episodes: dict[Mode, int]
    images: int
    overlays: dict[int, dict[Mode, np.ndarray]] = field(default_factory=dict)  # position ->
    accumulators: dict[tuple[str, Mode], IoUAccumulator] = field(default_factory=dict)
    rankings: dict[str, RankingAccumulator] = field(default_factory=dict)  # binary, by method
    checkpoints: tuple[Path, ...] = ()  # every checkpoint pooled into this fold (CV), if several
    open_vocabulary: Any = None  # ``pipeline.evaluation.open_vocabulary.OpenVocabularyResult``


def open_fold(checkpoint: Path | str, cache_dir: StoreLocation | str, split: str,
              device: str | torch.device = "cpu", dataset: str | None = None) -> FoldInputs:
    """Load ``checkpoint`` and open its pair's stores for ``split`` of ``dataset`` (None: the
    dataset it was trained on; another must have the same class names); ``StoreError`` on
    mismatch."""
    model, meta = load_fusion_checkpoint(checkpoint, device)
    dataset = dataset or meta["dataset"]
    cache_dir = for_fold(as_location(cache_dir), int(meta["fold"]))
    visual_path = visual_store_path(cache_dir, meta["visual"]["encoder"], dataset, split)
    features = CachedFeatureDataset(visual_path, cache_blocks=1,  # read in order, shard by shard
                                    expect={**visual_expect(meta), "dataset": dataset,
                                            "split": split})
    text_path = text_store_path(cache_dir, meta["text"]["encoder"], dataset)
    text = read_text_store(text_path, expect={**text_expect(meta), "dataset": dataset})
    check_table_source(text.attrs, text_path)
    names = [str(n) for n in meta["class_names"]]
    for where, found in ((visual_path, features.attrs.get("class_names", names)),
                         (text.attrs.get("encoder"), text.class_names)):
        if [str(n) for n in found] != names:
            raise StoreError(f"{where}: class names {list(found)} differ from the checkpoint's "
                             f"{names}")
    check_store_fold(features.attrs, int(meta["fold"]), visual_path)
    labels = open_visual_store(visual_path)["labels"]
    if labels.shape[0] == 0:
        raise StoreError(f"{visual_path}: the store holds no image")
    fold = ZeroShotSplit(dataset, int(meta["fold"]), tuple(meta["seen"]), tuple(meta["unseen"]),
                         meta.get("background"))
    if not fold.unseen:
        raise FusionerError(f"{checkpoint}: fold {fold.fold} of {dataset} has no unseen class")
    return FoldInputs(Path(checkpoint), model, meta, fold, features, text.embeddings.to(device),
                      names, (int(labels.shape[1]), int(labels.shape[2])),
                      text_store_control={key: text.attrs[key] for key in CONTROL_ATTRS
                                          if key in text.attrs})


def random_text_table(table: Tensor, class_ids: Sequence[int], seed: int) -> Tensor:
    """``table`` with the rows of ``class_ids`` replaced by seeded random unit vectors."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(len(class_ids), table.shape[1], generator=generator)
    out = table.clone()
    out[list(class_ids)] = F.normalize(noise, dim=1).to(table)
    return out


def default_methods(inputs: FoldInputs, baselines: bool = True, seed: int = 0,
                    threshold: Threshold = PAPER_THRESHOLD) -> list[Method]:
    """The model (and, under any other rule, the model at the paper's threshold), then
    (``baselines``) all-foreground and random-text-embedding (also at the paper's threshold)."""
    other_rule = threshold != PAPER_THRESHOLD
    methods = [Method(MODEL, inputs.text_table)]
    if other_rule:
        methods.append(Method(PAPER_RULE, inputs.text_table, threshold=PAPER_THRESHOLD))
    if baselines:
        random = random_text_table(inputs.text_table, inputs.split.unseen, seed)
        methods += [Method(ALL_FOREGROUND, None, ("binary",)), Method(RANDOM_TEXT, random)]
        if other_rule:
            methods.append(Method(RANDOM_TEXT_PAPER, random, threshold=PAPER_THRESHOLD))
    return methods


def _logits(model: FusionModel, method: Method, tokens: Tensor,
            class_ids: Tensor) -> Tensor | None:
    """(B, K, h, w) logits of ``class_ids`` (B, K) at the decoder's resolution (from the
    method's own model, if it has one); None for all-foreground."""
    if method.text is None:
        return None
    net = model if method.model is None else method.model
    return net(tokens, method.text[class_ids]).float()


def _probabilities(logits: Tensor | None, item: int, size: tuple[int, int],
                   count: int) -> np.ndarray:
    """(K, H, W) probabilities of batch ``item`` at ``size`` (logits resized bilinearly, then
    sigmoid); all ones for all-foreground."""
    if logits is None:
        return np.ones((count, *size), dtype=np.float32)
    return upsample_logits(logits[item:item + 1], size)[0].sigmoid().cpu().numpy()


def overlay_positions(features: CachedFeatureDataset, split: ZeroShotSplit, count: int,
                      block: int = 256) -> list[int]:
    """``count`` images showing unseen classes, evenly spread over the split (store order)."""
    if count <= 0:
        return []
    total = int(features.attrs["num_images"])  # labels read in blocks, never all at once
    wanted, showing = set(features.indices), []
    for start in range(0, total, block):
        for row, label in enumerate(features.rows("labels", start, min(start + block, total)),
                                    start=start):
            if row in wanted and evaluation_episodes(label, split):
                showing.append(row)
    return [showing[i] for i in evenly_spaced(len(showing), count)]


_Scored = dict[tuple[int, int], Tensor | None]  # (model, text table) -> logits of one batch


class _FoldPass:
    """Accumulators of every (method, mode) over one pass, and the overlay predictions."""

    def __init__(self, inputs: FoldInputs, methods: Sequence[Method], modes: Sequence[Mode],
                 batch_size: int, threshold: Threshold, overlays: Sequence[int]) -> None:
        self.model, self.split, self.methods = inputs.model.eval(), inputs.split, methods
        self.device = next(self.model.parameters()).device
        self.unseen = list(inputs.split.unseen)
        self.batch_size, self.threshold = batch_size, threshold
        self.acc = {(m.name, mode): IoUAccumulator(self.unseen) for m in methods
                    for mode in modes if mode in m.modes}
        # AUROC needs no threshold: a method with its own threshold ranks as the one it copies
        self.ranking = {m.name: RankingAccumulator(self.unseen) for m in methods
                        if "binary" in modes and "binary" in m.modes and m.threshold is None}
        self.episodes: dict[Mode, int] = {mode: 0 for mode in modes}
        self.ids = dict(zip(inputs.features.indices, inputs.features.image_ids(), strict=True))
        self.kept: dict[int, dict[Mode, np.ndarray]] = {p: {} for p in overlays}
        self.binary_probs: dict[int, dict[int, np.ndarray]] = {p: {} for p in overlays}

    def _methods(self, mode: Mode) -> list[Method]:
        return [m for m in self.methods if mode in m.modes]

    def _rule(self, method: Method) -> Threshold:
        return self.threshold if method.threshold is None else method.threshold

    def _logits(self, scored: _Scored, method: Method, tokens: Tensor,
                class_ids: Tensor) -> Tensor | None:
        """``method``'s logits; one forward pass per model and text table in ``scored``
        (methods that differ only in their threshold share it)."""
        key = (id(method.model), id(method.text))
        if key not in scored:
            scored[key] = _logits(self.model, method, tokens, class_ids)
        return scored[key]

    def binary(self, tokens: Tensor, labels: Sequence[np.ndarray], positions: list[int]) -> None:
        """Every (image, unseen class present) episode, ``batch_size`` per forward pass."""
        rows = [(row, c) for row, label in enumerate(labels)
                for c in evaluation_episodes(label, self.split)]
        self.episodes["binary"] += len(rows)
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start:start + self.batch_size]
            which = torch.tensor([r for r, _ in chunk], device=self.device)
            ids = torch.tensor([[c] for _, c in chunk], device=self.device)
            scored: _Scored = {}
            for method in self._methods("binary"):
                logits = self._logits(scored, method, tokens[which], ids)
                for item, (row, c) in enumerate(chunk):
                    label = labels[row]
                    prob = _probabilities(logits, item, label.shape, 1)[0]
                    limit = map_thresholds(prob, self._rule(method))
                    self.acc[method.name, "binary"].update_binary(c, prob > limit, label,
                                                                  self.ids[positions[row]])
                    if method.name in self.ranking:
                        self.ranking[method.name].update_binary(c, prob, label)
                    if method.name == MODEL and positions[row] in self.binary_probs:
                        self.binary_probs[positions[row]][c] = prob

    def multiclass(self, tokens: Tensor, labels: Sequence[np.ndarray],
                   positions: list[int]) -> None:
        """Each image against all unseen class names at once."""
        self.episodes["multiclass"] += len(positions)
        ids = torch.tensor(self.unseen, device=self.device).expand(len(positions), -1)
        scored: _Scored = {}
        for method in self._methods("multiclass"):
            logits = self._logits(scored, method, tokens, ids)
            for row, label in enumerate(labels):
                prob = _probabilities(logits, row, label.shape, len(self.unseen))
                pred = prediction_map(prob, self.unseen,
                                      map_thresholds(prob, self._rule(method)))
                self.acc[method.name, "multiclass"].update(pred, label, self.ids[positions[row]])
                if method.name == MODEL and positions[row] in self.kept:
                    self.kept[positions[row]]["multiclass"] = pred

    def overlays(self) -> dict[int, dict[Mode, np.ndarray]]:
        """Kept predictions; binary = the present classes, each queried alone, merged by argmax
        among those above the threshold (what the binary protocol saw)."""
        for position, per_class in self.binary_probs.items():
            if per_class:
                classes = sorted(per_class)
                scores = np.stack([per_class[c] for c in classes])
                limits = np.nextafter(map_thresholds(scores, self.threshold), 1)  # "> limit"
                self.kept[position]["binary"] = prediction_map(scores, classes, limits)
        return self.kept


@torch.no_grad()
def evaluate_fold(inputs: FoldInputs, methods: Sequence[Method], modes: Sequence[Mode] = MODES,
                  batch_size: int = 16, threshold: Threshold = PAPER_THRESHOLD,
                  num_workers: int = 0, overlays: Sequence[int] = (),
                  progress: bool = True) -> FoldResult:
    """One pass over the split scoring every (method, mode); ``batch_size`` images per step and
    at most ``batch_size`` binary episodes per forward pass."""
    state = _FoldPass(inputs, methods, modes, batch_size, threshold, overlays)
    loader = DataLoader(inputs.features, batch_size=batch_size, shuffle=False,
                        **loader_kwargs(num_workers))
    images = 0
    for batch in tqdm(loader, desc=f"evaluate fold {inputs.split.fold}", unit="step",
                      leave=False, disable=not progress):
        tokens = batch["patch_tokens"].to(state.device)
        positions = batch["index"].tolist()
        labels = (list(batch["label"].numpy()) if inputs.truth is None
                  else [inputs.truth(p) for p in positions])
        images += len(positions)
        if "binary" in modes:
            state.binary(tokens, labels, positions)
        if "multiclass" in modes:
            state.multiclass(tokens, labels, positions)
    return FoldResult(inputs, scores_of(state.acc, state.ranking), state.episodes, images,
                      state.overlays(), state.acc, state.ranking)


def scores_of(accumulators: dict[tuple[str, Mode], IoUAccumulator],
              rankings: dict[str, RankingAccumulator]) -> dict[tuple[str, Mode], IoUResult]:
    """Every (method, mode) result; binary ones carry their threshold-free AUROC."""
    out = {key: acc.result() for key, acc in accumulators.items()}
    for name, ranking in rankings.items():
        out[name, "binary"] = replace(out[name, "binary"], auroc=ranking.mean(),
                                      per_class_auroc=ranking.per_class())
    return out


def open_folds(checkpoints: Sequence[Path | str], cache_dir: StoreLocation | str, split: str,
               device: str | torch.device = "cpu", dataset: str | None = None
               ) -> list[FoldInputs]:
    """One checkpoint per fold, all opened (and cross-checked) before anything is evaluated."""
    folds: list[FoldInputs] = []
    for checkpoint in checkpoints:
        folds.append(open_fold(checkpoint, cache_dir, split, device, dataset))
        check_same_setting(folds[0], folds[-1], folds[:-1])
    return folds


def seen_name(method: str) -> str:
    """Score key of ``method`` run on the SEEN classes (``seen_reference`` for the model)."""
    return SEEN_REFERENCE if method == MODEL else f"{SEEN_REFERENCE}_{method}"


def seen_view(inputs: FoldInputs) -> FoldInputs:
    """The same inputs with the fold's SEEN classes in the place of the unseen ones."""
    return replace(inputs, split=replace(inputs.split, unseen=inputs.split.seen))


def run_folds(folds: Sequence[FoldInputs], *, modes: Sequence[Mode] = MODES,
              baselines: bool = True, seen_reference: bool = True, seed: int = 0,
              batch_size: int = 16, threshold: Threshold = PAPER_THRESHOLD, num_workers: int = 0,
              num_overlays: int = 0, progress: bool = True) -> list[FoldResult]:
    """Evaluate every fold with the model, (``baselines``) the baselines and (``seen_reference``)
    the model on the seen classes under the same protocol (scores keyed ``seen_reference``)."""
    results: list[FoldResult] = []
    for inputs in folds:
        log.info("fold %d of %s: unseen %s", inputs.split.fold, inputs.split.dataset,
                 [inputs.class_names[c] for c in inputs.split.unseen])
        result = evaluate_fold(
            inputs, [*default_methods(inputs, baselines, seed, threshold), *inputs.controls],
            modes, batch_size, threshold,
            num_workers, overlay_positions(inputs.features, inputs.split, num_overlays), progress)
        if seen_reference and inputs.split.seen:
            seen = evaluate_fold(seen_view(inputs), default_methods(inputs, False, seed, threshold),
                                 modes, batch_size, threshold, num_workers, (), progress)
            result.scores.update({(seen_name(method), mode): score
                                  for (method, mode), score in seen.scores.items()})
            result.accumulators.update({(seen_name(method), mode): acc
                                        for (method, mode), acc in seen.accumulators.items()})
            result.rankings.update({seen_name(m): r for m, r in seen.rankings.items()})
        for (method, mode), score in sorted(result.scores.items()):
            ranking = "" if np.isnan(score.auroc) else f" AUROC {score.auroc:.4f}"
            log.info("fold %d %s %s: mIoU %.4f FB-IoU %.4f%s", inputs.split.fold, mode, method,
                     score.miou, score.fb_iou, ranking)
        results.append(result)
    return results


def check_same_setting(first: FoldInputs, new: FoldInputs, earlier: list[FoldInputs]) -> None:
    """Folds averaged together must share the dataset, split and encoder pair, not the fold."""
    same = [("dataset", first.meta["dataset"], new.meta["dataset"])]
    same += [(f"{side} encoder", first.meta[side]["encoder"], new.meta[side]["encoder"])
             for side in ("visual", "text")]
    for what, expected, found in same:
        if expected != found:
            raise FusionerError(f"{new.checkpoint}: {what} {found!r} differs from "
                                f"{first.checkpoint}'s {expected!r} (folds must share them)")
    if new.split.fold in {e.split.fold for e in earlier}:
        raise FusionerError(f"{new.checkpoint}: fold {new.split.fold} is given twice")
