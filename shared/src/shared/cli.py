"""``shared``: data and metric self-checks, the embedded subsets, the workspace report."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from shared.commands import run_command, setup_logging

log = logging.getLogger("shared")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shared",
        description="paperstack's shared layer: data and metric self-checks, embedded data, "
        "the workspace report",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    selfcheck = commands.add_parser(
        "selfcheck", help="load every dataset and check every metric; write a report"
    )
    selfcheck.add_argument("--runs", type=Path, default=None, help="runs folder (default runs/)")

    commands.add_parser("verify-data", help="check the embedded subsets against their checksums")

    rebuild = commands.add_parser(
        "rebuild-data", help="rebuild the embedded subsets from the full files"
    )
    rebuild.add_argument(
        "--from", dest="mirror", type=Path, required=True, help="folder with the full datasets"
    )
    rebuild.add_argument(
        "--out", type=Path, default=None, help="output folder (default: the embedded folder)"
    )
    rebuild.add_argument(
        "--check",
        action="store_true",
        help="rebuild into a temporary folder and compare with the embedded files bit for bit",
    )

    report = commands.add_parser("report", help="gather every project's reproduction")
    report.add_argument("--scale", default="smoke", choices=["smoke", "cpu", "paper"])
    report.add_argument("--runs", type=Path, default=None, help="runs folder (default runs/)")

    bench = commands.add_parser("bench", help="throughput of the metrics and loaders")
    bench.add_argument("--runs", type=Path, default=None, help="runs folder (default runs/)")
    return parser


def _verify_data() -> int:
    from shared.data.embedded_subsets import check
    from shared.data.locations import EMBEDDED_ROOT, embedded_manifest

    problems = check()
    if problems:
        print(f"embedded data in {EMBEDDED_ROOT} has problems:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        print(
            "restore the files with `git checkout -- shared/src/shared/embedded` or rebuild "
            "them with `uv run shared rebuild-data --from <mirror>`",
            file=sys.stderr,
        )
        return 1
    files = embedded_manifest()
    total = sum(entry["bytes"] for entry in files.values())
    print(f"{len(files)} embedded files, {total / 1e6:.1f} MB, all match MANIFEST.json")
    return 0


def _rebuild_data(mirror: Path, out: Path | None, check_only: bool) -> int:
    from shared.data.embedded_subsets import rebuild
    from shared.data.locations import EMBEDDED_ROOT

    if not mirror.is_dir():
        print(
            f"error: --from {mirror} is not a folder; pass the folder with the full "
            "datasets (laid out like the offline mirror)",
            file=sys.stderr,
        )
        return 2
    if not check_only:
        rebuild(mirror, out or EMBEDDED_ROOT)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        rebuild(mirror, Path(tmp))
        rebuilt = {p.relative_to(tmp): p.read_bytes() for p in Path(tmp).rglob("*") if p.is_file()}
        embedded = {
            p.relative_to(EMBEDDED_ROOT): p.read_bytes()
            for p in EMBEDDED_ROOT.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }
    differing = sorted(
        str(path)
        for path in set(rebuilt) | set(embedded)
        if rebuilt.get(path) != embedded.get(path)
    )
    if differing:
        print(
            "rebuilt subsets differ from the embedded ones in: " + ", ".join(differing),
            file=sys.stderr,
        )
        return 1
    print(f"rebuilt {len(rebuilt)} files: identical to the embedded subsets, bit for bit")
    return 0


def _report(scale: str, runs: Path | None) -> int:
    from shared.report import gather_report, reproduction_folder_name
    from shared.runs import runs_root

    root = runs or runs_root()
    projects = sorted(path.parent.name for path in Path("projects").glob("*/pyproject.toml"))
    sections = [("shared", "selfcheck")]
    sections += [(project, reproduction_folder_name(scale)) for project in projects]
    report = gather_report(root, scale, sections)
    print(f"report: {report}")
    return 0


def _main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.log_level)
    if args.command == "verify-data":
        return _verify_data()
    if args.command == "rebuild-data":
        return _rebuild_data(args.mirror, args.out, args.check)
    if args.command == "report":
        return _report(args.scale, args.runs)
    if args.command == "selfcheck":
        from shared.selfcheck import run_selfcheck

        return 0 if run_selfcheck(args.runs) else 1
    if args.command == "bench":
        from shared.bench import run_bench

        run_bench(args.runs)
        return 0
    raise AssertionError(f"unhandled command {args.command}")


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
