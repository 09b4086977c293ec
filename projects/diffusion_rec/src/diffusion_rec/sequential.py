"""Sequential recommendation on ML-100K by time: SASRec and DreamRec under one protocol.

- SASRec (Kang & McAuley, ICDM 2018): a causal Transformer over the item history, trained
  to predict the next item at every position (softmax over all items).
- DreamRec (Yang et al., NeurIPS 2023): the same kind of encoder turns the history into a
  guidance vector c; a conditional diffusion model generates the *oracle* embedding of the
  next item, x_0 ~ p(x_0 | c), trained with x_0-prediction and classifier-free guidance
  (c replaced by a learned null vector with probability ``p_uncond``); at inference
  x_0-hat = (1 + w) f(x_t, c, t) - w f(x_t, null, t), and items are ranked by the inner
  product of their embeddings with the generated one.

The noise schedule and the reverse step come from diffusers' ``DDPMScheduler`` with
``prediction_type="sample"`` (DreamRec samples with noise, unlike DiffRec). The defaults
follow the released code (YangZhengyi98/DreamRec): a one-block encoder, 200 steps of the
VP-SDE ("exp") schedule, a single linear denoiser, batches of ~256 history/next-item pairs.

Protocol: each user's ratings in time order; the last is test, the one before validation
(leave-last-out, ``shared.data.movielens.temporal_split``); all items are ranked, and the
items already in the input history are masked.
"""

from __future__ import annotations

import copy
import itertools
import logging
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from diffusion_rec.config import SequentialConfig
from diffusion_rec.denoiser import sinusoidal_embedding
from shared.data.movielens import load_ml100k, temporal_split
from shared.metrics import interaction_matrix, topk_ranking_metrics

log = logging.getLogger(__name__)


@dataclass
class SequenceData:
    """Left-padded item-id sequences (ids shifted by one; 0 is padding) and held-out targets."""

    n_items: int
    train_inputs: torch.Tensor  # (users, L) history without the last two items
    valid_target: torch.Tensor  # (users,) item id + 1
    test_inputs: torch.Tensor  # (users, L) history with the validation item
    test_target: torch.Tensor  # (users,) item id + 1


def _left_pad(sequences: list[list[int]], max_len: int) -> torch.Tensor:
    out = torch.zeros(len(sequences), max_len, dtype=torch.long)
    for row, items in enumerate(sequences):
        items = items[-max_len:]
        if items:
            out[row, max_len - len(items) :] = torch.tensor(items)
    return out


def load_ml100k_sequences(max_len: int = 50, source: str = "auto") -> SequenceData:
    """ML-100K as time-ordered sequences with leave-last-out validation and test items."""
    interactions = load_ml100k(source=source)  # type: ignore[arg-type]
    frame = interactions.frame.sort_values(["user", "timestamp"], kind="stable")
    train, valid, test = temporal_split(frame, mode="leave_last_out")
    by_user = train.groupby("user")["item"].apply(lambda s: [int(i) + 1 for i in s])
    valid_item = valid.set_index("user")["item"] + 1
    test_item = test.set_index("user")["item"] + 1
    users = sorted(set(valid_item.index) & set(test_item.index))
    histories = [by_user.get(u, []) for u in users]
    with_valid = [[*h, int(valid_item[u])] for h, u in zip(histories, users, strict=True)]
    log.info(
        "ML-100K sequences: %d users, %d items, max length %d",
        len(users),
        interactions.n_items,
        max_len,
    )
    return SequenceData(
        n_items=interactions.n_items,
        train_inputs=_left_pad(histories, max_len),
        valid_target=torch.tensor([int(valid_item[u]) for u in users]),
        test_inputs=_left_pad(with_valid, max_len),
        test_target=torch.tensor([int(test_item[u]) for u in users]),
    )


