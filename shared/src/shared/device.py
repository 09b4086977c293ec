"""Device and precision selection, seeding, threads, and a timer and memory report."""

from __future__ import annotations

import logging
import os
import random
import resource
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch

log = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
PRECISION_CHOICES = ("auto", "32-true", "bf16-mixed", "16-mixed", "bf16-true")


class DeviceUnavailableError(RuntimeError):
    """A device was requested explicitly but this machine does not have it."""


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def select_device(requested: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit request that cannot be met fails.

    ``requested`` is ``auto``, ``cpu``, ``cuda``, ``cuda:<index>`` or ``mps``.
    """
    kind, _, index = requested.partition(":")
    if kind not in DEVICE_CHOICES or (index and (kind != "cuda" or not index.isdigit())):
        raise ValueError(
            f"device must be one of auto, cpu, cuda, cuda:<index>, mps; got {requested!r}"
        )
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        wanted = int(index or 0)
        if wanted >= count:
            raise DeviceUnavailableError(
                f"device {requested!r} was requested but this machine has {count} CUDA "
                "device(s); use device=auto or device=cpu, or run on a machine with a GPU"
            )
    if kind == "mps" and not _mps_available():
        raise DeviceUnavailableError(
            "device 'mps' was requested but Apple's Metal backend is not available here; "
            "use device=auto or device=cpu"
        )
    return torch.device(requested)


def bf16_is_fast(device: torch.device) -> bool:
    """bf16 pays off on CUDA GPUs with native bf16 (Ampere, compute capability 8.0, and newer).

    On CPUs and Apple GPUs bf16 autocast is usually slower than fp32, so it is not chosen
    automatically there.
    """
    if device.type != "cuda":
        return False
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8 and torch.cuda.is_bf16_supported()


def select_precision(device: torch.device, requested: str = "auto") -> str:
    """A Lightning precision string: ``bf16-mixed`` where the hardware does it well, else fp32."""
    if requested not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {PRECISION_CHOICES}, got {requested!r}")
    if requested == "auto":
        return "bf16-mixed" if bf16_is_fast(device) else "32-true"
    if requested.startswith("bf16") and device.type == "cuda" and not bf16_is_fast(device):
        raise DeviceUnavailableError(
            f"precision {requested!r} needs a GPU with bf16 support (compute capability "
            ">= 8.0); use precision=auto, 16-mixed or 32-true"
        )
    if requested == "16-mixed" and device.type == "cpu":
        raise DeviceUnavailableError(
            "precision '16-mixed' is not supported on the CPU; use precision=auto or 32-true"
        )
    return requested


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a precision string, or None for full precision."""
    return {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch (all devices); optionally ask for deterministic kernels."""
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def set_threads(num_threads: int | None = None) -> int:
    """Set torch's intra-op threads (default: the CPUs this process may use) and return it."""
    if num_threads is None:
        affinity = getattr(os, "sched_getaffinity", None)
        num_threads = len(affinity(0)) if affinity else os.cpu_count() or 1
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    torch.set_num_threads(num_threads)
    return num_threads


def describe(device: torch.device, precision: str) -> str:
    """One line for the log: device name, precision and threads."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    elif device.type == "mps":
        name = "Apple GPU"
    else:
        name = f"CPU, {torch.get_num_threads()} threads"
    return f"{device} ({name}), precision {precision}"


def peak_memory_mb(device: torch.device | None = None) -> dict[str, float]:
    """Peak resident memory of this process and, on CUDA, peak allocated device memory (MiB)."""
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in KiB on Linux and in bytes on macOS
    rss_mb = rss_kb / 1024 if sys.platform != "darwin" else rss_kb / 2**20
    report = {"peak_rss_mb": round(rss_mb, 1)}
    if device is not None and device.type == "cuda":
        report["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return report


@dataclass
class Timer:
    """Wall-clock timer; synchronises CUDA so GPU work is counted.

    >>> with Timer(items=512) as timer:
    ...     pass
    >>> timer.seconds, timer.items_per_second
    """

    items: int = 0
    device: torch.device | None = None
    seconds: float = field(default=0.0, init=False)
    _start: float = field(default=0.0, init=False, repr=False)

    def _sync(self) -> None:
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __enter__(self) -> Timer:
        self._sync()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sync()
        self.seconds = time.perf_counter() - self._start

    @property
    def items_per_second(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else float("nan")
