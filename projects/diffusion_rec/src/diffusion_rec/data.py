"""Interaction matrices for DiffRec's protocol, built from shared's loaders.

DiffRec (Wang et al., SIGIR 2023) treats each user as one vector over all items. This
module turns (user, item) pairs into the row-compressed matrices the models read, adds
T-DiffRec's temporal weights, and checks what the protocol needs: ids in range, the item
count agreed by every file, and no test item that is also a training item.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from shared.data.locations import CorruptDataError
from shared.data.movielens import InteractionSplits, load_diffrec
from shared.metrics import interaction_matrix

log = logging.getLogger(__name__)

# torch flags every sparse CSR tensor as beta; the few operations used here are stable
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")


@dataclass
class RecData:
    """Train, validation and test interactions of one dataset, as sparse (users, items) matrices.

    ``train_input`` is what a model reads for each user: the binary training history, or
    T-DiffRec's temporally weighted history. Masks and metrics always use the binary
    ``train`` (and ``train + valid`` for the test split), as the DiffRec protocol does.
    """

    name: str
    n_users: int
    n_items: int
    train: torch.Tensor  # (users, items) sparse COO bool
    valid: torch.Tensor  # (users, items) sparse COO bool
    test: torch.Tensor  # (users, items) sparse COO bool
    train_pairs: torch.Tensor  # (n, 2) int64 in file order (chronological within a user)
    item_emb: torch.Tensor | None = None  # (items, dim) for L-DiffRec's clustering
    train_input: torch.Tensor | None = None  # (users, items) sparse CSR float32

    def __post_init__(self) -> None:
        if self.train_input is None:
            self.train_input = self.train.float().to_sparse_csr()

    @property
    def train_and_valid(self) -> torch.Tensor:
        """The test split's mask: everything a user saw before the test period."""
        return (self.train.float() + self.valid.float()).coalesce().bool()

    def item_popularity(self) -> torch.Tensor:
        """(items,) number of training users per item."""
        return torch.sparse.sum(self.train.float(), dim=0).to_dense()

    def mask_for(self, split: str) -> torch.Tensor:
        """Items excluded from the ranking of ``split``: train (valid) or train + valid (test)."""
        if split == "valid":
            return self.train
        if split == "test":
            return self.train_and_valid
        raise ValueError(f"split must be 'valid' or 'test', got {split!r}")

    def target(self, split: str) -> torch.Tensor:
        if split not in ("valid", "test"):
            raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
        return getattr(self, split)


def temporal_weights(user_ids: np.ndarray, w_min: float, w_max: float) -> np.ndarray:
    """T-DiffRec's weight of each interaction: linear from w_min (oldest) to w_max (newest).

    Wang et al. 2023, Sec. 3.5: a user's interactions, in time order, get weights
    ``linspace(w_min, w_max, n_u)``. ``user_ids`` lists the owner of each interaction in
    chronological order within each user (users may be interleaved); a user with a single
    interaction gets ``w_min``, as ``numpy.linspace`` gives.
    """
    if not 0.0 <= w_min <= w_max:
        raise ValueError(f"temporal weights need 0 <= w_min <= w_max, got {w_min}, {w_max}")
    user_ids = np.asarray(user_ids, dtype=np.int64)
    if len(user_ids) == 0:
        return np.zeros(0)

    # position of each interaction within its user's sequence, and the sequence length
    order = np.argsort(user_ids, kind="stable")
    sorted_users = user_ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    lengths = np.diff(np.r_[starts, len(user_ids)])
    rank_sorted = np.arange(len(user_ids)) - np.repeat(starts, lengths)
    length_sorted = np.repeat(lengths, lengths)

    # linspace(w_min, w_max, n)[r] = w_min + (w_max - w_min) * r / (n - 1)
    fraction = np.where(length_sorted > 1, rank_sorted / np.maximum(length_sorted - 1, 1), 0.0)
    weights = np.empty(len(user_ids))
    weights[order] = w_min + (w_max - w_min) * fraction
    return weights


