"""What an Alembic ``env.py`` takes from myfy-db: settings, URL, target metadata, options.

The scaffolded ``env.py`` (and the repository's own ``migrations/env.py``) imports these
helpers. When ``myfy-db migrate`` runs Alembic in its own process it passes everything
through ``config.attributes``: the live connection it holds the migration lock for, the
settings, the URL and a progress callback. Run by plain ``alembic``, the same ``env.py`` reads
the settings the way the application does (``MYFY_DATA_*``, ``.env``, ``[tool.myfy-db]``).
No URL is ever read from ``alembic.ini``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from myfy_db.guard import META_TABLE

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import Connection, MetaData

    from myfy_db.settings import DatabaseSettings

#: ``config.attributes`` keys set by ``myfy-db migrate``.
CONNECTION = "connection"
SETTINGS = "myfy_db.settings"
URL = "myfy_db.url"
METADATA = "myfy_db.metadata"
ON_VERSION_APPLY = "myfy_db.on_version_apply"
TRANSACTIONAL_DDL = "myfy_db.transactional_ddl"
#: Tables a migration never manages: the guard's environment record, Alembic's own, and
#: ``migrate --safe``'s record of a half-done revision (:mod:`.safe.pg_progress`); diff
#: leaves them out too.
IGNORED_TABLES = frozenset({META_TABLE, "alembic_version", "myfy_db_safe_progress"})


def settings_for(config: Config) -> tuple[DatabaseSettings, str]:
    """The settings and database URL for this run: from ``myfy-db``, else from the environment."""
    settings: DatabaseSettings | None = config.attributes.get(SETTINGS)
    if settings is None:
        from myfy_db.settings import load_settings

        settings = load_settings().settings
    url: str = config.attributes.get(URL) or settings.database_url
    return settings, url


def target_metadata_for(config: Config, settings: DatabaseSettings) -> MetaData | None:
    """The metadata named by the ``metadata`` setting, or None when none is configured."""
    if METADATA in config.attributes:
        metadata: MetaData | None = config.attributes[METADATA]
        return metadata
    if not settings.metadata:
        return None
    from myfy_db.metadata import load_metadata

    return load_metadata(settings.metadata).metadata


def shared_connection(config: Config) -> Connection | None:
    """The live connection ``myfy-db migrate`` passed in, if any."""
    connection: Connection | None = config.attributes.get(CONNECTION)
    return connection


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Leave myfy-db's own ``myfy_db_meta`` table out of autogenerate and ``check``."""
    return not (type_ == "table" and name in IGNORED_TABLES)


def migration_options(config: Config, dialect_name: str) -> dict[str, Any]:
    """Keyword arguments for ``context.configure`` on a live connection.

    Each revision runs in its own transaction, so on a database with transactional DDL
    (PostgreSQL) a failing revision leaves the database at the previous one.
    """
    options: dict[str, Any] = {
        "transaction_per_migration": True,
        "compare_type": True,
        "include_name": include_name,
        "render_as_batch": dialect_name == "sqlite",
    }
    if config.attributes.get(TRANSACTIONAL_DDL):
        # myfy-db's SQLite connection emits its own BEGIN (see commands.py), so DDL joins
        # the revision's transaction: each revision is atomic, with one commit.
        options["transactional_ddl"] = True
    callback: Callable[..., None] | None = config.attributes.get(ON_VERSION_APPLY)
    if callback is not None:
        options["on_version_apply"] = callback
    return options


def offline_options(config: Config, url: str) -> dict[str, Any]:
    """Keyword arguments for ``context.configure`` in offline (``--sql``) mode."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    options = migration_options(config, parsed.get_backend_name())
    options.pop("on_version_apply", None)
    options.update(url=parsed, literal_binds=True, dialect_opts={"paramstyle": "named"})
    return options
