"""Image-text retrieval Recall@K in both directions, with several captions per image.

The protocol of VSE++ (Faghri et al. 2018) and CLIP's zero-shot retrieval on COCO and
Flickr30k: image->text R@K counts an image as retrieved when any of its captions is among
its K most similar texts; text->image R@K counts a caption when its own image is among its
K most similar images. ``rsum`` is the sum of all the recalls, each in percent.

Example::

    similarity = image_embeddings @ text_embeddings.T  # (n_images, n_texts)
    recalls = image_text_recall(similarity, text_to_image)  # {"i2t_r1": ..., "rsum": ...}
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def _ranks(similarity: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0-based rank of column ``targets[q]`` in row q, equal values ordered by lower index."""
    target_values = similarity.gather(1, targets[:, None])  # (B, 1)
    columns = torch.arange(similarity.shape[1], device=similarity.device)
    better = (similarity > target_values).sum(dim=1)
    tied_before = ((similarity == target_values) & (columns < targets[:, None])).sum(dim=1)
    return better + tied_before


def image_text_recall(
    similarity: torch.Tensor | np.ndarray,
    text_to_image: torch.Tensor | np.ndarray | Sequence[int],
    ks: Sequence[int] = (1, 5, 10),  # the cut-offs of VSE++ and CLIP's retrieval tables
    batch_size: int = 1024,  # queries ranked at once
) -> dict[str, float]:
    """Recall@K in percent for image->text and text->image retrieval, and their sum.

    i2t R@K = 100 · mean_i 1[min_{t: image(t) = i} rank_i(t) < K] and
    t2i R@K = 100 · mean_t 1[rank_t(image(t)) < K], where rank is the 0-based position in
    the query's descending similarity order, equal similarities ordered by lower index.

    ``similarity`` is (n_images, n_texts); ``text_to_image[t]`` is the image caption t
    describes, and every image needs at least one caption. Returns ``i2t_r{K}``,
    ``t2i_r{K}`` for each K and ``rsum``.
    """
    # validate the similarity matrix and the caption-to-image index
    similarity = torch.as_tensor(similarity)
    if similarity.dim() != 2 or similarity.numel() == 0:
        raise ValueError(
            f"similarity must be a non-empty (n_images, n_texts) matrix, "
            f"got shape {tuple(similarity.shape)}"
        )
    if not torch.isfinite(similarity).all():
        raise ValueError("similarity holds NaN or infinite values; check the embeddings")
    num_images, num_texts = similarity.shape
    device = similarity.device
    if not isinstance(text_to_image, torch.Tensor):
        text_to_image = torch.as_tensor(np.asarray(text_to_image))
    text_to_image = text_to_image.long().flatten().to(device)
    if len(text_to_image) != num_texts:
        raise ValueError(
            f"text_to_image has {len(text_to_image)} entries for {num_texts} texts; "
            "give one image index per column of similarity"
        )
    if int(text_to_image.min()) < 0 or int(text_to_image.max()) >= num_images:
        raise ValueError(
            f"text_to_image must index images in [0, {num_images}), "
            f"got [{int(text_to_image.min())}, {int(text_to_image.max())}]"
        )
    captions_per_image = torch.bincount(text_to_image, minlength=num_images)
    if int(captions_per_image.min()) == 0:
        missing = torch.nonzero(captions_per_image == 0).flatten()[:5].tolist()
        raise ValueError(
            f"images {missing} have no caption; every row of similarity needs at least one "
            "text, so drop those images"
        )
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be non-empty positive cut-offs, got {ks}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    similarity = similarity.float()

    # image->text: the rank of an image's best caption (its highest-scored, lowest index)
    i2t_ranks = []
    for images in torch.arange(num_images, device=device).split(batch_size):
        rows = similarity[images]  # (B, n_texts)
        own_captions = text_to_image[None, :] == images[:, None]
        best_caption = rows.masked_fill(~own_captions, float("-inf")).argmax(dim=1)
        i2t_ranks.append(_ranks(rows, best_caption))
    i2t_ranks = torch.cat(i2t_ranks)

    # text->image: the rank of each caption's own image
    t2i_ranks = []
    for texts in torch.arange(num_texts, device=device).split(batch_size):
        columns = similarity[:, texts].T  # (B, n_images)
        t2i_ranks.append(_ranks(columns, text_to_image[texts]))
    t2i_ranks = torch.cat(t2i_ranks)

    recalls = {}
    for k in ks:
        recalls[f"i2t_r{k}"] = 100.0 * (i2t_ranks < k).double().mean().item()
    for k in ks:
        recalls[f"t2i_r{k}"] = 100.0 * (t2i_ranks < k).double().mean().item()
    recalls["rsum"] = sum(recalls.values())
    return recalls
