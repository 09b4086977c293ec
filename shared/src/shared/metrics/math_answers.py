"""Final answers of math solutions and their equivalence, through Hugging Face's math-verify.

:func:`extract_answer` pulls the final answer out of a model's (or a dataset's) solution
text; :func:`answers_match` decides whether two answers are the same mathematical object
(``\\frac{1}{2}`` and ``0.5``, ``1,000`` and ``1000``, ``(-\\infty, 3)`` and ``x < 3``).

Example::

    correct = answers_match(extract_answer(completion), row["answer"])
"""

from __future__ import annotations

import logging
import re
import threading

log = logging.getLogger(__name__)

_BOX = re.compile(r"\\(?:boxed|fbox)")
_GSM8K_FINAL_LINE = re.compile(r"^[ \t]*####[ \t]*(.+?)[ \t]*$", re.MULTILINE)
# a number with thousands separators, or plain digits, with an optional sign and decimals
_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?|-?\.\d+")


def _last_boxed(text: str) -> str | None:
    """Content of the last well-formed ``\\boxed{...}`` (or ``\\fbox{...}``, ``\\boxed 5``)."""
    for match in reversed(list(_BOX.finditer(text))):
        rest = text[match.end() :]
        if rest.startswith("{"):
            # braces balanced: the box closes where the depth returns to zero
            depth = 0
            for position, character in enumerate(rest):
                depth += {"{": 1, "}": -1}.get(character, 0)
                if depth == 0:
                    content = rest[1:position].strip()
                    if content:
                        return content
                    break
        elif rest.startswith(" "):
            # the brace-less form "\boxed 5" boxes one token
            token = rest.split(maxsplit=1)[0].rstrip("$.") if rest.strip() else ""
            if token:
                return token
    return None


def _marked_answer(text: str) -> str | None:
    """The answer a solution marks explicitly: the last box, else a GSM8K ``####`` line."""
    boxed = _last_boxed(text)
    if boxed is not None:
        return boxed
    final_lines = _GSM8K_FINAL_LINE.findall(text)
    if final_lines:
        # GSM8K writes some answers with thousands separators: "#### 2,125"
        final = final_lines[-1]
        return final.replace(",", "") if _NUMBER.fullmatch(final) else final
    return None


def extract_answer(text: str) -> str | None:
    """The final answer of a solution text, or None when it holds none.

    Looked for in order: the content of the last ``\\boxed{...}`` (MATH, and most
    instruction-tuned models); the last GSM8K ``#### 42`` line; the last number in the
    text. Numbers from the last two lose their thousands separators (``#### 2,125`` ->
    ``2125``); a box is returned as written (``\\boxed{1,-2}`` is two roots). The number
    fallback takes plain decimals only: a trailing ``3/4`` yields ``4``, so prompt models
    to box non-integer answers.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    marked = _marked_answer(text)
    if marked is not None:
        return marked
    numbers = _NUMBER.findall(text)
    if numbers:
        return numbers[-1].replace(",", "")
    return None


def answers_match(
    prediction: str | None,
    reference: str,
    timeout_seconds: int | None = 5,  # per parse and per comparison, math-verify's default
) -> bool:
    """Whether ``prediction`` is the same answer as ``reference`` by math-verify.

    Both are final answers (from :func:`extract_answer`, or a dataset's answer field); a
    side that still holds a ``\\boxed{}`` or ``####`` marker is reduced to the marked
    answer first, so whole solutions can be passed too. Each answer is parsed as LaTeX math
    with ``math_verify.parse`` and compared with ``math_verify.verify(gold=reference,
    target=prediction)``: numerically (6 decimals), symbolically, and as sets, intervals,
    tuples and matrices. Beyond that, math-verify's own rules apply: an assignment
    ``x=2`` answers ``2``; percent and degree signs are dropped (``50\\%`` matches ``50``,
    ``90^\\circ`` matches ``90`` but not ``\\frac{\\pi}{2}``); ``1,000`` is one thousand,
    while ``1,2`` is the set {1, 2}.

    Unparseable or empty input gives False (logged at DEBUG), never an exception.
    math-verify enforces its timeouts with SIGALRM, which works only in the main thread;
    in any other thread they are switched off.
    """
    # math-verify loads sympy and an ANTLR LaTeX parser (seconds): imported on first use
    from math_verify import parse, verify
    from math_verify.errors import TimeoutException

    if prediction is None:
        return False
    # Limitation: outside the main thread nothing bounds the time of a pathological
    # expression, because SIGALRM-based timeouts cannot be set there.
    if threading.current_thread() is not threading.main_thread():
        timeout_seconds = None

    try:
        gold = parse(_as_latex_math(reference), parsing_timeout=timeout_seconds)
        target = parse(_as_latex_math(prediction), parsing_timeout=timeout_seconds)
        if not gold or not target:
            log.debug("no parseable answer in prediction %r or reference %r", prediction, reference)
            return False
        return bool(verify(gold, target, timeout_seconds=timeout_seconds))
    except (Exception, TimeoutException):
        log.debug("math-verify failed on %r vs %r", prediction, reference, exc_info=True)
        return False


def _as_latex_math(answer: str) -> str:
    """An answer as inline LaTeX math, ``$...$``, after reducing it to its marked part."""
    answer = str(answer)
    marked = _marked_answer(answer)
    if marked is not None:
        answer = marked
    return f"${answer.strip().strip('$').strip()}$"
