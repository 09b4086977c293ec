"""Training end to end on a real ML-1M slice: the paper's effect, resuming, the CLI, parity."""

from __future__ import annotations

import json

import pytest

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
