"""Fixtures of the openr tests: a fake policy engine and a tiny untrained model pair."""

from __future__ import annotations

import re

import pytest
import torch

from openr.engine import Completion


@pytest.fixture(autouse=True)
def _one_thread():
    # pytest -n 2 runs two workers on two cores: one thread each avoids oversubscription
    torch.set_num_threads(1)


class ScriptedEngine:
    """An engine whose continuations are known in advance, recording every call.

    A prompt's depth is the number of closed steps after the assistant tag; sample ``i`` at
    depth ``d`` is the step ``d<d>c<i>``, and the solution ends (EOS) at ``finish_depth``.
    """

    def __init__(self, finish_depth: int = 2):
        self.finish_depth = finish_depth
        self.calls: list[tuple[int, int]] = []  # (prompts, n) per call

    def generate(self, prompts, n, sampling, stop=None):
        self.calls.append((len(prompts), n))
        groups = []
        for prompt in prompts:
            depth = prompt.split("<|assistant|>", 1)[1].count("\n")
            reason = "eos" if depth >= self.finish_depth else "stop"
            groups.append([Completion(f"d{depth}c{i}", reason, 3, len(prompt)) for i in range(n)])
        return groups


class LastStepIndexScorer:
    """Scores a step ending in ``c<i>`` by i / 10 (later samples look better), others 0."""

    def __init__(self):
        self.calls = 0

    def score(self, problems, solutions, counter=None):
        self.calls += 1
        scores = []
        for steps in solutions:
            found = [re.search(r"c(\d+)$", step) for step in steps]
            scores.append([int(m.group(1)) / 10 if m else 0.0 for m in found])
        return scores


@pytest.fixture
def scripted_engine():
    return ScriptedEngine()


@pytest.fixture
def index_scorer():
    return LastStepIndexScorer()


@pytest.fixture
def right_and_wrong_rows():
    return write_right_and_wrong_rows


def write_right_and_wrong_rows(task, path, problems: int):
    """Stepwise label rows: each train problem's reference solution (all steps right) and
    a copy whose first step's result gets an extra digit (all steps wrong); returns path."""
    import json

    rows = []
    for problem in task.problems("train", problems):
        right = task.split_steps(task.reference_solution(problem))
        wrong = [right[0] + "1", *right[1:]]
        for steps, correct in ((right, True), (wrong, False)):
            rows.append(
                {
                    "question": problem.question,
                    "prompt": problem.question + "\n",
                    "completions": steps,
                    "labels": [correct] * len(steps),
                    "outcome": correct,
                }
            )
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path
