"""``python -m dynpath.cli``: the ``dynpath`` command, as DVC and the tests' subprocesses run it."""

import sys

from dynpath.cli import main

sys.exit(main())
