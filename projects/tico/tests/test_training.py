import json

import pytest
import torch

import tico.logger
from tico.data import SelfSupervisedData
from tico.module import CheckpointMismatchError, SelfSupervised
from tico.training import evaluate_checkpoint, load_module, train


def test_training_writes_metrics_checkpoint_and_results_with_the_covariance_buffer(tiny, runs_root):
    results = train(tiny("name=unit"))
    run = runs_root / "tico" / "unit"
    assert (run / "config.yaml").exists()
    assert (run / "results.md").exists()
    saved = json.loads((run / "results.json").read_text())
    assert saved["steps"] == 2
    assert saved["images_seen"] == 64
    assert 0.0 <= saved["knn_acc"] <= 1.0
    assert 0.0 <= saved["linear_acc"] <= 1.0
    assert set(saved["semi_supervised"]) == {"0.01", "0.1"}
    assert saved["semi_supervised"]["0.1"]["labels"] == 20
    assert results["knn_acc"] == saved["knn_acc"]

    # the collapse monitor and the online probe were logged
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    keys = set().union(*metrics)
    assert {"collapse/batch_effective_rank", "collapse/running_c_effective_rank"} <= keys
    assert {"train/loss", "train/probe_acc", "val/probe_acc"} <= keys
    assert len(saved["spectra"]) == 1
    assert len(saved["spectra"][0]["embedding_eigenvalues"]) == 16

    # C travels in the checkpoint
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    covariance = checkpoint["state_dict"]["criterion.covariance"]
    assert covariance.shape == (16, 16)
    assert torch.count_nonzero(covariance) > 0


def test_a_crashed_run_resumes_from_its_last_checkpoint(tiny, runs_root, monkeypatch):
    config = tiny(
        "name=crash", "trainer.max_epochs=2", "trainer.max_steps=-1", "data.batch_size=100"
    )

    # crash at the start of the second epoch, after the first epoch's checkpoint
    def crash(self, trainer, module):
        if trainer.current_epoch == 1:
            raise RuntimeError("simulated crash")
        self._start, self._step = 0.0, trainer.global_step

    original = tico.logger.Throughput.on_train_epoch_start
    monkeypatch.setattr(tico.logger.Throughput, "on_train_epoch_start", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(config)
    checkpoint = runs_root / "tico" / "crash" / "checkpoints" / "last.ckpt"
    assert torch.load(checkpoint, weights_only=False)["global_step"] == 2
    monkeypatch.setattr(tico.logger.Throughput, "on_train_epoch_start", original)

    results = train(config, resume=True)
    assert results["steps"] == 4
    assert results["epochs"] == 2
    # resuming a finished run returns its results
    assert train(config, resume=True)["steps"] == 4


def test_barlow_twins_and_momentum_target_variants_train(tiny, runs_root):
    barlow = train(tiny("name=bt", "loss.method=barlow_twins"))
    assert barlow["method"] == "barlow_twins"
    assert barlow["steps"] == 2
    ema = train(tiny("name=ema", "model.momentum_target=true", "loss.symmetric=true"))
    assert ema["steps"] == 2


def test_momentum_target_moves_towards_the_online_network(tiny):
    config = tiny("model.momentum_target=true")
    module = SelfSupervised(config, num_classes=10)
    online_weight = module.backbone.conv1.weight
    target_weight = module.target.network[0].conv1.weight
    torch.testing.assert_close(online_weight, target_weight)
    with torch.no_grad():
        online_weight.add_(1.0)
    module.target.update(torch.nn.Sequential(module.backbone, module.projector), 0.5)
    torch.testing.assert_close(target_weight, online_weight - 0.5)


def test_nan_images_stop_training_with_a_clear_error(tiny):
    module = SelfSupervised(tiny(), num_classes=10)
    views = torch.full((4, 3, 32, 32), float("nan"))
    with pytest.raises(ValueError, match="NaN or infinite"):
        module._embeddings_and_loss(views, views)


def test_a_checkpoint_from_another_projector_size_is_a_clear_error(tiny, runs_root):
    train(tiny("name=proj"))
    checkpoint = runs_root / "tico" / "proj" / "checkpoints" / "last.ckpt"
    with pytest.raises(CheckpointMismatchError, match=r"model.projector=\[32, 16\]"):
        load_module(checkpoint, tiny("model.projector=[64,8]"), num_classes=10)
    # the right config loads, and evaluate writes its report beside the run
    module = load_module(checkpoint, tiny(), num_classes=10)
    assert torch.count_nonzero(module.criterion.covariance) > 0
    results = evaluate_checkpoint(tiny(), checkpoint)
    assert (runs_root / "tico" / "proj" / "evaluation.json").exists()
    assert 0.0 <= results["knn_acc"] <= 1.0


def test_a_missing_or_foreign_checkpoint_is_a_clear_error(tiny, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_module(tmp_path / "none.ckpt", tiny(), 10)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": 1}, foreign)
    with pytest.raises(ValueError, match="not a Lightning checkpoint"):
        load_module(foreign, tiny(), 10)


def test_online_probe_sees_detached_features_only(tiny):
    module = SelfSupervised(tiny(), num_classes=10)
    datamodule = SelfSupervisedData(tiny())
    datamodule.setup()
    (view_a, _), labels, _ = next(iter(datamodule.train_dataloader()))
    features = module(view_a)
    probe_loss = torch.nn.functional.cross_entropy(module.probe(features.detach()), labels)
    probe_loss.backward()
    assert all(p.grad is None for p in module.backbone.parameters())
    assert module.probe.weight.grad is not None
