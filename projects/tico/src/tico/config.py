"""Typed configuration of every `tico` command, with the paper's defaults and their sources.

The defaults are the paper's ImageNet setting (ResNet-50, 2048-4096-256 projector, LARS);
`configs/smoke.yaml` and `configs/cpu.yaml` override them for CIFAR-10 on a CPU. Load with
:func:`shared.config.load_config`; ``__post_init__`` checks ranges and names the bad key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tico.model import BACKBONES, STEMS

METHODS = ("tico", "barlow_twins")
DATASETS = ("cifar10", "imagefolder")
OPTIMIZERS = ("lars", "sgd", "adamw")
LR_SCALINGS = ("linear", "sqrt", "none")
STRATEGIES = ("auto", "ddp", "ddp_spawn", "fsdp")
CIFAR10_MEAN = [0.4914, 0.4822, 0.4465]
CIFAR10_STD = [0.2470, 0.2435, 0.2616]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{key} must be one of {', '.join(choices)}; got {value!r}")


def _check_positive(key: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{key} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def _check_probabilities(key: str, values: list[float], length: int) -> None:
    if len(values) != length or not all(0.0 <= v <= 1.0 for v in values):
        raise ValueError(f"{key} must be {length} probabilities in [0, 1], got {values}")


@dataclass
class DataConfig:
    dataset: str = "imagefolder"  # cifar10 (through shared.data) or imagefolder (root/)
    # imagefolder: a folder holding train/<class>/*.jpg and val/<class>/*.jpg (ImageNet layout)
    root: str = "data/imagenet"
    source: str = "auto"  # cifar10: auto | full | embedded, see shared.data.load_cifar10
    train_images: int = 0  # 0: all; else a class-balanced, seeded subset of this many
    test_images: int = 0  # 0: all; else a class-balanced, seeded subset of this many
    image_size: int = 224  # crop size of the training views and the evaluation images
    batch_size: int = 256  # per process; the global batch is batch_size x processes
    eval_batch_size: int = 512
    num_workers: int = 8

    def __post_init__(self) -> None:
        _check_choice("data.dataset", self.dataset, DATASETS)
        _check_choice("data.source", self.source, ("auto", "full", "embedded"))
        _check_positive("data.image_size", self.image_size)
        _check_positive("data.eval_batch_size", self.eval_batch_size)
        _check_positive("data.train_images", self.train_images, allow_zero=True)
        _check_positive("data.test_images", self.test_images, allow_zero=True)
        _check_positive("data.num_workers", self.num_workers, allow_zero=True)
        if self.batch_size < 2:
            raise ValueError(
                f"data.batch_size must be >= 2 for a covariance estimate, got {self.batch_size}"
            )


@dataclass
class AugmentConfig:
    """BYOL's augmentations (Grill et al. 2020, Table 6); view 1 and view 2 differ in blur
    and solarisation probabilities."""

    crop_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])  # BYOL Table 6
    flip_prob: float = 0.5
    jitter_prob: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_prob: float = 0.2
    blur_prob: list[float] = field(default_factory=lambda: [1.0, 0.1])  # view 1, view 2
    solarize_prob: list[float] = field(default_factory=lambda: [0.0, 0.2])  # view 1, view 2
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))

    def __post_init__(self) -> None:
        if len(self.crop_scale) != 2 or not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ValueError(
                f"augment.crop_scale must be [low, high] in (0, 1], got {self.crop_scale}"
            )
        _check_probabilities("augment.blur_prob", self.blur_prob, 2)
        _check_probabilities("augment.solarize_prob", self.solarize_prob, 2)
        for key in ("flip_prob", "jitter_prob", "grayscale_prob"):
            _check_probabilities(f"augment.{key}", [getattr(self, key)], 1)
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("augment.mean and augment.std must hold 3 values, std > 0")


@dataclass
class ModelConfig:
    backbone: str = "resnet50"  # TiCo Sec. 4
    stem: str = "imagenet"  # imagenet | cifar (3x3, stride 1) | cifar_stride2 (CPU budget)
    width: int = 64  # channels of the first stage (64: the standard ResNet)
    projector: list[int] = field(default_factory=lambda: [4096, 256])  # 2048-4096-256, Sec. 4
    momentum_target: bool = False  # keys from an EMA of the online network (sayannag)
    momentum_base: float = 0.99  # EMA momentum at step 0, cosine to 1 (BYOL schedule)
    channels_last: bool = True  # NHWC memory format; faster convolutions on GPUs
    compile: bool = False  # torch.compile the backbone

    def __post_init__(self) -> None:
        _check_choice("model.backbone", self.backbone, BACKBONES)
        _check_choice("model.stem", self.stem, STEMS)
        _check_positive("model.width", self.width)
        if not self.projector or min(self.projector) < 1:
            raise ValueError(f"model.projector must list positive widths, got {self.projector}")
        if not 0 <= self.momentum_base <= 1:
            raise ValueError(f"model.momentum_base must be in [0, 1], got {self.momentum_base}")


@dataclass
class LossConfig:
    method: str = "tico"  # tico | barlow_twins (the baseline)
    beta: float = 0.9  # decay of the running covariance C; TiCo Sec. 4
    rho: float = 8.0  # covariance contrast weight; lightly's reading of the paper (sayannag: 20)
    batch_gradient: bool = False  # gradient through the batch's share of C (paper Fig. 1: no)
    symmetric: bool = False  # both views as queries
    lambda_offdiag: float = 5.1e-3  # Barlow Twins' redundancy weight, Barlow Twins Sec. 4

    def __post_init__(self) -> None:
        _check_choice("loss.method", self.method, METHODS)
        if not 0.0 <= self.beta < 1.0:
            raise ValueError(f"loss.beta must be in [0, 1), got {self.beta}")
        _check_positive("loss.rho", self.rho, allow_zero=True)
        _check_positive("loss.lambda_offdiag", self.lambda_offdiag, allow_zero=True)


@dataclass
class OptimConfig:
    name: str = "lars"  # LARS (You et al. 2017) as Barlow Twins and TiCo on ImageNet
    lr: float = 0.3  # base learning rate for a global batch of 256, scaled by lr_scaling
    lr_scaling: str = "linear"  # lr x (global batch / 256), Goyal et al. 2017
    weight_decay: float = 1.5e-6  # Barlow Twins Sec. 4
    momentum: float = 0.9
    warmup_epochs: float = 10.0  # linear warm-up, then cosine decay (Barlow Twins Sec. 4)
    probe_lr: float = 0.1  # online linear probe (SGD-style update inside the same optimizer)

    def __post_init__(self) -> None:
        _check_choice("optim.name", self.name, OPTIMIZERS)
        _check_choice("optim.lr_scaling", self.lr_scaling, LR_SCALINGS)
        _check_positive("optim.lr", self.lr)
        _check_positive("optim.weight_decay", self.weight_decay, allow_zero=True)
        _check_positive("optim.warmup_epochs", self.warmup_epochs, allow_zero=True)


@dataclass
class TrainerConfig:
    """Passed to lightning.Trainer; scale (GPUs, nodes, DDP/FSDP) comes from here."""

    max_epochs: int = 100
    max_steps: int = -1  # > 0 stops after this many optimizer steps
    accelerator: str = "auto"  # auto | cpu | gpu | mps
    devices: str = "auto"  # auto, a count ("4") or a list ("0,1")
    num_nodes: int = 1
    strategy: str = "auto"  # auto | ddp | ddp_spawn | fsdp
    precision: str = "auto"  # auto picks bf16-mixed on recent GPUs, 32-true elsewhere
    sync_batchnorm: bool = True  # BatchNorm statistics over the global batch under DDP
    log_every_n_steps: int = 20
    val_every_n_epochs: int = 1  # online probe + collapse spectrum on the test set
    save_every_n_epochs: int = 1
    gradient_clip_val: float = 0.0
    deterministic: bool = False
    threads: int = 0  # torch intra-op threads on the CPU; 0: all available

    def __post_init__(self) -> None:
        _check_choice("trainer.strategy", self.strategy, STRATEGIES)
        _check_positive("trainer.max_epochs", self.max_epochs)
        _check_positive("trainer.num_nodes", self.num_nodes)


@dataclass
class EvalConfig:
    knn_k: int = 200  # InstDisc (Wu et al. 2018) weighted kNN
    knn_temperature: float = 0.1
    linear_weight_decay: float = 1e-4
    linear_max_iter: int = 500
    label_fractions: list[float] = field(default_factory=lambda: [0.01, 0.1])  # semi-supervised
    monitor_every_n_steps: int = 50  # collapse monitor on the training batch

    def __post_init__(self) -> None:
        _check_positive("eval.knn_k", self.knn_k)
        _check_positive("eval.knn_temperature", self.knn_temperature)
        if not all(0 < f <= 1 for f in self.label_fractions):
            raise ValueError(f"eval.label_fractions must be in (0, 1], got {self.label_fractions}")


@dataclass
class ExperimentConfig:
    """What `tico reproduce` runs: the paper's comparisons, at the file's scale."""

    # dotted overrides applied to this file's settings for every reproduction run (the paper
    # scale trains ImageNet by default but reproduces the CIFAR-10 ResNet-18 experiments)
    base_overrides: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    methods: list[str] = field(default_factory=lambda: ["tico", "barlow_twins"])
    batch_sizes: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 512])
    # images seen (views pairs) for each batch size in the small-batch experiment
    batch_sweep_images: int = 5_000_000
    rhos: list[float] = field(default_factory=lambda: [1.0, 8.0, 20.0])
    betas: list[float] = field(default_factory=lambda: [0.5, 0.9, 0.99])
    # which experiments to run: comparison, batch_size, rho, beta
    run: list[str] = field(default_factory=lambda: ["comparison", "batch_size", "rho", "beta"])
    # smoke assertion: TiCo's kNN accuracy must beat the randomly initialised encoder by this
    min_knn_gain: float = 0.05

    def __post_init__(self) -> None:
        for method in self.methods:
            _check_choice("experiment.methods", method, METHODS)
        for name in self.run:
            _check_choice("experiment.run", name, ("comparison", "batch_size", "rho", "beta"))
        if min(self.batch_sizes, default=2) < 2:
            raise ValueError(f"experiment.batch_sizes must be >= 2, got {self.batch_sizes}")


@dataclass
class BenchConfig:
    """`tico bench`: ours against lightly's TiCoLoss, same everything else."""

    steps: int = 30  # timed training steps per implementation
    warmup_steps: int = 3
    repeats: int = 2  # alternate ours/theirs this many times; the best time counts
    knn_steps: int = 100  # training steps before the kNN comparison
    gpu_epoch: bool = True  # on a CUDA machine: one CIFAR-10 epoch in bf16 + channels-last


@dataclass
class TiCoConfig:
    name: str = "train"  # run folder: runs/tico/<name>/
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    scale: str = "paper"  # smoke | cpu | paper: the label in reports

    def __post_init__(self) -> None:
        _check_choice("scale", self.scale, ("smoke", "cpu", "paper"))
