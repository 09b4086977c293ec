"""``openr <command> --config configs/<scale>.yaml [key.sub=value ...] [--resume]``.

Commands (each writes ``runs/openr/<run>/``):

- ``sft``: train the policy (arith: a small model from scratch) on worked solutions;
- ``label``: Math-Shepherd Monte Carlo step labels in trl's stepwise format;
- ``train-prm``: train the PRM (or, with ``train_prm.outcome_only=true``, an ORM) with trl;
- ``search``: run the first of ``search.methods`` at the first budget, print the answers;
- ``evaluate``: every method at every budget, per-problem JSON lines, plots, resumable;
- ``reproduce``: the paper's experiment at this config's scale (report in
  ``runs/openr/reproduce-<scale>/``; a failed check is ``"passed": false`` in its
  ``results.json``, an error in the log and exit status 1, after the report is written);
- ``bench``: batched against one-at-a-time PRM scoring and beam expansion, tokens/s.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from openr.config import OpenRConfig
from shared.commands import command_parser, load_command_config, run_command, setup_logging
from shared.device import set_threads
from shared.runs import Run, markdown_table

log = logging.getLogger("openr")

COMMANDS = {
    "sft": "train the policy on the task's worked solutions (trl SFTTrainer)",
    "label": "Math-Shepherd Monte Carlo step labels (trl stepwise-supervision rows)",
    "train-prm": "train a process (or outcome) reward model with trl's PRMTrainer",
    "search": "run one search method on the task and print each problem's answer",
    "evaluate": "methods x budgets on the task: accuracy, compute, plots (resumable)",
    "reproduce": "the paper's experiment at the config's scale, with its report",
    "bench": "batched vs one-at-a-time PRM scoring and beam expansion; tokens/s",
}


def _threads(config: OpenRConfig) -> None:
    threads = set_threads(config.threads or None)
    log.info("torch threads: %d", threads)


def main(argv: Sequence[str] | None = None) -> int:
    parser = command_parser(
        "openr", "OpenR: PRMs and PRM-guided search for LLM reasoning", COMMANDS
    )
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    config = load_command_config(OpenRConfig, args)
    _threads(config)

    def dispatch(_) -> int:
        try:
            return _dispatch(args.command, config, args.resume)
        except (FileNotFoundError, ValueError, ImportError) as error:
            # bad input (a missing model or file, a wrong format or value): one line, exit 2
            if isinstance(error, FileExistsError):
                raise
            log.debug("the error's traceback", exc_info=True)  # shown with --log-level DEBUG
            print(f"error: {error}", file=sys.stderr)
            return 2

    return run_command(dispatch, [])


def _dispatch(command: str, config: OpenRConfig, resume: bool) -> int:
    from openr import pipeline

    if command == "sft":
        run = Run.start("openr", config.sft.run, config, resume=resume)
        folder = pipeline.run_sft(config, run.path, resume)
        run.write_results({"policy": str(folder)}, f"# openr sft\n\nPolicy: `{folder}`\n")
        print(folder)
    elif command == "label":
        run = Run.start("openr", config.label.run, config, resume=resume)
        output, compute = pipeline.run_labels(config, run.path / "labels.jsonl", resume)
        results = {"labels": str(output), "compute": compute}
        results |= _label_quality(output)
        run.write_results(results, "# openr label\n\n" + markdown_table([results]))
        print(output)
    elif command == "train-prm":
        run = Run.start("openr", config.train_prm.run, config, resume=resume)
        folder = pipeline.run_train_prm(config, Path(config.train_prm.labels), run.path, resume)
        run.write_results({"prm": str(folder)}, f"# openr train-prm\n\nModel: `{folder}`\n")
        print(folder)
    elif command == "search":
        _search(config, resume)
    elif command == "evaluate":
        from openr.experiment import evaluate_command

        evaluate_command(config, resume)
    elif command == "reproduce":
        from openr.experiment import reproduce

        results = reproduce(config, resume)
        if not results["passed"]:
            # the report is written and says so (results.json "passed": false)
            log.error("the reproduction's checks failed: %s", results["checks"])
            return 1
    elif command == "bench":
        from openr.bench import bench

        bench(config)
    return 0


def _label_quality(path) -> dict:
    from openr.labels import label_quality, read_labels

    rows = read_labels(path)
    if not any("true_labels" in row for row in rows):
        return {}
    return {"hard_label_quality": label_quality(rows, "labels")}


def _search(config: OpenRConfig, resume: bool) -> None:
    from openr.evaluate import search_records, summarize
    from openr.pipeline import build_context

    method, budget = config.search.methods[0], config.search.budgets[0]
    run = Run.start("openr", f"{config.name}-search-{method}-b{budget}", config, resume=resume)
    context = build_context(config)
    problems = context.task.problems(config.task.split, config.task.limit)
    if method in ("majority_vote", "best_of_n"):
        from openr.evaluate import pool_records, sample_pool

        pool = sample_pool(
            context, problems, budget, run.path / f"pool-b{budget}.jsonl", config.search.chunk_size
        )
        records = pool_records(
            pool, budget, config.search.step_aggregation, config.search.answer_selection
        )[method]
    else:
        records = search_records(
            context, method, budget, config.search, problems, run.path / f"{method}-b{budget}.jsonl"
        )
    for record in records:
        print(json.dumps({key: record.get(key) for key in ("id", "answer", "correct")}))
    summary = summarize(records)
    print(json.dumps({"method": method, "budget": budget, **summary}), file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
