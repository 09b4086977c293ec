"""SFT and PRM training through trl on arith, at a size a test can afford."""

import json

import pytest

from openr.arith import ArithDifficulty
from openr.models import chat_prompt, load_model, load_tokenizer
from openr.prm import TokenClassificationPRM
from openr.sft import train_policy
from openr.tasks import ArithTask
from openr.train_prm import stepwise_dataset, train_prm

TASK = ArithTask(ArithDifficulty(2, 2, 5, 2, "+-"), seed=0)


def _losses(path):
    return [entry["loss"] for entry in json.loads(path.read_text()) if "loss" in entry]


@pytest.fixture(scope="module")
def policy_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sft")
    return train_policy(
        TASK,
        folder,
        train_problems=256,
        epochs=2,
        batch_size=32,
        learning_rate=3e-3,
        hidden_size=32,
        layers=2,
        heads=2,
    )


def test_sft_trains_a_policy_that_loads_with_its_chat_template(policy_folder):
    tokenizer = load_tokenizer(str(policy_folder), require_chat_template=True)
    model = load_model(str(policy_folder))
    problem = TASK.problems("test", 1)[0]
    assert chat_prompt(tokenizer, TASK, problem) == f"<|user|>{problem.question}\n<|assistant|>"
    assert model.config.vocab_size == len(tokenizer)
    losses = _losses(policy_folder.parent / "sft_log.json")
    assert losses[-1] < losses[0]


def test_prm_trains_through_trl_on_stepwise_rows_and_scores_steps(
    policy_folder, tmp_path, right_and_wrong_rows
):
    labels = right_and_wrong_rows(TASK, tmp_path / "labels.jsonl", 40)
    folder = train_prm(
        TASK, labels, tmp_path, init=str(policy_folder), epochs=2, batch_size=16, learning_rate=1e-3
    )
    model = load_model(str(folder), "token-classification")
    scorer = TokenClassificationPRM(model, load_tokenizer(str(folder)), TASK)
    problems = TASK.problems("test", 2)
    scores = scorer.score(
        problems, [TASK.split_steps(TASK.reference_solution(p)) for p in problems]
    )
    assert [len(s) for s in scores] == [2, 2]
    assert _losses(tmp_path / "prm_log.json")


def test_stepwise_dataset_balances_flawed_and_clean_solutions_and_builds_orm_labels():
    rows = [
        {
            "prompt": "q\n",
            "completions": ["a", "b"],
            "labels": [True, True],
            "soft_labels": [1.0, 0.75],
            "outcome": True,
        }
    ] * 3 + [
        {
            "prompt": "q\n",
            "completions": ["a", "c"],
            "labels": [True, False],
            "soft_labels": [0.5, 0.25],
            "outcome": False,
        }
    ]
    dataset = stepwise_dataset(rows)
    assert len(dataset) == 6
    assert sum(not all(labels) for labels in dataset["labels"]) == 3
    soft = stepwise_dataset(rows, "soft")
    assert sorted(map(tuple, soft["labels"]))[0] == (True, False)
    orm = stepwise_dataset(rows, outcome_only=True)
    assert sorted(map(tuple, orm["labels"])) == [(False, False)] * 3 + [(True, True)] * 3
    with pytest.raises(ValueError, match="hard or soft"):
        stepwise_dataset(rows, "fuzzy")
