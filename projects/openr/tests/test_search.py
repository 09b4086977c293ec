"""Beam search, DVTS and MCTS bookkeeping with a scripted policy and scorer."""

import pytest

from openr.arith import arith_tokenizer
from openr.engine import TokenCounter
from openr.search import (
    SearchContext,
    beam_search,
    choose,
    diverse_verifier_tree_search,
    mcts_search,
    sample_solutions,
)
from openr.tasks import ArithTask, Problem

PROBLEMS = [Problem("p0", "1+1", "2"), Problem("p1", "2+2", "4")]


def context(engine, scorer):
    return SearchContext(ArithTask(), engine, arith_tokenizer(), scorer)


def test_beam_search_expands_every_beam_of_every_problem_in_one_call_per_step(
    scripted_engine, index_scorer
):
    counter = TokenCounter()
    results = beam_search(context(scripted_engine, index_scorer), PROBLEMS, 2, 3, counter)
    # step 1: the root of each problem sampled 2 x 3 times; then 2 beams x 3 children
    assert scripted_engine.calls == [(2, 6), (4, 3), (4, 3)]
    assert index_scorer.calls == 3
    for finished in results:
        # the two best first steps (c5, c4) survive, each continued by its best child
        assert sorted(s.steps for s in finished) == [
            ["d0c4", "d1c2", "d2c2"],
            ["d0c5", "d1c2", "d2c2"],
        ]
        assert all(s.finished for s in finished)
    assert counter.engine_calls == 3
    assert counter.answers == 4
    assert counter.generated_tokens == 3 * (12 + 12 + 12)


def test_dvts_runs_independent_greedy_subtrees_batched_together(scripted_engine, index_scorer):
    counter = TokenCounter()
    results = diverse_verifier_tree_search(
        context(scripted_engine, index_scorer), PROBLEMS, 8, 4, counter
    )
    # 2 subtrees per problem, each one beam expanded 4 times per step, all in one call
    assert scripted_engine.calls == [(4, 4), (4, 4), (4, 4)]
    assert [len(row) for row in results] == [2, 2]
    assert all(s.steps == ["d0c3", "d1c3", "d2c3"] for row in results for s in row)


def test_a_step_that_never_reaches_the_delimiter_is_cut_and_counted(index_scorer):
    from openr.engine import Completion

    class Runaway:
        def generate(self, prompts, n, sampling, stop=None):
            return [[Completion("c1" * 50, "length", 64, 5)] * n for _ in prompts]

    counter = TokenCounter()
    results = beam_search(context(Runaway(), index_scorer), PROBLEMS[:1], 1, 2, counter)
    assert len(results[0]) == 1
    assert results[0][0].truncated
    assert counter.truncated == 1
    ctx = context(Runaway(), index_scorer)
    assert choose(ctx, results[0], "min", "max") == (None, None)


def test_step_cap_ends_a_solution_that_never_finishes(index_scorer):
    from openr.engine import Completion

    class Endless:
        def generate(self, prompts, n, sampling, stop=None):
            return [[Completion("c1", "stop", 2, 5)] * n for _ in prompts]

    ctx = context(Endless(), index_scorer)
    ctx.max_steps = 5
    results = beam_search(ctx, PROBLEMS[:1], 1, 1, TokenCounter())
    assert results[0][0].truncated
    assert len(results[0][0].steps) == 5


def test_sampled_solutions_are_split_into_steps_and_scored(index_scorer):
    from openr.engine import Completion

    class Whole:
        def generate(self, prompts, n, sampling, stop=None):
            assert stop is None
            return [
                [Completion(f"1+1=2\n#### {i}c{i}", "eos", 9, 5) for i in range(n)] for _ in prompts
            ]

    counter = TokenCounter()
    solutions = sample_solutions(context(Whole(), index_scorer), PROBLEMS, 3, counter)
    assert solutions[0][2].steps == ["1+1=2", "#### 2c2"]
    assert solutions[0][2].step_scores == [0.0, 0.2]
    assert counter.answers == 6
    assert counter.generated_tokens == 54


def test_mcts_search_returns_finished_solutions_and_counts_its_calls(scripted_engine, index_scorer):
    counter = TokenCounter()
    results = mcts_search(
        context(scripted_engine, index_scorer), PROBLEMS, 12, 2, counter, c_puct=1.0
    )
    for row in results:
        assert row, "every problem gets at least one candidate"
        # the scripted policy ends every solution at its third step
        assert all(s.finished and len(s.steps) == 3 for s in row)
    # each simulation: at most one engine call and one scorer call for both trees together
    assert counter.engine_calls <= 12
    assert index_scorer.calls <= 12
    assert counter.answers == sum(len(row) for row in results)


@pytest.mark.parametrize("width", [0, -1])
def test_beam_width_must_be_positive(scripted_engine, index_scorer, width):
    with pytest.raises(ValueError, match="beam_width and expansions must be >= 1"):
        beam_search(context(scripted_engine, index_scorer), PROBLEMS, width, 2, TokenCounter())


def test_mcts_with_rollout_evaluation_keeps_the_rollouts_as_candidates(
    scripted_engine, index_scorer
):
    counter = TokenCounter()
    results = mcts_search(
        context(scripted_engine, index_scorer), PROBLEMS, 3, 2, counter, evaluation="rollout"
    )
    for row in results:
        # the scripted policy finishes a rollout in one call: each is one more candidate
        assert row
        assert all(s.finished for s in row)
    # whole-solution calls (stop=None) ran besides the step expansions
    assert any(n == 1 for _, n in scripted_engine.calls)
