"""The data and metric self-checks: every dataset loads with its known size, every metric
gives its hand-computed value. ``shared selfcheck`` writes them to ``runs/shared/selfcheck``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from shared.runs import Run, markdown_table

log = logging.getLogger(__name__)


@dataclass
class SelfcheckConfig:
    """The self-check has no settings; the empty config keeps the run folder's format."""


def _sizes(full: int, embedded: int) -> Callable[[str], int]:
    return lambda origin: embedded if origin == "embedded" else full


def _dataset_rows() -> tuple[list[dict], dict]:
    """Load every dataset; one row per dataset with its origin, size and expected size."""
    from shared.data.cifar10 import load_cifar10
    from shared.data.coco import coco_captions_spec, load_coco_captions
    from shared.data.ctr import load_ctr_samples
    from shared.data.locations import DatasetSpec, locate
    from shared.data.math_text import gsm8k_spec, load_gsm8k, load_math, math_spec
    from shared.data.movielens import load_diffrec, load_ml100k

    rows, loaded = [], {}

    def check(
        name: str,
        load: Callable,
        size: Callable,
        expected: Callable[[str], int],
        spec: DatasetSpec | None = None,  # where to look up the origin of plain lists
    ) -> None:
        try:
            data = load()
        except Exception as error:  # a self-check reports every failure, then fails overall
            log.error("%s: %s", name, error)
            rows.append(
                {
                    "dataset": name,
                    "origin": "-",
                    "size": "-",
                    "expected": "-",
                    "ok": f"no: {type(error).__name__}",
                }
            )
            return
        origin = getattr(data, "origin", "") or (locate(spec).origin if spec else "")
        actual, wanted = size(data), expected(origin)
        loaded[name] = data
        rows.append(
            {
                "dataset": name,
                "origin": origin,
                "size": actual,
                "expected": wanted,
                "ok": "yes" if actual == wanted else "no",
            }
        )

    check("CIFAR-10 train images", lambda: load_cifar10("train"), len, _sizes(50_000, 5_000))
    check("CIFAR-10 test images", lambda: load_cifar10("test"), len, _sizes(10_000, 1_000))
    check("ML-100K interactions", load_ml100k, len, _sizes(100_000, 100_000))
    check(
        "DiffRec ML-1M clean train pairs",
        lambda: load_diffrec("ml-1m_clean"),
        lambda d: len(d.train),
        _sizes(403_277, 403_277),
    )
    check(
        "GSM8K test problems",
        lambda: load_gsm8k("test"),
        len,
        _sizes(1_319, 1_319),
        gsm8k_spec("test"),
    )
    check(
        "MATH500 problems",
        lambda: load_math("test500"),
        len,
        _sizes(500, 500),
        math_spec("test500"),
    )
    check(
        "COCO-mini captions (train + val)",
        lambda: load_coco_captions("train") + load_coco_captions("val"),
        lambda d: sum(len(image.captions) for image in d),
        _sizes(795, 795),
        coco_captions_spec("train"),
    )
    check(
        "Douban CTR samples",
        lambda: load_ctr_samples("douban"),
        lambda d: len(d.frame),
        _sizes(3_000, 3_000),
    )
    return rows, loaded


