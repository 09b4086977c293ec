"""Tasks: arith truth, step splitting, answer extraction and grading on real GSM8K/MATH rows."""

import json

import pytest

from openr import arith
from openr.tasks import ArithTask, FileTask, GSM8KTask, MathTask, Problem, load_task


def test_canonical_steps_compute_the_chain_left_to_right():
    assert arith.canonical_steps("17+5*3-9") == [
        "17+5=22, 22*3-9",
        "22*3=66, 66-9",
        "66-9=57, #### 57",
    ]
    assert arith.evaluate_expression("2-7*3") == -15


def test_step_truth_marks_the_first_error_and_every_step_after_it():
    steps = ["17+5=22, 22*3-9", "22*3=65, 65-9", "65-9=56, #### 56"]
    assert arith.step_truth("17+5*3-9", steps) == [True, False, False]
    assert arith.first_error(arith.step_truth("17+5*3-9", steps)) == 1
    right = arith.canonical_steps("17+5*3-9")
    assert arith.step_truth("17+5*3-9", right) == [True] * 3
    assert arith.first_error([True] * 3) is None
    # extra steps past the canonical solution are wrong
    assert arith.step_truth("1+1", ["1+1=2, #### 2", "#### 2"]) == [True, False]


@pytest.mark.parametrize("bad", ["17+", "+5", "17/5", "abc", "12"])
def test_malformed_expressions_are_rejected_with_the_expected_form(bad):
    with pytest.raises(ValueError, match="arith expression"):
        arith.parse_expression(bad)


def test_arith_problems_are_reproducible_and_test_is_disjoint_from_train():
    task = ArithTask(arith.ArithDifficulty(2, 3, 9, 3), seed=1)
    test = task.problems("test", 30)
    assert test == task.problems("test", 30)
    train = {p.question for p in task.problems("train", 20_000)}
    assert not train & {p.question for p in test}
    for problem in test:
        steps = task.split_steps(task.reference_solution(problem))
        assert 2 <= len(steps) <= 3
        assert task.is_correct(task.extract_answer(task.join_steps(steps)), problem)


def test_arith_answer_extraction_needs_the_marker_and_an_integer():
    task = ArithTask()
    assert task.extract_answer("1+2=3, 3+1\n3+1=4, #### 4") == "4"
    assert task.extract_answer("1-5=-4, #### -4") == "-4"
    assert task.extract_answer("1+2=3, 3+1") is None
    assert task.extract_answer("1+2=3, #### 3x") is None


def test_arith_tokenizer_round_trips_characters_and_renders_the_chat_prompt():
    tokenizer = arith.arith_tokenizer()
    text = "17+5=22, #### 22\n"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)
    assert tokenizer.decode(ids) == text
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "17+5"}], add_generation_prompt=True, tokenize=False
    )
    assert prompt == "<|user|>17+5\n<|assistant|>"
    assert tokenizer.convert_tokens_to_ids(arith.STEP_TAG) != tokenizer.unk_token_id


def test_gsm8k_rows_parse_and_grade_equivalent_answer_forms():
    task = GSM8KTask()
    problems = task.problems("test", 3)
    assert problems[0].answer == "18"  # Janet's ducks
    assert task.is_correct(task.extract_answer("so she makes $18.00\n\n#### 18"), problems[0])
    assert task.is_correct("18.0", problems[0])
    assert not task.is_correct("17", problems[0])
    assert not task.is_correct(None, problems[0])
    steps = task.split_steps(task.reference_solution(problems[0]))
    assert steps[-1] == "#### 18"
    assert "<<" not in " ".join(steps)


def test_math500_answers_match_in_equivalent_latex_forms():
    task = MathTask()
    problems = {p.id: p for p in task.problems("test500")}
    assert len(problems) == 500
    polar = problems["test/precalculus/807.json"]
    assert task.is_correct("\\left( 3, \\frac{\\pi}{2} \\right)", polar)
    assert task.is_correct("(3, \\pi/2)", polar)
    assert not task.is_correct("(3, \\pi)", polar)
    half = Problem("x", "q", "\\frac{1}{2}")
    assert task.is_correct(task.extract_answer("so \\boxed{0.5}"), half)
    assert task.is_correct("\\dfrac12", half)


def test_math_train_problems_load_with_answers():
    problems = MathTask().problems("train", 5)
    assert len(problems) == 5
    assert all(p.answer for p in problems)


def test_step_splitting_drops_empty_paragraphs():
    task = GSM8KTask()
    assert task.split_steps("a\n\n\n\nb\n\n c \n\n") == ["a", "b", "c"]


def test_answer_keys_group_equal_numbers_for_voting():
    task = GSM8KTask()
    assert task.answer_key("1,000") == task.answer_key("1000") == task.answer_key("1000.00")
    assert task.answer_key("$\\dfrac{1}{2}$") == task.answer_key("\\frac{1}{2}")


def test_task_file_with_a_missing_field_names_the_line_and_field(tmp_path):
    path = tmp_path / "tasks.jsonl"
    path.write_text(
        json.dumps({"question": "1+1?", "answer": "2"})
        + "\n"
        + json.dumps({"question": "2+2?"})
        + "\n"
    )
    with pytest.raises(ValueError, match=r"line 2 lacks the string field\(s\) \['answer'\]"):
        FileTask(path).problems()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FileTask(tmp_path / "none.jsonl").problems()


def test_unknown_task_names_the_choices():
    with pytest.raises(ValueError, match="unknown task 'gsm9k'"):
        load_task("gsm9k")
