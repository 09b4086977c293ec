"""Click-through-rate metrics: AUC, log loss and the per-user GAUC of DIN.

Inputs are 1-D arrays (NumPy, lists or torch tensors on any device); labels are 0/1.

Example::

    auc(clicks, scores), log_loss(clicks, probabilities)
    gauc(clicks, scores, user_ids)["gauc"]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

log = logging.getLogger(__name__)

ArrayLike = torch.Tensor | np.ndarray | Sequence[float]


def _as_vector(values: ArrayLike, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    vector = np.asarray(values)
    if vector.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {vector.shape}")
    if vector.size == 0:
        raise ValueError(f"{name} is empty: pass at least one impression")
    return vector


def _as_labels(labels: ArrayLike) -> np.ndarray:
    labels = _as_vector(labels, "labels")
    if not np.isin(labels, (0, 1)).all():
        bad = labels[~np.isin(labels, (0, 1))][:3]
        raise ValueError(f"labels must be 0 or 1 (click / no click), got values such as {bad}")
    return labels.astype(np.float64)


def _as_scores(scores: ArrayLike, name: str, length: int) -> np.ndarray:
    scores = _as_vector(scores, name).astype(np.float64)
    if len(scores) != length:
        raise ValueError(f"{name} and labels differ in length: {len(scores)} != {length}")
    if np.isnan(scores).any():
        raise ValueError(f"{name} hold NaN; check the model's output")
    return scores


def auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve: P(score of a random click > score of a random non-click).

    Ties count one half (the Mann-Whitney U statistic over n_pos · n_neg pairs). Computed
    by scikit-learn's ``roc_auc_score``.
    """
    labels = _as_labels(labels)
    scores = _as_scores(scores, "scores", len(labels))
    if labels.min() == labels.max():
        raise ValueError(
            f"AUC is undefined with one class: all {len(labels)} labels are "
            f"{int(labels[0])}; evaluate on data with both clicks and non-clicks"
        )
    # scikit-learn takes seconds to import, so only callers of auc() pay for it
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def log_loss(
    labels: ArrayLike,
    probabilities: ArrayLike,
    eps: float = 1e-7,  # probabilities are clipped to [eps, 1 - eps] so log(0) never occurs
) -> float:
    """Mean binary cross-entropy -(1/N) Σ_n [y_n log p_n + (1 - y_n) log(1 - p_n)]."""
    labels = _as_labels(labels)
    probabilities = _as_scores(probabilities, "probabilities", len(labels))
    if probabilities.min() < 0 or probabilities.max() > 1:
        raise ValueError(
            f"probabilities must lie in [0, 1], got [{probabilities.min()}, "
            f"{probabilities.max()}]; apply a sigmoid to logits first"
        )
    if not 0 < eps < 0.5:
        raise ValueError(f"eps must lie in (0, 0.5), got {eps}")

    probabilities = np.clip(probabilities, eps, 1 - eps)
    losses = labels * np.log(probabilities) + (1 - labels) * np.log1p(-probabilities)
    return float(-losses.mean())


def gauc(labels: ArrayLike, scores: ArrayLike, groups: ArrayLike) -> dict[str, float]:
    """Group AUC: the per-user AUC averaged with each user's number of impressions as weight.

    Zhou et al. 2018 (DIN), metrics of the experiments: GAUC = Σ_u w_u AUC_u / Σ_u w_u with
    w_u the impressions of user u. Users whose impressions are all clicks or all non-clicks
    have no AUC; they are left out of both sums and counted in ``groups_skipped``.

    Each AUC_u is the Mann-Whitney statistic (R_u - n⁺(n⁺ + 1)/2) / (n⁺ n⁻), with R_u the
    rank sum of the clicks among the user's scores and tied scores given their average rank,
    all computed at once by one sort over (user, score): no loop over users.
    Returns ``{"gauc", "groups_evaluated", "groups_skipped"}``.
    """
    labels = _as_labels(labels)
    scores = _as_scores(scores, "scores", len(labels))
    groups = _as_vector(groups, "groups")
    if len(groups) != len(labels):
        raise ValueError(f"groups and labels differ in length: {len(groups)} != {len(labels)}")

    # sort impressions by (user, score)
    _, group_ids = np.unique(groups, return_inverse=True)
    group_ids = group_ids.ravel()
    order = np.lexsort((scores, group_ids))
    group_ids, scores, labels = group_ids[order], scores[order], labels[order]
    num_groups = int(group_ids.max()) + 1
    impressions = np.bincount(group_ids, minlength=num_groups)

    # 1-based rank of each impression within its user
    group_starts = np.concatenate([[0], np.cumsum(impressions)[:-1]])
    ranks = np.arange(len(scores)) - group_starts[group_ids] + 1.0

    # tied scores of one user share the average rank of their run
    run_starts = np.ones(len(scores), dtype=bool)
    run_starts[1:] = (group_ids[1:] != group_ids[:-1]) | (scores[1:] != scores[:-1])
    run_ids = np.cumsum(run_starts) - 1
    run_lengths = np.bincount(run_ids)
    first_rank_of_run = ranks[run_starts]
    average_ranks = (first_rank_of_run + (run_lengths - 1) / 2.0)[run_ids]

    # per-user Mann-Whitney AUC from the rank sum of the clicks
    positives = np.bincount(group_ids, weights=labels, minlength=num_groups)
    negatives = impressions - positives
    rank_sums = np.bincount(group_ids, weights=average_ranks * labels, minlength=num_groups)
    has_both = (positives > 0) & (negatives > 0)
    if not has_both.any():
        raise ValueError(
            f"GAUC is undefined: none of the {num_groups} groups has both a click and a "
            "non-click, so no per-group AUC exists"
        )
    pairs = positives[has_both] * negatives[has_both]
    group_auc = (rank_sums[has_both] - positives[has_both] * (positives[has_both] + 1) / 2) / pairs

    # impression-weighted mean over the users that have an AUC
    weights = impressions[has_both]
    groups_skipped = int(num_groups - has_both.sum())
    log.debug("GAUC over %d groups, %d skipped (one class)", int(has_both.sum()), groups_skipped)
    return {
        "gauc": float((weights * group_auc).sum() / weights.sum()),
        "groups_evaluated": int(has_both.sum()),
        "groups_skipped": groups_skipped,
    }
