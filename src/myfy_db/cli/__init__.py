"""The myfy-db command line (a thin layer over the library).

``main`` is the console script; ``app`` (the Typer application) is imported on first use, so
that :mod:`myfy_db.cli.process` can set up the process before anything heavy loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from myfy_db.cli.application import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point: ``myfy-db`` and ``python -m myfy_db``."""
    from myfy_db.cli.process import run_console_script

    run_console_script()


def __getattr__(name: str) -> Any:
    if name == "app":
        from myfy_db.cli.application import app

        globals()["app"] = app
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
