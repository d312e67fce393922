"""Image-level cross-validation: K disjoint held-out image sets over one store of all images.

The rule (coco128's fixed split is its split 3 of 4): sort the store's images by id (the file
stem), and the image at position p is held out (val) in image split ``p % K``; it trains in the
other K - 1 splits. So every image is held out exactly once over the K splits, and an image
split is a list of store rows, never a copy of the store.

A checkpoint trained on an image split records it (``ImageSplit.record``: k, K, the store split,
the number of images and the held-out image ids with their digest); evaluation reads those ids
back from the store (``rows_of``), so a checkpoint is never scored on an image it trained on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.errors import FusionerError, StoreError

IMAGE_SPLITS = 4  # coco128's 96/32 split is split 3 of 4


def ids_digest(image_ids: Sequence[str]) -> str:
    """sha256 of the sorted ids, one a line: names a set of images in a few characters."""
    return hashlib.sha256("\n".join(sorted(image_ids)).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ImageSplit:
    """Image split ``split`` of ``splits`` over a store of ``images`` images: store rows to
    train on and to hold out, and the held-out image ids."""

    split: int
    splits: int
    images: int
    train_rows: tuple[int, ...]
    val_rows: tuple[int, ...]
    val_ids: tuple[str, ...]

    @classmethod
    def of(cls, image_ids: Sequence[str], split: int, splits: int = IMAGE_SPLITS) -> ImageSplit:
        """Split ``split`` of the store whose rows hold ``image_ids``; ``FusionerError`` for a
        split outside 0..splits-1, fewer images than splits, or repeated ids."""
        ids = [str(i) for i in image_ids]
        if splits < 2 or not 0 <= split < splits:
            raise FusionerError(f"image split {split} of {splits}: need 2 or more splits and a "
                                f"split in 0..{max(splits, 1) - 1}")
        if len(ids) < splits:
            raise FusionerError(f"{len(ids)} images cannot be cut into {splits} image splits")
        if len(set(ids)) != len(ids):
            raise StoreError("the store repeats an image id: image splits need unique ids")
        order = sorted(range(len(ids)), key=lambda row: ids[row])
        held = sorted(row for position, row in enumerate(order) if position % splits == split)
        kept = sorted(set(range(len(ids))) - set(held))
        return cls(split, splits, len(ids), tuple(kept), tuple(held),
                   tuple(sorted(ids[row] for row in held)))

    def record(self, store_split: str) -> dict[str, Any]:
        """What a checkpoint keeps (``meta["image_split"]``): enough to find its val images."""
        return {"split": self.split, "splits": self.splits, "store_split": store_split,
                "images": self.images, "val_images": len(self.val_ids),
                "val_ids": list(self.val_ids), "val_digest": ids_digest(self.val_ids)}


def rows_of(image_ids: Sequence[str], wanted: Sequence[str], where: object) -> list[int]:
    """Store rows (sorted) of the ``wanted`` ids in a store whose rows hold ``image_ids``;
    ``StoreError`` naming the first id the store lacks."""
    index = {str(image_id): row for row, image_id in enumerate(image_ids)}
    missing = [i for i in wanted if i not in index]
    if missing:
        raise StoreError(f"{where}: holds no image '{missing[0]}' ({len(missing)} of the "
                         f"{len(wanted)} held-out images missing; extract the store the "
                         "checkpoint's image split was cut from)")
    return sorted(index[i] for i in wanted)


def held_out_ids(meta: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The held-out image ids a checkpoint's ``meta`` records (None: not an image split);
    ``FusionerError`` when the ids do not match their digest."""
    record = meta.get("image_split")
    if not record:
        return None
    ids = tuple(str(i) for i in record["val_ids"])
    if ids_digest(ids) != record["val_digest"]:
        raise FusionerError(f"image split {record['split']}: its held-out ids do not match "
                            "their digest (damaged checkpoint meta)")
    return ids
