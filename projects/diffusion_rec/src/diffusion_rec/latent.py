"""L-DiffRec's item clustering and per-cluster variational encoders (Wang et al. 2023, Sec. 3.4).

Items are grouped by k-means on item embeddings (DiffRec ships LightGCN embeddings as
``item_emb.npy``); each group's slice of the interaction vector gets its own encoder into a
latent whose width is proportional to the group's size, the latents are concatenated, the
diffusion runs on them, and a decoder maps back to item scores.
"""

from __future__ import annotations

import logging
from itertools import pairwise

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from torch import nn

log = logging.getLogger(__name__)

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "leaky_relu": nn.LeakyReLU}


def cluster_items(item_emb: torch.Tensor | np.ndarray, clusters: int, seed: int = 0) -> np.ndarray:
    """(items,) k-means cluster id of each item embedding (sklearn, k-means++, 10 restarts)."""
    item_emb = np.asarray(item_emb, dtype=np.float64)
    if item_emb.ndim != 2:
        raise ValueError(f"item embeddings must be (items, dim), got shape {item_emb.shape}")
    if not 1 <= clusters <= len(item_emb):
        raise ValueError(f"latent.clusters must lie in [1, items={len(item_emb)}], got {clusters}")
    if clusters == 1:
        return np.zeros(len(item_emb), dtype=np.int64)
    labels = KMeans(n_clusters=clusters, n_init=10, random_state=seed).fit_predict(item_emb)
    return labels.astype(np.int64)


def latent_widths(cluster_sizes: list[int], latent_dim: int) -> list[int]:
    """Latent width per cluster: proportional to its size (at least 1), the last takes the rest.

    As L-DiffRec's code: int(n_c / n * d) for every cluster but the last.
    """
    total = sum(cluster_sizes)
    widths = [max(int(size / total * latent_dim), 1) for size in cluster_sizes[:-1]]
    last = latent_dim - sum(widths)
    if last < 1:
        raise ValueError(
            f"latent.latent_dim={latent_dim} is too small for {len(cluster_sizes)} clusters; "
            "give every cluster at least one latent unit"
        )
    return [*widths, last]


class ClusteredVAE(nn.Module):
    """Per-cluster VAE encoders and a decoder over all items (L-DiffRec's autoencoder).

    ``encode`` returns (latent (batch, latent_dim), KL divergence (scalar)); ``decode`` maps a
    latent to (batch, items) scores in the original item order.
    """

    def __init__(
        self,
        cluster_ids: np.ndarray,
        latent_dim: int = 300,
        decoder_dims: list[int] | tuple[int, ...] = (),
        activation: str = "tanh",
        dropout: float = 0.1,
        reparam: bool = True,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"latent.activation must be one of {list(ACTIVATIONS)}, got {activation!r}"
            )
        cluster_ids = np.asarray(cluster_ids, dtype=np.int64)
        clusters = int(cluster_ids.max()) + 1
        members = [np.flatnonzero(cluster_ids == c) for c in range(clusters)]
        if any(len(m) == 0 for m in members):
            raise ValueError("every cluster id in 0..max must have at least one item")
        sizes = [len(m) for m in members]
        self.widths = latent_widths(sizes, latent_dim)
        self.reparam, self.latent_dim = reparam, latent_dim
        self.n_items = len(cluster_ids)
        log.info(
            "L-DiffRec: %d item clusters of sizes %s, latent widths %s",
            clusters,
            sizes,
            self.widths,
        )

        # item order grouped by cluster, and its inverse
        order = torch.from_numpy(np.concatenate(members))
        self.register_buffer("cluster_order", order, persistent=True)
        self.register_buffer("inverse_order", torch.argsort(order), persistent=True)
        self.register_buffer("sizes", torch.tensor(sizes), persistent=True)

        # encoders: cluster slice -> (mu, logvar) of its latent width, each followed by the
        # activation as in L-DiffRec's code
        act = ACTIVATIONS[activation]
        self.encoders = nn.ModuleList(
            nn.Sequential(nn.Linear(size, 2 * width), act())
            for size, width in zip(sizes, self.widths, strict=True)
        )

        # decoder: one linear map (L-DiffRec's out_dims=[]) or an MLP per cluster
        if decoder_dims:
            self.decoders = nn.ModuleList()
            for size, width in zip(sizes, self.widths, strict=True):
                cluster_widths = [width, *_scaled(decoder_dims, size, self.n_items), size]
                layers: list[nn.Module] = []
                for a, b in pairwise(cluster_widths):
                    layers += [nn.Linear(a, b), act()]
                self.decoders.append(nn.Sequential(*layers[:-1]))
            self.decoder = None
        else:
            self.decoder = nn.Linear(latent_dim, self.n_items)
            self.decoders = None
        self.dropout = nn.Dropout(dropout)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_normal_(module.weight)
                nn.init.zeros_(module.bias)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent (batch, latent_dim) and the mean KL(q(z|x) || N(0, I)) of the batch."""
        x = self.dropout(x)
        grouped = x[:, self.cluster_order].split(self.sizes.tolist(), dim=1)
        mus, logvars = [], []
        for encoder, width, part in zip(self.encoders, self.widths, grouped, strict=True):
            hidden = encoder(part)
            mus.append(hidden[:, :width])
            logvars.append(hidden[:, width:])
        mu, logvar = torch.cat(mus, dim=1), torch.cat(logvars, dim=1)
        latent = mu
        if self.training and self.reparam:
            latent = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1).mean()
        return latent, kl

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """(batch, items) scores in the original item order."""
        if self.decoder is not None:
            grouped_scores = self.decoder(latent)
        else:
            parts = latent.split(self.widths, dim=1)
            grouped_scores = torch.cat(
                [decoder(part) for decoder, part in zip(self.decoders, parts, strict=True)], dim=1
            )
        return grouped_scores[:, self.inverse_order]


def _scaled(dims: list[int] | tuple[int, ...], size: int, total: int) -> list[int]:
    return [max(int(size / total * d), 1) for d in dims]


def multinomial_nll(scores: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-mean_u sum_i x_ui log softmax(scores_u)_i: MultVAE's likelihood (Liang et al. 2018)."""
    return -(F.log_softmax(scores, dim=1) * x).sum(dim=1).mean()
