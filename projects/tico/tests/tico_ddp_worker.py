"""Two CPU processes on gloo train a tiny encoder with a gathered loss; each saves what it saw.

Run as a script by test_loss.py: ``python tico_ddp_worker.py OUT_DIR``; it trains every
configuration of ``CASES`` in one process group (starting processes is the slow part) and
writes ``OUT_DIR/<case>-rank<r>.pt``. The data and the initial weights are the same as in
the test's single-process reference.
"""

import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from tico.loss import BarlowTwinsLoss, TiCoLoss

WORLD_SIZE = 2
GLOBAL_BATCH = 8
STEPS = 3
# (method, symmetric, batch_gradient)
CASES = [("tico", False, False), ("tico", True, True), ("barlow_twins", False, False)]


def case_name(method: str, symmetric: bool, batch_gradient: bool) -> str:
    return f"{method}-sym{int(symmetric)}-grad{int(batch_gradient)}"


def make_problem() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    encoder = nn.Linear(6, 4)
    views_a = torch.randn(STEPS, GLOBAL_BATCH, 6)
    views_b = views_a + 0.3 * torch.randn(STEPS, GLOBAL_BATCH, 6)
    return encoder, views_a, views_b


def make_loss(method: str, symmetric: bool, batch_gradient: bool, gather: bool) -> nn.Module:
    if method == "tico":
        return TiCoLoss(
            4, symmetric=symmetric, batch_gradient=batch_gradient, gather_distributed=gather
        )
    return BarlowTwinsLoss(gather_distributed=gather)


def train(encoder, loss_fn, views_a, views_b, rows=slice(None)) -> dict[str, list]:
    optimizer = torch.optim.SGD(encoder.parameters(), lr=0.1)
    record = {"loss": [], "grad": [], "covariance": []}
    for step in range(STEPS):
        optimizer.zero_grad()
        loss = loss_fn(encoder(views_a[step, rows]), encoder(views_b[step, rows]))
        loss.backward()
        module = getattr(encoder, "module", encoder)
        record["loss"].append(loss.detach().clone())
        record["grad"].append(module.weight.grad.clone())
        if hasattr(loss_fn, "covariance"):
            record["covariance"].append(loss_fn.covariance.clone())
        optimizer.step()
    return record


def worker(rank: int, out_dir: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{out_dir}/rendezvous", rank=rank, world_size=WORLD_SIZE
    )
    per_rank = GLOBAL_BATCH // WORLD_SIZE
    rows = slice(rank * per_rank, (rank + 1) * per_rank)
    for case in CASES:
        encoder, views_a, views_b = make_problem()
        loss_fn = make_loss(*case, gather=True)
        record = train(DistributedDataParallel(encoder), loss_fn, views_a, views_b, rows)
        torch.save(record, Path(out_dir) / f"{case_name(*case)}-rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(worker, args=(sys.argv[1],), nprocs=WORLD_SIZE, join=True)
