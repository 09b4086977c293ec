"""The TiCo loss (Zhu et al., 2022) and the Barlow Twins loss (Zbontar et al., 2021).

TiCo, Sec. 3: with embeddings normalised to unit length, a batch of N query embeddings
z_a, their paired key embeddings z_b (another view of the same images) and a running
matrix C of second moments kept across batches,

    C   <- beta * C + (1 - beta) * z_a^T z_a / N
    loss = 1 - mean_i <z_a_i, z_b_i>  +  rho * mean_i z_a_i^T C z_a_i

The first term asks for transformation invariance; the second, covariance contrast,
pushes every embedding away from the directions that past batches filled. The paper
reads it as MoCo with an implicit memory bank of unlimited size: C summarises all past
keys in a (dim, dim) matrix, which is why it claims to hold up at small batch sizes.

Example::

    criterion = TiCoLoss(dim=256, beta=0.9, rho=8.0)
    loss = criterion(projector(encoder(view_a)), projector(encoder(view_b)))
    loss.backward()  # criterion.covariance now holds the updated C

Both losses accept ``gather_distributed=True``: under DDP the embeddings of every process
are gathered with their gradient before C or the cross-correlation is computed, so the loss
equals the single-process loss on the global batch and all processes hold the same C.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class _GatherWithGradient(torch.autograd.Function):
    """all_gather whose backward hands each process the summed gradient of its own rows.

    torch.distributed.nn.functional.all_gather does the same but is deprecated in torch 2.9+
    (its replacement lives in a private module), so the dozen lines are kept here.
    """

    @staticmethod
    def forward(ctx, embeddings: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(embeddings) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, embeddings.contiguous())
        ctx.rows = embeddings.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        # every process computed the loss on the global batch: sum their gradients
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]


def gather_with_gradient(embeddings: torch.Tensor) -> torch.Tensor:
    """Concatenate ``embeddings`` of every process (in rank order), keeping the gradient.

    The backward pass sums the gradients from all processes, so together with DDP's gradient
    averaging the parameters get the gradient of the loss on the global batch. Every process
    must pass the same number of rows (drop_last=True). Outside an initialised process group
    this returns ``embeddings`` unchanged.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return embeddings
    return _GatherWithGradient.apply(embeddings)


def _check_embeddings(z_a: torch.Tensor, z_b: torch.Tensor) -> None:
    if z_a.dim() != 2 or z_a.shape != z_b.shape:
        raise ValueError(
            "z_a and z_b must both be (batch, dim) with the same shape, got "
            f"{tuple(z_a.shape)} and {tuple(z_b.shape)}"
        )


def _check_finite(loss: torch.Tensor) -> None:
    # A NaN or infinite entry in any embedding reaches the loss through the invariance term
    # (every row of both views is in it), so one scalar test replaces two full scans of the
    # embeddings (12% of a TiCo loss call at batch 64, dim 128, on a CPU).
    if not torch.isfinite(loss):
        raise ValueError(
            "embeddings hold NaN or infinite values; the encoder diverged or the input is "
            "broken. Lower the learning rate, check the images, or use precision=32-true"
        )


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 2:
        raise ValueError(
            f"batch_size must be >= 2 for a covariance estimate, got {batch_size}; "
            "use a larger batch (and drop_last=True in the data loader)"
        )


