"""The rich console of the commands' tables, in a module of its own so that only a table imports rich."""

from __future__ import annotations

from rich.console import Console

from dragonfly_hybrid.closed_pipe import exit_closed_pipe


class ClosedPipeConsole(Console):
    """A rich console that ends the process with :data:`~dragonfly_hybrid.closed_pipe.EXIT_CLOSED_PIPE`
    when stdout is closed (rich's own default is exit 1)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        exit_closed_pipe()
