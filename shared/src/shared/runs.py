"""Run folders: ``runs/<project>/<name>/`` with the resolved config, metrics and results.

A run folder holds

- ``config.yaml``: the resolved config, written when the run starts;
- ``metrics.jsonl``: one JSON object per line, appended and flushed as training goes;
- ``results.json`` and ``results.md``: the final numbers and their tables, written
  atomically at the end (their presence marks the run as finished);
- ``checkpoints/``: whatever the trainer saves.

Resuming reopens the folder after checking that the config is the same; a half-written
last metrics line (a crash in the middle of a write) is cut off, never parsed.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from shared.config import ConfigError, config_differences, save_config, to_dict

log = logging.getLogger(__name__)

RUNS_ENV_VAR = "PAPERSTACK_RUNS"


class RunExistsError(FileExistsError):
    """A run folder already exists and resuming was not asked for."""


def runs_root() -> Path:
    """``$PAPERSTACK_RUNS``, else ``runs/`` in the current directory."""
    return Path(os.environ.get(RUNS_ENV_VAR, "runs"))


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy and torch scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


class Run:
    """One run folder. Create it with :meth:`start`."""

    def __init__(self, path: Path, config: dict[str, Any]):
        self.path = path
        self.config = config

    @classmethod
    def start(
        cls,
        project: str,
        name: str,
        config: Any,
        root: str | Path | None = None,
        resume: bool = False,
    ) -> Run:
        """Create ``<root>/<project>/<name>``, or reopen it when ``resume`` is true.

        Reopening checks that ``config`` equals the saved one; a different config is a
        different experiment and gets its own name.
        """
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"run name must be a plain folder name, got {name!r}")
        path = Path(root or runs_root()) / project / name
        config_path = path / "config.yaml"
        resolved = to_dict(config)
        if config_path.exists():
            if not resume:
                raise RunExistsError(
                    f"run folder {path} already exists; resume it with --resume, or choose "
                    "another run name (name=...)"
                )
            saved = OmegaConf.to_container(OmegaConf.load(config_path), resolve=True)
            differences = config_differences(saved, resolved)  # type: ignore[arg-type]
            if differences:
                raise ConfigError(
                    f"cannot resume {path}: its config differs from this one in "
                    + "; ".join(differences)
                    + ". Resume with the same config, or start a run with another name"
                )
            log.info("resuming run %s", path)
        else:
            if resume:
                log.info("nothing to resume at %s: starting a new run", path)
            path.mkdir(parents=True, exist_ok=True)
            save_config(config, config_path)
            log.info("run folder %s", path)
        run = cls(path, resolved)
        run._repair_metrics()
        return run

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoint_dir(self) -> Path:
        directory = self.path / "checkpoints"
        directory.mkdir(exist_ok=True)
        return directory

    @property
    def finished(self) -> bool:
        return (self.path / "results.json").exists()

    def _repair_metrics(self) -> None:
        """Cut a half-written last line left by a crash, so appends start on a clean line."""
        if not self.metrics_path.exists():
            return
        data = self.metrics_path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            log.warning("dropping a half-written metrics line in %s", self.metrics_path)
            with open(self.metrics_path, "r+b") as handle:
                handle.truncate(cut)

    def log_metrics(self, step: int, **values: float) -> None:
        """Append one line ``{"step": step, "time": ..., **values}`` to ``metrics.jsonl``."""
        record = {"step": step, "time": round(time.time(), 3), **values}
        line = json.dumps(record, default=_json_default, allow_nan=True)
        with open(self.metrics_path, "a") as handle:
            handle.write(line + "\n")
            handle.flush()

    def metrics(self) -> list[dict[str, Any]]:
        """All complete metric lines logged so far."""
        if not self.metrics_path.exists():
            return []
        records = []
        for line in self.metrics_path.read_text().splitlines():
            if line.strip():
                records.append(json.loads(line))
        return records

    def write_results(self, results: Mapping[str, Any], markdown: str) -> None:
        """Write ``results.json`` and ``results.md``; the JSON goes last and marks the run done."""
        write_atomic(self.path / "results.md", markdown.rstrip() + "\n")
        text = json.dumps(results, indent=2, default=_json_default, allow_nan=True)
        write_atomic(self.path / "results.json", text + "\n")
        log.info("results written to %s", self.path / "results.md")

    def read_results(self) -> dict[str, Any]:
        return json.loads((self.path / "results.json").read_text())


def _format_cell(value: Any, digits: int) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value).replace("|", "\\|")


def markdown_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, digits: int = 4
) -> str:
    """A GitHub Markdown table of ``rows`` (dicts), floats rounded to ``digits``."""
    if not rows:
        return "_(no rows)_"
    columns = list(columns or dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    for row in rows:
        cells = [_format_cell(row.get(column, ""), digits) for column in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
