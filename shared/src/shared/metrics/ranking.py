"""Full-ranking top-K metrics for recommendation: Recall@K and NDCG@K over all items.

Every user is scored against every item; the items the user interacted with in training
are masked to -inf so they are never recommended, and the top K of the rest are compared
with the user's held-out test items. Users are processed in batches, on the device the
scores live on.

Interactions are given as a (users, items) matrix, either a torch sparse COO tensor or a
dense tensor, whose nonzero entries are interactions; :func:`interaction_matrix` builds
the sparse one from (user, item) pairs.

Example::

    train = interaction_matrix(train_users, train_items, num_users, num_items)
    test = interaction_matrix(test_users, test_items, num_users, num_items)
    metrics = topk_ranking_metrics(model_scores, train, test, ks=(10, 20))
    metrics["recall@20"], metrics["ndcg@20"], metrics["users_evaluated"]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch

log = logging.getLogger(__name__)

RecallDenominator = Literal["min", "relevant"]
ScoreFunction = Callable[[torch.Tensor], torch.Tensor]


def stable_topk(values: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest entries along the last dimension, equal values ordered by lower index.

    Same result as a stable descending sort cut at k, but only the candidates that can
    reach the top k (everything >= the k-th largest value) are sorted.
    """
    # everything at least as large as the k-th value can enter the top k
    candidate_values, candidate_indices = values.topk(k, dim=-1)
    kth_value = candidate_values[..., -1:]
    width = int((values >= kth_value).sum(dim=-1).max())
    if width > k:  # ties straddle the cut: widen it to every value tied with the k-th
        candidate_values, candidate_indices = values.topk(width, dim=-1)

    # order the candidates by index, then stably by value, so ties keep index order
    by_index = candidate_indices.argsort(dim=-1)
    candidate_values = candidate_values.gather(-1, by_index)
    candidate_indices = candidate_indices.gather(-1, by_index)
    by_value = candidate_values.argsort(dim=-1, descending=True, stable=True)[..., :k]
    return candidate_values.gather(-1, by_value), candidate_indices.gather(-1, by_value)


def _as_ids(ids: torch.Tensor | np.ndarray | Sequence[int]) -> torch.Tensor:
    """A flat long tensor on the CPU from a tensor, an array or a list of ids."""
    if not isinstance(ids, torch.Tensor):
        ids = torch.as_tensor(np.asarray(ids))
    return ids.long().flatten().cpu()


def interaction_matrix(
    users: torch.Tensor | np.ndarray | Sequence[int],
    items: torch.Tensor | np.ndarray | Sequence[int],
    num_users: int,
    num_items: int,
) -> torch.Tensor:
    """A (num_users, num_items) sparse COO bool matrix, True at each (user, item) pair.

    Repeated pairs collapse into one interaction. The matrix is built on the CPU; the
    metrics move each batch of rows to the device of the scores.
    """
    users, items = _as_ids(users), _as_ids(items)
    if len(users) != len(items):
        raise ValueError(f"users and items differ in length: {len(users)} != {len(items)}")
    if len(users) and (int(users.min()) < 0 or int(users.max()) >= num_users):
        raise ValueError(
            f"user ids must lie in [0, num_users={num_users}), "
            f"got [{int(users.min())}, {int(users.max())}]"
        )
    if len(items) and (int(items.min()) < 0 or int(items.max()) >= num_items):
        raise ValueError(
            f"item ids must lie in [0, num_items={num_items}), "
            f"got [{int(items.min())}, {int(items.max())}]"
        )
    return torch.sparse_coo_tensor(
        torch.stack([users, items]),
        torch.ones(len(users), dtype=torch.bool),
        (num_users, num_items),
        check_invariants=True,
    ).coalesce()