class CausalSequenceEncoder(nn.Module):
    """SASRec's encoder: item + position embeddings, causal pre-norm Transformer layers.

    Item embeddings start as N(0, ``embedding_std``^2) (None: hidden^-0.5, SASRec's) and are
    divided by ``embedding_std`` on input, so the Transformer sees unit-variance items at
    initialisation whatever the scale of the table.
    """

    def __init__(
        self,
        n_items: int,
        max_len: int,
        hidden: int,
        layers: int,
        heads: int,
        dropout: float,
        embedding_std: float | None = None,
    ):
        super().__init__()
        if embedding_std is not None and embedding_std <= 0:
            raise ValueError(f"embedding_std must be positive (or None), got {embedding_std}")
        self.embedding_std = embedding_std or hidden**-0.5
        self.max_len = max_len
        self.item_embedding = nn.Embedding(n_items + 1, hidden, padding_idx=0)
        self.position_embedding = nn.Embedding(max_len, hidden)
        layer = nn.TransformerEncoderLayer(
            hidden, heads, hidden * 4, dropout, batch_first=True, norm_first=True
        )
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)
        nn.init.normal_(self.item_embedding.weight, std=self.embedding_std)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()  # padding stays the zero vector

    def forward(self, sequences: torch.Tensor) -> torch.Tensor:
        """(batch, L, hidden) states; position i sees items up to i."""
        length = sequences.shape[1]
        # positions count back from the most recent item (sequences are left-padded), so the
        # last item has the same position whether a training prefix or a full history is read
        positions = torch.arange(self.max_len - length, self.max_len, device=sequences.device)
        h = self.item_embedding(sequences) / self.embedding_std
        h = self.dropout(h + self.position_embedding(positions))
        # Limitation: left padding is attended to as a (learned-position) zero item instead of
        # being masked out; a key-padding mask would turn all-padding prefixes into NaNs.
        causal = nn.Transformer.generate_square_subsequent_mask(length, device=sequences.device)
        h = self.transformer(h, mask=causal, is_causal=True)
        return self.norm(h)

    def item_table(self) -> torch.Tensor:
        """(items, hidden) embeddings of the real items (padding row dropped)."""
        return self.item_embedding.weight[1:]


