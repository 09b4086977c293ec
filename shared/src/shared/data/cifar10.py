"""CIFAR-10 (Krizhevsky, 2009): 60,000 32x32 colour images in 10 classes, as uint8 tensors.

Three layouts of the dataset folder ``cifar10/`` are read, preferred in this order:

- the official python version unpacked as torchvision keeps it,
  ``cifar-10-batches-py/data_batch_1..5``, ``test_batch`` and ``batches.meta``: the
  original pixels, parsed here without torchvision (downloaded when nothing else is found);
- an extracted ImageFolder tree, ``train/<class>/*.jpg`` and ``test/<class>/*.jpg``;
- the same tree in one zip, ``cifar10-jpg.zip`` (the offline mirror's copy and the
  embedded subset of 500 train and 100 test images per class).

Labels follow the official class order (``CIFAR10_CLASSES``) whatever the layout.
"""

from __future__ import annotations

import io
import logging
import pickle
import re
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from shared.data.locations import (
    CorruptDataError,
    DatasetSpec,
    Download,
    Source,
    locate,
)

log = logging.getLogger(__name__)

# the official label order of batches.meta, which is also the alphabetical ImageFolder order
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
IMAGE_SIZE = 32
ZIP_PATH = "cifar10/cifar10-jpg.zip"
PICKLE_DIR = "cifar10/cifar-10-batches-py"
_BATCHES = {
    "train": tuple(f"{PICKLE_DIR}/data_batch_{i}" for i in range(1, 6)),
    "test": (f"{PICKLE_DIR}/test_batch",),
}
_META = f"{PICKLE_DIR}/batches.meta"
_PROGRESS_FROM = 10_000  # show a progress bar when decoding at least this many images

Split = Literal["train", "test"]


@dataclass
class ImageClassificationData:
    """Images and their integer labels, channels first."""

    images: torch.Tensor  # (N, 3, 32, 32) uint8 RGB, the layout of torchvision's image tensors
    labels: torch.Tensor  # (N,) int64, indices into classes
    classes: list[str]
    skipped: int = 0  # images that could not be decoded and were left out
    origin: str = ""  # "data-dir", "embedded" or "downloaded"

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(
                f"images must be (N, 3, height, width), got shape {tuple(self.images.shape)}"
            )
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"labels must be one per image, got {tuple(self.labels.shape)} "
                f"for {self.images.shape[0]} images"
            )

    def __len__(self) -> int:
        return len(self.labels)


def _unpack_python_tarball(archive: Path, root: Path) -> None:
    target = (root / "cifar10").resolve()
    with tarfile.open(archive, "r:gz") as tar:
        # only plain files and folders inside the target (what tarfile's "data" filter
        # enforces; the filter itself needs Python >= 3.11.4, so it is checked here by hand)
        for member in tar.getmembers():
            destination = (target / member.name).resolve()
            if not (member.isfile() or member.isdir()) or not destination.is_relative_to(target):
                raise CorruptDataError(
                    f"{archive} holds {member.name!r}, which is not a plain file inside the "
                    "archive's folder; delete the file and download it again"
                )
        tar.extractall(target)


OFFICIAL_DOWNLOAD = Download(
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    target="cifar10/cifar-10-python.tar.gz",
    sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    md5="c58f30108f718f92721af3b95e74349a",
    unpack=_unpack_python_tarball,
)


def cifar10_spec(split: Split) -> DatasetSpec:
    """Where the ``split`` of CIFAR-10 may be found, best layout first."""
    if split not in _BATCHES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return DatasetSpec(
        name=f"CIFAR-10 {split}",
        layouts=[[*_BATCHES[split], _META], [f"cifar10/{split}"], [ZIP_PATH]],
        embedded=[ZIP_PATH],
        downloads=[OFFICIAL_DOWNLOAD],
        note=(
            "Get the python version from https://www.cs.toronto.edu/~kriz/cifar.html and unpack "
            "it into cifar10/, or put an ImageFolder zip of JPEGs at cifar10/cifar10-jpg.zip."
        ),
    )


