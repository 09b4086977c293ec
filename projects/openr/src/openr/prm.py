"""Reward models that score every step of many solutions in one batch.

- :class:`TokenClassificationPRM`: the model trl's ``PRMTrainer`` trains, a token
  classifier whose "correct" probability at the last token of each step (the step
  separator) is that step's score. Inputs are built with the trainer's own
  ``tokenize_row``, so scoring reads exactly the format training wrote.
- :class:`NextTokenPRM`: a causal LM that, after a step tag (Math-Shepherd's ``ки``),
  predicts a "+" or "-" token; the step's score is P(+) / (P(+) + P(-)) at the tag
  (Math-Shepherd, Wang et al. 2024; OpenR's Math-psa).
- :class:`OutcomeRewardModel`: a token classifier trained on the last step only (trl's
  ``train_on_last_step_only``): one score for a solution.
- :class:`ExactVerifier`: the truth, where the task knows it (every step of ``arith``, the
  final answer of GSM8K and MATH): the ceiling any learned scorer is measured against.

OpenR scores one string per HTTP request; here a call takes every (problem, steps) pair of
a search step, sorts them by length and runs padded batches of ``batch_size``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

import torch

from openr.engine import TokenCounter
from openr.tasks import Problem, Task

log = logging.getLogger(__name__)


class StepScorer(Protocol):
    """Scores each step of each solution in [0, 1]."""

    def score(
        self,
        problems: Sequence[Problem],
        solutions: Sequence[list[str]],
        counter: TokenCounter | None = None,
    ) -> list[list[float]]: ...


PRM_SETTINGS_FILE = "openr_prm.json"  # how a PRM saved by openr expects its prompt


def without_bos(tokenizer):
    """A copy of ``tokenizer`` that trl's PRM tokenization does not prefix with a BOS token.

    trl's ``PRMTrainer.tokenize_row`` puts the tokenizer's BOS before every prompt. A
    chat-format PRM reads the policy's chat prompt, which the engine tokenizes without
    special tokens: with the extra BOS, a PRM initialized from the policy would read every
    solution behind a token the policy never saw (for the small arith policy that alone
    turns its greedy ``12-7=5`` into ``12-7=4``). Without it, the PRM reads exactly the
    tokens the policy read and wrote.
    """
    import copy

    if tokenizer.bos_token_id is None:
        return tokenizer
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.bos_token = None
    return tokenizer


def prm_prompt(task: Task, problem: Problem, tokenizer=None) -> str:
    """The text a PRM reads before the steps.

    By default the question and one step delimiter (trl's and Math-Shepherd's format).
    With a ``tokenizer``, its chat prompt instead: a PRM initialized from a chat policy then
    reads the solution exactly as the policy wrote it.
    """
    if tokenizer is not None:
        from openr.models import chat_prompt

        return chat_prompt(tokenizer, task, problem)
    return problem.question + task.step_delimiter


def _order_by_length(lengths: Sequence[int]) -> list[int]:
    # longest first: similar lengths share a batch, so little padding is computed
    return sorted(range(len(lengths)), key=lambda index: -lengths[index])


class _BatchedScorer:
    """Shared batching: encode each solution, run sorted padded batches, gather positions."""

    def __init__(self, model, tokenizer, task: Task, batch_size: int = 64):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.task = task
        self.batch_size = batch_size
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.max_length = getattr(model.config, "max_position_embeddings", None) or 4096

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode(self, problem: Problem, steps: list[str]) -> tuple[list[int], list[int]]:
        """Token ids of one solution and the position whose output scores each step."""
        raise NotImplementedError

    def step_probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """(batch, length, ...) model output -> (batch, length) probability a step is right."""
        raise NotImplementedError

    def forward_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    @torch.inference_mode()
    def score(
        self,
        problems: Sequence[Problem],
        solutions: Sequence[list[str]],
        counter: TokenCounter | None = None,
    ) -> list[list[float]]:
        if len(problems) != len(solutions):
            raise ValueError(f"got {len(problems)} problems but {len(solutions)} solutions")
        encoded = [self.encode(p, list(s)) for p, s in zip(problems, solutions, strict=True)]
        # tokens each solution costs to score (no padding), for per-solution accounting
        self.last_token_counts = [len(ids) for ids, _ in encoded]
        scores: list[list[float]] = [[] for _ in encoded]
        order = _order_by_length([len(ids) for ids, _ in encoded])
        for start in range(0, len(order), self.batch_size):
            chunk = [index for index in order[start : start + self.batch_size] if encoded[index][1]]
            if not chunk:
                continue
            width = max(len(encoded[index][0]) for index in chunk)
            input_ids = torch.full((len(chunk), width), self.tokenizer.pad_token_id)
            attention_mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, index in enumerate(chunk):
                ids = encoded[index][0]
                input_ids[row, : len(ids)] = torch.tensor(ids)
                attention_mask[row, : len(ids)] = 1
            # right padding: real tokens never attend to padding under the causal mask
            logits = self.forward_logits(input_ids.to(self.device), attention_mask.to(self.device))
            probabilities = self.step_probabilities(logits.float()).cpu()  # (batch, length)
            for row, index in enumerate(chunk):
                scores[index] = probabilities[row, encoded[index][1]].tolist()
            if counter is not None:
                counter.prm_tokens += int(attention_mask.sum())
        return scores

    def _truncate(self, ids: list[int], positions: list[int], steps: int):
        """Keep what fits the model; steps past the end reuse the last score that fits."""
        if len(ids) <= self.max_length:
            return ids, positions
        kept = [position for position in positions if position < self.max_length]
        if not kept:
            raise ValueError(
                f"the prompt alone is longer than the scorer's {self.max_length} positions"
            )
        log.warning(
            "a %d-token solution was cut to the scorer's %d positions; its last %d "
            "step(s) repeat the score of the last step that fits",
            len(ids),
            self.max_length,
            steps - len(kept),
        )
        return ids[: self.max_length], kept + [kept[-1]] * (steps - len(kept))


class TokenClassificationPRM(_BatchedScorer):
    """A token-classification PRM as trl's ``PRMTrainer`` trains it (label 1 = correct)."""

    def __init__(
        self, model, tokenizer, task: Task, batch_size: int = 64, chat_prompt: bool = False
    ):
        super().__init__(model, tokenizer, task, batch_size)
        self.chat_prompt = chat_prompt
        # what trl's tokenize_row reads with: no BOS before a chat prompt (see without_bos)
        self.row_tokenizer = without_bos(tokenizer) if chat_prompt else tokenizer
        if getattr(model.config, "num_labels", 2) != 2:
            raise ValueError(
                f"a token-classification PRM needs 2 labels (wrong, right), the model has "
                f"{model.config.num_labels}"
            )
        self.step_separator = task.step_delimiter

    def encode(self, problem: Problem, steps: list[str]) -> tuple[list[int], list[int]]:
        from trl.experimental.prm import PRMTrainer

        if not steps:
            return [], []
        row = PRMTrainer.tokenize_row(
            {
                "prompt": prm_prompt(
                    self.task, problem, self.tokenizer if self.chat_prompt else None
                ),
                "completions": steps,
                "labels": [False] * len(steps),
            },
            tokenizer=self.row_tokenizer,
            step_separator=self.step_separator,
            max_length=None,
            max_completion_length=None,
            train_on_last_step_only=False,
            is_eval=True,
        )
        positions = [index for index, label in enumerate(row["labels"]) if label != -100]
        return self._truncate(row["input_ids"], positions, len(steps))

    def step_probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(dim=-1)[..., 1]


