"""Training end to end on a real ML-1M slice: the paper's effect, resuming, the CLI, parity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from diffusion_rec.cli import main
from diffusion_rec.config import Config
from diffusion_rec.training import build_model, fit_and_evaluate
from shared.runs import Run


def _quick(model: str, **train) -> Config:
    config = Config(model=model)
    config.diffusion.steps = 5  # a short chain and a narrow MLP keep CI fast
    config.denoiser.dims = [64]
    config.train.max_epochs = train.get("max_epochs", 8)
    config.train.eval_every = train.get("eval_every", 4)
    config.train.batch_size = 100
    config.train.progress_bar = False
    return config


def test_diffrec_beats_most_popular_on_a_real_ml1m_slice(small_ml1m):
    popular = fit_and_evaluate(_quick("mostpop"), small_ml1m)
    diffrec = fit_and_evaluate(_quick("diffrec", max_epochs=6, eval_every=3), small_ml1m)
    assert diffrec["test"]["recall@20"] > popular["test"]["recall@20"]
    assert diffrec["best_epoch"] in (3, 6)


def test_l_diffrec_and_lt_diffrec_train_and_rank_all_items(small_ml1m):
    for model in ("ldiffrec", "ltdiffrec"):
        config = _quick(model, max_epochs=2, eval_every=2)
        result = fit_and_evaluate(config, small_ml1m)
        assert 0.0 < result["test"]["recall@20"] <= 1.0
        assert result["test"]["users"] > 500


def test_a_stopped_run_resumes_from_its_last_epoch(tmp_path, small_ml1m):
    config = _quick("diffrec", max_epochs=2, eval_every=2)
    run = Run.start("diffusion_rec", "resume", config, root=tmp_path)
    fit_and_evaluate(config, small_ml1m, run=run)
    assert (run.checkpoint_dir / "last.ckpt").exists()
    # the same run, allowed two more epochs, continues at epoch 3
    config.train.max_epochs = 4
    run = Run(run.path, run.config)
    result = fit_and_evaluate(config, small_ml1m, run=run, resume=True)
    epochs = [record["epoch"] for record in run.metrics()]
    assert epochs == [1, 2, 3, 4]
    assert result["epochs"] == 4


def test_the_parity_switch_keeps_reweighting_on_as_the_released_argparse_does(small_ml1m):
    config = _quick("diffrec")
    config.diffusion.reweight = False
    assert build_model(config, small_ml1m).reweight is False
    config.parity.bool_flags_from_strings = True
    assert build_model(config, small_ml1m).reweight is True


def test_l_diffrec_without_item_embeddings_is_a_clear_error(small_ml1m):
    data = small_ml1m.__class__(**{**small_ml1m.__dict__, "item_emb": None})
    with pytest.raises(ValueError, match=r"item_emb\.npy"):
        build_model(_quick("ldiffrec"), data)


def test_cli_trains_ease_and_writes_its_run_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PAPERSTACK_RUNS", str(tmp_path))
    code = main(["train", "model=ease", "name=ease-cli", "train.progress_bar=false"])
    assert code == 0
    results = json.loads((tmp_path / "diffusion_rec" / "ease-cli" / "results.json").read_text())
    assert results["test"]["recall@20"] > 0.15  # EASE is strong on ML-1M clean
    assert "ease-cli" in capsys.readouterr().out


def test_cli_reports_a_bad_override_in_one_line():
    with pytest.raises(SystemExit) as exited:
        main(["train", "model=nope"])
    assert "model must be one of" in str(exited.value.code)


@pytest.mark.parametrize(("passed", "status"), [(True, 0), (False, 1)])
def test_reproduce_exits_1_when_its_check_fails(monkeypatch, passed, status):
    # the experiment itself is tested in test_report.py; here only the command's status
    import diffusion_rec.experiment

    monkeypatch.setattr(
        diffusion_rec.experiment,
        "reproduce",
        lambda config, resume: {"passed": passed, "checks": {}},
    )
    assert main(["reproduce"]) == status


def test_train_applies_the_configs_model_settings_and_the_command_line_wins():
    import argparse

    from diffusion_rec.cli import with_experiment_overrides
    from shared.config import load_config

    cpu = str(Path(__file__).parents[1] / "configs" / "cpu.yaml")

    def config_for(*overrides: str):
        args = argparse.Namespace(config=cpu, overrides=list(overrides))
        return with_experiment_overrides(load_config(Config, cpu, list(overrides)), args)

    # configs/cpu.yaml trains L-DiffRec with lr 5e-4 and a [300] denoiser, as its table row
    ldiffrec = config_for("model=ldiffrec")
    assert (ldiffrec.train.lr, ldiffrec.denoiser.dims) == (0.0005, [300])
    assert config_for("model=ldiffrec", "train.lr=0.002").train.lr == 0.002
    noisy = config_for("model=diffrec", "data.dataset=ml-1m_noisy")
    assert (noisy.diffusion.steps, noisy.diffusion.noise_scale) == (5, 0.5)
    assert config_for("model=diffrec").train.lr == 0.001  # no override for plain DiffRec


def test_test_metrics_come_from_the_validation_pass_that_selected_the_checkpoint(
    tmp_path, small_ml1m
):
    from diffusion_rec.evaluation import evaluate
    from diffusion_rec.training import model_scorer

    # the selected checkpoint, ranked again from scratch, gives the reported metrics exactly
    config = _quick("diffrec", max_epochs=4, eval_every=2)
    run = Run.start("diffusion_rec", "select", config, root=tmp_path)
    result = fit_and_evaluate(config, small_ml1m, run=run)
    model = build_model(config, small_ml1m)
    state = torch.load(run.checkpoint_dir / "best.ckpt", map_location="cpu", weights_only=False)
    model.load_state_dict(state["state_dict"])
    fresh = evaluate(model_scorer(model, small_ml1m, torch.device("cpu")), small_ml1m)
    assert result["test"] == pytest.approx(fresh["test"], abs=1e-12)
    assert result["valid"] == pytest.approx(fresh["valid"], abs=1e-12)
    assert result["seconds_final_ranking"] < 0.01  # no second ranking pass ran
    # test metrics are never logged per epoch
    assert not any(key.startswith("test") for r in run.metrics() for key in r)
