"""``--online-ddl pt-osc``: one ALTER that needs a table copy, run by pt-online-schema-change.

pt-online-schema-change (the Debian package ``percona-toolkit``) builds ``_<table>_new``
with the ALTER applied, copies the rows over in chunks while three triggers carry the
concurrent writes along, then swaps the two tables with one atomic ``RENAME TABLE``. Writers
are never blocked for longer than a chunk, and the swap waits for its lock only as long as
``--ddl-lock-timeout`` (``--set-vars lock_wait_timeout``).

- The connection comes from the run's own settings: ``h``, ``P`` (or ``S`` for a
  ``unix_socket``), ``u``, ``D`` and ``t`` in the DSN. The password never reaches the
  command line, the environment or a file: it is given on pt-osc's standard input, which
  ``--ask-pass`` reads (and ``MYSQL_PWD`` is taken out of its environment).
- ``--max-lag``, ``--chunk-time`` and ``--critical-load`` are passed through as given.
- Its progress (``Copying ... 37% 00:49 remain``) becomes a progress line through the run's
  reporter, at most every :data:`PROGRESS_EVERY_SECONDS`.
- Its exit status and its last error line become the run's error (:class:`PtOscResult`);
  what it leaves behind when it is stopped (it keeps its triggers and new table when it is
  interrupted) is for the caller to drop (:mod:`.mysql` does).
- ``--no-version-check``: it never calls Percona's servers; ``--preserve-triggers``: the
  table's own triggers are kept, as the plain ALTER keeps them.

:func:`run` is a coroutine; :func:`run_sync` runs it from SQLAlchemy's synchronous side (a
revision's step), on the run's own event loop, so that Ctrl-C and the lock watcher still
work while the copy runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import shutil
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from myfy_db.errors import ConfigError, OperationFailed

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

    from myfy_db.migrations.options import PtOscOptions

__all__ = [
    "AUTO_INC_CHUNK_TIME",
    "PACKAGE",
    "PT_OSC",
    "PtOscJob",
    "PtOscResult",
    "Session",
    "alter",
    "chunk_time",
    "error_line",
    "foreign_keys",
    "locate",
    "quote",
    "run",
    "run_sync",
]

T = TypeVar("T")

#: The program, and the Debian package it comes from.
PT_OSC = "pt-online-schema-change"
PACKAGE = "percona-toolkit"
#: How often pt-osc reports its progress (``--progress time,N``)...
PT_OSC_PROGRESS_SECONDS = 1
#: ... and how often that becomes a line on stderr (the first at once).
PROGRESS_EVERY_SECONDS = 5.0
#: ``--chunk-time`` when none is given and inserts would wait for each chunk: with
#: ``innodb_autoinc_lock_mode`` 0 or 1 (MariaDB's default is 1) each chunk's
#: ``INSERT ... SELECT`` holds the new table's AUTO-INC lock for its whole run, and every
#: insert into the table (its trigger writes the new table) waits for it. On MariaDB 10.11,
#: a writer inserting every 2 ms into 1,000,000 rows waited 0.5-0.8 s per chunk with pt-osc's
#: own 0.5 s, p99 40 ms with 0.02 s and 26 ms with 0.01 s (the copy 1.5 times as long).
AUTO_INC_CHUNK_TIME = 0.01
#: How long a stopped pt-osc gets to exit after SIGTERM.
STOP_SECONDS = 0.3

_PROMPT = "Enter MySQL password: "
_PROGRESS = re.compile(r"^Copying (?P<table>.+?):\s+(?P<percent>\d+)% (?P<remain>\S+) remain")
_STAMP = re.compile(r"^(?:\(in cleanup\)\s*)?(?:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\s+)?")
_INNER_STAMP = re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\s+")
_NEW_TABLE = re.compile(r"^Created new table (?P<name>\S+) OK\.")
_SWAPPED = "Swapped original and new tables OK."
#: What pt-osc says on every run, successful or not: never its error.
_ROUTINE = re.compile(
    r"^(?:No slaves found|Not checking slave lag|Operation, tries, wait:|Altering |"
    r"Altered |Creating |Created |Copying |Copied |Analyzing |Swapping |Swapped |Dropping |"
    r"Dropped |Successfully altered|Child tables:|Will automatically choose|"
    r"Not dropping |DROP TRIGGER IF EXISTS|DROP TABLE IF EXISTS|To drop |"
    r"Dry run complete|# Exiting on SIG|\S+ was not altered\.|Not updating foreign keys|"
    r"Rebuilding foreign key|Rebuilt foreign key)"
)


def locate(path: str | None = None) -> str:
    """The pt-online-schema-change on ``path`` (default: ``PATH``); :class:`ConfigError`
    (exit 2) naming the package when it is not installed."""
    found = shutil.which(PT_OSC, path=path)
    if found is None:
        raise ConfigError(
            f"--online-ddl pt-osc needs {PT_OSC}, which is not installed (not on PATH): "
            f"it comes from the package {PACKAGE}",
            hint=f"install it (apt-get install {PACKAGE}), or run without --online-ddl pt-osc",
        )
    return found


def _dsn_value(what: str, value: str) -> str:
    if "," in value or "=" in value:
        raise ConfigError(
            f"--online-ddl pt-osc cannot name the {what} {value!r} in its DSN "
            "(a comma or '=' separates DSN parts)",
            hint="run this change by hand, or in a maintenance window without --online-ddl",
        )
    return value


@dataclass(frozen=True)
class PtOscJob:
    """One table's ALTER for pt-online-schema-change, and the connection it uses."""

    #: The run's URL (SQLAlchemy's), from its settings: host, port, user and password.
    url: URL
    database: str
    table: str
    #: The ALTER's clause list (``MODIFY total BIGINT``), for ``--alter``.
    alter: str
    options: PtOscOptions
    #: ``--set-vars lock_wait_timeout``: the swap waits this long for its lock (seconds;
    #: None: pt-osc's own default).
    lock_wait_timeout: float | None = None

    @property
    def password(self) -> str | None:
        return self.url.password or None

    def dsn(self) -> str:
        """``h=...,P=...,u=...,D=...,t=...,A=utf8mb4``: no password, ever."""
        url = self.url
        parts: list[str] = []
        socket_path = url.query.get("unix_socket")
        if isinstance(socket_path, str) and socket_path:
            parts.append(f"S={_dsn_value('socket', socket_path)}")
        else:
            parts.append(f"h={_dsn_value('host', url.host or 'localhost')}")
            parts.append(f"P={int(url.port or 3306)}")
        if url.username:
            parts.append(f"u={_dsn_value('user', url.username)}")
        parts.append(f"D={_dsn_value('database', self.database)}")
        parts.append(f"t={_dsn_value('table', self.table)}")
        parts.append("A=utf8mb4")
        return ",".join(parts)

    def argv(self, executable: str) -> list[str]:
        """pt-osc's command line: the password is not on it (``--ask-pass`` reads stdin)."""
        argv = [
            executable,
            "--execute",
            "--no-version-check",
            "--preserve-triggers",  # the table's own triggers, as the plain ALTER keeps them
            "--progress",
            f"time,{PT_OSC_PROGRESS_SECONDS}",
            "--alter",
            self.alter,
        ]
        if self.password is not None:
            argv.append("--ask-pass")
        if self.lock_wait_timeout is not None and self.lock_wait_timeout > 0:
            seconds = max(1, math.ceil(self.lock_wait_timeout - 1e-6))
            argv += ["--set-vars", f"lock_wait_timeout={seconds}"]
        options = self.options
        if options.max_lag is not None:
            argv += ["--max-lag", f"{options.max_lag:g}"]
        if options.chunk_time is not None:
            argv += ["--chunk-time", f"{options.chunk_time:g}"]
        if options.critical_load is not None:
            argv += ["--critical-load", options.critical_load]
        argv.append(self.dsn())
        return argv