class OutcomeRewardModel(TokenClassificationPRM):
    """An ORM: trained on the last step only; its one score stands for every step.

    Every step of a solution gets the score read at its last step, so ``min`` and
    ``last`` aggregation both give the outcome score.
    """

    @torch.inference_mode()
    def score(self, problems, solutions, counter=None) -> list[list[float]]:
        step_scores = super().score(problems, solutions, counter)
        return [[scores[-1]] * len(scores) if scores else [] for scores in step_scores]


class NextTokenPRM(_BatchedScorer):
    """Math-Shepherd-style PRM: P("+") against P("-") right after each step tag."""

    def __init__(
        self,
        model,
        tokenizer,
        task: Task,
        step_tag: str = "ки",
        good_token: str = "+",
        bad_token: str = "-",
        batch_size: int = 64,
    ):
        super().__init__(model, tokenizer, task, batch_size)
        self.step_tag = step_tag
        self.step_tag_id = self._single_token(step_tag, "step tag")
        self.candidate_ids = [
            self._single_token(good_token, "good token"),
            self._single_token(bad_token, "bad token"),
        ]

    def _single_token(self, text: str, what: str) -> int:
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if len(ids) != 1 or ids[0] == self.tokenizer.unk_token_id:
            raise ValueError(
                f"the PRM's {what} {text!r} is not a single token of its vocabulary (it encodes "
                f"to {ids}); set scorer.step_tag / good_token / bad_token to tokens the model "
                "was trained with"
            )
        return ids[0]

    def text(self, problem: Problem, steps: list[str]) -> str:
        """The question, then each step closed by the tag.

        Math-Shepherd writes ``step ки\n``; a whitespace tag (Math-psa's ``\n\n\n\n\n``)
        stands alone after the step, so the tokenizer cannot merge it with a delimiter.
        """
        delimiter = self.task.step_delimiter
        closing = self.step_tag if not self.step_tag.strip() else f" {self.step_tag}{delimiter}"
        return prm_prompt(self.task, problem) + "".join(step + closing for step in steps)

    def encode(self, problem: Problem, steps: list[str]) -> tuple[list[int], list[int]]:
        if not steps:
            return [], []
        ids = self.tokenizer(self.text(problem, steps), add_special_tokens=True)["input_ids"]
        positions = [index for index, token in enumerate(ids) if token == self.step_tag_id]
        if len(positions) != len(steps):
            raise ValueError(
                f"found {len(positions)} step tags for {len(steps)} steps: a step contains the "
                f"tag {self.step_tag!r} itself, or the tokenizer merges it with its neighbours"
            )
        return self._truncate(ids, positions, len(steps))

    def step_probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits[..., self.candidate_ids].softmax(dim=-1)[..., 0]


