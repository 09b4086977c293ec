"""Test-time search with a policy and a step scorer (OpenR Sec. 4, ``reason/guided_search``).

- :func:`sample_solutions`: N whole solutions per problem in one engine call, the pool
  that majority vote and best-of-N choose from;
- :func:`beam_search`: step-level beam search. Every step, all open beams of all problems
  are expanded in *one* engine call (each beam sampled ``expansions`` times, stopping at
  the step delimiter), all new prefixes are scored in *one* scorer call, and each problem
  keeps its ``beam_width`` best;
- :func:`diverse_verifier_tree_search` (DVTS, Beeching et al. 2024): the budget is split
  into independent subtrees, each a greedy beam of width one with ``expansions``
  children per step, so one early favourite cannot take over every beam.

Every function adds what it spends to a :class:`~openr.engine.TokenCounter`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from openr.aggregation import aggregate_steps, select_answer
from openr.engine import GenerationEngine, SamplingConfig, TokenCounter
from openr.models import chat_prompt
from openr.prm import StepScorer
from openr.tasks import Problem, Task

log = logging.getLogger(__name__)


@dataclass
class Solution:
    """A (partial or complete) solution: its steps, their scores, and how it ended."""

    steps: list[str]
    finished: bool = False  # the policy ended it (EOS)
    truncated: bool = False  # cut by the token or step cap: counted, never answered
    step_scores: list[float] = field(default_factory=list)
    depth: int = 0  # steps generated, empty ones included (for the step cap)
    generated_tokens: int = 0  # policy tokens of a whole sampled solution
    prompt_tokens: int = 0
    prm_tokens: int = 0  # tokens the scorer read to score it

    @property
    def done(self) -> bool:
        return self.finished or self.truncated


@dataclass
class SearchContext:
    """What every search needs: the task, the policy's engine and prompt, the scorer."""

    task: Task
    engine: GenerationEngine
    tokenizer: object  # the policy's tokenizer, for its chat template
    scorer: StepScorer | None
    max_step_tokens: int = 64
    max_steps: int = 12
    max_solution_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 1.0
    seed: int = 0
    _calls: int = 0

    def prompt(self, problem: Problem, steps: Sequence[str] = ()) -> str:
        """The policy's input: the chat prompt, then the steps so far, each closed."""
        text = chat_prompt(self.tokenizer, self.task, problem)
        delimiter = self.task.step_delimiter
        return text + "".join(step + delimiter for step in steps)

    def sampling(self, max_new_tokens: int) -> SamplingConfig:
        # a fresh seed per engine call: reproducible runs, independent samples across calls
        self._calls += 1
        return SamplingConfig(
            self.temperature, self.top_p, max_new_tokens, self.seed * 1_000_003 + self._calls
        )

    def expand(
        self,
        problems: Sequence[Problem],
        prefixes: Sequence[Solution],
        n: int,
        counter: TokenCounter,
    ) -> list[list[Solution]]:
        """``n`` one-step continuations of each prefix, in one engine call."""
        prompts = [self.prompt(p, s.steps) for p, s in zip(problems, prefixes, strict=True)]
        sampling = self.sampling(self.max_step_tokens)
        groups = self.engine.generate(prompts, n, sampling, stop=self.task.step_delimiter)
        counter.add_completions(groups)
        children = []
        for prefix, group in zip(prefixes, groups, strict=True):
            kids = []
            for completion in group:
                step = completion.text.strip()
                steps = [*prefix.steps, step] if step else list(prefix.steps)
                depth = prefix.depth + 1
                child = Solution(steps, depth=depth)
                if completion.finish_reason == "eos":
                    child.finished = True
                elif completion.finish_reason == "length" or depth >= self.max_steps:
                    # a step that never reaches the delimiter, or too many steps
                    child.truncated = True
                kids.append(child)
            children.append(kids)
        return children

    def score(
        self, problems: Sequence[Problem], solutions: Sequence[Solution], counter: TokenCounter
    ) -> None:
        """Fill ``step_scores`` of every solution (one scorer call)."""
        if self.scorer is None:
            for solution in solutions:
                solution.step_scores = [1.0] * len(solution.steps)
            return
        scores = self.scorer.score(list(problems), [s.steps for s in solutions], counter)
        token_counts = getattr(self.scorer, "last_token_counts", None) or [0] * len(solutions)
        for solution, step_scores, tokens in zip(solutions, scores, token_counts, strict=True):
            solution.step_scores = step_scores
            solution.prm_tokens = tokens

    def answer_of(self, solution: Solution) -> str | None:
        if solution.truncated or not solution.steps:
            return None
        return self.task.answer_key(self.task.extract_answer(self.task.join_steps(solution.steps)))


