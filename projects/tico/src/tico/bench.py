"""`tico bench`: our TiCo loss against lightly's TiCoLoss, side by side in one run.

Same backbone, data, augmented batches, optimizer and seed; only the loss differs. Reported:
training steps per second (ratio ours/theirs), the loss alone (forward + backward), kNN
accuracy after the same number of steps, images per second of the full training step with
data loading on this machine, and on a CUDA machine one CIFAR-10 epoch in bf16 and
channels-last. Written to runs/tico/bench/results.{json,md}.
"""

from __future__ import annotations

import itertools
import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from shared.device import Timer, describe, peak_memory_mb
from shared.runs import markdown_table, runs_root, write_atomic
from tico.config import TiCoConfig
from tico.data import SelfSupervisedData
from tico.evaluation import extract_features
from tico.experiment import with_overrides
from tico.loss import TiCoLoss
from tico.module import SelfSupervised
from tico.training import resolve_hardware

log = logging.getLogger(__name__)


def default_config_path() -> Path:
    """configs/smoke.yaml of this project: `make bench` runs without --config."""
    return Path(__file__).resolve().parents[2] / "configs" / "smoke.yaml"


class LightlyTiCo(nn.Module):
    """lightly's TiCoLoss behind our call signature (it keeps C as a plain attribute)."""

    def __init__(self, beta: float, rho: float):
        super().__init__()
        try:
            from lightly.loss import TiCoLoss as TheirTiCoLoss
        except ImportError as error:
            raise ImportError(
                "tico bench compares against lightly, which is not installed; run "
                "`uv sync --all-packages --group bench` (make bench does)"
            ) from error
        self.loss = TheirTiCoLoss(beta=beta, rho=rho)

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor, **_: Any) -> torch.Tensor:
        return self.loss(z_a, z_b)


def _module(config: TiCoConfig, num_classes: int, theirs: bool, device: torch.device):
    L.seed_everything(config.seed, verbose=False)
    module = SelfSupervised(config, num_classes=num_classes)
    if theirs:
        module.criterion = LightlyTiCo(config.loss.beta, config.loss.rho)
    module.to(device).train()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.05, momentum=0.9)
    return module, optimizer


def _step(module: SelfSupervised, optimizer: torch.optim.Optimizer, batch: Any, device) -> float:
    (view_a, view_b), _, _ = batch
    optimizer.zero_grad(set_to_none=True)
    _, _, loss = module._embeddings_and_loss(view_a.to(device), view_b.to(device))
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def _fixed_batches(datamodule: SelfSupervisedData, count: int) -> list[Any]:
    """``count`` augmented batches drawn once, so both implementations see the same ones."""
    batches: list[Any] = []
    while len(batches) < count:
        for item in datamodule.train_dataloader():
            batches.append(item)
            if len(batches) == count:
                break
    return batches


def _time_steps(module, optimizer, batches, device) -> float:
    with Timer(device=device) as timer:
        for batch in batches:
            _step(module, optimizer, batch, device)
    return timer.seconds


def _loss_only(config: TiCoConfig, device: torch.device, repeats: int) -> dict[str, float]:
    """Forward + backward of the loss alone on random embeddings (batch, projector dim)."""
    dim, batch = config.model.projector[-1], config.data.batch_size
    ours = TiCoLoss(dim, config.loss.beta, config.loss.rho).to(device)
    theirs = LightlyTiCo(config.loss.beta, config.loss.rho).to(device)
    generator = torch.Generator().manual_seed(0)
    z_a = torch.randn(batch, dim, generator=generator).to(device).requires_grad_()
    z_b = torch.randn(batch, dim, generator=generator).to(device).requires_grad_()
    seconds = {"ours": float("inf"), "theirs": float("inf")}
    iterations = 200
    for _ in range(repeats + 1):
        for name, loss_fn in (("ours", ours), ("theirs", theirs)):
            with Timer(device=device) as timer:
                for _ in range(iterations):
                    loss_fn(z_a, z_b).backward()
            seconds[name] = min(seconds[name], timer.seconds)
    return {name: iterations / value for name, value in seconds.items()}


def _gpu_epoch(config: TiCoConfig) -> dict[str, Any]:
    """One epoch of CIFAR-10 on the GPU in bf16-mixed and channels-last, images per second."""
    from tico.training import build_trainer

    gpu = with_overrides(
        config,
        [
            "trainer.precision=bf16-mixed",
            "model.channels_last=true",
            "data.train_images=0",
            "trainer.max_epochs=1",
            "trainer.max_steps=-1",
            "trainer.val_every_n_epochs=1000",
            "data.num_workers=8",
        ],
    )
    device, precision = resolve_hardware(gpu)
    datamodule = SelfSupervisedData(gpu)
    datamodule.setup()
    module = SelfSupervised(gpu, num_classes=datamodule.num_classes)
    trainer = build_trainer(gpu, None, precision, device)
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    seconds = time.perf_counter() - start
    images = trainer.global_step * gpu.data.batch_size
    return {
        "device": describe(device, precision),
        "images": images,
        "seconds": round(seconds, 1),
        "images_per_s": images / seconds,
        **peak_memory_mb(device),
    }


