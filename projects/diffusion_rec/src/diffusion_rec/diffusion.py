"""DiffRec's Gaussian diffusion over interaction vectors (Wang et al., SIGIR 2023, Sec. 3).

The forward process corrupts a user's history x_0 with Gaussian noise,
q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I); a denoiser learns to predict x_0 (or the
noise), and inference starts from the *un-noised* history (or one noised for T' steps) and
runs the reverse posterior means without sampling noise, so the output is a deterministic
ranking score per item.

Noise schedules: ``linear`` and ``cosine`` come from diffusers' ``DDPMScheduler``
(``beta_schedule="linear"`` and ``"squaredcos_cap_v2"``). ``linear-var`` has no diffusers
equivalent: DiffRec makes the *variance* 1 - abar_t linear in t (Sec. 3.4) and derives
beta_t = 1 - abar_t / abar_{t-1}; we compute those betas here. Every derived quantity
(abar, SNR, posterior coefficients) is then computed in float64, because DiffRec's noise
is tiny (1 - abar_t ~ 1e-5) and the SNR weights need more than float32's 7 digits. The
reverse step is written here as well: ``DDPMScheduler.step`` always adds noise for t > 0,
while DiffRec's inference adds none.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from diffusers import DDPMScheduler
from torch import nn

Schedule = Literal["linear", "linear-var", "cosine"]
MeanType = Literal["x0", "eps"]
SCHEDULES = ("linear", "linear-var", "cosine")
MAX_BETA = 0.999  # clip of every schedule, as in Nichol & Dhariwal 2021 and DiffRec's code


def linear_variance_betas(variance: np.ndarray, max_beta: float = MAX_BETA) -> np.ndarray:
    """Betas whose cumulative noise 1 - abar_t equals ``variance`` (DiffRec Sec. 3.4).

    beta_1 = variance_1 and beta_t = 1 - (1 - variance_t) / (1 - variance_{t-1}), clipped.
    """
    alpha_bar = 1.0 - np.asarray(variance, dtype=np.float64)
    betas = np.empty_like(alpha_bar)
    betas[0] = 1.0 - alpha_bar[0]
    betas[1:] = np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], max_beta)
    return betas


def noise_schedule_betas(
    schedule: Schedule,
    steps: int,
    noise_scale: float = 0.1,
    noise_min: float = 0.0001,
    noise_max: float = 0.02,
) -> np.ndarray:
    """(steps,) float64 betas of a DiffRec noise schedule.

    ``linear``: betas linear from noise_scale * noise_min to noise_scale * noise_max;
    ``linear-var``: 1 - abar_t linear over the same range (DiffRec's default);
    ``cosine``: abar(t) = cos((t/T + 0.008) / 1.008 * pi / 2)^2 (Nichol & Dhariwal 2021),
    which ignores the noise bounds.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"noise schedule must be one of {SCHEDULES}, got {schedule!r}")
    if steps < 1:
        raise ValueError(f"diffusion steps must be >= 1, got {steps}")
    if schedule != "cosine":
        if not noise_scale > 0.0:
            raise ValueError(
                f"noise_scale must be > 0 for schedule {schedule!r}, got {noise_scale}"
            )
        if not 0.0 < noise_min < noise_max:
            raise ValueError(
                f"noise bounds need 0 < noise_min < noise_max (DiffRec's README asks the same), "
                f"got noise_min={noise_min}, noise_max={noise_max}"
            )
        if noise_scale * noise_max >= 1.0:
            raise ValueError(
                f"noise_scale * noise_max = {noise_scale * noise_max} must be < 1 "
                "(it is a variance)"
            )
    start, end = noise_scale * noise_min, noise_scale * noise_max
    if schedule == "linear":
        scheduler = DDPMScheduler(
            num_train_timesteps=steps, beta_schedule="linear", beta_start=start, beta_end=end
        )
    elif schedule == "cosine":
        scheduler = DDPMScheduler(num_train_timesteps=steps, beta_schedule="squaredcos_cap_v2")
    else:
        # linear-var has no diffusers schedule (DiffRec Sec. 3.4): computed here in float64
        variance = np.linspace(start, end, steps, dtype=np.float64)
        return linear_variance_betas(variance)
    # diffusers stores float32 betas (relative error ~6e-8); the rest is derived in float64
    return scheduler.betas.double().numpy()


