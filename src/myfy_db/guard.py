"""The production guard: one rule, called by every command that changes the schema.

Two layers protect a production database:

1. The local setting: in a protected environment (``production``, ``prod`` or one listed in
   ``MYFY_DATA_PROTECTED_ENVIRONMENTS``) the commands in :data:`REFUSED_WHEN_PROTECTED`
   refuse, naming the environment and where it was set.
2. The database's own record (table ``myfy_db_meta``): commands that change the schema refuse
   when the database is recorded as a protected environment and the current one differs;
   destructive commands refuse when the record differs at all. The only override is the
   environment variable ``MYFY_DB_DISABLE_ENVIRONMENT_CHECK=1``, never a flag.

After a successful schema change, :func:`record_environment` writes the record when there is
none, keeps it current when it matches, raises it to a protected environment, and never
lowers it from a protected one. The functions take a synchronous ``Connection`` so they also
run inside Alembic's ``run_sync``; async callers use ``await conn.run_sync(...)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

from sqlalchemy import Column, Connection, DateTime, Integer, MetaData, String, Table, inspect

from myfy_db._version import __version__
from myfy_db.errors import Refused
from myfy_db.settings import LoadedSettings, is_protected_environment

META_TABLE = "myfy_db_meta"
OVERRIDE_VARIABLE = "MYFY_DB_DISABLE_ENVIRONMENT_CHECK"

_meta = MetaData()
meta_table = Table(
    META_TABLE,
    _meta,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("environment", String(64), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("tool_version", String(32), nullable=False),
)


class Change(Enum):
    """How a command touches the schema."""

    SCHEMA = "schema"  # creates or alters (create-tables, migrate up/stamp/new)
    DESTRUCTIVE = "destructive"  # drops or downgrades (drop-tables, migrate down)


#: Commands refused outright in a protected environment (DESIGN.md).
REFUSED_WHEN_PROTECTED = frozenset({"create-tables", "drop-tables", "migrate down"})


@dataclass(frozen=True)
class EnvironmentRecord:
    """What ``myfy_db_meta`` says about the database."""

    environment: str
    recorded_at: datetime | None
    tool_version: str


def override_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``MYFY_DB_DISABLE_ENVIRONMENT_CHECK=1`` is set in the environment."""
    value = (environ if environ is not None else os.environ).get(OVERRIDE_VARIABLE, "")
    return value.strip().lower() in {"1", "true", "yes", "on"}


class ProductionGuard:
    """The guard for one command run, from the effective settings."""

    def __init__(self, loaded: LoadedSettings, environ: Mapping[str, str] | None = None) -> None:
        self.settings = loaded.settings
        self.environment = loaded.settings.environment
        self.source = loaded.source_of("environment")
        self.protected = loaded.settings.protected_environments
        self.override = override_enabled(environ)

    def is_protected(self, environment: str) -> bool:
        return is_protected_environment(environment, self.protected)

    def check_local(self, command: str) -> None:
        """Refuse ``command`` when the current environment is protected and it is guarded."""
        if command in REFUSED_WHEN_PROTECTED and self.settings.is_protected:
            raise Refused(
                f"{command} refused: environment {self.environment!r} (from {self.source}) "
                "is protected",
                hint="this command never runs in a protected environment",
            )

    def check_record(self, record: EnvironmentRecord | None, command: str, change: Change) -> None:
        """Refuse when the database's record forbids ``change`` from this environment."""
        if record is None or self.override or record.environment == self.environment:
            return
        recorded = record.environment
        if self.is_protected(recorded):
            raise Refused(
                f"{command} refused: the database is recorded as {recorded!r} (protected) but "
                f"the current environment is {self.environment!r} (from {self.source})",
                hint=f"point at the right database, or set {OVERRIDE_VARIABLE}=1 if you must",
            )
        if change is Change.DESTRUCTIVE:
            raise Refused(
                f"{command} refused: the database is recorded as {recorded!r} but the current "
                f"environment is {self.environment!r} (from {self.source})",
                hint=f"point at the right database, or set {OVERRIDE_VARIABLE}=1 if you must",
            )

    def check(
        self, connection: Connection, command: str, change: Change
    ) -> EnvironmentRecord | None:
        """Both checks for ``command`` on ``connection``; returns the record read."""
        self.check_local(command)
        record = read_record(connection)
        self.check_record(record, command, change)
        return record

    def record(self, connection: Connection) -> EnvironmentRecord:
        """Write or update the record after a successful change (see module docs)."""
        return record_environment(connection, self.environment, self.protected)


def read_record(connection: Connection) -> EnvironmentRecord | None:
    """The database's environment record, or None when it has none (no table, no row)."""
    if not inspect(connection).has_table(META_TABLE):
        return None
    row = connection.execute(meta_table.select().where(meta_table.c.id == 1)).mappings().first()
    if row is None:
        return None
    return EnvironmentRecord(row["environment"], row["recorded_at"], row["tool_version"])


def record_environment(
    connection: Connection, environment: str, protected: list[str] | None = None
) -> EnvironmentRecord:
    """Record ``environment`` in ``myfy_db_meta`` following the never-lower rule."""
    _meta.create_all(connection, checkfirst=True)
    now = datetime.now(UTC)
    current = read_record(connection)
    new = EnvironmentRecord(environment, now, __version__)
    values = {"environment": environment, "recorded_at": now, "tool_version": __version__}
    if current is None:
        connection.execute(meta_table.insert().values(id=1, **values))
        return new
    if current.environment == environment or (
        is_protected_environment(environment, protected)
        and not is_protected_environment(current.environment, protected)
    ):
        connection.execute(meta_table.update().where(meta_table.c.id == 1).values(**values))
        return new
    return current
