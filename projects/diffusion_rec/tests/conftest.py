"""Fixtures for diffusion_rec's tests: a small real slice of DiffRec's ML-1M clean split."""

from __future__ import annotations

import pytest
import torch

from diffusion_rec.data import RecData, from_splits
from shared.data.movielens import InteractionSplits, load_diffrec


@pytest.fixture(scope="session")
def ml1m_splits() -> InteractionSplits:
    return load_diffrec("ml-1m_clean")


@pytest.fixture(scope="session")
def small_ml1m(ml1m_splits) -> RecData:
    """The first 600 users of ML-1M clean, all 2,810 items (real interactions, a small slice)."""
    users = 600

    def head(pairs: torch.Tensor) -> torch.Tensor:
        return pairs[pairs[:, 0] < users]

    splits = InteractionSplits(
        train=head(ml1m_splits.train),
        valid=head(ml1m_splits.valid),
        test=head(ml1m_splits.test),
        n_users=users,
        n_items=ml1m_splits.n_items,
        item_emb=ml1m_splits.item_emb,
        name="ml-1m_clean[:600]",
    )
    return from_splits(splits)
