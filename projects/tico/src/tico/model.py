"""Encoders (timm ResNets with a choice of stem), the projector MLP and the EMA target.

TiCo Sec. 4 trains a ResNet-50 with a 2048-4096-256 projector on ImageNet; on CIFAR-10 the
common choice is a ResNet-18 whose stem is a single 3x3 convolution of stride 1 without max
pooling, so that 32x32 images keep their resolution (as in SimCLR's CIFAR experiments).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import timm
import torch
from torch import nn

BACKBONES = ("resnet18", "resnet34", "resnet50")
STEMS = ("imagenet", "cifar", "cifar_stride2")
# feature width of the last stage per unit of base width: BasicBlock x8, Bottleneck x32
_EXPANSION = {"resnet18": 8, "resnet34": 8, "resnet50": 32}


def build_backbone(name: str, stem: str = "cifar", width: int = 64) -> tuple[nn.Module, int]:
    """A timm ResNet without its classifier, and the size of its pooled features.

    ``stem``: ``imagenet`` keeps the 7x7 stride-2 convolution and max pooling (224 px inputs);
    ``cifar`` is one 3x3 stride-1 convolution without pooling (32 px inputs, the usual CIFAR
    ResNet); ``cifar_stride2`` is one 3x3 stride-2 convolution without pooling, a quarter of
    the cost of ``cifar``, used by the CPU-scale configs. ``width`` is the channel count of
    the first stage (64 in the standard networks; the stages use width x 1, 2, 4, 8).
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    if stem not in STEMS:
        raise ValueError(f"unknown stem {stem!r}; choose one of {', '.join(STEMS)}")
    if width < 1:
        raise ValueError(f"backbone width must be >= 1, got {width}")
    channels = tuple(width * 2**stage for stage in range(4))
    backbone = timm.create_model(name, pretrained=False, num_classes=0, channels=channels)

    # replace the stem for small images (timm's plain stem has 64 channels whatever the width)
    if stem != "imagenet":
        stride = 1 if stem == "cifar" else 2
        stem_channels = backbone.conv1.out_channels
        backbone.conv1 = nn.Conv2d(3, stem_channels, 3, stride=stride, padding=1, bias=False)
        nn.init.kaiming_normal_(backbone.conv1.weight, mode="fan_out", nonlinearity="relu")
        backbone.maxpool = nn.Identity()
    return backbone, width * _EXPANSION[name]


def build_projector(in_dim: int, dims: Sequence[int]) -> nn.Sequential:
    """Linear-BatchNorm-ReLU for each hidden layer, then a plain linear output layer.

    ``dims`` lists the hidden widths and the output width, e.g. ``[4096, 256]`` for TiCo's
    2048-4096-256 projector on a ResNet-50 (TiCo Sec. 4) or ``[8192, 8192, 8192]`` for
    Barlow Twins' (Barlow Twins Sec. 4).
    """
    if not dims or any(d < 1 for d in dims):
        raise ValueError(f"projector dims must be a non-empty list of positive widths, got {dims}")
    layers: list[nn.Module] = []
    width = in_dim
    for hidden in dims[:-1]:
        layers += [nn.Linear(width, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, dims[-1]))
    return nn.Sequential(*layers)


class MomentumTarget(nn.Module):
    """An exponential moving average of an online network, used as the key branch.

    Some TiCo reimplementations (sayannag) compute the keys z_b with a momentum encoder,
    as MoCo and BYOL do. Momentum follows BYOL's cosine schedule from ``base`` to 1.
    """

    def __init__(self, online: nn.Module, base: float = 0.99):
        super().__init__()
        if not 0.0 <= base <= 1.0:
            raise ValueError(f"momentum base must be in [0, 1], got {base}")
        self.base = base
        self.network = copy.deepcopy(online)
        self.network.requires_grad_(False)

    def momentum(self, step: int, total_steps: int) -> float:
        """BYOL Sec. 3.2: tau = 1 - (1 - base) (cos(pi step / total) + 1) / 2."""
        progress = min(step / max(total_steps, 1), 1.0)
        return 1.0 - (1.0 - self.base) * (math.cos(math.pi * progress) + 1.0) / 2.0

    @torch.no_grad()
    def update(self, online: nn.Module, momentum: float) -> None:
        """target <- momentum * target + (1 - momentum) * online; buffers are copied."""
        for target, source in zip(self.network.parameters(), online.parameters(), strict=True):
            target.lerp_(source.detach(), 1.0 - momentum)
        for target, source in zip(self.network.buffers(), online.buffers(), strict=True):
            target.copy_(source)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(images)
