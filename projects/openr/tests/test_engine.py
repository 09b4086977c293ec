"""The transformers engine: padding-independent batches, stops, token accounting, seeds."""

import pytest
import torch
from transformers import LlamaForCausalLM

from openr.arith import arith_tokenizer
from openr.engine import SamplingConfig, StopAtText, TokenCounter, TransformersEngine, cut_at_stop
from openr.sft import small_llama_config

PROMPTS = ["<|user|>1+2\n<|assistant|>", "<|user|>12+7-3+9\n<|assistant|>"]


@pytest.fixture(scope="module")
def engine():
    tokenizer = arith_tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(small_llama_config(tokenizer, 32, 2, 2)).eval()
    return TransformersEngine(model, tokenizer, batch_size=4)


def test_greedy_batches_with_left_padding_equal_single_prompts(engine):
    greedy = SamplingConfig(temperature=0.0, max_new_tokens=12)
    batched = engine.generate(PROMPTS, 1, greedy)
    single = [engine.generate([prompt], 1, greedy)[0] for prompt in PROMPTS]
    assert [c[0].text for c in batched] == [c[0].text for c in single]
    assert [c[0].generated_tokens for c in batched] == [c[0].generated_tokens for c in single]


def test_token_accounting_counts_prompt_and_generated_tokens(engine):
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=10, seed=3)
    groups = engine.generate(PROMPTS, 3, sampling)
    assert [len(group) for group in groups] == [3, 3]
    assert groups[0][0].prompt_tokens == len("1+2\n") + 2  # two role tokens
    for group in groups:
        for completion in group:
            assert 1 <= completion.generated_tokens <= 10
            if completion.finish_reason == "length":
                assert completion.generated_tokens == 10
    counter = TokenCounter()
    counter.add_completions(groups)
    assert counter.generated_tokens == sum(c.generated_tokens for g in groups for c in g)
    assert counter.engine_calls == 1


def test_same_seed_same_samples(engine):
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=8, seed=11)
    first = engine.generate(PROMPTS, 2, sampling)
    again = engine.generate(PROMPTS, 2, sampling)
    assert [[c.text for c in g] for g in first] == [[c.text for c in g] for g in again]


def test_stopping_at_the_delimiter_leaves_it_out_of_the_text(engine):
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=16, seed=5)
    groups = engine.generate(PROMPTS, 8, sampling, stop="\n")
    reasons = set()
    for group in groups:
        for completion in group:
            assert "\n" not in completion.text
            reasons.add(completion.finish_reason)
            if completion.finish_reason == "stop":
                # one token per character, the delimiter included (special tokens that an
                # untrained model may emit are not text)
                assert completion.generated_tokens >= len(completion.text) + 1
    assert reasons <= {"stop", "eos", "length"}


def test_stop_criterion_marks_rows_whose_new_text_holds_the_stop():
    tokenizer = arith_tokenizer()
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    rows = torch.tensor([encode("9\n12+3"), encode("9\n1+2\n")])
    criterion = StopAtText(tokenizer, "\n", prompt_width=2)
    assert criterion(rows, None).tolist() == [False, True]
    assert cut_at_stop("a+b\nc", "\n") == ("a+b", True)
    assert cut_at_stop("a+b", "\n") == ("a+b", False)


def test_bad_sampling_values_are_rejected():
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        SamplingConfig(temperature=-1)
    with pytest.raises(ValueError, match="top_p must be in"):
        SamplingConfig(top_p=0)
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
        SamplingConfig(max_new_tokens=0)
