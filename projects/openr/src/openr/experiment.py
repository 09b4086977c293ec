"""The paper's experiments as code: ``openr reproduce`` and ``openr evaluate``.

OpenR's headline (Fig. 3 of Wang et al., 2024): on MATH500 with Qwen2.5-Math-1.5B-Instruct
and its Math-psa PRM, PRM-guided search beats majority vote at the same number of sampled
answers. ``reproduce`` runs the whole pipeline on ``arith``, where every step's truth is
known, at the config's scale:

1. SFT a small policy from scratch (trl ``SFTTrainer``);
2. Math-Shepherd Monte Carlo step labels with that policy, measured against the truth;
3. a PRM trained on those labels (trl ``PRMTrainer``), its step predictions measured
   against the truth on fresh samples;
4. majority vote, best-of-N with the PRM, beam search and MCTS at each budget, with
   pass@N (what the exact verifier would pick) as the ceiling;
5. optionally GSM8K with SmolLM2-135M-Instruct (majority vote and pass@N);

and asserts that best-of-N with the PRM beats majority vote at ``assert_budget``.
Every step is skipped when its output is already in the run folder, so ``--resume``
continues a crashed reproduction.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from pathlib import Path

from openr.config import OpenRConfig
from openr.engine import TokenCounter
from shared.report import reproduction_folder_name
from shared.runs import Run, markdown_table

log = logging.getLogger(__name__)

# OpenR Fig. 3 (MATH500, Qwen2.5-Math-1.5B-Instruct, Math-psa PRM), read off the figure
PAPER = [
    {"method": "majority_vote", "budget 1": 0.744, "budget 256": 0.802, "best": 0.802},
    {"method": "best_of_n (PRM)", "budget 1": 0.744, "budget 256": 0.816, "best": 0.816},
    {"method": "beam_search (PRM)", "budget 1": "", "budget 256": "", "best": "0.824 at 64"},
]
MAIN_METHODS = ["majority_vote", "best_of_n", "beam_search", "dvts", "mcts", "pass_at_n"]


def _accuracy_table(rows: list[dict], methods: list[str]) -> list[dict]:
    budgets = sorted({row["budget"] for row in rows})
    table = []
    for method in methods:
        line = {"method": method}
        found = False
        for budget in budgets:
            for row in rows:
                if row["method"] == method and row["budget"] == budget:
                    line[f"N={budget}"] = row["accuracy"]
                    found = True
        if found:
            table.append(line)
    return table


def _compute_table(rows: list[dict], methods: list[str]) -> list[dict]:
    keep = (
        "method",
        "budget",
        "accuracy",
        "policy_generated_tokens",
        "prm_tokens",
        "answers",
        "truncated",
        "unparsed",
        "errors",
    )
    return [{key: row.get(key, "") for key in keep} for row in rows if row["method"] in methods]


def evaluate_command(config: OpenRConfig, resume: bool) -> dict:
    """``openr evaluate``: every method and budget on ``task``, with plots and tables."""
    from openr.evaluate import evaluate, plot_curves
    from openr.pipeline import build_context

    run = Run.start("openr", f"{config.name}-evaluate", config, resume=resume)
    context = build_context(config)
    problems = context.task.problems(config.task.split, config.task.limit)
    rows = evaluate(context, problems, config.search, run.path / "eval", resume=resume)
    plot = plot_curves(
        rows,
        run.path / "accuracy_vs_budget.png",
        f"{config.task.name}: accuracy against budget",
        [m for m in MAIN_METHODS if m in {r["method"] for r in rows}],
    )
    markdown = "\n\n".join(
        [
            f"# openr evaluate: {config.task.name} ({len(problems)} problems)",
            markdown_table(_accuracy_table(rows, MAIN_METHODS)),
            f"![accuracy against budget]({plot.name})",
            "## Compute per problem",
            markdown_table(_compute_table(rows, MAIN_METHODS)),
        ]
    )
    results = {"rows": rows}
    run.write_results(results, markdown)
    return results


def _prepare_arith_models(config: OpenRConfig, folder: Path, resume: bool) -> dict:
    """SFT policy, MC labels and PRM in ``folder`` (each skipped when already there)."""
    from openr import pipeline
    from openr.labels import label_quality, read_labels

    timings = {}
    policy = folder / "policy"
    if not (policy / "config.json").exists():
        start = time.perf_counter()
        pipeline.run_sft(config, folder, resume)
        timings["sft_seconds"] = time.perf_counter() - start
    config.policy.model = str(policy)

    labels = folder / "labels.jsonl"
    done_marker = folder / "labels.done"
    label_compute = {}
    if not done_marker.exists():
        start = time.perf_counter()
        _, label_compute = pipeline.run_labels(config, labels, resume=True)
        done_marker.write_text("done\n")
        timings["label_seconds"] = time.perf_counter() - start
    rows = read_labels(labels)
    quality = {
        "hard": label_quality(rows, "labels"),
        "soft>=0.5": label_quality(
            [{**row, "soft": [v >= 0.5 for v in row["soft_labels"]]} for row in rows], "soft"
        ),
    }

    prm = folder / "prm"
    if not (prm / "config.json").exists():
        start = time.perf_counter()
        pipeline.run_train_prm(config, labels, folder, resume)
        timings["train_prm_seconds"] = time.perf_counter() - start
    config.scorer.kind, config.scorer.model = "prm", str(prm)
    return {
        "timings": timings,
        "label_quality": quality,
        "label_compute": label_compute,
        "label_rows": len(rows),
    }


def _gsm8k_smollm2(config: OpenRConfig, folder: Path) -> dict:
    """Majority vote and pass@N of SmolLM2-135M-Instruct on a GSM8K subset."""
    from openr.evaluate import evaluate
    from openr.models import ModelNotFoundError
    from openr.pipeline import build_context

    gsm = copy.deepcopy(config)
    gsm.task.name, gsm.task.split, gsm.task.limit = "gsm8k", "test", config.gsm8k_problems
    gsm.policy.model, gsm.scorer.kind = "smollm2", "none"
    gsm.policy.max_step_tokens, gsm.policy.max_solution_tokens = 128, 320
    gsm.policy.batch_size = 16
    gsm.policy.temperature = 0.7  # OpenR's default; the arith configs sample hotter
    gsm.search.methods, gsm.search.budgets = ["majority_vote"], list(config.gsm8k_budgets)
    try:
        context = build_context(gsm, scorer=None)
    except ModelNotFoundError as error:
        log.warning("skipping GSM8K with SmolLM2: %s", error)
        return {"skipped": str(error)}
    problems = context.task.problems("test", gsm.task.limit)
    rows = evaluate(context, problems, gsm.search, folder / "gsm8k", resume=True)
    return {"rows": [r for r in rows if r["method"] in ("majority_vote", "pass_at_n")]}


def reproduce(config: OpenRConfig, resume: bool = False) -> dict:
    """Run the experiment at ``config.scale`` and write its report; returns results.json."""
    from openr.evaluate import evaluate, plot_curves
    from openr.pipeline import build_context, build_task, scorer_quality

    if config.task.name != "arith":
        return _reproduce_with_given_models(config, resume)
    run = Run.start("openr", reproduction_folder_name(config.scale), config, resume=resume)
    folder = run.path
    work = copy.deepcopy(config)
    started = time.perf_counter()

    # 1-3: policy, Monte Carlo labels, PRM
    prepared = _prepare_arith_models(work, folder, resume)

    # PRM step predictions against the truth, on fresh samples of validation problems
    task = build_task(work)
    context = build_context(work, task)
    validation = task.problems("validation", min(100, work.label.problems))
    counter = TokenCounter()
    prm_quality = scorer_quality(context, validation, 4, counter)

    # 4: the search methods at every budget on the test problems
    problems = task.problems(work.task.split, work.task.limit)
    rows = evaluate(context, problems, work.search, folder / "eval", resume=True)
    plot = plot_curves(
        rows,
        folder / "accuracy_vs_budget.png",
        f"arith ({len(problems)} problems, {work.scale} scale)",
        [m for m in MAIN_METHODS if m in {r["method"] for r in rows}],
    )

    # 5: GSM8K with SmolLM2 at small budgets
    gsm8k = _gsm8k_smollm2(work, folder) if work.gsm8k_problems > 0 else {"skipped": "0 problems"}

    # the paper's claim: PRM best-of-N beats majority vote at the same budget
    checks = _check(work, rows)
    passed = all(check["passed"] for check in checks.values())

    results = {
        "passed": passed,
        "scale": work.scale,
        "checks": checks,
        "rows": rows,
        "prm_step_quality": prm_quality,
        "gsm8k_smollm2": gsm8k,
        "seconds": time.perf_counter() - started,
        **prepared,
    }
    markdown = _report(work, results, problems, plot)
    run.write_results(results, markdown)
    (folder / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    log.info("reproduce %s: %s (%s)", work.scale, "passed" if passed else "FAILED", checks)
    return results


def _check(config: OpenRConfig, rows: list[dict]) -> dict:
    """The paper's claim at ``assert_budget``: PRM best-of-N beats majority vote."""
    budget = config.assert_budget
    if budget not in config.search.budgets:
        raise ValueError(
            f"assert_budget {budget} is not among search.budgets {config.search.budgets}"
        )

    def accuracy(method: str) -> float:
        return next(r["accuracy"] for r in rows if r["method"] == method and r["budget"] == budget)

    best_of_n, majority = accuracy("best_of_n"), accuracy("majority_vote")
    return {
        f"best_of_n > majority_vote at N={budget}": {
            "best_of_n": best_of_n,
            "majority_vote": majority,
            "passed": best_of_n > majority,
        }
    }


