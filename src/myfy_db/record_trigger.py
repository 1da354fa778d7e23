"""The record protects itself: a trigger on ``myfy_db_meta`` refuses, in the database, deleting
a protected row or lowering it (clearing ``protected``, or moving it to another environment).

The shell, a migration or any other client then meets the same refusal, however it spells
the statement. Refreshing a protected record (same environment, new time and version) still
works, and so does raising a record to a protected environment.

- PostgreSQL: a PL/pgSQL trigger function, a row trigger for UPDATE and DELETE and a
  statement trigger for TRUNCATE.
- MariaDB / MySQL: BEFORE UPDATE and BEFORE DELETE row triggers (``SIGNAL SQLSTATE '45000'``);
  ``TRUNCATE`` does not fire triggers there.
- SQLite: BEFORE UPDATE and BEFORE DELETE triggers (``RAISE(ABORT, ...)``).

Creating a trigger needs a privilege (``TRIGGER`` on MariaDB, and ``SUPER`` or
``log_bin_trust_function_creators`` where binary logging is on; the table's owner on
PostgreSQL). Where the account lacks it, the record is still written, the command says so
once (:func:`myfy_db.invocation.warn_once`) and goes on.
"""

from __future__ import annotations

from sqlalchemy import Connection

from myfy_db.invocation import warn_once

__all__ = ["TRIGGER_NAME", "ensure_record_trigger", "has_record_trigger"]

TRIGGER_NAME = "myfy_db_meta_guard"
_MESSAGE = "myfy_db_meta: the record of a protected environment cannot be deleted or lowered"
#: A record written before the ``protected`` column existed: protected by its name.
_PROTECTED_NAMES = "('production', 'prod')"

_POSTGRESQL = [
    f"""CREATE OR REPLACE FUNCTION {TRIGGER_NAME}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    IF EXISTS (SELECT 1 FROM myfy_db_meta WHERE protected
               OR lower(trim(environment)) IN {_PROTECTED_NAMES}) THEN
      RAISE EXCEPTION '{_MESSAGE}' USING ERRCODE = 'P0001';
    END IF;
    RETURN NULL;
  END IF;
  IF OLD.protected IS TRUE OR lower(trim(OLD.environment)) IN {_PROTECTED_NAMES} THEN
    IF TG_OP = 'DELETE' OR NEW.protected IS NOT TRUE
       OR lower(trim(NEW.environment)) <> lower(trim(OLD.environment)) THEN
      RAISE EXCEPTION '{_MESSAGE}' USING ERRCODE = 'P0001';
    END IF;
  END IF;
  IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
  RETURN NEW;
END $$""",
    f"CREATE TRIGGER {TRIGGER_NAME} BEFORE UPDATE OR DELETE ON myfy_db_meta "
    f"FOR EACH ROW EXECUTE FUNCTION {TRIGGER_NAME}()",
    f"CREATE TRIGGER {TRIGGER_NAME}_truncate BEFORE TRUNCATE ON myfy_db_meta "
    f"FOR EACH STATEMENT EXECUTE FUNCTION {TRIGGER_NAME}()",
]
_OLD_PROTECTED = f"(OLD.protected OR lower(trim(OLD.environment)) IN {_PROTECTED_NAMES})"
_MYSQL = [
    f"CREATE TRIGGER {TRIGGER_NAME}_delete BEFORE DELETE ON myfy_db_meta FOR EACH ROW "
    f"BEGIN IF {_OLD_PROTECTED} THEN "
    f"SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{_MESSAGE}'; END IF; END",
    f"CREATE TRIGGER {TRIGGER_NAME}_update BEFORE UPDATE ON myfy_db_meta FOR EACH ROW "
    f"BEGIN IF {_OLD_PROTECTED} AND (NOT COALESCE(NEW.protected, FALSE) "
    "OR lower(trim(NEW.environment)) <> lower(trim(OLD.environment))) THEN "
    f"SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{_MESSAGE}'; END IF; END",
]
_SQLITE = [
    f"CREATE TRIGGER IF NOT EXISTS {TRIGGER_NAME}_delete BEFORE DELETE ON myfy_db_meta "
    f"WHEN {_OLD_PROTECTED} BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END",
    f"CREATE TRIGGER IF NOT EXISTS {TRIGGER_NAME}_update BEFORE UPDATE ON myfy_db_meta "
    f"WHEN {_OLD_PROTECTED} AND (NEW.protected IS NOT 1 "
    "OR lower(trim(NEW.environment)) <> lower(trim(OLD.environment))) "
    f"BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END",
]


def has_record_trigger(connection: Connection) -> bool:
    """Whether ``myfy_db_meta`` carries the guard trigger (read from the catalog)."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        sql = (
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass('myfy_db_meta') "
            f"AND tgname IN ('{TRIGGER_NAME}', '{TRIGGER_NAME}_truncate')"
        )
        wanted = 2
    elif dialect in ("mysql", "mariadb"):
        sql = (
            "SELECT count(*) FROM information_schema.TRIGGERS WHERE "
            "EVENT_OBJECT_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE = 'myfy_db_meta' "
            f"AND TRIGGER_NAME IN ('{TRIGGER_NAME}_delete', '{TRIGGER_NAME}_update')"
        )
        wanted = 2
    elif dialect == "sqlite":
        sql = (
            "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' "
            f"AND tbl_name = 'myfy_db_meta' "
            f"AND name IN ('{TRIGGER_NAME}_delete', '{TRIGGER_NAME}_update')"
        )
        wanted = 2
    else:
        return False
    return int(connection.exec_driver_sql(sql).scalar() or 0) >= wanted


def ensure_record_trigger(connection: Connection) -> bool:
    """Create the guard trigger on ``myfy_db_meta`` when it is missing; True when it is there.

    Runs inside the caller's transaction; a refusal by the server (no privilege) is rolled
    back to a savepoint, reported once, and the caller's transaction goes on.
    """
    dialect = connection.dialect.name
    statements = {
        "postgresql": _POSTGRESQL,
        "mysql": _MYSQL,
        "mariadb": _MYSQL,
        "sqlite": _SQLITE,
    }.get(dialect)
    if statements is None or has_record_trigger(connection):
        return statements is not None
    if dialect in ("mysql", "mariadb"):
        # DDL commits on its own there: no savepoint can take it back, and none is needed.
        return _create(connection, statements, savepoint=False)
    return _create(connection, statements, savepoint=True)


def _create(connection: Connection, statements: list[str], *, savepoint: bool) -> bool:
    from sqlalchemy.exc import DBAPIError

    from myfy_db.driver_errors import server_error

    try:
        if savepoint:
            with connection.begin_nested():
                for statement in statements:
                    connection.exec_driver_sql(statement)
        else:
            for statement in statements:
                connection.exec_driver_sql(statement)
    except DBAPIError as exc:
        found = server_error(exc)
        reason = found[0] if found is not None else type(exc).__name__
        warn_once(
            "myfy_db_meta has no guard trigger (the account may not create triggers: "
            f"{reason}); the record is written, but only myfy-db itself keeps it from being "
            "lowered. Grant TRIGGER (MariaDB) or table ownership (PostgreSQL); see the README"
        )
        return False
    return True