def sample_solutions(
    context: SearchContext,
    problems: Sequence[Problem],
    n: int,
    counter: TokenCounter,
    score: bool = True,
) -> list[list[Solution]]:
    """``n`` whole solutions per problem (one engine call), split into steps and scored."""
    prompts = [context.prompt(problem) for problem in problems]
    sampling = context.sampling(context.max_solution_tokens)
    groups = context.engine.generate(prompts, n, sampling, stop=None)
    counter.add_completions(groups)
    solutions = []
    for group in groups:
        row = []
        for completion in group:
            steps = context.task.split_steps(completion.text)
            truncated = completion.finish_reason == "length" or len(steps) > context.max_steps
            row.append(
                Solution(
                    steps,
                    finished=not truncated,
                    truncated=truncated,
                    depth=len(steps),
                    generated_tokens=completion.generated_tokens,
                    prompt_tokens=completion.prompt_tokens,
                )
            )
        solutions.append(row)
    counter.answers += sum(len(row) for row in solutions)
    counter.truncated += sum(s.truncated for row in solutions for s in row)
    if score and context.scorer is not None:
        flat_problems = [p for p, row in zip(problems, solutions, strict=True) for _ in row]
        context.score(flat_problems, [s for row in solutions for s in row], counter)
    return solutions


def choose(
    context: SearchContext, solutions: Sequence[Solution], step_aggregation: str, selection: str
) -> tuple[str | None, int | None]:
    """The answer picked from a pool of solutions (see :mod:`openr.aggregation`)."""
    answers = [context.answer_of(solution) for solution in solutions]
    if selection == "majority":
        return select_answer(answers, None, "vote")
    scores = [aggregate_steps(s.step_scores, step_aggregation) for s in solutions]
    return select_answer(answers, scores, selection)


def beam_search(
    context: SearchContext,
    problems: Sequence[Problem],
    beam_width: int,
    expansions: int,
    counter: TokenCounter,
    step_aggregation: str = "last",
) -> list[list[Solution]]:
    """Step-level beam search; returns each problem's finished (or cut) solutions.

    A problem keeps ``beam_width`` open prefixes, ranked by the aggregated step scores
    (OpenR ranks by the last step's value). Each step samples ``expansions`` children per
    prefix; finished children leave the beam, and the beam shrinks by one for each, so
    a problem ends with ``beam_width`` complete solutions, the paper's budget unit.
    """
    if beam_width < 1 or expansions < 1:
        raise ValueError(f"beam_width and expansions must be >= 1, got {beam_width}, {expansions}")
    beams: list[list[Solution]] = [[Solution([])] for _ in problems]
    open_slots = [beam_width] * len(problems)
    done: list[list[Solution]] = [[] for _ in problems]
    first_step = True
    while any(beams):
        # one engine call for every open prefix of every problem
        owners = [index for index, row in enumerate(beams) for _ in row]
        prefixes = [solution for row in beams for solution in row]
        # the root is expanded beam_width x expansions times, later prefixes expansions times
        n = beam_width * expansions if first_step else expansions
        first_step = False
        children = context.expand([problems[i] for i in owners], prefixes, n, counter)

        # one scorer call for every new prefix
        flat = [
            (owner, child) for owner, kids in zip(owners, children, strict=True) for child in kids
        ]
        context.score([problems[owner] for owner, _ in flat], [child for _, child in flat], counter)

        # keep the best open_slots children of each problem
        candidates: list[list[Solution]] = [[] for _ in problems]
        for owner, child in flat:
            candidates[owner].append(child)
        for index, pool in enumerate(candidates):
            if not pool:
                beams[index] = []
                continue
            pool.sort(key=lambda s: -aggregate_steps(s.step_scores, step_aggregation))
            kept = pool[: open_slots[index]]
            finished = [s for s in kept if s.done]
            done[index] += finished
            open_slots[index] -= len(finished)
            beams[index] = [s for s in kept if not s.done][: open_slots[index]]
    for row in done:
        counter.answers += len(row)
        counter.truncated += sum(s.truncated for s in row)
    return done


