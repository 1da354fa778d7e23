"""A scratch database: created empty on a dev server, used, and always dropped.

``migrate lint --dev-url`` (and ``diff``) replay a project's chain on a database of their
own, as Atlas does with its dev database. :func:`scratch_database` connects to the server
the dev URL names, creates a uniquely named empty database (``myfy_scratch_<hex>``; on
SQLite a file in a fresh temporary directory), yields its URL (same credentials) and drops
it when the block ends: on success, on an error, on Ctrl-C. The admin connection that
created it stays open meanwhile, so the drop needs no new connect; on PostgreSQL the drop
is ``WITH (FORCE)`` (sessions still on it are ended), on MariaDB/MySQL the sessions on it
are killed first. A dev URL that names a database it must protect (the target) is refused
before anything is created.

:func:`replay` upgrades such a database to a revision through the project's own
``env.py``, online, as ``migrate up`` does (:mod:`.driving`), without the migration lock
or the production guard: nobody else knows the database exists.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from myfy_db.errors import ConfigError, MyfyDbError, OperationFailed
from myfy_db.invocation import leaves, removed
from myfy_db.urls import DatabaseUrl, redact

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from myfy_db.migrations.project import MigrationProject
    from myfy_db.settings import DatabaseSettings

__all__ = ["PREFIX", "replay", "same_database", "scratch_database"]

#: Every scratch database's name starts with this.
PREFIX = "myfy_scratch_"
#: Where PostgreSQL's CREATE DATABASE is run from when the dev URL's own database is missing.
_MAINTENANCE = ("postgres", "template1")
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", ""})
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}


def same_database(a: DatabaseUrl, b: DatabaseUrl) -> bool:
    """True when ``a`` and ``b`` name the same database: backend, host, port and database
    (every spelling of this machine read as one, other names by the addresses they
    resolve to; a missing port as the backend's default); for SQLite, the same file once
    resolved, or a hard link to it (two in-memory URLs are two databases)."""
    if a.backend != b.backend:
        return False
    if a.backend == "sqlite":
        first, second = a.sqlite_file, b.sqlite_file
        if first is None or second is None:
            return False
        if _resolved(first) == _resolved(second):
            return True
        try:
            return os.path.samefile(first, second)
        except (OSError, ValueError):
            return False

    def where(url: DatabaseUrl) -> tuple[int | None, str]:
        parsed = url.sqlalchemy_url
        return parsed.port or _DEFAULT_PORTS.get(url.backend), parsed.database or ""

    if where(a) != where(b):
        return False
    return _same_host(a.sqlalchemy_url.host, b.sqlalchemy_url.host)


def _same_host(a: str | None, b: str | None) -> bool:
    """Whether two spellings of a host reach the same machine: the same name, or both this
    machine (``localhost``, any loopback or unspecified address, this host's own names and
    addresses), or names that resolve to a shared address."""
    first, second = _host_name(a), _host_name(b)
    if first == second:
        return True
    found_a, found_b = _addresses(first, second)
    if not (found_a and found_b):
        return False
    if found_a & found_b:
        return True
    own = _own_addresses()
    return any(_is_local(x, own) for x in found_a) and any(_is_local(x, own) for x in found_b)


def _host_name(host: str | None) -> str:
    name = (host or "").strip().strip("[]").rstrip(".").lower()
    return "localhost" if name in _LOCAL_HOSTS else name


#: How long host names may take to resolve (getaddrinfo blocks, and a Ctrl-C with it).
_RESOLVE_WITHIN = 1.0


def _addresses(*hosts: str) -> list[set[str]]:
    """The addresses each host names (a literal address is its own), resolved at once on
    threads of their own, so an interrupt is never held up; empty for a host that does not
    resolve within :data:`_RESOLVE_WITHIN` seconds in all."""
    import ipaddress
    import socket
    import threading
    import time

    found: list[set[str]] = [set() for _ in hosts]
    workers: list[threading.Thread | None] = []
    for index, host in enumerate(hosts):
        try:
            found[index].add(str(ipaddress.ip_address(host)))
            workers.append(None)
            continue
        except ValueError:
            pass

        def resolve(host: str = host, into: set[str] = found[index]) -> None:
            with suppress(OSError, UnicodeError):
                into.update(str(info[4][0]) for info in socket.getaddrinfo(host, None))

        worker = threading.Thread(target=resolve, name="myfy-db-resolve", daemon=True)
        worker.start()
        workers.append(worker)
    deadline = time.monotonic() + _RESOLVE_WITHIN
    answered: list[set[str]] = []
    for pending, addresses in zip(workers, found, strict=True):
        if pending is not None:
            pending.join(max(0.0, deadline - time.monotonic()))
            if pending.is_alive():
                answered.append(set())
                continue
        answered.append(set(addresses))
    return answered


def _is_local(address: str, own: set[str]) -> bool:
    import ipaddress

    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return ip.is_loopback or ip.is_unspecified or address in own


def _own_addresses() -> set[str]:
    """The addresses of this host's own names."""
    import socket

    return set().union(*_addresses(socket.gethostname().lower()))


def _resolved(path: str) -> str:
    try:
        return str(Path(path).expanduser().resolve())
    except OSError:
        return path


def _variant(url: DatabaseUrl, database: str | None) -> DatabaseUrl:
    """The same server and credentials, another database (None: none selected)."""
    # URL.set() reads None as "unchanged"; the named tuple's _replace sets it.
    return DatabaseUrl.of(url.sqlalchemy_url._replace(database=database))


def _refuse_protected(dev_url: DatabaseUrl, protect: Sequence[DatabaseUrl]) -> None:
    for protected in protect:
        if same_database(dev_url, DatabaseUrl.of(protected)):
            raise ConfigError(
                f"the dev URL names the target database ({dev_url.target}): a scratch "
                "database is created beside it and dropped afterwards, and must never be "
                "mistaken for the target",
                hint="give --dev-url another database on a server you may create databases "
                "on (a local container is best), e.g. postgresql+asyncpg://localhost/dev",
            )


@asynccontextmanager
async def scratch_database(
    settings: DatabaseSettings,
    dev_url: DatabaseUrl,
    *,
    protect: Sequence[DatabaseUrl],
    command: str,
) -> AsyncIterator[DatabaseUrl]:
    """A new, empty database on the server ``dev_url`` names; dropped when the block ends.

    :class:`ConfigError` (exit 2), before anything is created, when ``dev_url`` names the
    same database as one in ``protect``; an unreachable server is exit 4. The yielded URL
    has ``dev_url``'s credentials and driver. Whatever ends the block (an error,
    ``KeyboardInterrupt``, a cancelled task), the database is dropped; should that fail,
    a warning names it so it can be dropped by hand.
    """
    dev_url = DatabaseUrl.of(dev_url)
    if dev_url.problem is not None:
        raise ConfigError(f"bad dev URL {dev_url.masked}: {dev_url.problem}")
    _refuse_protected(dev_url, protect)
    if dev_url.backend == "sqlite":
        async with _sqlite_scratch(dev_url) as url:
            yield url
        return
    async with _server_scratch(settings, dev_url, command) as url:
        yield url


@asynccontextmanager
async def _sqlite_scratch(dev_url: DatabaseUrl) -> AsyncIterator[DatabaseUrl]:
    import shutil
    import sqlite3
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix=PREFIX))
    try:
        path = directory / "scratch.db"
        sqlite3.connect(path).close()  # SQLite creates the file as it opens it
        yield DatabaseUrl.of(dev_url.sqlalchemy_url.set(database=str(path), query={}))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def _admin_connection(
    settings: DatabaseSettings, dev_url: DatabaseUrl, command: str
) -> tuple[AsyncEngine, AsyncConnection]:
    """An autocommit connection to the dev server: on PostgreSQL to the dev URL's own
    database, else its maintenance database; on MariaDB/MySQL to no database."""
    from myfy_db.engine import create_engine, translate_errors

    candidates: list[str | None] = []
    if dev_url.backend == "postgresql":
        candidates += [dev_url.database] if dev_url.database else []
        candidates += [name for name in _MAINTENANCE if name not in candidates]
    else:
        candidates.append(None)
    for index, database in enumerate(candidates):
        url = _variant(dev_url, database)
        engine = create_engine(
            settings,
            url,
            command=command,
            isolation_level="AUTOCOMMIT",
            pool_size=1,
            max_overflow=0,
        )
        try:
            with translate_errors(dev_url, f"{command}: connecting to the dev server"):
                connection = await engine.connect()
            return engine, connection
        except BaseException as exc:
            await asyncio.shield(engine.dispose())
            last = index == len(candidates) - 1
            if last or not isinstance(exc, MyfyDbError) or "does not exist" not in str(exc):
                raise
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