def _reproduce_with_given_models(config: OpenRConfig, resume: bool) -> dict:
    """Paper scale: the config's policy and PRM (nothing trained) on MATH500 or GSM8K."""
    from openr.evaluate import evaluate, plot_curves
    from openr.pipeline import build_context

    run = Run.start("openr", reproduction_folder_name(config.scale), config, resume=resume)
    started = time.perf_counter()
    context = build_context(config)
    problems = context.task.problems(config.task.split, config.task.limit)
    rows = evaluate(context, problems, config.search, run.path / "eval", resume=True)
    plot = plot_curves(
        rows,
        run.path / "accuracy_vs_budget.png",
        f"{config.task.name} ({len(problems)} problems)",
        [m for m in MAIN_METHODS if m in {r["method"] for r in rows}],
    )
    checks = _check(config, rows)
    passed = all(check["passed"] for check in checks.values())
    results = {
        "passed": passed,
        "scale": config.scale,
        "checks": checks,
        "rows": rows,
        "seconds": time.perf_counter() - started,
    }
    markdown = "\n\n".join(
        [
            f"# OpenR reproduction ({config.scale} scale): {'PASSED' if passed else 'FAILED'}",
            f"{config.task.name} {config.task.split}, {len(problems)} problems; policy "
            f"`{config.policy.model}`, scorer {config.scorer.kind} `{config.scorer.model}`.",
            markdown_table([{"check": name, **value} for name, value in checks.items()]),
            markdown_table(_accuracy_table(rows, MAIN_METHODS)),
            f"![accuracy against budget]({plot.name})",
            "## Paper (OpenR Fig. 3)",
            markdown_table(PAPER),
            "## Compute per problem",
            markdown_table(_compute_table(rows, MAIN_METHODS)),
        ]
    )
    run.write_results(results, markdown)
    return results