def from_splits(
    splits: InteractionSplits,
    temporal: tuple[float, float] | None = None,
) -> RecData:
    """A :class:`RecData` from shared's DiffRec splits; ``temporal=(w_min, w_max)`` for T-DiffRec.

    Users without training items are kept (their history vector is empty) and counted in
    the log; pairs listed twice in a split count once; a validation or test pair that is
    also a training pair is an error, because the protocol never evaluates on seen items.
    """
    n_users, n_items = splits.n_users, splits.n_items
    if n_users == 0 or n_items == 0 or len(splits.train) == 0:
        raise ValueError(f"dataset {splits.name!r} has no training interactions")
    if len(splits.test) == 0:
        raise ValueError(
            f"dataset {splits.name!r} has an empty test split; a ranking cannot be evaluated "
            "without held-out interactions"
        )
    train_pairs = splits.train.long()
    matrices = {}
    for split in ("train", "valid", "test"):
        pairs = getattr(splits, split).long()
        matrices[split] = interaction_matrix(pairs[:, 0], pairs[:, 1], n_users, n_items)
        duplicates = len(pairs) - matrices[split]._nnz()
        if duplicates:
            log.warning(
                "%s %s: %d repeated (user, item) pairs count once", splits.name, split, duplicates
            )

    # the protocol never evaluates on an item the user trained on
    for split in ("valid", "test"):
        overlap = (matrices["train"].float() * matrices[split].float()).coalesce()._nnz()
        if overlap:
            raise CorruptDataError(
                f"{splits.name}: {overlap} {split} pairs are also training pairs; the splits "
                "must be disjoint (remove them from the training file)"
            )

    # counted, explicit handling of users and items the model cannot learn from
    train_counts = torch.bincount(train_pairs[:, 0], minlength=n_users)
    without_history = int((train_counts == 0).sum())
    if without_history:
        log.warning(
            "%s: %d of %d users have no training items; they are scored from an empty "
            "history (the popularity-free diffusion output) and counted in evaluation",
            splits.name,
            without_history,
            n_users,
        )
    unseen_items = int((torch.bincount(train_pairs[:, 1], minlength=n_items) == 0).sum())
    if unseen_items:
        log.info("%s: %d items never occur in training", splits.name, unseen_items)

    # the vector each model reads: binary, or T-DiffRec's temporally weighted history
    train_input = None
    if temporal is not None:
        weights = temporal_weights(train_pairs[:, 0].numpy(), *temporal)
        train_input = (
            torch.sparse_coo_tensor(
                train_pairs.T, torch.from_numpy(weights).float(), (n_users, n_items)
            )
            .coalesce()
            .to_sparse_csr()
        )

    return RecData(
        name=splits.name,
        n_users=n_users,
        n_items=n_items,
        train=matrices["train"],
        valid=matrices["valid"],
        test=matrices["test"],
        train_pairs=train_pairs,
        item_emb=splits.item_emb,
        train_input=train_input,
    )


def load_dataset(
    name: str = "ml-1m_clean",
    source: str = "auto",
    temporal: tuple[float, float] | None = None,
) -> RecData:
    """A dataset in DiffRec's ``.npy`` format by name: ``ml-1m_clean``, ``ml-1m_noisy``, ...

    Any other DiffRec-format dataset (Yelp, Amazon-book) is read from
    ``$PAPERSTACK_DATA/diffrec/<name>/{train,valid,test}_list.npy`` (plus ``item_emb.npy`` for
    L-DiffRec): unpack the authors' ``<name>.rar`` there and pass its name.
    """
    splits = load_diffrec(name, source=source)  # type: ignore[arg-type]
    data = from_splits(splits, temporal=temporal)
    log.info(
        "%s: %d users, %d items, %d / %d / %d train / valid / test interactions",
        data.name,
        data.n_users,
        data.n_items,
        data.train._nnz(),
        data.valid._nnz(),
        data.test._nnz(),
    )
    return data


def dense_rows(matrix: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Rows ``rows`` of a sparse CSR float matrix as a dense (len(rows), columns) tensor."""
    crow, col, values = matrix.crow_indices(), matrix.col_indices(), matrix.values()
    rows = rows.to(crow.device)
    starts = crow[rows]
    lengths = crow[rows + 1] - starts
    local = torch.repeat_interleave(torch.arange(len(rows), device=crow.device), lengths)
    offsets = torch.arange(int(lengths.sum()), device=crow.device) - torch.repeat_interleave(
        lengths.cumsum(0) - lengths, lengths
    )
    positions = starts[local] + offsets
    out = torch.zeros(len(rows), matrix.shape[1], dtype=values.dtype, device=crow.device)
    out[local, col[positions]] = values[positions]
    return out
