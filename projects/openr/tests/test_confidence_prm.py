"""The confidence PRM: its per-step confidence features, its frozen policy, save and load."""

import pytest
import torch

from openr.arith import ArithDifficulty
from openr.confidence_prm import (
    CONFIDENCE_FEATURES,
    ConfidencePRM,
    boundary_token_ids,
    step_confidence,
)
from openr.tasks import ArithTask

TASK = ArithTask(ArithDifficulty(2, 2, 5, 2, "+-"), seed=0)


def _log_probs_writing(ids, written, best):
    """(1, len, 4) next-token scores: row t-1 gives ids[t] the score written[t], best the max."""
    scores = torch.full((1, len(ids), 4), -10.0)
    for t in range(1, len(ids)):
        other = (ids[t] + 1) % 4
        scores[0, t - 1, ids[t]] = written[t]
        scores[0, t - 1, other] = best[t]
    return scores


def test_step_confidence_matches_a_hand_computation():
    # prompt token 0, solution start 2, step "1 0" ended by 3, then step "1"
    ids = [0, 2, 1, 0, 3, 1]
    written = [0.0, -1.0, -2.0, -3.0, -4.0, -0.5]
    best = [0.0, -0.5, -9.0, -1.0, -9.0, -9.0]  # the policy's first choice where it differs
    log_probs = _log_probs_writing(ids, written, best)
    features = step_confidence(log_probs, torch.tensor([ids]), [3], [2])
    assert features.shape == (1, 6, CONFIDENCE_FEATURES)
    expected = [
        # step min, step mean, step min gap, solution min, solution min gap
        [0.0, 0.0, 0.0, 0.0, 0.0],  # prompt: nothing judged yet
        [0.0, 0.0, 0.0, 0.0, 0.0],  # the solution-start token is not judged
        [-2.0, -2.0, 0.0, -2.0, 0.0],  # first solution token, written as the argmax
        [-3.0, -2.5, -2.0, -3.0, -2.0],  # written at -3 where the argmax had -1
        [-3.0, -2.5, -2.0, -3.0, -2.0],  # the separator reports the step it closes
        [-0.5, -0.5, 0.0, -3.0, -2.0],  # a new step restarts; the solution keeps its slip
    ]
    torch.testing.assert_close(features[0], torch.tensor(expected))


def test_step_confidence_keeps_rows_of_a_batch_apart():
    ids = [0, 2, 1, 0, 3, 1]
    one = _log_probs_writing(ids, [0.0, -1.0, -2.0, -3.0, -4.0, -0.5], [0.0] * 6)
    two = _log_probs_writing(ids, [0.0, -1.0, -0.1, -0.2, -4.0, -7.0], [0.0] * 6)
    both = step_confidence(torch.cat([one, two]), torch.tensor([ids, ids]), [3], [2])
    torch.testing.assert_close(both[0], step_confidence(one, torch.tensor([ids]), [3], [2])[0])
    torch.testing.assert_close(both[1], step_confidence(two, torch.tensor([ids]), [3], [2])[0])


@pytest.fixture(scope="module")
def policy_and_tokenizer(tmp_path_factory):
    from openr.models import load_model, load_tokenizer
    from openr.sft import train_policy

    folder = train_policy(
        TASK,
        tmp_path_factory.mktemp("sft"),
        train_problems=64,
        epochs=1,
        batch_size=32,
        learning_rate=3e-3,
        hidden_size=32,
        layers=1,
        heads=2,
    )
    return load_model(str(folder)), load_tokenizer(str(folder)), folder


def test_only_the_head_trains_and_the_policy_weights_are_copied(policy_and_tokenizer):
    policy, tokenizer, _ = policy_and_tokenizer
    prm = ConfidencePRM.from_policy(policy, *boundary_token_ids(tokenizer, "\n", chat=True))
    trainable = {name for name, p in prm.named_parameters() if p.requires_grad}
    assert trainable == {name for name, _ in prm.named_parameters() if name.startswith("score.")}
    torch.testing.assert_close(
        prm.model.embed_tokens.weight, policy.model.embed_tokens.weight, rtol=0, atol=0
    )
    torch.testing.assert_close(
        prm.lm_head.weight, policy.get_output_embeddings().weight, rtol=0, atol=0
    )

    ids = tokenizer("<|user|>1+2\n<|assistant|>1+2=3\n", return_tensors="pt").input_ids
    labels = torch.full_like(ids, -100)
    labels[0, -1] = 1
    out = prm(input_ids=ids, labels=labels)
    assert out.logits.shape == (1, ids.shape[1], 2)
    out.loss.backward()
    assert all(p.grad is None for n, p in prm.named_parameters() if not n.startswith("score."))
    assert prm.score[0].weight.grad.abs().sum() > 0


def test_a_saved_confidence_prm_loads_through_the_auto_class(policy_and_tokenizer, tmp_path):
    from transformers import AutoModelForTokenClassification

    policy, tokenizer, _ = policy_and_tokenizer
    prm = ConfidencePRM.from_policy(policy, *boundary_token_ids(tokenizer, "\n", chat=True))
    prm.save_pretrained(tmp_path)
    loaded = AutoModelForTokenClassification.from_pretrained(tmp_path)
    assert isinstance(loaded, ConfidencePRM)
    assert loaded.config.step_reset_ids == prm.config.step_reset_ids
    ids = tokenizer("<|user|>4-1\n<|assistant|>4-1=3\n", return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, prm(input_ids=ids).logits)


def test_boundaries_are_the_delimiter_and_the_end_of_the_chat_prompt(policy_and_tokenizer):
    _, tokenizer, _ = policy_and_tokenizer
    steps, starts = boundary_token_ids(tokenizer, "\n", chat=True)
    assert steps == [tokenizer.encode("\n", add_special_tokens=False)[-1]]
    assert tokenizer.convert_ids_to_tokens(starts) == ["<|assistant|>"]
    assert boundary_token_ids(tokenizer, "\n", chat=False) == (steps, steps)


def test_confidence_prm_trains_through_trl_and_scores_steps(
    policy_and_tokenizer, tmp_path, right_and_wrong_rows
):

    from openr.models import load_model, load_tokenizer
    from openr.prm import TokenClassificationPRM
    from openr.train_prm import train_prm

    _, _, policy_folder = policy_and_tokenizer
    labels = right_and_wrong_rows(TASK, tmp_path / "labels.jsonl", 16)
    folder = train_prm(
        TASK,
        labels,
        tmp_path,
        init=str(policy_folder),
        epochs=1,
        batch_size=16,
        prompt_format="chat",
        architecture="confidence",
    )
    model = load_model(str(folder), "token-classification")
    assert isinstance(model, ConfidencePRM)
    scorer = TokenClassificationPRM(model, load_tokenizer(str(folder)), TASK, chat_prompt=True)
    problems = TASK.problems("test", 2)
    scores = scorer.score(
        problems, [TASK.split_steps(TASK.reference_solution(p)) for p in problems]
    )
    assert [len(s) for s in scores] == [2, 2]
    assert all(0.0 <= s <= 1.0 for row in scores for s in row)


def test_confidence_prm_needs_a_policy_to_read():
    from openr.config import TrainPRMConfig

    with pytest.raises(ValueError, match="needs init=policy"):
        TrainPRMConfig(architecture="confidence", init="scratch")
    with pytest.raises(ValueError, match="token-classification or confidence"):
        TrainPRMConfig(architecture="value-head")
