"""``myfy-db dbshell``: the database's own client (psql, mariadb/mysql, sqlite3), configured
from the same settings as every other command.

:func:`client_command` turns a database URL into the client's argument list and environment:

- host, port, user and database become the client's arguments; arguments given after ``--``
  follow them;
- the password goes through the client's environment (``PGPASSWORD``, ``MYSQL_PWD``), never
  its command line, where any user of the machine could read it (``/proc/PID/cmdline``);
- ``read_only`` opens the client read-only where the client allows it: PostgreSQL by
  ``PGOPTIONS=-c default_transaction_read_only=on``, SQLite by ``-readonly``. The MariaDB/MySQL
  client has no such switch (``--safe-updates`` only refuses UPDATE/DELETE without a key
  limit): :attr:`ClientCommand.read_only` stays False and the caller must ask for confirmation.

A missing client is a :class:`~myfy_db.errors.ConfigError` (exit 2) naming the Debian package
that provides it. This module imports nothing heavy.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from myfy_db.errors import CannotConnect, ConfigError

__all__ = ["CLIENTS", "Client", "ClientCommand", "client_command"]

READ_ONLY_PGOPTIONS = "-c default_transaction_read_only=on"


@dataclass(frozen=True)
class Client:
    """A database client: the programs tried in order, and the package that provides them."""

    programs: tuple[str, ...]
    package: str
    name: str


CLIENTS = {
    "postgresql": Client(("psql",), "postgresql-client", "PostgreSQL"),
    "mysql": Client(("mariadb", "mysql"), "mariadb-client", "MariaDB/MySQL"),
    "sqlite": Client(("sqlite3",), "sqlite3", "SQLite"),
}


@dataclass(frozen=True)
class ClientCommand:
    """What to run: ``argv`` with ``env`` added to the environment (never holding a password in
    ``argv``). ``read_only`` says whether the client itself was put in read-only mode."""

    backend: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    read_only: bool = False

    @property
    def program(self) -> str:
        return self.argv[0]


def _find(client: Client, which: Callable[[str], str | None]) -> str:
    for program in client.programs:
        path = which(program)
        if path is not None:
            return path
    names = " or ".join(client.programs)
    raise ConfigError(
        f"the {client.name} client ({names}) is not installed or not on PATH",
        hint=f"install it (Debian/Ubuntu: apt-get install {client.package}) and try again",
    )


def client_command(
    url: str,
    extra: Sequence[str] = (),
    *,
    read_only: bool = False,
    environ: Mapping[str, str] | None = None,
    which: Callable[[str], str | None] = shutil.which,
) -> ClientCommand:
    """The client command for ``url`` (see the module docs)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    backend = parsed.get_backend_name()
    backend = "mysql" if backend == "mariadb" else backend
    client = CLIENTS.get(backend)
    if client is None:
        raise ConfigError(f"dbshell does not know a client for {backend!r} databases")
    environ = os.environ if environ is None else environ
    if backend == "sqlite":
        return _sqlite(parsed.database, extra, read_only, _find(client, which))
    program = _find(client, which)
    env: dict[str, str] = {}
    argv = [program]
    if backend == "postgresql":
        if parsed.host:
            argv += ["--host", parsed.host]
        if parsed.port:
            argv += ["--port", str(parsed.port)]
        if parsed.username:
            argv += ["--username", parsed.username]
        if parsed.database:
            argv += ["--dbname", parsed.database]
        if parsed.password is not None:
            env["PGPASSWORD"] = str(parsed.password)
        env["PGAPPNAME"] = "myfy-db dbshell"
        if read_only:
            existing = environ.get("PGOPTIONS", "").strip()
            env["PGOPTIONS"] = f"{existing} {READ_ONLY_PGOPTIONS}".strip()
        return ClientCommand(backend, [*argv, *extra], env, read_only=read_only)
    if parsed.host:
        argv.append(f"--host={parsed.host}")
    if parsed.port:
        argv.append(f"--port={parsed.port}")
    if parsed.username:
        argv.append(f"--user={parsed.username}")
    if parsed.database:
        argv.append(f"--database={parsed.database}")
    if parsed.password is not None:
        env["MYSQL_PWD"] = str(parsed.password)
    return ClientCommand(backend, [*argv, *extra], env, read_only=False)


def _sqlite(
    database: str | None, extra: Sequence[str], read_only: bool, program: str
) -> ClientCommand:
    if not database or database == ":memory:":
        raise ConfigError(
            "an in-memory SQLite database lives only inside one process: there is nothing to open",
            hint="point --url at a SQLite file",
        )
    if not Path(database).exists():
        raise CannotConnect(
            f"SQLite database {database} does not exist",
            hint="check the path in the database URL (dbshell never creates a database)",
        )
    flags = ["-readonly"] if read_only else []
    return ClientCommand("sqlite", [program, *flags, database, *extra], {}, read_only=read_only)
