import numpy as np
import pytest
import torch
from torchmetrics.retrieval import RetrievalHitRate, RetrievalRecall

from shared.metrics import image_text_recall


def _torchmetrics_recalls(similarity: torch.Tensor, text_to_image: torch.Tensor, k: int):
    """i2t: hit rate over each image's captions; t2i: recall of each caption's one image."""
    num_images, num_texts = similarity.shape
    i2t = RetrievalHitRate(top_k=k)
    for image in range(num_images):
        i2t.update(
            similarity[image], text_to_image == image, indexes=torch.full((num_texts,), image)
        )
    t2i = RetrievalRecall(top_k=k)
    for text in range(num_texts):
        t2i.update(
            similarity[:, text],
            torch.arange(num_images) == text_to_image[text],
            indexes=torch.full((num_images,), text),
        )
    return 100 * i2t.compute().item(), 100 * t2i.compute().item()


def test_recalls_match_torchmetrics_hit_rate_and_recall_with_five_captions_per_image():
    rng = np.random.default_rng(0)
    num_images = 12
    text_to_image = torch.tensor(rng.permutation(np.repeat(np.arange(num_images), 5)))
    # captions lean towards their image, so the recalls are neither 0 nor 100; similarities
    # are kept positive because torchmetrics' recall ignores items scored <= 0
    similarity = torch.tensor(rng.random(size=(num_images, len(text_to_image))))
    similarity[text_to_image, torch.arange(len(text_to_image))] += 0.3

    recalls = image_text_recall(similarity, text_to_image, ks=(1, 5, 10), batch_size=5)
    for k in (1, 5, 10):
        expected_i2t, expected_t2i = _torchmetrics_recalls(similarity, text_to_image, k)
        assert recalls[f"i2t_r{k}"] == pytest.approx(expected_i2t, abs=1e-4)
        assert recalls[f"t2i_r{k}"] == pytest.approx(expected_t2i, abs=1e-4)
    assert recalls["rsum"] == pytest.approx(sum(v for key, v in recalls.items() if key != "rsum"))
    assert 0 < recalls["t2i_r1"] < 100


def test_recalls_by_hand_with_ties_ranking_the_lower_index_first():
    # captions 0, 2 describe image 0 and captions 1, 3 image 1
    text_to_image = [0, 1, 0, 1]
    similarity = torch.tensor([[0.4, 0.4, 0.1, 0.2], [0.6, 0.6, 0.1, 0.2]])
    recalls = image_text_recall(similarity, text_to_image)
    # i2t: image 0's caption 0 ties caption 1 and comes first (hit); image 1's caption 1
    # ties caption 0, which comes first (rank 2): R@1 = 1/2
    # t2i: caption 0 loses to image 1 (0.6 > 0.4), caption 1 wins, caption 2 ties with
    # image 0 first (hit), caption 3 ties with image 0 first (miss): R@1 = 2/4
    assert recalls == {
        "i2t_r1": 50.0,
        "i2t_r5": 100.0,
        "i2t_r10": 100.0,
        "t2i_r1": 50.0,
        "t2i_r5": 100.0,
        "t2i_r10": 100.0,
        "rsum": 500.0,
    }


def test_an_image_counts_as_retrieved_when_any_of_its_captions_is_in_the_top_k():
    # image 0's first caption ranks last but its second caption ranks first
    similarity = torch.tensor([[0.0, 0.9, 0.5], [0.2, 0.1, 0.8]])
    recalls = image_text_recall(similarity, [0, 0, 1], ks=(1,))
    # image 0: caption 1 at rank 1 (hit); image 1: caption 2 at rank 1 (hit)
    assert recalls["i2t_r1"] == 100.0
    # caption 0 prefers image 1 (0.2 > 0.0): 2 of 3 captions find their image first
    assert recalls["t2i_r1"] == pytest.approx(200 / 3)


def test_retrieval_rejects_images_without_captions_and_empty_input():
    with pytest.raises(ValueError, match=r"images \[1\] have no caption"):
        image_text_recall(torch.rand(2, 3), [0, 0, 0])
    with pytest.raises(ValueError, match="non-empty"):
        image_text_recall(torch.zeros(0, 0), [])
    with pytest.raises(ValueError, match="one image index per column"):
        image_text_recall(torch.rand(2, 3), [0, 1])
    with pytest.raises(ValueError, match="NaN or infinite"):
        image_text_recall(torch.tensor([[float("nan"), 0.0]]), [0, 0])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_recalls_on_cuda_equal_the_cpu_recalls():
    rng = np.random.default_rng(1)
    text_to_image = torch.tensor(rng.permutation(np.repeat(np.arange(20), 5)))
    similarity = torch.tensor(rng.random(size=(20, 100))).float()
    expected = image_text_recall(similarity, text_to_image)
    assert image_text_recall(similarity.cuda(), text_to_image, batch_size=8) == expected
