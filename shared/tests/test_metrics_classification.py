import logging
import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, top_k_accuracy_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from shared.metrics import (
    accuracy,
    fit_linear_probe,
    knn_accuracy,
    linear_probe_accuracy,
)


def _clusters(seed: int, num_samples: int, dim: int = 8, num_classes: int = 3, noise=1.5):
    """Overlapping Gaussian clusters: (features, labels) with no exact ties in distance."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_classes, dim))
    labels = rng.integers(0, num_classes, num_samples)
    features = centres[labels] + rng.normal(scale=noise, size=(num_samples, dim))
    return features, labels


# accuracy


def test_accuracy_of_class_predictions_matches_sklearn():
    rng = np.random.default_rng(0)
    predictions, targets = rng.integers(0, 4, 50), rng.integers(0, 4, 50)
    expected = accuracy_score(targets, predictions)
    assert accuracy(torch.tensor(predictions), torch.tensor(targets)) == pytest.approx(expected)
    assert accuracy(predictions, targets) == pytest.approx(expected)


def test_top1_and_top3_accuracy_from_logits_match_sklearn():
    rng = np.random.default_rng(1)
    logits, targets = rng.normal(size=(60, 5)), rng.integers(0, 5, 60)
    top1 = accuracy_score(targets, logits.argmax(1))
    top3 = top_k_accuracy_score(targets, logits, k=3, labels=range(5))
    assert accuracy(torch.tensor(logits), torch.tensor(targets)) == pytest.approx(top1)
    assert accuracy(torch.tensor(logits), torch.tensor(targets), top_k=3) == pytest.approx(top3)


def test_accuracy_ties_in_logits_go_to_the_lower_class_index():
    logits = torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0]])
    # top-1 of row 0 is class 0, top-1 of row 1 is class 1
    assert accuracy(logits, torch.tensor([0, 1])) == 1.0
    assert accuracy(logits, torch.tensor([1, 2])) == 0.0
    # the top 2 of row 0 are classes 0 and 1, so class 2 is missed
    assert accuracy(logits[:1], torch.tensor([2]), top_k=2) == 0.0


def test_accuracy_rejects_empty_input_mismatched_lengths_and_topk_on_predictions():
    with pytest.raises(ValueError, match="empty"):
        accuracy(torch.tensor([]), torch.tensor([], dtype=torch.long))
    with pytest.raises(ValueError, match="differ in length"):
        accuracy(torch.tensor([0, 1]), torch.tensor([0]))
    with pytest.raises(ValueError, match="needs \\(samples, classes\\) logits"):
        accuracy(torch.tensor([0, 1]), torch.tensor([0, 1]), top_k=2)
    with pytest.raises(ValueError, match="exceeds the number of classes"):
        accuracy(torch.zeros(2, 3), torch.tensor([0, 1]), top_k=4)


# weighted kNN


def _sklearn_weighted_knn(train_x, train_y, k: int, temperature: float):
    """Reference: cosine distance d = 1 - s, so the weight exp((1 - d) / T) is exp(s / T)."""
    return KNeighborsClassifier(
        n_neighbors=k,
        metric="cosine",
        algorithm="brute",
        weights=lambda distances: np.exp((1 - distances) / temperature),
    ).fit(train_x, train_y)


@pytest.mark.parametrize(("k", "temperature"), [(1, 0.1), (7, 0.1), (15, 0.5)])
def test_knn_predictions_match_sklearn_cosine_knn_with_exponential_weights(k, temperature):
    train_x, train_y = _clusters(seed=2, num_samples=80)
    test_x, test_y = _clusters(seed=3, num_samples=40)
    reference = _sklearn_weighted_knn(train_x, train_y, k, temperature)
    reference_predictions = reference.predict(test_x)

    args = (torch.tensor(train_x), torch.tensor(train_y), torch.tensor(test_x))
    # scoring against sklearn's predictions as labels: 1.0 means every prediction agrees
    assert knn_accuracy(*args, torch.tensor(reference_predictions), k, temperature) == 1.0
    assert knn_accuracy(*args, torch.tensor(test_y), k, temperature) == pytest.approx(
        reference.score(test_x, test_y)
    )


def test_knn_temperature_decides_between_one_close_and_two_farther_neighbours():
    # query [1, 0]: class 0 at cosine 1.0, class 1 at cosines 0.8 and 0.6
    train = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8]])
    labels = torch.tensor([0, 1, 1])
    query, target = torch.tensor([[2.0, 0.0]]), torch.tensor([0])
    # T = 0.1: e^10 = 22026 for class 0 against e^8 + e^6 = 3384 for class 1
    assert knn_accuracy(train, labels, query, target, k=3, temperature=0.1) == 1.0
    # T = 1: e^1 = 2.718 for class 0 against e^0.8 + e^0.6 = 4.048 for class 1
    assert knn_accuracy(train, labels, query, target, k=3, temperature=1.0) == 0.0


def test_knn_vote_ties_go_to_the_lower_class_index():
    # two identical neighbours of classes 1 and 0 give both classes the same weight
    train = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    labels = torch.tensor([1, 0])
    query = torch.tensor([[1.0, 0.0]])
    assert knn_accuracy(train, labels, query, torch.tensor([0]), k=2) == 1.0
    assert knn_accuracy(train, labels, query, torch.tensor([1]), k=2) == 0.0


def test_knn_equally_similar_neighbours_keep_the_lower_training_index():
    # with k = 1 only the first of two identical training samples votes
    train = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    query = torch.tensor([[1.0, 0.0]])
    assert knn_accuracy(train, torch.tensor([1, 0]), query, torch.tensor([1]), k=1) == 1.0
    assert knn_accuracy(train, torch.tensor([0, 1]), query, torch.tensor([0]), k=1) == 1.0


def test_knn_clips_k_to_the_training_set_with_a_warning(caplog):
    train_x, train_y = _clusters(seed=4, num_samples=12)
    test_x, test_y = _clusters(seed=5, num_samples=10)
    clipped = knn_accuracy(train_x, train_y, test_x, test_y, k=12, temperature=0.1)
    with caplog.at_level(logging.WARNING, logger="shared.metrics.classification"):
        too_large = knn_accuracy(train_x, train_y, test_x, test_y, k=200, temperature=0.1)
    assert too_large == clipped
    assert "k=200 exceeds the 12 training samples; using k=12" in caplog.text


def test_knn_small_temperature_does_not_overflow_and_reduces_to_the_nearest_neighbour():
    train_x, train_y = _clusters(seed=6, num_samples=50)
    test_x, test_y = _clusters(seed=7, num_samples=30)
    nearest = knn_accuracy(train_x, train_y, test_x, test_y, k=1)
    assert knn_accuracy(train_x, train_y, test_x, test_y, k=10, temperature=1e-4) == nearest


def test_knn_result_does_not_depend_on_the_batch_size():
    train_x, train_y = _clusters(seed=8, num_samples=60)
    test_x, test_y = _clusters(seed=9, num_samples=25)
    results = {
        knn_accuracy(train_x, train_y, test_x, test_y, k=5, batch_size=size) for size in (1, 7, 25)
    }
    assert len(results) == 1


def test_knn_rejects_bad_input_with_the_fix():
    features, labels = torch.randn(4, 3), torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="test_features is empty"):
        knn_accuracy(features, labels, torch.zeros(0, 3), torch.tensor([], dtype=torch.long))
    with pytest.raises(ValueError, match="differ in dimension"):
        knn_accuracy(features, labels, torch.randn(2, 5), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        knn_accuracy(features, labels, features, labels, temperature=0)
    with pytest.raises(ValueError, match="pass num_classes >= 2"):
        knn_accuracy(features, labels, features, labels, num_classes=1)


# linear probe


def test_linear_probe_equals_sklearn_logistic_regression_with_c_one_over_lambda_n():
    train_x, train_y = _clusters(seed=10, num_samples=200)
    test_x, _ = _clusters(seed=11, num_samples=100)
    weight_decay = 1e-2
    probe = fit_linear_probe(
        torch.tensor(train_x), torch.tensor(train_y), weight_decay=weight_decay
    )

    # sklearn minimises C Σ CE + ||W||²/2, i.e. our mean CE + (λ/2)||W||² for C = 1/(λN)
    scaler = StandardScaler().fit(train_x)
    reference = LogisticRegression(C=1 / (weight_decay * len(train_x)), tol=1e-10, max_iter=10_000)
    reference.fit(scaler.transform(train_x), train_y)

    probabilities = torch.softmax(probe.logits(torch.tensor(test_x)), dim=1).numpy()
    expected = reference.predict_proba(scaler.transform(test_x))
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    np.testing.assert_allclose(probe.weight.numpy(), reference.coef_, atol=1e-4)
    assert (
        probe.predict(torch.tensor(test_x)).tolist()
        == reference.predict(scaler.transform(test_x)).tolist()
    )


def test_linear_probe_accuracy_equals_sklearn_score():
    train_x, train_y = _clusters(seed=12, num_samples=150)
    test_x, test_y = _clusters(seed=13, num_samples=80)
    scaler = StandardScaler().fit(train_x)
    reference = LogisticRegression(C=1 / (1e-3 * len(train_x)), tol=1e-10, max_iter=10_000)
    reference.fit(scaler.transform(train_x), train_y)
    result = linear_probe_accuracy(
        torch.tensor(train_x),
        torch.tensor(train_y),
        torch.tensor(test_x),
        torch.tensor(test_y),
        weight_decay=1e-3,
    )
    assert result == pytest.approx(reference.score(scaler.transform(test_x), test_y))


def test_linear_probe_is_deterministic_and_chunking_keeps_the_full_batch_gradient():
    train_x, train_y = _clusters(seed=14, num_samples=90)
    features, labels = torch.tensor(train_x), torch.tensor(train_y)
    first = fit_linear_probe(features, labels, weight_decay=1e-2)
    second = fit_linear_probe(features, labels, weight_decay=1e-2)
    chunked = fit_linear_probe(features, labels, weight_decay=1e-2, chunk_size=7)
    assert torch.equal(first.weight, second.weight)
    assert torch.equal(first.bias, second.bias)
    torch.testing.assert_close(chunked.weight, first.weight, atol=1e-6, rtol=0)
    assert chunked.loss == pytest.approx(first.loss, abs=1e-10)


def test_linear_probe_standardises_with_train_statistics_and_keeps_constant_features():
    features = torch.tensor([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0], [7.0, 5.0]])
    probe = fit_linear_probe(features, torch.tensor([0, 0, 1, 1]), max_iter=5)
    # mean 4, population std sqrt(5); the constant second feature keeps std 1
    torch.testing.assert_close(probe.mean, torch.tensor([4.0, 5.0]))
    torch.testing.assert_close(probe.std, torch.tensor([math.sqrt(5.0), 1.0]))


def test_linear_probe_rejects_non_integer_labels_and_nan_features():
    with pytest.raises(ValueError, match="integer class indices"):
        fit_linear_probe(torch.randn(4, 2), torch.tensor([0.0, 1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        fit_linear_probe(torch.tensor([[float("nan"), 0.0]]), torch.tensor([0]))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_knn_and_linear_probe_on_cuda_agree_with_cpu():
    train_x, train_y = _clusters(seed=15, num_samples=120)
    test_x, test_y = _clusters(seed=16, num_samples=60)
    cpu = [torch.tensor(a) for a in (train_x, train_y, test_x, test_y)]
    cuda = [tensor.cuda() for tensor in cpu]
    assert knn_accuracy(*cuda, k=10) == knn_accuracy(*cpu, k=10)
    probe = fit_linear_probe(cuda[0], cuda[1], weight_decay=1e-2)
    assert probe.weight.is_cuda
    assert linear_probe_accuracy(*cuda, weight_decay=1e-2) == linear_probe_accuracy(
        *cpu, weight_decay=1e-2
    )
    assert accuracy(probe.logits(cuda[2]), cuda[3], top_k=2) == accuracy(
        probe.logits(cuda[2]).cpu(), cpu[3], top_k=2
    )
