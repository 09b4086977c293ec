"""One pre-training run from a config: Lightning's Trainer, the run folder, offline evaluation."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from shared.device import describe, select_device, select_precision, set_threads
from shared.runs import Run, markdown_table
from tico.collapse import covariance_spectrum, effective_rank
from tico.config import TiCoConfig
from tico.data import SelfSupervisedData
from tico.evaluation import evaluate_features, extract_features
from tico.logger import RunLogger, Throughput
from tico.module import SelfSupervised, check_state_dict_fits

log = logging.getLogger(__name__)

PROJECT = "tico"
_ACCELERATOR_DEVICE = {"auto": "auto", "cpu": "cpu", "gpu": "cuda", "cuda": "cuda", "mps": "mps"}


def resolve_hardware(config: TiCoConfig) -> tuple[torch.device, str]:
    """The device of this process and the Lightning precision string (shared.device rules)."""
    accelerator = config.trainer.accelerator
    if accelerator not in _ACCELERATOR_DEVICE:
        raise ValueError(
            f"trainer.accelerator must be one of {', '.join(_ACCELERATOR_DEVICE)}; "
            f"got {accelerator!r}"
        )
    device = select_device(_ACCELERATOR_DEVICE[accelerator])
    precision = select_precision(device, config.trainer.precision)
    if device.type == "cpu":
        set_threads(config.trainer.threads or None)
    return device, precision


def _devices(value: str) -> int | str | list[int]:
    if value == "auto":
        return "auto"
    if value.isdigit():
        return int(value)
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise ValueError(
            f"trainer.devices must be auto, a count (4) or a list (0,1); got {value!r}"
        ) from None


def build_trainer(
    config: TiCoConfig, run: Run | None, precision: str, device: torch.device
) -> L.Trainer:
    """Lightning's Trainer for ``config``; checkpoints and metrics go into the run folder."""
    trainer_config = config.trainer
    callbacks: list[L.Callback] = [Throughput()]
    if run is not None:
        callbacks.append(
            ModelCheckpoint(
                # one file, last.ckpt, overwritten at every save (no monitored metric)
                dirpath=run.checkpoint_dir,
                filename="last",
                save_top_k=1,
                enable_version_counter=False,
                every_n_epochs=trainer_config.save_every_n_epochs,
            )
        )
    return L.Trainer(
        accelerator={"cuda": "gpu"}.get(device.type, device.type),
        devices=_devices(trainer_config.devices),
        num_nodes=trainer_config.num_nodes,
        strategy=trainer_config.strategy,
        precision=precision,  # type: ignore[arg-type]
        # SyncBatchNorm needs GPU modules (torch raises on the CPU)
        sync_batchnorm=trainer_config.sync_batchnorm
        and trainer_config.strategy != "auto"
        and device.type == "cuda",
        max_epochs=trainer_config.max_epochs,
        max_steps=trainer_config.max_steps,
        log_every_n_steps=trainer_config.log_every_n_steps,
        check_val_every_n_epoch=trainer_config.val_every_n_epochs,
        num_sanity_val_steps=0,
        gradient_clip_val=trainer_config.gradient_clip_val or None,
        deterministic=trainer_config.deterministic,
        logger=RunLogger(run) if run is not None else False,
        callbacks=callbacks,
        enable_checkpointing=run is not None,
        enable_model_summary=False,
        default_root_dir=str(run.path) if run is not None else None,
    )


def offline_evaluation(
    module: SelfSupervised,
    datamodule: SelfSupervisedData,
    config: TiCoConfig,
    device: torch.device,
    precision: str,
) -> dict[str, Any]:
    """Frozen-feature kNN, linear and semi-supervised accuracy, plus the feature spectrum."""
    train_loader, test_loader = datamodule.plain_loaders()
    channels_last = config.model.channels_last
    train_features, train_labels = extract_features(
        module.backbone, train_loader, device, precision, channels_last, "train features"
    )
    test_features, test_labels = extract_features(
        module.backbone, test_loader, device, precision, channels_last, "test features"
    )
    results = evaluate_features(
        train_features, train_labels, test_features, test_labels, config.eval, config.seed
    )
    spectrum = covariance_spectrum(test_features)
    results["feature_effective_rank"] = effective_rank(spectrum)
    results["feature_eigenvalues"] = spectrum.tolist()
    return results


