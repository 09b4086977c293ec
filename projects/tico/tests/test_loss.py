import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tico.loss import BarlowTwinsLoss, TiCoLoss, off_diagonal

HERE = Path(__file__).resolve().parent


def hand_example():
    # normalised rows: a1 = (.6, .8), a2 = (0, -1), b1 = (.8, .6), b2 = (1, 0)
    z_a = torch.tensor([[3.0, 4.0], [0.0, -2.0]])
    z_b = torch.tensor([[4.0, 3.0], [1.0, 0.0]])
    return z_a, z_b


def reference_tico(z_a, z_b, covariance, beta, rho, batch_gradient):
    """TiCo's two terms written out plainly, returning (loss, new C)."""
    z_a, z_b = F.normalize(z_a, dim=1), F.normalize(z_b, dim=1)
    moment = z_a.T @ z_a / len(z_a)
    if not batch_gradient:
        moment = moment.detach()
    new_covariance = beta * covariance + (1 - beta) * moment
    per_sample = torch.stack([z @ new_covariance @ z for z in z_a])
    loss = 1 - (z_a * z_b).sum(1).mean() + rho * per_sample.mean()
    return loss, new_covariance.detach()


def test_tico_loss_matches_a_hand_computation_from_zero_covariance():
    # invariance: 1 - (0.96 + 0) / 2 = 0.52
    # B = (a1 a1^T + a2 a2^T) / 2 = [[.18, .24], [.24, .82]], C = 0.1 B
    # a1^T C a1 = a2^T C a2 = 0.082, so loss = 0.52 + 8 * 0.082 = 1.176
    z_a, z_b = hand_example()
    loss_fn = TiCoLoss(dim=2, beta=0.9, rho=8.0)
    loss = loss_fn(z_a, z_b)
    assert loss.item() == pytest.approx(1.176, abs=1e-6)
    expected_c = torch.tensor([[0.018, 0.024], [0.024, 0.082]])
    torch.testing.assert_close(loss_fn.covariance, expected_c)


def test_tico_loss_uses_the_running_covariance_of_earlier_batches():
    # with C = 0.5 I before the batch: C' = 0.45 I + 0.1 B, so each z^T C' z = 0.45 + 0.082
    # and the loss is 0.52 + 8 * 0.532 = 4.776
    z_a, z_b = hand_example()
    loss_fn = TiCoLoss(dim=2, beta=0.9, rho=8.0)
    loss_fn.covariance.copy_(0.5 * torch.eye(2))
    assert loss_fn(z_a, z_b).item() == pytest.approx(4.776, abs=1e-5)


def test_covariance_update_is_an_exponential_moving_average_of_batch_second_moments():
    torch.manual_seed(0)
    loss_fn = TiCoLoss(dim=5, beta=0.5, rho=1.0)
    expected = torch.zeros(5, 5)
    for _ in range(3):
        z = torch.randn(16, 5)
        loss_fn(z, torch.randn(16, 5))
        unit = F.normalize(z, dim=1)
        expected = 0.5 * expected + 0.5 * unit.T @ unit / 16
    torch.testing.assert_close(loss_fn.covariance, expected)


def test_covariance_is_left_unchanged_when_update_is_off_or_in_eval_mode():
    z_a, z_b = hand_example()
    loss_fn = TiCoLoss(dim=2)
    loss_fn(z_a, z_b, update_covariance=False)
    assert torch.count_nonzero(loss_fn.covariance) == 0
    loss_fn.eval()
    loss_fn(z_a, z_b)
    assert torch.count_nonzero(loss_fn.covariance) == 0


@pytest.mark.parametrize("batch_gradient", [False, True])
def test_tico_gradients_match_the_reference_with_and_without_the_batch_gradient(batch_gradient):
    torch.manual_seed(1)
    prior = 0.1 * torch.eye(6)
    z_a = torch.randn(10, 6, dtype=torch.float64, requires_grad=True)
    z_b = torch.randn(10, 6, dtype=torch.float64, requires_grad=True)
    loss_fn = TiCoLoss(dim=6, beta=0.8, rho=3.0, batch_gradient=batch_gradient).double()
    loss_fn.covariance.copy_(prior)
    ours = torch.autograd.grad(loss_fn(z_a, z_b), (z_a, z_b))
    reference, _ = reference_tico(z_a, z_b, prior.double(), 0.8, 3.0, batch_gradient)
    expected = torch.autograd.grad(reference, (z_a, z_b))
    for got, want in zip(ours, expected, strict=True):
        torch.testing.assert_close(got, want)


