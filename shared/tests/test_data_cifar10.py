import dataclasses
import hashlib
import io
import logging
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from shared.data import cifar10
from shared.data.cifar10 import CIFAR10_CLASSES, load_cifar10
from shared.data.locations import CorruptDataError


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("PAPERSTACK_DATA", str(root))
    return root


def tiny_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random (3, 32, 32) uint8 images and labels cycling through the ten classes."""
    generator = np.random.default_rng(seed)
    images = generator.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    return images, np.arange(n) % 10


def write_python_batch(path: Path, content: dict) -> None:
    """A batch as the official files have it: a protocol-2 pickle naming numpy 1.x's modules."""
    data = pickle.dumps(content, protocol=2).replace(b"numpy._core.", b"numpy.core.")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_python_version(root: Path, images: np.ndarray, labels: np.ndarray) -> None:
    folder = root / "cifar10" / "cifar-10-batches-py"
    write_python_batch(
        folder / "batches.meta",
        {"num_cases_per_batch": 10000, "label_names": list(CIFAR10_CLASSES), "num_vis": 3072},
    )
    parts = np.array_split(np.arange(len(images)), 5)
    batches = [(f"data_batch_{k + 1}", part) for k, part in enumerate(parts)]
    for name, rows in [*batches, ("test_batch", np.arange(len(images)))]:
        write_python_batch(
            folder / name,
            {
                "batch_label": f"{name} of the test",
                "labels": labels[rows].tolist(),
                "data": images[rows].reshape(len(rows), 3072),
                "filenames": [f"image_{row}.png" for row in rows],
            },
        )