@dataclass
class PtOscResult:
    """How one pt-osc run ended."""

    status: int
    #: pt-osc said it swapped the tables: the ALTER is in place, whatever came after.
    swapped: bool = False
    #: The table pt-osc created (``db._orders_new``), when it said so.
    new_table: str | None = None
    #: Its last error, one line (None when it succeeded).
    error: str | None = None
    seconds: float = 0.0
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == 0


#: Perl's ``at /usr/bin/pt-online-schema-change line 4455, <STDIN> line 1.``
_PERL_AT = re.compile(r"\s+at \S+ line \d+(?:, <\w+> (?:line|chunk) \d+)?\.?$")


def _clean(line: str) -> str:
    line = line.replace(_PROMPT, "").rstrip()
    line = _STAMP.sub("", line.strip())
    line = _INNER_STAMP.sub("", line).strip().removeprefix("# ")
    return _PERL_AT.sub("", line)


def _blocks(lines: list[str]) -> list[list[str]]:
    """Lines grouped into messages: an unindented line and the indented lines under it."""
    blocks: list[list[str]] = []
    for raw in lines:
        text = raw.replace(_PROMPT, "").rstrip()
        if not text.strip():
            continue
        if text.startswith((" ", "\t")) and blocks and not text.lstrip().startswith("(in"):
            blocks[-1].append(text.strip())
        else:
            blocks.append([_clean(text)])
    return blocks


