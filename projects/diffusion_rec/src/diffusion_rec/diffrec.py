"""DiffRec and its variants as one Lightning module (Wang et al., SIGIR 2023).

- DiffRec: diffusion on the interaction vector with an MLP denoiser;
- T-DiffRec: the same on temporally weighted vectors (the weighting lives in the data);
- L-DiffRec: diffusion on the latents of per-cluster VAE encoders, trained jointly with
  the autoencoder; LT-DiffRec: both.

Training: sample t (importance sampling from the loss history), noise the input, predict
x_0, take the (SNR-reweighted) MSE divided by the importance weight. Scoring: the reverse
process from the un-noised history without sampled noise (``GaussianDiffusion.denoise``).
"""

from __future__ import annotations

import logging

import lightning as L
import numpy as np
import torch

from diffusion_rec.config import DiffusionConfig, LatentConfig
from diffusion_rec.denoiser import DiffRecDenoiser
from diffusion_rec.diffusion import (
    GaussianDiffusion,
    ImportanceTimestepSampler,
    noise_schedule_betas,
)
from diffusion_rec.latent import ClusteredVAE, multinomial_nll

log = logging.getLogger(__name__)

FIRST_BETA = 1e-5  # DiffRec's code fixes beta_1 (Sohl-Dickstein et al. 2015, Sec. 2.4.1)


def build_diffusion(
    config: DiffusionConfig, fix_first_beta: bool | None = None
) -> GaussianDiffusion:
    """The Gaussian diffusion of a config (``fix_first_beta`` overrides the config's)."""
    betas = noise_schedule_betas(
        config.noise_schedule, config.steps, config.noise_scale, config.noise_min, config.noise_max
    )
    if config.fix_first_beta if fix_first_beta is None else fix_first_beta:
        betas = betas.copy()
        betas[0] = FIRST_BETA
    return GaussianDiffusion(betas, mean_type=config.mean_type)  # type: ignore[arg-type]


class DiffRecModule(L.LightningModule):
    """Train and score DiffRec, T-DiffRec, L-DiffRec or LT-DiffRec.

    Batches are (batch, items) float histories (binary or temporally weighted).
    ``cluster_ids`` (items,) switches on L-DiffRec's latent diffusion.
    """

    def __init__(
        self,
        n_items: int,
        diffusion: DiffusionConfig,
        dims: list[int],
        emb_size: int = 10,
        dropout: float = 0.5,
        norm: bool = False,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        reweight: bool = True,
        cluster_ids: np.ndarray | None = None,
        latent: LatentConfig | None = None,
    ):
        super().__init__()
        self.diffusion_config, self.lr, self.weight_decay = diffusion, lr, weight_decay
        self.reweight = reweight
        self.latent_config = latent if cluster_ids is not None else None

        # L-DiffRec: the diffusion runs on the autoencoder's latents
        self.autoencoder = None
        width = n_items
        if cluster_ids is not None:
            latent = latent or LatentConfig()
            self.autoencoder = ClusteredVAE(
                cluster_ids,
                latent.latent_dim,
                latent.decoder_dims,
                latent.activation,
                latent.dropout,
                latent.reparam,
            )
            width = latent.latent_dim
        self.denoiser = DiffRecDenoiser(
            width, dims, emb_size, dropout, norm, bias_std=0.0 if cluster_ids is not None else 1e-3
        )
        # L-DiffRec's code keeps the schedule's first beta; DiffRec's fixes it
        fix = None if cluster_ids is None else False
        self.diffusion = build_diffusion(diffusion, fix_first_beta=fix)
        self.sampler = ImportanceTimestepSampler(
            diffusion.steps, diffusion.history_per_step, diffusion.uniform_prob
        )
        self.vae_updates = 0  # batches seen, for the KL annealing

    # training

    def _diffusion_loss(self, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean importance-corrected loss and the predicted x_0 of a batch."""
        if self.diffusion_config.timestep_sampling == "importance":
            t, importance = self.sampler.sample(len(x0))
        else:
            t = torch.randint(0, self.diffusion.steps, (len(x0),), device=x0.device)
            importance = torch.ones(len(x0), dtype=torch.float64, device=x0.device)
        terms = self.diffusion.training_loss(self.denoiser, x0, t, reweight=self.reweight)
        self.sampler.update(t, terms["loss"])
        loss = (terms["loss"] / importance.to(terms["loss"].dtype)).mean()
        return loss, terms["pred_x0"]

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        if self.autoencoder is None:
            loss, _ = self._diffusion_loss(batch)
            self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True)
            return loss

        # L-DiffRec: encode, diffuse the latent, decode the predicted latent (Sec. 3.4)
        config = self.latent_config
        latent, kl = self.autoencoder.encode(batch)
        elbo, pred_latent = self._diffusion_loss(latent)
        reconstruction = multinomial_nll(self.autoencoder.decode(pred_latent), batch)

        # annealing: the ELBO weight decays per epoch, the KL weight grows per batch
        epoch = self.current_epoch
        if config.anneal_steps > 0:
            lamda = max((1.0 - epoch / config.anneal_steps) * config.lamda, config.anneal_cap)
        else:
            lamda = max(config.lamda, config.anneal_cap)
        if config.vae_anneal_steps > 0:
            beta = min(config.vae_anneal_cap, self.vae_updates / config.vae_anneal_steps)
        else:
            beta = config.vae_anneal_cap
        self.vae_updates += 1
        vae_loss = reconstruction + beta * kl
        # L-DiffRec's code weighs the ELBO by lamda when reweighting, else the VAE loss
        loss = lamda * elbo + vae_loss if self.reweight else elbo + lamda * vae_loss
        self.log_dict(
            {"train/loss": loss, "train/elbo": elbo, "train/vae": vae_loss},
            prog_bar=True,
            on_step=False,
            on_epoch=True,
        )
        return loss

    def configure_optimizers(self):
        groups = [
            {"params": self.denoiser.parameters(), "lr": self.lr, "weight_decay": self.weight_decay}
        ]
        if self.autoencoder is not None:
            groups.append(
                {
                    "params": self.autoencoder.parameters(),
                    "lr": self.latent_config.lr,
                    "weight_decay": self.latent_config.weight_decay,
                }
            )
        # one AdamW over both groups steps exactly like L-DiffRec's two AdamW optimizers
        return torch.optim.AdamW(groups)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["vae_updates"] = self.vae_updates

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.vae_updates = checkpoint.get("vae_updates", 0)

    # scoring

    @torch.no_grad()
    def score(self, history: torch.Tensor) -> torch.Tensor:
        """(batch, items) ranking scores from (batch, items) histories."""
        was_training = self.training
        self.eval()
        config = self.diffusion_config
        try:
            if self.autoencoder is None:
                return self.diffusion.denoise(
                    self.denoiser, history, config.noise_steps, config.reverse_steps
                )
            latent, _ = self.autoencoder.encode(history)
            latent = self.diffusion.denoise(
                self.denoiser, latent, config.noise_steps, config.reverse_steps
            )
            return self.autoencoder.decode(latent)
        finally:
            self.train(was_training)
