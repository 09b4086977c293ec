"""Diffusion for content presentation: item images generated for a user's preference.

The survey's third role (DiFashion-style personalised item content). A small diffusers
``UNet2DModel`` learns p(image | preference) on real images, where a preference is a
distribution over item categories, projected and added to the timestep embedding
(``class_embed_type="identity"``), with classifier-free guidance.

What the data allows to claim: no dataset here pairs users with item images, so the
"users" are preference vectors over CIFAR-10's ten classes (one-hot during training, any
mixture at generation). The experiment measures whether generated images carry the
preferred category, as judged by a small classifier trained on the real test images; it
does not measure personalisation of real users, and at CPU scale the images are coarse.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DModel
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from diffusion_rec.sequential import ddpm_linear_betas
from shared.data import load_cifar10

log = logging.getLogger(__name__)


class PreferenceImageDiffusion(L.LightningModule):
    """DDPM (eps-prediction) on 32x32 images conditioned on a category-preference vector."""

    def __init__(
        self,
        categories: int = 10,
        width: int = 32,
        steps: int = 200,
        p_uncond: float = 0.1,
        guidance_weight: float = 2.0,
        lr: float = 2e-4,
    ):
        super().__init__()
        self.unet = UNet2DModel(
            sample_size=32,
            in_channels=3,
            out_channels=3,
            layers_per_block=1,
            block_out_channels=(width, 2 * width),
            down_block_types=("DownBlock2D",) * 2,
            up_block_types=("UpBlock2D",) * 2,
            norm_num_groups=8,
            class_embed_type="identity",
        )
        time_dim = width * 4  # UNet2DModel's timestep embedding width
        self.preference = nn.Linear(categories, time_dim)
        self.scheduler = DDPMScheduler(num_train_timesteps=steps, **ddpm_linear_betas(steps))
        self.p_uncond, self.guidance_weight, self.lr = p_uncond, guidance_weight, lr
        self.categories = categories

    def condition(self, preference: torch.Tensor) -> torch.Tensor:
        """(batch, time_dim); an all-zero preference is the unconditional (null) input."""
        return self.preference(preference)

    def training_step(self, batch, batch_idx):
        images, labels = batch
        x0 = images.float() / 127.5 - 1.0
        preference = F.one_hot(labels, self.categories).float()
        drop = torch.rand(len(x0), device=x0.device) < self.p_uncond
        preference = preference * (~drop).float().unsqueeze(1)
        t = torch.randint(
            0, self.scheduler.config.num_train_timesteps, (len(x0),), device=x0.device
        )
        noise = torch.randn_like(x0)
        x_t = self.scheduler.add_noise(x0, noise, t)
        predicted = self.unet(x_t, t, class_labels=self.condition(preference)).sample
        loss = F.mse_loss(predicted, noise)
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.lr)

    @torch.no_grad()
    def generate(
        self, preference: torch.Tensor, inference_steps: int = 50, seed: int = 0
    ) -> torch.Tensor:
        """(batch, 3, 32, 32) uint8 images for (batch, categories) preferences."""
        self.eval()
        generator = torch.Generator().manual_seed(seed)
        scheduler = copy.deepcopy(self.scheduler)
        scheduler.set_timesteps(inference_steps)
        x = torch.randn((len(preference), 3, 32, 32), generator=generator)
        conditional, null = self.condition(preference), self.condition(torch.zeros_like(preference))
        for t in scheduler.timesteps:
            eps_c = self.unet(x, t, class_labels=conditional).sample
            eps_u = self.unet(x, t, class_labels=null).sample
            eps = (1 + self.guidance_weight) * eps_c - self.guidance_weight * eps_u
            x = scheduler.step(eps, t, x, generator=generator).prev_sample
        return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


class CategoryJudge(L.LightningModule):
    """A small CNN classifier that judges which category a generated image shows."""

    def __init__(self, categories: int = 10, lr: float = 1e-3):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(64, categories),
        )
        self.lr = lr

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images.float() / 127.5 - 1.0)

    def training_step(self, batch, batch_idx):
        images, labels = batch
        loss = F.cross_entropy(self(images), labels)
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def _fit(module: L.LightningModule, images, labels, epochs: int, batch_size: int) -> None:
    loader = DataLoader(TensorDataset(images, labels), batch_size=batch_size, shuffle=True)
    L.Trainer(
        max_epochs=epochs,
        accelerator="auto",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    ).fit(module, loader)


def content_experiment(
    epochs: int = 20,
    judge_epochs: int = 10,
    per_category: int = 10,
    width: int = 32,
    steps: int = 200,
    inference_steps: int = 50,
    seed: int = 1,
    limit: int | None = None,
) -> dict[str, Any]:
    """Train the preference-conditioned image model and measure category alignment.

    The judge trains on the real *test* images (the generator never sees them) and reports
    its accuracy on real training images; generated images for a one-hot preference count as
    aligned when the judge assigns them the preferred category. Chance is 1 / 10.
    """
    L.seed_everything(seed, verbose=False)
    train, test = load_cifar10("train"), load_cifar10("test")
    images, labels = train.images, train.labels
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    judge = CategoryJudge(len(train.classes))
    _fit(judge, test.images, test.labels, judge_epochs, 128)
    judge.eval()
    with torch.no_grad():
        judge_accuracy = float((judge(images).argmax(1) == labels).float().mean())

    model = PreferenceImageDiffusion(len(train.classes), width, steps)
    _fit(model, images, labels, epochs, 64)
    wanted = torch.arange(len(train.classes)).repeat_interleave(per_category)
    generated = model.generate(F.one_hot(wanted, len(train.classes)).float(), inference_steps, seed)
    with torch.no_grad():
        judged = judge(generated).argmax(1)
    alignment = float((judged == wanted).float().mean())
    log.info(
        "content: judge accuracy on real images %.3f, generated-image alignment %.3f (chance 0.1)",
        judge_accuracy,
        alignment,
    )
    return {
        "judge_accuracy_real": judge_accuracy,
        "alignment_generated": alignment,
        "chance": 1.0 / len(train.classes),
        "images": generated,
        "classes": train.classes,
        "train_images": len(images),
        "epochs": epochs,
    }
