"""The production guard: one rule, called by every command that changes the schema.

Two layers protect a production database:

1. The local setting: in a protected environment (``production``, ``prod`` or one listed in
   ``MYFY_DATA_PROTECTED_ENVIRONMENTS``) the commands in :data:`REFUSED_WHEN_PROTECTED`
   refuse, naming the environment and where it was set.
2. The database's own record (table ``myfy_db_meta``): commands that change the schema refuse
   when the database is recorded as a protected environment and the current one differs;
   destructive commands refuse when the record differs at all. The record carries whether
   its environment is protected, so a custom protected environment (``live``) stays
   protected for every later invocation, whatever that invocation's own protected list
   says. Environments are compared trimmed and case-folded on both sides. The only override
   is the environment variable ``MYFY_DB_DISABLE_ENVIRONMENT_CHECK=1``, never a flag.

Every guarded path calls :meth:`ProductionGuard.prepare` before its first change: it runs
both checks and writes the record (when there is none, kept current when it matches, raised
to a protected environment, never lowered from a protected one except under the override)
in its own committed transaction, so a run that fails halfway still leaves the database
protected. The override lets a command past the record; it does not rewrite it: nothing
myfy-db does lowers or deletes a protected record. The functions take a synchronous
``Connection`` so they also run inside Alembic's ``run_sync``; async callers use
``await conn.run_sync(...)``.

The shell asks the same rule through :meth:`ProductionGuard.shell_decision`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    inspect,
    select,
)
from sqlalchemy.exc import IntegrityError

from myfy_db._version import __version__
from myfy_db.errors import ConfigError, Refused
from myfy_db.settings import LoadedSettings, is_protected_environment, normalise_environment

META_TABLE = "myfy_db_meta"
OVERRIDE_VARIABLE = "MYFY_DB_DISABLE_ENVIRONMENT_CHECK"
_OVERRIDE_HINT = f"point at the right database, or set {OVERRIDE_VARIABLE}=1 if you must"

_meta = MetaData()
meta_table = Table(
    META_TABLE,
    _meta,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("environment", String(64), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("tool_version", String(32), nullable=False),
    # Added after the first release: a record written before it has no such column, and
    # is then protected when its environment is one of the always-protected names.
    Column("protected", Boolean, nullable=True),
)


#: The database name the server reported to the last guard check in this context: what a
#: typed confirmation asks for (see :func:`server_database_name`).
reported_database_name: ContextVar[str | None] = ContextVar("reported_database_name", default=None)


def server_database_name(connection: Connection) -> str:
    """The database's name as the server reports it, which a typed confirmation asks for.

    PostgreSQL ``current_database()``, MySQL/MariaDB ``DATABASE()`` (empty when none is
    selected), SQLite the main database file's name (``:memory:`` for an in-memory one).
    """
    from pathlib import PurePath

    dialect = connection.dialect.name
    if dialect == "postgresql":
        name = connection.exec_driver_sql("SELECT current_database()").scalar()
    elif dialect in ("mysql", "mariadb"):
        name = connection.exec_driver_sql("SELECT DATABASE()").scalar()
    elif dialect == "sqlite":
        rows = connection.exec_driver_sql("PRAGMA database_list").all()
        files = [str(row[2] or "") for row in rows if row[1] == "main"]
        name = PurePath(files[0]).name if files and files[0] else ":memory:"
    else:
        name = connection.engine.url.database
    return str(name or "")


class Change(Enum):
    """How a command touches the schema."""

    SCHEMA = "schema"  # creates or alters (create-tables, migrate up/stamp/new)
    DESTRUCTIVE = "destructive"  # drops or downgrades (drop-tables, migrate down)


#: Commands refused outright in a protected environment (DESIGN.md).
REFUSED_WHEN_PROTECTED = frozenset(
    {"create-tables", "drop-tables", "migrate down", "migrate redo", "migrate reset"}
)


@dataclass(frozen=True)
class EnvironmentRecord:
    """What ``myfy_db_meta`` says about the database.

    ``environment`` is as stored (compare it with :func:`same_environment`); ``protected``
    is what the record carries, or for a record written before that column existed, whether
    the environment is one of the always-protected names.
    """

    environment: str
    recorded_at: datetime | None
    tool_version: str
    protected: bool = False

    @property
    def normalised(self) -> str:
        return normalise_environment(self.environment)


def same_environment(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` name the same environment (trimmed, case-folded)."""
    return normalise_environment(a) == normalise_environment(b)


