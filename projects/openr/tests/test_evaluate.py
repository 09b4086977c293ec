"""openr evaluate: per-problem records, budgets from one pool, resume after a crash."""

import json

import pytest

from openr.arith import arith_tokenizer, canonical_steps
from openr.config import SearchConfig
from openr.engine import Completion
from openr.evaluate import evaluate, plot_curves, pool_records, read_jsonl
from openr.prm import ExactVerifier
from openr.search import SearchContext
from openr.tasks import ArithTask


class ArithOracleEngine:
    """Right on even samples, wrong (answer + 1) on odd ones; records the questions asked."""

    def __init__(self):
        self.questions: list[str] = []

    def generate(self, prompts, n, sampling, stop=None):
        groups = []
        for prompt in prompts:
            question = prompt.split("<|user|>")[1].split("\n")[0]
            self.questions.append(question)
            done = [s for s in prompt.split("<|assistant|>")[1].split("\n") if s]
            rest = canonical_steps(question)[len(done) :]
            group = []
            for i in range(n):
                steps = list(rest)
                if i % 2:
                    steps[-1] = f"#### {int(steps[-1].split()[-1]) + 1}"
                if stop is None:
                    group.append(Completion("\n".join(steps), "eos", 5, 9))
                else:
                    group.append(Completion(steps[0], "eos" if len(steps) == 1 else "stop", 3, 9))
            groups.append(group)
        return groups


def make_context(engine):
    task = ArithTask()
    return SearchContext(task, engine, arith_tokenizer(), ExactVerifier(task))


SEARCH = SearchConfig(
    methods=["majority_vote", "best_of_n", "beam_search"],
    budgets=[1, 2],
    step_aggregation="min",
    answer_selection="max",
    beam_expansions=2,
    chunk_size=2,
)


def test_evaluation_writes_per_problem_records_and_summaries(tmp_path):
    context = make_context(ArithOracleEngine())
    problems = context.task.problems("test", 5)
    rows = evaluate(context, problems, SEARCH, tmp_path)
    by_key = {(r["method"], r["budget"]): r for r in rows}
    # sample 0 is right: every method is right at every budget with the exact verifier
    assert by_key[("majority_vote", 1)]["accuracy"] == 1.0
    assert by_key[("best_of_n", 2)]["accuracy"] == 1.0
    assert by_key[("beam_search", 2)]["accuracy"] == 1.0
    assert by_key[("pass_at_n", 2)]["accuracy"] == 1.0
    assert by_key[("best_of_n", 2)]["answers"] == 2
    assert by_key[("best_of_n", 2)]["policy_generated_tokens"] == 10
    records = read_jsonl(tmp_path / "beam_search-b2.jsonl")
    assert [r["id"] for r in records] == [p.id for p in problems]
    assert all(r["status"] == "ok" and r["correct"] for r in records)
    assert json.loads((tmp_path / "summary.json").read_text()) == rows
    plot = plot_curves(rows, tmp_path / "curves.png", "test")
    assert plot.stat().st_size > 1000


def test_majority_vote_on_a_tie_and_best_of_n_with_a_verifier_differ_as_expected():
    # pool of two: a wrong first answer and a right second one
    pool = [
        {
            "id": "x",
            "status": "ok",
            "samples": [
                {
                    "answer": "5",
                    "correct": False,
                    "step_scores": [0.0],
                    "truncated": False,
                    "generated_tokens": 3,
                    "prompt_tokens": 1,
                    "prm_tokens": 2,
                },
                {
                    "answer": "4",
                    "correct": True,
                    "step_scores": [1.0],
                    "truncated": False,
                    "generated_tokens": 4,
                    "prompt_tokens": 1,
                    "prm_tokens": 2,
                },
            ],
        }
    ]
    records = pool_records(pool, 2, "min", "max")
    assert records["majority_vote"][0]["correct"] is False  # tie -> first answer
    assert records["best_of_n"][0]["correct"] is True
    assert records["pass_at_n"][0]["correct"] is True
    assert records["best_of_n"][0]["policy_generated_tokens"] == 7
    assert records["best_of_n"][0]["prm_tokens"] == 4
    assert records["best_of_n"][0]["unparsed"] == 0
    assert records["majority_vote"][0]["prm_tokens"] == 0
    with pytest.raises(ValueError, match="fewer than budget 4"):
        pool_records(pool, 4, "min", "max")


def test_resume_redoes_only_the_problems_missing_after_a_crash(tmp_path):
    context = make_context(ArithOracleEngine())
    problems = context.task.problems("test", 6)
    first = evaluate(context, problems, SEARCH, tmp_path)

    # a crash: the beam file lost its last two problems and ends in half a line
    beam_file = tmp_path / "beam_search-b2.jsonl"
    lines = beam_file.read_text().splitlines()
    beam_file.write_text("\n".join(lines[:4]) + "\n" + lines[4][:20])
    engine = ArithOracleEngine()
    resumed = evaluate(make_context(engine), problems, SEARCH, tmp_path, resume=True)
    assert resumed == first
    # only the two lost problems were searched again, and only by beam search at budget 2
    assert set(engine.questions) == {p.question for p in problems[4:]}
    assert [r["id"] for r in read_jsonl(beam_file)] == [p.id for p in problems]


def test_a_failing_problem_is_recorded_and_does_not_stop_the_evaluation(tmp_path):
    class FailsOnOneProblem(ArithOracleEngine):
        def generate(self, prompts, n, sampling, stop=None):
            if any("<|user|>" + bad.question + "\n" in p for p in prompts):
                raise RuntimeError("CUDA out of memory (simulated)")
            return super().generate(prompts, n, sampling, stop)

    context = make_context(FailsOnOneProblem())
    problems = context.task.problems("test", 4)
    bad = problems[1]
    search = SearchConfig(methods=["beam_search"], budgets=[2], beam_expansions=2, chunk_size=4)
    rows = evaluate(context, problems, search, tmp_path)
    assert rows[0]["errors"] == 1
    assert rows[0]["accuracy"] == 0.75
    records = read_jsonl(tmp_path / "beam_search-b2.jsonl")
    failed = [r for r in records if r["status"] == "error"]
    assert [r["id"] for r in failed] == [bad.id]
    assert "out of memory" in failed[0]["error"]
