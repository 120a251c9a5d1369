"""Plain one-line CLI errors: ``error: <what was wrong and where>`` on stderr, whatever the terminal.

typer prints click's usage errors in a Rich panel that wraps at the terminal width (80 columns with no
TTY), so a long path is cut across lines and a script grepping stderr misses it. ``PlainErrorsGroup``
runs the command line with click's standalone mode off and prints each error itself, as one line.
(typer vendors click as ``typer._click``: its errors are ``typer.TyperException``s, not ``click``'s.)
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

EXIT_ABORTED = 1
"""Exit status after Ctrl-D at a prompt or an explicit abort (click's own)."""


def one_line(message: str) -> str:
    """``message`` with its line breaks (and the spaces around them) collapsed to single spaces."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def echo_error(message: str) -> None:
    """Print ``error: <message>`` as one line to stderr."""
    typer.echo(f"error: {one_line(message)}", err=True)


def fail(message: str, code: int) -> NoReturn:
    """Print ``error: <message>`` as one line to stderr and exit with ``code``."""
    echo_error(message)
    raise typer.Exit(code)


def plain_typer(help: str) -> typer.Typer:
    """A typer app whose errors are one plain line (`PlainErrorsGroup`) and whose tracebacks are Python's."""
    return typer.Typer(help=help, no_args_is_help=True, cls=PlainErrorsGroup, pretty_exceptions_enable=False)


class PlainErrorsGroup(TyperGroup):
    """A typer group whose errors are one plain line; use as ``typer.Typer(cls=PlainErrorsGroup)``.

    Exit statuses stay click's: 2 for usage errors and bad parameters, a ``ClickException``'s own
    ``exit_code`` otherwise, 1 for an abort, 130 for Ctrl-C, and what a command's ``typer.Exit`` says.
    """

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line; in standalone mode (the default) exit with its status, never return."""

        def run() -> Any:
            return super(PlainErrorsGroup, self).main(
                args, prog_name, complete_var, False, windows_expand_args=windows_expand_args, **extra
            )

        if not standalone_mode:  # the caller wants click's exceptions as they are
            return run()
        try:
            status = run()
        except typer.TyperException as exc:  # click's ClickException, UsageError, BadParameter, ...
            if type(exc).__name__ == "NoArgsIsHelpError":  # a private class; typer tests the name too
                # Not an error to report: the help is the answer. In Rich mode typer has already
                # printed it (and the message is empty); in plain mode the message is the help text.
                if exc.format_message():
                    typer.echo(exc.format_message())
            else:
                echo_error(exc.format_message())
            sys.exit(exc.exit_code)
        except typer.Abort:
            echo_error("aborted")
            sys.exit(EXIT_ABORTED)
        # Without standalone mode click returns a typer.Exit's code, or the command's return value
        # (None for every command here), which is success.
        sys.exit(status if isinstance(status, int) and not isinstance(status, bool) else 0)
