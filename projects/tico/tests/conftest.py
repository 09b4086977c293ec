"""Shared fixtures: a tiny CPU config and the CIFAR-10 images it trains on."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import load_config
from tico.config import TiCoConfig

PROJECT = Path(__file__).resolve().parents[1]
CONFIGS = PROJECT / "configs"

TINY = [
    "data.dataset=cifar10",
    "data.train_images=200",
    "data.test_images=100",
    "data.image_size=32",
    "data.batch_size=32",
    "data.eval_batch_size=100",
    "data.num_workers=0",
    "augment.blur_prob=[0.0,0.0]",
    "model.backbone=resnet18",
    "model.stem=cifar_stride2",
    "model.width=8",
    "model.projector=[32,16]",
    "model.channels_last=false",
    "optim.name=sgd",
    "optim.lr=0.1",
    "optim.warmup_epochs=0",
    "trainer.max_epochs=1",
    "trainer.max_steps=2",
    "trainer.accelerator=cpu",
    "trainer.log_every_n_steps=1",
    "trainer.threads=1",
    "eval.linear_max_iter=20",
    "eval.monitor_every_n_steps=1",
    "scale=smoke",
]


def tiny_config(*overrides: str) -> TiCoConfig:
    """A config that trains a width-8 ResNet-18 for a couple of steps on 200 real images."""
    return load_config(TiCoConfig, CONFIGS / "smoke.yaml", [*TINY, *overrides])


@pytest.fixture
def runs_root(tmp_path, monkeypatch):
    """Run folders go to a temporary directory."""
    monkeypatch.setenv("PAPERSTACK_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


@pytest.fixture
def tiny():
    """The factory of tiny configs: ``tiny("loss.method=barlow_twins")``."""
    return tiny_config
