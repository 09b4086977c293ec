"""SASRec and DreamRec on real ML-100K sequences, and diffusion augmentation."""

from __future__ import annotations

import pytest
import torch

from diffusion_rec.sequential import (
    DreamRec,
    SASRec,
    SequenceData,
    augment_with_diffusion,
    evaluate_sequences,
    load_ml100k_sequences,
)


@pytest.fixture(scope="module")
def ml100k() -> SequenceData:
    return load_ml100k_sequences(max_len=20)


def test_sequences_are_left_padded_and_hold_out_the_last_two_items(ml100k):
    assert ml100k.n_items == 1682
    assert len(ml100k.train_inputs) == 943
    # the validation item is the last input of the test sequence
    assert torch.equal(ml100k.test_inputs[:, -1], ml100k.valid_target)
    first_real = (ml100k.train_inputs > 0).int().argmax(1)
    for row, start in enumerate(first_real[:50].tolist()):
        assert (ml100k.train_inputs[row, start:] > 0).all()


def test_sasrec_and_dreamrec_losses_are_finite_and_backpropagate(ml100k):
    batch = (ml100k.train_inputs[:16],)
    for model in (
        SASRec(1682, max_len=20, hidden=16),
        DreamRec(1682, max_len=20, hidden=16, steps=10),
    ):
        loss = model.training_step(batch, 0)
        loss.backward()
        assert torch.isfinite(loss)
        assert model.encoder.item_embedding.weight.grad is not None


def test_dreamrec_generation_is_guided_and_ranks_all_items(ml100k):
    model = DreamRec(1682, max_len=20, hidden=16, steps=10, guidance_weight=2.0)
    scores = model.score(ml100k.test_inputs[:8])
    assert scores.shape == (8, 1682)
    assert torch.equal(scores, model.score(ml100k.test_inputs[:8]))  # seeded generation


def test_sequential_evaluation_masks_the_history(ml100k):
    inputs, targets = ml100k.train_inputs[:30], ml100k.valid_target[:30]

    class Oracle:
        """Scores the history highest and the target next: masking must expose the target."""

        def score(self, sequences):
            scores = torch.zeros(len(sequences), 1682)
            rows = torch.arange(len(sequences)).repeat_interleave(sequences.shape[1])
            ids = sequences.flatten()
            scores[rows[ids > 0], ids[ids > 0] - 1] = 10.0
            scores[torch.arange(len(sequences)), targets - 1] = 5.0
            return scores

    metrics = evaluate_sequences(Oracle(), inputs, targets, 1682, ks=(1,))
    assert metrics["recall@1"] == pytest.approx(1.0)


def test_augmentation_appends_unseen_generated_items_to_sparse_users_only(ml100k):
    model = DreamRec(1682, max_len=20, hidden=16, steps=5)
    augmented = augment_with_diffusion(model, ml100k, max_history=19, extra=2)
    lengths = (ml100k.train_inputs > 0).sum(1)
    sparse = lengths <= 19
    assert torch.equal(augmented[~sparse], ml100k.train_inputs[~sparse])
    for row in torch.nonzero(sparse).flatten()[:20].tolist():
        original = ml100k.train_inputs[row][ml100k.train_inputs[row] > 0].tolist()
        new = augmented[row][augmented[row] > 0].tolist()
        assert len(new) == min(len(original) + 2, 20)
        assert new[:-2] == original[len(original) - (len(new) - 2) :]
        assert not set(new[-2:]) & set(original)


def test_rescaled_ddpm_schedule_leaves_almost_no_signal_at_the_last_step():
    from diffusers import DDPMScheduler

    from diffusion_rec.sequential import ddpm_linear_betas

    for steps in (20, 100, 1000):
        scheduler = DDPMScheduler(num_train_timesteps=steps, **ddpm_linear_betas(steps))
        assert float(scheduler.alphas_cumprod[-1]) < 1e-3


