"""Typed configuration of every command, with the DiffRec authors' ML-1M settings as defaults.

Sources: the paper (Wang et al., SIGIR 2023) and the hyper-parameters its released code
(YiyanXu/DiffRec, ``*/inference.py``) names for ``ml-1m_clean``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MODELS = (
    "diffrec",
    "tdiffrec",
    "ldiffrec",
    "ltdiffrec",
    "mostpop",
    "ease",
    "tease",
    "multvae",
    "lightgcn",
)
DIFFUSION_MODELS = ("diffrec", "tdiffrec", "ldiffrec", "ltdiffrec")
# models that read T-DiffRec's temporally weighted history (T-EASE: EASE on that input)
TEMPORAL_MODELS = ("tdiffrec", "ltdiffrec", "tease")
# models without randomness: one run stands for every seed
DETERMINISTIC_MODELS = ("mostpop", "ease", "tease")
ITEM_EMBEDDING_SOURCES = ("file", "lightgcn")


@dataclass
class DataConfig:
    # ml-1m_clean | ml-1m_noisy | any DiffRec-format folder under $PAPERSTACK_DATA/diffrec/
    dataset: str = "ml-1m_clean"
    source: str = "auto"  # auto | full | embedded (shared's data lookup)


@dataclass
class DiffusionConfig:
    steps: int = 40  # T; ML-1M clean, DiffRec inference.py
    noise_schedule: str = "linear-var"  # linear | linear-var | cosine; DiffRec default
    noise_scale: float = 0.005  # ML-1M clean, DiffRec inference.py
    noise_min: float = 0.005  # ML-1M clean
    noise_max: float = 0.01  # ML-1M clean (L-DiffRec uses 0.02)
    mean_type: str = "x0"  # x0 | eps; the paper predicts x0
    reweight: bool = True  # SNR-difference weighting of the per-step loss (Sec. 3.3)
    fix_first_beta: bool = True  # beta_1 = 1e-5, as DiffRec's code does (L-DiffRec's does not)
    timestep_sampling: str = "importance"  # importance | uniform; DiffRec's code: importance
    history_per_step: int = 10  # losses kept per step for importance sampling
    uniform_prob: float = 0.001  # uniform share of the importance distribution
    noise_steps: int = 0  # T': forward steps applied before inference (sampling_steps)
    reverse_steps: int | None = None  # reverse steps at inference; None: all T (the paper)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"diffusion.steps must be >= 1, got {self.steps}")
        if self.mean_type not in ("x0", "eps"):
            raise ValueError(f"diffusion.mean_type must be 'x0' or 'eps', got {self.mean_type!r}")
        if self.timestep_sampling not in ("importance", "uniform"):
            raise ValueError(
                "diffusion.timestep_sampling must be 'importance' or 'uniform', got "
                f"{self.timestep_sampling!r}"
            )
        if not 0 <= self.noise_steps <= self.steps:
            raise ValueError(
                f"diffusion.noise_steps must lie in [0, steps={self.steps}], got {self.noise_steps}"
            )
        if self.reverse_steps is not None and not 1 <= self.reverse_steps <= self.steps:
            raise ValueError(
                f"diffusion.reverse_steps must lie in [1, steps={self.steps}] or be null, got "
                f"{self.reverse_steps}"
            )


@dataclass
class DenoiserConfig:
    dims: list[int] = field(default_factory=lambda: [200, 600])  # ML-1M clean checkpoint name
    emb_size: int = 10  # timestep embedding size, DiffRec --emb_size
    dropout: float = 0.5  # input dropout of DiffRec's DNN
    norm: bool = False  # DiffRec --norm


@dataclass
class LatentConfig:
    """L-DiffRec (Sec. 3.4): k-means item clusters, a VAE encoder each, latent diffusion."""

    clusters: int = 2  # n_cate, ML-1M clean checkpoint name
    latent_dim: int = 300  # in_dims [300]: total latent width, split by cluster size
    decoder_dims: list[int] = field(default_factory=list)  # out_dims []: one linear decoder
    activation: str = "tanh"  # act_func
    dropout: float = 0.1  # encoder input dropout
    reparam: bool = True  # variational encoder (sample during training)
    lr: float = 0.001  # lr1, autoencoder
    weight_decay: float = 0.0  # wd1
    lamda: float = 0.03  # weight of the ELBO against the VAE loss, ML-1M clean
    anneal_cap: float = 0.005  # lamda decays linearly to this ...
    anneal_steps: int = 500  # ... over this many epochs
    vae_anneal_cap: float = 0.3  # KL weight grows linearly to this ...
    vae_anneal_steps: int = 200  # ... over this many batches
    kmeans_seed: int = 0
    # what the k-means clusters: the dataset's item_emb.npy (file; the authors ship LightGCN
    # embeddings) or the item embeddings of a LightGCN trained here on the training split
    # for `lightgcn_epochs` epochs with the `lightgcn` settings (lightgcn)
    item_embeddings: str = "file"
    lightgcn_epochs: int = 20

    def __post_init__(self) -> None:
        if self.item_embeddings not in ITEM_EMBEDDING_SOURCES:
            raise ValueError(
                f"latent.item_embeddings must be one of {ITEM_EMBEDDING_SOURCES}, got "
                f"{self.item_embeddings!r}"
            )
        if self.lightgcn_epochs < 1:
            raise ValueError(f"latent.lightgcn_epochs must be >= 1, got {self.lightgcn_epochs}")


@dataclass
class TemporalConfig:
    """T-DiffRec (Sec. 3.5): interaction weights linear in time from w_min to w_max."""

    w_min: float = 0.1  # T-DiffRec's default --w_min
    w_max: float = 1.0  # T-DiffRec's default --w_max


@dataclass
class EASEConfig:
    l2: float = 500.0  # L2 weight of EASE (Steck 2019); a common ML-1M value, not tuned here


@dataclass
class MultVAEConfig:
    hidden_dims: list[int] = field(default_factory=lambda: [600, 200])  # Liang et al. 2018
    dropout: float = 0.5
    total_anneal_steps: int = 20000  # KL weight reaches anneal_cap after this many batches
    anneal_cap: float = 0.2
    lr: float = 0.001
    batch_size: int = 500


@dataclass
class LightGCNConfig:
    """LightGCN (He et al., SIGIR 2020), the paper's settings (Sec. 4.1.2)."""

    dim: int = 64  # embedding size
    layers: int = 3  # K propagation layers
    reg: float = 1e-4  # lambda, L2 weight on the batch's ego embeddings
    lr: float = 0.001  # Adam
    # training pairs per step, one sampled negative each (the paper's Amazon-Book value)
    batch_size: int = 2048
    init_std: float = 0.1  # N(0, std^2) initial embeddings, as the authors' PyTorch code


