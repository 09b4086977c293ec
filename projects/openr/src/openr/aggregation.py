"""From step scores to one answer: step aggregation and answer selection (OpenR Sec. 4).

A PRM gives each step of a solution a score in [0, 1]. OpenR ranks solutions by one number
per solution, the ``min``, the ``last`` or the ``prod`` (product) of its step scores, and
then picks the answer by

- ``max``: the answer of the best-scored solution (best-of-N);
- ``vote``: majority vote over answers, ties broken by the best score;
- ``weighted_vote``: each solution votes for its answer with its score (OpenR's
  ``PRM_MIN_VOTE``/``PRM_LAST_VOTE``).

Majority vote is ``vote`` with every score equal. Solutions without a parseable answer
never win while any answered solution exists.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def aggregate_steps(step_scores: Sequence[float], how: str) -> float:
    """One score for a solution from its step scores (empty: 0, nothing to trust)."""
    if not step_scores:
        return 0.0
    if how == "min":
        return float(min(step_scores))
    if how == "last":
        return float(step_scores[-1])
    if how == "prod":
        return float(math.prod(step_scores))
    raise ValueError(f"step aggregation must be min, last or prod, got {how!r}")


def select_answer(
    answers: Sequence[str | None], scores: Sequence[float] | None, how: str
) -> tuple[str | None, int | None]:
    """The chosen answer key and the index of the solution that represents it.

    ``answers`` are normalized answer keys (None: no answer); ``scores`` one per solution
    (None for majority vote).
    """
    if scores is None:
        scores = [1.0] * len(answers)
    if len(scores) != len(answers):
        raise ValueError(f"got {len(answers)} answers but {len(scores)} scores")
    answered = [index for index, answer in enumerate(answers) if answer is not None]
    if not answered:
        return None, None
    if how == "max":
        # ties keep the earliest solution
        best = max(answered, key=lambda index: (scores[index], -index))
        return answers[best], best

    if how not in ("vote", "weighted_vote"):
        raise ValueError(f"answer selection must be max, vote or weighted_vote, got {how!r}")
    votes: dict[str, float] = {}
    best: dict[str, int] = {}  # the best-scored solution of each answer (ties: the first)
    for index in answered:
        key = answers[index]
        votes[key] = votes.get(key, 0.0) + (1.0 if how == "vote" else float(scores[index]))
        if key not in best or scores[index] > scores[best[key]]:
            best[key] = index
    # most votes; then the best single score; then the answer seen first
    order = {key: position for position, key in enumerate(votes)}
    winner = max(votes, key=lambda key: (votes[key], scores[best[key]], -order[key]))
    return winner, best[winner]


def majority_vote(answers: Sequence[str | None]) -> tuple[str | None, int | None]:
    """The most frequent answer (ties: the one seen first)."""
    return select_answer(answers, None, "vote")
