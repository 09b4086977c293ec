"""Reasoning tasks behind one interface: problems, prompts, step splitting, answers, grading.

OpenR's environments (``envs/MATH``, ``envs/gsm8k``) each define how a question becomes a
prompt, where one step ends and how a final answer is checked. Here a :class:`Task` does
the same for

- ``arith``: generated arithmetic chains with exact step truth (:mod:`openr.arith`);
- ``gsm8k``: GSM8K word problems (Cobbe et al., 2021);
- ``math``: MATH500 (Lightman et al., 2023) and the MATH training problems with answers.

GSM8K and MATH come from ``shared.data`` and are graded with math-verify through
``shared.metrics``, so ``\\frac{1}{2}``, ``0.5`` and ``1/2`` are one answer.
"""

from __future__ import annotations

import json
import logging
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openr import arith
from shared.metrics.math_answers import answers_match, extract_answer

log = logging.getLogger(__name__)

# OpenR's MATH and GSM8K environments separate steps with a blank line
PARAGRAPH_DELIMITER = "\n\n"
MATH_INSTRUCTION = (
    "Solve the problem step by step, separating the steps with a blank line, and put the "
    "final answer in \\boxed{}."
)


@dataclass(frozen=True)
class Problem:
    """One problem of a task: its id, question text and reference final answer."""

    id: str
    question: str
    answer: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


class Task:
    """What search, labelling and evaluation need to know about a reasoning task."""

    name: str = "task"
    step_delimiter: str = PARAGRAPH_DELIMITER
    instruction: str = ""

    def problems(self, split: str, limit: int | None = None) -> list[Problem]:
        raise NotImplementedError

    def user_message(self, problem: Problem) -> str:
        """The user turn of the chat prompt for ``problem``."""
        return f"{problem.question}\n\n{self.instruction}" if self.instruction else problem.question

    def split_steps(self, solution: str) -> list[str]:
        """A solution text as its steps (empty steps dropped, each stripped of the delimiter)."""
        return [step.strip() for step in solution.split(self.step_delimiter) if step.strip()]

    def join_steps(self, steps: list[str]) -> str:
        return self.step_delimiter.join(steps)

    def extract_answer(self, solution: str) -> str | None:
        """The final answer written in a solution, or None when it holds none."""
        return extract_answer(solution)

    def answer_key(self, answer: str | None) -> str | None:
        """A normal form under which equal answers group together for voting."""
        if answer is None:
            return None
        key = answer.strip().strip("$").replace(" ", "").replace(",", "")
        key = key.replace("\\dfrac", "\\frac").replace("\\left", "").replace("\\right", "")
        if re.fullmatch(r"-?\d+\.0+", key):
            key = key.split(".")[0]
        return key

    def is_correct(self, answer: str | None, problem: Problem) -> bool:
        """Whether a final answer equals the reference answer (math-verify)."""
        return answers_match(answer, problem.answer)

    def step_truth(self, problem: Problem, steps: list[str]) -> list[bool] | None:
        """Exact correctness of each step where the task knows it (arith), else None."""
        return None

    def reference_solution(self, problem: Problem) -> str | None:
        """A worked solution in this task's step format (for SFT), where the data has one."""
        return None


class ArithTask(Task):
    """Generated arithmetic chains; problems are reproducible from ``seed`` and ``split``."""

    name = "arith"
    step_delimiter = arith.STEP_DELIMITER

    def __init__(self, difficulty: arith.ArithDifficulty | None = None, seed: int = 0):
        self.difficulty = difficulty or arith.ArithDifficulty()
        self.seed = seed

    def problems(self, split: str = "test", limit: int | None = None) -> list[Problem]:
        offsets = {"train": 0, "validation": 1, "test": 2}
        if split not in offsets:
            raise ValueError(f"arith split must be one of {sorted(offsets)}, got {split!r}")
        count = limit if limit is not None else 1000
        space = self.difficulty.problem_space()
        # held-out splits avoid the first train problems (SFT draws from those)
        reserved = _train_size_for_disjointness(space)
        available = space if split == "train" else space - reserved
        if split == "train" and count > reserved:
            log.warning(
                "arith: %d train problems exceed the %d that held-out splits avoid; "
                "some test problems may also be train problems",
                count,
                reserved,
            )
        if count > available:
            raise ValueError(
                f"arith {split} split: asked for {count} problems but this difficulty has only "
                f"{available} distinct ones for it; raise max_operand or max_steps"
            )
        # each split draws from its own stream; a held-out problem that is among the
        # reserved train problems is skipped, so test accuracy measures computing, not recall
        rng = random.Random(self.seed * 1000 + offsets[split])
        seen_train = set()
        if split != "train":
            train = ArithTask(self.difficulty, self.seed)
            seen_train = {problem.question for problem in train.problems("train", reserved)}
        problems, questions = [], set()
        while len(problems) < count:
            expression = arith.generate_expression(rng, self.difficulty)
            if expression in seen_train or expression in questions:
                continue
            questions.add(expression)
            answer = str(arith.evaluate_expression(expression))
            problems.append(Problem(f"arith/{split}/{len(problems)}", expression, answer))
        return problems

    def reference_solution(self, problem: Problem) -> str:
        return self.join_steps(arith.canonical_steps(problem.question))

    def extract_answer(self, solution: str) -> str | None:
        for step in reversed(self.split_steps(solution)):
            if arith.ANSWER_MARKER in step:
                value = step.rsplit(arith.ANSWER_MARKER, 1)[1].strip()
                return value if re.fullmatch(r"-?\d+", value) else None
        return None

    def is_correct(self, answer: str | None, problem: Problem) -> bool:
        # exact integers: no parser needed, and no tolerance
        return answer is not None and answer.strip() == problem.answer

    def step_truth(self, problem: Problem, steps: list[str]) -> list[bool]:
        return arith.step_truth(problem.question, steps)