def diverse_verifier_tree_search(
    context: SearchContext,
    problems: Sequence[Problem],
    budget: int,
    expansions: int,
    counter: TokenCounter,
    step_aggregation: str = "last",
) -> list[list[Solution]]:
    """DVTS: ``budget // expansions`` independent greedy subtrees per problem, batched."""
    subtrees = max(1, budget // expansions)
    replicated = [problem for problem in problems for _ in range(subtrees)]
    results = beam_search(context, replicated, 1, expansions, counter, step_aggregation)
    return [
        [solution for row in results[index * subtrees : (index + 1) * subtrees] for solution in row]
        for index in range(len(problems))
    ]


def mcts_search(
    context: SearchContext,
    problems: Sequence[Problem],
    simulations: int,
    children: int,
    counter: TokenCounter,
    c_puct: float = 1.25,
    evaluation: str = "prm",
    step_aggregation: str = "min",
) -> list[list[Solution]]:
    """MCTS (:mod:`openr.mcts`) on every problem; returns each problem's candidate solutions.

    The candidates are the finished solutions the trees reached, plus, with
    ``evaluation="rollout"``, the rollouts. A tree that reached none is completed along
    its most visited path by one rollout, so every problem gets an answer.
    """
    from openr.mcts import MCTS, ChildProposal, Node, finished_nodes, most_visited_path

    roots = [Node(()) for _ in problems]
    owner = {id(root): index for index, root in enumerate(roots)}
    rollouts: list[list[Solution]] = [[] for _ in problems]

    def problem_of(node: Node) -> Problem:
        return problems[owner[id(node.path()[0])]]

    def as_solution(node: Node) -> Solution:
        depth = len(node.path()) - 1
        return Solution(
            list(node.steps),
            node.finished and not node.truncated,
            node.truncated,
            list(node.step_scores or []),
            depth,
        )

    def expand(leaves: list[Node]) -> list[list[ChildProposal]]:
        groups = context.expand(
            [problem_of(leaf) for leaf in leaves],
            [as_solution(leaf) for leaf in leaves],
            children,
            counter,
        )
        # Limitation: uniform priors; the log-probabilities vLLM returns are not used yet
        return [
            [
                ChildProposal(
                    child.steps[-1] if len(child.steps) > len(leaf.steps) else "",
                    1.0,
                    child.finished,
                    child.truncated,
                )
                for child in group
            ]
            for leaf, group in zip(leaves, groups, strict=True)
        ]

    def evaluate(leaves: list[Node]) -> list[float]:
        # the PRM's scores of each leaf's own steps
        scored = [leaf for leaf in leaves if leaf.step_scores is None]
        solutions = [as_solution(leaf) for leaf in scored]
        context.score([problem_of(leaf) for leaf in scored], solutions, counter)
        for leaf, solution in zip(scored, solutions, strict=True):
            leaf.step_scores = solution.step_scores
        if evaluation == "rollout":
            return rollout_values(leaves)
        return [
            0.0 if leaf.truncated or not leaf.steps else aggregate_steps(leaf.step_scores, "last")
            for leaf in leaves
        ]

    def rollout_values(leaves: list[Node]) -> list[float]:
        open_leaves = [leaf for leaf in leaves if not leaf.finished]
        completed = complete(open_leaves)
        values = {}
        for leaf, solution in zip(open_leaves, completed, strict=True):
            rollouts[owner[id(leaf.path()[0])]].append(solution)
            values[id(leaf)] = (
                0.0
                if solution.truncated
                else aggregate_steps(solution.step_scores, step_aggregation)
            )
        return [
            values.get(
                id(leaf),
                0.0
                if leaf.truncated
                else aggregate_steps(leaf.step_scores or [], step_aggregation),
            )
            for leaf in leaves
        ]

    def complete(nodes: list[Node]) -> list[Solution]:
        """One sampled continuation of each node to the end, scored (one call each)."""
        if not nodes:
            return []
        prompts = [context.prompt(problem_of(node), node.steps) for node in nodes]
        sampling = context.sampling(context.max_solution_tokens)
        groups = context.engine.generate(prompts, 1, sampling, stop=None)
        counter.add_completions(groups)
        solutions = []
        for node, (completion,) in zip(nodes, groups, strict=True):
            steps = [*node.steps, *context.task.split_steps(completion.text)]
            truncated = completion.finish_reason == "length" or len(steps) > context.max_steps
            solutions.append(Solution(steps, not truncated, truncated, depth=len(steps)))
        context.score([problem_of(node) for node in nodes], solutions, counter)
        return solutions

    MCTS(expand, evaluate, c_puct).run(roots, simulations)

    results = []
    unanswered = []
    for index, root in enumerate(roots):
        candidates = [as_solution(node) for node in finished_nodes(root)] + rollouts[index]
        candidates = [c for c in candidates if c.finished]
        if not candidates:
            unanswered.append(index)
        results.append(candidates)
    if unanswered:
        ends = [most_visited_path(roots[index]) for index in unanswered]
        for index, solution in zip(unanswered, complete(ends), strict=True):
            results[index] = [solution]
    for row in results:
        counter.answers += len(row)
        counter.truncated += sum(s.truncated for s in row)
    return results