def png_bytes(image_chw: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image_chw.transpose(1, 2, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_embedded_train_subset_has_500_images_per_class_in_the_official_order():
    data = load_cifar10("train", source="embedded")

    assert data.images.shape == (5000, 3, 32, 32)
    assert data.images.dtype == torch.uint8
    assert data.labels.dtype == torch.int64
    assert torch.bincount(data.labels).tolist() == [500] * 10
    assert data.classes == list(CIFAR10_CLASSES)
    assert data.classes[:3] == ["airplane", "automobile", "bird"]
    assert (data.skipped, data.origin) == (0, "embedded")
    # the first image is train/airplane/0000.jpg; its top-left pixel as decoded by libjpeg
    assert data.labels[:3].tolist() == [0, 0, 0]
    assert data.images[0, :, 0, 0].tolist() == [200, 202, 197]


def test_embedded_test_subset_has_100_images_per_class():
    data = load_cifar10("test", source="embedded")

    assert data.images.shape == (1000, 3, 32, 32)
    assert torch.bincount(data.labels).tolist() == [100] * 10
    assert data.images[0, :, 0, 0].tolist() == [141, 159, 179]


def test_python_version_is_read_without_torchvision(data_dir):
    images, labels = tiny_images(20)
    write_python_version(data_dir, images, labels)

    train = load_cifar10("train", source="full", download=False)
    test = load_cifar10("test", source="full", download=False)

    assert train.origin == "data-dir"
    assert torch.equal(train.images, torch.from_numpy(images))
    assert train.labels.tolist() == labels.tolist()
    assert torch.equal(test.images, torch.from_numpy(images))


def test_every_layout_gives_the_same_images_and_labels(tmp_path, monkeypatch):
    images, labels = tiny_images(30, seed=1)
    # ImageFolder order: by class, then by file name
    order = np.lexsort((np.arange(30), labels))
    roots = {name: tmp_path / name for name in ("python", "tree", "zip")}
    write_python_version(roots["python"], images[order], labels[order])
    for index in range(30):
        relative = f"train/{CIFAR10_CLASSES[labels[index]]}/{index:04d}.png"
        tree_file = roots["tree"] / "cifar10" / relative
        tree_file.parent.mkdir(parents=True, exist_ok=True)
        tree_file.write_bytes(png_bytes(images[index]))
    (roots["zip"] / "cifar10").mkdir(parents=True)
    with zipfile.ZipFile(roots["zip"] / "cifar10" / "cifar10-jpg.zip", "w") as archive:
        for index in reversed(range(30)):  # member order must not matter
            relative = f"train/{CIFAR10_CLASSES[labels[index]]}/{index:04d}.png"
            archive.writestr(relative, png_bytes(images[index]))

    loaded = {}
    for name, root in roots.items():
        monkeypatch.setenv("PAPERSTACK_DATA", str(root))
        loaded[name] = load_cifar10("train", source="full", download=False)

    for name in ("tree", "zip"):
        assert torch.equal(loaded[name].images, loaded["python"].images), name
        assert torch.equal(loaded[name].labels, loaded["python"].labels), name
    assert loaded["python"].labels.tolist() == sorted(labels.tolist())


def test_corrupt_images_are_skipped_counted_and_reported_once(data_dir, caplog):
    images, labels = tiny_images(4)
    folder = data_dir / "cifar10" / "train"
    for index in range(4):
        path = folder / CIFAR10_CLASSES[labels[index]] / f"{index:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png_bytes(images[index]))
    good_jpeg = io.BytesIO()
    Image.fromarray(images[0].transpose(1, 2, 0)).save(good_jpeg, format="JPEG")
    (folder / "cat" / "9998.jpg").write_bytes(good_jpeg.getvalue()[:200])  # truncated
    (folder / "cat" / "9999.jpg").write_bytes(b"not an image at all")

    with caplog.at_level(logging.WARNING, logger="shared.data.cifar10"):
        data = load_cifar10("train", source="full", download=False)

    assert data.skipped == 2
    assert len(data) == 4
    assert torch.equal(data.images, torch.from_numpy(images))
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "skipped 2" in warnings[0].getMessage()


def test_a_batch_file_cannot_run_code(data_dir):
    write_python_version(data_dir, *tiny_images(10))
    hostile = data_dir / "cifar10" / "cifar-10-batches-py" / "data_batch_3"

    class RunsCode:
        def __reduce__(self):
            return (os.getcwd, ())

    hostile.write_bytes(pickle.dumps({"data": RunsCode()}, protocol=2))

    with pytest.raises(CorruptDataError, match="data_batch_3"):
        load_cifar10("train", source="full", download=False)


def test_meta_with_other_classes_is_refused(data_dir):
    write_python_version(data_dir, *tiny_images(10))
    write_python_batch(
        data_dir / "cifar10" / "cifar-10-batches-py" / "batches.meta",
        {"label_names": [f"class{k}" for k in range(10)]},
    )

    with pytest.raises(CorruptDataError, match="classes"):
        load_cifar10("test", source="full", download=False)


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        load_cifar10("validation")


def test_official_tarball_is_downloaded_checked_and_unpacked(data_dir, tmp_path, monkeypatch):
    # a stand-in for cifar-10-python.tar.gz, served from a file:// URL
    images, labels = tiny_images(10)
    write_python_version(tmp_path / "build", images, labels)
    tarball = tmp_path / "server" / "cifar-10-python.tar.gz"
    tarball.parent.mkdir()
    with tarfile.open(tarball, "w:gz") as tar:
        batches = tmp_path / "build" / "cifar10" / "cifar-10-batches-py"
        tar.add(batches, arcname="cifar-10-batches-py")
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    official = dataclasses.replace(
        cifar10.OFFICIAL_DOWNLOAD, url=tarball.as_uri(), sha256=digest, md5=None
    )
    monkeypatch.setattr(cifar10, "OFFICIAL_DOWNLOAD", official)

    data = load_cifar10("test", source="full")

    assert data.origin == "downloaded"
    assert torch.equal(data.images, torch.from_numpy(images))
    assert (data_dir / "cifar10" / "cifar-10-batches-py" / "test_batch").is_file()
