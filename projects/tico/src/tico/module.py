"""The LightningModule: encoder + projector trained with TiCo (or Barlow Twins), an online
linear probe on detached features, an optional momentum target, and the collapse monitor."""

from __future__ import annotations

import logging
import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from shared.config import to_dict
from tico.collapse import covariance_spectrum, effective_rank
from tico.config import TiCoConfig
from tico.loss import BarlowTwinsLoss, TiCoLoss
from tico.model import MomentumTarget, build_backbone, build_projector

log = logging.getLogger(__name__)

SPECTRUM_SAMPLES = 4096  # validation embeddings kept per epoch for the spectrum


class CheckpointMismatchError(ValueError):
    """A checkpoint's tensors do not fit the model the config describes."""


def check_state_dict_fits(
    module: nn.Module, state_dict: dict[str, torch.Tensor], saved_config: dict | None
) -> None:
    """Raise one clear error when ``state_dict`` has tensors of other shapes than ``module``."""
    own = module.state_dict()
    mismatched = [
        f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(own[key].shape)}"
        for key, value in state_dict.items()
        if key in own and own[key].shape != value.shape
    ]
    if not mismatched:
        return
    hint = ""
    if saved_config is not None:
        model = saved_config.get("model", {})
        hint = (
            f" The checkpoint was trained with model.backbone={model.get('backbone')}, "
            f"model.width={model.get('width')}, model.projector={model.get('projector')}: "
            "pass the same values (e.g. model.projector=" + str(model.get("projector")) + ")."
        )
    raise CheckpointMismatchError(
        f"the checkpoint does not fit this model ({len(mismatched)} tensors differ in shape: "
        + "; ".join(mismatched[:4])
        + ("; ..." if len(mismatched) > 4 else "")
        + ")."
        + hint
    )


