"""Classification metrics and the two frozen-feature evaluations of self-supervised learning.

- :func:`accuracy`: top-k accuracy from logits or class predictions.
- :func:`knn_accuracy`: the weighted k-nearest-neighbour classifier of Wu et al. 2018
  (InstDisc, Sec. 3.4), as DINO (Caron et al. 2021) runs it on frozen features.
- :func:`fit_linear_probe` / :func:`linear_probe_accuracy`: a multinomial logistic
  regression on standardised frozen features, fitted with full-batch L-BFGS.

Ties are broken towards the lower index everywhere (class index for predictions,
training-sample index for neighbours), so results are deterministic given the inputs.

Example::

    top1 = knn_accuracy(train_feats, train_labels, test_feats, test_labels, k=20)
    probe = fit_linear_probe(train_feats, train_labels, weight_decay=1e-4)
    top1_linear = accuracy(probe.logits(test_feats), test_labels)
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from shared.metrics.ranking import stable_topk

log = logging.getLogger(__name__)

ArrayLike = torch.Tensor | np.ndarray | list


def _as_tensor(values: ArrayLike, name: str, device: torch.device | None = None) -> torch.Tensor:
    tensor = values if isinstance(values, torch.Tensor) else torch.as_tensor(np.asarray(values))
    if tensor.numel() == 0:
        raise ValueError(f"{name} is empty: pass at least one sample")
    return tensor.to(device) if device is not None else tensor


def _as_labels(values: ArrayLike, name: str, device: torch.device | None = None) -> torch.Tensor:
    labels = _as_tensor(values, name, device)
    if labels.dim() != 1:
        raise ValueError(
            f"{name} must be a 1-D vector of class indices, got shape {tuple(labels.shape)}"
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer class indices, got dtype {labels.dtype}")
    if int(labels.min()) < 0:
        raise ValueError(f"{name} must be class indices >= 0, got {int(labels.min())}")
    return labels.long()


def _as_features(values: ArrayLike, name: str, device: torch.device | None = None) -> torch.Tensor:
    features = _as_tensor(values, name, device)
    if features.dim() != 2:
        raise ValueError(
            f"{name} must be a (samples, dim) matrix, got shape {tuple(features.shape)}"
        )
    if features.dtype != torch.float64:
        features = features.float()  # half precision and integers are computed in float32
    if not torch.isfinite(features).all():
        raise ValueError(f"{name} holds NaN or infinite values; check the feature extractor")
    return features


def _check_same_length(features: torch.Tensor, labels: torch.Tensor, split: str) -> None:
    if len(features) != len(labels):
        raise ValueError(
            f"{split} features and labels differ in length: {len(features)} != {len(labels)}"
        )


def _infer_num_classes(num_classes: int | None, *label_sets: torch.Tensor) -> int:
    largest = max(int(labels.max()) for labels in label_sets)
    if num_classes is None:
        return largest + 1
    if largest >= num_classes:
        raise ValueError(
            f"label {largest} does not fit num_classes={num_classes}; "
            f"pass num_classes >= {largest + 1} or None to infer it"
        )
    return num_classes


def accuracy(logits_or_predictions: ArrayLike, targets: ArrayLike, top_k: int = 1) -> float:
    """Fraction of samples whose target is among the ``top_k`` predicted classes.

    acc@k = (1/N) Σ_n 1[y_n ∈ top-k(z_n)]. With (N, classes) logits the top k classes are
    ranked by score, ties going to the lower class index; with (N,) class predictions
    ``top_k`` must be 1.
    """
    outputs = _as_tensor(logits_or_predictions, "logits_or_predictions")
    targets = _as_labels(targets, "targets", device=outputs.device)
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if len(outputs) != len(targets):
        raise ValueError(
            f"predictions and targets differ in length: {len(outputs)} != {len(targets)}"
        )

    # class predictions: a sample is right when the predicted class is the target
    if outputs.dim() == 1:
        if top_k != 1:
            raise ValueError(
                f"top_k={top_k} needs (samples, classes) logits, got 1-D class predictions"
            )
        return (outputs.long() == targets).float().mean().item()
    if outputs.dim() != 2:
        raise ValueError(
            f"logits_or_predictions must be (samples,) or (samples, classes), "
            f"got shape {tuple(outputs.shape)}"
        )

    # logits: a sample is right when the target is among its k best-scored classes
    num_classes = outputs.shape[1]
    if top_k > num_classes:
        raise ValueError(f"top_k={top_k} exceeds the number of classes ({num_classes})")
    if int(targets.max()) >= num_classes:
        raise ValueError(
            f"target {int(targets.max())} is out of range for logits with {num_classes} classes"
        )
    _, top_classes = stable_topk(outputs.float(), top_k)  # (N, top_k)
    hits = (top_classes == targets[:, None]).any(dim=1)
    return hits.float().mean().item()


def knn_accuracy(
    train_features: ArrayLike,
    train_labels: ArrayLike,
    test_features: ArrayLike,
    test_labels: ArrayLike,
    k: int = 200,  # neighbours, as InstDisc (Wu et al. 2018); DINO also reports k=20
    temperature: float = 0.1,  # τ in the vote weight exp(s/τ); InstDisc and DINO use 0.07
    num_classes: int | None = None,
    batch_size: int = 256,  # test samples compared with the whole train set at once
) -> float:
    """Top-1 accuracy of the weighted k-nearest-neighbour classifier on frozen features.

    Wu et al. 2018 (InstDisc), Sec. 3.4: with L2-normalised features, the k training
    samples of highest cosine similarity s_i vote for their class with weight exp(s_i / τ),
    and the class with the largest total weight w_c = Σ_{i ∈ top-k} 1[y_i = c] exp(s_i / τ)
    is the prediction.

    Ties are deterministic: among equally similar neighbours at the k-th place the lower
    training index is kept, and among classes with equal total weight the lower class index
    wins. A ``k`` larger than the training set is clipped to its size with a warning (every
    training sample then votes). The computation runs on the device of ``train_features``.
    ``num_classes`` defaults to the largest label + 1.
    """
    train_features = _as_features(train_features, "train_features")
    device = train_features.device
    train_labels = _as_labels(train_labels, "train_labels", device)
    test_features = _as_features(test_features, "test_features", device).to(train_features.dtype)
    test_labels = _as_labels(test_labels, "test_labels", device)
    _check_same_length(train_features, train_labels, "train")
    _check_same_length(test_features, test_labels, "test")
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(
            f"train and test features differ in dimension: "
            f"{train_features.shape[1]} != {test_features.shape[1]}"
        )
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    num_classes = _infer_num_classes(num_classes, train_labels, test_labels)
    if k > len(train_features):
        log.warning(
            "k=%d exceeds the %d training samples; using k=%d",
            k,
            len(train_features),
            len(train_features),
        )
        k = len(train_features)

    # cosine similarity is the dot product of L2-normalised features
    train_features = F.normalize(train_features, dim=1)  # (n_train, dim)
    correct = 0
    for start in range(0, len(test_features), batch_size):
        queries = F.normalize(test_features[start : start + batch_size], dim=1)  # (B, dim)
        similarity = queries @ train_features.T  # (B, n_train)

        # the k most similar training samples, ties to the lower training index
        neighbour_similarity, neighbours = stable_topk(similarity, k)  # (B, k)
        neighbour_labels = train_labels[neighbours]  # (B, k)

        # class votes weighted by exp(s / τ); subtracting the row maximum rescales every
        # weight of a row by the same factor, which keeps the argmax and avoids overflow
        weights = ((neighbour_similarity - neighbour_similarity[:, :1]) / temperature).exp()
        votes = weights.new_zeros(len(queries), num_classes)
        votes.scatter_add_(1, neighbour_labels, weights)  # (B, classes)
        predictions = votes.argmax(dim=1)  # first maximum: ties to the lower class index
        correct += int((predictions == test_labels[start : start + batch_size]).sum())

    return correct / len(test_features)


@dataclass
class LinearProbe:
    """A multinomial logistic regression on features standardised with train statistics."""

    mean: torch.Tensor  # (dim,) per-feature mean of the training features
    std: torch.Tensor  # (dim,) per-feature std of the training features, 1 where constant
    weight: torch.Tensor  # (classes, dim)
    bias: torch.Tensor  # (classes,)
    iterations: int  # L-BFGS iterations run
    loss: float  # final objective: mean cross-entropy + (λ/2)·||W||²

    def logits(self, features: ArrayLike) -> torch.Tensor:
        """Class scores z = W ((x - μ) / σ) + b, shape (samples, classes)."""
        features = _as_features(features, "features", self.weight.device).to(self.weight.dtype)
        return ((features - self.mean) / self.std) @ self.weight.T + self.bias

    def predict(self, features: ArrayLike) -> torch.Tensor:
        """Predicted class per sample, ties to the lower class index."""
        return self.logits(features).argmax(dim=1)


def fit_linear_probe(
    train_features: ArrayLike,
    train_labels: ArrayLike,
    num_classes: int | None = None,
    weight_decay: float = 1e-4,  # λ; CLIP (Radford et al. 2021, App. A.3) sweeps it on val
    max_iter: int = 1000,  # L-BFGS iterations, as CLIP's logistic-regression probes
    chunk_size: int = 65536,  # samples per forward/backward inside one full-batch step
) -> LinearProbe:
    """Fit a multinomial logistic regression on frozen, standardised features.

    Minimises (1/N) Σ_n CE(W x̂_n + b, y_n) + (λ/2)·||W||²_F over W and b (the bias is not
    penalised), with x̂ = (x - μ) / σ standardised by the training mean and std. This is
    scikit-learn's ``LogisticRegression(C=1 / (λ N))`` on standardised features. Full-batch
    L-BFGS with a strong-Wolfe line search starts from zero weights, so the fit is
    deterministic; the gradient is accumulated over chunks of ``chunk_size`` samples to
    bound memory on large inputs. Runs on the device of ``train_features``.
    """
    features = _as_features(train_features, "train_features")
    device = features.device
    labels = _as_labels(train_labels, "train_labels", device)
    _check_same_length(features, labels, "train")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    num_classes = _infer_num_classes(num_classes, labels)
    num_samples, dim = features.shape

    # standardisation with train statistics; constant features are only centred
    mean = features.mean(dim=0)
    std = features.std(dim=0, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))

    # the regularised cross-entropy, accumulated chunk by chunk into one full-batch gradient
    weight = features.new_zeros(num_classes, dim, requires_grad=True)
    bias = features.new_zeros(num_classes, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iter,
        history_size=10,
        tolerance_grad=1e-7,
        tolerance_change=1e-10,
        line_search_fn="strong_wolfe",
    )

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        total = features.new_zeros(())
        for start in range(0, num_samples, chunk_size):
            standardised = (features[start : start + chunk_size] - mean) / std
            logits = standardised @ weight.T + bias
            chunk_loss = (
                F.cross_entropy(logits, labels[start : start + chunk_size], reduction="sum")
                / num_samples
            )
            chunk_loss.backward()
            total += chunk_loss.detach()
        penalty = 0.5 * weight_decay * weight.pow(2).sum()
        penalty.backward()
        return total + penalty.detach()

    with torch.enable_grad():
        optimizer.step(objective)
        final_loss = float(objective())
    iterations = int(optimizer.state[weight].get("n_iter", 0))
    if not math.isfinite(final_loss):
        raise ValueError(
            "the linear probe diverged (non-finite loss); check the features for extreme values"
        )
    log.info(
        "linear probe: %d samples x %d features, %d classes on %s; %d L-BFGS iterations, loss %.4f",
        num_samples,
        dim,
        num_classes,
        device,
        iterations,
        final_loss,
    )
    return LinearProbe(
        mean=mean,
        std=std,
        weight=weight.detach(),
        bias=bias.detach(),
        iterations=iterations,
        loss=final_loss,
    )


def linear_probe_accuracy(
    train_features: ArrayLike,
    train_labels: ArrayLike,
    test_features: ArrayLike,
    test_labels: ArrayLike,
    num_classes: int | None = None,
    weight_decay: float = 1e-4,
    max_iter: int = 1000,
    chunk_size: int = 65536,
) -> float:
    """Top-1 test accuracy of :func:`fit_linear_probe` fitted on the training features.

    ``num_classes`` defaults to the largest train or test label + 1. Fit the probe with
    :func:`fit_linear_probe` directly to keep the classifier.
    """
    train_labels = _as_labels(train_labels, "train_labels")
    test_labels = _as_labels(test_labels, "test_labels")
    num_classes = _infer_num_classes(num_classes, train_labels, test_labels)
    probe = fit_linear_probe(
        train_features, train_labels, num_classes, weight_decay, max_iter, chunk_size
    )
    test_features = _as_features(test_features, "test_features", probe.weight.device)
    _check_same_length(test_features, test_labels, "test")
    if test_features.shape[1] != probe.weight.shape[1]:
        raise ValueError(
            f"train and test features differ in dimension: "
            f"{probe.weight.shape[1]} != {test_features.shape[1]}"
        )
    return accuracy(probe.logits(test_features), test_labels.to(probe.weight.device))
