"""Builds the pieces a config names (task, policy engine, scorer) and runs each command's work.

The CLI and ``reproduce`` both call these, so a command run by hand and the same step of a
reproduction are one code path.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from openr.config import OpenRConfig
from openr.engine import TokenCounter
from openr.models import load_model, load_tokenizer
from openr.prm import StepScorer, load_scorer
from openr.search import SearchContext
from openr.tasks import Task, load_task
from shared.device import describe, select_device, select_precision

log = logging.getLogger(__name__)


def build_task(config: OpenRConfig) -> Task:
    return load_task(config.task.name, config.task.difficulty(), config.task.seed)


def build_engine(config: OpenRConfig, device: torch.device):
    """The policy's engine and tokenizer: transformers, or vLLM when asked for."""
    policy = config.policy
    tokenizer = load_tokenizer(policy.model, require_chat_template=True)
    if policy.engine == "vllm":
        from openr.vllm_engine import VLLMEngine

        engine = VLLMEngine(
            policy.model,
            tensor_parallel_size=policy.tensor_parallel_size,
            gpu_memory_utilization=policy.gpu_memory_utilization,
            enable_prefix_caching=policy.enable_prefix_caching,
            seed=config.search.seed,
        )
        return engine, tokenizer
    from openr.engine import TransformersEngine

    model = load_model(policy.model, "causal-lm", device)
    return TransformersEngine(model, tokenizer, policy.batch_size), tokenizer


def build_scorer(config: OpenRConfig, task: Task, device: torch.device) -> StepScorer | None:
    scorer = config.scorer
    return load_scorer(
        scorer.kind,
        scorer.model,
        task,
        device,
        scorer.batch_size,
        scorer.step_tag,
        scorer.good_token,
        scorer.bad_token,
    )


def build_context(
    config: OpenRConfig, task: Task | None = None, scorer: StepScorer | str | None = "config"
) -> SearchContext:
    """Task, engine and scorer of ``config`` as one search context."""
    device = select_device(config.policy.device)
    log.info("device: %s", describe(device, select_precision(device)))
    task = task or build_task(config)
    engine, tokenizer = build_engine(config, device)
    if scorer == "config":
        scorer = build_scorer(config, task, device)
    policy = config.policy
    return SearchContext(
        task,
        engine,
        tokenizer,
        scorer,  # type: ignore[arg-type]
        max_step_tokens=policy.max_step_tokens,
        max_steps=policy.max_steps,
        max_solution_tokens=policy.max_solution_tokens,
        temperature=policy.temperature,
        top_p=policy.top_p,
        seed=config.search.seed,
    )


def run_sft(config: OpenRConfig, folder: Path, resume: bool) -> Path:
    from openr.sft import train_policy

    sft = config.sft
    device = select_device(config.policy.device)
    return train_policy(
        build_task(config),
        folder,
        init=sft.init,
        train_problems=sft.train_problems,
        epochs=sft.epochs,
        batch_size=sft.batch_size,
        learning_rate=sft.learning_rate,
        hidden_size=sft.hidden_size,
        layers=sft.layers,
        heads=sft.heads,
        seed=sft.seed,
        device=device,
        resume=resume,
    )


def run_labels(config: OpenRConfig, output: Path, resume: bool) -> tuple[Path, dict]:
    from openr.labels import generate_labels

    context = build_context(config, scorer=None)
    problems = context.task.problems(config.label.split, config.label.problems)
    counter = TokenCounter()
    generate_labels(
        context,
        problems,
        config.label.solutions_per_problem,
        config.label.rollouts,
        output,
        counter,
        config.search.chunk_size,
        resume,
    )
    return output, counter.as_dict()


def run_train_prm(
    config: OpenRConfig, labels: Path, folder: Path, resume: bool, outcome_only: bool | None = None
) -> Path:
    from openr.train_prm import train_prm

    prm = config.train_prm
    device = select_device(config.policy.device)
    # "policy": start from the policy's weights (Math-Shepherd and OpenR start from an LM)
    init = config.policy.model if prm.init == "policy" else prm.init
    return train_prm(
        build_task(config),
        labels,
        folder,
        init=init,
        label_kind=prm.label_kind,
        outcome_only=prm.outcome_only if outcome_only is None else outcome_only,
        epochs=prm.epochs,
        batch_size=prm.batch_size,
        learning_rate=prm.learning_rate,
        hidden_size=prm.hidden_size,
        layers=prm.layers,
        heads=prm.heads,
        seed=prm.seed,
        prompt_format=prm.prompt_format,
        architecture=prm.architecture,
        device=device,
        resume=resume,
    )


def scorer_quality(
    context: SearchContext, problems, samples: int, counter: TokenCounter
) -> dict[str, float]:
    """A scorer's step predictions (score >= 0.5) against the exact truth, on fresh samples."""
    from openr.labels import label_quality
    from openr.search import sample_solutions

    solutions = sample_solutions(context, problems, samples, counter)
    rows = []
    for problem, group in zip(problems, solutions, strict=True):
        for solution in group:
            truth = context.task.step_truth(problem, solution.steps)
            if truth is None or not solution.steps:
                continue
            rows.append(
                {
                    "predicted": [score >= 0.5 for score in solution.step_scores],
                    "true_labels": truth,
                }
            )
    return label_quality(rows, key="predicted")