def _message(block: list[str]) -> str:
    """One line of a message: its head, and the server's ``Message:`` when it gave one."""
    head = block[0]
    detail = [line.split(":", 1)[1].strip() for line in block[1:] if line.startswith("Message:")]
    return " ".join([head, *detail]) if detail else head


def error_line(stdout: list[str], stderr: list[str]) -> str | None:
    """pt-osc's last error, one line: the last message on stderr that is not progress;
    else the last of stdout's that is not its routine narration."""
    messages = [_message(b) for b in _blocks(stderr) if b[0] and not _PROGRESS.match(b[0])]
    return messages[-1] if messages else _last_paragraph(stdout)


def _last_paragraph(stdout: list[str]) -> str | None:
    """The last run of consecutive lines that are not pt-osc's routine narration, joined."""
    paragraphs: list[list[str]] = [[]]
    for raw in stdout:
        text = raw.rstrip()
        if not text.strip() or text.startswith((" ", "\t")):
            if paragraphs[-1]:
                paragraphs.append([])
            continue
        cleaned = _clean(text)
        if _ROUTINE.match(cleaned):
            if paragraphs[-1]:
                paragraphs.append([])
            continue
        paragraphs[-1].append(cleaned)
    found = [p for p in paragraphs if p]
    return " ".join(found[-1]) if found else None


ProgressReport = Callable[[str], None]


async def run(
    job: PtOscJob,
    report: ProgressReport,
    *,
    executable: str | None = None,
) -> PtOscResult:
    """Run pt-osc for ``job`` to its end; its progress goes to ``report``, as lines of
    ``copying orders: 37% done, 00:49 remaining``.

    Cancelled (Ctrl-C), it stops pt-osc (SIGTERM) before the cancellation goes on; pt-osc
    then keeps its triggers and new table, which the caller drops.
    """
    program = executable or locate()
    environment = {k: v for k, v in os.environ.items() if k != "MYSQL_PWD"}
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        *job.argv(program),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment,
    )
    result = PtOscResult(status=-1)
    last_report = [-math.inf]

    async def feed() -> None:
        assert process.stdin is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            if job.password is not None:
                process.stdin.write(job.password.encode() + b"\n")
                await process.stdin.drain()
        process.stdin.close()

    async def read(stream: asyncio.StreamReader | None, into: list[str]) -> None:
        assert stream is not None
        while True:
            raw = await stream.readline()
            if not raw:
                return
            line = raw.decode("utf-8", "replace").replace(_PROMPT, "").rstrip("\n")
            into.append(line)
            text = _clean(line)
            progress = _PROGRESS.match(text)
            if progress is not None:
                now = time.monotonic()
                if now - last_report[0] >= PROGRESS_EVERY_SECONDS:
                    last_report[0] = now
                    report(
                        f"copying {job.table}: {progress['percent']}% done, "
                        f"{progress['remain']} remaining"
                    )
                continue
            created = _NEW_TABLE.match(text)
            if created is not None:
                result.new_table = created["name"]
            if text == _SWAPPED:
                result.swapped = True

    try:
        await asyncio.gather(
            feed(), read(process.stdout, result.stdout), read(process.stderr, result.stderr)
        )
        result.status = await process.wait()
    except BaseException:
        _stop(process)
        waiting = asyncio.ensure_future(process.wait())
        with contextlib.suppress(BaseException):
            await asyncio.wait({waiting}, timeout=STOP_SECONDS)
        if not waiting.done():
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        raise
    result.seconds = time.monotonic() - started
    if not result.ok:
        result.error = error_line(result.stdout, result.stderr)
        if result.status < 0:  # it never said why: a signal ended it
            killed = f"killed by {signal.Signals(-result.status).name}"
            result.error = f"{result.error} ({killed})" if result.error else killed
    return result