def override_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``MYFY_DB_DISABLE_ENVIRONMENT_CHECK=1`` is set in the environment."""
    value = (environ if environ is not None else os.environ).get(OVERRIDE_VARIABLE, "")
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class ShellDecision:
    """What the guard says about opening a shell on a database.

    ``sandbox``: the shell opens sandboxed by default (the current environment is protected,
    or the database is recorded as a protected environment). ``no_sandbox_refusal``: the
    error to raise when ``--no-sandbox`` is asked for, or None when it is allowed.
    ``confirm``: ``--no-sandbox`` must then be confirmed by typing the database name.
    """

    record: EnvironmentRecord | None
    sandbox: bool
    no_sandbox_refusal: Refused | None
    confirm: bool
    reason: str


class ProductionGuard:
    """The guard for one command run, from the effective settings."""

    def __init__(self, loaded: LoadedSettings, environ: Mapping[str, str] | None = None) -> None:
        self.settings = loaded.settings
        self.environment = normalise_environment(loaded.settings.environment)
        self.source = loaded.source_of("environment")
        self.protected = loaded.settings.protected_environments
        self.override = override_enabled(environ)

    def is_protected(self, environment: str) -> bool:
        return is_protected_environment(environment, self.protected)

    def record_is_protected(self, record: EnvironmentRecord | None) -> bool:
        """True when ``record`` protects the database (by its own flag or by name)."""
        return record is not None and (record.protected or self.is_protected(record.environment))

    def check_local(self, command: str) -> None:
        """Refuse ``command`` when the current environment is protected and it is guarded."""
        if command in REFUSED_WHEN_PROTECTED and self.is_protected(self.environment):
            raise Refused(
                f"{command} refused: environment {self.environment!r} (from {self.source}) "
                "is protected",
                hint="this command never runs in a protected environment",
            )

    def refusal(
        self, record: EnvironmentRecord | None, command: str, change: Change
    ) -> Refused | None:
        """The error the database's record raises against ``command``, or None."""
        if record is None or self.override:
            return None
        recorded = record.environment
        protected = self.record_is_protected(record)
        if same_environment(recorded, self.environment):
            if protected and command in REFUSED_WHEN_PROTECTED:
                return Refused(
                    f"{command} refused: the database is recorded as {recorded!r}, a protected "
                    f"environment (current environment {self.environment!r}, from {self.source})",
                    hint="this command never runs on a protected database",
                )
            return None
        if protected:
            return Refused(
                f"{command} refused: the database is recorded as {recorded!r} (protected) but "
                f"the current environment is {self.environment!r} (from {self.source})",
                hint=_OVERRIDE_HINT,
            )
        if change is Change.DESTRUCTIVE:
            return Refused(
                f"{command} refused: the database is recorded as {recorded!r} but the current "
                f"environment is {self.environment!r} (from {self.source})",
                hint=_OVERRIDE_HINT,
            )
        return None

    def check_record(self, record: EnvironmentRecord | None, command: str, change: Change) -> None:
        """Refuse when the database's record forbids ``change`` from this environment."""
        error = self.refusal(record, command, change)
        if error is not None:
            raise error

    def check(
        self, connection: Connection, command: str, change: Change
    ) -> EnvironmentRecord | None:
        """Both checks for ``command`` on ``connection``; returns the record read.

        Also notes the database's name as the server reports it, for the confirmation.
        """
        return self._checked(connection, command, change).record

    def _checked(self, connection: Connection, command: str, change: Change) -> _MetaState:
        self.check_local(command)
        name = server_database_name(connection)
        if not name:
            raise ConfigError(
                f"{command}: the URL names no database, and the server has none selected",
                hint="add the database name to the URL",
            )
        reported_database_name.set(name)
        state = _read_state(connection)
        self.check_record(state.record, command, change)
        if change is Change.DESTRUCTIVE and state.record is None and not self.override:
            held = _user_tables(connection)
            if held:
                raise Refused(
                    f"{command} refused: the database holds {len(held)} table(s) but no "
                    f"environment record ({META_TABLE}), so nothing says it is safe to destroy",
                    hint="record what it is first: myfy-db set-environment NAME "
                    "(e.g. development), then run this again",
                )
        return state

    def prepare(self, connection: Connection, command: str, change: Change) -> EnvironmentRecord:
        """Check ``command``, then write the record and commit, before any change is made.

        Call it on the connection that will make the change, before the change: the record
        is committed in its own transaction, so a run that fails later still leaves it.
        """
        state = self._checked(connection, command, change)
        record = record_environment(connection, self.environment, self.protected, state)
        connection.commit()
        return record

    def record(self, connection: Connection) -> EnvironmentRecord:
        """Write or update the record (see module docs); the caller commits."""
        return record_environment(connection, self.environment, self.protected)

    def shell_decision(self, record: EnvironmentRecord | None) -> ShellDecision:
        """How a shell opens on a database carrying ``record`` (read with :func:`read_record`)."""
        local = self.is_protected(self.environment)
        recorded = self.record_is_protected(record)
        if recorded and record is not None:
            reason = f"the database is recorded as {record.environment!r} (protected)"
        elif local:
            reason = f"environment {self.environment!r} (from {self.source}) is protected"
        else:
            reason = ""
        refusal = None
        if (
            recorded
            and record is not None
            and not self.override
            and not same_environment(record.environment, self.environment)
        ):
            refusal = Refused(
                f"--no-sandbox refused: the database is recorded as {record.environment!r} "
                f"(protected) but the current environment is {self.environment!r} "
                f"(from {self.source})",
                hint=_OVERRIDE_HINT,
            )
        return ShellDecision(
            record=record,
            sandbox=local or recorded,
            no_sandbox_refusal=refusal,
            confirm=local or recorded,
            reason=reason,
        )


