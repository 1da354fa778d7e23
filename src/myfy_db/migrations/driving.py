"""Driving the project's own ``env.py``, whatever its shape, and seeing what it did.

``myfy-db migrate`` passes its live connection in ``config.attributes["connection"]``, but a
project's ``env.py`` may open its own: Alembic's generic template (a sync engine from
``sqlalchemy.url``), its async template (``asyncio.run`` on an async engine), or a new
connection from ``config.attributes["connection"].engine``. Each is driven here:

- ``sqlalchemy.url`` is set, in memory only, to the URL myfy-db uses, so a template that
  builds its own engine migrates the same database (under the lock, which lives on a
  connection of its own);
- ``asyncio.run`` cannot start inside myfy-db's event loop, so such an ``env.py`` runs again
  in a worker thread with a loop of its own;
- every connection ``env.py`` hands to ``context.configure`` is watched (revision applied,
  commit), so the summary is what happened, and the caller reads the result back from the
  database afterwards;
- what cannot be driven stops with a usage error (exit 2) saying why and what to change: a
  connection to another database, or ``--atomic`` with a connection of its own.

The three commands mirror Alembic's ``command.upgrade``/``downgrade``/``stamp`` with this
environment class in place of Alembic's.
"""

from __future__ import annotations

import gc
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from alembic.runtime.environment import EnvironmentContext
from alembic.script import ScriptDirectory

from myfy_db.errors import ConfigError

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import Connection

ATTRIBUTE_HINT = (
    "make env.py migrate on config.attributes['connection'] when it is set "
    "(the scaffold's env.py, `myfy-db migrate init`, shows how)"
)


@dataclass
class Driver:
    """What one run passes to, and learns from, the project's ``env.py``."""

    connection: Connection
    on_version_apply: Callable[..., None]
    on_commit: Callable[..., None]
    atomic: bool = False
    #: Connections ``env.py`` opened itself and migrated on.
    foreign: list[Connection] = field(default_factory=list)
    #: Session set-up for a connection of env.py's own (``--ddl-lock-timeout``).
    prepare: Callable[[Connection], None] | None = None
    #: The steps Alembic takes from a given current revision (set by the command).
    steps: Callable[[Any], Any] | None = None
    #: env.py asked Alembic for the steps: it called ``context.run_migrations()``.
    ran: bool = False

    def plan(self, steps: Callable[[Any], Any]) -> Callable[[Any, Any], Any]:
        """The ``fn`` Alembic calls from ``context.run_migrations()``, noting that it did."""
        self.steps = steps

        def fn(rev: Any, _context: Any) -> Any:
            self.ran = True
            return steps(rev)

        return fn

    def target_missed(self, before: tuple[str, ...], after: tuple[str, ...]) -> str | None:
        """Where the database should be, when this run was to move it and it did not."""
        if self.steps is None or sorted(before) != sorted(after):
            return None
        planned = list(self.steps(before))
        if not planned:
            return None
        return ", ".join(getattr(planned[-1], "to_revisions", ())) or "base"

    def adopt(self, connection: Connection) -> None:
        """Watch a connection ``env.py`` configured Alembic with."""
        if connection is self.connection:
            return
        if not _same_database(connection, self.connection):
            raise ConfigError(
                "env.py migrates a different database than the one myfy-db was given "
                f"({_where(connection)}, not {_where(self.connection)})",
                hint="take the URL from sqlalchemy.url (myfy-db sets it), or " + ATTRIBUTE_HINT,
            )
        if self.atomic:
            raise ConfigError(
                "--atomic needs env.py to migrate on the connection myfy-db holds; "
                "this env.py opens a connection of its own",
                hint=ATTRIBUTE_HINT + "; or run without --atomic",
            )
        from sqlalchemy import event

        if connection not in self.foreign:
            if self.prepare is not None:
                self.prepare(connection)
            event.listen(connection, "commit", self.on_commit)
            self.foreign.append(connection)

    def release(self) -> None:
        from sqlalchemy import event

        for connection in self.foreign:
            if event.contains(connection, "commit", self.on_commit):
                event.remove(connection, "commit", self.on_commit)


def _where(connection: Connection) -> str:
    return connection.engine.url.render_as_string(hide_password=True)


def _same_database(a: Connection, b: Connection) -> bool:
    ua, ub = a.engine.url, b.engine.url
    if ua.get_backend_name() != ub.get_backend_name():
        return False
    if ua.get_backend_name() == "sqlite":
        from pathlib import Path

        def path(database: str | None) -> str:
            return str(Path(database).resolve()) if database else ""

        return path(ua.database) == path(ub.database)
    return (ua.host, ua.port, ua.database) == (ub.host, ub.port, ub.database)


