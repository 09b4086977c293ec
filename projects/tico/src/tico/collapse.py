"""The collapse monitor: eigenvalue spectrum and effective rank of an embedding covariance.

A collapsed encoder maps every image to (nearly) the same point or to a low-dimensional
subspace; the covariance of its embeddings then has few non-zero eigenvalues. The effective
rank (Roy & Vetterli 2007) summarises the spectrum in one number between 1 and the dimension:
exp of the entropy of the normalised eigenvalues, which RankMe (Garrido et al. 2023) uses to
track joint-embedding methods during training.
"""

from __future__ import annotations

import torch


def covariance_spectrum(embeddings: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of the covariance of ``embeddings`` (samples, dim), largest first, >= 0."""
    if embeddings.dim() != 2 or embeddings.shape[0] < 2:
        raise ValueError(
            f"embeddings must be (samples >= 2, dim), got shape {tuple(embeddings.shape)}"
        )
    centred = embeddings.double() - embeddings.double().mean(dim=0)
    covariance = centred.T @ centred / (embeddings.shape[0] - 1)  # (dim, dim)
    eigenvalues = torch.linalg.eigvalsh(covariance).flip(0)
    return eigenvalues.clamp_min(0.0).float()


def effective_rank(eigenvalues: torch.Tensor, eps: float = 1e-12) -> float:
    """exp(H(p)) with p_i = lambda_i / sum(lambda): d for an isotropic spectrum, 1 for rank one."""
    total = eigenvalues.double().sum()
    if total <= eps:
        return 0.0  # every embedding is the same point: complete collapse
    p = eigenvalues.double() / total
    p = p[p > eps]
    return float(torch.exp(-(p * p.log()).sum()))
