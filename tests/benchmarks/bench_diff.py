"""``myfy-db diff`` on generated PostgreSQL schemas: 1,000 tables a side, and against migra.

- Scale: two databases of ``TABLES`` tables each (columns of several types, a serial key, a
  foreign key to the previous table, a check, a unique constraint, an index), where every
  tenth table differs (a column's type, a missing index, an extra column, a missing check,
  a changed foreign key) and a few tables exist on one side only. Whole process, ``--json``;
  the goal is at most 5 s (a Comparison against that budget).
- Against migra (archived; run from a throwaway venv, ``/tmp/migravenv`` or
  ``MYFY_BENCH_MIGRA``, with psycopg2 and SQLAlchemy 1.x): the same kind of pair at
  ``MIGRA_TABLES`` tables, ``myfy-db diff --sql`` against ``migra --unsafe`` (both print the
  SQL that makes the second database equal the first), goal at most 1.0x. Every object
  migra's SQL touches must be in myfy-db's differences: the line ``migra coverage`` says how
  many are, and names those that are not. Skipped when migra is not installed.

Quick mode (``run.py --quick``) runs the first figure at 20 tables and skips migra's.
Each run makes databases named after its process, so two runs at once never meet.

Needs the PostgreSQL server of the tests (``MYFY_TEST_POSTGRES_URL``); the databases are
created and dropped here.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
from pathlib import Path

from common import BIN, Comparison, interleaved, median_process_time, quick, sized, skip

URL = os.environ.get("MYFY_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
TABLES = sized(1000, 20)
MIGRA_TABLES = sized(300, 10)
MIGRA = Path(os.environ.get("MYFY_BENCH_MIGRA", "/tmp/migravenv/bin/migra"))


def schema_sql(tables: int, variant: str) -> str:
    """The DDL of a generated schema; ``variant`` ``to`` differs from ``from`` in every
    tenth table and in the tables at either end."""
    statements = []
    to = variant == "to"
    for n in range(tables):
        if to and n == tables - 1:
            continue  # a table FROM has and TO has not
        name = f"t{n:04d}"
        tweak = n % 10 == 5 and to
        columns = [
            "id serial PRIMARY KEY",
            f"name varchar({80 if tweak else 50}) NOT NULL",
            "created timestamptz DEFAULT now()",
            "amount numeric(10, 2)",
            "flag boolean DEFAULT false",
            f"ref int REFERENCES t{n - 1:04d} (id)" if n else "ref int",
        ]
        if n and n % 10 == 7:
            action = "CASCADE" if to else "SET NULL"
            columns[-1] = f"ref int REFERENCES t{n - 1:04d} (id) ON DELETE {action}"
        if tweak:
            columns.append("extra text")
        columns.append(f"CONSTRAINT {name}_name_key UNIQUE (name)")
        if not (to and n % 10 == 3):
            columns.append(f"CONSTRAINT {name}_amount_check CHECK (amount >= 0)")
        statements.append(f"CREATE TABLE {name} ({', '.join(columns)});")
        if not (to and n % 10 == 1):
            statements.append(f"CREATE INDEX {name}_created_idx ON {name} (created);")
    if to:
        statements.append("CREATE TABLE only_in_to (id int PRIMARY KEY);")
    return "\n".join(statements)


def _admin_dsn(database: str) -> str:
    from sqlalchemy.engine import make_url

    url = make_url(URL).set(drivername="postgresql", database=database)
    return url.render_as_string(hide_password=False)


async def _build(pairs: dict[str, str]) -> None:
    import asyncpg

    admin = await asyncpg.connect(_admin_dsn(make_admin_database()))
    try:
        for name, sql in pairs.items():
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{name}"')
            if not sql:
                continue
            connection = await asyncpg.connect(_admin_dsn(name))
            try:
                await connection.execute(sql)
            finally:
                await connection.close()
    finally:
        await admin.close()


async def _drop(names: list[str]) -> None:
    import asyncpg

    admin = await asyncpg.connect(_admin_dsn(make_admin_database()))
    try:
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def make_admin_database() -> str:
    from sqlalchemy.engine import make_url

    return make_url(URL).database or "postgres"


def _url(database: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(URL).set(database=database).render_as_string(hide_password=False)


def _timed_diff(from_db: str, to_db: str, *flags: str) -> list[str]:
    return [str(BIN / "myfy-db"), "diff", _url(from_db), _url(to_db), *flags]


#: The table of each index migra creates (its ``ON`` clause), filled by _migra_objects.
INDEX_TABLES: dict[str, str] = {}


def _migra_objects(sql: str) -> set[str]:
    """The objects migra's SQL touches, as ``table`` or ``table.name`` (quotes dropped)."""
    found = set()
    for statement in sql.split(";"):
        text = statement.replace('"', "").replace("public.", "").strip()
        if not text:
            continue
        match = re.match(r"(?is)^(create|drop) table (\w+)", text)
        if match:
            found.add(match.group(2))
            continue
        match = re.match(r"(?is)^alter table (?:only )?(\w+) (add|drop|alter) (\w+) (\w+)", text)
        if match:
            table, _, what, name = match.groups()
            found.add(f"{table}.{name}" if what.lower() in ("column", "constraint") else table)
            continue
        match = re.match(
            r"(?is)^(?:create (?:unique )?index(?: concurrently)?|drop index(?: if exists)?) "
            r"(\w+)(?: on (?:only )?(\w+))?",
            text,
        )
        if match:
            found.add(match.group(1))
            if match.group(2):
                INDEX_TABLES[match.group(1)] = match.group(2)
            continue
        match = re.match(r"(?is)^(?:create|drop) sequence(?: if exists)? (\w+)", text)
        if match:
            found.add(f"sequence {match.group(1)}")
            continue
        match = re.match(r"(?is)^(?:create|drop|alter) type (\w+)", text)
        if match:
            found.add(f"type {match.group(1)}")
            continue
        match = re.match(r"(?is)^(?:create(?: or replace)?|drop) view(?: if exists)? (\w+)", text)
        if match:
            found.add(match.group(1))
    return found


