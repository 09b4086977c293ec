import math

import numpy as np
import pytest
import torch
from sklearn.metrics import ndcg_score
from torchmetrics.retrieval import RetrievalNormalizedDCG, RetrievalRecall

from shared.metrics import interaction_matrix, stable_topk, topk_ranking_metrics


def _one_user(relevant: list[int], num_items: int = 6, seen: list[int] = ()):
    """Scores falling with the item index (item 0 ranks first) and the user's matrices."""
    scores = torch.arange(num_items, 0, -1, dtype=torch.float32)[None, :]
    test = interaction_matrix([0] * len(relevant), relevant, 1, num_items)
    train = interaction_matrix([0] * len(seen), list(seen), 1, num_items)
    return scores, train, test


def _random_case(seed: int, num_users: int = 8, num_items: int = 20):
    """Random tie-free scores with disjoint train and test items; user 0 has no test item."""
    rng = np.random.default_rng(seed)
    scores = torch.tensor(rng.permutation(num_users * num_items).reshape(num_users, num_items))
    scores = 1 + scores.float() / (num_users * num_items)  # > 0: torchmetrics ignores <= 0
    draws = rng.random((num_users, num_items))
    train = torch.tensor(draws < 0.25)
    test = torch.tensor((draws > 0.55) & (draws < 0.8))
    test[0] = False
    return scores, train, test


def _torchmetrics_reference(scores, train, test, k: int) -> tuple[float, float]:
    """Recall@K (|R| denominator) and NDCG@K over the unseen items of each user."""
    recall = RetrievalRecall(top_k=k, empty_target_action="skip")
    ndcg = RetrievalNormalizedDCG(top_k=k, empty_target_action="skip")
    for user in range(len(scores)):
        unseen = ~train[user]
        indexes = torch.full((int(unseen.sum()),), user)
        recall.update(scores[user, unseen], test[user, unseen], indexes=indexes)
        ndcg.update(scores[user, unseen], test[user, unseen], indexes=indexes)
    return recall.compute().item(), ndcg.compute().item()


@pytest.mark.parametrize("k", [1, 3, 5])
def test_relevant_denominator_recall_and_ndcg_match_torchmetrics(k):
    scores, train, test = _random_case(seed=0)
    metrics = topk_ranking_metrics(
        scores, train.to_sparse(), test.to_sparse(), ks=(k,), recall_denominator="relevant"
    )
    expected_recall, expected_ndcg = _torchmetrics_reference(scores, train, test, k)
    assert metrics[f"recall@{k}"] == pytest.approx(expected_recall, abs=1e-6)
    assert metrics[f"ndcg@{k}"] == pytest.approx(expected_ndcg, abs=1e-6)


def test_ndcg_matches_sklearn_ndcg_score_per_user():
    scores, train, test = _random_case(seed=1)
    per_user = [
        ndcg_score(
            test[user, ~train[user]][None].numpy(), scores[user, ~train[user]][None].numpy(), k=4
        )
        for user in range(len(scores))
        if test[user].any()
    ]
    metrics = topk_ranking_metrics(scores, train, test, ks=(4,))
    assert metrics["ndcg@4"] == pytest.approx(np.mean(per_user), abs=1e-6)


def test_recall_uses_min_k_relevant_denominator_by_default():
    # relevant {0, 1, 2, 5} and top 2 = items 0, 1: two hits out of min(2, 4) = 2
    scores, train, test = _one_user([0, 1, 2, 5])
    assert topk_ranking_metrics(scores, train, test, ks=(2,))["recall@2"] == 1.0


def test_recall_denominators_differ_when_relevant_items_outnumber_k():
    scores, train, test = _one_user([0, 1, 2, 5])
    by_min = topk_ranking_metrics(scores, train, test, ks=(2, 5), recall_denominator="min")
    by_relevant = topk_ranking_metrics(
        scores, train, test, ks=(2, 5), recall_denominator="relevant"
    )
    # K = 2: 2 hits / min(2, 4) = 1.0 against 2 hits / 4 = 0.5
    assert (by_min["recall@2"], by_relevant["recall@2"]) == (1.0, 0.5)
    # K = 5: top 5 = items 0..4 hold 3 hits; 3 / min(5, 4) = 3 / 4 in both
    assert by_min["recall@5"] == by_relevant["recall@5"] == 0.75
    # NDCG does not depend on the recall denominator
    assert by_min["ndcg@2"] == by_relevant["ndcg@2"] == 1.0


def test_ndcg_by_hand_with_one_hit_at_rank_two():
    # relevant {1, 3}, top 3 = items 0, 1, 2: DCG = 1/log2(3), IDCG = 1 + 1/log2(3)
    scores, train, test = _one_user([1, 3])
    metrics = topk_ranking_metrics(scores, train, test, ks=(3,))
    expected = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert expected == pytest.approx(0.386853, abs=1e-6)
    assert metrics["ndcg@3"] == pytest.approx(expected, abs=1e-6)
    assert metrics["recall@3"] == 0.5


