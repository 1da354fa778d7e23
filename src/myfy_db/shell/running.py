"""Running the user's code in the shell: top-level ``await``, through SQLAlchemy's greenlet
bridge, so lazy loads work on plain attribute access; and describing what it raised.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from myfy_db.shell.errors import (
    SNIPPET_FILENAME,
    remember_source,
)

if TYPE_CHECKING:
    pass

_FLAGS = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
#: Where a lazy load still cannot run (a task or callback of the code's own): the fix.
LAZY_LOAD_FIX = (
    "a lazy load ran outside the shell's own code path (in a task or callback); load it "
    "up front with .options(selectinload({model}.{relation})){awaitable}"
)


def lazy_load_message(exc: BaseException) -> str:
    """The fix for a lazy load that could not run, for the model and relation that failed:
    ``awaitable_attrs`` only where the model mixes in ``AsyncAttrs`` (it is an
    AttributeError elsewhere)."""
    model, relation = _lazy_load_target(exc)
    has_async_attrs = model is not None and any(
        klass.__name__ == "AsyncAttrs" and klass.__module__.startswith("sqlalchemy.ext.asyncio")
        for klass in model.__mro__
    )
    name = model.__name__ if model is not None else "Model"
    if has_async_attrs:
        awaitable = f", or use await obj.awaitable_attrs.{relation}"
    else:
        awaitable = (
            f"; obj.awaitable_attrs needs {name} to mix in sqlalchemy.ext.asyncio.AsyncAttrs"
        )
    fix = LAZY_LOAD_FIX.format(model=name, relation=relation, awaitable=awaitable)
    return f"MissingGreenlet: {fix}"


def _lazy_load_target(exc: BaseException) -> tuple[type | None, str]:
    """The mapped class and relationship whose lazy load raised ``exc``, from its traceback."""
    seen: BaseException | None = exc
    while seen is not None:
        tb = seen.__traceback__
        while tb is not None:
            local = tb.tb_frame.f_locals
            state: Any = local.get("state")
            loader: Any = local.get("self")
            if type(loader).__name__.lstrip("_") == "LazyLoader" and hasattr(state, "class_"):
                return state.class_, str(getattr(loader, "key", "relation"))
            tb = tb.tb_next
        seen = seen.__cause__ or seen.__context__
    return None, "relation"


async def run_bridged(function: Callable[[], Any]) -> Any:
    """Call ``function`` (and await the coroutine it returns) inside SQLAlchemy's greenlet bridge.

    Code run this way can do what synchronous SQLAlchemy does: a lazy relationship or an
    expired attribute loads on plain attribute access (``author.books``), because every step
    of the user's coroutine runs in a greenlet that can hand the driver's I/O to the event loop.
    """
    from sqlalchemy.util.concurrency import greenlet_spawn

    return await greenlet_spawn(_call_and_drive, function)


def _call_and_drive(function: Callable[[], Any]) -> Any:
    value = function()
    if inspect.iscoroutine(value):
        return _drive(value)
    return value


def _drive(coroutine: Any) -> Any:
    """Step ``coroutine`` in this greenlet; what it waits on is awaited by the event loop."""
    from sqlalchemy.util.concurrency import await_

    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            yielded = coroutine.throw(error) if error is not None else coroutine.send(send)
        except StopIteration as stop:
            return stop.value
        send, error = None, None
        try:
            send = await_(_wait(yielded))
        except BaseException as exc:  # the awaited future's error, or a cancellation
            error = exc


async def _wait(yielded: Any) -> Any:
    if yielded is None:  # a bare yield (asyncio.sleep(0)): give the loop one turn
        await asyncio.sleep(0)
        return None
    yielded._asyncio_future_blocking = False  # taken over from the code's own await, as a Task does
    return await yielded


async def run_snippet(
    source: str, namespace: dict[str, Any], filename: str = SNIPPET_FILENAME
) -> Any:
    """Run ``source`` (top-level ``await`` allowed) in ``namespace``, through the greenlet bridge.

    Returns the value of a trailing expression, as the REPL would show it (None otherwise).
    A syntax error or whatever the code raises propagates.
    """
    remember_source(source, filename)
    tree = ast.parse(source, filename=filename, mode="exec")
    last: ast.expr | None = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = tree.body[-1].value
        tree.body.pop()
    if tree.body:
        body = compile(tree, filename, "exec", flags=_FLAGS, dont_inherit=True)
        await run_bridged(lambda: eval(body, namespace))
    if last is None:
        return None
    expression = compile(ast.Expression(last), filename, "eval", flags=_FLAGS, dont_inherit=True)
    return await run_bridged(lambda: eval(expression, namespace))


def describe_error(exc: BaseException, source: str | None = None) -> tuple[str, str | None]:
    """A brief account of ``exc``: one line ``Type: message``, then the server's DETAIL and
    HINT and where in the user's code (see :mod:`myfy_db.shell.errors`), or None.
    """
    from myfy_db.shell.errors import describe

    report = describe(exc, source)
    rest = [*report.details, *([report.where] if report.where else [])]
    message = lazy_load_message(exc) if _missing_greenlet(exc) else report.message
    return message, "\n".join(rest) if rest else None


def format_traceback_brief(exc: BaseException, source: str | None = None) -> str:
    """An error at the prompt: what failed, the server's details, the line of the input."""
    from myfy_db.shell.errors import describe

    report = describe(exc, source, place="the input")
    lines = report.lines()
    if _missing_greenlet(exc) and lines:
        lines[0] = lazy_load_message(exc)
    return "".join(line + "\n" for line in lines)


def _missing_greenlet(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if type(seen).__name__ == "MissingGreenlet":
            return True
        seen = seen.__cause__ or seen.__context__
    return False
