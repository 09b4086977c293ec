"""Strong simple baselines under the same protocol: most-popular, EASE, MultVAE and LightGCN."""

from __future__ import annotations

from itertools import pairwise

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler


class MostPopular:
    """Every user gets the items with the most training interactions (seen items masked later)."""

    def __init__(self, train: torch.Tensor):
        self.popularity = torch.sparse.sum(train.float().coalesce(), dim=0).to_dense()

    def score(self, history: torch.Tensor) -> torch.Tensor:
        return self.popularity.to(history.device).expand(len(history), -1)


class EASE:
    """Embarrassingly shallow autoencoder (Steck, WWW 2019), closed form.

    B = I - P diag(1 / diag(P)) with P = (X^T X + l2 I)^{-1}, so diag(B) = 0; scores = X B.

    ``train`` is the (users, items) sparse input matrix (COO or CSR): the binary history, or
    T-DiffRec's temporally weighted one (T-EASE).
    """

    def __init__(self, train: torch.Tensor, l2: float = 500.0):
        if l2 <= 0:
            raise ValueError(f"ease.l2 must be > 0, got {l2}")
        x = train.float().to_sparse_coo().coalesce()
        gram = torch.sparse.mm(x.t(), x.to_dense()).double()
        gram.diagonal().add_(l2)
        precision = torch.linalg.inv(gram)
        weights = -precision / precision.diagonal().unsqueeze(0)
        weights.diagonal().zero_()
        self.weights = weights.float()

    def score(self, history: torch.Tensor) -> torch.Tensor:
        return history @ self.weights.to(history.device)


