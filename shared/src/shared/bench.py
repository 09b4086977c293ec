"""``shared bench``: throughput of the metrics and loaders at the sizes the papers use."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from shared.device import Timer, peak_memory_mb, select_device
from shared.runs import Run, markdown_table

log = logging.getLogger(__name__)


@dataclass
class BenchConfig:
    device: str = "auto"
    seed: int = 0


def run_bench(runs_root: Path | None = None) -> list[dict]:
    """Time each metric once on paper-sized random inputs; write a table to runs/shared/bench."""
    from shared.data.cifar10 import load_cifar10
    from shared.metrics import gauc, interaction_matrix, knn_accuracy, topk_ranking_metrics

    config = BenchConfig()
    device = select_device(config.device)
    generator = torch.Generator().manual_seed(config.seed)
    rows = []

    def timed(name: str, items: int, unit: str, work) -> None:
        with Timer(items=items, device=device) as timer:
            work()
        rows.append(
            {
                "what": name,
                "seconds": timer.seconds,
                "throughput": f"{timer.items_per_second:,.0f} {unit}/s",
            }
        )
        log.info("%s: %.3f s", name, timer.seconds)

    # full ranking at DiffRec's ML-1M size: 5,949 users x 2,810 items, 400k seen pairs
    users, items = 5_949, 2_810
    scores = torch.rand(users, items, generator=generator).to(device)
    seen = interaction_matrix(
        torch.randint(users, (400_000,), generator=generator),
        torch.randint(items, (400_000,), generator=generator),
        users,
        items,
    )
    test = interaction_matrix(
        torch.randint(users, (57_000,), generator=generator),
        torch.randint(items, (57_000,), generator=generator),
        users,
        items,
    )
    timed(
        "Recall/NDCG@10,20, ML-1M size",
        users,
        "users",
        lambda: topk_ranking_metrics(scores, seen, test, ks=(10, 20)),
    )

    # GAUC over one million impressions of 100k users
    rows_n = 1_000_000
    labels = torch.randint(2, (rows_n,), generator=generator).numpy()
    predictions = torch.rand(rows_n, generator=generator).numpy()
    groups = torch.randint(100_000, (rows_n,), generator=generator).numpy()
    timed(
        "GAUC, 1M impressions, 100k users",
        rows_n,
        "rows",
        lambda: gauc(labels, predictions, groups),
    )

    # weighted kNN at CIFAR-10 size: 50k train and 10k test features of 512 dimensions
    train = torch.randn(50_000, 512, generator=generator).to(device)
    test_features = torch.randn(10_000, 512, generator=generator).to(device)
    train_labels = torch.randint(10, (50_000,), generator=generator).to(device)
    test_labels = torch.randint(10, (10_000,), generator=generator).to(device)
    timed(
        "weighted kNN (k=200), 50k x 10k x 512",
        10_000,
        "queries",
        lambda: knn_accuracy(train, train_labels, test_features, test_labels),
    )

    # decoding the embedded CIFAR-10 training subset
    timed(
        "CIFAR-10 embedded train subset, decode",
        5_000,
        "images",
        lambda: load_cifar10("train", source="embedded"),
    )

    run = Run.start("shared", "bench", config, root=runs_root, resume=True)
    memory = peak_memory_mb(device)
    markdown = "\n".join(
        [
            f"# shared: metric and loader throughput on {device}",
            "",
            markdown_table(rows, digits=3),
            "",
            f"Peak memory: {memory}.",
        ]
    )
    run.write_results({"rows": rows, "memory": memory, "device": str(device)}, markdown)
    print(markdown)
    return rows
