"""Waiting on events, not on the clock: shared helpers of the subprocess and server tests.

A test that sleeps a fixed time and then asserts that something happened passes on an idle
machine and fails on a loaded one (or passes without testing anything when the event came
early). The helpers here wait for the event itself (a file, a log line, a condition) and fail
loudly, naming what never happened, when it does not come within a generous timeout; and they
give tests a clock they can move instead of sleeping past an interval.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
import types
from collections.abc import Callable
from pathlib import Path

import pytest

# Generous: the point is to fail rather than hang when an event never comes, not to bound speed.
DEFAULT_TIMEOUT = 300.0


def wait_until(
    cond: Callable[[], object],
    what: str,
    timeout: float = DEFAULT_TIMEOUT,
    proc: subprocess.Popen[bytes] | subprocess.Popen[str] | None = None,
    log: Path | None = None,
    poll: float = 0.02,
) -> None:
    """Return once ``cond()`` is true; raise AssertionError naming ``what`` when ``timeout``
    passes or ``proc`` exits first (with the tail of ``log`` when given), never return
    silently."""
    deadline = time.monotonic() + timeout
    while not cond():
        exited = proc is not None and proc.poll() is not None
        if exited and cond():  # the event and the exit can race: look once more
            return
        if exited or time.monotonic() > deadline:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=60)
            why = f"the child exited ({proc.returncode})" if exited and proc else f"{timeout}s"
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise AssertionError(f"{what}: did not happen ({why})\n{tail}")
        time.sleep(poll)


def wait_for_line(
    proc: subprocess.Popen[bytes], log: Path, text: str, timeout: float = DEFAULT_TIMEOUT
) -> None:
    """Wait until ``text`` appears in ``log`` (the child's stderr); fail if the child exits
    without writing it or it does not come within ``timeout``."""
    wait_until(
        lambda: text in log.read_text(errors="replace"),
        f"{text!r} in {log.name}",
        timeout,
        proc=proc,
        log=log,
    )


def held_port() -> socket.socket:
    """A loopback socket bound to a port the OS picked and not listening: connections to it are
    refused, and no other process can take the port while the test holds it (pass the socket
    itself to the server that will listen there, or close it right before use)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


class FakeClock:
    """``time.monotonic`` that only moves when the test says so (``advance``).

    ``patch(monkeypatch, "dynpath.tracking.tracker")`` replaces that module's ``time`` with a
    copy of the time module whose ``monotonic`` is this clock; nothing else (pytest's timers,
    other modules) sees it. It starts at the real monotonic time, so values stay plausible."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def patch(self, monkeypatch: pytest.MonkeyPatch, module: str) -> FakeClock:
        real = {name: getattr(time, name) for name in dir(time) if not name.startswith("_")}
        fake = types.SimpleNamespace(**{**real, "monotonic": self.monotonic})
        monkeypatch.setattr(f"{module}.time", fake)
        return self


LISTENING = re.compile(r"http://127\.0\.0\.1:(\d+)")  # uvicorn, werkzeug and gunicorn all log it


def port_from_log(
    proc: subprocess.Popen[bytes], log: Path, offset: int = 0, timeout: float = DEFAULT_TIMEOUT
) -> int:
    """The port a server started with port 0 says it listens on (the first loopback URL its
    log prints after byte ``offset``): the OS picked a free port and the server holds it, so no
    other process can take it between choosing and binding."""
    found: list[int] = []

    def listening() -> bool:
        with open(log, "rb") as fh:
            fh.seek(offset)
            m = LISTENING.search(fh.read().decode(errors="replace"))
        if m:
            found.append(int(m.group(1)))
        return bool(m)

    wait_until(listening, f"the server's listening address in {log.name}", timeout, proc, log)
    return found[0]
