"""Every option of a fusion training run, with the small CPU default configuration."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import FusionerError
from pipeline.model.fusion import FusionConfig
from pipeline.store.layout import DEFAULT_CACHE_DIR
from pipeline.store.location import StoreLocation, for_fold

# Options that do not change what is learned: left out of the checkpoint's ``train`` record and
# free to differ when resuming.
RUNTIME_KEYS = ("cache_dir", "out", "device", "num_workers", "resume", "progress", "val_every",
                "calibrate", "calibration_images")


@dataclass(frozen=True)
class FitConfig:
    """A training run. Model defaults are the small CPU config (CamVid in minutes on 2 cores);
    the paper's is ``dim=512, layers=12, heads=8, embed_dim=0`` (= dim), decoder d/2, d/4, d/8.
    """

    visual: str
    text: str
    dataset: str = "camvid"
    fold: int = 0
    cache_dir: StoreLocation = DEFAULT_CACHE_DIR  # a folder, or a URL with storage options
    out: Path = Path("models/fusion")
    train_split: str = "train"
    val_split: str | None = "val"  # seen-class mIoU per epoch on this store; None/"" = off
    val_every: int = 1  # validate after every N-th epoch and after the last
    epochs: int = 12
    batch_size: int = 8
    lr: float = 1e-3
    min_lr: float = 2e-6
    weight_decay: float = 0.01
    weight_decay_end: float | None = None  # cosine wd schedule end (paper 0.4); None = constant
    warmup_epochs: float = 1.0
    layers: int = 2
    dim: int = 256
    heads: int = 4
    mlp_ratio: float = 4.0
    drop_path: float = 0.1
    decoder_channels: tuple[int, ...] = field(default_factory=tuple)  # () = d/2, d/4, d/8
    embed_dim: int = 64  # pixel/class embedding of the cosine head; 0 = dim (paper)
    temperature: float = 0.07
    episode: str = "present"  # "present"/"all"/"single"/"vocabulary" (pipeline.train.episodes)
    unseen_as: str = "ignore"  # unseen pixels: "ignore" (255) or "background" (negatives)
    negatives: int = 0  # absent seen classes also queried per training episode (redrawn per epoch)
    absent_rate: float = 0.0  # episode "single": share of episodes asking for an absent class
    dice_weight: float = 0.0  # loss = BCE + dice_weight x soft Dice per class mask
    text_noise: float = 0.0  # Gaussian noise on training text embeddings, relative to their norm
    block_mix: int = 4  # shuffle shards, then images within windows of this many; 0 = per image
    views: int | None = None  # draw among views 0..views of the train store; None = all it has
    image_split: int | None = None  # hold out image split k of the train store (None: all train)
    image_splits: int = 4  # K of the image splits (``pipeline.data.image_splits``)
    seed: int = 0
    calibrate: bool = True  # after the last epoch: the generalized protocol's gamma (meta)
    calibration_images: int = 0  # train images gamma is chosen on, evenly spaced (0: all)
    device: str = "auto"
    num_workers: int = 0
    resume: bool = False
    progress: bool = True

    @property
    def stores(self) -> StoreLocation:
        """Where this run's stores are: ``cache_dir`` with ``{fold}`` replaced by the fold."""
        return for_fold(self.cache_dir, self.fold)

    def model_config(self, visual_dim: int, text_dim: int) -> FusionConfig:
        """The ``FusionConfig`` this run trains, for features of these widths."""
        try:
            return FusionConfig(visual_dim=visual_dim, text_dim=text_dim, dim=self.dim,
                                layers=self.layers, heads=self.heads, mlp_ratio=self.mlp_ratio,
                                drop_path=self.drop_path, decoder_channels=self.decoder_channels,
                                embed_dim=self.embed_dim, temperature=self.temperature)
        except ValueError as exc:
            raise FusionerError(f"invalid model options: {exc}") from exc

    def record(self) -> dict[str, Any]:
        """Options that determine the result (plain values, for the checkpoint's ``train``)."""
        values = asdict(self)
        values["decoder_channels"] = list(self.decoder_channels)
        if self.image_split is None:  # a run on the whole train store records what it always did
            del values["image_split"], values["image_splits"]
        return {k: v for k, v in values.items() if k not in RUNTIME_KEYS}
