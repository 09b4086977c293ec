import json

import pytest


def test_bench_reports_ratios_against_lightly_and_writes_them(tiny, runs_root):
    pytest.importorskip("lightly")
    from tico.bench import bench

    config = tiny("bench.steps=2", "bench.warmup_steps=1", "bench.repeats=1", "bench.knn_steps=2")
    markdown = bench(config)
    results = json.loads((runs_root / "tico" / "bench" / "results.json").read_text())
    assert results["train_steps_ratio"] > 0
    assert results["loss_only_ratio"] > 0
    assert set(results["knn_acc"]) == {"ours", "theirs"}
    # same initialisation, same batches, same mathematics: the same kNN accuracy
    assert results["knn_difference"] == pytest.approx(0.0, abs=0.02)
    assert results["full_step_images_per_s"] > 0
    assert "ours/lightly" in markdown
    assert (runs_root / "tico" / "bench" / "results.md").exists()
