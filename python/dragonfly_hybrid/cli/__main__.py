"""`python -m dragonfly_hybrid.cli`: the same as the `dragonfly-hybrid` command."""

from dragonfly_hybrid.cli import run

run()
