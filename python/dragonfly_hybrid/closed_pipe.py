"""A closed stdout (the reader went away: ``dragonfly-hybrid ... | head``) ends the process quietly with
:data:`EXIT_CLOSED_PIPE`: never 1 (the code for findings), never a traceback or an "Exception ignored"
message. Python ignores SIGPIPE, so the closed pipe shows up as ``BrokenPipeError`` wherever stdout is
written: in any command (:class:`dragonfly_hybrid.cli.base.DragonflyGroup`), at the final flush
(:func:`dragonfly_hybrid.cli.app.main`) and inside rich, which would exit 1
(:class:`dragonfly_hybrid.closed_pipe_console.ClosedPipeConsole`, apart: importing rich takes a while)."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

EXIT_CLOSED_PIPE = 141
"""Stdout was closed before the output was written: the shell's code for a process killed by SIGPIPE
(128 + 13), so ``set -o pipefail`` scripts see what they would see from any other command."""


def discard_stdout() -> None:
    """Point stdout at /dev/null: what is still buffered for a stdout that cannot take it (closed, or a
    full disk) is dropped, so that later flushes and the interpreter's final one have nowhere to fail (no
    "Exception ignored" message, no exit code 120)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout without a descriptor (captured in-process): nothing to flush
        pass


def exit_closed_pipe() -> NoReturn:
    """Stop at once because stdout is closed (:func:`discard_stdout`), with :data:`EXIT_CLOSED_PIPE`."""
    discard_stdout()
    raise SystemExit(EXIT_CLOSED_PIPE)
