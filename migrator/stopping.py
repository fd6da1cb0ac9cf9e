"""SIGTERM / SIGINT: finish the current revision or batch, record progress, exit 6.

The handler never raises into the code it interrupts (that code may be a revision's, or
migrator's own bookkeeping mid-commit). The first signal asks for a stop at the next revision
or batch boundary; any later one also cancels the statement running now (PostgreSQL rolls it
back) so the stop comes sooner. However many signals arrive, the run ends with exit 6 and the
outcome `interrupted`.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from types import FrameType

from migrator.errors import Interrupted
from migrator.logs import get_logger


class StopRequest:
    """Set by SIGTERM/SIGINT; `forced` once a second signal arrived."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self.signals = 0
        self.on_force: list[Callable[[], None]] = []  # e.g. cancel the running statement

    def is_set(self) -> bool:
        return self.signal_name is not None

    def forced(self) -> bool:
        return self.signals > 1

    def request(self, name: str) -> None:
        self.signals += 1
        if self.signal_name is None:
            self.signal_name = name
            get_logger().warning("run.stopping", signal=name,
                                 detail="finishing the current revision, then exiting")
            return
        get_logger().warning("run.stopping_now", signal=name,
                             detail="cancelling the running statement; it is rolled back")
        for callback in self.on_force:
            with suppress(Exception):  # best effort, from a signal handler
                callback()

    @contextmanager
    def installed(self) -> Iterator[StopRequest]:
        def handler(signum: int, _frame: FrameType | None) -> None:
            self.request(signal.Signals(signum).name)

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield self
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def check(self, where: str) -> None:
        if self.is_set():
            raise Interrupted(f"stopped by {self.signal_name} {where}; the work done so far "
                              "is committed, rerun to continue")
