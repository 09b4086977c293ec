"""RecBole peer: DiffRec's split as atomic files, its settings, and reading its driver's output.

None of these needs recbole installed: they check the parts bench.py computes itself.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from diffusion_rec.bench import (
    _RECBOLE_DRIVER,
    pairs_digest,
    parse_recbole_output,
    read_atomic_file,
    recbole_hidden_dims,
    recbole_settings,
    write_atomic_files,
)
from diffusion_rec.config import Config
from diffusion_rec.denoiser import DiffRecDenoiser


def test_atomic_files_round_trip_the_exact_pairs_and_ids(tmp_path):
    rng = np.random.default_rng(0)
    # ids with gaps and a user without training items: nothing may be renumbered
    splits = {
        "train": np.array([[0, 5], [0, 1], [7, 2809], [3, 0]]),
        "valid": np.array([[7, 4], [11, 6]]),
        "test": rng.integers(0, 3000, size=(50, 2)),
    }
    paths = write_atomic_files(splits, tmp_path / "ml-1m_clean", "ml-1m_clean")
    assert sorted(p.name for p in paths.values()) == [
        "ml-1m_clean.test.inter",
        "ml-1m_clean.train.inter",
        "ml-1m_clean.valid.inter",
    ]
    for split, pairs in splits.items():
        back = read_atomic_file(paths[split])
        np.testing.assert_array_equal(back, pairs)  # same pairs, same order, same ids
        assert back.dtype == np.int64
    assert paths["train"].read_text().splitlines()[:2] == ["user_id:token\titem_id:token", "0\t5"]


def test_atomic_file_reader_rejects_other_files(tmp_path):
    path = tmp_path / "x.inter"
    path.write_text("user:token\titem:token\n1\t2\n")
    with pytest.raises(ValueError, match="not a user_id/item_id atomic file"):
        read_atomic_file(path)


def test_pairs_digest_ignores_order_and_sees_a_changed_pair():
    pairs = np.array([[0, 1], [2, 3], [5, 8]])
    assert pairs_digest(pairs) == pairs_digest(pairs[::-1])
    assert pairs_digest(pairs)[0] == 3
    assert pairs_digest(pairs) != pairs_digest(np.array([[0, 1], [2, 3], [5, 9]]))
    # the driver computes the same fingerprint inside RecBole's process
    assert "a[:, 0] * 1000003 + a[:, 1]).sum() % 2**61" in _RECBOLE_DRIVER


def test_recbole_settings_are_the_authors_ml1m_ones_on_our_split(tmp_path):
    config = Config()
    config.bench.epochs = 10
    settings = recbole_settings(config, n_items=2810, use_gpu=False, folder=tmp_path)
    assert settings["benchmark_filename"] == ["train", "valid", "test"]
    assert settings["eval_args"]["mode"] == "full"
    assert settings["metrics"] == ["Recall", "NDCG"]
    assert settings["topk"] == [10, 20]
    assert settings["valid_metric"] == "Recall@20"
    assert settings["epochs"] == 10
    assert settings["eval_step"] == 5
    assert settings["stopping_step"] == 4  # 20 epochs without gain, as ours
    expected = {
        "steps": 40,
        "noise_scale": 0.005,
        "noise_min": 0.005,
        "noise_max": 0.01,
        "noise_schedule": "linear-var",
        "sampling_steps": 0,
        "reweight": True,
        "mean_type": "x0",
        "dims_dnn": [600, 200, 600],
        "embedding_size": 10,
        "learning_rate": 0.001,
        "train_batch_size": 400,
        "weight_decay": 0.0,
        "beta_fixed": True,
        "history_num_per_term": 10,
        "seed": 1,
    }
    assert {k: settings[k] for k in expected} == expected
    assert settings["eval_batch_size"] == 2048 * 2811  # users per batch x scores per user
    json.dumps(settings)  # the driver reads it as JSON


def test_recbole_builds_the_same_denoiser_widths_as_ours():
    # RecBole's DNN is [items] + dims_dnn + [items] (+ emb on the input): the benchmark must
    # hand it the widths of our denoiser, or it times a smaller network
    for dims in ([200, 600], [1000], [300, 600, 1000]):
        ours = DiffRecDenoiser(50, dims, emb_size=10)
        widths = [layer.out_features for layer in [*ours.encoder, *ours.decoder]]
        assert [*recbole_hidden_dims(dims), 50] == widths


DRIVER_OUTPUT = """\
05 Jan 10:00    INFO  epoch 0 training [time: 2.64s, train loss: 80.1]
RECBOLE_RESULT {"recbole": "1.2.1", "torch": "2.15.0", "threads": 1, "n_users": 5950, \
"n_items": 2811, "splits": {"train": [4, 99], "valid": [2, 7], "test": [1, 3]}, \
"train_seconds": [3.0, 2.0, 4.0, 3.0, 3.0, 2.5, 2.5, 3.5, 3.0, 3.5], \
"valid": [{"epoch": 5, "score": 0.2, "seconds": 20.0, "since_fit": 35.0, \
"result": {"recall@10": 0.1, "recall@20": 0.2, "ndcg@10": 0.09, "ndcg@20": 0.11}}, \
{"epoch": 10, "score": 0.2, "seconds": 22.0, "since_fit": 72.0, \
"result": {"recall@10": 0.11, "recall@20": 0.2, "ndcg@10": 0.1, "ndcg@20": 0.12}}], \
"fit_seconds": 72.5, "test_seconds": 19.0, "seconds_in_driver": 99.0, \
"test": {"recall@10": 0.1007, "recall@20": 0.1697, "ndcg@10": 0.0862, "ndcg@20": 0.1094}}
"""


def test_recbole_output_gives_times_the_best_validation_and_test_metrics():
    parsed = parse_recbole_output(DRIVER_OUTPUT)
    assert parsed["epochs"] == 10
    assert parsed["seconds_per_epoch"] == 3.0
    assert parsed["seconds_fit"] == 72.5
    assert parsed["seconds_per_validation"] == 21.0
    # equal scores: RecBole keeps the first (it updates only on a strictly better score)
    assert parsed["best_epoch"] == 5
    assert parsed["seconds_to_best"] == 35.0
    assert parsed["valid"]["recall_rel@20"] == 0.2
    assert parsed["test"] == {
        "recall_rel@10": 0.1007,
        "recall_rel@20": 0.1697,
        "ndcg@10": 0.0862,
        "ndcg@20": 0.1094,
    }
    assert parsed["splits"]["train"] == [4, 99]
    assert parsed["validations"] == [
        {"epoch": 5, "recall_rel@20": 0.2, "since_fit": 35.0},
        {"epoch": 10, "recall_rel@20": 0.2, "since_fit": 72.0},
    ]


def test_recbole_output_without_a_result_parses_to_nothing():
    assert parse_recbole_output("Traceback (most recent call last):\n  boom\n") == {}


def test_driver_and_shims_are_valid_python_and_shim_only_their_process(tmp_path):
    import subprocess
    import sys

    from diffusion_rec.bench import _RECBOLE_SITECUSTOMIZE

    compile(_RECBOLE_DRIVER, "driver.py", "exec")
    (tmp_path / "sitecustomize.py").write_text(_RECBOLE_SITECUSTOMIZE)
    probe = (
        "import numpy as np, torch; "
        "print(np.float_ is np.float64, np.unicode_ is np.str_, hasattr(torch.load, '__wrapped__'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env={"PYTHONPATH": str(tmp_path), "PATH": "", "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.split() == ["True", "True", "True"]
    assert "float_" not in np.__dict__  # this process is untouched
