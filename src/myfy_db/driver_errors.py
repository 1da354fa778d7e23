"""Driver errors: what the database said, found behind SQLAlchemy's wrappers, in one place.

A failure reaches myfy-db wrapped: SQLAlchemy's ``DBAPIError`` holds the DBAPI error in
``.orig``; for asyncpg that is SQLAlchemy's emulated DBAPI error, which holds asyncpg's own
exception in ``.orig`` (and ``__cause__``); aiomysql raises PyMySQL's errors. Everything here
reads that chain the same way:

- :func:`walk`: an exception and everything it wraps, breadth first (``.orig``,
  ``__cause__``, and ``__context__`` unless ``implicit=False``);
- :func:`driver_exception`: the driver's own exception behind SQLAlchemy's wrappers;
- :func:`sqlstate`: the SQLSTATE (asyncpg's; PyMySQL reports MySQL's too);
  :func:`mysql_code`: the MySQL error number;
- :func:`classify_connect_error`: cannot connect, authentication failed, no such database,
  refused for want of free slots, connection lost (all :class:`~myfy_db.errors.CannotConnect`,
  exit 4), a pooler in statement mode (:class:`StatementPooling`, exit 5), or None;
- :func:`is_refusal`: the server (or a pooler) refused a connection because its slots are
  all taken ("too many clients");
- :func:`server_error` / :func:`describe_server_error`: the server's own words for an error;
- :func:`translate_errors`: the exit-code classification at the edge of a block
  (:class:`~myfy_db.errors.CannotConnect` or :class:`~myfy_db.errors.OperationFailed`).

This module imports nothing heavy (the shell's error reports load it); SQLAlchemy is
imported only where a classification needs its exception classes.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from myfy_db.errors import CannotConnect, ExitCode, MyfyDbError, OperationFailed
from myfy_db.urls import DatabaseUrl, redact

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

__all__ = [
    "STATEMENT_POOLING_REASON",
    "StatementPooling",
    "classify_connect_error",
    "describe_server_error",
    "driver_exception",
    "first_line",
    "is_permanent",
    "is_refusal",
    "is_statement_pooling",
    "mysql_code",
    "own_mysql_code",
    "server_error",
    "sqlstate",
    "translate_errors",
    "walk",
]


# -- the chain -----------------------------------------------------------------------------


def walk(exc: BaseException, *, implicit: bool = True) -> Iterator[BaseException]:
    """``exc``, then every exception it wraps, breadth first, each once.

    An exception wraps SQLAlchemy's ``.orig`` (the DBAPI error, or the driver's exception
    behind an emulated DBAPI error) and its ``__cause__``; with ``implicit`` also its
    ``__context__`` (the error being handled when it was raised).
    """
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        item = todo.pop(0)
        if id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        orig = getattr(item, "orig", None)
        links = [orig, item.__cause__, item.__context__ if implicit else None]
        todo.extend(link for link in links if isinstance(link, BaseException))


def driver_exception(exc: BaseException) -> BaseException:
    """The driver's own exception behind SQLAlchemy's wrappers and adapters (or ``exc``).

    Follows only what an exception says it wraps (``.orig``, ``__cause__``); when every one
    is SQLAlchemy's, the last.
    """
    shown = exc
    for item in walk(exc, implicit=False):
        shown = item
        if not type(item).__module__.startswith("sqlalchemy"):
            break
    return shown


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of the driver error behind ``exc``, or None.

    PostgreSQL's (``55P03``) from asyncpg, or MySQL's (``42S02``) from PyMySQL.
    """
    for item in walk(exc, implicit=False):
        state = getattr(item, "sqlstate", None) or getattr(item, "pgcode", None)
        if isinstance(state, str):
            return state
    return None


def own_mysql_code(exc: BaseException) -> int | None:
    """The MySQL error number a PyMySQL/aiomysql exception carries itself (``args[0]``)."""
    if type(exc).__module__.startswith("pymysql") and exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return None


