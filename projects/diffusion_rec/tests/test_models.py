"""The denoiser, L-DiffRec's autoencoder, the baselines and config validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffusion_rec.baselines import EASE, MostPopular, MultVAE
from diffusion_rec.config import Config, DiffusionConfig
from diffusion_rec.data import from_splits
from diffusion_rec.denoiser import DiffRecDenoiser, sinusoidal_embedding
from diffusion_rec.latent import ClusteredVAE, cluster_items, latent_widths
from diffusion_rec.training import build_model, load_data_for
from shared.config import ConfigError, load_config
from shared.data.movielens import InteractionSplits
from shared.metrics import interaction_matrix


def test_timestep_embedding_puts_cosines_first_with_geometric_frequencies():
    t = torch.tensor([0, 3])
    embedding = sinusoidal_embedding(t, 4)
    frequencies = [1.0, math.exp(-math.log(10_000) / 2)]
    expected = [
        [math.cos(s * f) for f in frequencies] + [math.sin(s * f) for f in frequencies]
        for s in (0, 3)
    ]
    torch.testing.assert_close(embedding, torch.tensor(expected))


def test_odd_embedding_width_is_zero_padded():
    embedding = sinusoidal_embedding(torch.tensor([2]), 5)
    assert embedding.shape == (1, 5)
    assert embedding[0, -1] == 0


def test_denoiser_maps_histories_to_item_scores_and_backpropagates():
    denoiser = DiffRecDenoiser(n_items=30, dims=[8, 16], emb_size=4)
    x, t = torch.rand(5, 30), torch.tensor([0, 1, 2, 3, 4])
    out = denoiser(x, t)
    assert out.shape == (5, 30)
    out.sum().backward()
    assert all(p.grad is not None for p in denoiser.parameters())
    # items + emb -> 16 -> 8 -> 16 -> items
    assert [layer.out_features for layer in denoiser.encoder] == [16, 8]
    assert [layer.out_features for layer in denoiser.decoder] == [16, 30]


def test_latent_widths_split_proportionally_and_the_last_cluster_takes_the_rest():
    assert latent_widths([100, 300], 300) == [75, 225]
    assert latent_widths([1, 999], 10) == [1, 9]
    with pytest.raises(ValueError, match="too small"):
        latent_widths([1, 1, 1], 2)


def test_kmeans_clusters_separate_two_groups_of_embeddings():
    embeddings = np.concatenate([np.zeros((5, 2)), np.ones((4, 2)) * 10])
    ids = cluster_items(embeddings, 2)
    assert len(set(ids[:5])) == 1
    assert len(set(ids[5:])) == 1
    assert ids[0] != ids[5]


def test_clustered_vae_decodes_scores_in_the_original_item_order():
    cluster_ids = np.array([1, 0, 1, 0, 1])
    vae = ClusteredVAE(cluster_ids, latent_dim=4, reparam=False, dropout=0.0).eval()
    with torch.no_grad():
        vae.decoder.weight.zero_()
        vae.decoder.bias.copy_(torch.arange(5.0))  # bias j scores grouped item j
    scores = vae.decode(torch.zeros(1, 4))
    grouped_order = [1, 3, 0, 2, 4]  # cluster 0's items, then cluster 1's
    expected = torch.empty(5)
    expected[grouped_order] = torch.arange(5.0)
    torch.testing.assert_close(scores[0], expected)
    latent, kl = vae.encode(torch.rand(3, 5))
    assert latent.shape == (3, 4)
    assert kl.dim() == 0


def test_most_popular_ranks_items_by_training_count():
    train = interaction_matrix([0, 1, 1, 2], [2, 2, 0, 2], 3, 3)
    scores = MostPopular(train).score(torch.zeros(2, 3))
    assert scores[0].tolist() == [1.0, 0.0, 3.0]


def test_ease_weights_have_a_zero_diagonal_and_solve_the_closed_form():
    train = interaction_matrix([0, 0, 1, 1, 2], [0, 1, 1, 2, 0], 3, 3)
    model = EASE(train, l2=2.0)
    x = train.to_dense().double()
    precision = torch.linalg.inv(x.T @ x + 2.0 * torch.eye(3, dtype=torch.float64))
    expected = torch.eye(3, dtype=torch.float64) - precision / precision.diagonal()
    expected.fill_diagonal_(0.0)
    torch.testing.assert_close(model.weights.double(), expected, rtol=1e-5, atol=1e-6)
    assert torch.all(model.weights.diagonal() == 0)


def _tiny_splits() -> InteractionSplits:
    # training pairs in time order per user; held-out pairs disjoint from them
    train = torch.tensor([[0, 0], [0, 1], [0, 2], [1, 1], [1, 3], [2, 0], [2, 3], [2, 1]])
    return InteractionSplits(
        train=train,
        valid=torch.tensor([[0, 3]]),
        test=torch.tensor([[1, 0]]),
        n_users=3,
        n_items=4,
        item_emb=None,
        name="tiny",
    )


def test_t_ease_is_ease_fitted_and_scored_on_the_temporally_weighted_history():
    config = Config(model="tease")
    config.ease.l2 = 0.5
    weighted = from_splits(_tiny_splits(), temporal=(0.1, 1.0))
    t_ease = build_model(config, weighted)

    # EASE's closed form on the weighted matrix
    x = weighted.train_input.to_dense().double()
    precision = torch.linalg.inv(x.T @ x + 0.5 * torch.eye(4, dtype=torch.float64))
    expected = torch.eye(4, dtype=torch.float64) - precision / precision.diagonal()
    expected.fill_diagonal_(0.0)
    torch.testing.assert_close(t_ease.weights.double(), expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(t_ease.weights, EASE(weighted.train, 0.5).weights)

    # with every weight 1 the input is binary and T-EASE is EASE
    flat = from_splits(_tiny_splits(), temporal=(1.0, 1.0))
    torch.testing.assert_close(build_model(config, flat).weights, EASE(flat.train, 0.5).weights)


def test_t_ease_loads_the_temporally_weighted_input_and_ease_the_binary_one():
    weighted = load_data_for(Config(model="tease")).train_input.values()
    binary = load_data_for(Config(model="ease")).train_input.values()
    assert math.isclose(weighted.min().item(), 0.1, rel_tol=1e-6)
    assert weighted.max() == 1.0
    assert torch.all(binary == 1.0)


def test_multvae_loss_is_finite_and_scores_have_item_shape():
    model = MultVAE(n_items=12, hidden_dims=[6, 3])
    batch = (torch.rand(4, 12) > 0.5).float()
    loss = model.training_step(batch, 0)
    assert torch.isfinite(loss)
    assert model.score(batch).shape == (4, 12)


def test_unknown_model_names_and_bad_values_are_config_errors(tmp_path):
    with pytest.raises(ValueError, match="model must be one of"):
        load_config(Config, None, ["model=diffusionnet"])
    with pytest.raises(ValueError, match="mean_type"):
        load_config(Config, None, ["diffusion.mean_type=v"])
    with pytest.raises(ConfigError, match="unknown config key"):
        load_config(Config, None, ["diffusion.stepz=3"])
    with pytest.raises(ValueError, match="noise_steps"):
        DiffusionConfig(steps=5, noise_steps=6)
    with pytest.raises(ValueError, match="item_embeddings"):
        load_config(Config, None, ["latent.item_embeddings=word2vec"])
