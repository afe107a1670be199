"""``python -m dynpath.cli``: the ``dynpath`` command, as DVC and the tests' subprocesses run it."""

from dynpath.cli import run

run()
