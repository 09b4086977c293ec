"""Strong simple baselines under the same protocol: most-popular, EASE and MultVAE."""

from __future__ import annotations

from itertools import pairwise

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn


class MostPopular:
    """Every user gets the items with the most training interactions (seen items masked later)."""

    def __init__(self, train: torch.Tensor):
        self.popularity = torch.sparse.sum(train.float().coalesce(), dim=0).to_dense()

    def score(self, history: torch.Tensor) -> torch.Tensor:
        return self.popularity.to(history.device).expand(len(history), -1)


class EASE:
    """Embarrassingly shallow autoencoder (Steck, WWW 2019), closed form.

    B = I - P diag(1 / diag(P)) with P = (X^T X + l2 I)^{-1}, so diag(B) = 0; scores = X B.
    """

    def __init__(self, train: torch.Tensor, l2: float = 500.0):
        if l2 <= 0:
            raise ValueError(f"ease.l2 must be > 0, got {l2}")
        x = train.float().coalesce()
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
