"""An Alembic project (``alembic.ini`` + script directory) and its in-process ``Config``.

The ``Config`` is built in memory for each run: ``script_location`` comes from the project's
``alembic.ini``; the database URL never does. Settings, URL, metadata and the live connection
travel to ``env.py`` through ``config.attributes`` (see :mod:`myfy_db.migrations.environment`).
"""

from __future__ import annotations

import configparser
import sys
from argparse import Namespace
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from myfy_db.errors import ConfigError
from myfy_db.migrations import environment as env

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlalchemy import Connection, MetaData

    from myfy_db.settings import DatabaseSettings

DEFAULT_INI = "alembic.ini"
INIT_HINT = "run `myfy-db migrate init` to create one, or pass --config PATH"


@dataclass(frozen=True)
class MigrationProject:
    """An Alembic project on disk, found by its ``alembic.ini``."""

    ini_path: Path
    #: ``alembic.ini``'s own ``sqlalchemy.url``, which myfy-db ignores (None: it has none).
    ini_url: str | None = None

    @property
    def ignores_ini_url(self) -> bool:
        return self.ini_url is not None

    def ini_url_differs(self, url: str | None) -> bool:
        """True when the ini names a database other than ``url`` (the one in use), read
        driver-blind: a packaged chain's ``sqlite:///app.db`` is the same database as
        ``sqlite+aiosqlite:///app.db``."""
        if self.ini_url is None or url is None:
            return False  # nothing set, or no database in use to tell apart
        from sqlalchemy.engine import make_url

        def plain(text: str) -> str:
            parsed = make_url(text)
            return parsed.set(drivername=parsed.get_backend_name()).render_as_string(False)

        try:
            return plain(self.ini_url) != plain(url)
        except Exception:  # an ini URL SQLAlchemy cannot read names no database in use
            return True

    def config(
        self,
        settings: DatabaseSettings,
        url: str | None = None,
        *,
        metadata: MetaData | None = None,
        connection: Connection | None = None,
        on_version_apply: Callable[..., None] | None = None,
        output_buffer: TextIO | None = None,
    ) -> Config:
        """The Alembic ``Config`` for one in-process run."""
        from alembic.config import Config

        attributes: dict[str, Any] = {
            "configure_logger": False,
            env.SETTINGS: settings,
            env.URL: url or settings.database_url,
        }
        if metadata is not None:
            attributes[env.METADATA] = metadata
        if connection is not None:
            attributes[env.CONNECTION] = connection
        if on_version_apply is not None:
            attributes[env.ON_VERSION_APPLY] = on_version_apply
        config = Config(
            self.ini_path,
            output_buffer=output_buffer,
            stdout=sys.stderr,
            cmd_opts=Namespace(quiet=True),
            attributes=attributes,
        )
        # In memory only, never written: an env.py that builds its own engine from
        # sqlalchemy.url (Alembic's generic and async templates) reaches the same database.
        own_url = attributes[env.URL] if self._env_is_async else sync_url(attributes[env.URL])
        config.set_main_option("sqlalchemy.url", own_url.replace("%", "%%"))
        # The ini's path stays, as Alembic has it: an env.py that calls
        # fileConfig(config.config_file_name) unguarded (optuna's) runs as under Alembic.
        # What that does to logging is undone when env.py returns (driving.logging_kept).
        return config

    def script(self) -> ScriptDirectory:
        """The project's script directory (its revisions), read once per project object.

        Alembic imports every revision file the first time the revisions are needed; one
        run needs them for its checks and for the migration itself, and reads them once.
        """
        return self._script

    def require_template(self) -> Path:
        """The project's ``script.py.mako``, which every new revision is written from; a
        :class:`ConfigError` (exit 2) naming the path when it is missing."""
        template = Path(self.script().dir) / "script.py.mako"
        if not template.is_file():
            raise ConfigError(
                f"the Alembic project has no revision template: {template} not found",
                hint="restore it from version control, or copy the one `migrate init` writes",
            )
        return template

    @cached_property
    def _env_is_async(self) -> bool:
        """True when the project's env.py builds an async engine (Alembic's async template)."""
        from alembic.config import Config

        location = Config(self.ini_path).get_main_option("script_location") or ""
        try:
            text = (Path(location) / "env.py").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return True
        return any(name in text for name in ("async_engine_from_config", "create_async_engine"))

    @cached_property
    def _script(self) -> ScriptDirectory:
        from alembic.config import Config
        from alembic.script import ScriptDirectory
        from alembic.util import CommandError

        try:
            script = ScriptDirectory.from_config(Config(self.ini_path))
        except CommandError as exc:
            raise ConfigError(
                f"{self.ini_path}: {exc}", hint="check script_location in alembic.ini"
            ) from None
        _load_revisions(script)
        return script


