from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from shared.device import (
    DeviceUnavailableError,
    Timer,
    autocast_dtype,
    peak_memory_mb,
    seed_everything,
    select_device,
    select_precision,
    set_threads,
)


def test_auto_picks_an_available_device():
    device = select_device("auto")
    expected = "cuda" if torch.cuda.is_available() else None
    assert device.type == (expected or device.type)
    assert select_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_explicit_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(DeviceUnavailableError, match="use device=auto or device=cpu"):
        select_device("cuda")


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "cpu:1", ""])
def test_unknown_device_names_are_rejected(bad):
    with pytest.raises(ValueError, match="device must be one of"):
        select_device(bad)


def test_cpu_precision_is_fp32_and_fp16_on_cpu_is_refused():
    cpu = torch.device("cpu")
    assert select_precision(cpu) == "32-true"
    assert select_precision(cpu, "bf16-mixed") == "bf16-mixed"
    with pytest.raises(DeviceUnavailableError, match="16-mixed"):
        select_precision(cpu, "16-mixed")
    with pytest.raises(ValueError, match="precision must be one of"):
        select_precision(cpu, "fp8")
    assert autocast_dtype("bf16-mixed") is torch.bfloat16
    assert autocast_dtype("32-true") is None


def test_seeding_repeats_python_numpy_and_torch_draws():
    seed_everything(123)
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(123)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first
    with pytest.raises(ValueError, match="seed"):
        seed_everything(-1)


def test_threads_and_timer_and_memory_report():
    previous = torch.get_num_threads()
    try:
        assert set_threads(1) == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(previous)
    with Timer(items=10) as timer:
        sum(range(10_000))
    assert timer.seconds > 0
    assert timer.items_per_second == pytest.approx(10 / timer.seconds)
    assert peak_memory_mb()["peak_rss_mb"] > 10
