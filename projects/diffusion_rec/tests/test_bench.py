"""Reading the released code's log, and the command that runs it."""

from __future__ import annotations

from pathlib import Path

from diffusion_rec.bench import (
    parse_released_log,
    released_command,
    released_validations,
    time_to_target,
)
from diffusion_rec.config import Config

# the released main.py ranks valid and test, prints them, then prints the epoch's cost
RELEASED_LOG = """\
Runing Epoch 001 train loss 12.3 costs 00: 00: 07
[Valid]: Precision: 0.1-0.2 Recall: 0.05-0.1 NDCG: 0.04-0.06 MRR: 0.1-0.1
[Test]: Precision: 0.1-0.2 Recall: 0.09-0.16 NDCG: 0.08-0.1 MRR: 0.1-0.1
Runing Epoch 002 train loss 11.0 costs 00: 00: 06
Runing Epoch 003 train loss 10.0 costs 00: 01: 05
End. Best Epoch 002
[Valid]: Precision: 0.1-0.2 Recall: 0.0505-0.1007 NDCG: 0.0401-0.0602 MRR: 0.1-0.1
[Test]: Precision: 0.1-0.2 Recall: 0.1007-0.1697 NDCG: 0.0862-0.1094 MRR: 0.1-0.1
"""


def test_released_log_gives_epoch_times_and_the_best_metrics():
    parsed = parse_released_log(RELEASED_LOG)
    assert parsed["epoch_seconds"] == [7, 6, 65]
    assert parsed["best_epoch"] == 2
    assert parsed["test"] == {
        "recall_rel@10": 0.1007,
        "recall_rel@20": 0.1697,
        "ndcg@10": 0.0862,
        "ndcg@20": 0.1094,
    }
    assert parsed["valid"]["recall_rel@20"] == 0.1007


def test_released_command_uses_the_authors_ml1m_settings():
    command = released_command(Config(), Path("/tmp/x"), Path("/data/ml-1m_clean"))
    assert "--steps=40" in command
    assert "--noise_scale=0.005" in command
    assert "--noise_min=0.005" in command
    assert "--noise_max=0.01" in command
    assert "--dims=[200,600]" in command
    assert "--batch_size=400" in command
    assert "--lr=0.001" in command


def test_bench_table_rounds_times_and_reports_ratios_as_a_table():
    from diffusion_rec.bench import _ratio_rows, _row

    row = _row("ours", 1.752, None, 105.93, 1504.2, {"recall_rel@20": 0.16761}, 20)
    assert (row["s/epoch (train)"], row["s to best valid"], row["s total"]) == ("1.8", "—", "105.9")
    assert (row["peak RSS MB"], row["R@20 (|R|)"], row["N@20"]) == ("1504", "0.1676", "—")
    ratios = _ratio_rows({"time ours/released (total)": 0.5707, "recall_rel@20 ours - x": -0.002})
    assert ratios == [
        {"measure": "time ours/released (total)", "value": "0.57"},
        {"measure": "recall_rel@20 ours - x", "value": "-0.0020"},
    ]


def test_released_validations_belong_to_the_epoch_printed_after_them():
    # the [Valid] line precedes its epoch's cost line; the repeat after "End." is not one
    assert released_validations(RELEASED_LOG) == [
        {"epoch": 2, "recall_rel@20": 0.1, "since_fit": 13}
    ]


def test_time_to_target_is_each_first_reach_of_the_lowest_best():
    curves = {
        "a": [
            {"recall_rel@20": 0.10, "since_fit": 10.0},
            {"recall_rel@20": 0.12, "since_fit": 20.0},
            {"recall_rel@20": 0.13, "since_fit": 30.0},
        ],
        "b": [
            {"recall_rel@20": 0.115, "since_fit": 5.0},
            {"recall_rel@20": 0.11, "since_fit": 9.0},
        ],
        "c": [],  # never validated: left out
    }
    target, reached = time_to_target(curves)
    assert target == 0.115  # b's best, the lowest best
    assert reached == {"a": 20.0, "b": 5.0}
    assert time_to_target({"c": []})[1] == {}