def _train_size_for_disjointness(space: int) -> int:
    """Train problems a held-out split avoids: 20,000, or half of a smaller problem space."""
    return min(20_000, space // 2)


class GSM8KTask(Task):
    """GSM8K word problems; steps are paragraphs, the answer is the final number."""

    name = "gsm8k"
    instruction = (
        "Solve the problem step by step, separating the steps with a blank line. End with a "
        "line of the form '#### <number>'."
    )

    def problems(self, split: str = "test", limit: int | None = None) -> list[Problem]:
        from shared.data.math_text import load_gsm8k

        rows = load_gsm8k(split)  # type: ignore[arg-type]
        return [
            Problem(row.id, row.question, row.answer, {"solution": row.solution})
            for row in rows[:limit]
        ]

    def reference_solution(self, problem: Problem) -> str | None:
        solution = problem.meta.get("solution")
        if not solution:
            return None
        # one step per line of the worked solution, calculator annotations <<3*4=12>> removed
        lines = [re.sub(r"<<[^>]*>>", "", line).strip() for line in solution.splitlines()]
        return self.join_steps([line for line in lines if line] + [f"#### {problem.answer}"])


class MathTask(Task):
    """MATH500 (``split=test500``) and the MATH training problems (``split=train``)."""

    name = "math"
    instruction = MATH_INSTRUCTION

    def problems(self, split: str = "test500", limit: int | None = None) -> list[Problem]:
        from shared.data.math_text import load_math

        rows = load_math(split)  # type: ignore[arg-type]
        return [
            Problem(row.id, row.question, row.answer, {"subject": row.subject, "level": row.level})
            for row in rows[:limit]
        ]


class FileTask(Task):
    """Problems from a JSON-lines file with ``question`` and ``answer`` fields (and ``id``)."""

    name = "file"

    def __init__(self, path: str | Path, step_delimiter: str = PARAGRAPH_DELIMITER):
        self.path = Path(path)
        self.step_delimiter = step_delimiter

    def problems(self, split: str = "test", limit: int | None = None) -> list[Problem]:
        if not self.path.is_file():
            raise FileNotFoundError(
                f"task file {self.path} does not exist; pass a JSON-lines file with one "
                '{"question": ..., "answer": ...} object per line'
            )
        problems = []
        for number, line in enumerate(self.path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{self.path} line {number} is not valid JSON: {error}") from None
            missing = [key for key in ("question", "answer") if not isinstance(row.get(key), str)]
            if missing:
                raise ValueError(
                    f"{self.path} line {number} lacks the string field(s) {missing}; every line "
                    'needs "question" and "answer"'
                )
            identifier = str(row.get("id", f"{self.path.stem}/{number}"))
            problems.append(Problem(identifier, row["question"], row["answer"]))
        return problems[:limit]


TASKS = ("arith", "gsm8k", "math")


def load_task(name: str, difficulty: arith.ArithDifficulty | None = None, seed: int = 0) -> Task:
    """A task by name (``arith``, ``gsm8k``, ``math``) or a path to a JSON-lines task file."""
    if name == "arith":
        return ArithTask(difficulty, seed)
    if name == "gsm8k":
        return GSM8KTask()
    if name == "math":
        return MathTask()
    if name.endswith(".jsonl"):
        return FileTask(name)
    raise ValueError(f"unknown task {name!r}; choose one of {TASKS} or a path to a .jsonl file")