@dataclass
class TrainConfig:
    lr: float = 0.001  # DiffRec lr (L-DiffRec lr2 for the denoiser: 5e-4)
    weight_decay: float = 0.0
    batch_size: int = 400
    max_epochs: int = 1000  # DiffRec's upper limit; early stopping ends runs sooner
    eval_every: int = 5  # epochs between validations, as DiffRec's code
    early_stop_epochs: int = 20  # stop after this many epochs without a better valid Recall@20
    eval_batch_size: int = 2048  # users ranked at once
    seed: int = 1  # DiffRec's random_seed
    device: str = "auto"
    precision: str = "auto"
    threads: int | None = None  # torch CPU threads; None: all this process may use
    progress_bar: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("train.batch_size and train.eval_batch_size must be >= 1")
        if self.eval_every < 1 or self.max_epochs < 1:
            raise ValueError("train.eval_every and train.max_epochs must be >= 1")
        if self.early_stop_epochs < self.eval_every:
            raise ValueError(
                f"train.early_stop_epochs ({self.early_stop_epochs}) must be >= train.eval_every "
                f"({self.eval_every})"
            )


@dataclass
class ParityConfig:
    """Switches that reproduce the released code where we correct it."""

    # The released argparse declares --reweight (and --norm, --sampling_noise) with type=bool,
    # and bool("0") is True: reweighting cannot be switched off. True reproduces that.
    bool_flags_from_strings: bool = False
    # Recall@K denominator for model selection: min(K, |R|) (ours) or |R| (released code).
    # Reports always carry both.
    recall_denominator: str = "min"

    def __post_init__(self) -> None:
        if self.recall_denominator not in ("min", "relevant"):
            raise ValueError(
                "parity.recall_denominator must be 'min' or 'relevant', got "
                f"{self.recall_denominator!r}"
            )


