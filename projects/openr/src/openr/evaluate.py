"""``openr evaluate``: methods x budgets on a task, per-problem JSON lines, resumable.

Budget is the paper's x-axis, the number of sampled answers per problem: N solutions for
majority vote and best-of-N, N beams' worth of candidates per step for beam search and
DVTS (``beam_width = N / expansions``), N simulations for MCTS. Because equal N does not
mean equal compute across methods, every record also carries policy tokens generated,
PRM tokens scored and the number of complete answers, and the plots show accuracy
against tokens as well.

Majority vote and best-of-N read one pool of ``max(budgets)`` samples per problem
(``pool.jsonl``): the first N samples of the pool are N i.i.d. samples, so every budget
is evaluated without sampling again. Each line of ``<method>-b<N>.jsonl`` (or of the
pool) is written when its problem is done; ``--resume`` skips the problems already there.
A problem whose search raises is recorded with ``status: error`` and scored wrong; it
never stops the evaluation.
"""

from __future__ import annotations

import json
import logging
import math
import traceback
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from tqdm import tqdm

from openr.aggregation import aggregate_steps, select_answer
from openr.config import ANSWER_SELECTIONS, STEP_AGGREGATIONS, SearchConfig
from openr.engine import TokenCounter
from openr.search import (
    SearchContext,
    Solution,
    beam_search,
    choose,
    diverse_verifier_tree_search,
    mcts_search,
    sample_solutions,
)
from openr.tasks import Problem

log = logging.getLogger(__name__)

POOL_METHODS = ("majority_vote", "best_of_n")