@asynccontextmanager
async def _server_scratch(
    settings: DatabaseSettings, dev_url: DatabaseUrl, command: str
) -> AsyncIterator[DatabaseUrl]:
    from myfy_db.engine import translate_errors

    name = f"{PREFIX}{secrets.token_hex(8)}"
    engine, connection = await _admin_connection(settings, dev_url, command)
    try:
        quoted = connection.dialect.identifier_preparer.quote_identifier(name)
        created = False
        try:
            try:
                with translate_errors(dev_url, f"{command}: creating a scratch database"):
                    if dev_url.backend == "postgresql":
                        await connection.exec_driver_sql(f"CREATE DATABASE {quoted}")
                    else:
                        await connection.exec_driver_sql(
                            f"CREATE DATABASE {quoted} CHARACTER SET utf8mb4"
                        )
            except MyfyDbError as exc:
                if not _denied(exc):
                    raise
                user = dev_url.sqlalchemy_url.username or "the dev URL's user"
                raise OperationFailed(
                    f"{command}: {user} may not create a database on "
                    f"{dev_url.target.rsplit('/', 1)[0]} (permission denied)",
                    hint="give --dev-url a user that may create and drop databases "
                    "(PostgreSQL: CREATEDB; MySQL/MariaDB: GRANT CREATE, DROP ON "
                    f"`{PREFIX}%`.*), on a server that is not production",
                ) from None
            created = True
            leaves(name, _left_note(dev_url, name, "the run ended before it could drop it"))
            yield _variant(dev_url, name)
        finally:
            # Also when the CREATE itself was interrupted: it may have gone through.
            await asyncio.shield(
                _drop(settings, dev_url, connection, name, command, certain=created)
            )
    finally:
        with suppress(Exception):
            await asyncio.shield(connection.close())
        with suppress(Exception):
            await asyncio.shield(engine.dispose())