class MultVAE(L.LightningModule):
    """Variational autoencoder with a multinomial likelihood (Liang et al., WWW 2018).

    Encoder over the L2-normalised, dropped-out history to (mu, logvar); the KL weight beta
    grows linearly to ``anneal_cap`` over ``total_anneal_steps`` batches.
    """

    def __init__(
        self,
        n_items: int,
        hidden_dims: list[int] | tuple[int, ...] = (600, 200),
        dropout: float = 0.5,
        lr: float = 1e-3,
        total_anneal_steps: int = 20000,
        anneal_cap: float = 0.2,
    ):
        super().__init__()
        if not hidden_dims:
            raise ValueError("multvae.hidden_dims needs at least the latent width")
        self.lr, self.total_anneal_steps, self.anneal_cap = lr, total_anneal_steps, anneal_cap
        *hidden, latent = list(hidden_dims)
        encoder_widths = [n_items, *hidden]
        self.encoder = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(encoder_widths))
        self.to_posterior = nn.Linear(encoder_widths[-1], 2 * latent)
        decoder_widths = [latent, *reversed(hidden), n_items]
        self.decoder = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(decoder_widths))
        self.dropout = nn.Dropout(dropout)
        self.latent = latent
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_normal_(module.weight)
                nn.init.normal_(module.bias, 0.0, 0.001)
        self.updates = 0

    def forward(self, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.dropout(F.normalize(history, dim=1))
        for layer in self.encoder:
            h = torch.tanh(layer(h))
        mu, logvar = self.to_posterior(h).split(self.latent, dim=1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        for index, layer in enumerate(self.decoder):
            z = layer(z)
            if index < len(self.decoder) - 1:
                z = torch.tanh(z)
        return z, mu, logvar

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        logits, mu, logvar = self(batch)
        nll = -(F.log_softmax(logits, dim=1) * batch).sum(dim=1).mean()
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1).mean()
        beta = min(self.anneal_cap, self.updates / max(self.total_anneal_steps, 1))
        self.updates += 1
        loss = nll + beta * kl
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["updates"] = self.updates

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.updates = checkpoint.get("updates", 0)

    @torch.no_grad()
    def score(self, history: torch.Tensor) -> torch.Tensor:
        was_training = self.training
        self.eval()
        try:
            return self(history)[0]
        finally:
            self.train(was_training)


def normalized_adjacency(train: torch.Tensor) -> torch.Tensor:
    """D^-1/2 A D^-1/2 of the user-item graph, a (users + items)^2 sparse CSR matrix.

    LightGCN Sec. 3.1.3 (matrix form): A = [[0, R], [R^T, 0]] with R the (users, items)
    training matrix; users are nodes 0..users-1, item i is node users + i. A node without
    edges (a user or item absent from training) gets an empty row, not a division by zero.
    """
    r = train.coalesce()
    n_users, n_items = r.shape
    users, items = r.indices()

    # both directions of every training interaction
    rows = torch.cat([users, items + n_users])
    columns = torch.cat([items + n_users, users])

    # symmetric normalisation 1 / sqrt(|N_u| |N_i|)
    degree = torch.bincount(rows, minlength=n_users + n_items).float()
    inv_sqrt = torch.where(degree > 0, degree.clamp(min=1).rsqrt(), torch.zeros_like(degree))
    values = inv_sqrt[rows] * inv_sqrt[columns]
    size = (n_users + n_items, n_users + n_items)
    adjacency = torch.sparse_coo_tensor(
        torch.stack([rows, columns]), values, size, check_invariants=True
    )
    return adjacency.coalesce().to_sparse_csr()


class SymmetricPropagation(torch.autograd.Function):
    """``adjacency @ embeddings`` whose backward reuses ``adjacency`` as its own transpose.

    torch.sparse.mm's backward transposes the sparse matrix at every step; the normalised
    adjacency is symmetric, so the gradient is ``adjacency @ grad`` (on ML-1M, one thread, a
    training step's propagation takes a third of the time).
    """

    @staticmethod
    def forward(ctx, adjacency: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(adjacency)
        return adjacency @ embeddings

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        (adjacency,) = ctx.saved_tensors
        return None, adjacency @ grad


def bpr_loss(positive_scores: torch.Tensor, negative_scores: torch.Tensor) -> torch.Tensor:
    """Bayesian personalised ranking, -mean log sigmoid(y_ui - y_uj) (LightGCN Eq. 15)."""
    return -F.logsigmoid(positive_scores - negative_scores).mean()


def sample_negatives(
    users: torch.Tensor, positive_keys: torch.Tensor, n_items: int, max_rounds: int = 100
) -> torch.Tensor:
    """One item per user, uniform over the items the user has no training interaction with.

    ``positive_keys`` holds ``user * n_items + item`` of every training pair, sorted. Drawn
    items that are positives are redrawn (rejection sampling).
    """
    negatives = torch.randint(n_items, users.shape)
    for _ in range(max_rounds):
        keys = users * n_items + negatives
        found = torch.searchsorted(positive_keys, keys).clamp(max=len(positive_keys) - 1)
        positive = positive_keys[found] == keys
        if not bool(positive.any()):
            break
        negatives[positive] = torch.randint(n_items, (int(positive.sum()),))
    # Limitation: a user who interacted with almost every item may keep a positive after
    # max_rounds; no such user exists in DiffRec's datasets
    return negatives


class BPRTriples(Dataset):
    """Training pairs with a fresh uniform negative; a list of pair indices gives one batch.

    Each batch is (users, positive items, negative items), three (batch,) long tensors.
    """

    def __init__(self, train: torch.Tensor):
        r = train.coalesce()
        self.n_items = r.shape[1]
        self.users, self.items = r.indices()
        # coalesced indices are sorted by (user, item), so these keys are sorted
        self.positive_keys = self.users * self.n_items + self.items

    def __len__(self) -> int:
        return len(self.users)

    def __getitem__(self, pairs: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pairs_t = torch.as_tensor(pairs)
        users = self.users[pairs_t]
        negatives = sample_negatives(users, self.positive_keys, self.n_items)
        return users, self.items[pairs_t], negatives


class LightGCN(L.LightningModule):
    """LightGCN (He et al., SIGIR 2020): embeddings smoothed over the user-item graph.

    Ego embeddings E^0 of users and items are propagated K times by the normalised adjacency
    (E^{k+1} = D^-1/2 A D^-1/2 E^k, Sec. 3.1.3), the layers are averaged (alpha_k =
    1 / (K + 1), Sec. 3.1.2), and a user's score of an item is the inner product. Training:
    BPR on one uniform negative per training pair plus ``reg`` times the L2 norm of the
    batch's ego embeddings (Eq. 15). One epoch is one pass over the training pairs, which is why the
    module brings its own ``train_dataloader``.

    Example::

        model = LightGCN(data.train)
        L.Trainer(max_epochs=5).fit(model)
        scores = model.score_users(torch.arange(10))  # (10, items)
    """

    def __init__(
        self,
        train: torch.Tensor,
        dim: int = 64,
        layers: int = 3,
        reg: float = 1e-4,
        lr: float = 1e-3,
        batch_size: int = 2048,
        init_std: float = 0.1,
    ):
        super().__init__()
        if dim < 1 or layers < 0 or batch_size < 1:
            raise ValueError(
                "lightgcn.dim and lightgcn.batch_size must be >= 1 and lightgcn.layers >= 0, "
                f"got dim={dim}, batch_size={batch_size}, layers={layers}"
            )
        self.n_users, self.n_items = train.shape
        self.layers, self.reg, self.lr, self.batch_size = layers, reg, lr, batch_size
        self.user_embedding = nn.Embedding(self.n_users, dim)
        self.item_embedding = nn.Embedding(self.n_items, dim)
        nn.init.normal_(self.user_embedding.weight, std=init_std)
        nn.init.normal_(self.item_embedding.weight, std=init_std)
        # rebuilt from the training data, so kept out of checkpoints
        self.register_buffer("adjacency", normalized_adjacency(train), persistent=False)
        self.triples = BPRTriples(train)

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final embeddings: users (users, dim) and items (items, dim), the mean of K+1 layers."""
        layer = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        total = layer
        for _ in range(self.layers):
            layer = SymmetricPropagation.apply(self.adjacency, layer)
            total = total + layer
        final = total / (self.layers + 1)
        return final.split([self.n_users, self.n_items])

    def train_dataloader(self) -> DataLoader:
        sampler = BatchSampler(
            RandomSampler(range(len(self.triples))), self.batch_size, drop_last=False
        )
        return DataLoader(self.triples, sampler=sampler, batch_size=None)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        users, positives, negatives = batch
        user_final, item_final = self.propagate()

        # BPR on the propagated embeddings
        user_vectors = user_final[users]
        positive_scores = (user_vectors * item_final[positives]).sum(dim=1)
        negative_scores = (user_vectors * item_final[negatives]).sum(dim=1)
        ranking = bpr_loss(positive_scores, negative_scores)

        # L2 on the batch's ego embeddings (layer 0), as LightGCN's code: 1/2 ||.||^2 / batch
        ego = (
            self.user_embedding(users).pow(2).sum()
            + self.item_embedding(positives).pow(2).sum()
            + self.item_embedding(negatives).pow(2).sum()
        )
        loss = ranking + self.reg * 0.5 * ego / len(users)
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)

    @torch.no_grad()
    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        """(batch, items) inner products of the users' and all items' final embeddings."""
        user_final, item_final = self.propagate()
        return user_final[users.to(user_final.device)] @ item_final.T

    @torch.no_grad()
    def item_embeddings(self) -> torch.Tensor:
        """(items, dim) final item embeddings (what L-DiffRec's clustering reads)."""
        return self.propagate()[1]
