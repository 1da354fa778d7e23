"""myfy-db: database operations for async SQLAlchemy 2 applications.

The library API, usable without the command line::

    from myfy_db import DatabaseSettings, create_engine, SessionFactory

    settings = DatabaseSettings()          # MYFY_DATA_* / .env / pyproject.toml
    engine = create_engine(settings)       # the same engine every myfy-db command uses
    sessions = SessionFactory(engine)
    async with sessions.session_context() as session:
        ...

Names are imported on first use, so ``import myfy_db`` (and the CLI's start-up) stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from myfy_db._version import __version__

if TYPE_CHECKING:
    from myfy_db.engine import (
        SessionFactory,
        create_engine,
        engine_options,
        open_engine,
        translate_errors,
    )
    from myfy_db.errors import (
        CannotConnect,
        CheckFailed,
        ConfigError,
        ExitCode,
        MyfyDbError,
        OperationFailed,
        Refused,
    )
    from myfy_db.settings import DatabaseSettings, LoadedSettings, load_settings
    from myfy_db.urls import DatabaseUrl, mask_url

_EXPORTS: dict[str, str] = {
    "DatabaseSettings": "myfy_db.settings",
    "LoadedSettings": "myfy_db.settings",
    "load_settings": "myfy_db.settings",
    "SessionFactory": "myfy_db.engine",
    "create_engine": "myfy_db.engine",
    "engine_options": "myfy_db.engine",
    "open_engine": "myfy_db.engine",
    "translate_errors": "myfy_db.engine",
    "CannotConnect": "myfy_db.errors",
    "CheckFailed": "myfy_db.errors",
    "ConfigError": "myfy_db.errors",
    "ExitCode": "myfy_db.errors",
    "MyfyDbError": "myfy_db.errors",
    "OperationFailed": "myfy_db.errors",
    "Refused": "myfy_db.errors",
    "mask_url": "myfy_db.urls",
    "DatabaseUrl": "myfy_db.urls",
}

__all__ = [
    "CannotConnect",
    "CheckFailed",
    "ConfigError",
    "DatabaseSettings",
    "DatabaseUrl",
    "ExitCode",
    "LoadedSettings",
    "MyfyDbError",
    "OperationFailed",
    "Refused",
    "SessionFactory",
    "__version__",
    "create_engine",
    "engine_options",
    "load_settings",
    "mask_url",
    "open_engine",
    "translate_errors",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'myfy_db' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