def _next_item_pairs(sequences: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-item targets shifted by one; 0 marks positions without a target."""
    return sequences[:, :-1], sequences[:, 1:] * (sequences[:, :-1] > 0)


class SASRec(L.LightningModule):
    """Next-item prediction with full softmax cross-entropy at every position."""

    def __init__(
        self,
        n_items: int,
        max_len: int = 50,
        hidden: int = 64,
        layers: int = 2,
        heads: int = 1,
        dropout: float = 0.2,
        lr: float = 1e-3,
    ):
        super().__init__()
        self.encoder = CausalSequenceEncoder(n_items, max_len, hidden, layers, heads, dropout)
        self.lr = lr

    def training_step(self, batch, batch_idx):
        inputs, targets = _next_item_pairs(batch[0])
        states = self.encoder(inputs)
        logits = states @ self.encoder.item_table().T  # (B, L-1, items)
        valid = targets > 0
        loss = F.cross_entropy(logits[valid], targets[valid] - 1)
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)

    @torch.no_grad()
    def score(self, sequences: torch.Tensor) -> torch.Tensor:
        self.eval()
        return self.encoder(sequences)[:, -1] @ self.encoder.item_table().T


class GuidedDenoiser(nn.Module):
    """f(x_t, c, t) -> x_0 over the concatenation [x_t, c, time embedding].

    ``depth`` linear layers (GELU between them); DreamRec's released default (``mlp1``) is a
    single linear map of the concatenation, its ``mlp2`` two layers. The timestep enters as a
    sinusoidal embedding of ``hidden`` dimensions through a two-layer GELU MLP (Tenc.step_mlp).
    """

    def __init__(self, hidden: int, depth: int = 1):
        super().__init__()
        if depth < 1:
            raise ValueError(f"denoiser depth must be >= 1 linear layer, got {depth}")
        self.hidden = hidden
        self.time = nn.Sequential(
            nn.Linear(hidden, 2 * hidden), nn.GELU(), nn.Linear(2 * hidden, hidden)
        )
        widths = [3 * hidden] + [2 * hidden] * (depth - 1) + [hidden]
        layers: list[nn.Module] = []
        for fan_in, fan_out in itertools.pairwise(widths):
            layers += [nn.Linear(fan_in, fan_out), nn.GELU()]
        self.net = nn.Sequential(*layers[:-1])  # no activation on the x_0 estimate

    def forward(self, x_t: torch.Tensor, guidance: torch.Tensor, t: torch.Tensor):
        time = self.time(sinusoidal_embedding(t, self.hidden).to(x_t.dtype))
        return self.net(torch.cat([x_t, guidance, time], dim=-1))


def ddpm_linear_betas(steps: int) -> dict[str, Any]:
    """DDPM's linear schedule (1e-4 to 0.02 over 1000 steps) rescaled to ``steps`` steps.

    Scaling both ends by 1000 / steps keeps the total noise, so abar_T stays near 0 and the
    reverse process can start from pure Gaussian noise; the unscaled ends with 100 steps
    would leave abar_T = 0.36, a start the model never saw in training.
    """
    scale = 1000 / steps
    return {
        "beta_schedule": "linear",
        "beta_start": 1e-4 * scale,
        "beta_end": min(0.02 * scale, 0.999),
    }


def vp_exponential_betas(steps: int, beta_min: float = 0.1, beta_max: float = 10.0):
    """DreamRec's default ``exp`` schedule: the variance-preserving SDE of Song et al. (2021).

    beta(s) = beta_min + s (beta_max - beta_min) for s in [0, 1], integrated over each of the
    ``steps`` steps: 1 - beta_i = exp(-int beta(s) ds). The signal left at the last step,
    abar_T = exp(-(beta_min + beta_max) / 2) ~ 0.006, does not depend on ``steps``.
    """
    edges = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    integral = beta_min * edges + 0.5 * (beta_max - beta_min) * edges**2
    return (1.0 - torch.exp(-(integral[1:] - integral[:-1]))).float()


def diffusion_schedule(name: str, steps: int) -> dict[str, Any]:
    """``DDPMScheduler`` arguments for DreamRec's beta schedules (``--beta_sche``)."""
    if name == "exp":
        return {"trained_betas": vp_exponential_betas(steps).tolist()}
    if name == "linear":
        return ddpm_linear_betas(steps)
    if name == "cosine":
        return {"beta_schedule": "squaredcos_cap_v2"}
    raise ValueError(f"beta_schedule must be 'exp', 'linear' or 'cosine', got {name!r}")


class DreamRec(L.LightningModule):
    """Generate the next item's oracle embedding with a history-guided diffusion model."""

    # Limitation: on ML-100K DreamRec stays near chance (test HR@20 0.01-0.02, SASRec 0.25,
    # most-popular 0.11) with the released code's settings too. The x_0 MSE pulls each target
    # embedding towards the prediction and nothing pushes items apart: the 100 most frequent
    # items lose 70% of their norm in 16 epochs, and the inner product then ranks them last.

    def __init__(
        self,
        n_items: int,
        max_len: int = 50,
        hidden: int = 64,
        layers: int = 2,
        heads: int = 1,
        dropout: float = 0.2,
        lr: float = 1e-3,
        steps: int = 100,
        p_uncond: float = 0.1,
        guidance_weight: float = 2.0,
        inference_steps: int | None = None,
        embedding_std: float = 1.0,
        beta_schedule: str = "exp",
        denoiser_depth: int = 1,
    ):
        super().__init__()
        if not 0.0 <= p_uncond < 1.0:
            raise ValueError(f"p_uncond must lie in [0, 1), got {p_uncond}")
        # The item table is both the history's input and the diffusion target x_0, trained only
        # by the MSE below, which pulls each target towards the prediction: started at
        # SASRec's hidden^-0.5 scale, the often-predicted items shrink towards 0 within a few
        # epochs and the inner product ranks them last. DreamRec starts it at N(0, 1).
        self.encoder = CausalSequenceEncoder(
            n_items, max_len, hidden, layers, heads, dropout, embedding_std
        )
        self.denoiser = GuidedDenoiser(hidden, denoiser_depth)
        # the unconditional guidance is a learned vector drawn like the items, N(0, 1)
        self.null_guidance = nn.Parameter(torch.randn(hidden))
        self.scheduler = DDPMScheduler(
            num_train_timesteps=steps,
            prediction_type="sample",
            clip_sample=False,
            **diffusion_schedule(beta_schedule, steps),
        )
        self.lr, self.p_uncond, self.guidance_weight = lr, p_uncond, guidance_weight
        self.inference_steps = inference_steps or steps

    def training_step(self, batch, batch_idx):
        inputs, targets = _next_item_pairs(batch[0])
        guidance = self.encoder(inputs)[targets > 0]  # (N, hidden)
        x0 = self.encoder.item_embedding(targets[targets > 0])  # oracle next-item embeddings

        # classifier-free guidance: drop the history for a fraction of the samples
        drop = torch.rand(len(guidance), device=self.device) < self.p_uncond
        guidance = torch.where(drop.unsqueeze(1), self.null_guidance.expand_as(guidance), guidance)

        # x0-prediction loss at a uniformly drawn step (DreamRec's objective)
        t = torch.randint(
            0, self.scheduler.config.num_train_timesteps, (len(x0),), device=self.device
        )
        noise = torch.randn_like(x0)
        x_t = self.scheduler.add_noise(x0, noise, t)
        loss = F.mse_loss(self.denoiser(x_t, guidance, t), x0)
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def configure_optimizers(self):
        # DreamRec's optimizer is Adam(W) with l2_decay 0; weight decay would add to the shrinkage
        return torch.optim.Adam(self.parameters(), lr=self.lr)

    @torch.no_grad()
    def generate(self, sequences: torch.Tensor, generator: torch.Generator | None = None):
        """(batch, hidden) generated next-item embeddings (guided reverse process)."""
        self.eval()
        guidance = self.encoder(sequences)[:, -1]
        null = self.null_guidance.expand_as(guidance)
        scheduler = copy.deepcopy(self.scheduler)
        scheduler.set_timesteps(self.inference_steps)
        x = torch.randn(guidance.shape, generator=generator).to(guidance)
        for t in scheduler.timesteps:
            steps = torch.full((len(x),), int(t), device=x.device, dtype=torch.long)
            conditional = self.denoiser(x, guidance, steps)
            unconditional = self.denoiser(x, null, steps)
            x0 = (1 + self.guidance_weight) * conditional - self.guidance_weight * unconditional
            x = scheduler.step(x0, t, x, generator=generator).prev_sample
        return x

    def score(self, sequences: torch.Tensor) -> torch.Tensor:
        generated = self.generate(sequences, torch.Generator().manual_seed(0))
        return generated @ self.encoder.item_table().T


def evaluate_sequences(
    model: Any, inputs: torch.Tensor, targets: torch.Tensor, n_items: int, ks=(10, 20)
) -> dict[str, float]:
    """Full-ranking metrics of next-item prediction; items in the input history are masked."""
    users = torch.arange(len(inputs))
    history = inputs > 0
    seen = interaction_matrix(
        users.repeat_interleave(history.sum(1)), inputs[history] - 1, len(inputs), n_items
    )
    relevant = interaction_matrix(users, targets - 1, len(inputs), n_items)
    scores = torch.cat([model.score(batch) for batch in inputs.split(512)])
    quiet = logging.getLogger("shared.metrics.ranking")
    previous, quiet.level = quiet.level, logging.WARNING
    try:
        return topk_ranking_metrics(scores, seen, relevant, ks=ks)
    finally:
        quiet.level = previous


def build_sequential(name: str, data: SequenceData, config: SequentialConfig) -> L.LightningModule:
    common = dict(
        n_items=data.n_items,
        max_len=config.max_len,
        hidden=config.hidden,
        layers=config.layers,
        heads=config.heads,
        dropout=config.dropout,
        lr=config.lr,
    )
    if name == "sasrec":
        return SASRec(**common)
    if name == "dreamrec":
        common.update(
            layers=config.dreamrec_layers, dropout=config.dreamrec_dropout, lr=config.dreamrec_lr
        )
        return DreamRec(
            **common,
            steps=config.steps,
            p_uncond=config.p_uncond,
            guidance_weight=config.guidance_weight,
            embedding_std=config.embedding_std,
            beta_schedule=config.beta_schedule,
            denoiser_depth=config.denoiser_depth,
        )
    raise ValueError(f"sequential model must be 'sasrec' or 'dreamrec', got {name!r}")


def training_loader(name: str, sequences: torch.Tensor, config: SequentialConfig) -> DataLoader:
    """Shuffled batches of users; every position of a user's sequence is a training pair.

    DreamRec steps on ``dreamrec_batch_size`` users (about 256 history/next-item pairs, the
    released code's batch), SASRec on ``batch_size`` users.
    """
    batch_size = config.dreamrec_batch_size if name == "dreamrec" else config.batch_size
    return DataLoader(TensorDataset(sequences), batch_size=batch_size, shuffle=True)


def fit_sequential(
    name: str,
    data: SequenceData,
    config: SequentialConfig,
    seed: int = 1,
    train_inputs: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Train with Lightning, keep the best validation Recall@20, report test metrics."""
    return _fit(name, data, config, seed, train_inputs)[0]


def _fit(
    name: str,
    data: SequenceData,
    config: SequentialConfig,
    seed: int = 1,
    train_inputs: torch.Tensor | None = None,
) -> tuple[dict[str, Any], L.LightningModule]:
    """Train with Lightning, keep the best validation Recall@20, report test metrics.

    ``train_inputs`` replaces the training sequences (the augmentation experiment).
    """
    L.seed_everything(seed, verbose=False)
    model = build_sequential(name, data, config)
    sequences = data.train_inputs if train_inputs is None else train_inputs
    loader = training_loader(name, sequences, config)
    best: dict[str, Any] = {"recall@20": -1.0, "state": None, "epoch": 0}

    class KeepBest(L.Callback):
        def on_train_epoch_end(self, trainer, module):
            epoch = trainer.current_epoch + 1
            if epoch % config.eval_every:
                return
            metrics = evaluate_sequences(module, data.train_inputs, data.valid_target, data.n_items)
            module.train()
            if metrics["recall@20"] > best["recall@20"]:
                best.update(
                    {
                        "recall@20": metrics["recall@20"],
                        "epoch": epoch,
                        "state": copy.deepcopy(module.state_dict()),
                    }
                )
            elif epoch - best["epoch"] >= config.eval_every * config.patience_evals:
                trainer.should_stop = True

    trainer = L.Trainer(
        max_epochs=config.max_epochs,
        accelerator="auto",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[KeepBest()],
    )
    trainer.fit(model, loader)
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    test = evaluate_sequences(model, data.test_inputs, data.test_target, data.n_items)
    log.info(
        "%s: test recall@20 %.4f (best valid epoch %d)", name, test["recall@20"], best["epoch"]
    )
    result = {
        "model": name,
        "seed": seed,
        "best_epoch": best["epoch"],
        "valid_recall@20": best["recall@20"],
        "test": test,
    }
    return result, model


def augment_with_diffusion(
    model: DreamRec, data: SequenceData, max_history: int = 20, extra: int = 2
) -> torch.Tensor:
    """Sparse users' training sequences extended with items a trained DreamRec generates.

    Diffusion for data augmentation (the survey's first role, as in DiffuASR): for users with
    at most ``max_history`` training items, generate ``extra`` next items (the nearest unseen
    item to each generated embedding) and append them, one after another. Returns new
    training sequences; other users are unchanged.
    """
    sequences = data.train_inputs.clone()
    lengths = (sequences > 0).sum(1)
    sparse = torch.nonzero(lengths <= max_history).flatten()
    for _ in range(extra):
        scores = model.score(sequences[sparse])
        seen = torch.zeros_like(scores, dtype=torch.bool)
        rows = torch.arange(len(sparse)).repeat_interleave(sequences.shape[1])
        ids = sequences[sparse].flatten()
        seen[rows[ids > 0], ids[ids > 0] - 1] = True
        new_items = scores.masked_fill(seen, float("-inf")).argmax(1) + 1
        sequences[sparse] = torch.cat([sequences[sparse, 1:], new_items.unsqueeze(1)], dim=1)
    log.info(
        "augmented %d sparse users (<= %d items) with %d generated items each",
        len(sparse),
        max_history,
        extra,
    )
    return sequences


def sequential_experiment(config: SequentialConfig, seeds: list[int]) -> dict[str, Any]:
    """SASRec vs DreamRec, then SASRec trained on DreamRec-augmented sequences vs plain."""
    data = load_ml100k_sequences(config.max_len)
    runs, augmentation = [], []
    for seed in seeds:
        runs.append(fit_sequential("sasrec", data, config, seed))
        result, dreamrec = _fit("dreamrec", data, config, seed)
        runs.append(result)
        if config.augment:
            # the trained DreamRec generates items for sparse users; SASRec trains on them
            augmented = augment_with_diffusion(
                dreamrec, data, config.augment_max_history, config.augment_extra
            )
            result = fit_sequential("sasrec", data, config, seed, train_inputs=augmented)
            result["model"] = "sasrec+dreamrec-augmentation"
            augmentation.append(result)
    return {"runs": runs, "augmentation": augmentation}