class SelfSupervised(L.LightningModule):
    """TiCo or Barlow Twins pre-training of a ResNet, configured by :class:`TiCoConfig`."""

    def __init__(self, config: TiCoConfig, num_classes: int = 10):
        super().__init__()
        self.config = config
        self.save_hyperparameters({"config": to_dict(config), "num_classes": num_classes})
        model, loss = config.model, config.loss

        # online network: encoder f and projector g
        self.backbone, self.feature_dim = build_backbone(model.backbone, model.stem, model.width)
        self.projector = build_projector(self.feature_dim, model.projector)
        if model.channels_last:
            self.backbone = self.backbone.to(memory_format=torch.channels_last)
        if model.compile:
            self.backbone = torch.compile(self.backbone)

        # optional momentum (EMA) target for the keys
        self.target = (
            MomentumTarget(nn.Sequential(self.backbone, self.projector), model.momentum_base)
            if model.momentum_target
            else None
        )

        # the objective; gathering is a no-op outside a process group
        if loss.method == "tico":
            self.criterion: nn.Module = TiCoLoss(
                dim=model.projector[-1],
                beta=loss.beta,
                rho=loss.rho,
                batch_gradient=loss.batch_gradient,
                symmetric=loss.symmetric,
                gather_distributed=True,
            )
        else:
            self.criterion = BarlowTwinsLoss(loss.lambda_offdiag, gather_distributed=True)

        # online linear probe on detached features (trained alongside, never touches f)
        self.probe = nn.Linear(self.feature_dim, num_classes)

        self.spectra: list[dict[str, Any]] = []  # per validation epoch, for the plots
        self.skipped_images = 0
        self._val_outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    # ---------------------------------------------------------------- forward passes
    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        if self.config.model.channels_last:
            return images.contiguous(memory_format=torch.channels_last)
        return images

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Encoder features (batch, feature_dim): the representation that is evaluated."""
        return self.backbone(self._prepare(images))

    def _embeddings_and_loss(
        self, view_a: torch.Tensor, view_b: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(features of view a, embeddings of view a, self-supervised loss)."""
        symmetric = self.config.loss.symmetric
        features_a = self(view_a)
        z_a = self.projector(features_a)

        if self.target is None:
            # both views through the online network
            z_b = self.projector(self(view_b))
            return features_a, z_a, self.criterion(z_a, z_b)

        # keys from the momentum target; the symmetric form pairs each view with the other's key
        key_b = self.target(self._prepare(view_b))
        if not symmetric:
            return features_a, z_a, self.criterion(z_a, key_b, symmetric=False)
        z_b = self.projector(self(view_b))
        key_a = self.target(self._prepare(view_a))
        queries, keys = torch.cat([z_a, z_b]), torch.cat([key_b, key_a])
        return features_a, z_a, self.criterion(queries, keys, symmetric=False)

    # ---------------------------------------------------------------- training
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        if batch is None:  # every image of the batch was undecodable
            return None
        (view_a, view_b), labels, skipped = batch
        self._count_skipped(int(skipped))
        if len(labels) < 2:
            log.warning(
                "skipping a training batch of %d image(s) left after corrupt ones", len(labels)
            )
            return None

        features_a, z_a, ssl_loss = self._embeddings_and_loss(view_a, view_b)

        # online probe: cross-entropy on features with the gradient stopped
        logits = self.probe(features_a.detach().float())
        probe_loss = F.cross_entropy(logits, labels)
        probe_accuracy = (logits.argmax(dim=1) == labels).float().mean()

        self.log_dict(
            {
                "train/loss": ssl_loss,
                "train/probe_loss": probe_loss,
                "train/probe_acc": probe_accuracy,
                "train/lr": self.optimizers().param_groups[0]["lr"],
            },
            prog_bar=True,
        )
        if self.global_step % self.config.eval.monitor_every_n_steps == 0:
            self._monitor_collapse(z_a.detach())
        return ssl_loss + probe_loss

    def _count_skipped(self, skipped: int) -> None:
        if skipped:
            self.skipped_images += skipped
            log.warning(
                "left %d undecodable image(s) out of a batch (%d so far)",
                skipped,
                self.skipped_images,
            )

    @torch.no_grad()
    def _monitor_collapse(self, embeddings: torch.Tensor) -> None:
        """Effective rank of the batch embeddings' covariance (and of TiCo's running C)."""
        values = {
            "collapse/batch_effective_rank": effective_rank(
                covariance_spectrum(F.normalize(embeddings.float(), dim=1))
            ),
            "collapse/embedding_std": F.normalize(embeddings.float(), dim=1).std(0).mean().item(),
        }
        if isinstance(self.criterion, TiCoLoss):
            running = torch.linalg.eigvalsh(self.criterion.covariance.double()).clamp_min(0)
            values["collapse/running_c_effective_rank"] = effective_rank(running.flip(0))
        self.log_dict(values)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.target is not None:
            total = max(int(self.trainer.estimated_stepping_batches), 1)
            momentum = self.target.momentum(self.global_step, total)
            self.target.update(nn.Sequential(self.backbone, self.projector), momentum)

    # ---------------------------------------------------------------- validation
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        if batch is None:
            return
        images, labels, skipped = batch
        self._count_skipped(int(skipped))
        features = self(images)
        embeddings = self.projector(features)
        logits = self.probe(features.float())
        self._val_outputs.append((logits.argmax(1) == labels, features.float(), embeddings.float()))

    def on_validation_epoch_end(self) -> None:
        if not self._val_outputs:
            return
        correct = torch.cat([c for c, _, _ in self._val_outputs])
        features = torch.cat([f for _, f, _ in self._val_outputs])[:SPECTRUM_SAMPLES]
        embeddings = torch.cat([e for _, _, e in self._val_outputs])[:SPECTRUM_SAMPLES]
        self._val_outputs.clear()

        # online probe accuracy over every process's share of the test set
        hits = self.all_gather(correct.sum().float()).sum()
        count = self.all_gather(torch.tensor(float(len(correct)), device=self.device)).sum()
        accuracy = (hits / count).item()

        # spectrum of this process's validation embeddings (the collapse monitor)
        feature_spectrum = covariance_spectrum(features)
        embedding_spectrum = covariance_spectrum(F.normalize(embeddings, dim=1))
        record = {
            "epoch": self.current_epoch,
            "step": self.global_step,
            "probe_acc": accuracy,
            "feature_effective_rank": effective_rank(feature_spectrum),
            "embedding_effective_rank": effective_rank(embedding_spectrum),
            "feature_eigenvalues": feature_spectrum.tolist(),
            "embedding_eigenvalues": embedding_spectrum.tolist(),
        }
        if not self.trainer.sanity_checking:
            self.spectra.append(record)
        self.log_dict(
            {
                "val/probe_acc": accuracy,
                "collapse/feature_effective_rank": record["feature_effective_rank"],
                "collapse/embedding_effective_rank": record["embedding_effective_rank"],
            },
            rank_zero_only=True,
        )

    # ---------------------------------------------------------------- optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        optim = self.config.optim
        global_batch = self.config.data.batch_size * self.trainer.world_size
        scale = {"linear": global_batch / 256, "sqrt": math.sqrt(global_batch / 256), "none": 1.0}
        lr = optim.lr * scale[optim.lr_scaling]

        # weight decay (and LARS adaptation) for weights; none for biases, norms and the probe
        decay, no_decay = [], []
        for module in (self.backbone, self.projector):
            for parameter in module.parameters():
                if parameter.requires_grad:
                    (decay if parameter.ndim > 1 else no_decay).append(parameter)
        groups = [
            {"params": decay, "weight_decay": optim.weight_decay, "lr": lr},
            {"params": no_decay, "weight_decay": 0.0, "lr": lr},
            {"params": list(self.probe.parameters()), "weight_decay": 0.0, "lr": optim.probe_lr},
        ]
        if optim.name == "lars":
            from timm.optim import Lars

            optimizer = Lars(groups, lr=lr, momentum=optim.momentum)
        elif optim.name == "sgd":
            optimizer = torch.optim.SGD(groups, lr=lr, momentum=optim.momentum)
        else:
            optimizer = torch.optim.AdamW(groups, lr=lr)

        # linear warm-up then cosine decay, stepped every optimizer step
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        per_epoch = self.trainer.num_training_batches
        per_epoch = total if math.isinf(per_epoch) else max(int(per_epoch), 1)
        warmup = min(int(optim.warmup_epochs * per_epoch), total // 2)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(total - warmup, 1)
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        log.info(
            "optimizer %s, lr %.4g (base %.4g, global batch %d, %s scaling), %d steps, %d warm-up",
            optim.name,
            lr,
            optim.lr,
            global_batch,
            optim.lr_scaling,
            total,
            warmup,
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    # ---------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["tico_spectra"] = self.spectra
        checkpoint["tico_skipped_images"] = self.skipped_images

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("hyper_parameters", {}).get("config")
        check_state_dict_fits(self, checkpoint["state_dict"], saved)
        self.spectra = list(checkpoint.get("tico_spectra", []))
        self.skipped_images = int(checkpoint.get("tico_skipped_images", 0))