def _environment(
    config: Config, script: ScriptDirectory, driver: Driver, **kw: Any
) -> EnvironmentContext:
    """Alembic's environment, watching every connection ``env.py`` configures.

    ``alembic.context`` proxies to the environment's attributes as they are when it is
    entered, so an instance attribute ``configure`` is what ``env.py`` calls.
    """
    environment = EnvironmentContext(config, script, **kw)
    configure_alembic = environment.configure

    def configure(connection: Connection | None = None, **options: Any) -> None:
        if connection is not None:
            driver.adopt(connection)
            theirs = options.get("on_version_apply")
            if theirs is None:
                options["on_version_apply"] = driver.on_version_apply
            elif theirs is not driver.on_version_apply:
                options["on_version_apply"] = _both(theirs, driver.on_version_apply)
        configure_alembic(connection=connection, **options)

    setattr(environment, "configure", configure)  # noqa: B010 - shadows the method
    return environment


def _both(first: Callable[..., None], second: Callable[..., None]) -> Callable[..., None]:
    def call(**kw: Any) -> None:
        first(**kw)
        second(**kw)

    return call


def _run(
    config: Config,
    script: ScriptDirectory,
    driver: Driver,
    fn: Callable[[Any, Any], Any],
    **kw: Any,
) -> None:
    def once() -> None:
        with logging_kept(), _environment(config, script, driver, fn=fn, **kw):
            script.run_env()

    again = False
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="coroutine .* was never awaited")
        try:
            once()
        except RuntimeError as exc:
            if "cannot be called from a running event loop" not in str(exc):
                raise
            again = True
        if again:
            gc.collect()  # the coroutine asyncio.run never started goes here, silently
    if again:
        # env.py calls asyncio.run() (Alembic's async template): nothing ran yet; run it
        # again on a thread with an event loop of its own.
        _on_a_thread(once)


def _on_a_thread(call: Callable[[], None]) -> None:
    failure: list[BaseException] = []

    def target() -> None:
        try:
            call()
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target, name="myfy-db env.py", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def upgrade(
    config: Config, revision: str, driver: Driver, script: ScriptDirectory | None = None
) -> None:
    """Alembic's ``command.upgrade`` on a live connection, through the project's env.py."""
    script = script or ScriptDirectory.from_config(config)
    _run(
        config,
        script,
        driver,
        driver.plan(lambda rev: script._upgrade_revs(revision, rev)),
        destination_rev=revision,
    )


def downgrade(
    config: Config, revision: str, driver: Driver, script: ScriptDirectory | None = None
) -> None:
    """Alembic's ``command.downgrade`` on a live connection, through the project's env.py."""
    script = script or ScriptDirectory.from_config(config)
    _run(
        config,
        script,
        driver,
        driver.plan(lambda rev: script._downgrade_revs(revision, rev)),
        destination_rev=revision,
    )


def stamp(
    config: Config, revision: str, driver: Driver, script: ScriptDirectory | None = None
) -> None:
    """Alembic's ``command.stamp`` (no purge) through the project's env.py."""
    script = script or ScriptDirectory.from_config(config)
    destination = (revision,)
    _run(
        config,
        script,
        driver,
        driver.plan(lambda rev: script._stamp_revs(destination, rev)),
        destination_rev=destination,
        purge=False,
    )


@contextmanager
def logging_kept() -> Iterator[None]:
    """Run a project's env.py, then put logging back as it was.

    Alembic hands env.py the ini's path, and many call ``fileConfig(config.config_file_name)``
    unguarded: that replaces the root handlers and disables existing loggers. Inside the
    run it logs as it would under Alembic; afterwards myfy-db's own output is its own again.
    """
    import logging

    root = logging.getLogger()
    manager = logging.Logger.manager
    saved_root = (root.level, list(root.handlers))
    saved = {
        name: (item.level, list(item.handlers), item.propagate, item.disabled)
        for name, item in list(manager.loggerDict.items())
        if isinstance(item, logging.Logger)
    }
    try:
        yield
    finally:
        root.setLevel(saved_root[0])
        root.handlers[:] = saved_root[1]
        for name, item in list(manager.loggerDict.items()):
            if not isinstance(item, logging.Logger):
                continue
            if name in saved:
                level, handlers, propagate, disabled = saved[name]
                item.setLevel(level)
                item.handlers[:] = handlers
                item.propagate, item.disabled = propagate, disabled
            else:  # a logger env.py made: quiet again, as if it did not exist
                item.handlers.clear()
                item.setLevel(logging.NOTSET)
                item.propagate = True
