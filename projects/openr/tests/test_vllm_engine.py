"""The vLLM adapter against vLLM's real classes (runs where the optional vLLM is installed)."""

import pytest

from openr.engine import SamplingConfig

vllm = pytest.importorskip("vllm", reason="vLLM is an optional GPU install (see README)")


def test_sampling_params_carry_our_arguments():
    from openr.vllm_engine import sampling_params

    params = sampling_params(
        4, SamplingConfig(temperature=0.7, top_p=0.9, max_new_tokens=64, seed=3), "\n\n"
    )
    assert isinstance(params, vllm.SamplingParams)
    assert (params.n, params.temperature, params.top_p, params.max_tokens, params.seed) == (
        4,
        0.7,
        0.9,
        64,
        3,
    )
    assert params.stop == ["\n\n"]
    assert sampling_params(1, SamplingConfig(), None).stop in (None, [])


def test_request_outputs_become_completions_with_finish_reasons_and_tokens():
    from vllm.outputs import CompletionOutput, RequestOutput

    from openr.vllm_engine import to_completions

    outputs = [
        CompletionOutput(
            index=0,
            text="step one",
            token_ids=[5, 6],
            cumulative_logprob=-1.5,
            logprobs=None,
            finish_reason="stop",
            stop_reason="\n\n",
        ),
        CompletionOutput(
            index=1,
            text="#### 4",
            token_ids=[7, 8, 2],
            cumulative_logprob=-0.5,
            logprobs=None,
            finish_reason="stop",
            stop_reason=None,
        ),
        CompletionOutput(
            index=2,
            text="and so",
            token_ids=[9] * 64,
            cumulative_logprob=None,
            logprobs=None,
            finish_reason="length",
            stop_reason=None,
        ),
    ]
    request = RequestOutput(
        request_id="0",
        prompt="p",
        prompt_token_ids=[1, 2, 3],
        prompt_logprobs=None,
        outputs=outputs,
        finished=True,
        num_cached_tokens=2,
    )
    completions = to_completions(request, "\n\n")
    assert [c.finish_reason for c in completions] == ["stop", "eos", "length"]
    assert [c.generated_tokens for c in completions] == [2, 3, 64]
    assert [c.prompt_tokens for c in completions] == [3, 0, 0]
    assert completions[0].cached_tokens == 2
    assert completions[0].logprob == -1.5