class GaussianDiffusion(nn.Module):
    """DiffRec's forward process, reverse posterior, training loss and deterministic inference.

    Holds no parameters, only float64 schedule buffers (they move with ``.to(device)``).

    >>> diffusion = GaussianDiffusion(noise_schedule_betas("linear-var", 40, 0.005, 0.005, 0.01))
    >>> x_t = diffusion.q_sample(x0, t)
    """

    def __init__(self, betas: np.ndarray | torch.Tensor, mean_type: MeanType = "x0"):
        super().__init__()
        if mean_type not in ("x0", "eps"):
            raise ValueError(f"mean_type must be 'x0' or 'eps', got {mean_type!r}")
        betas = torch.as_tensor(np.asarray(betas), dtype=torch.float64)
        if betas.dim() != 1 or len(betas) == 0 or not ((betas > 0) & (betas <= 1)).all():
            raise ValueError("betas must be a non-empty 1-D array with values in (0, 1]")
        self.mean_type = mean_type
        self.steps = len(betas)

        # cumulative products: abar_t, abar_{t-1} (abar_{-1} = 1)
        alphas = 1.0 - betas
        alphas_cumprod = torch.cumprod(alphas, 0)
        alphas_cumprod_prev = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
        self.register_buffer("betas", betas, persistent=False)
        self.register_buffer("alphas_cumprod", alphas_cumprod, persistent=False)
        self.register_buffer("alphas_cumprod_prev", alphas_cumprod_prev, persistent=False)

        # posterior q(x_{t-1} | x_t, x_0) = N(c1 x_0 + c2 x_t, beta~_t I)
        posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        self.register_buffer("posterior_variance", posterior_variance, persistent=False)
        self.register_buffer(
            "posterior_mean_coef1",
            betas * alphas_cumprod_prev.sqrt() / (1.0 - alphas_cumprod),
            persistent=False,
        )
        self.register_buffer(
            "posterior_mean_coef2",
            (1.0 - alphas_cumprod_prev) * alphas.sqrt() / (1.0 - alphas_cumprod),
            persistent=False,
        )

    @staticmethod
    def _at(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """values[t] as a (batch, 1) column in the dtype of ``like``."""
        return values[t].to(like.dtype).unsqueeze(-1)

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio abar_t / (1 - abar_t), float64."""
        alpha_bar = self.alphas_cumprod[t]
        return alpha_bar / (1.0 - alpha_bar)

    def q_sample(
        self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (DiffRec Eq. 2)."""
        if noise is None:
            noise = torch.randn_like(x0)
        return (
            self._at(self.alphas_cumprod.sqrt(), t, x0) * x0
            + self._at((1.0 - self.alphas_cumprod).sqrt(), t, x0) * noise
        )

    def q_posterior(
        self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (batch, items) and variance (batch, 1) of q(x_{t-1} | x_t, x_0) (DiffRec Eq. 6)."""
        mean = (
            self._at(self.posterior_mean_coef1, t, x_t) * x0
            + self._at(self.posterior_mean_coef2, t, x_t) * x_t
        )
        return mean, self._at(self.posterior_variance, t, x_t)

    def predict_x0_from_eps(
        self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor
    ) -> torch.Tensor:
        """x_0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)."""
        return (
            self._at((1.0 / self.alphas_cumprod).sqrt(), t, x_t) * x_t
            - self._at((1.0 / self.alphas_cumprod - 1.0).sqrt(), t, x_t) * eps
        )

    def predicted_x0(self, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor):
        """The denoiser's estimate of x_0, whichever quantity it predicts."""
        return output if self.mean_type == "x0" else self.predict_x0_from_eps(x_t, t, output)

    def timestep_weights(self, t: torch.Tensor) -> torch.Tensor:
        """(batch,) float64 reweighting of the per-step loss (DiffRec Sec. 3.3, Eq. 11 and 12).

        x0-prediction: SNR(t-1) - SNR(t), which turns the x0 MSE into the ELBO term L_t;
        eps-prediction: the same term written for noise, (1 - abar_t) / ((1 - abar_{t-1})^2
        alpha_t). The first step (t = 0, whose term is a reconstruction likelihood) gets 1.
        """
        first = t == 0
        previous = (t - 1).clamp(min=0)
        if self.mean_type == "x0":
            weight = self.snr(previous) - self.snr(t)
        else:
            weight = (1.0 - self.alphas_cumprod[t]) / (
                (1.0 - self.alphas_cumprod_prev[t]) ** 2 * (1.0 - self.betas[t])
            )
        return torch.where(first, torch.ones_like(weight), weight)

    def training_loss(
        self,
        denoiser: nn.Module,
        x0: torch.Tensor,
        t: torch.Tensor,
        reweight: bool = True,
        noise: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per-user loss terms at timesteps ``t`` (batch,).

        Returns ``loss`` (batch,), the (re)weighted term the optimizer sees before importance
        correction, ``mse`` (batch,) and ``pred_x0`` (batch, items), which L-DiffRec decodes.
        Without reweighting the loss is the plain MSE of the predicted quantity (the released
        code leaves it undefined and crashes there).
        """
        if noise is None:
            noise = torch.randn_like(x0)
        x_t = self.q_sample(x0, t, noise)
        output = denoiser(x_t, t)
        target = x0 if self.mean_type == "x0" else noise
        mse = ((target - output) ** 2).mean(dim=-1)

        # ELBO reweighting; for eps the t = 0 term is the x0 reconstruction likelihood
        loss = mse
        if reweight:
            weight = self.timestep_weights(t).to(mse.dtype)
            if self.mean_type == "eps":
                pred_x0 = self.predict_x0_from_eps(x_t, t, output)
                likelihood = ((x0 - pred_x0) ** 2).mean(dim=-1) / 2.0
                loss = torch.where(t == 0, likelihood, mse)
            loss = weight * loss
        return {"loss": loss, "mse": mse, "pred_x0": self.predicted_x0(output, x_t, t)}

    @torch.no_grad()
    def denoise(
        self,
        denoiser: nn.Module,
        x0: torch.Tensor,
        noise_steps: int = 0,
        reverse_steps: int | None = None,
    ) -> torch.Tensor:
        """DiffRec inference (Sec. 3.3): reverse posterior means from the (lightly noised) history.

        ``noise_steps`` = T' noises the history to step T' - 1 first (0: start from the history
        itself, DiffRec's setting); ``reverse_steps`` runs t = reverse_steps - 1, ..., 0
        (None: all T steps, as DiffRec does whatever T' is). No noise is sampled: the mean of
        each step is kept, so the scores are deterministic.
        """
        reverse_steps = self.steps if reverse_steps is None else reverse_steps
        if not 0 <= noise_steps <= self.steps or not 1 <= reverse_steps <= self.steps:
            raise ValueError(
                f"inference needs 0 <= noise_steps <= {self.steps} and 1 <= reverse_steps <= "
                f"{self.steps}, got noise_steps={noise_steps}, reverse_steps={reverse_steps}"
            )
        x_t = x0
        if noise_steps > 0:
            t = torch.full((len(x0),), noise_steps - 1, dtype=torch.long, device=x0.device)
            x_t = self.q_sample(x0, t)
        for step in reversed(range(reverse_steps)):
            t = torch.full((len(x0),), step, dtype=torch.long, device=x0.device)
            pred_x0 = self.predicted_x0(denoiser(x_t, t), x_t, t)
            x_t, _ = self.q_posterior(pred_x0, x_t, t)
        return x_t


class ImportanceTimestepSampler(nn.Module):
    """Timesteps drawn in proportion to the root-mean-square of their recent losses.

    DiffRec Sec. 3.3 (after Nichol & Dhariwal 2021): keep the last ``history`` losses of each
    step; while some step has fewer, sample uniformly; afterwards draw t with probability
    p_t ∝ sqrt(E[L_t^2]), mixed with ``uniform_prob`` of the uniform distribution, and divide
    each loss by T p_t so the objective stays unbiased. The history lives in buffers, so it
    is saved in checkpoints and a resumed run continues with it.
    """

    def __init__(self, steps: int, history: int = 10, uniform_prob: float = 0.001):
        super().__init__()
        if history < 1:
            raise ValueError(f"loss history per step must be >= 1, got {history}")
        if not 0.0 <= uniform_prob <= 1.0:
            raise ValueError(f"uniform_prob must lie in [0, 1], got {uniform_prob}")
        self.steps, self.history, self.uniform_prob = steps, history, uniform_prob
        self.register_buffer("loss_history", torch.zeros(steps, history, dtype=torch.float64))
        self.register_buffer("loss_count", torch.zeros(steps, dtype=torch.long))

    @property
    def warmed_up(self) -> bool:
        return bool((self.loss_count == self.history).all())

    def probabilities(self) -> torch.Tensor:
        """(steps,) float64 sampling distribution (uniform until every history is full)."""
        if not self.warmed_up:
            return torch.full(
                (self.steps,),
                1.0 / self.steps,
                dtype=torch.float64,
                device=self.loss_history.device,
            )
        rms = self.loss_history.pow(2).mean(dim=-1).sqrt()
        return rms / rms.sum() * (1.0 - self.uniform_prob) + self.uniform_prob / self.steps

    def sample(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Timesteps (batch,) and their importance weights T p_t (batch,) (1 while uniform)."""
        device = self.loss_history.device
        if not self.warmed_up:
            t = torch.randint(0, self.steps, (batch_size,), device=device, generator=generator)
            return t, torch.ones(batch_size, dtype=torch.float64, device=device)
        p = self.probabilities()
        t = torch.multinomial(p, batch_size, replacement=True, generator=generator)
        return t, p[t] * self.steps

    @torch.no_grad()
    def update(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        """Append ``losses`` (batch,) to the histories of their steps, oldest dropped first.

        Equivalent to pushing the batch one sample at a time in order, but vectorized: each
        step's old history and new losses are laid out in one padded row, and the last
        ``history`` entries of the row are kept.
        """
        t = t.to(self.loss_count.device).long()
        losses = losses.detach().to(self.loss_history)
        counts = self.loss_count
        new_per_step = torch.bincount(t, minlength=self.steps)

        # rank of each sample among the batch's samples of the same step (stable order)
        order = torch.argsort(t, stable=True)
        sorted_t = t[order]
        first_of_step = torch.cumsum(new_per_step, 0) - new_per_step
        rank = torch.empty_like(t)
        rank[order] = torch.arange(len(t), device=t.device) - first_of_step[sorted_t]

        # row = old history (counts entries) followed by the new losses
        width = self.history + int(new_per_step.max()) if len(t) else self.history
        rows = torch.zeros(
            self.steps, width, dtype=self.loss_history.dtype, device=self.loss_history.device
        )
        rows[:, : self.history] = self.loss_history
        rows[t, counts[t] + rank] = losses

        # keep the last `history` entries of each row, left-aligned
        length = counts + new_per_step
        start = (length - self.history).clamp(min=0)
        index = (start.unsqueeze(1) + torch.arange(self.history, device=start.device)).clamp(
            max=width - 1
        )
        kept = rows.gather(1, index)
        new_count = length.clamp(max=self.history)
        valid = torch.arange(self.history, device=start.device) < new_count.unsqueeze(1)
        self.loss_history.copy_(torch.where(valid, kept, torch.zeros_like(kept)))
        self.loss_count.copy_(new_count)
