"""LightGCN: graph normalisation, BPR, training under the protocol, and L-DiffRec's clusters."""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import torch

from diffusion_rec.baselines import (
    LightGCN,
    SymmetricPropagation,
    bpr_loss,
    normalized_adjacency,
    sample_negatives,
)
from diffusion_rec.config import Config
from diffusion_rec.latent import cluster_items
from diffusion_rec.training import build_model, fit_and_evaluate, item_embeddings_for
from shared.metrics import interaction_matrix


def _tiny_graph() -> torch.Tensor:
    # users 0, 1; items 0, 1, 2 and item 3 that nobody interacted with
    return interaction_matrix([0, 0, 1, 1], [0, 1, 1, 2], 2, 4)


def test_normalised_adjacency_matches_a_hand_computation_on_a_tiny_graph():
    adjacency = normalized_adjacency(_tiny_graph()).to_dense()
    # degrees: users 2, 2; items 1, 2, 1, 0; entry (u, i) = 1 / sqrt(d_u d_i)
    s = 1 / math.sqrt(2)
    r = torch.tensor([[s, 0.5, 0.0, 0.0], [0.0, 0.5, s, 0.0]])
    expected = torch.zeros(6, 6)
    expected[:2, 2:] = r
    expected[2:, :2] = r.T
    torch.testing.assert_close(adjacency, expected)
    assert torch.all(adjacency[5] == 0)  # the isolated item's row stays empty, not NaN


def test_bpr_loss_is_the_mean_negative_log_sigmoid_of_score_differences():
    loss = bpr_loss(torch.tensor([2.0, 0.5]), torch.tensor([0.0, 0.5]))
    expected = (math.log(1 + math.exp(-2.0)) + math.log(2.0)) / 2
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)


def test_training_loss_adds_half_the_ego_l2_norm_per_pair_times_reg():
    model = LightGCN(_tiny_graph(), dim=2, layers=0, reg=0.1)  # no propagation: final = ego
    with torch.no_grad():
        model.user_embedding.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        model.item_embedding.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 0.0], [0, 1], [1, 1]]))
    batch = (torch.tensor([0]), torch.tensor([0]), torch.tensor([2]))
    loss = model.training_step(batch, 0)
    # scores: user 0 . item 0 = 2, user 0 . item 2 = 0; squared norms 1 + 4 + 1
    expected = math.log(1 + math.exp(-2.0)) + 0.1 * 0.5 * 6.0
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)


def test_symmetric_propagation_gradient_equals_the_dense_matmul_gradient():
    adjacency = normalized_adjacency(_tiny_graph())
    embeddings = torch.randn(6, 3, dtype=torch.float32, requires_grad=True)
    weights = torch.randn(6, 3)
    (SymmetricPropagation.apply(adjacency, embeddings) * weights).sum().backward()
    sparse_grad = embeddings.grad.clone()
    embeddings.grad = None
    ((adjacency.to_dense() @ embeddings) * weights).sum().backward()
    torch.testing.assert_close(sparse_grad, embeddings.grad)


def test_gradients_reach_every_embedding_the_batch_propagates_from():
    model = LightGCN(_tiny_graph(), dim=4, layers=2)
    batch = (torch.tensor([0, 1]), torch.tensor([0, 2]), torch.tensor([3, 3]))
    model.training_step(batch, 0).backward()
    # two layers connect both users to all interacted items
    assert torch.all(model.user_embedding.weight.grad.abs().sum(dim=1) > 0)
    assert torch.all(model.item_embedding.weight.grad[:3].abs().sum(dim=1) > 0)


def test_negatives_are_never_training_items_of_their_user():
    train = _tiny_graph().coalesce()
    users, items = train.indices()
    keys = users * 4 + items
    negatives = sample_negatives(torch.tensor([0] * 200 + [1] * 200), keys, 4)
    assert set(negatives[:200].tolist()) == {2, 3}
    assert set(negatives[200:].tolist()) == {0, 3}


def test_scores_are_user_item_inner_products_of_the_final_embeddings():
    model = LightGCN(_tiny_graph(), dim=4)
    scores = model.score_users(torch.tensor([1, 0, 1]))
    assert scores.shape == (3, 4)
    users, items = model.propagate()
    torch.testing.assert_close(scores[1], items @ users[0])


def test_a_trained_lightgcn_ranks_items_of_the_users_community_above_the_others():
    # two communities: users 0-3 with items 0-3, users 4-7 with items 4-7; user 0 never saw
    # item 3 and should rank it above every item of the other community
    pairs = [(u, i) for u in range(4) for i in range(4) if (u, i) != (0, 3)]
    pairs += [(u, i) for u in range(4, 8) for i in range(4, 8)]
    users, items = zip(*pairs, strict=True)
    train = interaction_matrix(list(users), list(items), 8, 8)
    L.seed_everything(0)
    model = LightGCN(train, dim=8, layers=2, lr=0.05, batch_size=8)
    trainer = L.Trainer(
        max_epochs=30,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model)
    scores = model.score_users(torch.tensor([0]))[0]
    assert scores[3] > scores[4:].max()


def _quick_lightgcn() -> Config:
    config = Config(model="lightgcn")
    config.lightgcn.dim = 16
    config.train.max_epochs = 2
    config.train.eval_every = 2
    config.train.progress_bar = False
    config.train.threads = 1
    return config


def test_lightgcn_trains_under_the_protocol_and_ranks_all_items(small_ml1m):
    result = fit_and_evaluate(_quick_lightgcn(), small_ml1m)
    assert result["best_epoch"] == 2
    assert 0.0 < result["test"]["recall@20"] <= 1.0
    assert result["test"]["users"] > 500


def test_l_diffrec_clusters_lightgcn_item_embeddings_trained_here(small_ml1m):
    data = small_ml1m.__class__(**{**small_ml1m.__dict__, "item_emb": None})
    config = _quick_lightgcn()
    config.model = "ldiffrec"
    config.latent.item_embeddings = "lightgcn"
    config.latent.lightgcn_epochs = 1
    embeddings = item_embeddings_for(config, data)
    assert embeddings.shape == (data.n_items, 16)
    assert torch.isfinite(embeddings).all()
    clusters = cluster_items(embeddings, 2)
    assert sorted(np.unique(clusters).tolist()) == [0, 1]
    # and the L-DiffRec model builds on them without item_emb.npy
    assert build_model(config, data).autoencoder is not None
