"""Full-ranking evaluation under DiffRec's protocol, both Recall definitions at once.

Validation ranks every item except the user's training items; test ranks every item except
training and validation items (as DiffRec's code masks ``train + valid``). Metrics come from
``shared.metrics.topk_ranking_metrics`` on each batch of users, so the scores of a batch are
computed once and serve both Recall denominators:

- ``recall@K``: hits / min(K, |R|), the bounded definition (ours);
- ``recall_rel@K``: hits / |R|, what DiffRec's released code computes (its targets use it).

NDCG is the same under both. Users are averaged over those with a relevant item.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch

from diffusion_rec.data import RecData, dense_rows
from shared.metrics import topk_ranking_metrics

log = logging.getLogger(__name__)

KS = (10, 20)  # DiffRec reports Recall and NDCG at 10 and 20 (and 50, 100)


class RankingAccumulator:
    """Sums of per-user metrics over batches; ``result()`` gives the means."""

    def __init__(self, ks: Sequence[int] = KS):
        self.ks = tuple(ks)
        self.sums: dict[str, float] = {}
        self.users = 0

    def add(self, scores: torch.Tensor, seen: torch.Tensor, relevant: torch.Tensor) -> None:
        """Add a batch: scores (B, items), seen and relevant (B, items) bool, dense."""
        keep = (relevant & ~seen).any(dim=1)
        if not bool(keep.any()):
            return
        scores, seen, relevant = scores[keep], seen[keep], relevant[keep]
        batch = {}
        for denominator, prefix in (("min", "recall"), ("relevant", "recall_rel")):
            metrics = topk_ranking_metrics(
                scores,
                seen,
                relevant,
                ks=self.ks,
                recall_denominator=denominator,
                batch_size=len(scores),
            )
            for k in self.ks:
                batch[f"{prefix}@{k}"] = metrics[f"recall@{k}"]
                batch[f"ndcg@{k}"] = metrics[f"ndcg@{k}"]
        evaluated = int(keep.sum())
        for key, value in batch.items():
            self.sums[key] = self.sums.get(key, 0.0) + value * evaluated
        self.users += evaluated

    def result(self) -> dict[str, float]:
        if self.users == 0:
            raise ValueError(
                "no user has a relevant held-out item outside their masked items; the split "
                "is empty or identical to the training data"
            )
        means = {key: total / self.users for key, total in self.sums.items()}
        means["users"] = self.users
        return means


def evaluation_users(data: RecData, split: str) -> torch.Tensor:
    """Users with at least one held-out item of ``split`` (others have nothing to rank for)."""
    counts = torch.bincount(data.target(split).indices()[0], minlength=data.n_users)
    return torch.nonzero(counts > 0).flatten()


def evaluate(
    score_users: Callable[[torch.Tensor], torch.Tensor],
    data: RecData,
    splits: Sequence[str] = ("valid", "test"),
    batch_size: int = 2048,
    ks: Sequence[int] = KS,
) -> dict[str, dict[str, float]]:
    """``{split: metrics}`` of a model's scores, ranking all items for users in batches.

    ``score_users`` maps a (batch,) long tensor of user ids to (batch, items) scores on any
    device; a model whose inputs do not depend on the split (every DiffRec variant reads the
    training history) is scored once per user for all ``splits``.
    """
    quiet = logging.getLogger("shared.metrics.ranking")
    previous, quiet.level = quiet.level, logging.WARNING
    try:
        users = torch.unique(torch.cat([evaluation_users(data, s) for s in splits]))
        masks = {s: data.mask_for(s).float().to_sparse_csr() for s in splits}
        targets = {s: data.target(s).float().to_sparse_csr() for s in splits}
        accumulators = {s: RankingAccumulator(ks) for s in splits}
        with torch.inference_mode():
            for batch in users.split(batch_size):
                scores = score_users(batch).float()
                for split in splits:
                    seen = dense_rows(masks[split], batch).to(scores.device) > 0
                    relevant = dense_rows(targets[split], batch).to(scores.device) > 0
                    accumulators[split].add(scores, seen, relevant)
    finally:
        quiet.level = previous
    return {split: accumulator.result() for split, accumulator in accumulators.items()}