def _report(config: OpenRConfig, results: dict, problems, plot: Path) -> str:
    rows = results["rows"]
    quality_rows = [
        {"labels": "Monte Carlo, hard (any rollout right)", **results["label_quality"]["hard"]},
        {"labels": "Monte Carlo, soft >= 0.5", **results["label_quality"]["soft>=0.5"]},
        {"labels": "trained PRM, score >= 0.5 (fresh samples)", **results["prm_step_quality"]},
    ]
    variants = sorted({r["method"] for r in rows if r["method"].startswith("best_of_n[")})
    status = "PASSED" if results["passed"] else "FAILED"
    parts = [
        f"# OpenR reproduction ({config.scale} scale): {status}",
        f"arith, {len(problems)} test problems ({config.task.min_steps}-{config.task.max_steps} "
        f"operations, operands up to {config.task.max_operand}); policy and PRM trained from "
        f"scratch in this run. Numbers at {config.scale} scale check the direction of the "
        "paper's effect, not its values.",
        "## The check",
        markdown_table([{"check": name, **value} for name, value in results["checks"].items()]),
        "## Accuracy against budget (sampled answers per problem)",
        markdown_table(_accuracy_table(rows, MAIN_METHODS)),
        f"![accuracy against budget]({plot.name})",
        "pass_at_n is the ceiling: the answer an exact verifier would pick from the same pool.",
        "## Paper (MATH500, Qwen2.5-Math-1.5B-Instruct, Math-psa PRM; OpenR Fig. 3)",
        markdown_table(PAPER),
        "## Best-of-N variants (step aggregation, answer selection)",
        markdown_table(_accuracy_table(rows, variants)),
        "## Step-label quality against the exact truth",
        markdown_table(quality_rows),
        "## Compute per problem",
        markdown_table(_compute_table(rows, MAIN_METHODS)),
    ]
    gsm8k = results["gsm8k_smollm2"]
    parts.append("## GSM8K with SmolLM2-135M-Instruct")
    if "rows" in gsm8k:
        parts.append(markdown_table(_accuracy_table(gsm8k["rows"], ["majority_vote", "pass_at_n"])))
    else:
        parts.append(f"skipped: {gsm8k['skipped']}")
    parts.append(f"Total time: {results['seconds']:.0f} s.")
    return "\n\n".join(parts)