def _ours_objects(document: dict[str, object]) -> set[str]:
    found = set()
    for d in document["differences"]:  # type: ignore[attr-defined]
        table, name, kind = d["table"], d["name"], d["kind"]
        if kind.startswith("table_"):
            found.add(table)
        elif kind.startswith("enum_"):
            found.add(f"type {name}")
        elif kind.startswith("sequence_"):
            found.add(f"sequence {name}")
        elif kind.startswith(("view_", "index_")):
            found.add(name)
        else:
            found.add(f"{table}.{name}")
    return found


def _coverage(from_db: str, to_db: str, label: str = "") -> None:
    theirs, missing = _compared(from_db, to_db)
    print(
        f"  migra coverage{label}: {len(theirs) - len(missing)} of {len(theirs)} objects migra "
        f"changes are in myfy-db's differences" + (f"; not: {missing[:10]}" if missing else ""),
        flush=True,
    )


def _compared(from_db: str, to_db: str) -> tuple[set[str], list[str]]:
    """The objects migra's SQL changes, and those of them myfy-db does not report."""
    migra = subprocess.run(
        [str(MIGRA), "--unsafe", _admin_dsn(to_db), _admin_dsn(from_db)],
        capture_output=True,
        text=True,
        check=False,
    )
    if migra.returncode not in (0, 2):
        raise RuntimeError(f"migra failed: {migra.stderr[-500:]}")
    ours = subprocess.run(
        _timed_diff(from_db, to_db, "--json"), capture_output=True, text=True, check=False
    )
    theirs = _migra_objects(migra.stdout)
    # migra drops and re-creates a serial's sequence with its table; we name the table.
    theirs = {t for t in theirs if not t.startswith("sequence ")}
    document = json.loads(ours.stdout)
    if "error" in document:
        raise RuntimeError(f"diff failed: {document['error']['message']}")
    covered = _ours_objects(document)
    # A table created or dropped whole is one difference of ours: its keys, constraints
    # and indexes (named after it, as PostgreSQL and this generator name them) go with it.
    tables = {t for t in covered if "." not in t}
    # migra drops and re-creates the index behind a primary key or unique constraint as
    # well as the constraint: it is that constraint's difference.
    constraints = {t.split(".", 1)[1] for t in covered if "." in t}
    missing = sorted(
        t
        for t in theirs - covered
        if t.split(".", 1)[0] not in tables
        and not any(t.startswith(f"{n}_") for n in tables)
        and t not in constraints
        and INDEX_TABLES.get(t) not in tables
    )
    return theirs, missing


#: Where migra sees no difference and myfy-db does, who is right and why.
_WHY = {
    "sequence_missing": "myfy-db is right: a sequence no column owns is a schema object "
    "that code calling nextval() needs, and migra printed no statement for it",
    "sequence_extra": "myfy-db is right, as for sequence_missing",
}


def _per_kind(names: list[str]) -> None:
    """Each PostgreSQL pair of the round-trip tests (one kind of difference each), diffed by
    both: a line per pair where migra changes an object myfy-db does not report, or
    myfy-db reports a pair migra leaves alone."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from test_diff import PG_BASE, PG_CASES

    agreed = 0
    for expected, on_from, on_to in PG_CASES:
        base = "\n".join(f"{s};" for s in PG_BASE)
        asyncio.run(
            _build(
                {
                    names[0]: base + "\n" + "\n".join(f"{s};" for s in on_from),
                    names[1]: base + "\n" + "\n".join(f"{s};" for s in on_to),
                }
            )
        )
        theirs, missing = _compared(*names)
        if missing:
            print(f"  {'+'.join(expected)}: myfy-db misses {missing} (migra: {sorted(theirs)})")
        elif not theirs:
            print(
                f"  {'+'.join(expected)}: myfy-db reports it, migra sees no difference: "
                f"{_WHY.get(expected[0], 'migra does not compare this')}",
                flush=True,
            )
        else:
            agreed += 1
    print(f"  migra per kind: {agreed} of {len(PG_CASES)} pairs agree", flush=True)


MLFLOW = Path(os.environ.get("MYFY_BENCH_MLFLOW", "/tmp/mlflowvenv/bin/python"))
#: Two revisions of mlflow's tracking-store chain: an older one, and head.
MLFLOW_REVISIONS = ("7f2a7d5fae7d", "head")
MLFLOW_BUILD = """
import sys
from alembic import command
from sqlalchemy import create_engine
from mlflow.store.db.utils import InitialBase, _get_alembic_config
url, rev = sys.argv[1], sys.argv[2]
engine = create_engine(url)
InitialBase.metadata.create_all(engine)
config = _get_alembic_config(url)
with engine.begin() as connection:
    config.attributes["connection"] = connection
    command.upgrade(config, rev)