def _denied(exc: BaseException) -> bool:
    """The server refused the CREATE DATABASE for want of a privilege (PostgreSQL 42501,
    MySQL/MariaDB 1044)."""
    seen: BaseException | None = exc
    while seen is not None:
        orig = getattr(seen, "orig", None)
        if getattr(orig, "sqlstate", None) == "42501" or getattr(orig, "pgcode", None) == "42501":
            return True
        args = getattr(orig, "args", ())
        if args and args[0] in (1044, 1142):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def _drop(
    settings: DatabaseSettings,
    dev_url: DatabaseUrl,
    connection: AsyncConnection,
    name: str,
    command: str,
    *,
    certain: bool,
) -> None:
    """Drop the scratch database: on the admin connection, else on a new one."""
    failure: BaseException | None = None
    try:
        await _drop_on(connection, dev_url.backend, name)
        removed(name)
        return
    except Exception as exc:  # the admin connection was cut (an interrupt's grace ran out)
        failure = exc
    try:
        engine, fresh = await _admin_connection(settings, dev_url, command)
        try:
            await _drop_on(fresh, dev_url.backend, name)
            removed(name)
            return
        finally:
            with suppress(Exception):
                await fresh.close()
            with suppress(Exception):
                await engine.dispose()
    except Exception as exc:
        failure = exc
    removed(name)
    if certain:
        from myfy_db.invocation import warn_once

        detail = redact(str(failure).strip().splitlines()[0]) if failure else "unknown"
        warn_once(_left_note(dev_url, name, detail))


def _left_note(dev_url: DatabaseUrl, name: str, why: str) -> str:
    """What to tell of a scratch database the run could not drop, and how to drop it."""
    quote = '"' if dev_url.backend == "postgresql" else "`"
    return (
        f"could not drop the scratch database {name} on {dev_url.target.rsplit('/', 1)[0]} "
        f"({why}); drop it by hand: DROP DATABASE {quote}{name}{quote}"
    )