class ExactVerifier:
    """Scores from the truth: each step of ``arith``; the final answer elsewhere.

    For tasks without step truth, steps before the last score 1 (unknown, not penalised)
    and the last step scores whether the solution's answer is right (0 if it has none).
    """

    def __init__(self, task: Task):
        self.task = task
        self.last_token_counts: list[int] = []

    def score(self, problems, solutions, counter=None) -> list[list[float]]:
        scores = []
        self.last_token_counts = [0] * len(solutions)
        for problem, steps in zip(problems, solutions, strict=True):
            truth = self.task.step_truth(problem, list(steps))
            if truth is not None:
                scores.append([float(label) for label in truth])
                continue
            answer = self.task.extract_answer(self.task.join_steps(list(steps)))
            final = float(answer is not None and self.task.is_correct(answer, problem))
            scores.append([1.0] * (len(steps) - 1) + [final] if steps else [])
        return scores


def load_scorer(
    kind: str,
    model_name: str,
    task: Task,
    device: torch.device,
    batch_size: int = 64,
    step_tag: str = "ки",
    good_token: str = "+",
    bad_token: str = "-",
) -> StepScorer | None:
    """The scorer a config names (``none``: no scorer, for majority vote alone)."""
    from openr.models import load_model, load_tokenizer

    if kind == "none":
        return None
    if kind == "verifier":
        return ExactVerifier(task)
    tokenizer = load_tokenizer(model_name)
    if kind in ("prm", "orm"):
        import json
        from pathlib import Path

        model = load_model(model_name, "token-classification", device)
        settings_file = Path(model_name) / PRM_SETTINGS_FILE
        settings = json.loads(settings_file.read_text()) if settings_file.is_file() else {}
        cls = TokenClassificationPRM if kind == "prm" else OutcomeRewardModel
        chat = settings.get("prompt_format") == "chat"
        return cls(model, tokenizer, task, batch_size, chat_prompt=chat)
    if kind == "next-token-prm":
        model = load_model(model_name, "causal-lm", device)
        return NextTokenPRM(model, tokenizer, task, step_tag, good_token, bad_token, batch_size)
    raise ValueError(
        f"unknown scorer kind {kind!r}; choose prm, next-token-prm, orm, verifier or none"
    )