def _load_revisions(script: ScriptDirectory) -> None:
    """Read every revision file now, so that a broken one is a :class:`ConfigError` (exit 2)
    naming the file and line, before anything connects or runs."""
    import traceback
    import warnings

    from alembic.script.revision import RevisionError
    from alembic.util import CommandError

    hint = "fix the revision file; nothing ran"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            script.revision_map.heads  # noqa: B018  (loads and links every revision)
        except SyntaxError as exc:
            where = f"{exc.filename} line {exc.lineno}"
            raise ConfigError(f"revision file {where}: {exc.msg}", hint=hint) from None
        except KeyError as exc:
            missing = exc.args[0] if exc.args else "?"
            raise ConfigError(_dangling(script, str(missing), caught), hint=hint) from None
        except (CommandError, RevisionError) as exc:
            raise ConfigError(str(exc).strip().splitlines()[0], hint=hint) from None
        except (Exception, SystemExit) as exc:
            frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename]
            where = f"{frames[-1].filename} line {frames[-1].lineno}" if frames else "?"
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            what = (
                f"calls sys.exit({exc.code!r})"
                if isinstance(exc, SystemExit)
                else f"raises {type(exc).__name__}: {text}"
            )
            raise ConfigError(f"revision file {where} {what} when loaded", hint=hint) from None
    dangling = [w for w in caught if "is not present" in str(w.message)]
    if dangling:
        raise ConfigError(_dangling(script, None, dangling), hint=hint)


def _dangling(script: ScriptDirectory, missing: str | None, caught: list[Any]) -> str:
    """Which revision names a ``down_revision`` (or dependency) no revision file defines."""
    import re

    for warning in caught:
        found = re.match(r"Revision (\S+) referenced from .*?-> (\S+)", str(warning.message))
        if found and (missing is None or found[1] == missing):
            return (
                f"revision {found[2]} names down_revision {found[1]!r}, "
                f"which no revision file in {script.versions} defines"
            )
    return f"a revision names down_revision {missing!r}, which no revision file defines"


#: Sync drivers an env.py's own engine can use for the same database, where installed.
_SYNC_DRIVERS = {
    "sqlite+aiosqlite": ("sqlite", "sqlite3"),
    "postgresql+asyncpg": ("postgresql+psycopg2", "psycopg2"),
    "mysql+aiomysql": ("mysql+pymysql", "pymysql"),
    "mariadb+aiomysql": ("mariadb+pymysql", "pymysql"),
}


def sync_url(url: str) -> str:
    """``url`` with a sync driver for an env.py that builds a sync engine, where one is
    installed (the stdlib's sqlite3, psycopg2, PyMySQL); otherwise ``url`` itself, which a
    sync engine still runs inside myfy-db's greenlet."""
    import importlib.util

    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    driver = _SYNC_DRIVERS.get(parsed.drivername)
    if driver is None or importlib.util.find_spec(driver[1]) is None:
        return url
    return parsed.set(drivername=driver[0]).render_as_string(hide_password=False)


def find_project(config_path: Path | None = None) -> MigrationProject:
    """The project whose ``alembic.ini`` is ``config_path``, or the one in the working directory."""
    path = config_path if config_path is not None else Path(DEFAULT_INI)
    if not path.is_file():
        where = f"{path}" if config_path is not None else f"{DEFAULT_INI} in {Path.cwd()}"
        raise ConfigError(f"no Alembic project: {where} not found", hint=INIT_HINT)
    # As Alembic reads it: %(here)s is the file's directory; other %(name)s are interpolated.
    parser = configparser.ConfigParser(defaults={"here": str(path.resolve().parent)})
    try:
        parser.read(path, encoding="utf-8")
        if parser.has_section("alembic"):
            for option in parser.options("alembic"):
                parser.get("alembic", option)
    except configparser.InterpolationMissingOptionError as exc:
        raise ConfigError(
            f"cannot read {path}: [{exc.section}] {exc.option} refers to %({exc.reference})s, "
            "which is not defined",
            hint="define it, or write a literal % as %%",
        ) from None
    except configparser.Error as exc:
        raise ConfigError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"cannot read {path}: it is not UTF-8 text (byte {exc.object[exc.start]:#04x} "
            f"at offset {exc.start})",
            hint="save it as UTF-8",
        ) from None
    if not parser.has_option("alembic", "script_location"):
        raise ConfigError(f"{path} has no [alembic] script_location", hint=INIT_HINT)
    location = Path(parser.get("alembic", "script_location"))
    if location.is_dir() and not (location / "env.py").is_file():
        raise ConfigError(
            f"the Alembic project has no env.py: {location / 'env.py'} not found",
            hint="restore it, or scaffold a project with `myfy-db migrate init`",
        )
    ini_url = (
        parser.get("alembic", "sqlalchemy.url", raw=True)
        if parser.has_option("alembic", "sqlalchemy.url")
        else None
    )
    return MigrationProject(path.resolve(), ini_url)