def test_batch_gradient_option_changes_the_query_gradient_by_the_in_batch_contrast_term():
    # with B live, d/dz of rho * mean_i z_i^T ((1-beta) B) z_i doubles the in-batch part:
    # the difference of the two gradients is the gradient of that term with B held fixed
    torch.manual_seed(2)
    z_a = torch.randn(8, 4, dtype=torch.float64, requires_grad=True)
    z_b = torch.randn(8, 4, dtype=torch.float64)
    grads = {}
    for flag in (False, True):
        loss_fn = TiCoLoss(dim=4, beta=0.9, rho=8.0, batch_gradient=flag).double()
        (grads[flag],) = torch.autograd.grad(loss_fn(z_a, z_b), z_a)
    unit = F.normalize(z_a, dim=1)
    moment = (unit.T @ unit / 8).detach()
    term = 8.0 * 0.1 * ((unit @ moment) * unit).sum(1).mean()
    (expected_difference,) = torch.autograd.grad(term, z_a)
    torch.testing.assert_close(grads[True] - grads[False], expected_difference)
    assert not torch.allclose(grads[True], grads[False])


def test_tico_loss_passes_gradcheck_in_double_precision():
    torch.manual_seed(3)
    z_a = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    z_b = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    loss_fn = TiCoLoss(dim=3, batch_gradient=True).double()
    loss_fn.covariance.copy_(0.2 * torch.eye(3))
    assert torch.autograd.gradcheck(lambda a, b: loss_fn(a, b, update_covariance=False), (z_a, z_b))


def test_symmetric_form_treats_both_views_as_queries():
    # hand: invariance 0.52 as before; B = (sum of a a^T + sum of b b^T) / 4,
    # covariance term = mean over the four unit vectors of z^T (0.1 B) z
    z_a, z_b = hand_example()
    loss_fn = TiCoLoss(dim=2, beta=0.9, rho=8.0, symmetric=True)
    loss = loss_fn(z_a, z_b)
    units = F.normalize(torch.cat([z_a, z_b]), dim=1)
    c = 0.1 * units.T @ units / 4
    expected = 0.52 + 8.0 * torch.stack([u @ c @ u for u in units]).mean()
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    torch.testing.assert_close(loss_fn.covariance, c)
    # swapping the views leaves the symmetric loss unchanged
    assert TiCoLoss(2, symmetric=True)(z_b, z_a).item() == pytest.approx(loss.item(), abs=1e-6)


def test_covariance_is_a_buffer_saved_in_the_state_dict_and_restored():
    z_a, z_b = hand_example()
    trained = TiCoLoss(dim=2)
    trained(z_a, z_b)
    state = trained.state_dict()
    assert set(state) == {"covariance"}
    assert "covariance" not in dict(trained.named_parameters())
    restored = TiCoLoss(dim=2)
    restored.load_state_dict(state)
    torch.testing.assert_close(restored.covariance, trained.covariance)
    assert restored.to(torch.float64).covariance.dtype == torch.float64


def test_tico_loss_computes_in_float32_for_bfloat16_embeddings():
    z_a, z_b = hand_example()
    loss_fn = TiCoLoss(dim=2)
    loss = loss_fn(z_a.bfloat16(), z_b.bfloat16())
    assert loss.dtype == torch.float32
    assert loss_fn.covariance.dtype == torch.float32
    assert loss.item() == pytest.approx(1.176, abs=1e-2)


def test_a_batch_of_one_is_a_clear_error():
    with pytest.raises(ValueError, match="batch_size must be >= 2"):
        TiCoLoss(dim=3)(torch.randn(1, 3), torch.randn(1, 3))
    with pytest.raises(ValueError, match="batch_size must be >= 2"):
        BarlowTwinsLoss()(torch.randn(1, 3), torch.randn(1, 3))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("view", ["query", "key"])
