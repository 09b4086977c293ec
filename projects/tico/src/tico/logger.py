"""Lightning logging into the run folder's metrics.jsonl, and a throughput callback."""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning as L
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from shared.runs import Run

log = logging.getLogger(__name__)


class RunLogger(Logger):
    """Appends every logged metric dict to ``<run>/metrics.jsonl`` (shared.runs.Run)."""

    def __init__(self, run: Run):
        super().__init__()
        self.run = run

    @property
    def name(self) -> str:
        return "tico"

    @property
    def version(self) -> str:
        return self.run.path.name

    @property
    def save_dir(self) -> str:
        return str(self.run.path)

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.run.log_metrics(step=int(step or 0), **metrics)

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """The resolved config is already in the run folder's config.yaml."""


class Throughput(L.Callback):
    """Logs training images (view pairs) per second and steps per second for each epoch."""

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._start = time.perf_counter()
        self._step = trainer.global_step

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        seconds = time.perf_counter() - self._start
        steps = trainer.global_step - self._step
        if steps == 0 or seconds <= 0:
            return
        batch = module.config.data.batch_size * trainer.world_size
        module.log_dict(
            {"perf/steps_per_s": steps / seconds, "perf/images_per_s": steps * batch / seconds},
            rank_zero_only=True,
        )
        log.info(
            "epoch %d: %d steps in %.1f s, %.2f steps/s, %.1f images/s",
            trainer.current_epoch,
            steps,
            seconds,
            steps / seconds,
            steps * batch / seconds,
        )
