"""`--jobs N`: upgrade independent plugins in a pool of N worker processes, respecting
`depends_on`.

Alembic's `op` proxy is process-global, so parallelism means processes. The pool is forked
once per run, after the parent has loaded every tree that will run (Alembic, SQLAlchemy and
the revision modules are imported once, and a broken file stops the run before anything is
applied, as without `--jobs`). Each worker keeps its own work session and plugin locks across
the plugins it is given, so a worker's start-up and connection are paid once, not per plugin.
A plugin is handed out once every dependency it has in this run has finished; the first
failure stops new hand-outs and lets running plugins finish. Log lines stay whole: every
process writes each line with one write under a lock the pool shares (`logs.share_lines`).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from contextlib import suppress
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any

from migrator import logs
from migrator.errors import Interrupted, MigratorError, WorkerDied
from migrator.logs import get_logger
from migrator.outcomes import Outcome
from migrator.summary import PluginOutcome

if TYPE_CHECKING:
    from collections.abc import Callable
    from multiprocessing.connection import Connection as Pipe
    from multiprocessing.process import BaseProcess

    from migrator.plan import PluginPlan
    from migrator.runner import Runner
    from migrator.stopping import StopRequest


@dataclass(frozen=True, slots=True)
class ChildResult:
    plugin: str
    outcome: dict[str, Any] | None
    error: str | None = None
    exit_code: int = 0
    signal_name: str | None = None
    died: bool = False  # the worker ended without sending this
    error_type: str | None = None  # the worker's error class, for the log


def _serve(prepared: Runner, parent: int, tasks: Pipe, results: Pipe) -> None:
    """A worker's life, in the forked process: take plugins until told to stop (None or the
    parent gone), run each on this worker's own session, send back each result."""
    from migrator.stopping import StopRequest

    _die_with(parent)
    with StopRequest().installed() as stop:
        # Only the parent's forwarded SIGTERM stops a worker: a terminal's Ctrl-C reaches the
        # whole process group, and counting it twice would force-cancel a running statement.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        runner = prepared.forked(stop)
        try:
            while not stop.is_set():
                try:
                    item: PluginPlan | None = tasks.recv()
                except EOFError:
                    break
                if item is None:
                    break
                results.send(_run_one(runner, item))
        finally:
            runner.close()


def _die_with(parent: int) -> None:
    """A run killed outright (kill -9, the OOM killer taking the main process) takes its
    workers with it, as it would take a sequential run's work: their open transaction is
    rolled back by the server, and no orphan keeps migrating after its run is gone."""
    if sys.platform == "linux":
        import ctypes

        with suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before we asked
        os._exit(1)


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _run_one(runner: Runner, item: PluginPlan) -> ChildResult:
    outcome: dict[str, Any] | None = None
    try:
        runner.upgrade(item)
    except MigratorError as exc:
        if item.name in runner.outcomes:
            outcome = runner.outcomes[item.name].as_dict()
        return ChildResult(item.name, outcome, str(exc), exc.exit_code,
                           error_type=type(exc).__name__)
    return ChildResult(item.name, runner.outcomes[item.name].as_dict())


@dataclass(slots=True)
class _Worker:
    process: BaseProcess
    tasks: Pipe  # parent -> worker: a PluginPlan, or None to finish
    results: Pipe  # worker -> parent: a ChildResult per plugin
    plugin: str | None = None  # the plugin it is running now
    signals_sent: int = 0


def upgrade_in_parallel(prepared: Runner, items: list[PluginPlan], stop: StopRequest,
                        on_result: Callable[[PluginOutcome], None]) -> None:
    """Run `items` (in dependency order) on a pool of `settings.jobs` workers forked from
    `prepared` (a Runner whose trees are loaded and that has no session open)."""
    pool = _Pool(prepared, items, stop, on_result)
    try:
        pool.run()
    finally:
        pool.close()
    if pool.first_error is not None:
        raise _error_of(pool.first_error)
    stop.check("between plugins")