def test_dreamrec_target_embeddings_keep_their_scale_while_training(ml100k):
    # the MSE pulls each target embedding towards the prediction; from SASRec's hidden^-0.5
    # start, the frequent targets lost a quarter of their norm in 60 Adam steps and ended
    # ranked last by the inner product (test HR@20 0.004); from DreamRec's N(0, 1) they keep it
    torch.manual_seed(0)
    model = DreamRec(1682, max_len=20, hidden=32, steps=20)
    table = model.encoder.item_table().detach()
    assert float(table.std()) == pytest.approx(1.0, abs=0.02)
    assert float(SASRec(1682, max_len=20, hidden=32).encoder.item_table().std()) == pytest.approx(
        32**-0.5, rel=0.05
    )
    inputs, targets = ml100k.train_inputs[:, :-1], ml100k.train_inputs[:, 1:]
    frequent = torch.bincount(targets[inputs > 0] - 1, minlength=1682).argsort()[-50:]
    before = table[frequent].norm(dim=1)

    optimizer = model.configure_optimizers()
    for step in range(60):
        batch = ml100k.train_inputs[torch.randint(0, len(ml100k.train_inputs), (128,))]
        loss = model.training_step((batch,), step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    after = model.encoder.item_table()[frequent].detach().norm(dim=1)
    assert float((after / before).mean()) > 0.9


def test_the_most_recent_item_has_the_same_position_in_training_and_scoring(ml100k):
    # training reads prefixes one item shorter than the scored histories; with positions
    # counted from the left the scored last item sat at a position never trained
    model = SASRec(1682, max_len=20, hidden=16)
    positions = []
    model.encoder.position_embedding.register_forward_hook(
        lambda module, args, output: positions.append(args[0].tolist())
    )
    model.training_step((ml100k.train_inputs[:4],), 0)
    model.score(ml100k.test_inputs[:4])
    trained, scored = positions
    assert trained[-1] == scored[-1] == 19
    assert len(trained) == 19
    assert trained[0] == 1


def test_padding_is_the_zero_vector_at_initialisation():
    for model in (SASRec(1682, hidden=16), DreamRec(1682, hidden=16, steps=10)):
        assert torch.count_nonzero(model.encoder.item_embedding.weight[0]) == 0


def test_exponential_schedule_keeps_the_vp_sde_signal_whatever_the_number_of_steps():
    import math

    from diffusers import DDPMScheduler

    from diffusion_rec.sequential import diffusion_schedule, vp_exponential_betas

    for steps in (20, 200, 2000):
        betas = vp_exponential_betas(steps)
        assert betas.shape == (steps,)
        assert bool((betas[1:] > betas[:-1]).all())  # noise grows along the chain
        scheduler = DDPMScheduler(num_train_timesteps=steps, **diffusion_schedule("exp", steps))
        # abar_T = exp(-int_0^1 beta(s) ds) = exp(-(0.1 + 10) / 2)
        assert float(scheduler.alphas_cumprod[-1]) == pytest.approx(math.exp(-5.05), rel=1e-3)
    with pytest.raises(ValueError, match="beta_schedule"):
        diffusion_schedule("sigmoid", 10)


def test_default_dreamrec_denoiser_is_one_linear_map_of_noisy_item_guidance_and_time():
    model = DreamRec(1682, max_len=20, hidden=16, steps=10)
    linears = [m for m in model.denoiser.net.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(48, 16)]
    # affine in x_t for fixed guidance and step: f(a) + f(b) - f(0) = f(a + b)
    f = model.denoiser
    c, t = torch.randn(4, 16), torch.full((4,), 3)
    a, b, zero = torch.randn(4, 16), torch.randn(4, 16), torch.zeros(4, 16)
    torch.testing.assert_close(f(a, c, t) + f(b, c, t) - f(zero, c, t), f(a + b, c, t))
    deeper = DreamRec(1682, max_len=20, hidden=16, steps=10, denoiser_depth=2).denoiser
    assert sum(isinstance(m, torch.nn.Linear) for m in deeper.net.modules()) == 2


def test_null_guidance_starts_as_a_standard_normal_vector_like_the_items():
    torch.manual_seed(0)
    null = DreamRec(1682, hidden=256, steps=10).null_guidance.detach()
    assert float(null.std()) == pytest.approx(1.0, abs=0.1)
    assert float(null.abs().min()) > 0


def test_dreamrec_steps_on_about_256_pairs_with_a_one_block_encoder(ml100k):
    from diffusion_rec.config import SequentialConfig
    from diffusion_rec.sequential import build_sequential, training_loader

    config = SequentialConfig(max_len=20)
    (batch,) = next(iter(training_loader("dreamrec", ml100k.train_inputs, config)))
    assert len(batch) == config.dreamrec_batch_size
    assert len(next(iter(training_loader("sasrec", ml100k.train_inputs, config)))[0]) == 128
    # with 50-item histories a user holds ~40 (history, next item) pairs
    pairs = ((load_ml100k_sequences(50).train_inputs > 0).sum(1) - 1).float().mean()
    assert 200 < float(pairs) * config.dreamrec_batch_size < 300
    dreamrec = build_sequential("dreamrec", ml100k, config)
    assert len(dreamrec.encoder.transformer.layers) == 1
    assert dreamrec.encoder.dropout.p == pytest.approx(0.1)
    sasrec = build_sequential("sasrec", ml100k, config)
    assert len(sasrec.encoder.transformer.layers) == 2
    assert (dreamrec.lr, sasrec.lr) == (config.dreamrec_lr, config.lr) == (1e-4, 1e-3)