def test_a_seen_item_with_the_top_score_is_masked_and_never_counts():
    # item 0 has the top score and is both a training and a test item; item 3 is relevant
    scores = torch.tensor([[10.0, 1.0, 2.0, 5.0, 0.0]])
    train = interaction_matrix([0], [0], 1, 5)
    test = interaction_matrix([0, 0], [0, 3], 1, 5)
    metrics = topk_ranking_metrics(scores, train, test, ks=(1,))
    # after masking the top item is 3, the only relevant item left: a full hit
    assert metrics["recall@1"] == 1.0
    assert metrics["ndcg@1"] == 1.0
    # without the mask item 0 would fill the top 1 and count as a hit out of two
    unmasked = topk_ranking_metrics(scores, None, test, ks=(1,), recall_denominator="relevant")
    assert unmasked["recall@1"] == 0.5


def test_equal_scores_rank_the_lower_item_index_first():
    scores = torch.zeros(3, 6)
    test = interaction_matrix([0, 1, 2], [1, 4, 2], 3, 6)
    train = interaction_matrix([2], [0], 3, 6)
    metrics = topk_ranking_metrics(scores, train, test, ks=(2,))
    # top 2: items 0, 1 for users 0 and 1 (hit, miss); items 1, 2 for user 2 (item 0 seen: hit)
    assert metrics["recall@2"] == pytest.approx(2 / 3)
    assert metrics["ndcg@2"] == pytest.approx((1 / math.log2(3) + 0 + 1 / math.log2(3)) / 3)


def test_users_without_relevant_test_items_are_skipped_and_counted():
    scores = torch.tensor([[3.0, 2.0, 1.0]] * 4)
    # user 0: hit at rank 1; user 1: no test item; user 2: its test item is a training item;
    # user 3: miss at K = 1
    test = interaction_matrix([0, 2, 3], [0, 1, 2], 4, 3)
    train = interaction_matrix([2], [1], 4, 3)
    metrics = topk_ranking_metrics(scores, train, test, ks=(1,))
    assert metrics["users_evaluated"] == 2
    assert metrics["users_skipped"] == 2
    assert metrics["recall@1"] == 0.5


def test_score_function_dense_and_sparse_inputs_and_batch_sizes_agree():
    scores, train, test = _random_case(seed=2, num_users=11)
    reference = topk_ranking_metrics(scores, train, test, ks=(3, 7))
    calls = []

    def score_users(users: torch.Tensor) -> torch.Tensor:
        calls.append(users.tolist())
        return scores[users]

    from_function = topk_ranking_metrics(
        score_users, train.to_sparse(), test.to_sparse(), ks=(7, 3), batch_size=4
    )
    assert from_function == pytest.approx(reference)
    # user 0 has no test item, so it is never scored
    assert calls == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    assert list(reference) == [
        "recall@3",
        "ndcg@3",
        "recall@7",
        "ndcg@7",
        "users_evaluated",
        "users_skipped",
    ]


def test_interaction_matrix_collapses_repeated_pairs_and_checks_ids():
    matrix = interaction_matrix(np.array([0, 0, 1]), np.array([2, 2, 0]), 2, 3)
    assert matrix.to_dense().tolist() == [[False, False, True], [True, False, False]]
    assert matrix._nnz() == 2
    with pytest.raises(ValueError, match=r"item ids must lie in \[0, num_items=3\)"):
        interaction_matrix([0], [3], 2, 3)


def test_stable_topk_equals_a_stable_descending_sort_on_heavy_ties():
    rng = np.random.default_rng(3)
    values = torch.tensor(rng.integers(0, 4, size=(50, 30))).float()
    values[:5, 10:] = float("-inf")
    top_values, top_indices = stable_topk(values, 12)
    expected_values, expected_indices = values.sort(dim=1, descending=True, stable=True)
    assert torch.equal(top_indices, expected_indices[:, :12])
    assert torch.equal(top_values, expected_values[:, :12])


def test_ranking_rejects_empty_and_inconsistent_input():
    with pytest.raises(ValueError, match="test_items is empty"):
        topk_ranking_metrics(torch.zeros(0, 5), None, torch.zeros(0, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="no user has a test item"):
        topk_ranking_metrics(torch.zeros(2, 5), None, torch.zeros(2, 5, dtype=torch.bool), ks=(1,))
    scores, train, test = _one_user([1])
    with pytest.raises(ValueError, match="exceeds the number of items"):
        topk_ranking_metrics(scores, train, test, ks=(10,))
    with pytest.raises(ValueError, match="no user has a relevant test item outside"):
        topk_ranking_metrics(scores, test, test, ks=(1,))
    with pytest.raises(ValueError, match="NaN"):
        topk_ranking_metrics(torch.full((1, 6), float("nan")), train, test, ks=(1,))
    with pytest.raises(ValueError, match="recall_denominator must be"):
        topk_ranking_metrics(scores, train, test, ks=(1,), recall_denominator="k")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_scores_on_cuda_with_interactions_on_cpu_give_the_cpu_numbers():
    scores, train, test = _random_case(seed=4, num_users=30)
    expected = topk_ranking_metrics(scores, train.to_sparse(), test.to_sparse(), ks=(2, 5))
    on_cuda = topk_ranking_metrics(
        scores.cuda(), train.to_sparse(), test.to_sparse(), ks=(2, 5), batch_size=7
    )
    assert on_cuda == pytest.approx(expected, abs=1e-12)
    all_cuda = topk_ranking_metrics(scores.cuda(), train.cuda(), test.cuda(), ks=(2, 5))
    assert all_cuda == pytest.approx(expected, abs=1e-12)
