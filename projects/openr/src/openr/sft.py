"""Supervised fine-tuning of a policy on a task's worked solutions, through trl's SFTTrainer.

For ``arith`` the policy is a small Llama trained from scratch on the character-level
tokenizer of :mod:`openr.arith`: after a minute or two on a CPU it solves most chains
but still slips on some additions and products, which is what PRM-guided search needs (a
policy that is always right leaves nothing to search for).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from openr.models import chat_prompt, load_model, load_tokenizer
from openr.tasks import Task

log = logging.getLogger(__name__)


def small_llama_config(tokenizer, hidden_size: int, layers: int, heads: int, num_labels: int = 0):
    """A transformers LlamaConfig for a small model on ``tokenizer``'s vocabulary."""
    from transformers import LlamaConfig

    if hidden_size % heads:
        raise ValueError(f"hidden_size {hidden_size} must be divisible by heads {heads}")
    extra = {"num_labels": num_labels} if num_labels else {}
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
        **extra,
    )


def task_tokenizer(task: Task, init: str):
    """The tokenizer a model trained on ``task`` uses: the arith one from scratch, else init's."""
    if init == "scratch":
        if task.name != "arith":
            raise ValueError(
                f"init=scratch builds a character-level model for arith only; for task "
                f"{task.name!r} give a pretrained model (sft.init=smollm2 or a folder)"
            )
        from openr.arith import arith_tokenizer

        return arith_tokenizer()
    return load_tokenizer(init, require_chat_template=True)


def sft_dataset(task: Task, tokenizer, problems):
    """trl prompt-completion rows: the chat prompt and the worked solution."""
    from datasets import Dataset

    rows = []
    for problem in problems:
        solution = task.reference_solution(problem)
        if solution is None:
            continue
        rows.append({"prompt": chat_prompt(tokenizer, task, problem), "completion": solution})
    if not rows:
        raise ValueError(f"task {task.name!r} has no worked solutions to fine-tune on")
    skipped = len(problems) - len(rows)
    if skipped:
        log.warning(
            "%d of %d problems have no worked solution and were skipped", skipped, len(problems)
        )
    return Dataset.from_list(rows)


def train_policy(
    task: Task,
    output_dir: Path,
    *,
    init: str = "scratch",
    train_problems: int = 4000,
    epochs: float = 3.0,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    hidden_size: int = 128,
    layers: int = 4,
    heads: int = 4,
    seed: int = 0,
    device: torch.device | None = None,
    resume: bool = False,
) -> Path:
    """Fine-tune (or train from scratch) a policy on the task's train split; returns its folder."""
    from transformers import LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    device = device or torch.device("cpu")
    tokenizer = task_tokenizer(task, init)
    problems = task.problems("train", train_problems)
    dataset = sft_dataset(task, tokenizer, problems)
    log.info("SFT on %d %s solutions (init: %s)", len(dataset), task.name, init)

    if init == "scratch":
        torch.manual_seed(seed)
        model = LlamaForCausalLM(small_llama_config(tokenizer, hidden_size, layers, heads))
    else:
        model = load_model(init, "causal-lm", device)
    checkpoints = output_dir / "checkpoints" / "sft"
    args = SFTConfig(
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
        dataloader_num_workers=0,
        max_length=512,
        disable_tqdm=False,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    last = _last_checkpoint(checkpoints) if resume else None
    trainer.train(resume_from_checkpoint=last)
    write_log_history(trainer, output_dir / "sft_log.json")
    policy_dir = output_dir / "policy"
    trainer.save_model(str(policy_dir))
    tokenizer.save_pretrained(str(policy_dir))
    log.info("policy saved to %s", policy_dir)
    return policy_dir


def write_log_history(trainer, path: Path) -> None:
    """The trainer's logged losses and learning rates, as JSON (the training curve)."""
    import json

    path.write_text(json.dumps(trainer.state.log_history, indent=1) + "\n")


def _last_checkpoint(folder: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    if not folder.is_dir():
        return None
    last = get_last_checkpoint(str(folder))
    if last:
        log.info("resuming from %s", last)
    return last
