"""The command-line shape of every project: ``<project> <command> --config <yaml> [k=v ...]``.

A project's ``cli.py`` builds its subcommands with :func:`command_parser` and loads its
typed config with :func:`load_command_config`::

    parser = command_parser("tico", "TiCo self-supervised learning", ["train", "evaluate"])
    args = parser.parse_args(argv)
    config = load_command_config(TrainConfig, args)
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any, TypeVar

from shared.config import ConfigError, load_config

T = TypeVar("T")


def setup_logging(level: str = "INFO") -> None:
    """Log to stderr through rich at ``level``, so stdout carries only a command's output."""
    from rich.console import Console
    from rich.logging import RichHandler

    numeric = getattr(logging, level.upper(), None)
    if not isinstance(numeric, int):
        raise ValueError(f"log level must be DEBUG, INFO, WARNING or ERROR, got {level!r}")
    logging.basicConfig(
        level=numeric,
        format="%(name)s: %(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(console=Console(stderr=True), show_path=False)],
        force=True,
    )


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config FILE``, ``key.sub=value`` overrides, ``--resume`` and ``--log-level``."""
    parser.add_argument("--config", help="YAML config file (see the project's configs/)")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key.sub=value",
        help="dotted overrides applied after the config file, e.g. optim.lr=0.1",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in its existing folder"
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")


def command_parser(
    project: str, description: str, commands: Sequence[str] | dict[str, str]
) -> argparse.ArgumentParser:
    """A parser with one subcommand per entry of ``commands`` (name, or name -> help)."""
    parser = argparse.ArgumentParser(prog=project, description=description)
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="command")
    helps = commands if isinstance(commands, dict) else dict.fromkeys(commands, "")
    for name, text in helps.items():
        add_config_arguments(subcommands.add_parser(name, help=text, description=text))
    return parser


def load_command_config(schema: type[T], args: argparse.Namespace) -> T:
    """The typed config for parsed ``args``; a bad config exits with its one-line reason."""
    try:
        return load_config(schema, args.config, args.overrides)
    except (ConfigError, ValueError) as error:
        sys.exit(f"error: {error}")


def run_command(main: Any, argv: Sequence[str] | None = None) -> int:
    """Call ``main(argv)`` turning expected user errors into one line on stderr and exit 2."""
    from shared.data.locations import CorruptDataError, DatasetNotFoundError
    from shared.device import DeviceUnavailableError

    try:
        return int(main(argv) or 0)
    except (
        ConfigError,
        DatasetNotFoundError,
        CorruptDataError,
        DeviceUnavailableError,
        FileExistsError,
    ) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