def test_nan_embeddings_are_a_clear_error_and_leave_the_covariance_untouched(bad, view):
    loss_fn = TiCoLoss(dim=3)
    z_a, z_b = torch.randn(4, 3), torch.randn(4, 3)
    (z_a if view == "query" else z_b)[2, 1] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        loss_fn(z_a, z_b)
    assert torch.count_nonzero(loss_fn.covariance) == 0
    with pytest.raises(ValueError, match="NaN or infinite"):
        BarlowTwinsLoss()(z_a, z_b)


def test_mismatched_shapes_and_dimension_are_clear_errors():
    with pytest.raises(ValueError, match="same shape"):
        TiCoLoss(dim=3)(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="built for dim=3"):
        TiCoLoss(dim=3)(torch.randn(4, 8), torch.randn(4, 8))
    with pytest.raises(ValueError, match="beta must be in"):
        TiCoLoss(dim=3, beta=1.0)


def test_tico_loss_matches_lightly_over_several_batches():
    lightly_loss = pytest.importorskip("lightly.loss")
    torch.manual_seed(4)
    ours = TiCoLoss(dim=16, beta=0.9, rho=8.0)
    theirs = lightly_loss.TiCoLoss(beta=0.9, rho=8.0)
    for _ in range(4):
        z_a, z_b = torch.randn(32, 16), torch.randn(32, 16)
        assert ours(z_a, z_b).item() == pytest.approx(theirs(z_a, z_b).item(), rel=1e-5)
    torch.testing.assert_close(ours.covariance, theirs.C)


def test_barlow_twins_loss_matches_a_hand_computation():
    # standardised columns: z_a -> [[-1, 1], [1, -1]], z_b -> [[-1, -1], [1, 1]]
    # c = z_a^T z_b / 2 = [[1, 1], [-1, -1]]: diagonal (1, -1), off-diagonal (1, -1)
    # loss = (0 + 4) + 0.5 * (1 + 1) = 5
    z_a = torch.tensor([[0.0, 3.0], [2.0, 1.0]])
    z_b = torch.tensor([[1.0, 5.0], [3.0, 7.0]])
    loss = BarlowTwinsLoss(lambda_offdiag=0.5)(z_a, z_b)
    assert loss.item() == pytest.approx(5.0, rel=1e-4)


def test_barlow_twins_loss_matches_lightly():
    lightly_loss = pytest.importorskip("lightly.loss")
    torch.manual_seed(5)
    z_a, z_b = torch.randn(64, 32), torch.randn(64, 32)
    theirs = lightly_loss.BarlowTwinsLoss(lambda_param=5e-3)(z_a, z_b)
    ours = BarlowTwinsLoss(lambda_offdiag=5e-3)(z_a, z_b)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)


def test_off_diagonal_lists_every_entry_off_the_diagonal():
    matrix = torch.arange(9.0).view(3, 3)
    assert off_diagonal(matrix).tolist() == [1.0, 2.0, 3.0, 5.0, 6.0, 7.0]


def _import_worker():
    sys.path.insert(0, str(HERE))
    try:
        import tico_ddp_worker
    finally:
        sys.path.remove(str(HERE))
    return tico_ddp_worker


@pytest.fixture(scope="module")
def two_process_records(tmp_path_factory):
    """Run every DDP case once in two gloo processes (half the global batch each)."""
    out = tmp_path_factory.mktemp("ddp")
    result = subprocess.run(
        [sys.executable, str(HERE / "tico_ddp_worker.py"), str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.mark.parametrize(
    "case", _import_worker().CASES, ids=lambda case: _import_worker().case_name(*case)
)
def test_two_gloo_processes_match_one_process_on_the_global_batch(two_process_records, case):
    worker = _import_worker()

    # one process sees the whole batch
    encoder, views_a, views_b = worker.make_problem()
    single = worker.train(encoder, worker.make_loss(*case, gather=False), views_a, views_b)

    # two processes saw half each, gathered by the loss and averaged by DDP: the same loss,
    # the same gradient, and the same C on both
    for rank in range(worker.WORLD_SIZE):
        record = torch.load(two_process_records / f"{worker.case_name(*case)}-rank{rank}.pt")
        for key in ("loss", "grad", "covariance"):
            assert len(record[key]) == len(single[key])
            for got, want in zip(record[key], single[key], strict=True):
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        if case[0] == "tico":
            assert len(record["covariance"]) == worker.STEPS
