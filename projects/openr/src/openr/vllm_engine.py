"""A thin adapter from vLLM's offline API (``vllm.LLM``) to :class:`openr.engine.GenerationEngine`.

Imported only when ``policy.engine=vllm``; vLLM is not a locked dependency (it pins its
own torch, which would move the whole workspace's), so on a GPU machine install it into
the synced environment::

    uv pip install "vllm>=0.10"      # then run with `uv run --no-sync openr ...`

What we use of vLLM, all from its documented offline API: ``LLM(model, seed,
tensor_parallel_size, gpu_memory_utilization, enable_prefix_caching)``,
``SamplingParams(n, temperature, top_p, max_tokens, stop, seed)``, and from each
``RequestOutput`` its ``prompt_token_ids``, ``num_cached_tokens`` and ``outputs``
(``text``, ``token_ids``, ``finish_reason``, ``stop_reason``, ``cumulative_logprob``).
Prefix caching lets the many prompts of a search step that share a problem and earlier
steps reuse their KV cache; the cached tokens are reported in the token accounting.
"""

from __future__ import annotations

import logging

from openr.engine import Completion, SamplingConfig

log = logging.getLogger(__name__)


def sampling_params(n: int, sampling: SamplingConfig, stop: str | None):
    """vLLM ``SamplingParams`` for ``n`` samples that end at ``stop`` (removed from the text)."""
    from vllm import SamplingParams

    return SamplingParams(
        n=n,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        max_tokens=sampling.max_new_tokens,
        stop=[stop] if stop is not None else None,
        seed=sampling.seed,
    )


def to_completions(request_output, stop: str | None) -> list[Completion]:
    """Our completions from one vLLM ``RequestOutput``."""
    prompt_tokens = len(request_output.prompt_token_ids or [])
    cached = getattr(request_output, "num_cached_tokens", None) or 0
    completions = []
    for index, output in enumerate(request_output.outputs):
        if output.finish_reason == "length":
            reason = "length"
        elif stop is not None and output.stop_reason == stop:
            reason = "stop"  # vLLM already cut the stop string from the text
        else:
            reason = "eos"
        completions.append(
            Completion(
                text=output.text,
                finish_reason=reason,
                generated_tokens=len(output.token_ids),
                # the prompt is processed once per request; cached tokens likewise
                prompt_tokens=prompt_tokens if index == 0 else 0,
                cached_tokens=cached if index == 0 else 0,
                logprob=output.cumulative_logprob,
            )
        )
    return completions


class VLLMEngine:
    """Batched sampling through one ``vllm.LLM`` for all prompts of a call."""

    def __init__(
        self,
        model: str,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.8,
        enable_prefix_caching: bool = True,
        seed: int = 0,
        **llm_kwargs,
    ):
        try:
            from vllm import LLM
        except ImportError:
            raise ImportError(
                'policy.engine=vllm needs vLLM on a GPU machine: `uv pip install "vllm>=0.10"` '
                "into the synced environment, then `uv run --no-sync openr ...`; without a GPU "
                "use policy.engine=transformers"
            ) from None
        from openr.models import _source

        source, kwargs = _source(model)
        if "gguf_file" in kwargs:  # vLLM reads a GGUF checkpoint by its file path
            source = f"{source}/{kwargs.pop('gguf_file')}"
        self.llm = LLM(
            model=source,
            seed=seed,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            enable_prefix_caching=enable_prefix_caching,
            **kwargs,
            **llm_kwargs,
        )

    def generate(
        self, prompts: list[str], n: int, sampling: SamplingConfig, stop: str | None = None
    ) -> list[list[Completion]]:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        params = sampling_params(n, sampling, stop)
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [to_completions(output, stop) for output in outputs]