@dataclass
class ExperimentConfig:
    """What `reproduce` runs."""

    datasets: list[str] = field(default_factory=lambda: ["ml-1m_clean", "ml-1m_noisy"])
    models: list[str] = field(default_factory=lambda: list(MODELS))
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    # dotted overrides applied per dataset and per model (the authors' settings differ)
    dataset_overrides: dict[str, list[str]] = field(default_factory=dict)
    model_overrides: dict[str, list[str]] = field(default_factory=dict)
    sweep_steps: list[int] = field(default_factory=lambda: [5, 10, 20, 40, 80])
    sweep_noise_scales: list[float] = field(default_factory=lambda: [0.001, 0.005, 0.01, 0.05])
    sweep_epochs: int = 30  # epochs per sweep point
    sweep_noise_steps: int | None = None  # T of the noise-scale sweep; None: diffusion.steps
    # smoke assertion: DiffRec's test Recall@20 must beat most-popular's
    assert_beats_mostpop: bool = True


@dataclass
class SequentialConfig:
    """SASRec vs DreamRec on ML-100K by time, and DreamRec-generated augmentation."""

    enabled: bool = True
    max_len: int = 50  # history length (ML-100K histories have a median of 65 ratings)
    hidden: int = 64
    layers: int = 2
    heads: int = 1
    dropout: float = 0.2
    lr: float = 0.001
    batch_size: int = 128
    max_epochs: int = 100
    eval_every: int = 5
    patience_evals: int = 4  # stop after this many validations without a better Recall@20
    # DreamRec's encoder is one Transformer block with dropout 0.1 (released Tenc)
    dreamrec_layers: int = 1
    dreamrec_dropout: float = 0.1
    # users per DreamRec step: ~240 (history, next item) pairs, near DreamRec's batch of 256
    # prefixes; a SASRec-sized batch of 128 users gives ~5,000 pairs and 45x fewer updates
    dreamrec_batch_size: int = 6
    # DreamRec's Adam lr: 1e-4 gave the better validation HR@20 of {1e-3, 1e-4} on ML-100K
    # (0.0212 vs 0.0138); the released commands use 1e-3 to 5e-5 by dataset
    dreamrec_lr: float = 1e-4
    steps: int = 200  # DreamRec's --timesteps default (500 in its YooChoose/Zhihu commands)
    beta_schedule: str = "exp"  # DreamRec's default --beta_sche (also 'linear', 'cosine')
    denoiser_depth: int = 1  # linear layers; DreamRec's default 'mlp1' is one linear map
    p_uncond: float = 0.1  # DreamRec's probability of training without guidance
    guidance_weight: float = 2.0  # DreamRec's classifier-free guidance w
    # DreamRec's item embeddings start as N(0, 1) (released Tenc); SASRec keeps hidden^-0.5
    embedding_std: float = 1.0
    augment: bool = True  # run the augmentation experiment
    augment_max_history: int = 20  # users with at most this many training items ...
    augment_extra: int = 2  # ... get this many generated items appended


