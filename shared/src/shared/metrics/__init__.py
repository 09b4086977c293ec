"""Evaluation metrics shared by the papers: plain tensors or arrays in, floats or dicts out.

- classification: top-k accuracy, weighted kNN and linear-probe accuracy on frozen features
- ranking: full-ranking Recall@K and NDCG@K for recommendation
- ctr: AUC, log loss and per-user GAUC for click-through-rate prediction
- retrieval: image-text Recall@K in both directions and rsum
- math_answers: final-answer extraction and equivalence through math-verify
"""

from shared.metrics.classification import (
    LinearProbe,
    accuracy,
    fit_linear_probe,
    knn_accuracy,
    linear_probe_accuracy,
)
from shared.metrics.ctr import auc, gauc, log_loss
from shared.metrics.math_answers import answers_match, extract_answer
from shared.metrics.ranking import interaction_matrix, stable_topk, topk_ranking_metrics
from shared.metrics.retrieval import image_text_recall

__all__ = [
    "LinearProbe",
    "accuracy",
    "answers_match",
    "auc",
    "extract_answer",
    "fit_linear_probe",
    "gauc",
    "image_text_recall",
    "interaction_matrix",
    "knn_accuracy",
    "linear_probe_accuracy",
    "log_loss",
    "stable_topk",
    "topk_ranking_metrics",
]