def read_jsonl(path: Path) -> list[dict]:
    """Complete lines of a JSON-lines file (a half-written last line from a crash is skipped)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("skipping a half-written line in %s", path)
    return rows


def append_jsonl(path: Path, rows: Sequence[dict]) -> None:
    with open(path, "a") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
        handle.flush()


def _repair(path: Path) -> None:
    """Cut a half-written last line so that appends start on a fresh line."""
    if path.exists():
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            path.write_bytes(data[: data.rfind(b"\n") + 1])


def run_chunked(
    problems: Sequence[Problem],
    path: Path,
    chunk_size: int,
    search: Callable[[list[Problem]], list[dict]],
    description: str,
) -> list[dict]:
    """Run ``search`` over chunks of the problems not yet in ``path``; append their records.

    A chunk that raises is retried one problem at a time; a problem that still raises is
    recorded as an error.
    """
    _repair(path)
    done = {row["id"]: row for row in read_jsonl(path)}
    todo = [problem for problem in problems if problem.id not in done]
    if done:
        log.info(
            "%s: %d of %d problems already done, resuming", description, len(done), len(problems)
        )
    for start in tqdm(
        range(0, len(todo), chunk_size), desc=description, unit="chunk", disable=not todo
    ):
        chunk = todo[start : start + chunk_size]
        try:
            records = search(chunk)
        except Exception:
            log.warning(
                "%s: a chunk failed, retrying its problems one by one", description, exc_info=True
            )
            records = []
            for problem in chunk:
                try:
                    records += search([problem])
                except Exception as error:
                    log.error("%s: problem %s failed: %s", description, problem.id, error)
                    message = "".join(traceback.format_exception_only(error)).strip()
                    records.append(
                        {"id": problem.id, "status": "error", "error": message, "correct": False}
                    )
        append_jsonl(path, records)
        done |= {row["id"]: row for row in records}
    return [done[problem.id] for problem in problems]


def _solution_record(context: SearchContext, problem: Problem, solution: Solution) -> dict:
    answer = context.task.extract_answer(context.task.join_steps(solution.steps))
    return {
        "steps": solution.steps,
        "finished": solution.finished,
        "truncated": solution.truncated,
        "step_scores": solution.step_scores,
        "answer": context.task.answer_key(answer) if not solution.truncated else None,
        "correct": bool(not solution.truncated and context.task.is_correct(answer, problem)),
        "generated_tokens": solution.generated_tokens,
        "prompt_tokens": solution.prompt_tokens,
        "prm_tokens": solution.prm_tokens,
    }


def sample_pool(
    context: SearchContext, problems: list[Problem], size: int, path: Path, chunk_size: int
) -> list[dict]:
    """``size`` scored samples per problem, stored in ``path`` (resumable)."""

    def search(chunk: list[Problem]) -> list[dict]:
        counter = TokenCounter()
        solutions = sample_solutions(context, chunk, size, counter)
        return [
            {
                "id": problem.id,
                "status": "ok",
                "reference": problem.answer,
                "samples": [_solution_record(context, problem, s) for s in row],
            }
            for problem, row in zip(chunk, solutions, strict=True)
        ]

    return run_chunked(problems, path, chunk_size, search, f"pool of {size}")


def pool_records(
    pool: Sequence[dict], budget: int, step_aggregation: str, answer_selection: str
) -> dict[str, list[dict]]:
    """Per-problem records of every pool method at ``budget`` (first ``budget`` samples)."""
    methods: dict[str, list[dict]] = {}

    def add(method: str, record: dict) -> None:
        methods.setdefault(method, []).append(record)

    for entry in pool:
        if entry.get("status") != "ok":
            for method in ("majority_vote", "best_of_n", "pass_at_n"):
                add(method, {"id": entry["id"], "status": "error", "correct": False})
            continue
        samples = entry["samples"][:budget]
        if len(samples) < budget:
            raise ValueError(
                f"the pool of {entry['id']} has {len(entry['samples'])} samples, "
                f"fewer than budget {budget}; delete pool.jsonl to resample"
            )
        cost = {
            "policy_generated_tokens": sum(s["generated_tokens"] for s in samples),
            "policy_prompt_tokens": sum(s["prompt_tokens"] for s in samples),
            "answers": len(samples),
            "truncated": sum(s["truncated"] for s in samples),
            # finished solutions whose final answer could not be parsed
            "unparsed": sum(s["answer"] is None and not s["truncated"] for s in samples),
        }
        answers = [s["answer"] for s in samples]
        correct_by_answer = {s["answer"]: s["correct"] for s in samples if s["answer"]}

        record = partial(_pool_record, entry["id"], correct_by_answer, cost)
        answer, _ = select_answer(answers, None, "vote")
        add("majority_vote", record(answer))
        prm_tokens = sum(s["prm_tokens"] for s in samples)
        for aggregation in STEP_AGGREGATIONS:
            scores = [aggregate_steps(s["step_scores"], aggregation) for s in samples]
            for selection in ANSWER_SELECTIONS:
                answer, _ = select_answer(answers, scores, selection)
                name = f"best_of_n[{aggregation},{selection}]"
                add(name, record(answer, prm_tokens))
                if (aggregation, selection) == (step_aggregation, answer_selection):
                    add("best_of_n", record(answer, prm_tokens))
        # the ceiling: some sample is right (what a perfect verifier would pick)
        add("pass_at_n", {**record(None), "correct": any(s["correct"] for s in samples)})
    return methods


def _pool_record(
    problem_id: str, correct_by_answer: dict, cost: dict, answer: str | None, prm_tokens: int = 0
) -> dict:
    return {
        "id": problem_id,
        "status": "ok",
        "answer": answer,
        "correct": bool(correct_by_answer.get(answer, False)),
        "prm_tokens": prm_tokens,
        **cost,
    }


def search_records(
    context: SearchContext,
    method: str,
    budget: int,
    search: SearchConfig,
    problems: list[Problem],
    path: Path,
) -> list[dict]:
    """Per-problem records of a tree search method at ``budget`` (resumable)."""

    def run(chunk: list[Problem]) -> list[dict]:
        counter = TokenCounter()
        expansions = min(search.beam_expansions, budget)
        if method == "beam_search":
            results = beam_search(
                context, chunk, max(1, budget // expansions), expansions, counter, "last"
            )
        elif method == "dvts":
            results = diverse_verifier_tree_search(
                context, chunk, budget, expansions, counter, "last"
            )
        elif method == "mcts":
            results = mcts_search(
                context,
                chunk,
                budget,
                search.mcts_children,
                counter,
                search.mcts_c_puct,
                search.mcts_evaluation,
                search.step_aggregation,
            )
        else:
            raise ValueError(f"unknown search method {method!r}")
        records = []
        share = counter.as_dict()
        for problem, candidates in zip(chunk, results, strict=True):
            answer, index = choose(
                context, candidates, search.step_aggregation, search.answer_selection
            )
            chosen = candidates[index] if index is not None else None
            raw = (
                context.task.extract_answer(context.task.join_steps(chosen.steps))
                if chosen
                else None
            )
            records.append(
                {
                    "id": problem.id,
                    "status": "ok",
                    "answer": answer,
                    "reference": problem.answer,
                    "correct": bool(chosen is not None and context.task.is_correct(raw, problem)),
                    "answers": len(candidates),
                    "truncated": sum(c.truncated for c in candidates),
                    "unparsed": sum(
                        not c.truncated and context.answer_of(c) is None for c in candidates
                    ),
                    # Limitation: tree searches count tokens per chunk of problems; each problem is
                    # given the chunk's mean (totals are exact)
                    "policy_generated_tokens": share["policy_generated_tokens"] / len(chunk),
                    "policy_prompt_tokens": share["policy_prompt_tokens"] / len(chunk),
                    "prm_tokens": share["prm_tokens"] / len(chunk),
                    "engine_calls": share["engine_calls"],
                    "solution": chosen.steps if chosen else None,
                }
            )
        return records

    return run_chunked(problems, path, search.chunk_size, run, f"{method} budget {budget}")


def summarize(records: Sequence[dict]) -> dict[str, float]:
    """Accuracy and mean compute per problem over per-problem records."""
    count = len(records)
    ok = [r for r in records if r.get("status") == "ok"]

    def mean(key: str) -> float:
        values = [r.get(key, 0) for r in ok]
        return sum(values) / len(values) if values else float("nan")

    return {
        "accuracy": sum(bool(r.get("correct")) for r in records) / count if count else math.nan,
        "problems": count,
        "errors": count - len(ok),
        "policy_generated_tokens": mean("policy_generated_tokens"),
        "prm_tokens": mean("prm_tokens"),
        "answers": mean("answers"),
        "truncated": sum(r.get("truncated", 0) for r in ok),
        "unparsed": sum(r.get("unparsed", 0) for r in ok),
    }


def evaluate(
    context: SearchContext,
    problems: list[Problem],
    search: SearchConfig,
    folder: Path,
    resume: bool = False,
) -> list[dict]:
    """Every method of ``search.methods`` at every budget; returns one summary row each."""
    folder.mkdir(parents=True, exist_ok=True)
    if not resume:
        for old in folder.glob("*.jsonl"):
            old.unlink()
    budgets = sorted(set(search.budgets))
    rows = []
    if any(method in POOL_METHODS for method in search.methods):
        pool = sample_pool(
            context, problems, max(budgets), folder / "pool.jsonl", search.chunk_size
        )
        for budget in budgets:
            records = pool_records(pool, budget, search.step_aggregation, search.answer_selection)
            for method, method_records in records.items():
                base = method.split("[")[0]
                if base in POOL_METHODS and base not in search.methods:
                    continue
                _write_records(folder / f"{_file_name(method)}-b{budget}.jsonl", method_records)
                rows.append({"method": method, "budget": budget, **summarize(method_records)})
    for method in search.methods:
        if method in POOL_METHODS:
            continue
        for budget in budgets:
            records = search_records(
                context, method, budget, search, problems, folder / f"{method}-b{budget}.jsonl"
            )
            rows.append({"method": method, "budget": budget, **summarize(records)})
    (folder / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    return rows


def _file_name(method: str) -> str:
    """``best_of_n[min,max]`` -> ``best_of_n-min-max``."""
    return method.replace("[", "-").replace(",", "-").rstrip("]")


def _write_records(path: Path, records: Sequence[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def plot_curves(
    rows: Sequence[dict], path: Path, title: str, methods: Sequence[str] | None = None
) -> Path:
    """Accuracy against budget (left) and against policy tokens per problem (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(methods or dict.fromkeys(row["method"] for row in rows))
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for method in methods:
        points = sorted((r for r in rows if r["method"] == method), key=lambda r: r["budget"])
        if not points:
            continue
        style = "--" if method == "pass_at_n" else "-"
        left.plot(
            [p["budget"] for p in points],
            [p["accuracy"] for p in points],
            style,
            marker="o",
            label=method,
        )
        right.plot(
            [p["policy_generated_tokens"] for p in points],
            [p["accuracy"] for p in points],
            style,
            marker="o",
            label=method,
        )
    left.set_xscale("log", base=2)
    left.set_xlabel("budget (sampled answers per problem)")
    right.set_xscale("log")
    right.set_xlabel("policy tokens generated per problem")
    for axis in (left, right):
        axis.set_ylabel("accuracy")
        axis.grid(alpha=0.3)
    left.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
