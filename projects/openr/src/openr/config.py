"""The one typed config every ``openr`` command reads (``configs/{smoke,cpu,paper}.yaml``).

Defaults are OpenR's (Wang et al., 2024, and its ``reason/evaluation`` scripts) where the
paper sets them; values chosen for this implementation say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from openr.arith import ArithDifficulty

ENGINES = ("transformers", "vllm")
SCORERS = ("prm", "next-token-prm", "orm", "verifier", "none")
METHODS = ("majority_vote", "best_of_n", "beam_search", "dvts", "mcts")
STEP_AGGREGATIONS = ("min", "last", "prod")
# token-classification: the policy (or a new model) fine-tuned with a 2-label head (trl,
# Math-Shepherd); confidence: the frozen policy's confidence plus a trained head
# (openr.confidence_prm)
PRM_ARCHITECTURES = ("token-classification", "confidence")
ANSWER_SELECTIONS = ("max", "vote", "weighted_vote")


@dataclass
class TaskConfig:
    name: str = "arith"  # arith | gsm8k | math | path/to/problems.jsonl
    split: str = "test"  # arith: train/validation/test; gsm8k: train/test; math: test500/train
    limit: int | None = 50  # number of problems evaluated (None: all)
    seed: int = 0  # arith: which problems are generated
    min_steps: int = 2  # arith difficulty: number of operations
    max_steps: int = 4
    max_operand: int = 20
    max_factor: int = 5
    operators: str = "+-*"

    def difficulty(self) -> ArithDifficulty:
        return ArithDifficulty(
            self.min_steps, self.max_steps, self.max_operand, self.max_factor, self.operators
        )

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"task.limit must be >= 1 or null, got {self.limit}")
        self.difficulty()  # validates the arith ranges


@dataclass
class PolicyConfig:
    model: str = "runs/openr/arith-sft/policy"  # folder, hub id, or "smollm2"
    engine: str = "transformers"  # transformers | vllm (GPU, optional extra)
    device: str = "auto"
    batch_size: int = 64  # sequences per transformers generate() call
    temperature: float = 0.7  # OpenR evaluate.py default
    top_p: float = 1.0
    max_step_tokens: int = 64  # tokens per step before a step counts as runaway
    max_steps: int = 12  # steps per solution before it is cut (counted as truncated)
    max_solution_tokens: int = 256  # tokens of a whole solution sampled at once
    # vLLM only
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.8
    enable_prefix_caching: bool = True

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"policy.engine must be one of {ENGINES}, got {self.engine!r}")
        for key in ("batch_size", "max_step_tokens", "max_steps", "max_solution_tokens"):
            if getattr(self, key) < 1:
                raise ValueError(f"policy.{key} must be >= 1, got {getattr(self, key)}")


@dataclass
class ScorerConfig:
    kind: str = "prm"  # prm (token classification, trl) | next-token-prm | orm | verifier | none
    model: str = "runs/openr/arith-prm/prm"
    batch_size: int = 64  # solutions per forward pass
    step_tag: str = "ки"  # next-token PRM: the tag after each step (Math-Shepherd)
    good_token: str = "+"
    bad_token: str = "-"

    def __post_init__(self) -> None:
        if self.kind not in SCORERS:
            raise ValueError(f"scorer.kind must be one of {SCORERS}, got {self.kind!r}")
        if self.batch_size < 1:
            raise ValueError(f"scorer.batch_size must be >= 1, got {self.batch_size}")


@dataclass
class SFTConfig:
    run: str = "arith-sft"  # run folder runs/openr/<run>/; the policy is saved in its policy/
    init: str = "scratch"  # scratch (a new small Llama on the task's tokenizer) or a model
    train_problems: int = 4000
    epochs: float = 3.0
    batch_size: int = 64
    learning_rate: float = 1e-3  # ours: a small model from scratch
    hidden_size: int = 128
    layers: int = 4
    heads: int = 4
    seed: int = 0


@dataclass
class LabelConfig:
    run: str = "arith-labels"  # run folder runs/openr/<run>/ with labels.jsonl
    problems: int = 200  # problems whose sampled solutions are labelled
    solutions_per_problem: int = 4  # Math-Shepherd samples N solutions per problem
    rollouts: int = 8  # k completions per prefix (Math-Shepherd uses 8)
    split: str = "train"

    def __post_init__(self) -> None:
        for key in ("problems", "solutions_per_problem", "rollouts"):
            if getattr(self, key) < 1:
                raise ValueError(f"label.{key} must be >= 1, got {getattr(self, key)}")


@dataclass
class TrainPRMConfig:
    run: str = "arith-prm"  # run folder runs/openr/<run>/; the PRM is saved in its prm/
    labels: str = "runs/openr/arith-labels/labels.jsonl"
    # policy (the policy's weights with a new 2-label head, as Math-Shepherd and OpenR start
    # from an LM), scratch (a new small Llama on the arith tokenizer), or a model
    init: str = "policy"
    # question (trl/Math-Shepherd: the question, then the steps) or chat (the policy's chat
    # prompt, for a PRM initialized from the policy)
    prompt_format: str = "chat"
    # token-classification (the policy fine-tuned with a 2-label head, Math-Shepherd/trl) or
    # confidence (ours: the frozen policy's per-step confidence + a trained head; needs an
    # init model; see openr/confidence_prm.py for why arith uses it)
    architecture: str = "token-classification"
    label_kind: str = "hard"  # hard (any rollout correct) | soft (fraction correct, >= 0.5)
    outcome_only: bool = False  # train an ORM: only the last step's label (trl option)
    epochs: float = 5.0
    batch_size: int = 32
    learning_rate: float = 1e-3
    hidden_size: int = 128
    layers: int = 4
    heads: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.prompt_format not in ("question", "chat"):
            raise ValueError(
                f"train_prm.prompt_format must be question or chat, got {self.prompt_format!r}"
            )
        if self.label_kind not in ("hard", "soft"):
            raise ValueError(f"train_prm.label_kind must be hard or soft, got {self.label_kind!r}")
        if self.architecture not in PRM_ARCHITECTURES:
            raise ValueError(
                "train_prm.architecture must be token-classification or confidence, got "
                f"{self.architecture!r}"
            )
        if self.architecture == "confidence" and self.init == "scratch":
            raise ValueError("train_prm.architecture=confidence needs init=policy or a model")


@dataclass
class SearchConfig:
    methods: list[str] = field(
        default_factory=lambda: ["majority_vote", "best_of_n", "beam_search", "mcts"]
    )
    budgets: list[int] = field(default_factory=lambda: [1, 4, 16, 64])  # sampled answers
    step_aggregation: str = "min"  # how a solution's step scores become one (min/last/prod)
    answer_selection: str = "max"  # how solutions become one answer (max/vote/weighted_vote)
    beam_expansions: int = 4  # children sampled per kept beam (budget = beams x expansions)
    mcts_children: int = 4  # children sampled per expanded MCTS node
    mcts_c_puct: float = 1.25  # PUCT exploration constant (AlphaZero's value)
    mcts_evaluation: str = "prm"  # prm (value of the leaf's last step) | rollout
    chunk_size: int = 16  # problems searched together per batch
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [method for method in self.methods if method not in METHODS]
        if unknown:
            raise ValueError(f"search.methods has unknown {unknown}; choose from {METHODS}")
        if not self.budgets or min(self.budgets) < 1:
            raise ValueError(f"search.budgets must be positive integers, got {self.budgets}")
        if self.step_aggregation not in STEP_AGGREGATIONS:
            raise ValueError(
                f"search.step_aggregation must be one of {STEP_AGGREGATIONS}, got "
                f"{self.step_aggregation!r}"
            )
        if self.answer_selection not in ANSWER_SELECTIONS:
            raise ValueError(
                f"search.answer_selection must be one of {ANSWER_SELECTIONS}, got "
                f"{self.answer_selection!r}"
            )
        if self.mcts_evaluation not in ("prm", "rollout"):
            raise ValueError(
                f"search.mcts_evaluation must be prm or rollout, got {self.mcts_evaluation!r}"
            )
        if self.beam_expansions < 1 or self.mcts_children < 1 or self.chunk_size < 1:
            raise ValueError("search.beam_expansions, mcts_children and chunk_size must be >= 1")


@dataclass
class BenchConfig:
    solutions: int = 64  # solutions scored in the PRM throughput benchmark
    beam_problems: int = 8
    beam_budget: int = 16
    generation_prompts: int = 16
    repeats: int = 3


@dataclass
class OpenRConfig:
    name: str = "arith"  # run name: runs/openr/<name>-<command>/
    scale: str = "smoke"
    threads: int = 0  # torch CPU threads (0: every core this process may use)
    task: TaskConfig = field(default_factory=TaskConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    scorer: ScorerConfig = field(default_factory=ScorerConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    label: LabelConfig = field(default_factory=LabelConfig)
    train_prm: TrainPRMConfig = field(default_factory=TrainPRMConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    # reproduce: also run GSM8K with SmolLM2 at these budgets on this many problems (0: skip)
    gsm8k_problems: int = 0
    gsm8k_budgets: list[int] = field(default_factory=lambda: [1, 4])
    # reproduce asserts best-of-N with the PRM beats majority vote at this budget
    assert_budget: int = 16

    def __post_init__(self) -> None:
        if self.scale not in ("smoke", "cpu", "paper"):
            raise ValueError(f"scale must be smoke, cpu or paper, got {self.scale!r}")
