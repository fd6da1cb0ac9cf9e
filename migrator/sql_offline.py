"""What cannot be shown offline: a stand-in for `op.get_bind()` that renders statements but
refuses to read results, introspect or end the transaction, and a guard around each revision
that turns whatever it raises into a reason (`migrator.sql_output` renders it as a stop)."""

from __future__ import annotations

import re
from typing import Any

from migrator.logs import first_line


class Unrenderable(Exception):
    """What a revision did that has no SQL form without a database (the message says what)."""


class _NoResult:
    """What `op.get_bind().execute(...)` returns offline: the statement is rendered, but there
    are no rows to read."""

    def __getattr__(self, name: str) -> Any:
        raise Unrenderable(f"it reads a query's result (.{name}()), which needs a database")

    def __iter__(self) -> Any:
        raise Unrenderable("it iterates over a query's rows, which needs a database")


class OfflineBind:
    """`op.get_bind()` offline: statements executed through it are rendered like
    `op.execute`; reading results, committing or reaching the driver say why they cannot be
    shown offline. Anything else is Alembic's mock connection's."""

    def __init__(self, mock: Any) -> None:
        self._mock = mock

    def execute(self, statement: Any, parameters: Any = None, *args: Any, **kwargs: Any) -> Any:
        for params in (parameters if isinstance(parameters, list) else [parameters]):
            self._mock.execute(statement.params(params) if params else statement)
        return _NoResult()

    def exec_driver_sql(self, statement: str, parameters: Any = None, *args: Any,
                        **kwargs: Any) -> Any:
        if parameters:
            raise Unrenderable("it runs driver SQL with parameters (exec_driver_sql)")
        from sqlalchemy import text

        self._mock.execute(text(statement))
        return _NoResult()

    def scalar(self, *args: Any, **kwargs: Any) -> Any:
        raise Unrenderable("it reads a query's result (.scalar()), which needs a database")

    def scalars(self, *args: Any, **kwargs: Any) -> Any:
        raise Unrenderable("it reads a query's result (.scalars()), which needs a database")

    def commit(self) -> None:
        raise Unrenderable("it commits the transaction itself (op.get_bind().commit())")

    def rollback(self) -> None:
        raise Unrenderable("it rolls the transaction back itself (op.get_bind().rollback())")

    def begin(self, *args: Any, **kwargs: Any) -> Any:
        raise Unrenderable("it manages transactions itself (op.get_bind().begin())")

    begin_nested = begin

    @property
    def connection(self) -> Any:
        raise Unrenderable("it uses the driver's connection (op.get_bind().connection)")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._mock, name)


def why(exc: BaseException) -> str:
    from sqlalchemy.exc import NoInspectionAvailable

    if isinstance(exc, Unrenderable):
        return str(exc)
    if isinstance(exc, SystemExit):
        return f"it calls sys.exit({exc.code!r})"
    if isinstance(exc, NoInspectionAvailable):
        return "it introspects the database (sqlalchemy.inspect), which needs a database"
    # An object's repr in the message names its memory address: not part of a script that
    # must be the same bytes on every run.
    message = _ADDRESS.sub("", first_line(exc))
    return f"it raises {type(exc).__name__} offline: {message}"


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+(?=>)")


class Guarded:
    """An Alembic step whose migration function never escapes: a revision that cannot be
    rendered is noted (and rendered as a stop), and the rest of the plugin still renders."""

    def __init__(self, step: Any, recorder: Any) -> None:
        self._step, self._recorder = step, recorder

    def __getattr__(self, name: str) -> Any:
        return getattr(self._step, name)

    def migration_fn(self, **kwargs: Any) -> None:
        try:
            self._step.migration_fn(**kwargs)
        except (Exception, SystemExit) as exc:  # user code: whatever it raises, offline
            self._recorder.unrenderable = why(exc)
