"""Batched PRM scoring: same scores as one at a time, trl's format, bad step tags."""

import pytest
import torch
from transformers import LlamaForCausalLM, LlamaForTokenClassification

from openr.arith import STEP_TAG, arith_tokenizer
from openr.engine import TokenCounter
from openr.prm import (
    ExactVerifier,
    NextTokenPRM,
    OutcomeRewardModel,
    TokenClassificationPRM,
    prm_prompt,
)
from openr.sft import small_llama_config
from openr.tasks import ArithTask, GSM8KTask, Problem

TASK = ArithTask()
PROBLEMS = [Problem("a", "1+2*3", "9"), Problem("b", "4-1", "3"), Problem("c", "2*2+5", "9")]
SOLUTIONS = [
    ["1+2=3, 3*3", "3*3=9, #### 9"],
    ["4-1=3, #### 3"],
    ["2*2=4, 4+5", "4+5=8, #### 8", "#### 9"],
]


@pytest.fixture(scope="module")
def tokenizer():
    return arith_tokenizer()


@pytest.fixture(scope="module")
def classifier(tokenizer):
    torch.manual_seed(0)
    config = small_llama_config(tokenizer, 32, 2, 2, num_labels=2)
    return LlamaForTokenClassification(config).eval()


def test_batched_scores_equal_one_solution_at_a_time(tokenizer, classifier):
    scorer = TokenClassificationPRM(classifier, tokenizer, TASK, batch_size=2)
    counter = TokenCounter()
    batched = scorer.score(PROBLEMS, SOLUTIONS, counter)
    single = [scorer.score([p], [s])[0] for p, s in zip(PROBLEMS, SOLUTIONS, strict=True)]
    assert [len(s) for s in batched] == [2, 1, 3]
    for a, b in zip(batched, single, strict=True):
        assert a == pytest.approx(b, abs=1e-5)
    assert all(0 <= value <= 1 for row in batched for value in row)
    # PRM tokens: bos + prompt + every step and its separator, no padding
    expected = sum(
        1 + len(prm_prompt(TASK, p)) + sum(len(x) + 1 for x in s)
        for p, s in zip(PROBLEMS, SOLUTIONS, strict=True)
    )
    assert counter.prm_tokens == expected


def test_scores_are_read_where_trl_puts_the_step_labels(tokenizer, classifier):
    from trl.experimental.prm import PRMTrainer

    scorer = TokenClassificationPRM(classifier, tokenizer, TASK)
    ids, positions = scorer.encode(PROBLEMS[0], SOLUTIONS[0])
    row = PRMTrainer.tokenize_row(
        {"prompt": "1+2*3\n", "completions": SOLUTIONS[0], "labels": [True, False]},
        tokenizer,
        "\n",
        None,
        None,
        False,
        False,
    )
    assert ids == row["input_ids"]
    assert [row["labels"][p] for p in positions] == [1, 0]
    # each position is the separator closing a step
    assert [tokenizer.decode([ids[p]]) for p in positions] == ["\n", "\n"]


def test_a_solution_without_steps_gets_no_scores(tokenizer, classifier):
    scorer = TokenClassificationPRM(classifier, tokenizer, TASK)
    assert scorer.score([PROBLEMS[0], PROBLEMS[1]], [[], ["#### 3"]])[0] == []


def test_outcome_model_gives_every_step_the_final_score(tokenizer, classifier):
    prm = TokenClassificationPRM(classifier, tokenizer, TASK).score(PROBLEMS, SOLUTIONS)
    orm = OutcomeRewardModel(classifier, tokenizer, TASK).score(PROBLEMS, SOLUTIONS)
    for step_scores, outcome in zip(prm, orm, strict=True):
        assert outcome == [step_scores[-1]] * len(step_scores)


def test_next_token_prm_reads_plus_against_minus_at_each_tag(tokenizer):
    torch.manual_seed(0)
    model = LlamaForCausalLM(small_llama_config(tokenizer, 32, 2, 2)).eval()
    scorer = NextTokenPRM(model, tokenizer, TASK, step_tag=STEP_TAG, batch_size=2)
    assert scorer.text(PROBLEMS[1], ["4-1=3, #### 3"]) == "4-1\n4-1=3, #### 3 <step>\n"
    batched = scorer.score(PROBLEMS, SOLUTIONS)
    ids, positions = scorer.encode(PROBLEMS[2], SOLUTIONS[2])
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    plus, minus = tokenizer.convert_tokens_to_ids(["+", "-"])
    expected = torch.softmax(logits[positions][:, [plus, minus]], dim=-1)[:, 0]
    assert batched[2] == pytest.approx(expected.tolist(), abs=1e-5)
    single = [scorer.score([p], [s])[0] for p, s in zip(PROBLEMS, SOLUTIONS, strict=True)]
    for a, b in zip(batched, single, strict=True):
        assert a == pytest.approx(b, abs=1e-5)


def test_a_step_tag_outside_the_vocabulary_is_a_clear_error(tokenizer):
    model = LlamaForCausalLM(small_llama_config(tokenizer, 32, 1, 2)).eval()
    with pytest.raises(ValueError, match="step tag 'ки' is not a single token"):
        NextTokenPRM(model, tokenizer, TASK, step_tag="ки")


def test_exact_verifier_scores_arith_steps_and_other_tasks_by_outcome():
    verifier = ExactVerifier(TASK)
    assert verifier.score(PROBLEMS, SOLUTIONS) == [[1.0, 1.0], [1.0], [1.0, 0.0, 0.0]]
    gsm = GSM8KTask()
    problem = Problem("g", "q", "18")
    assert ExactVerifier(gsm).score([problem] * 2, [["a", "#### 18"], ["a", "#### 17"]]) == [
        [1.0, 1.0],
        [1.0, 0.0],
    ]


def test_a_chat_format_prm_reads_the_policy_prompt_before_the_steps(tokenizer, classifier):
    scorer = TokenClassificationPRM(classifier, tokenizer, TASK, chat_prompt=True)
    ids, positions = scorer.encode(PROBLEMS[1], SOLUTIONS[1])
    text = tokenizer.decode(ids)
    # exactly the tokens the policy read and wrote: no BOS before the chat prompt
    assert text == "<|user|>4-1\n<|assistant|>4-1=3, #### 3\n"
    prompt_ids = tokenizer.encode("<|user|>4-1\n<|assistant|>", add_special_tokens=False)
    assert ids[: len(prompt_ids)] == prompt_ids  # as the engine tokenized the prompt
    assert tokenizer.bos_token == "<bos>"  # the caller's tokenizer is left as it was
    assert len(positions) == 1
    plain = TokenClassificationPRM(classifier, tokenizer, TASK).encode(PROBLEMS[1], SOLUTIONS[1])
    assert tokenizer.decode(plain[0]) == "<bos>4-1\n4-1=3, #### 3\n"