class _Pool:
    def __init__(self, prepared: Runner, items: list[PluginPlan], stop: StopRequest,
                 on_result: Callable[[PluginOutcome], None]) -> None:
        self.items, self.stop, self.on_result = items, stop, on_result
        self.waiting = list(items)
        self.in_run = {item.name for item in items}
        self.finished: set[str] = set()
        self.first_error: ChildResult | None = None
        size = min(prepared.settings.jobs, len(items))
        context = multiprocessing.get_context("fork")
        logs.share_lines(context)
        self.workers: list[_Worker] = [self._fork(context, prepared, n) for n in range(size)]

    @staticmethod
    def _fork(context: Any, prepared: Runner, number: int) -> _Worker:
        take, give = context.Pipe(duplex=False)
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=_serve, args=(prepared, os.getpid(), take, send),
                                  name=f"migrator-worker-{number}")
        process.start()
        take.close()
        send.close()
        get_logger().debug("job.worker_started", worker=number, pid=process.pid)
        return _Worker(process, give, receive)

    def run(self) -> None:
        while True:
            self._forward_signals()
            self._hand_out()
            busy = [w for w in self.workers if w.plugin is not None]
            if not busy:  # nothing running, and nothing more may start
                if self.waiting and self.first_error is None and not self.stop.is_set():
                    name = self.waiting[0].name
                    self.first_error = ChildResult(
                        name, None, f"plugin {name!r}: no worker process was left to run it "
                        "(each ended unexpectedly); nothing of it was applied, rerun",
                        WorkerDied.exit_code, died=True)
                return
            ready = wait([x for w in busy for x in (w.results, w.process.sentinel)],
                         timeout=0.2)
            for worker in busy:
                if worker.results in ready or worker.process.sentinel in ready:
                    self._collect(worker)

    def _hand_out(self) -> None:
        while self.waiting and self.first_error is None and not self.stop.is_set():
            idle = next((w for w in self.workers if w.plugin is None
                         and w.process.is_alive()), None)
            ready = next((item for item in self.waiting
                          if all(d in self.finished or d not in self.in_run
                                 for d in item.plugin.depends_on)), None)
            if idle is None or ready is None:
                return
            self.waiting.remove(ready)
            idle.plugin = ready.name
            idle.tasks.send(ready)

    def _collect(self, worker: _Worker) -> None:
        name = worker.plugin
        assert name is not None
        result: ChildResult | None = None
        if worker.results.poll():
            try:
                result = worker.results.recv()
            except EOFError:  # the worker died with the pipe open
                result = None
        if result is None:
            if worker.process.is_alive():
                return  # woken for nothing yet
            result = _died(name, worker.process, self.items)
        worker.plugin = None
        if result.outcome is not None:
            self.on_result(PluginOutcome.from_dict(result.outcome))
        if result.error is None:
            self.finished.add(name)
        elif self.first_error is None or self.first_error.exit_code == Interrupted.exit_code:
            self.first_error = result

    def _forward_signals(self) -> None:
        """Each SIGTERM/SIGINT the parent gets goes on to the workers that are running a
        plugin (a second one forces theirs too); idle workers are simply told to finish."""
        for worker in self.workers:
            if worker.plugin is not None and worker.signals_sent < self.stop.signals:
                if worker.process.pid:
                    os.kill(worker.process.pid, signal.SIGTERM)
                worker.signals_sent += 1

    def close(self) -> None:
        for worker in self.workers:
            if worker.process.is_alive():
                with suppress(OSError):  # it is going away already
                    worker.tasks.send(None)
            worker.tasks.close()
        for worker in self.workers:
            worker.process.join()
            worker.results.close()


def _died(name: str, process: BaseProcess, items: list[PluginPlan]) -> ChildResult:
    """A worker that ended without a result: killed by a signal (the OOM killer's SIGKILL) or
    gone some other way. Its plugin is failed, never reported as a success."""
    process.join()
    code = process.exitcode
    signal_name = signal.Signals(-code).name if code is not None and code < 0 else None
    how = f"was killed by {signal_name}" if signal_name else f"exited with status {code}"
    item = next(i for i in items if i.name == name)
    outcome = PluginOutcome(name, item.current_label, None, outcome=Outcome.FAILED)
    return ChildResult(name, outcome.as_dict(),
                       f"plugin {name!r}: its worker process {how} before reporting; the "
                       "plugin is at a revision boundary (see migrator status), rerun to "
                       "continue", WorkerDied.exit_code, signal_name, died=True)


def _error_of(result: ChildResult) -> MigratorError:
    """The worker's error as the parent raises it, with the worker's exit code."""
    if result.died:
        return WorkerDied(result.error or "", plugin=result.plugin,
                          signal_name=result.signal_name)
    error = _WorkerFailed(result.error or f"plugin {result.plugin!r}: its worker failed")
    error.exit_code = result.exit_code
    error.error_type = result.error_type or "MigrationFailed"
    return error


class _WorkerFailed(MigratorError):
    """An error a worker reported (its message, exit code and class name, carried over the
    pipe)."""

    error_type = "MigrationFailed"
