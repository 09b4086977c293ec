"""Importance sampling of timesteps from the loss history."""

from __future__ import annotations

import pytest
import torch

from diffusion_rec.diffusion import ImportanceTimestepSampler


def _sequential_reference(steps, history, batches):
    """The released code's update: push each sample in turn, dropping the oldest when full."""
    table = [[] for _ in range(steps)]
    for t, losses in batches:
        for step, loss in zip(t.tolist(), losses.tolist(), strict=True):
            table[step].append(loss)
            if len(table[step]) > history:
                table[step].pop(0)
    return table


def test_vectorized_history_update_equals_pushing_samples_one_by_one():
    generator = torch.Generator().manual_seed(0)
    sampler = ImportanceTimestepSampler(steps=4, history=3)
    batches = []
    for _ in range(6):
        t = torch.randint(0, 4, (7,), generator=generator)
        losses = torch.rand(7, generator=generator, dtype=torch.float64)
        batches.append((t, losses))
        sampler.update(t, losses)
    reference = _sequential_reference(4, 3, batches)
    for step in range(4):
        count = int(sampler.loss_count[step])
        assert count == len(reference[step])
        assert sampler.loss_history[step, :count].tolist() == pytest.approx(reference[step])


def test_sampling_is_uniform_with_unit_weights_until_every_history_is_full():
    sampler = ImportanceTimestepSampler(steps=3, history=2)
    sampler.update(torch.tensor([0, 0, 1, 1]), torch.ones(4))
    assert not sampler.warmed_up
    t, weights = sampler.sample(100, generator=torch.Generator().manual_seed(0))
    assert set(t.tolist()) <= {0, 1, 2}
    assert torch.equal(weights, torch.ones(100, dtype=torch.float64))


def test_probabilities_follow_the_root_mean_square_loss_with_a_uniform_floor():
    sampler = ImportanceTimestepSampler(steps=2, history=2, uniform_prob=0.1)
    sampler.update(torch.tensor([0, 0, 1, 1]), torch.tensor([3.0, 4.0, 1.0, 1.0]))
    assert sampler.warmed_up
    rms = torch.tensor([(12.5) ** 0.5, 1.0], dtype=torch.float64)
    expected = rms / rms.sum() * 0.9 + 0.05
    torch.testing.assert_close(sampler.probabilities(), expected)
    t, weights = sampler.sample(5000, generator=torch.Generator().manual_seed(1))
    assert (t == 0).double().mean().item() == pytest.approx(float(expected[0]), abs=0.02)
    torch.testing.assert_close(weights, expected[t] * 2)


def test_importance_weights_keep_the_expected_loss_unbiased():
    sampler = ImportanceTimestepSampler(steps=3, history=1, uniform_prob=0.0)
    per_step_loss = torch.tensor([1.0, 4.0, 9.0], dtype=torch.float64)
    sampler.update(torch.arange(3), per_step_loss)
    p = sampler.probabilities()
    # E_p[L_t / (T p_t)] = mean_t L_t
    assert float((p * per_step_loss / (3 * p)).sum()) == pytest.approx(float(per_step_loss.mean()))


def test_the_history_is_saved_in_the_state_dict_for_resuming():
    sampler = ImportanceTimestepSampler(steps=2, history=2)
    sampler.update(torch.tensor([0, 1]), torch.tensor([1.5, 2.5]))
    restored = ImportanceTimestepSampler(steps=2, history=2)
    restored.load_state_dict(sampler.state_dict())
    assert torch.equal(restored.loss_history, sampler.loss_history)
    assert torch.equal(restored.loss_count, sampler.loss_count)
