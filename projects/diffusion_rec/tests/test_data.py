"""Interaction matrices, T-DiffRec weights, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffusion_rec.data import dense_rows, from_splits, temporal_weights
from shared.data.locations import CorruptDataError
from shared.data.movielens import InteractionSplits


def _splits(train, valid, test, users=3, items=4) -> InteractionSplits:
    def pairs(rows):
        return torch.tensor(rows, dtype=torch.long).reshape(-1, 2)

    return InteractionSplits(pairs(train), pairs(valid), pairs(test), users, items, name="toy")


def test_temporal_weights_rise_linearly_from_w_min_to_w_max_per_user():
    users = np.array([0, 0, 1, 0, 1, 2])  # interleaved, chronological within each user
    weights = temporal_weights(users, 0.1, 1.0)
    np.testing.assert_allclose(weights, [0.1, 0.55, 0.1, 1.0, 1.0, 0.1])


def test_temporal_weights_match_numpy_linspace_for_one_user():
    np.testing.assert_allclose(
        temporal_weights(np.zeros(7, dtype=int), 0.5, 1.0), np.linspace(0.5, 1.0, 7)
    )


def test_temporal_weights_reject_an_inverted_range():
    with pytest.raises(ValueError, match="w_min <= w_max"):
        temporal_weights(np.zeros(3, dtype=int), 1.0, 0.5)


def test_t_diffrec_input_carries_the_weights_while_masks_stay_binary():
    data = from_splits(
        _splits([[0, 0], [0, 1], [1, 2]], [[0, 2]], [[0, 3], [1, 0]]), temporal=(0.2, 1.0)
    )
    rows = dense_rows(data.train_input, torch.tensor([0, 1]))
    torch.testing.assert_close(rows, torch.tensor([[0.2, 1.0, 0, 0], [0, 0, 0.2, 0]]))
    assert data.train.to_dense().sum() == 3
    assert data.train_and_valid.to_dense()[0].tolist() == [True, True, True, False]


def test_a_test_pair_that_is_also_a_training_pair_is_rejected():
    with pytest.raises(CorruptDataError, match="also training pairs"):
        from_splits(_splits([[0, 0], [1, 1]], [[0, 2]], [[0, 0]]))


def test_an_empty_test_split_is_rejected():
    with pytest.raises(ValueError, match="empty test split"):
        from_splits(_splits([[0, 0]], [[0, 1]], []))


def test_item_ids_outside_the_declared_range_are_rejected():
    with pytest.raises(ValueError, match="item ids must lie in"):
        from_splits(_splits([[0, 0], [1, 7]], [[0, 1]], [[0, 2]]))


def test_users_without_training_items_are_counted_in_the_log(caplog):
    with caplog.at_level("WARNING"):
        data = from_splits(_splits([[0, 0]], [[0, 1]], [[2, 2]]))
    assert "2 of 3 users have no training items" in caplog.text
    assert dense_rows(data.train_input, torch.tensor([2])).sum() == 0


def test_real_ml1m_slice_has_disjoint_splits(small_ml1m):
    assert small_ml1m.n_items == 2810
    assert (small_ml1m.train.float() * small_ml1m.test.float()).coalesce()._nnz() == 0
    assert small_ml1m.item_emb.shape == (2810, 64)