async def _drop_on(connection: AsyncConnection, backend: str, name: str) -> None:
    from sqlalchemy import text

    quoted = connection.dialect.identifier_preparer.quote_identifier(name)
    if backend == "postgresql":
        version = connection.dialect.server_version_info or (0,)
        if version >= (13,):
            await connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
            return
        await connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": name},
        )
        await connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted}")
        return
    # MariaDB/MySQL: a session still on it (an interrupted replay) would hold a metadata
    # lock the DROP waits for.
    rows = await connection.execute(
        text(
            "SELECT ID FROM information_schema.PROCESSLIST "
            "WHERE DB = :name AND ID <> CONNECTION_ID()"
        ),
        {"name": name},
    )
    for (session,) in rows.all():
        with suppress(Exception):
            await connection.exec_driver_sql(f"KILL CONNECTION {int(session)}")
    await connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted}")


async def replay(
    project: MigrationProject,
    settings: DatabaseSettings,
    url: DatabaseUrl,
    revision: str,
    *,
    command: str,
) -> None:
    """Upgrade the (scratch) database ``url`` to ``revision`` (``heads``, a revision id)
    through the project's own ``env.py``, online, each revision in its own transaction.

    No migration lock and no production guard: the database is one of this run's own. A
    revision that fails is :class:`~myfy_db.errors.OperationFailed` (exit 1) naming it; a
    lost server is exit 4.
    """
    from myfy_db.engine import open_engine, translate_errors
    from myfy_db.migrations.writing import _sqlite_transactional_ddl

    url = DatabaseUrl.of(url)
    with translate_errors(url, command):
        async with open_engine(settings, url, command=command, **_pool(url)) as engine:
            if url.backend == "sqlite":
                _sqlite_transactional_ddl(engine)
            async with engine.connect() as connection:
                await connection.run_sync(
                    lambda sync: _upgrade_on(project, settings, url, sync, revision)
                )


def _pool(url: DatabaseUrl) -> dict[str, Any]:
    """One connection, and one more for an env.py that opens its own from ``.engine``."""
    return {} if url.backend == "sqlite" else {"pool_size": 1, "max_overflow": 1}


def _upgrade_on(
    project: MigrationProject,
    settings: DatabaseSettings,
    url: DatabaseUrl,
    connection: Connection,
    revision: str,
) -> None:
    from myfy_db.migrations import driving
    from myfy_db.migrations import environment as env
    from myfy_db.migrations.revisions import alembic_errors
    from myfy_db.migrations.writing import _revision_failed, _tracking_steps

    def nothing(*_args: Any, **_kw: Any) -> None:
        return None

    text = url.sqlalchemy_url.render_as_string(hide_password=False)
    config = project.config(settings, text, connection=connection, on_version_apply=nothing)
    config.attributes[env.METADATA] = None  # no model import needed to migrate
    config.attributes[env.TRANSACTIONAL_DDL] = connection.dialect.name == "sqlite"
    driver = driving.Driver(connection, nothing, nothing)
    try:
        with _tracking_steps() as tracker:
            try:
                with alembic_errors():
                    driving.upgrade(config, revision, driver, project.script())
            except MyfyDbError:
                connection.rollback()
                raise
            except Exception as exc:
                connection.rollback()
                failed = _revision_failed(connection, tracker, exc)
                message = failed.message
                where = _failing_revision(project, exc)
                if where is not None and message.startswith("migration failed"):
                    # env.py's fileConfig() silenced Alembic's "Running ..." record.
                    message = f"{where} failed" + message.removeprefix("migration failed")
                in_revision = where is not None or tracker.revision is not None
                raise type(failed)(
                    f"on the scratch database ({url.target}): {message}",
                    hint=(
                        "the revision fails on an empty database built from the chain "
                        "alone; fix it, or lint it without --dev-url"
                        if in_revision
                        else "env.py itself fails when it runs online on the scratch "
                        "database, before any revision; run it with plain `alembic upgrade` "
                        "on an empty database to see why, or lint it without --dev-url"
                    ),
                ) from exc
        connection.commit()
    finally:
        driver.release()


def _failing_revision(project: MigrationProject, exc: BaseException) -> str | None:
    """``revision a2 (path line 17)``: the deepest revision frame of ``exc``'s traceback."""
    revisions = {
        str(Path(s.path).resolve()): s.revision for s in project.script().walk_revisions() if s.path
    }
    found = None
    tb = exc.__traceback__
    while tb is not None:
        path = str(Path(tb.tb_frame.f_code.co_filename).resolve())
        if path in revisions:
            shown = path
            with suppress(ValueError):
                shown = str(Path(path).relative_to(Path.cwd()))
            found = f"revision {revisions[path]} ({shown} line {tb.tb_lineno})"
        tb = tb.tb_next
    return found
