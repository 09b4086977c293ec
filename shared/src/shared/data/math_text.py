"""Maths word problems with final answers: GSM8K (Cobbe et al., 2021) and MATH (Hendrycks et al.,
2021) as the MATH500 test split of "Let's Verify Step by Step" (Lightman et al., 2023).

Every loader returns a list of :class:`MathProblem`, whatever the source's field names.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from shared.data.locations import (
    CorruptDataError,
    DatasetSpec,
    Download,
    Source,
    locate,
)

log = logging.getLogger(__name__)

_GSM8K_URL = (
    "https://raw.githubusercontent.com/openai/grade-school-math/master/"
    "grade_school_math/data/{split}.jsonl"
)
_MATH500_URL = (
    "https://raw.githubusercontent.com/openreasoner/openr/main/envs/MATH/dataset/test500.jsonl"
)
_MATH_TRAIN_URL = (
    "https://raw.githubusercontent.com/openreasoner/openr/main/data/"
    "extracted_problems_and_answers.json"
)
_MATH500_PATH = "math/math500_test.jsonl"
_MATH_TRAIN_PATH = "math/math_train_problems_answers.json"
_LEVEL = re.compile(r"^Level (\d+)$")


@dataclass(frozen=True)
class MathProblem:
    """One problem, its final answer and, where the source has them, solution and labels."""

    id: str  # MATH's unique_id ("test/precalculus/807.json"), else "<dataset>/<split>/<row>"
    question: str
    answer: str  # the final answer as written: a number for GSM8K, LaTeX for MATH
    solution: str | None = None  # worked solution without the final-answer line, if any
    subject: str | None = None  # MATH subject, e.g. "Precalculus"
    level: int | None = None  # MATH difficulty 1 (easiest) to 5


def gsm8k_spec(split: Literal["train", "test"]) -> DatasetSpec:
    """Where GSM8K ``split`` may be found (the embedded train split holds its first 1,000 rows)."""
    if split not in ("train", "test"):
        raise ValueError(f"GSM8K split must be 'train' or 'test', got {split!r}")
    path = f"gsm8k/{split}.jsonl"
    return DatasetSpec(
        name=f"GSM8K {split}",
        layouts=[[path]],
        embedded=[path],
        downloads=[Download(url=_GSM8K_URL.format(split=split), target=path)],
        note="Get it from https://github.com/openai/grade-school-math (grade_school_math/data/).",
    )


def math_spec(split: Literal["test500", "train"]) -> DatasetSpec:
    """Where the MATH500 test split or the MATH training problems may be found."""
    if split not in ("test500", "train"):
        raise ValueError(f"MATH split must be 'test500' or 'train', got {split!r}")
    path, url = (
        (_MATH500_PATH, _MATH500_URL) if split == "test500" else (_MATH_TRAIN_PATH, _MATH_TRAIN_URL)
    )
    return DatasetSpec(
        name=f"MATH {split}",
        layouts=[[path]],
        embedded=[path],
        downloads=[Download(url=url, target=path)],
        note="Both files come from https://github.com/openreasoner/openr.",
    )


def load_gsm8k(
    split: Literal["train", "test"] = "test", source: Source = "auto", download: bool = True
) -> list[MathProblem]:
    """GSM8K problems (7,473 train, 1,319 test); the answer is the number after ``####``.

    Thousands separators are removed from the answer (``"1,080"`` becomes ``"1080"``); the
    solution keeps the reasoning lines, calculator annotations ``<<3*4=12>>`` included.
    """
    located = locate(gsm8k_spec(split), source=source, download=download)
    path = located.files[0]
    problems = []
    for line_number, row in _jsonl_rows(path):
        question, answer_text = _fields(row, ("question", "answer"), path, line_number)
        reasoning, marker, final = answer_text.rpartition("####")
        if not marker or not final.strip():
            raise CorruptDataError(
                f"{path} line {line_number}: field 'answer' has no final '#### <number>' line"
            )
        problems.append(
            MathProblem(
                id=f"gsm8k/{split}/{len(problems)}",
                question=question,
                answer=final.strip().replace(",", ""),
                solution=reasoning.strip(),
            )
        )
    log.info("GSM8K %s: %d problems from %s (%s)", split, len(problems), path, located.origin)
    return problems


def load_math(
    split: Literal["test500", "train"] = "test500", source: Source = "auto", download: bool = True
) -> list[MathProblem]:
    """MATH problems: the 500-problem test split with solutions, or 7,500 training problems.

    The training file has only problems and final answers: solution, subject and level are None.
    """
    located = locate(math_spec(split), source=source, download=download)
    path = located.files[0]
    problems = []
    if split == "test500":
        for line_number, row in _jsonl_rows(path):
            fields = ("unique_id", "problem", "answer", "solution", "subject", "level")
            unique_id, problem, answer, solution, subject, level = _fields(
                row, fields, path, line_number
            )
            problems.append(
                MathProblem(
                    id=unique_id,
                    question=problem,
                    answer=answer,
                    solution=solution,
                    subject=subject,
                    level=_level(level, path, line_number),
                )
            )
    else:
        for entry, row in _json_list_rows(path):
            problem, answer = _fields(row, ("problem", "final_answer"), path, entry, unit="entry")
            problems.append(MathProblem(id=f"math/train/{entry}", question=problem, answer=answer))
    log.info("MATH %s: %d problems from %s (%s)", split, len(problems), path, located.origin)
    return problems


def _jsonl_rows(path: Path):
    """(1-based line number, object) for each non-empty line of a JSON-lines file."""
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise CorruptDataError(
                    f"{path} line {line_number} is not valid JSON ({error}); the file may be "
                    "truncated: download it again"
                ) from error
            yield line_number, row


def _json_list_rows(path: Path):
    """(0-based entry index, object) for each entry of a JSON file holding one list."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise CorruptDataError(
            f"{path} is not valid JSON ({error}); the file may be truncated: download it again"
        ) from error
    if not isinstance(rows, list):
        raise CorruptDataError(f"{path} holds a {type(rows).__name__}, expected a list of problems")
    yield from enumerate(rows)


def _fields(
    row: object, names: tuple[str, ...], path: Path, where: int, unit: str = "line"
) -> tuple[str, ...]:
    """The string fields ``names`` of a row, or an error naming the file, row and field."""
    if not isinstance(row, dict):
        raise CorruptDataError(f"{path} {unit} {where}: expected an object, got {row!r:.80}")
    values = []
    for name in names:
        value = row.get(name)
        if value is None:
            raise CorruptDataError(f"{path} {unit} {where}: missing field {name!r}")
        if not isinstance(value, str):
            raise CorruptDataError(
                f"{path} {unit} {where}: field {name!r} should be a string, "
                f"got {type(value).__name__}"
            )
        values.append(value)
    return tuple(values)


def _level(text: str, path: Path, line_number: int) -> int | None:
    # "Level 1".."Level 5"; a few MATH problems are marked "Level ?"
    found = _LEVEL.match(text)
    if found:
        return int(found.group(1))
    if text == "Level ?":
        return None
    raise CorruptDataError(f"{path} line {line_number}: field 'level' is {text!r}, not 'Level N'")
