"""``migrate init``: scaffold an Alembic project that takes everything from myfy-db.

It writes ``alembic.ini`` (script location and logging only), an async ``env.py`` that gets
its engine from :func:`myfy_db.create_engine` and its target metadata from the ``metadata``
setting, ``script.py.mako`` and an empty ``versions/``. Nothing secret, and no URL, is ever
written: the same files work for every environment.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from myfy_db.errors import ConfigError

TEMPLATE = files("myfy_db.migrations") / "template"


def template_text(name: str) -> str:
    """The text of a scaffold template file (``env.py``, ``script.py.mako``, ``alembic.ini``)."""
    return (TEMPLATE / name).read_text(encoding="utf-8")


def init_project(directory: Path = Path("migrations"), ini_path: Path | None = None) -> list[Path]:
    """Create the project: ``directory`` with env.py, script.py.mako, versions/, and alembic.ini.

    ``alembic.ini`` goes in the working directory (or ``ini_path``); its ``script_location``
    is relative to itself. Refuses (exit 2) to overwrite an existing file or a non-empty
    directory.
    """
    ini = ini_path if ini_path is not None else Path("alembic.ini")
    if ini.exists():
        raise ConfigError(f"{ini} already exists", hint="remove it, or pass --config elsewhere")
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ConfigError(f"{directory} already exists and is not empty")
    try:
        location = directory.resolve().relative_to(ini.parent.resolve())
    except ValueError:
        raise ConfigError(
            f"{directory} must be inside {ini.parent.resolve()}, beside alembic.ini"
        ) from None
    written: list[Path] = []
    try:
        (directory / "versions").mkdir(parents=True, exist_ok=True)
        for name in ("env.py", "script.py.mako"):
            target = directory / name
            target.write_text(template_text(name), encoding="utf-8")
            written.append(target)
        keep = directory / "versions" / ".gitkeep"
        keep.write_text("", encoding="utf-8")
        written.append(keep)
        ini_text = template_text("alembic.ini").replace("{script_location}", location.as_posix())
        ini.write_text(ini_text, encoding="utf-8")
        written.append(ini)
    except OSError as exc:
        raise ConfigError(f"cannot write the migration project: {exc}") from None
    return written
