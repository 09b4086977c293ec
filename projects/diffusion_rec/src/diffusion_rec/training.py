"""Train and evaluate one recommender under DiffRec's protocol, with Lightning's Trainer.

Validation follows DiffRec's code: every ``eval_every`` epochs the model ranks all items for
every user (training items masked), the best validation Recall@20 is checkpointed, and
training stops after ``early_stop_epochs`` epochs without improvement. The ranking pass is a
callback rather than Lightning's validation loop because one pass scores all users in
large batches and feeds both Recall definitions.

Every model here scores a user from the training history (or the user id) whatever the
split, so the scores of a validation pass are also the test scores: the same pass computes
the test metrics (training + validation items masked), which are kept with the best
checkpoint and never logged or used for selection, as the released code evaluates test at
every validation. The selected checkpoint's test metrics are then those of that pass, and
no second ranking pass runs after training (it would recompute the same scores).
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from diffusion_rec.baselines import EASE, LightGCN, MostPopular, MultVAE
from diffusion_rec.config import DIFFUSION_MODELS, TEMPORAL_MODELS, Config
from diffusion_rec.data import RecData, dense_rows, load_dataset
from diffusion_rec.diffrec import DiffRecModule
from diffusion_rec.evaluation import evaluate
from diffusion_rec.latent import cluster_items
from shared.device import describe, peak_memory_mb, seed_everything, select_device, select_precision
from shared.device import set_threads as set_torch_threads
from shared.runs import Run

log = logging.getLogger(__name__)

SELECTION_METRIC = "recall@20"  # DiffRec selects the epoch by validation Recall@20


class HistoryRows(Dataset):
    """Users' history vectors; indexing with a list of users gives a dense (batch, items) tensor."""

    def __init__(self, matrix: torch.Tensor):
        self.matrix = matrix

    def __len__(self) -> int:
        return self.matrix.shape[0]

    def __getitem__(self, users: list[int]) -> torch.Tensor:
        return dense_rows(self.matrix, torch.as_tensor(users))


def history_loader(matrix: torch.Tensor, batch_size: int, shuffle: bool) -> DataLoader:
    sampler = (
        RandomSampler(range(matrix.shape[0]))
        if shuffle
        else SequentialSampler(range(matrix.shape[0]))
    )
    return DataLoader(
        HistoryRows(matrix),
        sampler=BatchSampler(sampler, batch_size, drop_last=False),
        batch_size=None,
    )


def model_scorer(model: Any, data: RecData, device: torch.device):
    """A function from user ids to (batch, items) scores on ``device``.

    Models with user embeddings (LightGCN) score by user id through ``score_users(users)``;
    every other model reads each user's training history through ``score(history)``.
    """
    if hasattr(model, "score_users"):
        return lambda users: model.score_users(users.to(device))
    inputs = data.train_input

    def score_users(users: torch.Tensor) -> torch.Tensor:
        history = dense_rows(inputs, users).to(device)
        return model.score(history)

    return score_users


@dataclass
class Timing:
    epoch_seconds: list[float] = field(default_factory=list)  # training time of each epoch
    eval_seconds: list[float] = field(default_factory=list)  # each validation ranking pass
    # every validation: epoch, both Recall@20 variants, wall clock since fit start
    validations: list[dict[str, float]] = field(default_factory=list)
    started: float = 0.0


