"""Math-Shepherd Monte Carlo step labels (Wang et al., 2024, "Math-Shepherd"), OpenR's data path.

For each sampled solution and each of its prefixes (steps 1..i), the policy completes the
prefix ``k`` times; the prefix's step is labelled

- hard: right if *any* completion reaches the reference answer (Math-Shepherd's HE);
- soft: the *fraction* of completions that do (Math-Shepherd's SE).

All completions of all prefixes of a batch of problems go to the engine in one call. Rows
are written in trl's stepwise-supervision format (``prompt``, ``completions``, ``labels``)
plus ``soft_labels`` and, where the task knows it, ``true_labels`` (arith), so label
quality is measured against the truth.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from openr.engine import TokenCounter
from openr.prm import prm_prompt
from openr.search import SearchContext, Solution, sample_solutions
from openr.tasks import Problem

log = logging.getLogger(__name__)


def monte_carlo_labels(
    context: SearchContext,
    problems: Sequence[Problem],
    solutions: Sequence[Sequence[Solution]],
    rollouts: int,
    counter: TokenCounter,
) -> list[dict]:
    """Label every step of every solution by ``rollouts`` completions of its prefix."""
    task = context.task
    # every (problem, solution, prefix length) whose outcome is not already known
    jobs = []
    for index, group in enumerate(solutions):
        for number, solution in enumerate(group):
            for length in range(1, len(solution.steps) + 1):
                jobs.append((index, number, length))

    # the last prefix of a finished solution is the solution itself: its outcome is exact
    outcome = {}
    for index, (problem, group) in enumerate(zip(problems, solutions, strict=True)):
        for number, solution in enumerate(group):
            answer = task.extract_answer(task.join_steps(solution.steps))
            outcome[(index, number)] = float(
                not solution.truncated and task.is_correct(answer, problem)
            )
    open_jobs = [
        job
        for job in jobs
        if not (
            job[2] == len(solutions[job[0]][job[1]].steps)
            and not solutions[job[0]][job[1]].truncated
        )
    ]
    prompts = [
        context.prompt(problems[i], solutions[i][n].steps[:length]) for i, n, length in open_jobs
    ]
    sampling = context.sampling(context.max_solution_tokens)
    groups = context.engine.generate(prompts, rollouts, sampling, stop=None) if prompts else []
    counter.add_completions(groups)

    fraction = {}
    for (index, number, length), group in zip(open_jobs, groups, strict=True):
        prefix = solutions[index][number].steps[:length]
        right = 0
        for completion in group:
            if completion.finish_reason == "length":
                continue
            answer = task.extract_answer(task.join_steps([*prefix, completion.text]))
            right += task.is_correct(answer, problems[index])
        fraction[(index, number, length)] = right / rollouts

    rows = []
    for index, (problem, group) in enumerate(zip(problems, solutions, strict=True)):
        for number, solution in enumerate(group):
            if not solution.steps:
                continue
            soft = []
            for length in range(1, len(solution.steps) + 1):
                key = (index, number, length)
                soft.append(fraction[key] if key in fraction else outcome[(index, number)])
            row = {
                "id": f"{problem.id}#{number}",
                "question": problem.question,
                "prompt": prm_prompt(task, problem),
                "completions": list(solution.steps),
                "labels": [value > 0 for value in soft],
                "soft_labels": soft,
                "outcome": bool(outcome[(index, number)]),
            }
            truth = task.step_truth(problem, list(solution.steps))
            if truth is not None:
                row["true_labels"] = truth
            rows.append(row)
    return rows


def generate_labels(
    context: SearchContext,
    problems: Sequence[Problem],
    solutions_per_problem: int,
    rollouts: int,
    output: Path,
    counter: TokenCounter,
    chunk_size: int = 16,
    resume: bool = False,
) -> Path:
    """Sample solutions and label them, appending JSON lines to ``output`` chunk by chunk.

    With ``resume``, problems whose rows are already in ``output`` are skipped.
    """
    done_ids = set()
    if resume and output.exists():
        for line in output.read_text().splitlines():
            if line.strip():
                try:
                    done_ids.add(json.loads(line)["id"].split("#")[0])
                except (json.JSONDecodeError, KeyError):
                    log.warning("ignoring a malformed line in %s", output)
    elif output.exists():
        output.unlink()
    todo = [problem for problem in problems if problem.id not in done_ids]
    log.info(
        "labelling %d problems (%d already done), %d solutions each, %d rollouts per step",
        len(todo),
        len(problems) - len(todo),
        solutions_per_problem,
        rollouts,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    for start in tqdm(range(0, len(todo), chunk_size), desc="MC labels", unit="chunk"):
        chunk = todo[start : start + chunk_size]
        solutions = sample_solutions(context, chunk, solutions_per_problem, counter, score=False)
        rows = monte_carlo_labels(context, chunk, solutions, rollouts, counter)
        with open(output, "a") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
    return output


def read_labels(path: Path) -> list[dict]:
    """Rows of a label file; a row without ``prompt``/``completions``/``labels`` is an error."""
    if not path.is_file():
        raise FileNotFoundError(f"label file {path} does not exist; run `openr label` first")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        missing = [key for key in ("prompt", "completions", "labels") if key not in row]
        if missing:
            raise ValueError(f"{path} line {number} lacks {missing}: not stepwise-supervision rows")
        if len(row["completions"]) != len(row["labels"]):
            raise ValueError(
                f"{path} line {number}: {len(row['completions'])} steps but "
                f"{len(row['labels'])} labels"
            )
        rows.append(row)
    return rows


def label_quality(rows: Sequence[dict], key: str = "labels") -> dict[str, float]:
    """Step-label accuracy and first-error F1 of ``rows[key]`` against ``true_labels``.

    First-error detection (as in ProcessBench): for each solution, the predicted first
    wrong step must equal the true one (or both say "no error"). F1 is the harmonic mean of
    the accuracy on solutions with an error and on solutions without.
    """
    from openr.arith import first_error

    steps_right = steps = 0
    erroneous_right = erroneous = clean_right = clean = 0
    for row in rows:
        if "true_labels" not in row:
            continue
        predicted = [bool(value) for value in row[key]]
        truth = row["true_labels"]
        steps += len(truth)
        steps_right += sum(p == t for p, t in zip(predicted, truth, strict=True))
        hit = first_error(predicted) == first_error(truth)
        if first_error(truth) is None:
            clean += 1
            clean_right += hit
        else:
            erroneous += 1
            erroneous_right += hit
    if steps == 0:
        raise ValueError("no row has true_labels: label quality needs a task with step truth")
    accuracy_erroneous = erroneous_right / erroneous if erroneous else float("nan")
    accuracy_clean = clean_right / clean if clean else float("nan")
    f1 = (
        2 * accuracy_erroneous * accuracy_clean / (accuracy_erroneous + accuracy_clean)
        if accuracy_erroneous + accuracy_clean > 0
        else 0.0
    )
    return {
        "step_accuracy": steps_right / steps,
        "first_error_accuracy_erroneous": accuracy_erroneous,
        "first_error_accuracy_clean": accuracy_clean,
        "first_error_f1": f1,
        "solutions": erroneous + clean,
        "solutions_with_error": erroneous,
        "steps": steps,
    }
