"""Math-Shepherd Monte Carlo labels against arith's exact step truth."""

import json

import pytest

from openr.arith import arith_tokenizer, canonical_steps, step_truth
from openr.engine import Completion, TokenCounter
from openr.labels import generate_labels, label_quality, monte_carlo_labels, read_labels
from openr.search import SearchContext, Solution
from openr.tasks import ArithTask, Problem


class PrefixTruthEngine:
    """Completes a right prefix correctly on even rollouts and wrongly on odd ones; a wrong
    prefix always ends wrong (its wrong number is carried on)."""

    def generate(self, prompts, n, sampling, stop=None):
        groups = []
        for prompt in prompts:
            question = prompt.split("<|user|>")[1].split("\n")[0]
            done = [s for s in prompt.split("<|assistant|>")[1].split("\n") if s]
            reference = canonical_steps(question)
            right = all(step_truth(question, done))
            group = []
            for i in range(n):
                text = "\n".join(reference[len(done) :]) if right and i % 2 == 0 else "#### 12345"
                group.append(Completion(text, "eos", 4, 10))
            groups.append(group)
        return groups


PROBLEMS = [Problem("p", "1+2*3", "9"), Problem("q", "5-1+2", "6")]
SOLUTIONS = [
    [
        Solution(["1+2=3, 3*3", "3*3=9, #### 9"], finished=True),
        Solution(["1+2=4, 4*3", "4*3=12, #### 12"], finished=True),
    ],
    [Solution(["5-1=4, 4+2", "4+2=7, #### 7"], finished=True)],
]


def context():
    return SearchContext(ArithTask(), PrefixTruthEngine(), arith_tokenizer(), None)


def test_hard_labels_equal_the_truth_and_soft_labels_count_successful_rollouts():
    counter = TokenCounter()
    rows = monte_carlo_labels(context(), PROBLEMS, SOLUTIONS, 4, counter)
    assert [row["completions"] for row in rows] == [s.steps for g in SOLUTIONS for s in g]
    assert [row["labels"] for row in rows] == [[True, True], [False, False], [True, False]]
    assert [row["labels"] for row in rows] == [row["true_labels"] for row in rows]
    # a right prefix: 2 of 4 rollouts right; the last step of a finished solution is exact
    assert [row["soft_labels"] for row in rows] == [[0.5, 1.0], [0.0, 0.0], [0.5, 0.0]]
    assert [row["outcome"] for row in rows] == [True, False, False]
    assert rows[0]["prompt"] == "1+2*3\n"
    # one engine call; only prefixes whose outcome is unknown are rolled out (3 of 6)
    assert counter.engine_calls == 1
    assert counter.generated_tokens == 3 * 4 * 4


def test_label_quality_measures_step_accuracy_and_first_error_f1():
    rows = [
        {"labels": [True, True], "true_labels": [True, True]},
        {"labels": [True, False], "true_labels": [False, False]},
        {"labels": [True, False, False], "true_labels": [True, False, False]},
        {"labels": [True, True], "true_labels": [True, False]},
    ]
    quality = label_quality(rows)
    assert quality["step_accuracy"] == pytest.approx(7 / 9)
    assert quality["first_error_accuracy_erroneous"] == pytest.approx(1 / 3)
    assert quality["first_error_accuracy_clean"] == 1.0
    assert quality["first_error_f1"] == pytest.approx(2 * (1 / 3) / (1 / 3 + 1))
    with pytest.raises(ValueError, match="true_labels"):
        label_quality([{"labels": [True]}])


def test_label_files_resume_without_relabelling_done_problems(tmp_path):
    path = tmp_path / "labels.jsonl"
    counter = TokenCounter()
    ctx = context()
    generate_labels(ctx, PROBLEMS[:1], 2, 2, path, counter, chunk_size=1)
    first = read_labels(path)
    calls = counter.engine_calls
    generate_labels(ctx, PROBLEMS, 2, 2, path, counter, chunk_size=1, resume=True)
    rows = read_labels(path)
    assert rows[: len(first)] == first
    assert {row["id"].split("#")[0] for row in rows} == {"p", "q"}
    assert counter.engine_calls == calls + 2  # only problem q: sample, then roll out


def test_label_rows_with_missing_fields_or_mismatched_lengths_are_rejected(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "x", "completions": ["a"]}) + "\n")
    with pytest.raises(ValueError, match="lacks \\['labels'\\]"):
        read_labels(path)
    path.write_text(json.dumps({"prompt": "x", "completions": ["a"], "labels": []}) + "\n")
    with pytest.raises(ValueError, match="1 steps but 0 labels"):
        read_labels(path)
    with pytest.raises(FileNotFoundError, match="openr label"):
        read_labels(tmp_path / "missing.jsonl")