class TiCoLoss(nn.Module):
    """Transformation invariance and covariance contrast, TiCo Eq. (4)-(5).

    Args:
        dim: embedding dimension; C is a (dim, dim) buffer, saved in ``state_dict`` and moved
            with the module.
        beta: decay of the running matrix C.
        rho: weight of the covariance contrast term.
        batch_gradient: whether the current batch's contribution (1 - beta) z_a^T z_a / N to C
            carries gradient. The paper's Fig. 1 draws C as a constant for the update, and
            lightly detaches it; the sayannag reimplementation lets the gradient through.
        symmetric: use both views as queries: C is updated with the second moments of z_a and
            z_b together, and the covariance term averages over both views.
        gather_distributed: gather embeddings across processes (with gradient) first.
    """

    covariance: torch.Tensor

    def __init__(
        self,
        dim: int,
        beta: float = 0.9,  # decay of C; TiCo Sec. 4, as read by lightly and sayannag
        rho: float = 8.0,  # covariance term weight; lightly's default, sayannag's is 20
        batch_gradient: bool = False,
        symmetric: bool = False,
        gather_distributed: bool = False,
    ):
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must be in [0, 1), got {beta}")
        if rho < 0:
            raise ValueError(f"rho must be >= 0, got {rho}")
        self.dim = dim
        self.beta = beta
        self.rho = rho
        self.batch_gradient = batch_gradient
        self.symmetric = symmetric
        self.gather_distributed = gather_distributed
        # C starts at zero (TiCo Algorithm 1); fp32 whatever the autocast precision
        self.register_buffer("covariance", torch.zeros(dim, dim))

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, beta={self.beta}, rho={self.rho}, "
            f"batch_gradient={self.batch_gradient}, symmetric={self.symmetric}"
        )

    def forward(
        self,
        z_a: torch.Tensor,
        z_b: torch.Tensor,
        update_covariance: bool = True,
        symmetric: bool | None = None,
    ) -> torch.Tensor:
        """The TiCo loss of queries ``z_a`` (batch, dim) against keys ``z_b`` (batch, dim).

        ``update_covariance=False`` computes the loss without changing C (for evaluation).
        ``symmetric`` overrides the module's setting for this call; a momentum target uses
        ``False`` and passes both pairs concatenated itself.
        """
        _check_embeddings(z_a, z_b)
        if z_a.shape[1] != self.dim:
            raise ValueError(
                f"embeddings have dimension {z_a.shape[1]} but this TiCoLoss was built for "
                f"dim={self.dim}; set the loss dim to the projector's output size"
            )
        symmetric = self.symmetric if symmetric is None else symmetric

        # the global batch: every process's embeddings, at least in the precision of C (fp32)
        dtype = torch.promote_types(z_a.dtype, self.covariance.dtype)
        z_a, z_b = z_a.to(dtype), z_b.to(dtype)
        if self.gather_distributed:
            z_a, z_b = gather_with_gradient(z_a), gather_with_gradient(z_b)
        _check_batch_size(z_a.shape[0])

        # symmetric form: each view is the query once and the key once
        if symmetric:
            z_a, z_b = torch.cat([z_a, z_b]), torch.cat([z_b, z_a])

        # embeddings on the unit sphere
        z_a = F.normalize(z_a, dim=1)  # (N, dim)
        z_b = F.normalize(z_b, dim=1)  # (N, dim)

        # running second-moment matrix: C = beta * C + (1 - beta) * B with B = z_a^T z_a / N
        batch_moment = z_a.T @ z_a / z_a.shape[0]  # (dim, dim)
        if not self.batch_gradient:
            batch_moment = batch_moment.detach()
        covariance = self.beta * self.covariance + (1.0 - self.beta) * batch_moment

        # transformation invariance term
        invariance = 1.0 - (z_a * z_b).sum(dim=1).mean()

        # covariance contrast term: mean_i z_i^T C z_i
        contrast = ((z_a @ covariance) * z_a).sum(dim=1).mean()

        loss = invariance + self.rho * contrast
        _check_finite(loss)  # before C is updated: bad embeddings never reach the buffer
        if update_covariance and self.training:
            self.covariance.copy_(covariance.detach())
        return loss


def off_diagonal(matrix: torch.Tensor) -> torch.Tensor:
    """The off-diagonal entries of a square matrix, flattened."""
    n = matrix.shape[0]
    return matrix.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


class BarlowTwinsLoss(nn.Module):
    """Barlow Twins, Zbontar et al. 2021, Eq. (1): the cross-correlation of the two views'
    batch-standardised embeddings is pushed towards the identity.

        c = z_a_std^T z_b_std / N
        loss = sum_i (1 - c_ii)^2 + lambda_offdiag * sum_{i != j} c_ij^2
    """

    def __init__(
        self,
        lambda_offdiag: float = 5.1e-3,  # Barlow Twins Sec. 4 (lambda = 0.0051 at 8192 dims)
        gather_distributed: bool = False,
    ):
        super().__init__()
        if lambda_offdiag < 0:
            raise ValueError(f"lambda_offdiag must be >= 0, got {lambda_offdiag}")
        self.lambda_offdiag = lambda_offdiag
        self.gather_distributed = gather_distributed

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor, **_: object) -> torch.Tensor:
        _check_embeddings(z_a, z_b)
        dtype = torch.promote_types(z_a.dtype, torch.float32)
        z_a, z_b = z_a.to(dtype), z_b.to(dtype)
        if self.gather_distributed:
            z_a, z_b = gather_with_gradient(z_a), gather_with_gradient(z_b)
        _check_batch_size(z_a.shape[0])

        # standardise each dimension over the (global) batch, as BatchNorm1d(affine=False)
        z_a = F.batch_norm(z_a, None, None, training=True)
        z_b = F.batch_norm(z_b, None, None, training=True)

        # cross-correlation of the two views
        cross_correlation = z_a.T @ z_b / z_a.shape[0]  # (dim, dim)

        # invariance (diagonal to 1) and redundancy reduction (off-diagonal to 0)
        invariance = (1.0 - torch.diagonal(cross_correlation)).pow(2).sum()
        redundancy = off_diagonal(cross_correlation).pow(2).sum()
        loss = invariance + self.lambda_offdiag * redundancy
        _check_finite(loss)
        return loss