engine.dispose()
"""


def _mlflow(names: list[str]) -> None:
    """mlflow's chain at two revisions (its own way: initial tables, then the chain): the
    objects migra's SQL changes must be among myfy-db's differences, and ``--sql`` applied
    to the older database must leave no difference."""
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".py") as script:
        script.write(MLFLOW_BUILD)
        script.flush()
        # Both ways: the older database brought up to head, and head brought down to it.
        for way, (first, second) in (("up", (names[1], names[0])), ("down", names)):
            asyncio.run(_build({names[0]: "", names[1]: ""}))
            for name, revision in zip(names, MLFLOW_REVISIONS, strict=True):
                url = _admin_dsn(name).replace("postgresql://", "postgresql+psycopg2://")
                subprocess.run([str(MLFLOW), script.name, url, revision], check=True)
            _coverage(first, second, f" (mlflow, {way})")
            done = subprocess.run(
                _timed_diff(first, second, "--sql"), capture_output=True, text=True
            )
            asyncio.run(_apply(second, done.stdout))
            again = subprocess.run(_timed_diff(first, second, "--json"), capture_output=True)
            left = len(json.loads(again.stdout).get("differences", []))
            print(f"  mlflow round trip {way}: {left} difference(s) left after --sql", flush=True)
            theirs, _ = _compared(first, second)
            print(f"  migra after our --sql ({way}): {sorted(theirs) or 'no difference'}")


async def _apply(database: str, script: str) -> None:
    import asyncpg

    body = "\n".join(line for line in script.splitlines() if not line.startswith("--"))
    connection = await asyncpg.connect(_admin_dsn(database))
    try:
        for statement in re.split(r";\s*\n", body + "\n"):
            if statement.strip():
                await connection.execute(statement)
    finally:
        await connection.close()


def run() -> list[Comparison]:
    # This process's own pair: two runs at once (a CI run beside a local one) never share.
    names = [f"myfy_bench_diff_{os.getpid()}_{side}" for side in ("from", "to")]
    results: list[Comparison] = []
    asyncio.run(_build({names[0]: schema_sql(TABLES, "from"), names[1]: schema_sql(TABLES, "to")}))
    try:
        argv = _timed_diff(*names, "--json")
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 5:
            raise RuntimeError(f"diff exited {done.returncode}: {done.stderr[-500:]}")
        count = len(json.loads(done.stdout)["differences"])
        seconds = median_process_time(argv, runs=3, check=False)
        results.append(
            Comparison(
                f"diff --json, {TABLES} tables a side, {count} differences (PostgreSQL)",
                seconds,
                5.0,
                "the 5 s budget",
                target=1.0,
            )
        )
        if quick():  # the 1,000-table figure's path has run; migra's adds only time
            skip("diff against migra", "not in quick mode")
            return results
        if not MIGRA.exists():
            skip("diff against migra", f"{MIGRA} is not installed (see this module's doc)")
            return results
        asyncio.run(
            _build(
                {
                    names[0]: schema_sql(MIGRA_TABLES, "from"),
                    names[1]: schema_sql(MIGRA_TABLES, "to"),
                }
            )
        )
        _coverage(*names, f" ({MIGRA_TABLES} tables)")
        ours = _timed_diff(*names, "--sql")
        theirs = [str(MIGRA), "--unsafe", _admin_dsn(names[1]), _admin_dsn(names[0])]
        diff_time, migra_time = interleaved(
            lambda: median_process_time(ours, runs=3, check=False),
            lambda: median_process_time(theirs, runs=3, check=False),
            rounds=3,
        )
        results.append(
            Comparison(
                f"diff --sql, {MIGRA_TABLES} tables a side (PostgreSQL)",
                diff_time,
                migra_time,
                "migra --unsafe",
                target=1.0,
            )
        )
        _per_kind(names)
        if MLFLOW.exists():
            _mlflow(names)
        else:
            skip("diff on mlflow's chain", f"{MLFLOW} is not installed (mlflow-skinny)")
    finally:
        asyncio.run(_drop(names))
    return results
