import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"


@pytest.mark.slow
def test_lightning_ddp_on_two_cpu_processes_trains_and_evaluates(tmp_path):
    env = {**os.environ, "PAPERSTACK_RUNS": str(tmp_path)}
    command = [
        sys.executable, "-m", "tico.cli", "train", "--config", str(CONFIG), "name=ddp",
        "trainer.strategy=ddp", "trainer.devices=2", "trainer.accelerator=cpu",
        "trainer.max_steps=3", "data.train_images=500", "data.test_images=200",
        "data.batch_size=32", "model.width=8", "data.num_workers=0", "eval.linear_max_iter=20",
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "tico" / "ddp" / "results.json").read_text())
    # three steps of 32 images on each of two processes
    assert results["steps"] == 3
    assert results["images_seen"] == 192