def train(
    config: TiCoConfig, resume: bool = False, root: str | Path | None = None, project: str = PROJECT
) -> dict[str, Any]:
    """Pre-train, evaluate, and write ``results.json`` / ``results.md`` into the run folder.

    With ``resume`` a crashed run continues from its last checkpoint, and a finished run
    returns its results unchanged.
    """
    # processes a DDP launcher started besides rank 0 join rank 0's run folder
    rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))
    run = Run.start(project, config.name, config, root=root, resume=resume or rank > 0)
    if resume and run.finished:
        log.info("run %s is finished; reading its results", run.path)
        return run.read_results()
    device, precision = resolve_hardware(config)
    L.seed_everything(config.seed, workers=True, verbose=False)
    log.info("device %s", describe(device, precision))

    datamodule = SelfSupervisedData(config)
    datamodule.setup()
    module = SelfSupervised(config, num_classes=datamodule.num_classes)
    trainer = build_trainer(config, run, precision, device)
    last = run.checkpoint_dir / "last.ckpt"
    ckpt_path = str(last) if resume and last.exists() else None
    if ckpt_path:
        log.info("resuming from %s", ckpt_path)

    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    train_seconds = time.perf_counter() - start
    # a run stopped by max_steps mid-epoch still gets its final probe accuracy and spectrum
    if not module.spectra or module.spectra[-1]["step"] != trainer.global_step:
        trainer.validate(module, datamodule=datamodule, verbose=False)
    if not trainer.is_global_zero:
        return {}

    results = offline_evaluation(module, datamodule, config, device, precision)
    results.update(
        method=config.loss.method,
        steps=trainer.global_step,
        epochs=trainer.current_epoch,
        images_seen=trainer.global_step * config.data.batch_size * trainer.world_size,
        train_seconds=round(train_seconds, 1),
        skipped_images=module.skipped_images + datamodule.skipped_at_load,
        spectra=module.spectra,
        scale=config.scale,
    )
    run.write_results(results, results_markdown(config, results))
    return results


def results_markdown(config: TiCoConfig, results: dict[str, Any]) -> str:
    rows = [
        {
            "evaluation": f"kNN (k={config.eval.knn_k}, T={config.eval.knn_temperature:g})",
            "labels": "100%",
            "top-1": results["knn_acc"],
        },
        {"evaluation": "linear probe", "labels": "100%", "top-1": results["linear_acc"]},
    ]
    for fraction, scores in results["semi_supervised"].items():
        label = f"{float(fraction):.0%} ({scores['labels']})"
        rows.append({"evaluation": "kNN", "labels": label, "top-1": scores["knn_acc"]})
        rows.append({"evaluation": "linear probe", "labels": label, "top-1": scores["linear_acc"]})
    return "\n".join(
        [
            f"# tico train: {config.name} ({config.loss.method}, {config.scale} scale)",
            "",
            f"{results['steps']} steps, {results['images_seen']} images seen, "
            f"{results['train_seconds']} s; feature effective rank "
            f"{results['feature_effective_rank']:.1f}; {results['skipped_images']} images skipped.",
            "",
            markdown_table(rows),
        ]
    )


def load_module(checkpoint: str | Path, config: TiCoConfig, num_classes: int) -> SelfSupervised:
    """The model of ``config`` with a Lightning checkpoint's weights (clear error on misfit)."""
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist; pass "
            "checkpoint=runs/tico/<run>/checkpoints/last.ckpt"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # a truncated or foreign file
        raise ValueError(f"cannot read checkpoint {path}: {error}") from error
    if not isinstance(state, dict) or "state_dict" not in state:
        raise ValueError(f"{path} is not a Lightning checkpoint (no state_dict inside)")
    module = SelfSupervised(config, num_classes=num_classes)
    check_state_dict_fits(
        module, state["state_dict"], state.get("hyper_parameters", {}).get("config")
    )
    missing, unexpected = module.load_state_dict(state["state_dict"], strict=False)
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {path} does not match this model: missing {missing[:4]}, unexpected "
            f"{unexpected[:4]}; use the config the checkpoint was trained with"
        )
    module.spectra = list(state.get("tico_spectra", []))
    return module


def evaluate_checkpoint(config: TiCoConfig, checkpoint: str | Path) -> dict[str, Any]:
    """Offline evaluation of a saved encoder; results go beside its run folder."""
    device, precision = resolve_hardware(config)
    datamodule = SelfSupervisedData(config)
    datamodule.setup()
    module = load_module(checkpoint, config, datamodule.num_classes)
    results = offline_evaluation(module, datamodule, config, device, precision)
    results.update(checkpoint=str(checkpoint), scale=config.scale, method=config.loss.method)

    # write evaluation.json / .md into the run folder (the checkpoint's grandparent)
    path = Path(checkpoint).resolve()
    folder = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    from shared.runs import write_atomic

    results.setdefault("steps", 0)
    text = json.dumps({k: v for k, v in results.items()}, indent=2)
    write_atomic(folder / "evaluation.json", text + "\n")
    table = results_markdown(
        config,
        {
            **results,
            "images_seen": "?",
            "train_seconds": "?",
            "skipped_images": datamodule.skipped_at_load,
        },
    )
    write_atomic(folder / "evaluation.md", table.replace("# tico train", "# tico evaluate") + "\n")
    log.info("evaluation written to %s", folder / "evaluation.md")
    return results