@dataclass(frozen=True)
class _MetaState:
    """``myfy_db_meta`` as one read found it: its columns (None: no table) and the record."""

    columns: frozenset[str] | None
    record: EnvironmentRecord | None


def _read_state(connection: Connection) -> _MetaState:
    """Read the table's columns and the record: a catalog lookup and two plain queries.

    The columns come from the result of a query that matches no row, not from the
    Inspector's column reflection (a heavy catalog query on PostgreSQL), and the record is
    then selected through the table's own column types.
    """
    if not inspect(connection).has_table(META_TABLE):
        return _MetaState(None, None)
    probe = connection.exec_driver_sql(f"SELECT * FROM {META_TABLE} WHERE 1 = 0")
    columns = frozenset(str(name).lower() for name in probe.keys())  # noqa: SIM118 (a result)
    probe.close()
    wanted = [c for c in meta_table.c if c.name in columns]
    row = connection.execute(select(*wanted).where(meta_table.c.id == 1)).mappings().first()
    if row is None:
        return _MetaState(columns, None)
    environment = str(row["environment"])
    flag = row.get("protected")
    protected = bool(flag) or is_protected_environment(environment)
    record = EnvironmentRecord(environment, row["recorded_at"], str(row["tool_version"]), protected)
    return _MetaState(columns, record)


def _user_tables(connection: Connection) -> list[str]:
    """The tables the database holds besides the record itself (its default schema)."""
    return [name for name in inspect(connection).get_table_names() if name != META_TABLE]


def read_record(connection: Connection) -> EnvironmentRecord | None:
    """The database's environment record, or None when it has none (no table, no row)."""
    return _read_state(connection).record


def record_environment(
    connection: Connection,
    environment: str,
    protected: list[str] | None = None,
    state: _MetaState | None = None,
) -> EnvironmentRecord:
    """Record ``environment`` in ``myfy_db_meta`` following the never-lower rule.

    The record is written when there is none, kept current when it matches (a protected
    record stays protected), raised when ``environment`` is protected and the record is
    not, and otherwise left as it is. ``state`` is what a read on this connection just
    found (the guard's check), so it is not read again.
    """
    try:
        return _record_environment(connection, environment, protected, state)
    except IntegrityError:
        # Another run inserted the row between our read and our insert: read it again.
        connection.rollback()
        return _record_environment(connection, environment, protected, None)


def _record_environment(
    connection: Connection,
    environment: str,
    protected: list[str] | None,
    state: _MetaState | None,
) -> EnvironmentRecord:
    state = state or _read_state(connection)
    if state.columns is None:
        _meta.create_all(connection, checkfirst=True)
    elif "protected" not in state.columns:
        connection.exec_driver_sql(f"ALTER TABLE {META_TABLE} ADD COLUMN protected BOOLEAN")
    environment = normalise_environment(environment)
    now = datetime.now(UTC)
    current = state.record
    is_protected = is_protected_environment(environment, protected)
    if current is not None:
        if same_environment(current.environment, environment):
            is_protected = is_protected or current.protected
        elif is_protected and not current.protected:
            pass  # raised to a protected environment
        else:
            return current  # never lowered, never moved sideways
    values = {
        "environment": environment,
        "recorded_at": now,
        "tool_version": __version__,
        "protected": is_protected,
    }
    if current is None:
        connection.execute(meta_table.insert().values(id=1, **values))
    else:
        connection.execute(meta_table.update().where(meta_table.c.id == 1).values(**values))
    from myfy_db.record_trigger import ensure_record_trigger

    ensure_record_trigger(connection)
    return EnvironmentRecord(environment, now, __version__, is_protected)


def set_environment(
    connection: Connection,
    guard: ProductionGuard,
    name: str,
    confirm: Callable[[], None] | None = None,
) -> tuple[EnvironmentRecord, bool]:
    """Record ``name`` as the environment of a database that has no record (``set-environment``).

    Returns the record and whether it was written: a database already recorded as ``name``
    is left as it is. A record of another environment is never moved (exit 3), and from a
    protected environment only a protected name may be recorded. ``confirm`` (the typed
    database name) runs before anything is written; it raises to decline.
    """
    environment = normalise_environment(name)
    if not environment:
        raise ConfigError("set-environment needs a name (e.g. development, staging, production)")
    reported_database_name.set(server_database_name(connection))
    state = _read_state(connection)
    current = state.record
    if current is not None:
        if same_environment(current.environment, environment):
            return current, False
        raise Refused(
            f"set-environment refused: the database is already recorded as {current.environment!r}",
            hint="a record is never moved to another environment: point at the right database",
        )
    if guard.is_protected(guard.environment) and not guard.is_protected(environment):
        raise Refused(
            f"set-environment refused: environment {guard.environment!r} (from {guard.source}) "
            f"is protected, and {environment!r} is not",
            hint="from a protected environment, record only a protected one",
        )
    if confirm is not None:
        confirm()
    record = record_environment(connection, environment, guard.protected, state)
    connection.commit()
    return record, True
