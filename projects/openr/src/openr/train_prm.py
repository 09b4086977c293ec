"""PRM (and ORM) training on stepwise-supervision rows, through trl's ``PRMTrainer``.

The rows are :mod:`openr.labels`' output (``prompt``, ``completions``, ``labels``). The PRM
is a token classifier with two labels read at the last token of each step; for ``arith``
it is a small Llama trained from scratch on the character tokenizer, otherwise any model
fine-tuned with a fresh two-label head. ``outcome_only`` trains an outcome reward model
instead: only the last step's label, set to the solution's outcome (trl's
``train_on_last_step_only``).
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import torch

from openr.config import PRM_ARCHITECTURES
from openr.labels import read_labels
from openr.prm import PRM_SETTINGS_FILE, prm_prompt, without_bos
from openr.sft import _last_checkpoint, small_llama_config, task_tokenizer, write_log_history
from openr.tasks import Problem, Task

log = logging.getLogger(__name__)


def stepwise_dataset(
    rows: list[dict],
    label_kind: str = "hard",
    outcome_only: bool = False,
    seed: int = 0,
    prompt_of=None,
):
    """A ``datasets.Dataset`` in trl's stepwise-supervision format from label rows.

    ``soft`` turns the fraction of successful rollouts into a label by ``>= 0.5``.
    Classes are balanced by repeating the rarer class's solutions, so a policy that is
    mostly right does not teach the PRM to call every step right.
    """
    from datasets import Dataset

    if label_kind not in ("hard", "soft"):
        raise ValueError(f"label_kind must be hard or soft, got {label_kind!r}")
    examples = []
    for row in rows:
        if label_kind == "soft" and "soft_labels" not in row:
            raise ValueError("label_kind=soft needs rows with soft_labels (from openr label)")
        labels = (
            [value >= 0.5 for value in row["soft_labels"]]
            if label_kind == "soft"
            else [bool(value) for value in row["labels"]]
        )
        if outcome_only:
            outcome = bool(row.get("outcome", labels[-1]))
            labels = [outcome] * len(labels)
        prompt = prompt_of(row) if prompt_of is not None else row["prompt"]
        examples.append({"prompt": prompt, "completions": row["completions"], "labels": labels})
    if not examples:
        raise ValueError("no labelled solutions to train on")

    # balance: solutions with a wrong step against fully right ones
    flawed = [e for e in examples if not all(e["labels"])]
    clean = [e for e in examples if all(e["labels"])]
    rng = random.Random(seed)
    if flawed and clean:
        small, large = sorted([flawed, clean], key=len)
        examples = large + small + [rng.choice(small) for _ in range(len(large) - len(small))]
    rng.shuffle(examples)
    log.info(
        "PRM data: %d solutions (%d with a wrong step, %d without) after balancing",
        len(examples),
        sum(not all(e["labels"]) for e in examples),
        sum(all(e["labels"]) for e in examples),
    )
    return Dataset.from_list(examples)


def train_prm(
    task: Task,
    labels_path: Path,
    output_dir: Path,
    *,
    init: str = "scratch",
    label_kind: str = "hard",
    outcome_only: bool = False,
    epochs: float = 5.0,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    hidden_size: int = 128,
    layers: int = 4,
    heads: int = 4,
    seed: int = 0,
    prompt_format: str = "question",
    architecture: str = "token-classification",
    device: torch.device | None = None,
    resume: bool = False,
) -> Path:
    """Train a PRM (or ORM) with trl's PRMTrainer; returns the saved model's folder."""
    from transformers import AutoModelForTokenClassification, LlamaForTokenClassification
    from trl.experimental.prm import PRMConfig, PRMTrainer

    # settings first: a bad one fails before labels are read or a model is loaded
    if architecture not in PRM_ARCHITECTURES:
        raise ValueError(
            f"PRM architecture must be one of {PRM_ARCHITECTURES}, got {architecture!r}"
        )
    if architecture == "confidence" and init == "scratch":
        raise ValueError(
            "architecture=confidence reads a policy's confidence: set init to the policy "
            "(init=policy) or a model path, not scratch"
        )

    device = device or torch.device("cpu")
    rows = read_labels(labels_path)
    tokenizer = task_tokenizer(task, init)
    tokenizer.padding_side = "right"
    # a PRM that starts from a chat policy reads the solution in the policy's chat format
    chat = prompt_format == "chat"
    if chat and not tokenizer.chat_template:
        raise ValueError("prompt_format=chat needs a tokenizer with a chat template")
    if chat:
        # the PRM reads the chat prompt as the policy did, without trl's extra BOS; the saved
        # tokenizer keeps that, and the scorer strips it again for older PRM folders
        tokenizer = without_bos(tokenizer)

    def chat_prompt_of(row: dict) -> str:
        if "question" not in row:
            raise ValueError("prompt_format=chat needs label rows with a 'question' field")
        return prm_prompt(task, Problem("", row["question"], ""), tokenizer)

    dataset = stepwise_dataset(
        rows, label_kind, outcome_only, seed, chat_prompt_of if chat else None
    )
    if architecture == "confidence":
        from transformers import AutoModelForCausalLM

        from openr.confidence_prm import ConfidencePRM, boundary_token_ids
        from openr.models import _source

        torch.manual_seed(seed)
        source, kwargs = _source(init)
        policy = AutoModelForCausalLM.from_pretrained(source, **kwargs)
        model = ConfidencePRM.from_policy(
            policy, *boundary_token_ids(tokenizer, task.step_delimiter, chat)
        )
    elif init == "scratch":
        torch.manual_seed(seed)
        config = small_llama_config(tokenizer, hidden_size, layers, heads, num_labels=2)
        model = LlamaForTokenClassification(config)
    else:
        from openr.models import _source

        source, kwargs = _source(init)
        model = AutoModelForTokenClassification.from_pretrained(source, num_labels=2, **kwargs)
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
    checkpoints = output_dir / "checkpoints" / ("orm" if outcome_only else "prm")
    args = PRMConfig(
        output_dir=str(checkpoints),
        num_train_epochs=epochs,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        weight_decay=0.01,
        logging_steps=0.05,  # every 5% of training
        save_strategy="steps",
        save_steps=200,
        save_total_limit=1,
        report_to="none",
        seed=seed,
        use_cpu=device.type == "cpu",
        bf16=device.type == "cuda",
        step_separator=task.step_delimiter,
        train_on_last_step_only=outcome_only,
        max_length=512,
        dataloader_num_workers=0,
    )
    trainer = PRMTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.train(resume_from_checkpoint=_last_checkpoint(checkpoints) if resume else None)
    write_log_history(trainer, output_dir / f"{'orm' if outcome_only else 'prm'}_log.json")
    folder = output_dir / ("orm" if outcome_only else "prm")
    trainer.save_model(str(folder))
    tokenizer.save_pretrained(str(folder))
    (folder / PRM_SETTINGS_FILE).write_text(json.dumps({"prompt_format": prompt_format}) + "\n")
    log.info("%s saved to %s", "ORM" if outcome_only else "PRM", folder)
    return folder
