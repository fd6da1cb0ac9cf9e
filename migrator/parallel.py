"""`--jobs N`: upgrade independent plugins in separate processes, respecting `depends_on`.

Alembic's `op` proxy is process-global, so parallelism means processes, each with its own
connections and its own plugin lock. A plugin starts once every dependency it has in this
run has finished; the first failure stops new starts and lets running ones finish.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from migrator import db
from migrator.config import Settings
from migrator.errors import Interrupted, MigratorError, WorkerDied
from migrator.logs import get_logger
from migrator.outcomes import Outcome
from migrator.summary import PluginOutcome

if TYPE_CHECKING:
    from multiprocessing.connection import Connection as Pipe
    from multiprocessing.process import BaseProcess

    from migrator.plan import PluginPlan
    from migrator.stopping import StopRequest


@dataclass(frozen=True, slots=True)
class ChildResult:
    plugin: str
    outcome: dict[str, Any] | None
    error: str | None = None
    exit_code: int = 0
    signal_name: str | None = None
    died: bool = False  # the worker ended without sending this


def _child(settings: Settings, item: PluginPlan, schemas: dict[str, str], pipe: Pipe) -> None:
    """Runs in the forked process: fresh connections, one plugin, result sent back."""
    from migrator.runner import Runner
    from migrator.stopping import StopRequest

    # The parent forwards SIGTERM/SIGINT; until our own handler is installed, ignore them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    outcome: dict[str, Any] | None = None
    try:
        url = db.resolve_url(settings)
        with StopRequest().installed() as stop:
            runner = Runner(settings, url, stop, schemas=schemas)
            try:
                runner.upgrade(item)
            finally:
                if item.name in runner.outcomes:
                    outcome = runner.outcomes[item.name].as_dict()
                runner.close()
        pipe.send(ChildResult(item.name, outcome))
    except MigratorError as exc:
        pipe.send(ChildResult(item.name, outcome, str(exc), exc.exit_code))
    finally:
        pipe.close()


def upgrade_in_parallel(settings: Settings, items: list[PluginPlan], schemas: dict[str, str],
                        stop: StopRequest, on_result: Any) -> None:
    """Run `items` (already in dependency order) with up to `settings.jobs` processes."""
    context = multiprocessing.get_context("fork")
    log = get_logger()
    waiting = list(items)
    pending_names = {item.name for item in items}
    finished: set[str] = set()
    running: dict[str, tuple[BaseProcess, Pipe]] = {}
    first_error: ChildResult | None = None
    forwarded = False
    while waiting or running:
        if stop.is_set() and not forwarded:
            for process, _ in running.values():
                if process.pid:
                    os.kill(process.pid, signal.SIGTERM)
            forwarded = True
        while (waiting and len(running) < settings.jobs and first_error is None
               and not stop.is_set()):
            ready = next((item for item in waiting
                          if all(d in finished or d not in pending_names
                                 for d in item.plugin.depends_on)), None)
            if ready is None:
                break
            waiting.remove(ready)
            receive, send = context.Pipe(duplex=False)
            process = context.Process(target=_child, args=(settings, ready, schemas, send),
                                      name=f"migrator-{ready.name}")
            process.start()
            send.close()
            running[ready.name] = (process, receive)
            log.debug("job.started", plugin=ready.name, pid=process.pid)
        for name, (process, receive) in list(running.items()):
            result: ChildResult | None = None
            if receive.poll(0.05):
                try:
                    result = receive.recv()
                except EOFError:  # the worker died with the pipe open
                    result = _died(name, process, items)
            elif not process.is_alive():
                result = _died(name, process, items)
            else:
                continue
            process.join()
            del running[name]
            if result.outcome is not None:
                on_result(PluginOutcome.from_dict(result.outcome))
            if result.error is None:
                finished.add(name)
            elif first_error is None or first_error.exit_code == Interrupted.exit_code:
                first_error = result
        if not running and waiting and (first_error is not None or stop.is_set()):
            break
        if running:
            time.sleep(0.01)
    if first_error is not None:
        raise _error_of(first_error)
    stop.check("between plugins")


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
    return error


class _WorkerFailed(MigratorError):
    """An error a worker reported (its message and exit code, carried over the pipe)."""
