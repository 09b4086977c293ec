import json

import pytest

from shared.data.locations import CorruptDataError
from shared.data.math_text import MathProblem, load_gsm8k, load_math


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("PAPERSTACK_DATA", str(root))
    return root


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_gsm8k_embedded_has_all_of_test_and_the_first_1000_training_rows():
    test = load_gsm8k("test", source="embedded")
    train = load_gsm8k("train", source="embedded")

    assert (len(test), len(train)) == (1319, 1000)
    assert test[0].id == "gsm8k/test/0"
    assert test[0].question.startswith("Janet’s ducks lay 16 eggs per day.")
    assert test[0].answer == "18"
    assert test[0].solution.endswith("every day at the farmer’s market.")
    assert "####" not in test[0].solution
    assert (train[0].answer, train[-1].id) == ("72", "gsm8k/train/999")


def test_gsm8k_answers_lose_their_thousands_separators(data_dir):
    write_jsonl(
        data_dir / "gsm8k" / "test.jsonl",
        [{"question": "How many?", "answer": "Count <<1000+80=1080>>them.\n#### 1,080"}],
    )

    (problem,) = load_gsm8k("test", download=False)

    assert problem == MathProblem(
        id="gsm8k/test/0",
        question="How many?",
        answer="1080",
        solution="Count <<1000+80=1080>>them.",
    )


def test_gsm8k_row_without_an_answer_names_file_line_and_field(data_dir):
    path = data_dir / "gsm8k" / "test.jsonl"
    write_jsonl(path, [{"question": "a", "answer": "#### 1"}, {"question": "b"}])

    with pytest.raises(CorruptDataError, match=r"test\.jsonl line 2: missing field 'answer'"):
        load_gsm8k("test", download=False)


def test_gsm8k_answer_without_final_line_is_refused(data_dir):
    write_jsonl(data_dir / "gsm8k" / "test.jsonl", [{"question": "a", "answer": "it is 4"}])

    with pytest.raises(CorruptDataError, match=r"line 1.*#### <number>"):
        load_gsm8k("test", download=False)


def test_math500_has_500_problems_with_subject_level_and_solution():
    problems = load_math("test500", source="embedded")

    assert len(problems) == 500
    first = problems[0]
    assert first.id == "test/precalculus/807.json"
    assert first.answer == r"\left( 3, \frac{\pi}{2} \right)"
    assert (first.subject, first.level) == ("Precalculus", 2)
    assert first.solution.startswith("We have that $r = \\sqrt{0^2 + 3^2} = 3.$")
    assert {problem.level for problem in problems} == {1, 2, 3, 4, 5}


def test_math_training_problems_have_answers_but_no_solutions():
    problems = load_math("train", source="embedded")

    assert len(problems) == 1000
    assert problems[0].answer == r"\frac{1}{4}"
    assert (problems[0].id, problems[0].solution, problems[0].level) == ("math/train/0", None, None)


def test_math500_row_with_a_missing_field_names_file_line_and_field(data_dir):
    row = {
        "problem": "1+1?",
        "solution": "2",
        "answer": "2",
        "subject": "Algebra",
        "level": "Level 1",
        "unique_id": "test/algebra/1.json",
    }
    incomplete = {key: value for key, value in row.items() if key != "subject"}
    write_jsonl(data_dir / "math" / "math500_test.jsonl", [row, row, incomplete])

    with pytest.raises(
        CorruptDataError, match=r"math500_test\.jsonl line 3: missing field 'subject'"
    ):
        load_math("test500", download=False)


def test_math_training_entry_with_a_missing_field_names_the_entry(data_dir):
    path = data_dir / "math" / "math_train_problems_answers.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps([{"problem": "p", "final_answer": "1"}, {"problem": "q"}]))

    with pytest.raises(CorruptDataError, match="entry 1: missing field 'final_answer'"):
        load_math("train", download=False)


def test_unknown_splits_are_refused():
    with pytest.raises(ValueError, match="'train' or 'test'"):
        load_gsm8k("dev")
    with pytest.raises(ValueError, match="'test500' or 'train'"):
        load_math("test")
