import pytest

from tico.cli import main
from tico.config import DataConfig, LossConfig


def test_a_bad_config_value_exits_with_the_key_named(capsys, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("loss:\n  rho: -1.0\n")
    with pytest.raises(SystemExit, match=r"loss\.rho must be >= 0"):
        main(["train", "--config", str(config)])


def test_an_unknown_key_exits_with_its_name():
    with pytest.raises(SystemExit, match=r"loss\.rhoo"):
        main(["train", "loss.rhoo=3"])


def test_a_batch_of_one_is_rejected_by_the_config():
    with pytest.raises(ValueError, match="batch_size must be >= 2"):
        DataConfig(batch_size=1)
    with pytest.raises(ValueError, match=r"loss\.method must be one of tico, barlow_twins"):
        LossConfig(method="simclr")


def test_evaluate_without_a_checkpoint_says_how_to_pass_one():
    with pytest.raises(SystemExit, match=r"checkpoint=PATH"):
        main(["evaluate"])


def test_a_checkpoint_that_does_not_fit_ends_with_one_line_naming_the_fix(
    tiny, runs_root, capsys, monkeypatch
):
    from tico.training import train

    train(tiny("name=fit"))
    checkpoint = runs_root / "tico" / "fit" / "checkpoints" / "last.ckpt"
    config = runs_root / "tico" / "fit" / "config.yaml"
    args = ["evaluate", "--config", str(config), f"checkpoint={checkpoint}"]
    assert main([*args, "model.projector=[64,8]"]) == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith("error: the checkpoint does not fit this model")
    assert "model.projector=[32, 16]" in error


@pytest.mark.parametrize(("passed", "status"), [(True, 0), (False, 1)])
def test_reproduce_exits_1_when_its_check_fails(monkeypatch, passed, status):
    # the experiment itself is tested in test_experiment.py; here only the command's status
    import tico.experiment

    monkeypatch.setattr(
        tico.experiment, "reproduce", lambda config, resume: {"passed": passed, "report": "r.md"}
    )
    assert main(["reproduce"]) == status
