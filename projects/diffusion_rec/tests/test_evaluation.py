"""Full-ranking evaluation: seen items are masked, both Recall definitions are exact."""

from __future__ import annotations

import math

import pytest
import torch

from diffusion_rec.data import RecData
from diffusion_rec.evaluation import RankingAccumulator, evaluate
from shared.metrics import interaction_matrix


def _data(train, valid, test, users=2, items=5) -> RecData:
    def matrix(pairs):
        pairs = torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)
        return interaction_matrix(pairs[:, 0], pairs[:, 1], users, items)

    return RecData(
        "toy", users, items, matrix(train), matrix(valid), matrix(test), torch.tensor(train)
    )


def test_recall_divides_by_min_k_relevant_or_by_all_relevant():
    # one user, 4 relevant items, top-2 holds one of them
    scores = torch.tensor([[0.9, 0.8, 0.1, 0.2, 0.3, 0.0]])
    seen = torch.zeros(1, 6, dtype=torch.bool)
    relevant = torch.tensor([[True, False, True, True, True, False]])
    accumulator = RankingAccumulator(ks=(2,))
    accumulator.add(scores, seen, relevant)
    result = accumulator.result()
    assert result["recall@2"] == pytest.approx(1 / 2)  # min(K=2, |R|=4)
    assert result["recall_rel@2"] == pytest.approx(1 / 4)  # |R|
    assert result["ndcg@2"] == pytest.approx(1.0 / (1.0 + 1 / math.log2(3)))


def test_training_items_are_never_recommended_even_with_the_highest_scores():
    data = _data(train=[[0, 0], [0, 1]], valid=[[0, 2]], test=[[0, 3], [1, 4]])
    data.train_pairs = torch.tensor([[0, 0], [0, 1], [1, 0]])

    def scores(users):
        # items 0 and 1 (seen by user 0) score highest, then 2 (valid), then 3, then 4
        return torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0]]).expand(len(users), -1)

    metrics = evaluate(scores, data, ("valid", "test"), ks=(1, 2))
    # valid: user 0 masks 0, 1 -> top-1 is item 2 (a hit)
    assert metrics["valid"]["users"] == 1
    # test: user 0 masks train + valid (0, 1, 2) -> item 3 first; user 1 masks nothing
    accumulator = RankingAccumulator(ks=(1,))
    accumulator.add(
        scores(torch.arange(2)),
        torch.tensor([[True, True, True, False, False], [False] * 5]),
        torch.tensor([[False, False, False, True, False], [False, False, False, False, True]]),
    )
    hit_user0, hit_user1 = 1.0, 0.0
    assert accumulator.result()["recall@1"] == pytest.approx((hit_user0 + hit_user1) / 2)
    assert metrics["test"]["users"] == 2


def test_users_without_a_held_out_item_are_left_out_of_the_means():
    data = _data(train=[[0, 0], [1, 1]], valid=[[0, 2]], test=[[0, 3]])

    def scores(users):
        return torch.tensor([[0.0, 0.0, 1.0, 2.0, 0.0]]).expand(len(users), -1)

    metrics = evaluate(scores, data, ("test",), ks=(1, 2))
    assert metrics["test"]["users"] == 1
    assert metrics["test"]["recall@1"] == pytest.approx(1.0)


def test_an_empty_ranking_is_an_error_not_a_zero():
    accumulator = RankingAccumulator()
    with pytest.raises(ValueError, match="no user has a relevant"):
        accumulator.result()
