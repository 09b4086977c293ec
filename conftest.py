"""Loaded first by pytest for every test in the workspace.

The folder ``shared/`` at the root holds the ``shared`` package under ``shared/src``.
Under ``--import-mode=importlib`` pytest would register the folder itself as a
namespace module named ``shared`` while collecting ``shared/tests``; importing the
real package first keeps ``import shared`` pointing at the package.
"""

import os

import torch

import shared  # noqa: F401

# pytest-xdist runs one process per core: give each process its share of the cores, so
# that torch's thread pools do not oversubscribe the machine (tiny fits slow down 100x).
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, (os.cpu_count() or 1) // _workers))