def _stop(process: Any) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)


def run_sync(awaitable: Callable[[], Awaitable[T]]) -> T:
    """Await ``awaitable()`` from SQLAlchemy's synchronous side: on the run's event loop
    when called inside its greenlet (a migration step), else on a loop of its own."""
    from sqlalchemy.util import await_
    from sqlalchemy.util.concurrency import in_greenlet

    if in_greenlet():
        return await_(awaitable())

    async def main() -> T:
        return await awaitable()

    return asyncio.run(main())


# -- the table, before and after ---------------------------------------------------------


class Session(Protocol):
    """The migration connection, as :func:`alter` reads and changes the table through it."""

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]: ...

    def run(self, sql: str) -> None: ...


def quote(name: str) -> str:
    """``name`` as a MySQL identifier."""
    return "`" + name.replace("`", "``") + "`"


def foreign_keys(session: Session, schema: str, table: str) -> set[str]:
    """The names of the foreign keys of ``schema.table``."""
    rows = session.rows(
        "SELECT CONSTRAINT_NAME FROM information_schema.TABLE_CONSTRAINTS WHERE "
        "CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s AND CONSTRAINT_TYPE = 'FOREIGN KEY'",
        (schema, table),
    )
    return {str(r[0]) for r in rows}


def _triggers(session: Session, schema: str, table: str) -> set[str]:
    """pt-osc's triggers on ``schema.table`` (``pt_osc_<db>_<table>_ins`` and the like)."""
    rows = session.rows(
        "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE "
        "EVENT_OBJECT_SCHEMA = %s AND EVENT_OBJECT_TABLE = %s AND TRIGGER_NAME LIKE %s",
        (schema, table, "pt\\_osc\\_%"),
    )
    return {str(r[0]) for r in rows}


def _exists(session: Session, schema: str, table: str) -> bool:
    return bool(
        session.rows(
            "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
            (schema, table),
        )
    )


def chunk_time(session: Session, schema: str, table: str, given: float | None) -> float | None:
    """``--chunk-time``: as given; else :data:`AUTO_INC_CHUNK_TIME` where the server makes
    inserts wait for each chunk (an AUTO_INCREMENT column, ``innodb_autoinc_lock_mode`` below
    2); else None, pt-osc's own default."""
    if given is not None:
        return given
    mode = session.rows("SELECT @@innodb_autoinc_lock_mode")
    if mode and mode[0][0] is not None and int(mode[0][0]) >= 2:
        return None
    counted = session.rows(
        "SELECT 1 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
        "AND EXTRA LIKE %s",
        (schema, table, "%auto_increment%"),
    )
    return AUTO_INC_CHUNK_TIME if counted else None


def alter(
    session: Session,
    job: PtOscJob,
    *,
    prefix: str,
    why: str,
    state: str,
    report: ProgressReport,
    executable: str | None = None,
) -> None:
    """Run ``job`` inside the revision's step, which is recorded only once pt-osc has
    swapped the table: a failure is :class:`OperationFailed` (exit 1) with pt-osc's exit
    status and last error, after dropping what it left.

    ``prefix`` names the revision and operation in every line; ``why`` says why pt-osc runs
    it; ``state`` what of the revision ran before (for the error's hint).
    """
    schema, table = job.database, job.table
    stale = _triggers(session, schema, table)
    if stale:
        drops = "; ".join(f"DROP TRIGGER {quote(schema)}.{quote(t)}" for t in sorted(stale))
        raise OperationFailed(
            f"{prefix}: {schema}.{table} still has the triggers of an earlier {PT_OSC} "
            f"({', '.join(sorted(stale))})",
            hint=f"if no {PT_OSC} runs on it now, drop them ({drops}) and its _{table}_new "
            f"table, then run again; {state}",
        )
    new_default = f"_{table}_new"
    new_existed = _exists(session, schema, new_default)
    keys_before = foreign_keys(session, schema, table)
    report(f"{prefix} -> {PT_OSC} ({why})")
    # The ALTER would commit the open transaction first: so does this, and the swap then
    # waits for no lock this session holds.
    session.run("COMMIT")
    try:
        result = run_sync(
            lambda: run(job, lambda line: report(f"{prefix}: {line}"), executable=executable)
        )
    except BaseException:  # Ctrl-C, the server gone: drop what pt-osc left, if we still can
        with contextlib.suppress(BaseException):
            _drop_leftovers(session, schema, table, None, new_default, new_existed)
        raise
    if result.swapped:
        report(
            f"{prefix}: {PT_OSC} swapped {table} in {result.seconds:.1f} s"
            + ("" if result.ok else f" (then exited {result.status}: {result.error})")
        )
        _foreign_keys_named_back(session, schema, table, keys_before, prefix, report)
        return
    dropped = _drop_leftovers(session, schema, table, result.new_table, new_default, new_existed)
    left = f"; dropped what it left: {', '.join(dropped)}" if dropped else ""
    advice = next((a for found, a in _ADVICE if found in (result.error or "")), "")
    raise OperationFailed(
        f"{prefix}: {PT_OSC} failed (exit status {result.status}): "
        f"{result.error or 'it gave no reason'}",
        hint=f"{advice}{table} is unchanged{left}; {state}",
    )


