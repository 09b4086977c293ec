"""Generation engines behind one interface: transformers on any device, vLLM on GPUs.

Search calls :meth:`GenerationEngine.generate` once per step with every open prefix of
every problem, so batching across problems and beams happens in the engine. A call asks
for ``n`` samples of each prompt, optionally stopping at the task's step delimiter, and
returns, for each sample, the text up to (not including) the delimiter, why it stopped,
and how many tokens it cost. :class:`TokenCounter` sums those costs for the compute axis
of every result.

OpenR serves its policy through a FastChat/vLLM worker over HTTP; here the engine is a
plain object in the same process: :class:`TransformersEngine` for CPUs and tests, and
:class:`openr.vllm_engine.VLLMEngine` (imported only when chosen) for GPUs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch

log = logging.getLogger(__name__)

FinishReason = Literal["stop", "eos", "length"]


@dataclass
class Completion:
    """One sampled continuation of a prompt.

    ``finish_reason`` is ``stop`` when the step delimiter ended it (more steps follow),
    ``eos`` when the model ended the solution, ``length`` when ``max_new_tokens`` ran out.
    """

    text: str
    finish_reason: FinishReason
    generated_tokens: int
    prompt_tokens: int
    cached_tokens: int = 0
    logprob: float | None = None  # sum of the sampled tokens' log-probabilities, if known


@dataclass
class SamplingConfig:
    """How to sample; the defaults follow OpenR's evaluation (temperature 0.7, top-p 1.0)."""

    temperature: float = 0.7  # OpenR reason/evaluation/evaluate.py default
    top_p: float = 1.0
    max_new_tokens: int = 256  # per call: one step when stopping at the delimiter
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


@dataclass
class TokenCounter:
    """Compute spent so far: policy tokens (prompt, generated, cached), PRM tokens, answers."""

    prompt_tokens: int = 0
    generated_tokens: int = 0
    cached_tokens: int = 0
    prm_tokens: int = 0
    engine_calls: int = 0
    answers: int = 0  # complete solutions sampled (the paper's "generation budget" axis)
    truncated: int = 0  # samples cut by the token or step cap
    extra: dict[str, int] = field(default_factory=dict)

    def add_completions(self, completions: list[list[Completion]]) -> None:
        self.engine_calls += 1
        for group in completions:
            for completion in group:
                self.prompt_tokens += completion.prompt_tokens
                self.generated_tokens += completion.generated_tokens
                self.cached_tokens += completion.cached_tokens

    def as_dict(self) -> dict[str, int]:
        return {
            "policy_prompt_tokens": self.prompt_tokens,
            "policy_generated_tokens": self.generated_tokens,
            "policy_cached_tokens": self.cached_tokens,
            "prm_tokens": self.prm_tokens,
            "engine_calls": self.engine_calls,
            "answers": self.answers,
            "truncated": self.truncated,
        }


class GenerationEngine(Protocol):
    """Samples continuations of many prompts in one call."""

    def generate(
        self,
        prompts: list[str],
        n: int,
        sampling: SamplingConfig,
        stop: str | None = None,
    ) -> list[list[Completion]]:
        """``n`` samples for each prompt (outer list follows ``prompts``).

        With ``stop`` set, each sample ends at the first occurrence of ``stop``, which is
        removed from its text; its finish reason is then ``stop``.
        """
        ...


class StopAtText:
    """Per-row stopping criterion: a row is done once its new text contains ``stop``.

    (transformers' ``stop_strings`` needs a tokenizer whose vocabulary it can index, which
    character-level tokenizers are not; decoding the last few tokens works for any.)
    """

    def __init__(self, tokenizer, stop: str, prompt_width: int):
        self.tokenizer = tokenizer
        self.stop = stop
        self.prompt_width = prompt_width
        # the stop string spans at most this many of the newest tokens (each token has text)
        self.window = len(stop) + 1

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        tail = input_ids[:, max(self.prompt_width, input_ids.shape[1] - self.window) :]
        done = [self.stop in text for text in self.tokenizer.batch_decode(tail.tolist())]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def cut_at_stop(text: str, stop: str | None) -> tuple[str, bool]:
    """``text`` up to the first ``stop`` and whether it was found."""
    if stop is None or stop not in text:
        return text, False
    return text[: text.index(stop)], True


class TransformersEngine:
    """Batched sampling with ``model.generate`` (left padding, per-row stop strings).

    Prompts of a call are sampled together in chunks of ``batch_size`` sequences; a row
    that reached the delimiter or EOS is padded while the others go on, and its token count
    is what it generated up to its own stop.
    """

    def __init__(self, model, tokenizer, batch_size: int = 64):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    @torch.inference_mode()
    def generate(
        self,
        prompts: list[str],
        n: int,
        sampling: SamplingConfig,
        stop: str | None = None,
    ) -> list[list[Completion]]:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        rows = [prompt for prompt in prompts for _ in range(n)]
        flat: list[Completion] = []
        # one seed per call keeps a run reproducible whatever the batch layout before it
        torch.manual_seed(sampling.seed)
        for start in range(0, len(rows), self.batch_size):
            flat += self._generate_chunk(rows[start : start + self.batch_size], sampling, stop)
        return [flat[index * n : (index + 1) * n] for index in range(len(prompts))]

    # Limitation: no prefix cache across calls: every step re-encodes each prompt (problem
    # and earlier steps), which vLLM's prefix caching avoids; cached_tokens stays 0 here.
    def _generate_chunk(
        self, prompts: list[str], sampling: SamplingConfig, stop: str | None
    ) -> list[Completion]:
        tokenizer = self.tokenizer
        tokenizer.padding_side = "left"
        batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        batch = batch.to(self.device)
        prompt_lengths = batch["attention_mask"].sum(dim=1).tolist()
        kwargs = {
            "max_new_tokens": sampling.max_new_tokens,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        }
        if tokenizer.pad_token_id != tokenizer.eos_token_id:
            # padding marks rows that have stopped: the policy itself must never emit it
            kwargs["suppress_tokens"] = [tokenizer.pad_token_id]
        if sampling.temperature > 0:
            kwargs |= {"do_sample": True, "temperature": sampling.temperature}
            kwargs |= {"top_p": sampling.top_p, "top_k": 0}
        else:
            kwargs |= {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        if stop is not None:
            width = batch["input_ids"].shape[1]
            kwargs["stopping_criteria"] = [StopAtText(tokenizer, stop, width)]
        output = self.model.generate(**batch, **kwargs)
        new_tokens = output[:, batch["input_ids"].shape[1] :].tolist()

        completions = []
        for row, prompt_length in zip(new_tokens, prompt_lengths, strict=True):
            # the row's own tokens: up to and including EOS; rows that stopped early (at the
            # delimiter or EOS) are padded while the rest of the batch goes on
            ended_by_eos, kept = False, []
            for token in row:
                if token == tokenizer.eos_token_id:
                    ended_by_eos = True
                    kept.append(token)
                    break
                if token == tokenizer.pad_token_id:
                    break
                kept.append(token)
            text, stopped = cut_at_stop(tokenizer.decode(kept, skip_special_tokens=True), stop)
            if stopped:
                reason: FinishReason = "stop"
            elif ended_by_eos or len(kept) < sampling.max_new_tokens:
                reason = "eos"
            else:
                reason = "length"
            completions.append(Completion(text, reason, len(kept), prompt_length))
        return completions