def _metric_rows() -> list[dict]:
    """Each metric on a tiny input whose value is worked out by hand in the comment."""
    from shared.metrics import (
        accuracy,
        answers_match,
        auc,
        gauc,
        image_text_recall,
        interaction_matrix,
        knn_accuracy,
        log_loss,
        topk_ranking_metrics,
    )

    # one user, five items scored 0.9 .. 0.5; item 0 was seen in training, items 2 and 4 are
    # relevant. After masking the top-2 list is [1, 2]: one hit at rank 2.
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5]])
    seen = interaction_matrix([0], [0], 1, 5)
    relevant = interaction_matrix([0, 0], [2, 4], 1, 5)
    ranking = topk_ranking_metrics(scores, seen, relevant, ks=(2,))
    ranking_all = topk_ranking_metrics(
        scores, seen, relevant, ks=(2,), recall_denominator="relevant"
    )
    ndcg = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    # two well separated classes: every neighbour vote is right
    features = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = torch.tensor([0, 0, 1, 1])
    checks = [
        (
            "accuracy",
            accuracy(torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]]), torch.tensor([1, 0, 0])),
            2 / 3,
        ),
        ("weighted kNN accuracy", knn_accuracy(features, labels, features, labels, k=2), 1.0),
        ("Recall@2 (min(K, |R|))", ranking["recall@2"], 0.5),
        ("Recall@2 (|R|)", ranking_all["recall@2"], 0.5),
        ("NDCG@2", ranking["ndcg@2"], ndcg),
        # positives 0.35, 0.8 against negatives 0.1, 0.4: 3 of 4 pairs ordered right
        ("AUC", auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 0.75),
        ("LogLoss", log_loss([1, 0], [0.8, 0.3]), -(math.log(0.8) + math.log(0.7)) / 2),
        # user a: AUC 1 over 2 impressions; user b: AUC 0.5 over 4; (2*1 + 4*0.5) / 6
        (
            "GAUC",
            gauc(
                [0, 1, 0, 1, 1, 0], [0.1, 0.9, 0.3, 0.3, 0.8, 0.8], ["a", "a", "b", "b", "b", "b"]
            )["gauc"],
            4 / 6,
        ),
        ("image-text R@1", image_text_recall(torch.eye(3), [0, 1, 2], ks=(1,))["t2i_r1"], 100.0),
        ("math answer 1/2 = 0.5", float(answers_match("\\frac{1}{2}", "0.5")), 1.0),
    ]
    return [
        {
            "metric": name,
            "value": float(value),
            "expected": float(expected),
            "ok": "yes" if math.isclose(value, expected, rel_tol=1e-6, abs_tol=1e-9) else "no",
        }
        for name, value, expected in checks
    ]


def _plot(loaded: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    cifar = loaded.get("CIFAR-10 train images")
    if cifar is not None:
        spread = torch.arange(32) * (len(cifar) // 32)  # the subset is ordered by class
        grid = (
            cifar.images[spread]
            .reshape(4, 8, 3, 32, 32)
            .permute(0, 3, 1, 4, 2)
            .reshape(128, 256, 3)
        )
        axes[0].imshow(grid.numpy())
        axes[0].set_title(f"CIFAR-10 train ({cifar.origin}), 32 spread over classes")
        axes[0].axis("off")
        counts = np.bincount(cifar.labels.numpy(), minlength=len(cifar.classes))
        axes[1].bar(range(len(counts)), counts)
        axes[1].set_xticks(range(len(counts)), cifar.classes, rotation=60, fontsize=8)
        axes[1].set_title("CIFAR-10 train images per class")
    movielens = loaded.get("ML-100K interactions")
    if movielens is not None:
        ratings = movielens.frame["rating"].value_counts().sort_index()
        axes[2].bar(ratings.index.to_numpy(dtype=float), ratings.to_numpy())
        axes[2].set_xlabel("rating")
        axes[2].set_title("ML-100K ratings")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def run_selfcheck(runs_root: Path | None = None) -> bool:
    """Run every check, write ``results.md``, ``results.json`` and a plot; True when all pass."""
    run = Run.start("shared", "selfcheck", SelfcheckConfig(), root=runs_root, resume=True)
    dataset_rows, loaded = _dataset_rows()
    metric_rows = _metric_rows()
    _plot(loaded, run.path / "data.png")
    passed = all(row["ok"] == "yes" for row in dataset_rows + metric_rows)
    markdown = "\n".join(
        [
            "# Data and metric self-checks",
            "",
            f"All checks passed: **{'yes' if passed else 'no'}**. Sizes are those of the embedded "
            "subsets unless `PAPERSTACK_DATA` points at the full files (origin `data-dir`).",
            "",
            "## Datasets",
            "",
            markdown_table(dataset_rows),
            "",
            "## Metrics on hand-computed inputs",
            "",
            markdown_table(metric_rows, digits=6),
            "",
            "![data](data.png)",
        ]
    )
    run.write_results(
        {"passed": passed, "datasets": dataset_rows, "metrics": metric_rows}, markdown
    )
    for row in dataset_rows + metric_rows:
        log.info("%-35s %s", row.get("dataset") or row.get("metric"), row["ok"])
    return passed
