"""``arith``: generated multi-step arithmetic with exact step-level truth.

A problem is a left-to-right chain of operations, ``17+5*3-9``, solved one operation per
step; each step computes the first operation and rewrites what is left of the chain::

    17+5=22, 22*3-9
    22*3=66, 66-9
    66-9=57, #### 57

Every step has one right form, so the truth of each step of any solution is known
exactly: a step is correct when it and every step before it equal the canonical ones (the
Math-Shepherd notion: from a correct prefix the right answer is still reachable, from a
wrong one it is not, because the wrong number is carried into every later step). This lets
the whole OpenR pipeline (policy, Monte Carlo labels, PRM, search) be trained on a CPU in
minutes and every step label be checked against the truth.

The policy and PRM trained on ``arith`` read characters: :func:`arith_tokenizer` builds a
character-level tokenizer with a chat template, so they go through the same chat-prompt
code path as any hub model.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

STEP_DELIMITER = "\n"
ANSWER_MARKER = "####"
OPERATORS = ("+", "-", "*")
# the characters a solution or question may contain; "<step>" is the next-token PRM's tag
CHARACTERS = list("0123456789+-*=# \n,")
SPECIAL_TOKENS = {
    "pad_token": "<pad>",
    "bos_token": "<bos>",
    "eos_token": "<eos>",
    "unk_token": "<unk>",
}
ROLE_TOKENS = ["<|user|>", "<|assistant|>"]
STEP_TAG = "<step>"
# a minimal chat template: user turn, then the assistant turn the model writes
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}<|user|>{{ message['content'] }}\n"
    "{% elif message['role'] == 'assistant' %}<|assistant|>{{ message['content'] }}<eos>"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@dataclass(frozen=True)
class ArithDifficulty:
    """How hard generated problems are: number of operations and operand size."""

    min_steps: int = 2
    max_steps: int = 4
    max_operand: int = 20  # operands of + and - are drawn from 1..max_operand
    max_factor: int = 5  # factors of * are drawn from 2..max_factor, so numbers stay short
    operators: str = "+-*"  # which operations occur

    def __post_init__(self) -> None:
        if not self.operators or set(self.operators) - set(OPERATORS):
            raise ValueError(
                f"operators must be a non-empty subset of '+-*', got {self.operators!r}"
            )
        if not 1 <= self.min_steps <= self.max_steps:
            raise ValueError(
                f"need 1 <= min_steps <= max_steps, got {self.min_steps} and {self.max_steps}"
            )
        if self.max_operand < 1 or self.max_factor < 2:
            raise ValueError(
                f"max_operand must be >= 1 and max_factor >= 2, got {self.max_operand} and "
                f"{self.max_factor}"
            )

    def problem_space(self) -> int:
        """How many distinct chains this difficulty can generate."""
        choices = sum(
            self.max_factor - 1 if op == "*" else self.max_operand for op in set(self.operators)
        )
        return self.max_operand * sum(
            choices**steps for steps in range(self.min_steps, self.max_steps + 1)
        )


def apply(left: int, operator: str, right: int) -> int:
    if operator == "+":
        return left + right
    if operator == "-":
        return left - right
    if operator == "*":
        return left * right
    raise ValueError(f"unknown operator {operator!r}; expected one of {OPERATORS}")


def generate_expression(rng: random.Random, difficulty: ArithDifficulty) -> str:
    """One random chain such as ``17+5*3-9`` (evaluated left to right)."""
    steps = rng.randint(difficulty.min_steps, difficulty.max_steps)
    text = str(rng.randint(1, difficulty.max_operand))
    for _ in range(steps):
        operator = rng.choice(difficulty.operators)
        if operator == "*":
            operand = rng.randint(2, difficulty.max_factor)
        else:
            operand = rng.randint(1, difficulty.max_operand)
        text += f"{operator}{operand}"
    return text


def parse_expression(expression: str) -> tuple[int, list[tuple[str, int]]]:
    """``"17+5*3"`` -> ``(17, [("+", 5), ("*", 3)])``; a malformed chain is a ValueError."""
    text = expression.replace(" ", "")
    start, operations, number = None, [], ""
    operator = None
    for character in text + "+":
        if character.isdigit():
            number += character
            continue
        if character not in OPERATORS or not number:
            raise ValueError(
                f"arith expression {expression!r} is malformed at {character!r}: expected "
                "numbers joined by + - * such as 17+5*3-9"
            )
        if start is None:
            start = int(number)
        else:
            operations.append((operator, int(number)))
        operator, number = character, ""
    if not operations:
        raise ValueError(f"arith expression {expression!r} has no operation")
    return start, operations


def canonical_steps(expression: str) -> list[str]:
    """The one right solution: each step computes the first operation, then rewrites the rest.

    ``17+5*3-9`` -> ``17+5=22, 22*3-9``, ``22*3=66, 66-9``, ``66-9=57, #### 57``. The
    computation sits inside its step, so a step's truth can be checked from the step alone,
    and the rest of the chain is copied from the line above (easy for a small transformer).
    """
    value, operations = parse_expression(expression)
    steps = []
    for position, (operator, operand) in enumerate(operations):
        result = apply(value, operator, operand)
        rest = "".join(f"{op}{number}" for op, number in operations[position + 1 :])
        written = f"{result}{rest}" if rest else f"{ANSWER_MARKER} {result}"
        steps.append(f"{value}{operator}{operand}={result}, {written}")
        value = result
    return steps


def evaluate_expression(expression: str) -> int:
    value, operations = parse_expression(expression)
    for operator, operand in operations:
        value = apply(value, operator, operand)
    return value


def step_truth(expression: str, steps: list[str]) -> list[bool]:
    """Exact label of each step: True while the solution so far equals the canonical one."""
    reference = canonical_steps(expression)
    labels, on_track = [], True
    for index, step in enumerate(steps):
        on_track = on_track and index < len(reference) and step.strip() == reference[index]
        labels.append(on_track)
    return labels


def first_error(labels: list[bool]) -> int | None:
    """Index of the first wrong step, or None when every step is right."""
    for index, label in enumerate(labels):
        if not label:
            return index
    return None


def arith_tokenizer():
    """A character-level fast tokenizer (with chat template) for models trained on ``arith``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = list(SPECIAL_TOKENS.values()) + ROLE_TOKENS + [STEP_TAG]
    vocabulary = {token: index for index, token in enumerate(specials + CHARACTERS)}
    backend = Tokenizer(models.WordLevel(vocab=vocabulary, unk_token=SPECIAL_TOKENS["unk_token"]))
    # every character is its own token; special tokens are matched before the split
    backend.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        additional_special_tokens=[*ROLE_TOKENS, STEP_TAG],
        **SPECIAL_TOKENS,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.padding_side = "left"
    return tokenizer
