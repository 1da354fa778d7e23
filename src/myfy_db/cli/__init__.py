"""The myfy-db command line (a thin layer over the library).

``app`` is the Typer application and ``main()`` runs it, for programs that embed the command
line. The ``myfy-db`` console script is :func:`myfy_db.cli.process.run_console_script`, which
also manages the process it owns. ``app`` is imported on first use, so that the console script
can set up its process before anything heavy loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from myfy_db.cli.application import app

__all__ = ["app", "main"]


def main() -> None:
    """Run the command line given in ``sys.argv`` (ends in ``SystemExit``, as Typer does)."""
    from myfy_db.cli.application import app

    app()


def __getattr__(name: str) -> Any:
    if name == "app":
        from myfy_db.cli.application import app

        globals()["app"] = app
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
