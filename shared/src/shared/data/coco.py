"""COCO 2017 captions (Chen et al., 2015): images with their five human-written captions each.

Reads the official layout, ``annotations/captions_{train,val}2017.json`` beside the image
folders ``train2017/`` and ``val2017/``, from a full COCO folder ``coco/`` or the 159-image
``coco-mini/`` (the offline mirror; the embedded copy has its images shrunk to at most 256 px
on the longest side, with width and height in its annotations updated to match).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PIL import Image

from shared.data import locations
from shared.data.locations import CorruptDataError, DatasetSpec, Source, locate

log = logging.getLogger(__name__)

Split = Literal["train", "val"]


@dataclass
class CaptionedImage:
    """One image file and its captions."""

    image_id: int
    path: Path
    captions: list[str]
    width: int  # pixels, as the annotation file states them
    height: int

    def open(self) -> Image.Image:
        """The image as a PIL RGB image (greyscale COCO images are converted)."""
        with Image.open(self.path) as image:
            return image.convert("RGB")


def coco_captions_spec(split: Split) -> DatasetSpec:
    """Where COCO 2017 captions of ``split`` may be found: full ``coco/``, then ``coco-mini/``."""
    if split not in ("train", "val"):
        raise ValueError(f"COCO split must be 'train' or 'val', got {split!r}")
    annotation = f"annotations/captions_{split}2017.json"
    images = f"{split}2017"
    # the embedded subset is checked file by file, so it lists every image of its manifest
    embedded_images = sorted(
        relative
        for relative in locations.embedded_manifest()
        if relative.startswith(f"coco-mini/{images}/")
    )
    return DatasetSpec(
        name=f"COCO 2017 captions {split}",
        layouts=[
            [f"coco/{annotation}", f"coco/{images}"],
            [f"coco-mini/{annotation}", f"coco-mini/{images}"],
        ],
        embedded=[f"coco-mini/{annotation}", *embedded_images],
        note=(
            "Get annotations_trainval2017.zip and the image zips from https://cocodataset.org "
            "and unzip them into coco/."
        ),
    )


def load_coco_captions(split: Split = "train", source: Source = "auto") -> list[CaptionedImage]:
    """Every image of ``split`` that is on disk, with all its captions, ordered by image id.

    Images listed in the annotation file but missing on disk are left out with one warning
    giving their number.
    """
    # Limitation: no download: the official image zips are 19 GB; fetch them by hand
    located = locate(coco_captions_spec(split), source=source, download=False)
    annotation_path = located.files[0]
    image_dir = annotation_path.parent.parent / f"{split}2017"

    # annotation file: images and captions
    captions_of: dict[int, list[str]] = {}
    try:
        annotation = json.loads(annotation_path.read_text(encoding="utf-8"))
        images = annotation["images"]
        for caption in annotation["annotations"]:
            captions_of.setdefault(caption["image_id"], []).append(caption["caption"].strip())
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise CorruptDataError(
            f"{annotation_path} is not a COCO captions file with 'images' and 'annotations' "
            f"holding image_id and caption ({error!r})"
        ) from error

    # images present on disk
    items, missing = [], 0
    for image in sorted(images, key=lambda image: image["id"]):
        path = image_dir / image["file_name"]
        if not path.exists():
            missing += 1
            continue
        items.append(
            CaptionedImage(
                image_id=image["id"],
                path=path,
                captions=captions_of.get(image["id"], []),
                width=image["width"],
                height=image["height"],
            )
        )
    if missing:
        log.warning(
            "COCO %s: %d of %d annotated images are missing from %s and were skipped",
            split,
            missing,
            len(images),
            image_dir,
        )
    log.info(
        "COCO %s: %d images, %d captions from %s (%s)",
        split,
        len(items),
        sum(len(item.captions) for item in items),
        annotation_path.parent.parent,
        located.origin,
    )
    return items