@dataclass
class ContentConfig:
    """Preference-conditioned image diffusion on CIFAR-10 (content presentation)."""

    enabled: bool = False
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3  # AdamW, after a linear warm-up; small UNets tolerate far more than 2e-4
    warmup_steps: int = 100
    ema_decay: float = 0.995  # sampling uses the moving average of the weights
    # generator resolution: CIFAR-10 average-pooled from 32x32 (16 keeps a CPU run short);
    # the judge sees real and generated images at this same resolution
    image_size: int = 16
    width: int = 32  # UNet base channels (levels: width, 2 width, 2 width)
    steps: int = 1000  # DDPM training steps (cosine schedule)
    inference_steps: int = 50  # DDIM sampling steps
    p_uncond: float = 0.1  # probability of the null preference in training (CFG, Ho & Salimans)
    guidance_scale: float = 3.0  # eps_null + w (eps_pref - eps_null); 1 is no guidance
    per_category: int = 20  # images generated per preferred category
    judge_weights: str = ""  # EfficientNet-Lite0 state dict; "" is the pip package's copy
    judge_input_size: int = 96  # images are upsampled to this before the judge's backbone
    limit: int | None = None  # a random `limit` of the training images

    def __post_init__(self) -> None:
        if self.image_size not in (8, 16, 32):
            raise ValueError(f"content.image_size must be 8, 16 or 32, got {self.image_size}")
        if not 0.0 < self.p_uncond < 1.0:
            raise ValueError(
                f"content.p_uncond must be in (0, 1) so both the null and the preferred "
                f"inputs are trained, got {self.p_uncond}"
            )
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"content.ema_decay must be in [0, 1), got {self.ema_decay}")
        for name in ("epochs", "batch_size", "width", "steps", "inference_steps", "per_category"):
            if getattr(self, name) < 1:
                raise ValueError(f"content.{name} must be >= 1, got {getattr(self, name)}")
        if self.inference_steps > self.steps:
            raise ValueError(
                f"content.inference_steps ({self.inference_steps}) cannot exceed "
                f"content.steps ({self.steps})"
            )
        if self.width % 8:
            raise ValueError(f"content.width must be a multiple of 8 (GroupNorm), got {self.width}")
        if self.lr <= 0:
            raise ValueError(f"content.lr must be > 0, got {self.lr}")


@dataclass
class BenchConfig:
    # checkout of YiyanXu/DiffRec outside this repository; "" reads $DIFFREC_RELEASED_CODE
    released_code: str = ""
    # epochs for both implementations (each also stops after 20 epochs without gain);
    # 20 keeps `make bench` near half an hour on 2 cores, 1000 is the authors' full run
    epochs: int = 20
    # the first seed is the head-to-head run (1: the released code's fixed seed); more seeds
    # rerun ours and RecBole for the spread of their metrics
    seeds: list[int] = field(default_factory=lambda: [1])
    timeout_s: int = 1800
    # RecBole's DiffRec as a third peer (same split, settings and epochs as ours)
    recbole: bool = True
    # an interpreter whose environment has recbole; "" runs RecBole on this interpreter with
    # RecBole's pinned packages from recbole_site (installed there on first use)
    recbole_python: str = ""
    # "" is $XDG_CACHE_HOME/paperstack/recbole-<version> (~/.cache/...), outside the repo
    recbole_site: str = ""


@dataclass
class Config:
    name: str = "train"  # run folder name under runs/diffusion_rec/
    model: str = "diffrec"  # one of MODELS
    data: DataConfig = field(default_factory=DataConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    latent: LatentConfig = field(default_factory=LatentConfig)
    temporal: TemporalConfig = field(default_factory=TemporalConfig)
    ease: EASEConfig = field(default_factory=EASEConfig)
    multvae: MultVAEConfig = field(default_factory=MultVAEConfig)
    lightgcn: LightGCNConfig = field(default_factory=LightGCNConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    parity: ParityConfig = field(default_factory=ParityConfig)
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    sequential: SequentialConfig = field(default_factory=SequentialConfig)
    content: ContentConfig = field(default_factory=ContentConfig)
    scale: str = "smoke"  # smoke | cpu | paper: labels reports

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        unknown = [m for m in self.experiment.models if m not in MODELS]
        if unknown:
            raise ValueError(
                f"experiment.models has unknown models {unknown}; choose from {MODELS}"
            )
        if not self.bench.seeds:
            raise ValueError("bench.seeds must list at least one seed, e.g. bench.seeds=[1]")
        if self.scale not in ("smoke", "cpu", "paper"):
            raise ValueError(f"scale must be smoke, cpu or paper, got {self.scale!r}")
