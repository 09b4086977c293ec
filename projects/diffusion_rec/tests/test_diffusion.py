"""Noise schedules, forward process, posterior and loss reweighting against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from diffusion_rec.config import DiffusionConfig
from diffusion_rec.diffrec import FIRST_BETA, build_diffusion
from diffusion_rec.diffusion import GaussianDiffusion, linear_variance_betas, noise_schedule_betas


def test_linear_schedule_betas_are_evenly_spaced_between_the_scaled_bounds():
    betas = noise_schedule_betas("linear", 5, noise_scale=0.1, noise_min=0.001, noise_max=0.02)
    expected = [0.0001, 0.000575, 0.00105, 0.001525, 0.002]
    np.testing.assert_allclose(betas, expected, rtol=1e-6)


def test_linear_variance_schedule_makes_one_minus_alpha_bar_linear():
    betas = noise_schedule_betas("linear-var", 4, noise_scale=0.5, noise_min=0.1, noise_max=0.4)
    # 1 - abar = 0.05, 0.1, 0.15, 0.2 by construction
    assert betas[0] == pytest.approx(0.05)
    assert betas[1] == pytest.approx(1 - 0.90 / 0.95)
    assert betas[2] == pytest.approx(1 - 0.85 / 0.90)
    assert betas[3] == pytest.approx(1 - 0.80 / 0.85)
    np.testing.assert_allclose(1 - np.cumprod(1 - betas), [0.05, 0.1, 0.15, 0.2], rtol=1e-12)


def test_linear_variance_betas_are_clipped_at_0_999():
    betas = linear_variance_betas(np.array([0.5, 0.9999999]))
    assert betas[1] == 0.999


def test_cosine_schedule_matches_the_improved_ddpm_formula():
    steps = 4
    betas = noise_schedule_betas("cosine", steps)

    def alpha_bar(t):
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    expected = [
        min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), 0.999) for i in range(steps)
    ]
    np.testing.assert_allclose(betas, expected, rtol=1e-6)


def test_diffrec_fixes_the_first_beta_and_alphas_follow():
    diffusion = build_diffusion(
        DiffusionConfig(
            steps=3, noise_scale=0.1, noise_min=0.001, noise_max=0.002, noise_schedule="linear"
        )
    )
    assert float(diffusion.betas[0]) == FIRST_BETA
    betas = [FIRST_BETA, 0.00015, 0.0002]
    np.testing.assert_allclose(diffusion.betas.numpy(), betas, rtol=1e-6)
    np.testing.assert_allclose(
        diffusion.alphas_cumprod.numpy(), np.cumprod(1 - np.array(betas)), rtol=1e-9
    )
    np.testing.assert_allclose(
        diffusion.alphas_cumprod_prev.numpy(),
        [1.0, *np.cumprod(1 - np.array(betas))[:-1]],
        rtol=1e-9,
    )


@pytest.mark.parametrize(
    ("schedule", "scale", "low", "high"),
    [
        ("unknown", 0.1, 0.1, 0.2),
        ("linear", 0.1, 0.2, 0.1),
        ("linear-var", 0.0, 0.1, 0.2),
        ("linear", 5.0, 0.1, 0.5),
    ],
)
def test_bad_schedule_settings_are_rejected_with_a_reason(schedule, scale, low, high):
    with pytest.raises(ValueError, match=r"noise|schedule"):
        noise_schedule_betas(schedule, 10, scale, low, high)


@pytest.fixture
def diffusion() -> GaussianDiffusion:
    return GaussianDiffusion(np.array([0.1, 0.2, 0.3]))


def test_q_sample_mixes_signal_and_noise_by_alpha_bar(diffusion):
    x0 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    noise = torch.tensor([[0.5, -1.0], [2.0, 0.0]])
    t = torch.tensor([0, 2])
    out = diffusion.q_sample(x0, t, noise)
    abar = [0.9, 0.9 * 0.8 * 0.7]
    expected = torch.tensor(
        [
            [math.sqrt(abar[0]) * 1 + math.sqrt(1 - abar[0]) * 0.5, math.sqrt(1 - abar[0]) * -1.0],
            [math.sqrt(1 - abar[1]) * 2.0, math.sqrt(abar[1])],
        ]
    )
    torch.testing.assert_close(out, expected)


def test_posterior_mean_and_variance_match_the_closed_form(diffusion):
    x0, x_t = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.5, -0.5]])
    t = torch.tensor([1])
    beta, abar, abar_prev = 0.2, 0.9 * 0.8, 0.9
    mean, variance = diffusion.q_posterior(x0, x_t, t)
    c1 = beta * math.sqrt(abar_prev) / (1 - abar)
    c2 = (1 - abar_prev) * math.sqrt(0.8) / (1 - abar)
    torch.testing.assert_close(mean, c1 * x0 + c2 * x_t)
    torch.testing.assert_close(variance, torch.tensor([[beta * (1 - abar_prev) / (1 - abar)]]))


def test_posterior_at_the_first_step_returns_x0(diffusion):
    x0, x_t = torch.tensor([[0.3, 0.7]]), torch.tensor([[5.0, -5.0]])
    mean, variance = diffusion.q_posterior(x0, x_t, torch.tensor([0]))
    torch.testing.assert_close(mean, x0)
    assert float(variance) == 0.0


def test_eps_to_x0_inverts_q_sample(diffusion):
    x0, noise = torch.randn(4, 6), torch.randn(4, 6)
    t = torch.tensor([0, 1, 2, 1])
    recovered = diffusion.predict_x0_from_eps(diffusion.q_sample(x0, t, noise), t, noise)
    torch.testing.assert_close(recovered, x0, atol=1e-5, rtol=1e-5)


def test_x0_reweighting_is_the_snr_difference_and_one_at_the_first_step(diffusion):
    weights = diffusion.timestep_weights(torch.tensor([0, 1, 2]))
    abar = np.cumprod([0.9, 0.8, 0.7])
    snr = abar / (1 - abar)
    np.testing.assert_allclose(weights.numpy(), [1.0, snr[0] - snr[1], snr[1] - snr[2]])


def test_eps_reweighting_follows_the_released_formula():
    diffusion = GaussianDiffusion(np.array([0.1, 0.2, 0.3]), mean_type="eps")
    weights = diffusion.timestep_weights(torch.tensor([0, 2]))
    abar = np.cumprod([0.9, 0.8, 0.7])
    expected = (1 - abar[2]) / ((1 - abar[1]) ** 2 * (1 - 0.3))
    np.testing.assert_allclose(weights.numpy(), [1.0, expected])


class _Constant(nn.Module):
    """A denoiser that outputs a fixed tensor."""

    def __init__(self, output: torch.Tensor):
        super().__init__()
        self.output = output

    def forward(self, x_t, t):
        return self.output.expand_as(x_t)


def test_training_loss_weights_the_x0_mse_and_without_reweighting_is_the_plain_mse(diffusion):
    x0 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    denoiser = _Constant(torch.tensor([[0.5, 0.5]]))
    t = torch.tensor([0, 2])
    weighted = diffusion.training_loss(denoiser, x0, t, reweight=True)
    plain = diffusion.training_loss(denoiser, x0, t, reweight=False)
    torch.testing.assert_close(plain["loss"], torch.tensor([0.25, 0.25]))
    expected = torch.tensor([0.25, 0.25]) * diffusion.timestep_weights(t).float()
    torch.testing.assert_close(weighted["loss"], expected)
    torch.testing.assert_close(weighted["pred_x0"], torch.full((2, 2), 0.5))


def test_eps_training_loss_uses_the_reconstruction_likelihood_at_the_first_step():
    diffusion = GaussianDiffusion(np.array([0.1, 0.2]), mean_type="eps")
    x0, noise = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.2, -0.4]])
    denoiser = _Constant(torch.zeros(1, 2))
    loss = diffusion.training_loss(denoiser, x0, torch.tensor([0]), reweight=True, noise=noise)
    x_t = diffusion.q_sample(x0, torch.tensor([0]), noise)
    pred_x0 = x_t / math.sqrt(0.9)
    expected = ((x0 - pred_x0) ** 2).mean() / 2
    torch.testing.assert_close(loss["loss"], expected.reshape(1))


def test_inference_from_the_history_applies_posterior_means_without_noise(diffusion):
    history = torch.tensor([[1.0, 0.0, 1.0]])
    denoiser = _Constant(torch.tensor([[0.2, 0.4, 0.6]]))
    out = diffusion.denoise(denoiser, history)
    # hand unrolled: x_{t-1} = c1_t * f + c2_t * x_t for t = 2, 1, 0
    x = history.double()
    f = torch.tensor([[0.2, 0.4, 0.6]], dtype=torch.float64)
    for t in (2, 1, 0):
        x = diffusion.posterior_mean_coef1[t] * f + diffusion.posterior_mean_coef2[t] * x
    torch.testing.assert_close(out, x.float())
    torch.testing.assert_close(diffusion.denoise(denoiser, history), out)  # deterministic


def test_inference_with_fewer_reverse_steps_stops_earlier(diffusion):
    history = torch.tensor([[1.0, 0.0]])
    denoiser = _Constant(torch.tensor([[0.3, 0.3]]))
    # one reverse step at t = 0 returns the prediction itself
    torch.testing.assert_close(
        diffusion.denoise(denoiser, history, reverse_steps=1), torch.tensor([[0.3, 0.3]])
    )
    with pytest.raises(ValueError, match="reverse_steps"):
        diffusion.denoise(denoiser, history, reverse_steps=4)