class RankingValidation(Callback):
    """DiffRec's validation schedule: rank, keep the best checkpoint, stop early.

    Every ``every`` epochs all items are ranked for the validation users; a better
    ``selection`` metric saves ``best.ckpt``; ``patience_epochs`` epochs without one stop
    training. ``last.ckpt`` is written at each validation and at the end, so a crashed run
    resumes losing at most ``every`` epochs.
    """

    def __init__(
        self,
        data: RecData,
        every: int,
        patience_epochs: int,
        batch_size: int,
        checkpoint_dir: Path,
        run: Run | None,
        selection: str,
        timing: Timing,
    ):
        self.data, self.every, self.patience_epochs = data, every, patience_epochs
        self.batch_size, self.checkpoint_dir, self.run = batch_size, checkpoint_dir, run
        self.selection, self.timing = selection, timing
        self.best, self.best_epoch = -float("inf"), 0
        # valid and test metrics of the best checkpoint, from the pass that selected it
        self.best_metrics: dict[str, dict[str, float]] | None = None
        self._epoch_start = 0.0

    @property
    def best_path(self) -> Path:
        return self.checkpoint_dir / "best.ckpt"

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "best_metrics": self.best_metrics}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best, self.best_epoch = state_dict["best"], state_dict["best_epoch"]
        self.best_metrics = state_dict.get("best_metrics")

    def on_train_start(self, trainer, pl_module) -> None:
        self.timing.started = time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.timing.epoch_seconds.append(time.perf_counter() - self._epoch_start)
        epoch = trainer.current_epoch + 1
        loss = trainer.callback_metrics.get("train/loss")
        record: dict[str, float] = {"epoch": epoch}
        if loss is not None:
            record["train_loss"] = float(loss)
        if epoch % self.every == 0:
            start = time.perf_counter()
            scorer = model_scorer(pl_module, self.data, pl_module.device)
            ranked = evaluate(scorer, self.data, ("valid", "test"), self.batch_size)
            metrics = ranked["valid"]
            self.timing.eval_seconds.append(time.perf_counter() - start)
            self.timing.validations.append(
                {
                    "epoch": epoch,
                    "recall@20": metrics["recall@20"],
                    "recall_rel@20": metrics["recall_rel@20"],
                    "since_fit": time.perf_counter() - self.timing.started,
                }
            )
            record.update({f"valid_{key}": value for key, value in metrics.items()})
            value = metrics[self.selection]
            if value > self.best:
                self.best, self.best_epoch, self.best_metrics = value, epoch, ranked
                trainer.save_checkpoint(self.best_path)
            log.info(
                "epoch %d: valid %s %.4f (best %.4f at epoch %d)",
                epoch,
                self.selection,
                value,
                self.best,
                self.best_epoch,
            )
            # DiffRec's code: stop once `patience_epochs` pass without a better validation
            if epoch + self.every - self.best_epoch >= self.patience_epochs:
                log.info("no better validation for %d epochs: stopping", epoch - self.best_epoch)
                trainer.should_stop = True
        if self.run is not None:
            self.run.log_metrics(epoch, **record)
        # a crashed run resumes from here (written at validations and at the last epoch)
        if epoch % self.every == 0 or trainer.should_stop or epoch == trainer.max_epochs:
            trainer.save_checkpoint(self.checkpoint_dir / "last.ckpt")


def build_model(config: Config, data: RecData):
    """The model a config names, ready to train (or, for the closed-form ones, to score)."""
    name = config.model
    if name == "mostpop":
        return MostPopular(data.train)
    if name == "ease":
        return EASE(data.train, config.ease.l2)
    if name == "tease":
        # T-EASE: EASE fitted on T-DiffRec's temporally weighted history (load_data_for
        # builds it), which it also scores from; everything else is EASE
        return EASE(data.train_input, config.ease.l2)
    if name == "lightgcn":
        return build_lightgcn(config, data)
    if name == "multvae":
        m = config.multvae
        return MultVAE(
            data.n_items, m.hidden_dims, m.dropout, m.lr, m.total_anneal_steps, m.anneal_cap
        )
    cluster_ids = None
    if name in ("ldiffrec", "ltdiffrec"):
        cluster_ids = cluster_items(
            item_embeddings_for(config, data), config.latent.clusters, config.latent.kmeans_seed
        )
    # the released argparse turns any --reweight value into True
    reweight = config.diffusion.reweight or config.parity.bool_flags_from_strings
    return DiffRecModule(
        data.n_items,
        config.diffusion,
        config.denoiser.dims,
        config.denoiser.emb_size,
        config.denoiser.dropout,
        config.denoiser.norm,
        config.train.lr,
        config.train.weight_decay,
        reweight,
        cluster_ids,
        config.latent,
    )


def lightning_trainer(
    config: Config, device: torch.device, max_epochs: int, **options: Any
) -> L.Trainer:
    """Lightning's Trainer as this project trains: one device, no logger, no Lightning
    checkpointing or validation loop (``RankingValidation`` does both); ``options`` add to it.
    """
    return L.Trainer(
        accelerator=device.type if device.type != "cuda" else "gpu",
        devices=1,
        max_epochs=max_epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=config.train.progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        **options,
    )


def build_lightgcn(config: Config, data: RecData) -> LightGCN:
    g = config.lightgcn
    return LightGCN(data.train, g.dim, g.layers, g.reg, g.lr, g.batch_size, g.init_std)


def item_embeddings_for(config: Config, data: RecData) -> torch.Tensor:
    """(items, dim) embeddings L-DiffRec clusters: the dataset's file, or LightGCN's trained here.

    DiffRec's L-DiffRec clusters the item embeddings of a LightGCN trained on the dataset;
    ``latent.item_embeddings=lightgcn`` trains that LightGCN on the training split for
    ``latent.lightgcn_epochs`` epochs (a fixed budget, no validation) instead of reading
    ``item_emb.npy``.
    """
    if config.latent.item_embeddings == "file":
        if data.item_emb is None:
            raise ValueError(
                f"{config.model} clusters items by their embeddings, but dataset {data.name!r} "
                "has no item_emb.npy; add one beside its splits, or set "
                "latent.item_embeddings=lightgcn to train LightGCN embeddings here"
            )
        return data.item_emb
    started = time.perf_counter()
    model = build_lightgcn(config, data)
    device = select_device(config.train.device)
    lightning_trainer(config, device, config.latent.lightgcn_epochs).fit(model)
    embeddings = model.item_embeddings().cpu()
    log.info(
        "LightGCN item embeddings %s for %s: %d epochs, %.0f s",
        tuple(embeddings.shape),
        config.model,
        config.latent.lightgcn_epochs,
        time.perf_counter() - started,
    )
    return embeddings


