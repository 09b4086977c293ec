"""The openr command line: config validation and one-line errors for bad input."""

import pytest

from openr.cli import main
from openr.config import OpenRConfig, SearchConfig


def run(argv, capsys):
    code = main(argv)
    return code, capsys.readouterr().err


def test_a_missing_policy_path_is_one_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PAPERSTACK_RUNS", str(tmp_path))
    code, err = run(
        ["search", "policy.model=/nonexistent/policy", "scorer.kind=none", "task.limit=2"], capsys
    )
    assert code == 2
    assert "model path /nonexistent/policy does not exist" in err


def test_a_tokenizer_without_chat_template_is_refused(tmp_path, capsys, monkeypatch):
    from openr.arith import arith_tokenizer

    tokenizer = arith_tokenizer()
    tokenizer.chat_template = None
    tokenizer.save_pretrained(tmp_path / "plain")
    monkeypatch.setenv("PAPERSTACK_RUNS", str(tmp_path))
    code, err = run(["search", f"policy.model={tmp_path / 'plain'}", "scorer.kind=none"], capsys)
    assert code == 2
    assert "has no chat template" in err


def test_unknown_config_keys_and_bad_values_name_the_key(capsys):
    with pytest.raises(SystemExit) as error:
        main(["evaluate", "search.beam_width=3"])
    assert "beam_width" in str(error.value)
    with pytest.raises(SystemExit) as error:
        main(["evaluate", "search.methods=[greedy]"])
    assert "search.methods has unknown ['greedy']" in str(error.value)


def test_config_validation_messages_name_the_fix():
    with pytest.raises(ValueError, match=r"search\.budgets must be positive"):
        SearchConfig(budgets=[0, 4])
    with pytest.raises(ValueError, match="scale must be smoke, cpu or paper"):
        OpenRConfig(scale="huge")


@pytest.mark.parametrize("scale", ["smoke", "cpu", "paper"])
def test_every_shipped_config_loads(scale):
    from pathlib import Path

    from shared.config import load_config

    path = Path(__file__).resolve().parents[1] / "configs" / f"{scale}.yaml"
    config = load_config(OpenRConfig, path)
    assert config.scale == scale
    assert config.assert_budget in config.search.budgets


@pytest.mark.parametrize(("passed", "status"), [(True, 0), (False, 1)])
def test_reproduce_exits_1_when_its_check_fails(monkeypatch, passed, status):
    # the experiment itself is tested in test_reproduce.py; here only the command's status
    import openr.experiment

    monkeypatch.setattr(
        openr.experiment, "reproduce", lambda config, resume: {"passed": passed, "checks": {}}
    )
    assert main(["reproduce"]) == status
