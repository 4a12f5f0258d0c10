"""The ``bluecore`` command: a local sandbox, event file validation and delivery, and the sync-state tools.

Subcommands are contributed by modules listed in :data:`COMMAND_MODULES`. Each such module exposes::

    def add_parser(subparsers: argparse._SubParsersAction) -> None:
        parser = add_command(
            subparsers, "state",
            help="one line for `bluecore --help`",
            description="what it does, for `bluecore state --help`",
            examples=["bluecore state show my_dag.my_task"],
        )
        parser.add_argument(...)
        parser.set_defaults(handler=run)   # run(args: argparse.Namespace) -> int (an exit code)

so adding a command is one new module and one line in :data:`COMMAND_MODULES`. Keep heavy imports (Airflow, SQLAlchemy)
inside the handler: ``bluecore --help``, ``validate`` and ``sandbox`` never import Airflow and start in a fraction of a second.
A handler raises :class:`CommandError` for a usage problem it finds itself (a missing file, a bad connection id): ``main``
prints the message and exits with :data:`EXIT_USAGE`.

Exit codes: :data:`EXIT_OK` (0) all good, :data:`EXIT_PROBLEMS` (1) invalid, rejected or failed events, :data:`EXIT_USAGE` (2)
a usage or configuration error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

from airflow_provider_bluecore import __version__

__all__ = [
    "COMMAND_MODULES",
    "EXIT_OK",
    "EXIT_PROBLEMS",
    "EXIT_USAGE",
    "CommandError",
    "add_command",
    "build_parser",
    "main",
]

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2

#: Modules contributing subcommands, in the order ``bluecore --help`` lists them; each exposes ``add_parser(subparsers)``.
COMMAND_MODULES: tuple[str, ...] = (
    "airflow_provider_bluecore.sandbox.command",  # bluecore sandbox
    "airflow_provider_bluecore.cli_events",  # bluecore validate, bluecore send
    "airflow_provider_bluecore.cli_state",  # bluecore state
)


class CommandError(Exception):
    """A usage or configuration problem found by a command; ``bluecore`` prints it and exits with :data:`EXIT_USAGE`."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of descriptions and examples, and shows defaults that are set."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "%(default)" not in text and action.option_strings:
            text += " (default: %(default)s)"
        return text


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse ``type`` for a whole number of at least ``minimum``, with a message naming the bad value."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            rule = "must not be negative" if minimum == 0 else f"must be at least {minimum}"
            raise argparse.ArgumentTypeError(f"{text!r} {rule}")
        return value

    return parse


def add_command(
    subparsers: Any,
    name: str,
    *,
    help: str,
    description: str,
    examples: Sequence[str] = (),
) -> argparse.ArgumentParser:
    """Add a subcommand whose ``--help`` stands on its own: a description and examples, in the house format.

    :param subparsers: the object ``add_parser`` receives.
    :param name: the subcommand's name.
    :param help: one line shown in ``bluecore --help``.
    :param description: paragraphs shown at the top of ``bluecore NAME --help``.
    :param examples: command lines shown under "examples:" at the end of ``bluecore NAME --help``.
    """
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples) if examples else None
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=help,
        description=textwrap.dedent(description).strip(),
        epilog=epilog,
        formatter_class=HelpFormatter,
    )
    parser.set_defaults(command_name=name)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The ``bluecore`` argument parser with every subcommand of :data:`COMMAND_MODULES`."""
    parser = argparse.ArgumentParser(
        prog="bluecore",
        description=(
            "Tools for the Bluecore Airflow provider: a local stand-in for Bluecore's Events API, checking and sending files\n"
            "of events through the provider's delivery engine, and the provider's sync state.\n"
            "Run `bluecore COMMAND --help` for a command's options and examples."
        ),
        epilog="\n  ".join(
            [
                "examples:",
                "bluecore sandbox",
                "bluecore validate events.jsonl",
                "bluecore send events.jsonl --conn-id bluecore_default",
            ]
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``bluecore`` with ``argv`` (default: the process arguments) and return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(handler(args))
    except CommandError as exc:
        print(f"bluecore {getattr(args, 'command_name', '')}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy: command modules raise the imported module's CommandError.
    from airflow_provider_bluecore.cli import main as _main

    sys.exit(_main())
