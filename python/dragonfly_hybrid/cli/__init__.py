"""The `dragonfly-hybrid` command line: one typer app (`app.py`), a module per group of commands."""

from dragonfly_hybrid.cli.app import app, main

__all__ = ["app", "main"]