def bench(config: TiCoConfig) -> str:
    """Run every measurement, write runs/tico/bench/results.{json,md}, return the Markdown."""
    settings = config.bench
    device, precision = resolve_hardware(config)
    config = with_overrides(config, ["loss.method=tico", "model.momentum_target=false"])
    datamodule = SelfSupervisedData(config)
    datamodule.setup()
    num_classes = datamodule.num_classes
    log.info("bench on %s", describe(device, precision))

    # training steps per second: the same augmented batches through both losses, alternating
    batches = _fixed_batches(datamodule, settings.warmup_steps + settings.steps)
    warmup, timed = batches[: settings.warmup_steps], batches[settings.warmup_steps :]
    models = {
        name: _module(config, num_classes, name == "theirs", device) for name in ("ours", "theirs")
    }
    seconds = {"ours": float("inf"), "theirs": float("inf")}
    for module, optimizer in models.values():
        for batch in warmup:
            _step(module, optimizer, batch, device)
    for _ in range(settings.repeats):
        for name, (module, optimizer) in models.items():
            seconds[name] = min(seconds[name], _time_steps(module, optimizer, timed, device))
    steps_per_s = {name: len(timed) / value for name, value in seconds.items()}
    loss_only = _loss_only(config, device, settings.repeats)

    # kNN accuracy after the same steps from the same initialisation
    knn_batches = _fixed_batches(datamodule, settings.knn_steps)
    train_loader, test_loader = datamodule.plain_loaders()
    knn = {}
    for name in ("ours", "theirs"):
        module, optimizer = _module(config, num_classes, name == "theirs", device)
        for batch in knn_batches:
            _step(module, optimizer, batch, device)
        train_x, train_y = extract_features(module.backbone, train_loader, device, precision)
        test_x, test_y = extract_features(module.backbone, test_loader, device, precision)
        from shared.metrics import knn_accuracy

        knn[name] = knn_accuracy(
            train_x,
            train_y,
            test_x,
            test_y,
            k=min(config.eval.knn_k, len(train_y)),
            temperature=config.eval.knn_temperature,
        )

    # images per second of the full step, data loading and augmentation included
    module, optimizer = _module(config, num_classes, False, device)
    loader = datamodule.train_dataloader()
    steps = 0
    with Timer(device=device) as timer:
        for batch in itertools.islice(itertools.cycle(loader), settings.steps):
            _step(module, optimizer, batch, device)
            steps += 1
    full_step_images_per_s = steps * config.data.batch_size / timer.seconds

    gpu = _gpu_epoch(config) if device.type == "cuda" and settings.gpu_epoch else None

    results = {
        "device": describe(device, precision),
        "machine": platform.processor() or platform.machine(),
        "config": {
            "backbone": config.model.backbone,
            "stem": config.model.stem,
            "width": config.model.width,
            "projector": list(config.model.projector),
            "batch_size": config.data.batch_size,
            "image_size": config.data.image_size,
        },
        "train_steps_per_s": steps_per_s,
        "train_steps_ratio": steps_per_s["ours"] / steps_per_s["theirs"],
        "loss_only_calls_per_s": loss_only,
        "loss_only_ratio": loss_only["ours"] / loss_only["theirs"],
        "knn_steps": settings.knn_steps,
        "knn_acc": knn,
        "knn_difference": knn["ours"] - knn["theirs"],
        "full_step_images_per_s": full_step_images_per_s,
        "gpu_epoch": gpu,
        **peak_memory_mb(device),
    }
    markdown = bench_markdown(results)
    folder = runs_root() / "tico" / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / "results.json", json.dumps(results, indent=2) + "\n")
    write_atomic(folder / "results.md", markdown + "\n")
    log.info("bench written to %s", folder)
    return markdown


def bench_markdown(results: dict[str, Any]) -> str:
    c = results["config"]
    rows = [
        {
            "measure": "training steps/s (same batches, model, optimizer)",
            "ours": results["train_steps_per_s"]["ours"],
            "lightly": results["train_steps_per_s"]["theirs"],
            "ours/lightly": results["train_steps_ratio"],
        },
        {
            "measure": "loss forward+backward calls/s",
            "ours": results["loss_only_calls_per_s"]["ours"],
            "lightly": results["loss_only_calls_per_s"]["theirs"],
            "ours/lightly": results["loss_only_ratio"],
        },
        {
            "measure": f"kNN top-1 after {results['knn_steps']} steps",
            "ours": results["knn_acc"]["ours"],
            "lightly": results["knn_acc"]["theirs"],
            "ours/lightly": results["knn_acc"]["ours"] / max(results["knn_acc"]["theirs"], 1e-9),
        },
    ]
    lines = [
        "# tico bench: ours vs lightly's TiCoLoss",
        "",
        f"{results['device']}; {c['backbone']} ({c['stem']} stem, width {c['width']}), "
        f"projector {c['projector']}, batch {c['batch_size']}, {c['image_size']} px. Goals: "
        "steps/s ratio >= 1.0, kNN at least lightly's.",
        "",
        markdown_table(rows, digits=3),
        "",
        f"Full training step with data loading and augmentation: "
        f"{results['full_step_images_per_s']:.1f} images (view pairs) per second. "
        f"Peak RSS {results['peak_rss_mb']:.0f} MiB.",
        "",
    ]
    gpu = results.get("gpu_epoch")
    if gpu:
        lines.append(
            f"GPU: one CIFAR-10 epoch ({gpu['images']} images) in {gpu['seconds']} s, "
            f"{gpu['images_per_s']:.0f} images/s on {gpu['device']} (bf16-mixed, channels-last)."
        )
    else:
        lines.append("GPU epoch: not measured (no CUDA device on this machine).")
    return "\n".join(lines)
