import math

import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss as sklearn_log_loss
from sklearn.metrics import roc_auc_score

from shared.metrics import auc, gauc, log_loss


def test_auc_matches_sklearn_with_tied_scores():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.random(200) + 0.3 * labels, 1)  # rounding creates many ties
    assert auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert auc(torch.tensor(labels), torch.tensor(scores)) == pytest.approx(
        roc_auc_score(labels, scores), abs=1e-12
    )


def test_auc_by_hand_counts_a_tie_as_one_half():
    # clicks scored 0.8 and 0.9, non-clicks 0.8 and 0.1: pairs 0.5 + 1 + 1 + 1 over 4
    assert auc([1, 0, 1, 0], [0.8, 0.8, 0.9, 0.1]) == 0.875


def test_auc_with_a_single_class_says_it_is_undefined():
    with pytest.raises(ValueError, match="AUC is undefined with one class: all 3 labels are 1"):
        auc([1, 1, 1], [0.2, 0.5, 0.9])


def test_ctr_metrics_reject_empty_input_and_non_binary_labels():
    with pytest.raises(ValueError, match="labels is empty"):
        auc([], [])
    with pytest.raises(ValueError, match="labels is empty"):
        log_loss(np.array([]), np.array([]))
    with pytest.raises(ValueError, match="labels is empty"):
        gauc([], [], [])
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="differ in length"):
        auc([0, 1], [0.1])


def test_log_loss_matches_sklearn():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 100)
    probabilities = rng.uniform(0.01, 0.99, 100)
    assert log_loss(labels, probabilities) == pytest.approx(
        sklearn_log_loss(labels, probabilities), abs=1e-12
    )


def test_log_loss_clips_certain_wrong_predictions_to_eps():
    # -(log(1e-7) + log(1 - 0.5)) / 2 = (16.118096 + 0.693147) / 2
    expected = (-math.log(1e-7) + math.log(2)) / 2
    assert log_loss([1, 0], [0.0, 0.5], eps=1e-7) == pytest.approx(expected, abs=1e-9)
    assert expected == pytest.approx(8.405621, abs=1e-6)


def test_log_loss_rejects_probabilities_outside_zero_one():
    with pytest.raises(ValueError, match="apply a sigmoid to logits first"):
        log_loss([1, 0], [1.5, -0.2])


def test_gauc_by_hand_weights_users_by_impressions_and_skips_one_class_users():
    labels = [1, 0, 1, 0, 0, 1, 1, 1, 1]
    scores = [0.8, 0.8, 0.9, 0.1, 0.3, 0.2, 0.5, 0.4, 0.7]
    users = ["a", "a", "a", "a", "b", "b", "c", "c", "c"]
    # user a: AUC 0.875 over 4 impressions; user b: AUC 0 over 2; user c: only clicks, skipped
    result = gauc(labels, scores, users)
    assert result["gauc"] == pytest.approx((4 * 0.875 + 2 * 0.0) / 6)
    assert result["groups_evaluated"] == 2
    assert result["groups_skipped"] == 1


def test_gauc_matches_an_impression_weighted_mean_of_sklearn_per_user_auc():
    rng = np.random.default_rng(2)
    users = rng.integers(0, 40, 2000)
    labels = rng.integers(0, 2, 2000)
    labels[users == 0] = 1  # one user with clicks only
    scores = np.round(rng.random(2000) + 0.2 * labels, 2)
    total, weights, skipped = 0.0, 0, 0
    for user in np.unique(users):
        rows = users == user
        if labels[rows].min() == labels[rows].max():
            skipped += 1
            continue
        total += rows.sum() * roc_auc_score(labels[rows], scores[rows])
        weights += rows.sum()
    result = gauc(torch.tensor(labels), torch.tensor(scores), torch.tensor(users))
    assert result["gauc"] == pytest.approx(total / weights, abs=1e-12)
    assert result["groups_skipped"] == skipped == 1
    assert result["groups_evaluated"] + skipped == 40


def test_gauc_with_only_one_class_groups_is_undefined():
    with pytest.raises(ValueError, match="none of the 2 groups has both a click and a non-click"):
        gauc([1, 1, 0], [0.1, 0.2, 0.3], [0, 0, 1])
