"""Loaded first by pytest for every test in the workspace.

The folder ``shared/`` at the root holds the ``shared`` package under ``shared/src``.
Under ``--import-mode=importlib`` pytest would register the folder itself as a
namespace module named ``shared`` while collecting ``shared/tests``; importing the
real package first keeps ``import shared`` pointing at the package.
"""

import shared  # noqa: F401