#: What to do about pt-osc's refusals that name their cause.
_ADVICE = (
    (
        "privilege",
        f"{PT_OSC} looks for replicas (the process list, SHOW SLAVE HOSTS) to watch their "
        "lag: grant the user PROCESS and REPLICATION MASTER ADMIN (MySQL: REPLICATION "
        "SLAVE); ",
    ),
    (
        "--alter-foreign-keys-method",
        "foreign keys of other tables point at this one, which pt-osc would have to rebuild "
        "or swap: run this change by hand with pt-online-schema-change "
        "--alter-foreign-keys-method, or in a maintenance window; ",
    ),
    (
        "PRIMARY KEY or a unique index",
        "pt-osc needs a primary key (or a unique NOT NULL index) on the table: add one first; ",
    ),
)


def _foreign_keys_named_back(
    session: Session,
    schema: str,
    table: str,
    before: set[str],
    prefix: str,
    report: ProgressReport,
) -> None:
    """Give the table's foreign keys their names back: pt-osc names those it copies to the
    new table ``_name`` (or ``name`` again for ``__name``), as foreign key names are unique
    in a database. Dropped and added again in one ALTER, INPLACE with the checks off: the
    rows were checked all along."""
    after = foreign_keys(session, schema, table)
    renamed = {
        new: old
        for new in after - before
        for old in before - after
        if new.lstrip("_") == old.lstrip("_")
    }
    if not renamed:
        return
    created = str(session.rows(f"SHOW CREATE TABLE {quote(schema)}.{quote(table)}")[0][1])
    clauses: list[str] = []
    for line in created.splitlines():
        text = line.strip().rstrip(",")
        for new, old in renamed.items():
            head = f"CONSTRAINT {quote(new)} "
            if text.startswith(head):
                clauses.append(f"DROP FOREIGN KEY {quote(new)}")
                clauses.append(f"ADD CONSTRAINT {quote(old)} {text[len(head) :]}")
    if not clauses:
        return
    checks = int(session.rows("SELECT @@SESSION.foreign_key_checks")[0][0])
    session.run("SET SESSION foreign_key_checks = 0")
    try:
        session.run(
            f"ALTER TABLE {quote(schema)}.{quote(table)} {', '.join(clauses)}, "
            "ALGORITHM=INPLACE, LOCK=NONE"
        )
    finally:
        session.run(f"SET SESSION foreign_key_checks = {checks}")
    names = ", ".join(f"{new} -> {old}" for new, old in sorted(renamed.items()))
    report(f"{prefix}: foreign keys renamed by {PT_OSC} named back ({names})")


def _drop_leftovers(
    session: Session,
    schema: str,
    table: str,
    new_table: str | None,
    new_default: str,
    new_existed: bool,
) -> list[str]:
    """Drop the triggers and the new table a stopped pt-osc left (it keeps them when it is
    interrupted); a ``_<table>_new`` that was there before it ran is kept."""
    dropped: list[str] = []
    for trigger in sorted(_triggers(session, schema, table)):
        session.run(f"DROP TRIGGER IF EXISTS {quote(schema)}.{quote(trigger)}")
        dropped.append(f"trigger {trigger}")
    name = new_table.split(".", 1)[-1].strip("`") if new_table else None
    if name is None and not new_existed:
        name = new_default
    if name and _exists(session, schema, name):
        session.run(f"DROP TABLE IF EXISTS {quote(schema)}.{quote(name)}")
        dropped.append(f"table {name}")
    return dropped
