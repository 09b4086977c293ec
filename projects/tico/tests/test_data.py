import logging

import pytest
import torch
from PIL import Image

from tico.data import ImageFiles, SelfSupervisedData, balanced_subset, collate_skipping_corrupt


def test_balanced_subset_takes_the_same_number_per_class_reproducibly():
    labels = torch.arange(10).repeat_interleave(30)
    index = balanced_subset(labels, 50, seed=3)
    assert torch.bincount(labels[index]).tolist() == [5] * 10
    assert torch.equal(index, index.sort().values)
    assert torch.equal(index, balanced_subset(labels, 50, seed=3))
    assert not torch.equal(index, balanced_subset(labels, 50, seed=4))
    with pytest.raises(ValueError, match="at least one sample per class"):
        balanced_subset(labels, 5, seed=0)


def test_collate_leaves_out_and_counts_undecodable_items():
    items = [(torch.zeros(2), 0), None, (torch.ones(2), 1)]
    inputs, labels, skipped = collate_skipping_corrupt(items)
    assert inputs.shape == (2, 2)
    assert labels.tolist() == [0, 1]
    assert int(skipped) == 1
    assert collate_skipping_corrupt([None, None]) is None


def test_a_corrupt_image_in_a_folder_is_skipped_with_a_warning_and_counted(tmp_path, caplog):
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.new("RGB", (8, 8), color=(40 * i, 100, 200)).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n not really an image")
    dataset = ImageFiles(tmp_path, transform=lambda image: image.float())
    assert len(dataset) == 5
    loader = torch.utils.data.DataLoader(dataset, batch_size=5, collate_fn=collate_skipping_corrupt)
    with caplog.at_level(logging.WARNING):
        images, labels, skipped = next(iter(loader))
    assert int(skipped) == 1
    assert images.shape == (4, 3, 8, 8)
    assert labels.tolist() == [0, 0, 1, 1]
    assert "broken.png" in caplog.text


def test_a_missing_image_folder_names_the_expected_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="train/<class>/"):
        ImageFiles(tmp_path / "nowhere", transform=lambda image: image)


def test_cifar10_datamodule_gives_two_augmented_views_and_plain_test_images(tiny):
    datamodule = SelfSupervisedData(tiny())
    datamodule.setup()
    assert len(datamodule.train_set) == 200
    assert len(datamodule.test_set) == 100
    assert torch.bincount(datamodule.train_set.labels).tolist() == [20] * 10
    (view_a, view_b), labels, skipped = next(iter(datamodule.train_dataloader()))
    assert view_a.shape == view_b.shape == (32, 3, 32, 32)
    assert labels.shape == (32,)
    assert int(skipped) == 0
    images, _, _ = next(iter(datamodule.val_dataloader()))
    assert images.shape == (100, 3, 32, 32)
    # normalised with the CIFAR-10 statistics: roughly zero mean
    assert abs(images.mean().item()) < 0.5


def test_a_batch_larger_than_the_training_set_is_a_clear_error(tiny):
    datamodule = SelfSupervisedData(tiny("data.batch_size=256"))
    with pytest.raises(ValueError, match="exceeds the 200 training images"):
        datamodule.setup()
