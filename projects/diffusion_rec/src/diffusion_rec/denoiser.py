"""DiffRec's denoiser: an MLP over the noisy interaction vector and a timestep embedding.

Wang et al. 2023, Sec. 3.2: x_t (items,) is concatenated with a learned projection of the
sinusoidal embedding of t, then an encoder MLP narrows to the bottleneck and a decoder MLP
widens back to all items, with tanh between layers and dropout on the input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import get_timestep_embedding
from torch import nn


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: int = 10_000) -> torch.Tensor:
    """(batch, dim) embedding [cos(t w_k), sin(t w_k)], w_k = max_period^(-k / (dim // 2)).

    diffusers' ``get_timestep_embedding`` with cosines first and no frequency shift, which is
    the embedding of DiffRec (and of guided diffusion); an odd ``dim`` is zero-padded.
    """
    return get_timestep_embedding(
        t, dim, flip_sin_to_cos=True, downscale_freq_shift=0, max_period=max_period
    )


def _xavier_normal_(layer: nn.Linear, bias_std: float) -> None:
    """Weights N(0, 2 / (fan_in + fan_out)); biases N(0, bias_std^2) (0: zeros)."""
    std = math.sqrt(2.0 / (layer.in_features + layer.out_features))
    nn.init.normal_(layer.weight, 0.0, std)
    if bias_std > 0:
        nn.init.normal_(layer.bias, 0.0, bias_std)
    else:
        nn.init.zeros_(layer.bias)


class DiffRecDenoiser(nn.Module):
    """MLP denoiser f(x_t, t) -> x_0 (or eps) over ``n_items`` inputs.

    ``dims`` are the hidden widths from the bottleneck outwards, as DiffRec's ``--dims``
    ([200, 600] on ML-1M: items + emb -> 600 -> 200 -> 600 -> items).
    """

    def __init__(
        self,
        n_items: int,
        dims: Sequence[int] = (1000,),  # DiffRec's default --dims
        emb_size: int = 10,  # timestep embedding width, DiffRec --emb_size
        dropout: float = 0.5,  # input dropout, DiffRec's DNN
        norm: bool = False,  # L2-normalise the input, DiffRec --norm
        bias_std: float = 0.001,  # DiffRec initialises biases N(0, 0.001^2); L-DiffRec zeros
    ):
        super().__init__()
        if n_items < 1 or emb_size < 1 or any(d < 1 for d in dims) or not dims:
            raise ValueError(
                f"denoiser needs n_items, emb_size and every hidden dim >= 1 (and at least one "
                f"hidden dim), got n_items={n_items}, emb_size={emb_size}, dims={list(dims)}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        self.emb_size, self.norm = emb_size, norm
        self.time_projection = nn.Linear(emb_size, emb_size)

        # encoder: items + emb -> ... -> bottleneck; decoder: bottleneck -> ... -> items
        encoder_widths = [n_items + emb_size, *reversed(list(dims))]
        decoder_widths = [*list(dims), n_items]
        self.encoder = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(encoder_widths))
        self.decoder = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(decoder_widths))
        self.dropout = nn.Dropout(dropout)
        for layer in [self.time_projection, *self.encoder, *self.decoder]:
            _xavier_normal_(layer, bias_std)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """(batch, items) prediction from x_t (batch, items) and timesteps t (batch,)."""
        time = self.time_projection(sinusoidal_embedding(t, self.emb_size).to(x_t.dtype))
        if self.norm:
            x_t = F.normalize(x_t, dim=-1)
        h = torch.cat([self.dropout(x_t), time], dim=-1)
        for layer in self.encoder:
            h = torch.tanh(layer(h))
        for index, layer in enumerate(self.decoder):
            h = layer(h)
            if index < len(self.decoder) - 1:
                h = torch.tanh(h)
        return h
