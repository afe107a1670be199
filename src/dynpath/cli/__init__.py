"""`dynpath` command line: one sub-command per DAG step plus tools (localize, bench, pipeline).

Each command parses arguments, loads params.yaml, and calls one function of ``dynpath.steps`` (or
a tool module); no logic lives here. Heavy modules are imported inside the handlers so that
``dynpath --help`` stays fast.

One error path (docs/reliability.md, "Bad input"): every failure a user can act on
(:class:`DynpathError`, ConfigError, an OSError or a decoding error at the boundary) is printed
as ONE line ``dynpath <cmd>: error: <file/key/argument>: <what to do>`` with exit code 2 and no
traceback (``-v`` adds it); Ctrl-C exits 130 (checkpoints are written atomically, so the last one
on disk is complete; ``train`` first finishes its step and checkpoints it). The mapping from
exception to exit code and line is :func:`dynpath.errors.error_message`, shared with the Kubeflow
pods (:func:`dynpath.kfp.runtime.component_errors`). Every output a
command writes is locked first (:func:`output_lock`): a second writer fails at once naming the
PID that holds it, before any work.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from dynpath.cli.parser import build_parser
from dynpath.errors import DynpathError, error_message

__all__ = ["build_parser", "error_message", "main", "run"]

log = logging.getLogger("dynpath")


def _render(result: Any) -> str | None:
    """The JSON printed on stdout; strict JSON (no NaN/Infinity, which no parser accepts)."""
    if result is None:
        return None
    try:
        return json.dumps(result, indent=2, default=str, allow_nan=False)
    except ValueError:
        raise DynpathError(
            "the result holds a non-finite number (NaN or Infinity) and cannot be printed as "
            "JSON; check the inputs (features, duration) for out-of-range values"
        ) from None


# Arguments that name a local file or directory (dest -> whether it is written). ``--model``
# is not one: it takes models:/, runs:/ and other MLflow URIs.
_LOCAL_PATHS = {
    "params": False,
    "videos": False,
    "vocab": False,
    "models": False,
    "evals": False,
    "root": False,
    "features": False,
    "weights": False,
    "video": False,
    "dir": True,
    "out": True,
    "output": True,
    "workdir": True,
}


def _check_local_paths(args: argparse.Namespace) -> None:
    """Refuse a URI (``s3://...``) given for a local path, naming the flag, before any work:
    ``Path("s3://b/x.h5")`` would silently be the local file ``s3:/b/x.h5``."""
    from dynpath.io import refuse_uri

    for dest, output in _LOCAL_PATHS.items():
        value = getattr(args, dest, None)
        if isinstance(value, str):
            flag = "--params" if dest == "params" else f"--{dest.replace('_', '-')}"
            refuse_uri(value, flag, output=output)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse printed usage + "dynpath <cmd>: error: ..." (or --help)
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        _check_local_paths(args)
        text = _render(args.handler(args))
    except (Exception, KeyboardInterrupt) as err:
        if args.verbose:
            traceback.print_exc(file=sys.stderr)
        code, message = error_message(err, args.command)
        print(f"dynpath {args.command}: error: {message}", file=sys.stderr)
        return code
    if text is not None and os.environ.get("RANK", "0") == "0":  # under torchrun: rank 0 only
        try:
            print(text, flush=True)
        except BrokenPipeError:  # the reader (`| head`) closed the pipe: no traceback at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def run() -> None:
    """The ``dynpath`` console script and ``python -m dynpath.cli``: :func:`main`, then exit
    without the interpreter's teardown.

    Why: once a command has returned, CPython's teardown (module cleanup, then the static
    destructors of torch's and the BLAS libraries' thread pools and caches) took 1.4-2.4 s in a
    train or evaluate process and ~0.5 s in ``localize`` on the 2-core machine: ~35 s of a
    ``make run``, whose DAG is ~30 such processes. Nothing of dynpath's needs it: files are
    closed by their ``with`` blocks and published by atomic renames, SQLite has committed. The
    atexit handlers still run (logging, MLflow's), stdout and stderr are flushed, and then
    ``os._exit`` ends the process with main's exit code. With a non-daemon thread still alive
    the normal exit is kept (it joins the thread before the atexit handlers, which the fast path
    would not). Tests call :func:`main` in-process; this is only the process entry point.
    """
    import atexit
    import contextlib
    import threading

    code = main()
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if others:
        sys.exit(code)
    # CPython's own exit runs these after joining threads; it has no public name
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing to deliver
            stream.flush()
    os._exit(code)
