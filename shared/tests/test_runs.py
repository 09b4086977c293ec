from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from shared.config import ConfigError
from shared.report import gather_report
from shared.runs import Run, RunExistsError, markdown_table


@dataclass
class Config:
    lr: float = 0.1
    steps: int = 10


def test_start_writes_the_resolved_config(tmp_path):
    run = Run.start("demo", "first", Config(lr=0.5), root=tmp_path)
    assert run.path == tmp_path / "demo" / "first"
    assert (run.path / "config.yaml").read_text() == "lr: 0.5\nsteps: 10\n"
    assert not run.finished


def test_existing_folder_is_not_overwritten_without_resume(tmp_path):
    Run.start("demo", "first", Config(), root=tmp_path)
    with pytest.raises(RunExistsError, match="--resume"):
        Run.start("demo", "first", Config(), root=tmp_path)


def test_resume_with_a_different_config_names_the_difference(tmp_path):
    Run.start("demo", "first", Config(), root=tmp_path)
    with pytest.raises(ConfigError, match=r"lr: 0.1 -> 0.2"):
        Run.start("demo", "first", Config(lr=0.2), root=tmp_path, resume=True)


def test_resume_keeps_metrics_and_cuts_a_half_written_line(tmp_path):
    run = Run.start("demo", "first", Config(), root=tmp_path)
    run.log_metrics(1, loss=2.0)
    run.log_metrics(2, loss=1.5)
    with open(run.metrics_path, "a") as handle:  # a crash in the middle of a write
        handle.write('{"step": 3, "lo')
    resumed = Run.start("demo", "first", Config(), root=tmp_path, resume=True)
    assert [record["loss"] for record in resumed.metrics()] == [2.0, 1.5]
    resumed.log_metrics(3, loss=1.0)
    assert [record["step"] for record in resumed.metrics()] == [1, 2, 3]


def test_results_are_written_as_json_and_markdown(tmp_path):
    run = Run.start("demo", "first", Config(), root=tmp_path)
    run.write_results({"accuracy": 0.5, "n": 3}, "# Results\n\n| a |\n")
    assert run.finished
    assert run.read_results() == {"accuracy": 0.5, "n": 3}
    assert (run.path / "results.md").read_text() == "# Results\n\n| a |\n"
    assert not list(run.path.glob(".*.tmp"))


def test_run_name_must_be_a_plain_folder_name(tmp_path):
    with pytest.raises(ValueError, match="plain folder name"):
        Run.start("demo", "../escape", Config(), root=tmp_path)


def test_markdown_table_rounds_floats_and_escapes_pipes():
    table = markdown_table([{"method": "a|b", "acc": 0.123456}, {"method": "c", "acc": 1.0}])
    assert table.splitlines() == [
        "| method | acc |",
        "| --- | --- |",
        "| a\\|b | 0.1235 |",
        "| c | 1.0000 |",
    ]


def test_report_gathers_results_and_relinks_plots(tmp_path):
    run = Run.start("tico", "reproduce-smoke", Config(), root=tmp_path)
    run.write_results({"passed": True}, "# TiCo\n\n![curve](curve.png)\n")
    report = gather_report(
        tmp_path, "smoke", [("tico", "reproduce-smoke"), ("vcr", "reproduce-smoke")]
    )
    text = report.read_text()
    assert "![curve](tico/reproduce-smoke/curve.png)" in text
    assert "## TiCo" in text  # headings demoted under the project's section
    assert "| vcr | no results |" in text
    assert json.loads((run.path / "results.json").read_text()) == {"passed": True}
