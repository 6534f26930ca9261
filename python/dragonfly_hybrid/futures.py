"""Futures left behind: a task or executor future no one awaits any more (its caller was cancelled, or went
on without it) still ends, and asyncio logs an exception it ends with as "never retrieved"."""

from __future__ import annotations

import asyncio
from typing import Any


def take_outcome(future: asyncio.Future[Any]) -> None:
    """A done callback that takes ``future``'s outcome, so that nothing is logged for it."""
    if not future.cancelled():
        future.exception()
