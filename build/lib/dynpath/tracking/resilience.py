"""The circuit breaker in front of every MLflow call of a training run.

:class:`Resilient` runs tracking calls in order; a transient failure (connection refused,
timeout, 5xx) opens the circuit and later calls are buffered without touching the network until
``probe_interval`` seconds have passed, then replayed in order (metrics keep their step and
timestamp). A permanent failure (4xx: bad value, duplicate param) drops that call with a warning.
See :mod:`dynpath.tracking.tracker` for how a run uses it and reports the outcome.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

MAX_BUFFERED_CALLS = 100_000  # beyond this the oldest buffered calls are dropped (and counted)


def is_permanent(err: BaseException) -> bool:
    """True when retrying cannot help (the server answered 4xx, or our own bug)."""
    from mlflow.exceptions import MlflowException

    if isinstance(err, MlflowException):
        code = err.get_http_status_code()
        return 400 <= code < 500 and code not in (408, 429)
    return isinstance(err, TypeError | ValueError | KeyError | AttributeError)


@dataclass
class _Call:
    what: str
    fn: Callable[[], Any]


class Resilient:
    """Ordered, buffered execution of tracking calls with a circuit breaker (see module doc)."""

    def __init__(self, uri: str, probe_interval: float) -> None:
        self.uri = uri
        self.probe_interval = probe_interval
        self.pending: deque[_Call] = deque()
        self.down = False
        self.next_probe = 0.0
        self.down_since: float | None = None
        self.outage_seconds = 0.0
        self.failed_calls = 0  # distinct calls that failed at least once
        self.dropped_calls = 0  # calls that never reached the server
        self.recoveries = 0
        self._warned = False
        self._lock = threading.RLock()

    @property
    def degraded(self) -> bool:
        return self.failed_calls > 0

    def submit(self, what: str, fn: Callable[[], Any], force_probe: bool = False) -> bool:
        """Run ``fn`` now if possible, else buffer it. True when it reached the server."""
        call = _Call(what, fn)
        with self._lock:
            blocked = bool(self.pending) or self.down
            probe = force_probe or time.monotonic() >= self.next_probe
            if blocked and (not probe or not self.flush()):
                self.failed_calls += 1
                self._enqueue(call)
                return False
            try:
                call.fn()
            except Exception as err:
                self.failed_calls += 1
                if is_permanent(err):
                    self.dropped_calls += 1
                    log.warning("MLflow rejected %s (dropped): %s", what, err)
                else:
                    self._mark_down(err, what)
                    self._enqueue(call)
                return False
            self._mark_up()
            return True

    def flush(self) -> bool:
        """Replay buffered calls in order; False (and circuit re-opened) at the first failure."""
        with self._lock:
            while self.pending:
                call = self.pending[0]
                try:
                    call.fn()
                except Exception as err:
                    if is_permanent(err):
                        self.pending.popleft()
                        self.dropped_calls += 1
                        log.warning("MLflow rejected buffered %s (dropped): %s", call.what, err)
                        continue
                    self._mark_down(err, call.what)
                    return False
                self.pending.popleft()
            self._mark_up()
            return True

    def drop_pending(self) -> int:
        with self._lock:
            n = len(self.pending)
            self.dropped_calls += n
            self.pending.clear()
            return n

    def _enqueue(self, call: _Call) -> None:
        if len(self.pending) >= MAX_BUFFERED_CALLS:
            self.pending.popleft()
            self.dropped_calls += 1
        self.pending.append(call)

    def _mark_down(self, err: BaseException, what: str) -> None:
        now = time.monotonic()
        if not self.down:
            self.down = True
            self.down_since = now
        self.next_probe = now + self.probe_interval
        if not self._warned:
            self._warned = True
            log.warning(
                "MLflow tracking at %s is unreachable (%s failed: %s). Training continues; "
                "tracking calls are buffered and retried every %.0f s. The run will be tagged "
                "tracking_status=degraded.",
                self.uri,
                what,
                str(err).splitlines()[0][:300],
                self.probe_interval,
            )

    def _mark_up(self) -> None:
        if self.down:
            self.down = False
            self.recoveries += 1
            if self.down_since is not None:
                self.outage_seconds += time.monotonic() - self.down_since
            self.down_since = None
            log.warning("MLflow tracking at %s is reachable again; buffered calls sent", self.uri)
