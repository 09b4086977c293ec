"""One report from many runs: ``runs/report.md`` gathers each project's reproduction."""

from __future__ import annotations

import datetime
import json
import logging
import re
from pathlib import Path

from shared.runs import markdown_table, write_atomic

log = logging.getLogger(__name__)

_IMAGE_LINK = re.compile(r"(!\[[^\]]*\]\()(?!https?://|/)([^)]+)\)")


def reproduction_folder_name(scale: str) -> str:
    """The run name every project's ``reproduce`` writes to: ``reproduce-<scale>``."""
    return f"reproduce-{scale}"


def _relink_images(markdown: str, prefix: str) -> str:
    """Make relative image links in a run's results.md relative to the report instead."""
    return _IMAGE_LINK.sub(lambda match: f"{match.group(1)}{prefix}/{match.group(2)})", markdown)


def _demote_headings(markdown: str) -> str:
    return re.sub(r"^(#+) ", lambda match: "#" + match.group(1) + " ", markdown, flags=re.M)


def gather_report(runs_root: Path, scale: str, sections: list[tuple[str, str]]) -> Path:
    """Write ``runs_root/report.md`` from the given ``(title, run folder name)`` sections.

    ``sections`` pairs a project name with its run name; missing runs are listed as such,
    so a report never hides a project that failed to produce results.
    """
    parts = [
        f"# paperstack report ({scale} scale)",
        "",
        f"Generated {datetime.datetime.now().isoformat(timespec='seconds')} by "
        "`make reproduce`. Each section is one project's `results.md`; numbers at smoke "
        "scale check the direction of each effect, not the papers' values.",
        "",
    ]
    summary = []
    for project, run_name in sections:
        folder = runs_root / project / run_name
        results_md = folder / "results.md"
        if not results_md.exists():
            summary.append({"project": project, "status": "no results", "run": str(folder)})
            continue
        results = json.loads((folder / "results.json").read_text())
        status = "ok" if results.get("passed", True) else "checks failed"
        summary.append({"project": project, "status": status, "run": str(folder)})
        body = _relink_images(results_md.read_text(), f"{project}/{run_name}")
        parts += [f"## {project}", "", _demote_headings(body).strip(), ""]
    parts[4:4] = [markdown_table(summary), ""]
    report = runs_root / "report.md"
    write_atomic(report, "\n".join(parts))
    log.info("report written to %s", report)
    return report
