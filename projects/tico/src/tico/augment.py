"""BYOL's two-view augmentations with torchvision transforms v2, on uint8 image tensors.

Grill et al. 2020, Table 6: random resized crop, horizontal flip, colour jitter, grayscale,
Gaussian blur and solarisation; the two views differ only in the blur (1.0 / 0.1) and
solarisation (0.0 / 0.2) probabilities. TiCo Sec. 4 uses the same recipe, as Barlow Twins.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from tico.config import AugmentConfig


def _blur_kernel(image_size: int) -> int:
    """An odd kernel of about 10% of the image side (23 px at 224 px, BYOL App. B)."""
    return max(3, int(0.1 * image_size) // 2 * 2 + 1)


def view_transform(config: AugmentConfig, image_size: int, view: int) -> v2.Compose:
    """The augmentation of view ``view`` (0 or 1) for (3, H, W) uint8 tensors."""
    steps: list[torch.nn.Module] = [
        v2.RandomResizedCrop(image_size, scale=tuple(config.crop_scale), antialias=True),
        v2.RandomHorizontalFlip(config.flip_prob),
        v2.RandomApply(
            [v2.ColorJitter(config.brightness, config.contrast, config.saturation, config.hue)],
            p=config.jitter_prob,
        ),
        v2.RandomGrayscale(config.grayscale_prob),
    ]
    if config.blur_prob[view] > 0:
        blur = v2.GaussianBlur(_blur_kernel(image_size), sigma=(0.1, 2.0))
        steps.append(v2.RandomApply([blur], p=config.blur_prob[view]))
    if config.solarize_prob[view] > 0:
        # threshold 128 of 255: the 0.5 of BYOL's [0, 1] images
        steps.append(v2.RandomSolarize(threshold=128, p=config.solarize_prob[view]))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(config.mean, config.std)]
    return v2.Compose(steps)


def eval_transform(config: AugmentConfig, image_size: int, resize: bool = False) -> v2.Compose:
    """Evaluation preprocessing: (resize and centre crop for large images,) normalise."""
    steps: list[torch.nn.Module] = []
    if resize:
        # the usual 224/256 centre crop of ImageNet evaluation
        steps += [v2.Resize(int(image_size * 256 / 224), antialias=True), v2.CenterCrop(image_size)]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(config.mean, config.std)]
    return v2.Compose(steps)


class TwoViews:
    """Applies view 1's and view 2's augmentation to the same image."""

    def __init__(self, config: AugmentConfig, image_size: int):
        self.first = view_transform(config, image_size, 0)
        self.second = view_transform(config, image_size, 1)

    def __call__(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.first(image), self.second(image)
