"""The whole reproduction at a toy size: every stage runs and the report is written."""

import json
from pathlib import Path

from openr.config import OpenRConfig
from openr.experiment import reproduce
from shared.config import load_config

SMOKE = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"


def test_reproduce_runs_every_stage_and_writes_its_report(tmp_path, monkeypatch):
    monkeypatch.setenv("PAPERSTACK_RUNS", str(tmp_path))
    config = load_config(
        OpenRConfig,
        SMOKE,
        [
            "sft.train_problems=300",
            "sft.epochs=1",
            "sft.hidden_size=32",
            "sft.layers=1",
            "label.problems=6",
            "label.solutions_per_problem=2",
            "label.rollouts=2",
            "train_prm.epochs=1",
            "task.limit=4",
            "search.budgets=[1,2]",
            "assert_budget=2",
            "search.methods=[majority_vote,best_of_n,beam_search,dvts,mcts]",
        ],
    )
    results = reproduce(config)
    folder = tmp_path / "openr" / "reproduce-smoke"
    saved = json.loads((folder / "results.json").read_text())
    assert saved["passed"] is results["passed"]
    assert {r["method"] for r in saved["rows"]} >= {
        "majority_vote",
        "best_of_n",
        "beam_search",
        "dvts",
        "mcts",
        "pass_at_n",
    }
    assert (folder / "accuracy_vs_budget.png").stat().st_size > 1000
    assert (
        "![accuracy against budget](accuracy_vs_budget.png)" in (folder / "results.md").read_text()
    )
    # a second call with --resume reuses the policy, labels and PRM
    again = reproduce(config, resume=True)
    assert again["rows"] == results["rows"]
    assert "sft_seconds" not in again["timings"]