def mysql_code(exc: BaseException) -> int | None:
    """The MySQL error number of the PyMySQL/aiomysql error behind ``exc`` (1205), or None."""
    for item in walk(exc, implicit=False):
        code = own_mysql_code(item)
        if code is not None:
            return code
    return None


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its class name when it has none)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _is_sqlite(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("sqlite3")


def _codes(chain: list[BaseException]) -> set[int]:
    return {code for item in chain if (code := own_mysql_code(item)) is not None}


# -- cannot connect (exit 4) ---------------------------------------------------------------

#: Driver errors that mean the credentials were refused.
_AUTH_NAMES = frozenset({"InvalidPasswordError", "InvalidAuthorizationSpecificationError"})
#: MySQL: access denied (1045), no password for a socket-authenticated user (1698).
_AUTH_CODES = frozenset({1045, 1698})
#: MySQL: access denied to the database (1044), unknown database (1049).
_NO_DATABASE_CODES = frozenset({1044, 1049})
#: Driver errors that mean an open connection was lost (the server went away or cut it).
_LOST_NAMES = frozenset(
    {
        "ConnectionDoesNotExistError",
        "ConnectionResetError",
        "BrokenPipeError",
        "IncompleteReadError",
    }
)
#: MySQL client errors for the same: lost during a query, gone away, lost at reading.
_LOST_CODES = frozenset({2013, 2006, 2055})


#: Driver errors and SQLSTATE for "too many clients": every slot is taken (PostgreSQL 53300:
#: ``max_connections``, the role's or the database's CONNECTION LIMIT).
_REFUSED_NAMES = frozenset({"TooManyConnectionsError"})
_REFUSED_STATE = "53300"
#: MySQL: too many connections (1040), max_user_connections (1203), a user resource (1226).
_REFUSED_CODES = frozenset({1040, 1203, 1226})
#: PgBouncer's words when its own client limit is reached.
_REFUSED_WORDS = ("no more connections allowed",)
#: PgBouncer's words for a transaction block in statement pooling mode.
_STATEMENT_POOLING_WORDS = "statement pooling mode"

STATEMENT_POOLING_REASON = (
    "a pooler (PgBouncer) in statement pooling mode is in front of the database: it refuses "
    "transaction blocks, and SQLAlchemy runs every statement in a transaction"
)


class StatementPooling(CannotConnect):
    """A pooler in statement pooling mode answered: SQLAlchemy cannot work through it.

    A finding about the deployment, not an unreachable server: exit 5. It is a
    :class:`CannotConnect` so that every path that reports a failed connection reports it;
    it is never retried (``--wait``).
    """

    exit_code = ExitCode.CHECK_FAILED


def is_statement_pooling(exc: BaseException) -> bool:
    """``exc`` is PgBouncer refusing a transaction block in statement pooling mode."""
    return any(_STATEMENT_POOLING_WORDS in str(item) for item in walk(exc))


def is_refusal(exc: BaseException) -> bool:
    """The server or a pooler refused a connection because its slots are all taken."""
    chain = list(walk(exc))
    for item in chain:
        if type(item).__name__ in _REFUSED_NAMES:
            return True
        if getattr(item, "sqlstate", None) == _REFUSED_STATE and type(item).__module__.startswith(
            "asyncpg"
        ):
            return True
        if any(words in str(item) for words in _REFUSED_WORDS):
            return True
    return bool(_codes(chain) & _REFUSED_CODES)


def is_permanent(exc: BaseException) -> bool:
    """An authentication failure, a missing database or a pooler in statement mode: waiting
    (``--wait``) does not fix it."""
    chain = list(walk(exc))
    names = {type(item).__name__ for item in chain}
    return bool(
        names & (_AUTH_NAMES | {"InvalidCatalogNameError"})
        or _codes(chain) & (_AUTH_CODES | _NO_DATABASE_CODES)
        or is_statement_pooling(exc)
    )


def _connection_lost(chain: list[BaseException], codes: set[int]) -> bool:
    from sqlalchemy import exc as sa_exc

    for item in chain:
        if isinstance(item, sa_exc.DBAPIError) and item.connection_invalidated:
            return True
        name = type(item).__name__
        if name in _LOST_NAMES:
            return True
        # asyncpg, when the socket closes under a protocol step in progress
        if name == "InternalClientError" and "cannot switch to state" in str(item):
            return True
    return bool(codes & _LOST_CODES) and not any("timed out" in str(i) for i in chain)


def classify_connect_error(
    exc: BaseException, url: str | URL | DatabaseUrl, action: str | None = None
) -> CannotConnect | None:
    """A :class:`CannotConnect` for ``exc`` when it means the database at ``url`` cannot be
    reached or would not let us in, or that a connection to it was lost (during ``action``,
    when given); None for any other error. ``url`` is best given parsed."""
    database_url = DatabaseUrl.of(url)
    parsed = database_url.sqlalchemy_url
    target = database_url.target
    user = parsed.username or "(default user)"
    database = database_url.database or ""
    chain = list(walk(exc))
    names = {type(item).__name__ for item in chain}
    codes = _codes(chain)
    if is_statement_pooling(exc):
        return StatementPooling(
            f"{STATEMENT_POOLING_REASON} ({target})",
            hint="use pool_mode = transaction (with ?prepared_statement_cache_size=0 in the "
            "URL) or session for this database; PgBouncer said: transaction blocks not "
            "allowed in statement pooling mode",
        )
    if names & _AUTH_NAMES or codes & _AUTH_CODES:
        return CannotConnect(
            f"authentication failed for user {user!r} at {target}",
            hint="check the user name and password in the database URL",
        )
    if "InvalidCatalogNameError" in names or 1049 in codes:
        return CannotConnect(
            f"database {database!r} does not exist at {target}",
            hint="create it, or fix the database name in the URL",
        )
    if 1044 in codes:
        return CannotConnect(f"user {user!r} may not use database {database!r} at {target}")
    if any(isinstance(item, socket.gaierror) for item in chain):
        return CannotConnect(
            f"cannot resolve host {parsed.host!r} ({target})",
            hint="check the host name in the database URL",
        )
    if is_refusal(exc):
        refusal = next(
            (
                first_line(item)
                for item in chain
                if not type(item).__module__.startswith("sqlalchemy")
            ),
            first_line(exc),
        )
        return CannotConnect(
            f"{target} refused the connection: every slot is taken ({redact(refusal)})",
            hint="the server's connection slots are all in use; close idle clients, lower "
            "the pools, or raise the limit",
        )
    if any(isinstance(item, ConnectionRefusedError) for item in chain):
        return CannotConnect(
            f"connection refused by {target}",
            hint="is the database server running and listening on that host and port?",
        )
    if _connection_lost(chain, codes):
        during = f" during {action}" if action else ""
        return CannotConnect(
            f"connection to {target} lost{during}",
            hint="the server closed the connection or went away; check that it is running",
        )
    if (
        any(isinstance(item, TimeoutError) for item in chain)
        or "TimeoutError" in names
        or codes & {2013, 2006}
    ):
        return CannotConnect(
            f"timed out connecting to {target}",
            hint="the server did not answer in time; check the host, port and firewall",
        )
    for item in chain:
        if _is_sqlite(item) and "unable to open database file" in str(item):
            return CannotConnect(
                f"cannot open {target}", hint="check that the directory exists and is writable"
            )
        if own_mysql_code(item) == 2003 or (isinstance(item, OSError) and not _is_sqlite(item)):
            return CannotConnect(f"cannot connect to {target}: {redact(first_line(item))}")
    return None


# -- the server's own words (operation failed, exit 1) -------------------------------------


def describe_server_error(exc: BaseException) -> tuple[str, str | None]:
    """The database's own account of ``exc``: a line naming the error by its class and code
    (``dependent objects still exist (2BP01): cannot drop table a ...``, ``MySQL error 1051:
    Unknown table ...``) and the server's DETAIL and HINT as a second line, when it sent any.
    """
    found = server_error(exc)
    return found if found is not None else (first_line(getattr(exc, "orig", None) or exc), None)


def server_error(exc: BaseException) -> tuple[str, str | None] | None:
    """:func:`describe_server_error` when ``exc`` came from the database driver, else None."""
    for item in walk(exc):
        state = getattr(item, "sqlstate", None)
        if isinstance(state, str) and type(item).__module__.startswith("asyncpg"):
            message = getattr(item, "message", None) or first_line(item)
            extra = [
                f"{label}: {' '.join(str(text).split())}"
                for label, text in (
                    ("DETAIL", getattr(item, "detail", None)),
                    ("HINT", getattr(item, "hint", None)),
                )
                if text
            ]
            return f"{_error_words(type(item).__name__)} ({state}): {message}", (
                "; ".join(extra) or None
            )
        code = own_mysql_code(item)
        if code is not None:
            text = str(item.args[1]) if len(item.args) > 1 else first_line(item)
            return f"MySQL error {code}: {' '.join(text.split())}", None
        if _is_sqlite(item):
            name = getattr(item, "sqlite_errorname", None)
            return (f"{first_line(item)} ({name})" if name else first_line(item)), None
    return None


def _error_words(class_name: str) -> str:
    """``DependentObjectsStillExistError`` -> ``dependent objects still exist``."""
    name = class_name.removesuffix("Error") or "server"
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).lower()
    return "server error" if words in ("postgres", "server") else words


# -- the edge of a block -------------------------------------------------------------------


@contextmanager
def translate_errors(url: str | DatabaseUrl, action: str = "query") -> Iterator[None]:
    """Turn driver and SQLAlchemy errors raised in the block into myfy-db errors.

    Connection failures become :class:`CannotConnect` (exit 4); other database errors become
    :class:`OperationFailed` (exit 1) naming ``action``. Messages never hold a password.
    """
    from sqlalchemy import exc as sa_exc

    try:
        yield
    except MyfyDbError:
        raise
    except (sa_exc.SQLAlchemyError, OSError, TimeoutError) as exc:
        connect = classify_connect_error(exc, url, action)
        if connect is not None:
            raise connect from exc
        message, detail = describe_server_error(exc)
        raise OperationFailed(
            redact(f"{action} failed: {message}"), hint=redact(detail) if detail else None
        ) from exc

    except Exception as exc:  # a driver's own error, from code that talks to it directly
        lost = classify_connect_error(exc, url, action)
        if lost is None:
            raise
        raise lost from exc