def load_cifar10(
    split: Split = "train", source: Source = "auto", download: bool = True
) -> ImageClassificationData:
    """CIFAR-10 ``split`` as uint8 images (N, 3, 32, 32) and int64 labels in the official order.

    ``source="embedded"`` gives the packaged subset (500 train or 100 test images per class);
    see :func:`shared.data.locations.locate` for ``source`` and ``download``.
    """
    located = locate(cifar10_spec(split), source=source, download=download)
    first = located.files[0]

    # read whichever layout was found
    if first.suffix == ".zip":
        images, labels, skipped = _read_image_folder_zip(first, split)
    elif first.is_dir():
        images, labels, skipped = _read_image_folder_tree(first)
    else:
        images, labels = _read_python_batches(located.files[:-1], located.files[-1])
        skipped = 0

    if skipped:
        log.warning(
            "CIFAR-10 %s: skipped %d corrupt or undecodable images (of %d)",
            split,
            skipped,
            skipped + len(labels),
        )
    data = ImageClassificationData(
        images=torch.from_numpy(images),
        labels=torch.from_numpy(labels),
        classes=list(CIFAR10_CLASSES),
        skipped=skipped,
        origin=located.origin,
    )
    log.info("CIFAR-10 %s: %d images from %s (%s)", split, len(data), first, located.origin)
    return data


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists and numpy arrays only, so a batch file cannot run code."""

    _allowed = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),  # how Python 3 writes bytes at protocol 2
        }
    )

    def find_class(self, module: str, name: str):
        if (module, name) not in self._allowed:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a CIFAR batch")
        # pickles written by numpy 1.x name numpy.core, which numpy 2 keeps as numpy._core
        return super().find_class(module.replace("numpy.core", "numpy._core"), name)


def _unpickle(path: Path) -> dict[str, object]:
    try:
        with open(path, "rb") as handle:
            # latin1 turns the Python 2 strings of the official files into numpy's raw bytes
            content = _ArrayUnpickler(handle, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise CorruptDataError(
            f"{path} is not a CIFAR-10 python batch ({error}); download the python version again"
        ) from error
    if not isinstance(content, dict):
        raise CorruptDataError(f"{path} holds a {type(content).__name__}, expected a dict")
    return {
        key.decode() if isinstance(key, bytes) else key: value for key, value in content.items()
    }


def _read_python_batches(batches: tuple[Path, ...], meta: Path) -> tuple[np.ndarray, np.ndarray]:
    # class names: must be the official order, or the labels would mean other classes
    names = [n.decode() if isinstance(n, bytes) else n for n in _unpickle(meta)["label_names"]]
    if tuple(names) != CIFAR10_CLASSES:
        raise CorruptDataError(
            f"{meta} lists classes {names}, expected the CIFAR-10 classes {list(CIFAR10_CLASSES)}"
        )

    # each batch: data (n, 3072) uint8 with the red, green, blue planes of 32x32 in row order
    images, labels = [], []
    for path in batches:
        batch = _unpickle(path)
        if "data" not in batch or "labels" not in batch:
            raise CorruptDataError(f"{path} has keys {sorted(batch)}, expected data and labels")
        data = np.asarray(batch["data"])
        batch_labels = np.asarray(batch["labels"], dtype=np.int64)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * IMAGE_SIZE**2:
            raise CorruptDataError(
                f"{path}: data is {data.dtype} {data.shape}, expected uint8 (n, 3072)"
            )
        if batch_labels.shape != (len(data),):
            raise CorruptDataError(f"{path}: {len(batch_labels)} labels for {len(data)} images")
        if len(batch_labels) and not 0 <= batch_labels.min() <= batch_labels.max() < 10:
            raise CorruptDataError(f"{path}: labels outside 0..9")
        images.append(data.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE))
        labels.append(batch_labels)
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def _label_of_class_folder(name: str, where: Path) -> int:
    if name not in CIFAR10_CLASSES:
        raise CorruptDataError(
            f"{where} has a class folder {name!r}; CIFAR-10 classes are {list(CIFAR10_CLASSES)}"
        )
    return CIFAR10_CLASSES.index(name)


def _read_image_folder_zip(path: Path, split: str) -> tuple[np.ndarray, np.ndarray, int]:
    # members <split>/<class>/<file>, optionally under one top folder; sorted by class then name
    member = re.compile(rf"^(?:[^/]+/)?{split}/([^/]+)/([^/]+\.(?:jpe?g|png))$", re.IGNORECASE)
    entries = []
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                found = member.match(info.filename)
                if found:
                    label = _label_of_class_folder(found.group(1), path)
                    entries.append((label, found.group(2), info))
            entries.sort(key=lambda entry: entry[:2])
            blobs = [archive.read(info) for _, _, info in entries]
    except zipfile.BadZipFile as error:
        raise CorruptDataError(f"{path} is not a readable zip file ({error})") from error
    if not entries:
        raise CorruptDataError(f"{path} has no images under {split}/<class>/")
    labels = np.array([label for label, _, _ in entries], dtype=np.int64)
    return _decode(blobs, labels, f"CIFAR-10 {split}")


def _read_image_folder_tree(folder: Path) -> tuple[np.ndarray, np.ndarray, int]:
    # <folder>/<class>/<file>, sorted by class then name
    blobs, labels = [], []
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        label = _label_of_class_folder(class_dir.name, folder)
        for file in sorted(class_dir.iterdir()):
            if file.suffix.lower() in (".jpg", ".jpeg", ".png"):
                blobs.append(file.read_bytes())
                labels.append(label)
    if not blobs:
        raise CorruptDataError(f"{folder} has no images in <class>/ folders")
    order = np.argsort(np.array(labels), kind="stable")
    return _decode([blobs[i] for i in order], np.array(labels, dtype=np.int64)[order], str(folder))


def _decode(
    blobs: list[bytes], labels: np.ndarray, what: str
) -> tuple[np.ndarray, np.ndarray, int]:
    """Decode encoded 32x32 images into (n, 3, 32, 32) uint8, leaving out undecodable ones.

    An image that does not decode, or is not 32x32, counts as skipped.
    """
    # Limitation: one thread, about 7,500 images/s (7 s for the 50,000 training JPEGs); PIL's
    # per-image Python overhead dominates at 32x32, so a thread pool was slower, not faster.
    pixels = np.empty((len(blobs), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    kept = np.zeros(len(blobs), dtype=bool)
    progress = tqdm(
        blobs, desc=f"decoding {what}", unit="img", disable=len(blobs) < _PROGRESS_FROM, leave=False
    )
    for index, blob in enumerate(progress):
        try:
            with Image.open(io.BytesIO(blob)) as image:
                if image.size != (IMAGE_SIZE, IMAGE_SIZE):
                    continue
                rgb = image if image.mode == "RGB" else image.convert("RGB")
                raw = rgb.tobytes()
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
            continue
        pixels[index] = np.frombuffer(raw, dtype=np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE, 3)
        kept[index] = True
    # (n, 32, 32, 3) -> (n, 3, 32, 32)
    images = np.ascontiguousarray(pixels[kept].transpose(0, 3, 1, 2))
    return images, labels[kept], int((~kept).sum())