def load_data_for(config: Config) -> RecData:
    temporal = None
    if config.model in TEMPORAL_MODELS:
        temporal = (config.temporal.w_min, config.temporal.w_max)
    return load_dataset(config.data.dataset, config.data.source, temporal=temporal)


def fit_and_evaluate(
    config: Config,
    data: RecData | None = None,
    run: Run | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Train ``config.model`` (if it trains) and return its valid and test metrics and timings.

    ``data`` defaults to the dataset the config names; ``run`` receives per-epoch metrics and
    holds the checkpoints (a temporary folder is used without one).
    """
    train = config.train
    seed_everything(train.seed)
    if train.threads is not None:
        set_torch_threads(train.threads)
    device = select_device(train.device)
    precision = select_precision(device, train.precision)
    data = data if data is not None else load_data_for(config)
    started = time.perf_counter()
    model = build_model(config, data)
    timing = Timing()
    epochs_run = 0
    validation = None

    if isinstance(model, L.LightningModule):
        log.info("training %s on %s: %s", config.model, data.name, describe(device, precision))
        # without a run folder, checkpoints live in a temporary folder removed at the end
        scratch = tempfile.TemporaryDirectory(prefix="diffusion_rec-") if run is None else None
        checkpoint_dir = run.checkpoint_dir if run is not None else Path(scratch.name)
        selection = (
            SELECTION_METRIC if config.parity.recall_denominator == "min" else ("recall_rel@20")
        )
        validation = RankingValidation(
            data,
            train.eval_every,
            train.early_stop_epochs,
            train.eval_batch_size,
            checkpoint_dir,
            run,
            selection,
            timing,
        )
        trainer = lightning_trainer(
            config,
            device,
            train.max_epochs,
            precision=precision,
            callbacks=[validation],
            default_root_dir=str(checkpoint_dir.parent),
        )
        # models whose epoch is not a pass over users (LightGCN: over pairs) bring their own
        loader = (
            None
            if is_overridden("train_dataloader", model)
            else history_loader(data.train_input, train.batch_size, shuffle=True)
        )
        last = checkpoint_dir / "last.ckpt"
        ckpt_path = str(last) if resume and last.exists() else None
        if ckpt_path:
            log.info("resuming from %s", last)
        trainer.fit(model, loader, ckpt_path=ckpt_path)
        epochs_run = trainer.current_epoch
        best_path = validation.best_path
        if best_path.exists():
            state = torch.load(best_path, map_location="cpu", weights_only=False)
            model.load_state_dict(state["state_dict"])
            model.on_load_checkpoint(state)
        else:
            log.warning("no validation ran (max_epochs < eval_every): testing the last weights")
        if scratch is not None:
            scratch.cleanup()
        model = model.to(device)
    fit_seconds = time.perf_counter() - started

    # valid and test metrics of the selected weights: from the validation pass that selected
    # them, or (closed-form models, or no validation ran) from one ranking pass now
    start = time.perf_counter()
    if validation is not None and validation.best_metrics is not None:
        metrics = validation.best_metrics
    else:
        metrics = evaluate(
            model_scorer(model, data, device), data, ("valid", "test"), train.eval_batch_size
        )
    eval_seconds = time.perf_counter() - start
    per_epoch = float(np.mean(timing.epoch_seconds)) if timing.epoch_seconds else 0.0
    best_epoch = validation.best_epoch if validation is not None else 0
    # wall clock from fit start to the validation that selected the weights (nan: none here)
    to_best = next(
        (v["since_fit"] for v in timing.validations if v["epoch"] == best_epoch), float("nan")
    )
    result = {
        "model": config.model,
        "dataset": data.name,
        "seed": train.seed,
        "valid": metrics["valid"],
        "test": metrics["test"],
        "epochs": epochs_run,
        "best_epoch": best_epoch,
        "seconds_fit": round(fit_seconds, 2),
        "seconds_per_epoch": round(per_epoch, 3),
        "seconds_per_validation": round(float(np.mean(timing.eval_seconds)), 3)
        if timing.eval_seconds
        else 0.0,
        "seconds_to_best": round(to_best, 2),
        "seconds_final_ranking": round(eval_seconds, 2),
        "validations": timing.validations,
        "device": str(device),
        **peak_memory_mb(device),
    }
    log.info(
        "%s on %s: test recall@20 %.4f, ndcg@20 %.4f (%.0f s)",
        config.model,
        data.name,
        result["test"]["recall@20"],
        result["test"]["ndcg@20"],
        fit_seconds,
    )
    return result


def is_diffusion(model: str) -> bool:
    return model in DIFFUSION_MODELS
