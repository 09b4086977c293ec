"""Step aggregation and answer selection on hand-made scores."""

import math

import pytest

from openr.aggregation import aggregate_steps, majority_vote, select_answer


def test_step_aggregations_take_min_last_and_product():
    scores = [0.9, 0.5, 0.8]
    assert aggregate_steps(scores, "min") == 0.5
    assert aggregate_steps(scores, "last") == 0.8
    assert math.isclose(aggregate_steps(scores, "prod"), 0.36)
    assert aggregate_steps([], "min") == 0.0
    with pytest.raises(ValueError, match="min, last or prod"):
        aggregate_steps(scores, "mean")


def test_majority_vote_picks_the_most_frequent_answer_and_breaks_ties_by_order():
    assert majority_vote(["3", "5", "5", None, "3", "5"]) == ("5", 1)
    assert majority_vote(["7", "8"]) == ("7", 0)
    assert majority_vote([None, None]) == (None, None)


def test_max_selection_returns_the_best_scored_answer():
    answers = ["3", "5", "5", "9"]
    scores = [0.2, 0.4, 0.3, 0.95]
    assert select_answer(answers, scores, "max") == ("9", 3)


def test_weighted_vote_sums_scores_per_answer():
    answers = ["3", "5", "5", "9"]
    scores = [0.2, 0.4, 0.3, 0.65]
    # 5: 0.7, 9: 0.65, 3: 0.2
    assert select_answer(answers, scores, "weighted_vote")[0] == "5"
    scores = [0.2, 0.3, 0.3, 0.65]  # 5: 0.6 < 9: 0.65
    assert select_answer(answers, scores, "weighted_vote")[0] == "9"


def test_vote_counts_answers_and_uses_scores_only_to_break_ties():
    answers = ["3", "5", "3", "5"]
    scores = [0.1, 0.9, 0.2, 0.1]
    assert select_answer(answers, scores, "vote")[0] == "5"  # 2-2 tie, best score 0.9
    assert select_answer(["3", "3", "5"], [0.1, 0.1, 0.99], "vote")[0] == "3"


def test_solutions_without_an_answer_never_win():
    assert select_answer([None, "4"], [0.99, 0.01], "max") == ("4", 1)
    assert select_answer([None, "4"], [0.99, 0.01], "weighted_vote") == ("4", 1)


def test_mismatched_lengths_and_unknown_selection_are_errors():
    with pytest.raises(ValueError, match="2 answers but 1 scores"):
        select_answer(["1", "2"], [0.5], "max")
    with pytest.raises(ValueError, match="max, vote or weighted_vote"):
        select_answer(["1"], [0.5], "best")
