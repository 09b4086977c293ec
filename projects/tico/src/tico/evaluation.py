"""Offline evaluation of a frozen encoder: weighted kNN, linear probe, and the semi-supervised
accuracy with 1% and 10% of the labels, through shared.metrics."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from shared.device import autocast_dtype
from shared.metrics import knn_accuracy, linear_probe_accuracy
from tico.config import EvalConfig
from tico.data import balanced_subset

log = logging.getLogger(__name__)


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    loader: DataLoader,
    device: torch.device,
    precision: str = "32-true",
    channels_last: bool = False,
    desc: str = "features",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder features (N, dim) in fp32 on the CPU and their labels, in loader order."""
    was_training = backbone.training
    backbone.eval().to(device)
    dtype = autocast_dtype(precision)
    features, labels = [], []
    for batch in tqdm(loader, desc=desc, leave=False, disable=len(loader) < 5):
        if batch is None:
            continue
        images, batch_labels, _ = batch
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            output = backbone(images)
        features.append(output.float().cpu())
        labels.append(batch_labels)
    backbone.train(was_training)
    return torch.cat(features), torch.cat(labels)


def evaluate_features(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    config: EvalConfig,
    seed: int = 0,
) -> dict[str, Any]:
    """kNN (k, T from ``config``) and linear-probe top-1, with all labels and with fractions."""
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1

    def both(features: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        k = min(config.knn_k, len(labels))
        return {
            "knn_acc": knn_accuracy(
                features,
                labels,
                test_features,
                test_labels,
                k=k,
                temperature=config.knn_temperature,
                num_classes=num_classes,
            ),
            "linear_acc": linear_probe_accuracy(
                features,
                labels,
                test_features,
                test_labels,
                num_classes=num_classes,
                weight_decay=config.linear_weight_decay,
                max_iter=config.linear_max_iter,
            ),
        }

    results: dict[str, Any] = both(train_features, train_labels)
    # semi-supervised: only a class-balanced fraction of the training labels is known
    # Limitation: the paper fine-tunes the whole network on the labelled fraction; here the
    # encoder stays frozen (kNN and linear probe on the fraction), which CPUs can afford.
    results["semi_supervised"] = {}
    for fraction in config.label_fractions:
        count = max(round(fraction * len(train_labels)), num_classes)
        index = balanced_subset(train_labels, count, seed=seed)
        scores = both(train_features[index], train_labels[index])
        results["semi_supervised"][f"{fraction:g}"] = {"labels": len(index), **scores}
    log.info(
        "kNN %.4f, linear %.4f (%d train / %d test features of dim %d)",
        results["knn_acc"],
        results["linear_acc"],
        len(train_labels),
        len(test_labels),
        train_features.shape[1],
    )
    return results