def _row_pointers(matrix: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(row_ptr, item indices) of a sparse or dense interaction matrix, CSR style."""
    if not isinstance(matrix, torch.Tensor):
        matrix = torch.as_tensor(np.asarray(matrix))
    if matrix.dim() != 2:
        raise ValueError(f"{name} must be a (users, items) matrix, got shape {tuple(matrix.shape)}")
    if matrix.layout == torch.sparse_coo:
        matrix = matrix.coalesce()
        rows, cols = matrix.indices()
        nonzero = matrix.values() != 0
        rows, cols = rows[nonzero], cols[nonzero]
    elif matrix.layout == torch.strided:
        rows, cols = matrix.nonzero(as_tuple=True)
    else:
        raise ValueError(
            f"{name} must be a dense or sparse COO tensor, got layout {matrix.layout}; "
            "convert it with .to_sparse_coo() or use interaction_matrix()"
        )
    boundaries = torch.arange(matrix.shape[0] + 1, device=rows.device)
    return torch.searchsorted(rows, boundaries), cols


def _dense_rows(
    row_ptr: torch.Tensor,
    cols: torch.Tensor,
    users: torch.Tensor,
    num_items: int,
    device: torch.device,
) -> torch.Tensor:
    """The rows ``users`` of a CSR-style matrix as a dense (len(users), num_items) bool mask."""
    users = users.to(row_ptr.device)
    starts = row_ptr[users]
    lengths = row_ptr[users + 1] - starts
    local_rows = torch.repeat_interleave(torch.arange(len(users), device=row_ptr.device), lengths)
    offsets_in_row = torch.arange(int(lengths.sum()), device=row_ptr.device) - (
        torch.repeat_interleave(lengths.cumsum(0) - lengths, lengths)
    )
    items = cols[starts[local_rows] + offsets_in_row]
    mask = torch.zeros(len(users), num_items, dtype=torch.bool, device=device)
    mask[local_rows.to(device), items.to(device)] = True
    return mask


def topk_ranking_metrics(
    scores: torch.Tensor | ScoreFunction,
    train_items: torch.Tensor | None,
    test_items: torch.Tensor,
    ks: Sequence[int] = (10, 20),  # cut-offs; DiffRec (Wang et al. 2023) reports 10 and 20
    recall_denominator: RecallDenominator = "min",
    batch_size: int = 1024,  # users ranked at once
) -> dict[str, float]:
    """Recall@K and NDCG@K of full ranking, averaged over users with a relevant test item.

    For a user with relevant test items R and the top-K list L (training items excluded),
    Recall@K = |L ∩ R| / d with d = min(K, |R|) (``"min"``) or d = |R| (``"relevant"``,
    what DiffRec's released code computes); NDCG@K = DCG@K / IDCG@K with binary relevance,
    DCG@K = Σ_{r=1..K} 1[L_r ∈ R] / log2(r + 1) and IDCG@K the same sum over the first
    min(K, |R|) positions.

    ``scores`` is a (users, items) tensor or a function mapping a (batch,) long tensor of
    user ids (on the CPU) to their (batch, items) scores on any device, so a model can score
    in batches. ``train_items`` (None: nothing to mask) and ``test_items`` are (users, items)
    interaction matrices (see :func:`interaction_matrix`). Training items get score -inf
    before ranking and are never relevant. Among equal scores the lower item index ranks
    first. Users without a relevant test item are left out of the means; the result counts
    them as ``users_skipped`` next to ``users_evaluated``. (DiffRec's code instead averages
    over all users, a user without test items scoring 0: multiply by users_evaluated /
    (users_evaluated + users_skipped) to compare with it.)
    """
    # validate the cut-offs and the interaction matrices
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be non-empty positive cut-offs, got {ks}")
    if recall_denominator not in ("min", "relevant"):
        raise ValueError(
            f"recall_denominator must be 'min' or 'relevant', got {recall_denominator!r}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    test_ptr, test_cols = _row_pointers(test_items, "test_items")
    num_users, num_items = test_items.shape
    if num_users == 0 or num_items == 0:
        raise ValueError(f"test_items is empty (shape {tuple(test_items.shape)})")
    if train_items is not None:
        if tuple(train_items.shape) != (num_users, num_items):
            raise ValueError(
                f"train_items {tuple(train_items.shape)} and test_items "
                f"{tuple(test_items.shape)} must have the same (users, items) shape"
            )
        train_ptr, train_cols = _row_pointers(train_items, "train_items")
    if isinstance(scores, torch.Tensor) and tuple(scores.shape) != (num_users, num_items):
        raise ValueError(
            f"scores {tuple(scores.shape)} must be (users, items) = {(num_users, num_items)}"
        )
    max_k = ks[-1]
    if max_k > num_items:
        raise ValueError(f"cut-off K={max_k} exceeds the number of items ({num_items})")

    # only users with a test item are scored
    test_counts = (test_ptr[1:] - test_ptr[:-1]).cpu()
    candidates = torch.nonzero(test_counts > 0).flatten()
    if len(candidates) == 0:
        raise ValueError("no user has a test item: test_items holds no interaction")

    recall_sums = dict.fromkeys(ks, 0.0)
    ndcg_sums = dict.fromkeys(ks, 0.0)
    users_evaluated = 0
    for users in candidates.split(batch_size):
        batch_scores = _score_batch(scores, users, num_items)
        device = batch_scores.device

        # training items are masked out of the ranking and out of the relevant set
        relevant = _dense_rows(test_ptr, test_cols, users, num_items, device)
        if train_items is not None:
            seen = _dense_rows(train_ptr, train_cols, users, num_items, device)
            batch_scores = batch_scores.masked_fill(seen, float("-inf"))
            relevant &= ~seen
        num_relevant = relevant.sum(dim=1)  # (B,)
        evaluated = num_relevant > 0
        users_evaluated += int(evaluated.sum())

        # top-K lists, equal scores ordered by lower item index
        _, top_items = stable_topk(batch_scores, max_k)  # (B, max_k)
        hits = relevant.gather(1, top_items).double()  # (B, max_k)
        discounts = 1.0 / torch.log2(torch.arange(max_k, device=device, dtype=torch.float64) + 2)
        ideal_dcg = torch.cat([discounts.new_zeros(1), discounts.cumsum(0)])  # by #relevant

        for k in ks:
            # recall: hits in the top K over min(K, |R|) or |R|
            hits_at_k = hits[:, :k].sum(dim=1)
            denominator = num_relevant.clamp(max=k) if recall_denominator == "min" else num_relevant
            recall = hits_at_k[evaluated] / denominator[evaluated]
            recall_sums[k] += float(recall.sum())

            # NDCG: discounted hits over the best achievable DCG with min(K, |R|) hits
            dcg = (hits[:, :k] * discounts[:k]).sum(dim=1)
            ideal = ideal_dcg[num_relevant.clamp(max=k)]
            ndcg_sums[k] += float((dcg[evaluated] / ideal[evaluated]).sum())

    if users_evaluated == 0:
        raise ValueError(
            "no user has a relevant test item outside their training items; "
            "check that test_items and train_items are not the same interactions"
        )
    users_skipped = num_users - users_evaluated
    log.info(
        "full ranking over %d items: %d users evaluated, %d skipped (no relevant test item)",
        num_items,
        users_evaluated,
        users_skipped,
    )
    metrics: dict[str, float] = {}
    for k in ks:
        metrics[f"recall@{k}"] = recall_sums[k] / users_evaluated
        metrics[f"ndcg@{k}"] = ndcg_sums[k] / users_evaluated
    metrics["users_evaluated"] = users_evaluated
    metrics["users_skipped"] = users_skipped
    return metrics


def _score_batch(
    scores: torch.Tensor | ScoreFunction, users: torch.Tensor, num_items: int
) -> torch.Tensor:
    """(batch, items) float scores of ``users`` from a score matrix or a score function."""
    if isinstance(scores, torch.Tensor):
        batch_scores = scores[users.to(scores.device)]
    else:
        batch_scores = scores(users)
        if tuple(batch_scores.shape) != (len(users), num_items):
            raise ValueError(
                f"the score function returned shape {tuple(batch_scores.shape)} for "
                f"{len(users)} users, expected (batch, items) = {(len(users), num_items)}"
            )
    batch_scores = batch_scores.detach().float()
    if torch.isnan(batch_scores).any():
        raise ValueError("scores hold NaN; NaN cannot be ranked, check the model's output")
    return batch_scores
