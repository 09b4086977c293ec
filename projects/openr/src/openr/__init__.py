"""OpenR (Wang et al., 2024): process reward models and PRM-guided search for LLM reasoning."""

import os

# we use trl's PRMTrainer knowingly from trl.experimental (pinned below trl 1.14)
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
