"""The LightningDataModule: CIFAR-10 through shared.data, or an ImageNet-style folder.

Training batches are ``((view_a, view_b), labels, skipped)``: two BYOL views of each image,
the labels (used only by the online probe) and the number of images of this batch that could
not be decoded and were left out. Evaluation batches are ``(images, labels, skipped)``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, default_collate
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset
from torchvision.transforms.v2.functional import pil_to_tensor

from shared.data import load_cifar10
from tico.augment import TwoViews, eval_transform
from tico.config import TiCoConfig

log = logging.getLogger(__name__)


def balanced_subset(labels: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """Indices of ``count`` samples, as equal a number per class as possible, chosen by ``seed``.

    Used for the smaller training sets of the CPU scales and for the 1% / 10% label subsets of
    the semi-supervised evaluation. Indices come back sorted.
    """
    classes = torch.unique(labels)
    if count < len(classes):
        raise ValueError(
            f"a class-balanced subset needs at least one sample per class ({len(classes)}), "
            f"got {count}"
        )
    if count >= len(labels):
        return torch.arange(len(labels))
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator)
    shuffled = labels[order]
    # rank of each sample within its class, in the shuffled order
    chosen = []
    per_class, extra = divmod(count, len(classes))
    for index, cls in enumerate(classes):
        members = order[shuffled == cls]
        chosen.append(members[: per_class + (1 if index < extra else 0)])
    return torch.cat(chosen).sort().values


class ImageTensors(Dataset):
    """Images held in memory as a (N, 3, H, W) uint8 tensor, transformed on access."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.transform(self.images[index]), int(self.labels[index])


class ImageFiles(Dataset):
    """An ImageNet-style ``<folder>/<class>/<image>`` tree, decoded lazily.

    An image that cannot be decoded is reported once with a warning and returned as None;
    :func:`collate_skipping_corrupt` leaves it out of the batch and counts it.
    """

    def __init__(self, folder: Path, transform: Callable):
        if not folder.is_dir():
            raise FileNotFoundError(
                f"image folder {folder} does not exist; data.root must hold train/<class>/ and "
                "val/<class>/ folders of images (the ImageNet layout)"
            )
        self.classes, class_to_index = find_classes(str(folder))
        self.samples = make_dataset(str(folder), class_to_index, extensions=IMG_EXTENSIONS)
        self.labels = torch.tensor([label for _, label in self.samples])
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int] | None:
        path, label = self.samples[index]
        try:
            with Image.open(path) as file:
                image = pil_to_tensor(file.convert("RGB"))  # (3, H, W) uint8
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
            log.warning("skipping corrupt image %s (%s)", path, str(error).splitlines()[0])
            return None
        return self.transform(image), label


def collate_skipping_corrupt(items: list[Any]) -> tuple[Any, ...] | None:
    """Batch the decodable items and append how many were left out (None if all were)."""
    kept = [item for item in items if item is not None]
    skipped = torch.tensor(len(items) - len(kept))
    if not kept:
        return None
    inputs, labels = default_collate(kept)
    return inputs, labels, skipped


class SelfSupervisedData(L.LightningDataModule):
    """Two-view training data and plain evaluation data for one config."""

    def __init__(self, config: TiCoConfig):
        super().__init__()
        self.config = config
        self.train_set: ImageTensors | ImageFiles | None = None
        self.train_plain: ImageTensors | ImageFiles | None = None
        self.test_set: ImageTensors | ImageFiles | None = None
        self.skipped_at_load = 0  # undecodable images the CIFAR-10 loader left out

    @property
    def num_classes(self) -> int:
        self.setup()
        return int(self.train_set.labels.max()) + 1  # type: ignore[union-attr]

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        data, augment = self.config.data, self.config.augment
        views = TwoViews(augment, data.image_size)

        # read the images: in memory for CIFAR-10, lazily from files for a folder
        if data.dataset == "cifar10":
            train = load_cifar10("train", source=data.source)
            test = load_cifar10("test", source=data.source)
            self.skipped_at_load = train.skipped + test.skipped
            plain = eval_transform(augment, data.image_size)
            train_images, train_labels = self._subset(train.images, train.labels, data.train_images)
            test_images, test_labels = self._subset(test.images, test.labels, data.test_images)
            self.train_set = ImageTensors(train_images, train_labels, views)
            self.train_plain = ImageTensors(train_images, train_labels, plain)
            self.test_set = ImageTensors(test_images, test_labels, plain)
        else:
            root = Path(data.root)
            plain = eval_transform(augment, data.image_size, resize=True)
            self.train_set = ImageFiles(root / "train", views)
            self.train_plain = ImageFiles(root / "train", plain)
            self.test_set = ImageFiles(root / "val", plain)
            if data.train_images or data.test_images:
                # Limitation: subsets of an image folder are not drawn; use a smaller folder
                log.warning("data.train_images and data.test_images apply to cifar10 only")

        if len(self.train_set) < data.batch_size:
            raise ValueError(
                f"data.batch_size ({data.batch_size}) exceeds the {len(self.train_set)} "
                "training images; lower data.batch_size or use more images"
            )
        log.info(
            "data: %s, %d training and %d test images, %d px views, batch %d per process",
            data.dataset,
            len(self.train_set),
            len(self.test_set),
            data.image_size,
            data.batch_size,
        )

    def _subset(
        self, images: torch.Tensor, labels: torch.Tensor, count: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if count == 0 or count >= len(labels):
            return images, labels
        # the subset depends on the data seed only, so every run of an experiment sees the same
        index = balanced_subset(labels, count, seed=0)
        return images[index], labels[index]

    def _loader(self, dataset: Dataset, shuffle: bool, batch_size: int, drop_last: bool):
        workers = self.config.data.num_workers
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            num_workers=workers,
            persistent_workers=workers > 0 and shuffle,
            pin_memory=torch.cuda.is_available(),
            collate_fn=collate_skipping_corrupt,
        )

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.train_set, True, self.config.data.batch_size, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.test_set, False, self.config.data.eval_batch_size, False)

    def plain_loaders(self) -> tuple[DataLoader, DataLoader]:
        """Unaugmented train and test images, for the offline kNN and linear evaluations."""
        self.setup()
        size = self.config.data.eval_batch_size
        return (
            self._loader(self.train_plain, False, size, False),
            self._loader(self.test_set, False, size, False),
        )
