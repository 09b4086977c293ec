import pytest
import torch
from torch import nn

from tico.augment import TwoViews, _blur_kernel
from tico.collapse import covariance_spectrum, effective_rank
from tico.config import AugmentConfig
from tico.model import MomentumTarget, build_backbone, build_projector


@pytest.mark.parametrize(
    ("name", "stem", "width", "size", "dim"),
    [
        ("resnet18", "cifar", 8, 32, 64),
        ("resnet18", "cifar_stride2", 16, 32, 128),
        ("resnet50", "imagenet", 8, 64, 256),
    ],
)
def test_backbones_give_pooled_features_of_the_stated_size(name, stem, width, size, dim):
    backbone, feature_dim = build_backbone(name, stem, width)
    assert feature_dim == dim
    assert backbone(torch.randn(2, 3, size, size)).shape == (2, dim)


def test_cifar_stem_keeps_the_resolution_and_the_imagenet_stem_divides_it_by_four():
    cifar, _ = build_backbone("resnet18", "cifar", 8)
    imagenet, _ = build_backbone("resnet18", "imagenet", 8)
    x = torch.randn(1, 3, 32, 32)
    assert cifar.maxpool(cifar.conv1(x)).shape[-1] == 32
    assert imagenet.maxpool(imagenet.conv1(x)).shape[-1] == 8


def test_unknown_backbone_or_stem_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown backbone 'vit'"):
        build_backbone("vit")
    with pytest.raises(ValueError, match="unknown stem"):
        build_backbone("resnet18", "tiny")


def test_projector_is_linear_bn_relu_blocks_then_a_linear_output():
    projector = build_projector(64, [128, 32])
    kinds = [type(layer) for layer in projector]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert projector[0].bias is None
    assert projector[-1].out_features == 32
    assert projector(torch.randn(4, 64)).shape == (4, 32)
    with pytest.raises(ValueError, match="projector dims"):
        build_projector(64, [])


def test_momentum_target_follows_byols_cosine_schedule_and_moving_average():
    online = nn.Linear(3, 2)
    target = MomentumTarget(online, base=0.9)
    assert target.momentum(0, 100) == pytest.approx(0.9)
    assert target.momentum(50, 100) == pytest.approx(0.95)
    assert target.momentum(100, 100) == pytest.approx(1.0)
    assert not any(p.requires_grad for p in target.parameters())
    before = target.network.weight.clone()
    with torch.no_grad():
        online.weight.add_(1.0)
    target.update(online, momentum=0.9)
    torch.testing.assert_close(target.network.weight, 0.9 * before + 0.1 * online.weight)


def test_effective_rank_is_the_dimension_for_isotropic_and_one_for_rank_one_spectra():
    assert effective_rank(torch.ones(8)) == pytest.approx(8.0)
    assert effective_rank(torch.tensor([3.0, 0.0, 0.0])) == pytest.approx(1.0)
    assert effective_rank(torch.zeros(4)) == 0.0
    # two equal eigenvalues and two zero ones: rank 2
    assert effective_rank(torch.tensor([1.0, 1.0, 0.0, 0.0])) == pytest.approx(2.0)


def test_covariance_spectrum_matches_numpy_and_detects_a_collapsed_embedding():
    np = pytest.importorskip("numpy")
    torch.manual_seed(0)
    x = torch.randn(50, 6)
    expected = sorted(np.linalg.eigvalsh(np.cov(x.numpy(), rowvar=False)), reverse=True)
    torch.testing.assert_close(covariance_spectrum(x), torch.tensor(expected, dtype=torch.float32))
    collapsed = torch.randn(1, 6).repeat(50, 1)
    assert effective_rank(covariance_spectrum(collapsed)) == 0.0


def test_two_views_are_different_normalised_crops_of_the_same_size():
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    config = AugmentConfig(blur_prob=[1.0, 0.0], solarize_prob=[0.0, 1.0])
    torch.manual_seed(1)
    first, second = TwoViews(config, 24)(image)
    assert first.shape == second.shape == (3, 24, 24)
    assert first.dtype == torch.float32
    assert not torch.allclose(first, second)
    # same seed, same views
    torch.manual_seed(1)
    again, _ = TwoViews(config, 24)(image)
    torch.testing.assert_close(first, again)


def test_blur_kernel_is_odd_and_ten_percent_of_the_image_side():
    assert _blur_kernel(224) == 23
    assert _blur_kernel(32) == 3
