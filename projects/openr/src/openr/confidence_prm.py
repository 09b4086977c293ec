"""A PRM that reads its policy's confidence: frozen policy, per-step confidence, small head.

Why it exists. A PRM fine-tuned from a small policy must learn to redo a step's arithmetic
to tell whether the step is right. On ``arith`` a 3-layer policy's mistakes are sampling
slips (at temperature 1 it writes ``20-5=16`` although greedy decoding writes ``15``), and
a token-classification PRM fine-tuned from that policy on thousands of labelled steps does
not learn the check within a CPU budget (measured in the project README: step accuracy
0.73 and best-of-16 below a single sample, even with 16,000 exactly labelled solutions).
The policy's own next-token distribution, however, already flags the slip. This PRM keeps
the policy frozen and trains only a head on

- the policy's last hidden state at every position (what the step says), and
- the step's confidence so far: the running minimum and mean of ``log p(token)`` and the
  running minimum of ``log p(token) - max_v log p(v)`` (how far each written token was
  from the policy's first choice), reset after every step separator and after the prompt.

It is a token-classification model with two labels read at each step's separator, so trl's
``PRMTrainer`` trains it on Math-Shepherd labels and :class:`openr.prm.TokenClassificationPRM`
scores with it unchanged. It is registered with transformers' Auto classes, so
``AutoModelForTokenClassification.from_pretrained(folder)`` loads a saved one.

Limitation: the backbone must be a Llama-architecture causal LM (the arith policy and
SmolLM2 are); the confidence is the policy's, so this PRM judges solutions of that policy
(or of policies like it), not of arbitrary writers.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForTokenClassification,
    LlamaConfig,
    LlamaModel,
    LlamaPreTrainedModel,
)
from transformers.modeling_outputs import TokenClassifierOutput

CONFIDENCE_FEATURES = 5  # step: min log p, mean log p, min gap to argmax; solution: min, gap
CONFIDENCE_CLIP, CONFIDENCE_SCALE = 20.0, 5.0  # the head sees max(feature, -20) / 5


class ConfidencePRMConfig(LlamaConfig):
    """A Llama config plus the token ids that end a step and that start the solution."""

    model_type = "openr_confidence_prm"

    def __init__(
        self,
        step_reset_ids: list[int] | None = None,
        solution_start_ids: list[int] | None = None,
        **kwargs,
    ):
        kwargs.setdefault("num_labels", 2)
        kwargs["tie_word_embeddings"] = False  # the LM head is a frozen copy, saved as such
        super().__init__(**kwargs)
        self.step_reset_ids = list(step_reset_ids or [])
        self.solution_start_ids = list(solution_start_ids or [])


def step_confidence(
    log_probs: torch.Tensor,
    input_ids: torch.Tensor,
    step_reset_ids: list[int],
    solution_start_ids: list[int],
) -> torch.Tensor:
    """(batch, length, 5) running confidence of the current step and solution at every position.

    ``log_probs`` (batch, length, vocab) are the policy's next-token log-probabilities; the
    token at position t is judged by the distribution at t - 1 (position 0 counts as fully
    confident). A step runs from just after a step-reset token up to and including the next
    one, so a separator's features cover exactly the step it ends. The solution runs from
    just after the first solution-start token (the end of the prompt) on: a step after an
    earlier slip is locally right but wrong in Math-Shepherd's sense, and only the solution's
    running minimum shows it. Features: step min log p, step mean log p, step min gap to the
    argmax, solution min log p, solution min gap (0 before the solution starts).
    """
    batch, length = input_ids.shape
    written = torch.zeros(batch, length, dtype=log_probs.dtype, device=log_probs.device)
    gap = torch.zeros_like(written)
    # log p of the written token and its distance from the policy's first choice
    previous = log_probs[:, :-1]
    written[:, 1:] = previous.gather(-1, input_ids[:, 1:, None])[..., 0]
    gap[:, 1:] = written[:, 1:] - previous.max(dim=-1).values
    step_ends = torch.zeros_like(input_ids, dtype=torch.bool)
    solution_starts = torch.zeros_like(step_ends)
    for token in step_reset_ids:
        step_ends |= input_ids == token
    for token in solution_start_ids:
        solution_starts |= input_ids == token
    step_ends |= solution_starts

    # running statistics, the step's restarted after each step end
    features = torch.zeros(batch, length, CONFIDENCE_FEATURES, dtype=written.dtype)
    features = features.to(written.device)
    zeros = torch.zeros(batch, dtype=written.dtype, device=written.device)
    step_min, step_gap, step_sum, step_count = zeros, zeros, zeros, zeros
    solution_min, solution_gap = zeros, zeros
    in_solution = torch.zeros(batch, dtype=torch.bool, device=written.device)
    solution_fresh = torch.zeros_like(in_solution)
    for t in range(length):
        # a step-end token is not judged: PRM inputs put a separator after the last step
        # too, where the policy wrote end-of-sequence, so its log p says nothing
        judged = ~step_ends[:, t]
        fresh = step_count == 0
        step_min = torch.where(
            judged, torch.where(fresh, written[:, t], step_min.minimum(written[:, t])), step_min
        )
        step_gap = torch.where(
            judged, torch.where(fresh, gap[:, t], step_gap.minimum(gap[:, t])), step_gap
        )
        step_sum = step_sum + torch.where(judged, written[:, t], zeros)
        step_count = step_count + judged.to(step_count.dtype)
        first = in_solution & solution_fresh & judged
        going = in_solution & ~solution_fresh & judged
        running_min = torch.where(going, solution_min.minimum(written[:, t]), solution_min)
        solution_min = torch.where(first, written[:, t], running_min)
        solution_gap = torch.where(
            first, gap[:, t], torch.where(going, solution_gap.minimum(gap[:, t]), solution_gap)
        )
        solution_fresh = solution_fresh & ~first
        step_mean = step_sum / step_count.clamp(min=1)
        features[:, t] = torch.stack(
            [step_min, step_mean, step_gap, solution_min, solution_gap], dim=-1
        )
        # what restarts at the next position
        step_sum = torch.where(step_ends[:, t], zeros, step_sum)
        step_count = torch.where(step_ends[:, t], zeros, step_count)
        starting = solution_starts[:, t] & ~in_solution
        solution_fresh = solution_fresh | starting
        in_solution = in_solution | starting
    return features


class ConfidencePRM(LlamaPreTrainedModel):
    """Frozen policy (backbone and LM head) plus a trained head on state and confidence."""

    config_class = ConfidencePRMConfig

    def __init__(self, config: ConfidencePRMConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = LlamaModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        width = config.hidden_size
        self.score = nn.Sequential(
            nn.Linear(width + CONFIDENCE_FEATURES, width),
            nn.GELU(),
            nn.Linear(width, config.num_labels),
        )
        self.post_init()
        # the head's default PyTorch initialization, not Llama's std-0.02 normal: with
        # weights that small the confidence inputs barely move the verdict for hundreds
        # of steps
        for layer in self.score:
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()
        self.freeze_policy()

    def freeze_policy(self) -> None:
        for parameter in [*self.model.parameters(), *self.lm_head.parameters()]:
            parameter.requires_grad_(False)

    @classmethod
    def from_policy(
        cls, policy, step_reset_ids: list[int], solution_start_ids: list[int]
    ) -> ConfidencePRM:
        """A new PRM on a loaded Llama causal LM ``policy``; only the head is untrained."""
        settings = policy.config.to_dict()
        # the policy's own identity and head settings; ours are set by ConfidencePRMConfig
        for key in (
            "architectures",
            "model_type",
            "tie_word_embeddings",
            "num_labels",
            "id2label",
            "label2id",
        ):
            settings.pop(key, None)
        config = ConfidencePRMConfig(
            step_reset_ids=step_reset_ids, solution_start_ids=solution_start_ids, **settings
        )
        model = cls(config)
        model.model.load_state_dict(policy.model.state_dict())
        model.lm_head.weight.data.copy_(policy.get_output_embeddings().weight.data)
        model.freeze_policy()
        return model

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> TokenClassifierOutput:
        # what the frozen policy reads and how sure it was of every written token
        with torch.no_grad():
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask)
            hidden = hidden.last_hidden_state
            log_probs = self.lm_head(hidden).float().log_softmax(dim=-1)
            confidence = step_confidence(
                log_probs, input_ids, self.config.step_reset_ids, self.config.solution_start_ids
            )
            # log-probabilities of clear slips reach -20 and below: squash to about [-4, 0]
            confidence = confidence.clamp(min=-CONFIDENCE_CLIP) / CONFIDENCE_SCALE

        # the verdict on each position from both
        logits = self.score(torch.cat([hidden, confidence.to(hidden.dtype)], dim=-1))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(
                logits.view(-1, self.num_labels).float(), labels.view(-1), ignore_index=-100
            )
        return TokenClassifierOutput(loss=loss, logits=logits)


def boundary_token_ids(tokenizer, step_delimiter: str, chat: bool) -> tuple[list[int], list[int]]:
    """(step-reset ids, solution-start ids) for PRM inputs built with ``tokenizer``.

    A step ends with the delimiter's last token. The solution starts after the chat
    generation prompt's last token (``chat``), else after the delimiter that ends the
    question (trl's format: question, delimiter, steps). That token must occur once in a
    chat prompt, or the solution's statistics would start inside the prompt.
    """
    step_ids = [tokenizer.encode(step_delimiter, add_special_tokens=False)[-1]]
    if not chat:
        return step_ids, step_ids
    if not tokenizer.chat_template:
        raise ValueError("a chat-format confidence PRM needs a tokenizer with a chat template")
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "1"}], add_generation_prompt=True, tokenize=False
    )
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
    if prompt_ids.count(prompt_ids[-1]) != 1:
        raise ValueError(
            f"the chat prompt's last token {tokenizer.convert_ids_to_tokens(prompt_ids[-1])!r} "
            "also occurs earlier in the prompt, so the confidence PRM cannot tell where the "
            "solution starts; use train_prm.prompt_format=question"
        )
    return step_ids, [prompt_ids[-1]]


AutoConfig.register(ConfidencePRMConfig.model_type, ConfidencePRMConfig)
AutoModelForTokenClassification.register(ConfidencePRMConfig, ConfidencePRM)
